"""The ``sotalign`` Typer application that every command module registers on."""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(
    name="sotalign",
    help="Align frozen image and text encoders from a few pairs plus unpaired data (SOTAlign).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
