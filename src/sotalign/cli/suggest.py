"""``sotalign suggest-pairs``: which rows of an unpaired pool to caption (or illustrate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..io import atomic_write, load_embedding_file
from ..labelling import STRATEGIES, suggest_pairs
from .app import app
from .console import console

__all__ = ["suggest"]


@app.command("suggest-pairs")
def suggest(
    n: Annotated[int, typer.Option("--n", help="How many samples to propose for labelling.")],
    out: Annotated[Path, typer.Option(help="Output text file: one 0-based row index per line.")],
    unpaired_images: Annotated[
        Path | None, typer.Option(help="Embeddings of the unpaired images (propose images).")
    ] = None,
    unpaired_texts: Annotated[
        Path | None, typer.Option(help="Embeddings of the unpaired texts (propose texts).")
    ] = None,
    strategy: Annotated[
        str, typer.Option(help="random (default), kmeans (k-means medoids) or farthest.")
    ] = "random",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Propose which samples of an unpaired pool to pair: images to caption (--unpaired-images)
    or captions to illustrate (--unpaired-texts). See benchmarks/results/suggest_pairs.md for
    how the strategies compare with random choice."""
    if (unpaired_images is None) == (unpaired_texts is None):
        raise ConfigError("give exactly one pool: --unpaired-images or --unpaired-texts")
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown --strategy {strategy!r}; choose {', '.join(STRATEGIES)}")
    pool = load_embedding_file(unpaired_images or unpaired_texts, check=True)
    bar = tqdm(total=25, desc="k-means", disable=quiet or strategy != "kmeans", leave=False)
    with bar:
        idx = suggest_pairs(pool, n, strategy, seed, progress=lambda it: bar.update(it - bar.n))
    with atomic_write(out, "w") as fh:
        fh.write("".join(f"{i}\n" for i in idx))
    what = "images to caption" if unpaired_images is not None else "texts to illustrate"
    console.print(f"wrote {out}: {len(idx)} {what} ({strategy}, seed {seed})")
