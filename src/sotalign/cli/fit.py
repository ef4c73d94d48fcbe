"""``sotalign fit``: fit an aligner on embedding files and save it."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import PARAM_NAMES, SOTAlignConfig, load_params
from ..embed import side_paths
from ..errors import InputError
from ..estimator import CONFIG_FILE, SOTAlign
from ..history import write_history
from ..io import (
    load_embedding_file,
    lock_output_dir,
    prepare_output_dir,
    validate_training_inputs,
)
from ..methods import get_method
from ..methods.common import CANDIDATES_DIR, table_file
from ..methods.plan import PLAN_FILE
from ..parallel import init_from_env, shutdown
from ..training.trainer import CKPT_PREFIX
from .app import app
from .console import console, err_console, print_selection

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
    budget: Annotated[
        str | None,
        typer.Option(
            help="Time for the whole fit (600, 90s, 10m, 1.5h): steps are planned to fit."
        ),
    ] = None,
    recipe: Annotated[
        str | None,
        typer.Option(
            help="Schedule of the unset parameters: auto (paper on CUDA, else cpu), paper, cpu."
        ),
    ] = None,
    image_encoder: Annotated[
        str | None,
        typer.Option(
            help="Encoder spec that made the image embeddings (default: read from the .json"
            " that `sotalign embed` writes beside them); recorded so the model takes raw images."
        ),
    ] = None,
    text_encoder: Annotated[
        str | None,
        typer.Option(help="Encoder spec that made the text embeddings (as --image-encoder)."),
    ] = None,
) -> None:
    """Fit an aligner on embedding files and save it to OUT.

    Before training, fit times a few steps and prints its plan ("3 candidates + refit × 300
    steps, about 4 min on cpu"); with --budget the steps are lowered to fit the time.

    Under torchrun (torchrun --nproc-per-node=N -m sotalign fit ...) the N processes train one
    model, each holding 1/N of every batch's rows and of the OT plan; rank 0 writes OUT."""
    get_method(method)
    params = load_params(config, set_)
    params["method"] = method
    if seed is not None:
        params["seed"] = seed
    if budget is not None:
        params["budget"] = budget
    if recipe is not None:
        params["recipe"] = recipe
    params.setdefault("progress", not quiet)
    params.setdefault("checkpoint_dir", str(out / "checkpoints"))
    params.setdefault("checkpoint_every", checkpoint_every)
    est = SOTAlign(**params)
    cfg = est.config()  # the whole configuration is checked before any data is read
    comm = init_from_env(cfg.train.device)  # under torchrun: join its group (else one process)
    writer = comm.rank == 0  # bars and the plan show on rank 0 only (training/, methods/plan)
    # a file in the way, a folder that cannot be written: refused before anything is created
    prepare_output_dir(out, overwrite=True, create=False)
    lock_ctx = lock_output_dir(out, "sotalign fit") if writer else contextlib.nullcontext()
    with lock_ctx as lock:  # one writer per folder (io/lock.py); under torchrun, rank 0
        if lock is not None and lock.stale_message:
            _note(lock.stale_message)
        stale = lock is not None and lock.stale is not None
        _check_checkpoints(out, cfg, overwrite, resume, stale, quiet=not writer)
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
        encoders = {
            "image_encoder": recorded_encoder(
                "image", image_encoder, paired_images, unpaired_images
            ),
            "text_encoder": recorded_encoder("text", text_encoder, paired_texts, unpaired_texts),
        }
        est.fit(A, B, X, Y, resume=resume, check_inputs=False, **encoders)
        if not writer:
            shutdown()
            return
        est.save(out, overwrite=True)
        run = {
            "world_size": est.world_size_,
            "backend": est.backend_,
            "plan": est.plan_,
            "teacher_search": est.teacher_search_,
        }
        write_history(out, est.train_history_, est.selection_, training=run)
    shutdown()
    if est.teacher_search_:
        rows = [{**r, "candidate": f"cca ridge {r['teacher_reg']:g}"} for r in est.teacher_search_]
        print_selection(rows, title="teacher ridge (validation pairs; MRR breaks R@1 ties)")
    if est.selection_:
        print_selection(est.selection_)
    console.print(
        f"[green]saved[/green] {method} model to {out} "
        f"({est.n_pairs_} pairs, {est.n_unpaired_[0]}+{est.n_unpaired_[1]} unpaired, "
        f"{est.fit_seconds_:.1f} s; training history in {out / 'history.json'})"
    )


def recorded_encoder(
    side: str, given: str | None, *files: Path | None
) -> str | dict[str, Any] | None:
    """The encoder that made a side's embedding files: ``given`` (``--image-encoder``), else
    the ``encoder`` record of their ``sotalign embed`` sidecars. Files embedded by different
    encoders, or a flag that contradicts a sidecar, are refused: the model would be wrong."""
    records: list[tuple[Path, dict[str, Any]]] = []
    for f in files:
        meta = side_paths(Path(f))["meta"] if f is not None else None
        if meta is None or not meta.is_file():
            continue
        try:
            info = json.loads(meta.read_text()).get("encoder")
        except (OSError, ValueError, AttributeError):
            continue  # not a sidecar of ours: nothing recorded
        if isinstance(info, dict) and isinstance(info.get("spec"), str):
            records.append((Path(f), info))  # type: ignore[arg-type]
    specs = {info["spec"] for _, info in records}
    if len(specs) > 1:
        (f1, i1), (f2, i2) = next(
            (a, b) for a in records for b in records if a[1]["spec"] != b[1]["spec"]
        )
        raise InputError(
            f"the {side} files were embedded by different encoders: {f1} by {i1['spec']!r},"
            f" {f2} by {i2['spec']!r}; embed every {side} file with one encoder"
        )
    if given is not None:
        if records and given.strip() != records[0][1]["spec"]:
            f, info = records[0]
            raise InputError(
                f"--{side}-encoder {given!r}, but {side_paths(f)['meta']} says {f} was embedded"
                f" by {info['spec']!r}; give the encoder that made the file, or leave it out"
            )
        return given
    return records[0][1] if records else None


def _note(line: str) -> None:
    err_console.print(line, markup=False, highlight=False, soft_wrap=True)


def _check_checkpoints(
    out: Path, cfg: SOTAlignConfig, overwrite: bool, resume: bool, stale: bool, quiet: bool
) -> None:
    """Refuse a non-empty OUT, and first one holding an interrupted fit (suggest --resume);
    say so when --resume finds nothing to resume. ``stale``: OUT held the lock of a dead run."""
    ckpt = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
    found = _checkpoints(ckpt, table_file(cfg))
    if found and not (overwrite or resume) and (stale or _unfinished(out, ckpt, found)):
        where = out if ckpt == out / "checkpoints" else ckpt
        raise InputError(
            f"{where} holds checkpoints of an interrupted fit: pass --resume to continue it,"
            " or --overwrite to start again"
        )
    prepare_output_dir(out, overwrite=overwrite or resume, create=False)
    if resume and not found and not quiet:
        _note(f"note: nothing to resume in {ckpt or out} (no checkpoints); starting a fresh fit")


def _checkpoints(ckpt: Path | None, table: Path | None) -> list[Path]:
    """The checkpoints in ``ckpt``: ``step-*`` folders, the candidates' checkpoints, the cached
    selection table and the plan."""
    if ckpt is None or not ckpt.is_dir():
        return []
    state = {table, ckpt / CANDIDATES_DIR, ckpt / PLAN_FILE}
    return [p for p in ckpt.iterdir() if p.name.startswith(CKPT_PREFIX) or p in state]


def _unfinished(out: Path, ckpt: Path | None, found: list[Path]) -> bool:
    """Whether the checkpoints are newer than the saved model (a finished fit saves its model
    after its last checkpoint, so its checkpoints are older than ``config.json``)."""
    try:
        saved = (out / CONFIG_FILE).stat().st_mtime_ns
        newest = max(p.stat().st_mtime_ns for p in [*found, *([ckpt] if ckpt else [])])
    except OSError:
        return True
    return newest > saved
