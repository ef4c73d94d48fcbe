"""The ``sotalign`` command line — the top layer; nothing in the library imports it.

Commands: ``fit`` (:mod:`.fit`), ``eval`` / ``encode`` / ``methods`` (:mod:`.model`),
``classify`` / ``search`` on raw images and texts (:mod:`.use`), ``export`` (:mod:`.export`),
``serve`` (:mod:`.serve`, a local search page), ``report`` (:mod:`.report`),
``embed images|texts`` (:mod:`.embed`), ``bench`` (:mod:`.bench`), ``demo`` (:mod:`.demo`).
Every user mistake (bad file, bad option) ends with a one-line ``error: …`` on stderr and exit
status 2, and nothing is written. Warnings print as one line, ``warning: …``, without the
source path and line that Python adds (only under :func:`main`; library users keep theirs).
"""

from __future__ import annotations

import os
import sys
import warnings

from ..errors import SotalignError, one_line
from ..parallel import shutdown
from . import demo, export, fit, model, report, serve, suggest, use
from .app import app
from .bench import bench_app
from .console import console, err_console, print_metrics, print_selection
from .embed import embed_app

__all__ = [
    "app",
    "console",
    "demo",
    "export",
    "fit",
    "main",
    "model",
    "print_metrics",
    "print_selection",
    "report",
    "serve",
    "suggest",
    "use",
]

app.add_typer(embed_app, name="embed", help="Embed raw images or texts with a frozen encoder.")
app.add_typer(bench_app, name="bench", help="Sweep methods, pairs and seeds.")


def _format_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    """``warning: <message>`` on one line: no source path, no echoed source line."""
    return f"warning: {one_line(' '.join(str(message).split()))}\n"


def _rank_prefix() -> str:
    """``rank r/W: `` under torchrun (each process prints its own error), else nothing."""
    world = os.environ.get("WORLD_SIZE", "1")
    return f"rank {os.environ.get('RANK', '?')}/{world}: " if world not in ("", "1") else ""


def main() -> None:
    """Console entry point: user errors → one line on stderr, exit status 2; warnings → one
    line ``warning: …`` on stderr."""
    previous = warnings.formatwarning
    warnings.formatwarning = _format_warning  # not showwarning: warnings stay recordable
    try:
        app()
    except SotalignError as exc:
        where = _rank_prefix()
        err_console.print(f"error: {where}{exc}", markup=False, highlight=False, soft_wrap=True)
        shutdown()
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    finally:
        warnings.formatwarning = previous
