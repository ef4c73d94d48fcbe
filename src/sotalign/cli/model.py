"""Commands on a fitted model: ``eval``, ``encode``; and ``methods``, the list of methods."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from ..aligned import AlignedModel
from ..embed import list_images, read_texts
from ..errors import ConfigError
from ..estimator import SOTAlign
from ..eval import retrieval_metrics
from ..io import (
    EMBEDDING_SUFFIXES,
    atomic_write,
    check_index,
    load_embedding_file,
    load_index,
    write_json_atomic,
)
from ..methods import available_methods
from .app import app
from .console import console, print_metrics

__all__ = ["encode", "eval_", "is_raw", "methods"]


@app.command("eval")
def eval_(
    model: Annotated[Path, typer.Option(help="A model folder written by `sotalign fit`.")],
    images: Annotated[Path, typer.Option(help="Embeddings of the test images.")],
    texts: Annotated[Path, typer.Option(help="Embeddings of the test texts.")],
    text_image_index: Annotated[
        Path | None,
        typer.Option(help="Image row of each text (several captions per image)."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the metrics as JSON here.")] = None,
) -> None:
    """Retrieval R@1/5/10 both ways and mean R@1 (percent) of a fitted model."""
    est = SOTAlign.load(model)
    I = load_embedding_file(images, check=True)  # noqa: E741
    T = load_embedding_file(texts, check=True)
    index = None
    if text_image_index is not None:
        index = check_index(
            load_index(text_image_index), I.shape[0], T.shape[0], name=str(text_image_index)
        )
    metrics = retrieval_metrics(est.encode_images(I), est.encode_texts(T), index)
    print_metrics({str(est.method): metrics})
    if out is not None:
        write_json_atomic(out, metrics)
        console.print(f"wrote {out}")


def is_raw(path: Path) -> bool:
    """A folder or a list/text file (raw images or texts), not an embedding file."""
    return path.is_dir() or path.suffix.lower() not in EMBEDDING_SUFFIXES


@app.command()
def encode(
    model: Annotated[Path, typer.Option(help="A model folder written by `sotalign fit`.")],
    out: Annotated[Path, typer.Option(help="Output .npy file.")],
    images: Annotated[
        Path | None,
        typer.Option(
            help="Image embeddings (.npy, …), or raw images: a folder or a .txt list of paths."
        ),
    ] = None,
    texts: Annotated[
        Path | None,
        typer.Option(
            help="Text embeddings (.npy, …), or raw texts: .txt (one per line), .jsonl, .csv."
        ),
    ] = None,
    field: Annotated[str | None, typer.Option(help="Text field of a .jsonl/.csv file.")] = None,
    device: Annotated[
        str, typer.Option(help="Where raw inputs are encoded: auto, cpu, cuda.")
    ] = "auto",
    float16: Annotated[bool, typer.Option(help="Store float16 instead of float32.")] = False,
) -> None:
    """Map images or texts into the aligned space: embedding files, or raw images and texts
    when the model records its encoders (`sotalign fit` reads them from `sotalign embed`'s
    sidecars, or from --image-encoder/--text-encoder). Raw images also write OUT.paths.txt."""
    if (images is None) == (texts is None):
        raise ConfigError("give exactly one of --images or --texts")
    if out.suffix != ".npy":
        raise ConfigError(
            f"--out {out}: the aligned embeddings are written as a NumPy .npy file;"
            " give a name ending in .npy"
        )
    source = images if images is not None else texts
    assert source is not None
    if is_raw(source):
        am = AlignedModel.load(model, device=device)
        if images is not None:
            paths = list_images(images)
            Z = am.encode_image([str(p) for p in paths])
            with atomic_write(out.with_name(out.stem + ".paths.txt"), "w") as fh:
                fh.writelines(f"{p}\n" for p in paths)
        else:
            Z = am.encode_text(read_texts(source, field))
    else:
        est = SOTAlign.load(model)
        if images is not None:
            Z = est.encode_images(load_embedding_file(images, check=True))
        else:
            Z = est.encode_texts(load_embedding_file(source, check=True))
    Z = Z.astype(np.float16 if float16 else np.float32)
    with atomic_write(out, "wb") as fh:
        np.save(fh, Z)
    console.print(f"wrote {out} {Z.shape}")


@app.command()
def methods() -> None:
    """List the available methods."""
    specs = sorted(available_methods().items())
    width = max(len(name) for name, _ in specs)
    for name, spec in specs:
        console.print(f"[bold]{name:{width}s}[/bold]  {spec.summary}")
