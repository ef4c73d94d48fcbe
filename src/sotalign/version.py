"""The version of the sotalign package (one place; the package and saved models read it)."""

__version__ = "0.1.0"
