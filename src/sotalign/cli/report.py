"""``sotalign report``: one self-contained HTML file on a fitted model (:mod:`sotalign.report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError
from ..report import write_report
from .app import app
from .console import console

__all__ = ["report"]


@app.command()
def report(
    model: Annotated[Path, typer.Option(help="A model folder written by `sotalign fit`.")],
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("report.html"),
    metrics: Annotated[
        Path | None, typer.Option(help="Metrics JSON (`sotalign eval --out`, demo results.json).")
    ] = None,
    bench: Annotated[Path | None, typer.Option(help="A `sotalign bench` output folder.")] = None,
    images: Annotated[
        Path | None, typer.Option(help="Gallery folder for example queries (needs the encoders).")
    ] = None,
    query: Annotated[
        list[str] | None, typer.Option(help="An example query (repeat for several).")
    ] = None,
    k: Annotated[int, typer.Option(help="Images shown per example query.")] = 5,
    device: Annotated[str, typer.Option(help="Where the encoders run: auto, cpu, cuda.")] = "auto",
) -> None:
    """Write a self-contained HTML report: the model, its selection table, training curves
    (loss terms, Sinkhorn iterations and marginal errors), retrieval metrics and example
    queries with their top images."""
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--out {out}: the report is HTML; give a name ending in .html")
    if k < 1:
        raise ConfigError(f"--k must be at least 1, got {k}")
    path = write_report(
        out, model, metrics=metrics, bench=bench, images=images, queries=query or (), k=k,
        device=device,
    )  # fmt: skip
    console.print(f"wrote {path}")
