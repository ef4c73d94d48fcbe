"""The ``sotalign`` command line: fit, eval, encode, embed, demo, bench.

Every user mistake (bad file, bad option) ends with a one-line ``error: …`` on stderr and exit
status 2, and nothing is written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from .errors import ConfigError, InputError, SotalignError, closest

app = typer.Typer(
    name="sotalign",
    help="Align frozen image and text encoders from a few pairs plus unpaired data (SOTAlign).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output (logs, CI) gets a wide console so tables are not folded at 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=160)
err_console = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=400)


def _mount_optional() -> None:
    """Mount sub-commands that live in their own modules (only if they import cleanly)."""
    try:
        from .embed import embed_app
    except ImportError:
        return
    app.add_typer(embed_app, name="embed", help="Embed raw images or texts with a frozen encoder.")


# ----------------------------------------------------------------------------- config parsing


def parse_value(text: str) -> Any:
    """``--set`` values: JSON when it parses (numbers, true/false, null, lists), else a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def load_params(config: Path | None, sets: list[str] | None) -> dict[str, Any]:
    """Merge a JSON/TOML config file and ``--set key=value`` overrides; check every key."""
    from .estimator import PARAM_NAMES

    params: dict[str, Any] = {}
    if config is not None:
        if not config.is_file():
            raise InputError(f"{config}: config file not found")
        try:
            if config.suffix == ".toml":
                import tomllib

                params.update(tomllib.loads(config.read_text()))
            else:
                params.update(json.loads(config.read_text()))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{config}: cannot parse config ({exc})") from exc
        if not isinstance(params, dict):
            raise InputError(f"{config}: the config must be a mapping of parameter names")
    for item in sets or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        key, value = item.split("=", 1)
        params[key.strip()] = parse_value(value.strip())
    for key in params:
        if key not in PARAM_NAMES:
            raise ConfigError(
                f"unknown config key '{key}'{closest(key, PARAM_NAMES)};"
                " see `sotalign fit --help` for the list"
            )
    if isinstance(params.get("alpha_grid"), list):
        params["alpha_grid"] = tuple(params["alpha_grid"])
    return params


def _load(path: Path | None, what: str, check: bool = False) -> Any:
    """Read an embedding file; with ``check`` also refuse NaN/Inf rows (chunked scan).

    ``FILE::NAME`` picks the array ``NAME`` of an HDF5, npz, safetensors or parquet file that
    holds several.
    """
    if path is None:
        return None
    from .io import check_finite, load_embeddings

    key = None
    text = str(path)
    if "::" in text and not Path(text).exists():
        text, key = text.rsplit("::", 1)
        path = Path(text)
    arr = load_embeddings(path, key=key)
    if check:
        check_finite(arr, str(path))
    return arr


# ----------------------------------------------------------------------------- commands


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
        typer.Option("--set", help="Override a parameter: key=value (repeatable)."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output folder.")] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue from the checkpoints in OUT/checkpoints.")
    ] = False,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N steps (0: off).")] = 200,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Fit an aligner on embedding files and save it to OUT."""
    from .estimator import SOTAlign, available_methods

    params = load_params(config, set_)
    params["method"] = method
    if method not in available_methods():
        methods = sorted(available_methods())
        raise ConfigError(
            f"unknown method '{method}'{closest(method, methods)}; choose one of "
            + ", ".join(methods)
        )
    if seed is not None:
        params["seed"] = seed
    params.setdefault("progress", not quiet)
    from .io import prepare_output_dir, validate_training_inputs

    prepare_output_dir(out, overwrite=overwrite or resume, create=False)
    params.setdefault("checkpoint_dir", str(out / "checkpoints"))
    params.setdefault("checkpoint_every", checkpoint_every)
    A = _load(paired_images, "paired images")
    B = _load(paired_texts, "paired texts")
    X = _load(unpaired_images, "unpaired images")
    Y = _load(unpaired_texts, "unpaired texts")
    names = {"A": str(paired_images), "B": str(paired_texts)}
    if unpaired_images is not None:
        names["X"] = str(unpaired_images)
    if unpaired_texts is not None:
        names["Y"] = str(unpaired_texts)
    validate_training_inputs(A, B, X, Y, names=names)
    est = SOTAlign(**params)
    est.fit(A, B, X, Y, resume=resume, check_inputs=False)
    est.save(out, overwrite=True)
    if est.selection_:
        _print_selection(est.selection_)
    console.print(
        f"[green]saved[/green] {method} model to {out} "
        f"({est.n_pairs_} pairs, {est.n_unpaired_[0]}+{est.n_unpaired_[1]} unpaired, "
        f"{est.fit_seconds_:.1f} s)"
    )


