"""``sotalign export``: a fitted model in another tool's format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError
from ..estimator import SOTAlign
from ..export import export_sentence_transformers
from .app import app
from .console import console

__all__ = ["export"]

FORMATS = ("sentence-transformers",)


@app.command()
def export(
    model: Annotated[Path, typer.Option(help="A model folder written by `sotalign fit`.")],
    out: Annotated[Path, typer.Option(help="Folder to write.")],
    format: Annotated[
        str, typer.Option(help="sentence-transformers: the aligned text side, for MTEB & co.")
    ] = "sentence-transformers",
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty OUT.")] = False,
) -> None:
    """Export a fitted model: the text side as a sentence-transformers model, so that
    SentenceTransformer(OUT).encode(texts) returns the aligned text embeddings."""
    if format not in FORMATS:
        raise ConfigError(f"--format {format!r}: choose one of {', '.join(FORMATS)}")
    path = export_sentence_transformers(SOTAlign.load(model), out, overwrite=overwrite)
    console.print(
        f"wrote {path}: SentenceTransformer('{path}').encode(texts) gives the aligned text side"
    )
