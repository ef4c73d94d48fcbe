"""``python -m sotalign`` runs the command line."""

from .cli import main

main()