def print_metrics(rows: dict[str, dict[str, Any]], extra: tuple[str, ...] = ()) -> None:
    """Print retrieval metrics (percent) as a table, one row per method."""
    from rich.table import Table

    table = Table()
    cols = ["I2T R@1", "I2T R@5", "I2T R@10", "T2I R@1", "T2I R@5", "T2I R@10", "mean R@1"]
    table.add_column("method")
    for c in (*cols, *extra):
        table.add_column(c, justify="right")
    for name, m in rows.items():
        vals = [m["i2t"][f"R@{k}"] for k in (1, 5, 10)] + [m["t2i"][f"R@{k}"] for k in (1, 5, 10)]
        vals += [m["mean_R@1"], *(m.get(c, float("nan")) for c in extra)]
        table.add_row(name, *(f"{v:.1f}" for v in vals))
    console.print(table)


def _print_selection(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="validation selection (held-out pairs; MRR breaks R@1 ties)")
    for col in ("candidate", "val mean R@1", "val MRR", "best step", ""):
        table.add_column(col)
    for r in rows:
        score, mrr = r["val_mean_R@1"], r.get("val_MRR")
        table.add_row(
            r["candidate"],
            "-" if score is None else f"{score:.1f}",
            "-" if mrr is None else f"{mrr:.1f}",
            "-" if r.get("best_step") is None else str(r["best_step"]),
            "selected" if r.get("selected") else "",
        )
    console.print(table)


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
    from .estimator import SOTAlign
    from .eval import retrieval_metrics
    from .io import write_json_atomic

    est = SOTAlign.load(model)
    I = _load(images, "images", check=True)  # noqa: E741
    T = _load(texts, "texts", check=True)
    index = None
    if text_image_index is not None:
        from .io import check_index, load_index

        index = check_index(
            load_index(text_image_index), I.shape[0], T.shape[0], name=str(text_image_index)
        )
    metrics = retrieval_metrics(est.encode_images(I), est.encode_texts(T), index)
    print_metrics({str(est.method): metrics})
    if out is not None:
        write_json_atomic(out, metrics)
        console.print(f"wrote {out}")


@app.command()
def encode(
    model: Annotated[Path, typer.Option(help="A model folder written by `sotalign fit`.")],
    out: Annotated[Path, typer.Option(help="Output .npy file.")],
    images: Annotated[Path | None, typer.Option(help="Image embeddings to map.")] = None,
    texts: Annotated[Path | None, typer.Option(help="Text embeddings to map.")] = None,
    float16: Annotated[bool, typer.Option(help="Store float16 instead of float32.")] = False,
) -> None:
    """Map image or text embeddings into the aligned space."""
    import numpy as np

    from .estimator import SOTAlign
    from .io import atomic_write

    if (images is None) == (texts is None):
        raise ConfigError("give exactly one of --images or --texts")
    est = SOTAlign.load(model)
    if images is not None:
        Z = est.encode_images(_load(images, "images", check=True))
    else:
        Z = est.encode_texts(_load(texts, "texts", check=True))
    Z = Z.astype(np.float16 if float16 else np.float32)
    with atomic_write(out, "wb") as fh:
        np.save(fh, Z)
    console.print(f"wrote {out} {Z.shape}")


@app.command()
def methods() -> None:
    """List the available methods."""
    from .estimator import available_methods

    specs = sorted(available_methods().items())
    width = max(len(name) for name, _ in specs)
    for name, spec in specs:
        console.print(f"[bold]{name:{width}s}[/bold]  {spec.summary}")


@app.command()
def demo(
    pairs: Annotated[int, typer.Option(help="Number of pairs drawn from the pool.")] = 100,
    out: Annotated[Path, typer.Option(help="Folder for results JSON and plot.")] = Path("out/demo"),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    from_scratch: Annotated[
        bool, typer.Option(help="Render, embed, fit and evaluate from raw data.")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Fit SOTAlign, SAIL and the CCA teacher on the bundled emoji data and compare them."""
    from .demo import run_demo

    run_demo(pairs=pairs, out=out, seed=seed, from_scratch=from_scratch, progress=not quiet)


def main() -> None:
    """Console entry point: user errors → one line on stderr, exit status 2."""
    _mount_optional()
    try:
        from .bench import bench_app

        app.add_typer(bench_app, name="bench", help="Sweep methods, pairs and seeds.")
    except ImportError:
        pass
    try:
        app()
    except SotalignError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
