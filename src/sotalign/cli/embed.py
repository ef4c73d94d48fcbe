"""``sotalign embed images|texts``: raw data → embedding files with a frozen encoder."""

from __future__ import annotations

from pathlib import Path

import typer

from ..embed import (
    EmbedResult,
    check_output,
    embed_image_files,
    embed_text_list,
    list_images,
    read_texts,
    side_paths,
)
from ..encoders import load_image_encoder, load_text_encoder
from ..errors import ConfigError

__all__ = ["embed_app"]

# --------------------------------------------------------------------------------------------
# command line

embed_app = typer.Typer(
    help="Embed images or texts with a frozen encoder (offline, batched, resumable).",
    no_args_is_help=True,
    add_completion=False,
)


def _summary(result: EmbedResult, kind: str) -> None:
    sides = side_paths(result.out)
    msg = (
        f"wrote {result.out} ({result.n_rows} × {result.dim}); embedded {result.n_embedded_now}"
        f" {kind} in {result.seconds:.1f} s"
    )
    if result.n_embedded_now:
        msg += f" ({result.per_second:.1f} {kind}/s)"
    if result.resumed_shards:
        msg += f"; resumed {result.resumed_shards} finished shard(s)"
    if result.failed:
        msg += f"; {len(result.failed)} failed, listed in {sides['failed']}"
    typer.echo(msg, err=True)


@embed_app.command("images")
def images_command(
    encoder: str = typer.Option(
        ..., "--encoder", "-e", help="efficientnet-lite0, hf:<folder>, timm:<name>@<file>, ..."
    ),
    input: Path = typer.Option(
        ..., "--input", "-i", help="a folder of images or a .txt list of image paths"
    ),
    out: Path = typer.Option(..., "--out", "-o", help="output .npy file"),
    batch_size: int = typer.Option(64, help="images per forward pass"),
    dtype: str = typer.Option("float16", help="float16 or float32"),
    shard_size: int = typer.Option(10_000, help="images per resumable shard"),
    workers: int = typer.Option(4, help="threads decoding images"),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1 ..."),
    pooling: str = typer.Option(
        "cls+mean", help="hf: encoders only: cls+mean (paper), cls, mean, pooler"
    ),
    overwrite: bool = typer.Option(False, help="replace an existing output"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Embed a folder (or list) of images into a .npy matrix, one row per decodable image."""
    check_output(out, overwrite)
    files = list_images(input)
    options = {"pooling": pooling} if encoder.lower().startswith("hf:") else {}
    if pooling != "cls+mean" and not options:
        raise ConfigError("--pooling applies to hf: image encoders only")
    enc = load_image_encoder(encoder, device=device, **options)
    result = embed_image_files(
        enc,
        files,
        out,
        batch_size=batch_size,
        dtype=dtype,
        shard_size=shard_size,
        workers=workers,
        overwrite=overwrite,
        progress=not quiet,
    )
    _summary(result, "images")


@embed_app.command("texts")
def texts_command(
    encoder: str = typer.Option(
        ..., "--encoder", "-e", help="st:all-MiniLM-L6-v2, st:<folder>, hf:<folder>"
    ),
    input: Path = typer.Option(..., "--input", "-i", help=".txt (one per line), .jsonl or .csv"),
    out: Path = typer.Option(..., "--out", "-o", help="output .npy file"),
    field_name: str | None = typer.Option(
        None, "--field", help="jsonl/csv field holding the text (default: text/caption)"
    ),
    batch_size: int = typer.Option(128, help="texts per forward pass"),
    dtype: str = typer.Option("float16", help="float16 or float32"),
    shard_size: int = typer.Option(50_000, help="texts per resumable shard"),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1 ..."),
    overwrite: bool = typer.Option(False, help="replace an existing output"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Embed texts into a .npy matrix, one row per text, in file order."""
    check_output(out, overwrite)
    texts = read_texts(input, field_name)
    enc = load_text_encoder(encoder, device=device)
    result = embed_text_list(
        enc,
        texts,
        out,
        batch_size=batch_size,
        dtype=dtype,
        shard_size=shard_size,
        overwrite=overwrite,
        progress=not quiet,
    )
    _summary(result, "texts")
