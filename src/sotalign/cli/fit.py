"""``sotalign fit``: fit an aligner on embedding files and save it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..config import PARAM_NAMES, load_params
from ..estimator import SOTAlign
from ..io import load_embedding_file, prepare_output_dir, validate_training_inputs
from ..methods import get_method
from .app import app
from .console import console, print_selection

__all__ = ["fit"]

_KEYS = "Keys: " + ", ".join(PARAM_NAMES) + "."


@app.command()
def fit(
    paired_images: Annotated[Path, typer.Option(help="Embeddings of the paired images.")],
    paired_texts: Annotated[Path, typer.Option(help="Embeddings of the paired texts (same rows).")],
    out: Annotated[Path, typer.Option(help="Output folder for the fitted model.")],
    unpaired_images: Annotated[
        Path | None, typer.Option(help="Embeddings of unpaired images.")
    ] = None,
    unpaired_texts: Annotated[
        Path | None, typer.Option(help="Embeddings of unpaired texts.")
    ] = None,
    method: Annotated[str, typer.Option(help="sotalign, sail, cca, procrustes, ...")] = "sotalign",
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    config: Annotated[Path | None, typer.Option(help="JSON or TOML file of parameters.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help=f"Override a parameter: key=value (repeatable). {_KEYS}"),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output folder.")] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue from the checkpoints in OUT/checkpoints.")
    ] = False,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N steps (0: off).")] = 200,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Fit an aligner on embedding files and save it to OUT."""
    get_method(method)
    params = load_params(config, set_)
    params["method"] = method
    if seed is not None:
        params["seed"] = seed
    params.setdefault("progress", not quiet)
    prepare_output_dir(out, overwrite=overwrite or resume, create=False)
    params.setdefault("checkpoint_dir", str(out / "checkpoints"))
    params.setdefault("checkpoint_every", checkpoint_every)
    est = SOTAlign(**params)
    est.config()  # the whole configuration is checked before any data is read
    A = load_embedding_file(paired_images)
    B = load_embedding_file(paired_texts)
    X = load_embedding_file(unpaired_images)
    Y = load_embedding_file(unpaired_texts)
    names = {"A": str(paired_images), "B": str(paired_texts)}
    if unpaired_images is not None:
        names["X"] = str(unpaired_images)
    if unpaired_texts is not None:
        names["Y"] = str(unpaired_texts)
    validate_training_inputs(A, B, X, Y, names=names)
    est.fit(A, B, X, Y, resume=resume, check_inputs=False)
    est.save(out, overwrite=True)
    if est.selection_:
        print_selection(est.selection_)
    console.print(
        f"[green]saved[/green] {method} model to {out} "
        f"({est.n_pairs_} pairs, {est.n_unpaired_[0]}+{est.n_unpaired_[1]} unpaired, "
        f"{est.fit_seconds_:.1f} s)"
    )
