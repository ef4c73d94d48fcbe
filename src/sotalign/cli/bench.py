"""``sotalign bench``: the command line of :mod:`sotalign.bench` (option parsing and the
Typer command)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from ..bench import load_bench_data, run_bench
from ..config import PARAM_NAMES, load_params, parse_value
from ..errors import ConfigError, InputError, closest

__all__ = ["bench_app", "parse_grid", "parse_method_sets"]

# ----------------------------------------------------------------------------- parsing


def _parse_sets(items: Sequence[str] | None) -> dict[str, Any]:
    return load_params(None, list(items or []))


def parse_method_sets(items: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``METHOD:key=value`` items → ``{method: {key: value}}`` (values parsed as ``--set``)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        if ":" not in item or "=" not in item.split(":", 1)[1]:
            raise ConfigError(f"--method-set expects METHOD:key=value, got '{item}'")
        method, kv = item.split(":", 1)
        out.setdefault(method.strip(), {}).update(_parse_sets([kv]))
    return out


def parse_grid(items: Sequence[str] | None) -> dict[str, dict[str, list[Any]]]:
    """``METHOD:key=v1|v2|v3`` items → ``{method: {key: [v1, v2, v3]}}``.

    A key of ``method_params`` is written ``method_params.NAME`` (e.g. ``structure:
    method_params.lam=1|10|100``)."""
    out: dict[str, dict[str, list[Any]]] = {}
    for item in items or []:
        if ":" not in item or "=" not in item.split(":", 1)[1]:
            raise ConfigError(f"--grid expects METHOD:key=v1|v2, got '{item}'")
        method, kv = item.split(":", 1)
        key, values = kv.split("=", 1)
        key = key.strip()
        base = key.split(".", 1)[0]
        if base not in PARAM_NAMES or (base == "method_params") != ("." in key):
            raise ConfigError(
                f"--grid key '{key}'{closest(base, PARAM_NAMES)}: use a "
                "parameter name or method_params.NAME"
            )
        vals = [parse_value(v.strip()) for v in values.split("|") if v.strip()]
        if not vals:
            raise ConfigError(f"--grid '{item}' lists no value")
        out.setdefault(method.strip(), {})[key] = vals
    return out


def _ints(text: str | None, option: str) -> list[int]:
    if text is None or not str(text).strip():
        return []
    try:
        vals = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError as exc:
        raise ConfigError(f"{option} expects comma-separated integers, got '{text}'") from exc
    if any(v < 1 for v in vals):
        raise ConfigError(f"{option} values must be positive, got '{text}'")
    return vals


# ----------------------------------------------------------------------------- CLI


def _command_line(ctx: typer.Context) -> str:
    """The equivalent ``sotalign bench`` command line of the options given (defaults omitted)."""
    parts = ["sotalign", "bench"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value == param.default or value == [] or not param.opts:
            continue
        opt = max(param.opts, key=len)
        if isinstance(value, bool):
            parts.append(opt if value else f"--no-{opt[2:]}")
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            parts += [opt, str(v)]
    return shlex.join(parts)


bench_app = typer.Typer(
    help="Sweep methods × number of pairs × seeds (plus unpaired-pool and batch sweeps).",
    add_completion=False,
    pretty_exceptions_enable=False,
)

_Opt = typer.Option


@bench_app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    out: Annotated[Path, _Opt(help="Output folder (results.json, results.md, *.png).")],
    dataset: Annotated[
        str | None, _Opt(help="Bundled benchmark: emoji, wordnet, icons or icons-shifted.")
    ] = None,
    pairs_images: Annotated[Path | None, _Opt(help="Pair pool, image embeddings.")] = None,
    pairs_texts: Annotated[Path | None, _Opt(help="Pair pool, text embeddings.")] = None,
    unpaired_images: Annotated[Path | None, _Opt(help="Unpaired image embeddings.")] = None,
    unpaired_texts: Annotated[Path | None, _Opt(help="Unpaired text embeddings.")] = None,
    test_images: Annotated[Path | None, _Opt(help="Test image embeddings.")] = None,
    test_texts: Annotated[Path | None, _Opt(help="Test text embeddings.")] = None,
    test_index: Annotated[Path | None, _Opt(help="Image row of each test text.")] = None,
    methods: Annotated[str, _Opt(help="Comma-separated methods.")] = "sotalign,sail,cca",
    pairs: Annotated[str, _Opt(help="Comma-separated numbers of pairs.")] = "100,300",
    seeds: Annotated[str, _Opt(help="Comma-separated seeds (at least 3 for a std).")] = "0,1,2",
    unpaired_sizes: Annotated[
        str | None, _Opt(help="Unpaired pool sizes swept at --sweep-pairs pairs.")
    ] = None,
    batch_sizes: Annotated[
        str | None, _Opt(help="SOTAlign unpaired batch sizes swept at --sweep-pairs.")
    ] = None,
    sweep_pairs: Annotated[
        int | None, _Opt(help="Pairs of the unpaired/batch sweeps (default: min --pairs).")
    ] = None,
    sweep_methods: Annotated[
        str | None, _Opt(help="Methods of the unpaired sweep (default: those using unpaired).")
    ] = None,
    set_: Annotated[list[str] | None, _Opt("--set", help="key=value for every method.")] = None,
    method_set: Annotated[
        list[str] | None, _Opt(help="METHOD:key=value for one method (repeatable).")
    ] = None,
    grid: Annotated[
        list[str] | None, _Opt(help="METHOD:key=v1|v2 selected on validation (repeatable).")
    ] = None,
    threads: Annotated[int | None, _Opt(help="torch threads (1 is fastest when shared).")] = None,
    notes: Annotated[Path | None, _Opt(help="Markdown file appended as 'What we learned'.")] = None,
    resume: Annotated[bool, _Opt(help="Skip runs already in OUT/results.json.")] = False,
    include: Annotated[
        list[Path] | None, _Opt(help="Reuse the runs of another result folder (repeatable).")
    ] = None,
    render_only: Annotated[
        bool, _Opt(help="Fit nothing; report the runs of OUT and --include folders.")
    ] = False,
    pairs_sweep: Annotated[
        bool,
        _Opt(
            help="Run the methods x pairs x seeds sweep (--no-pairs-sweep: only the "
            "unpaired/batch sweeps)."
        ),
    ] = True,
) -> None:
    """Run a benchmark sweep and write JSON, Markdown, PNG plots and diagnostics to OUT."""
    if threads is not None:
        torch.set_num_threads(threads)
    params = _parse_sets(set_)
    per_method = parse_method_sets(method_set)
    for m, p in per_method.items():
        for k in p:
            if k not in PARAM_NAMES:  # pragma: no cover - load_params already checks
                raise ConfigError(f"--method-set {m}: unknown key '{k}'")
    data = load_bench_data(
        dataset,
        pairs_images=pairs_images,
        pairs_texts=pairs_texts,
        unpaired_images=unpaired_images,
        unpaired_texts=unpaired_texts,
        test_images=test_images,
        test_texts=test_texts,
        test_index=test_index,
    )
    note_text = None
    if notes is not None:
        if not notes.is_file():
            raise InputError(f"--notes {notes}: file not found")
        note_text = notes.read_text()
    cmd = _command_line(ctx)
    res = run_bench(
        data,
        out,
        methods=[m.strip() for m in methods.split(",") if m.strip()],
        pairs=_ints(pairs, "--pairs"),
        seeds=[int(s) for s in seeds.split(",") if s.strip()],
        params=params,
        method_params=per_method,
        grids=parse_grid(grid),
        unpaired_sizes=_ints(unpaired_sizes, "--unpaired-sizes"),
        batch_sizes=_ints(batch_sizes, "--batch-sizes"),
        sweep_pairs=sweep_pairs,
        sweep_methods=None
        if sweep_methods is None
        else [m.strip() for m in sweep_methods.split(",") if m.strip()],
        command=cmd,
        notes=note_text,
        resume=resume or render_only,
        include=include or [],
        render_only=render_only,
        pairs_sweep=pairs_sweep,
    )
    n_ok = sum(1 for r in res["runs"] if not r.get("error"))
    took = f"{res['elapsed_seconds']:.0f} s"
    if render_only:
        took += f"; the merged runs' fits took {res['fit_seconds_total']:.0f} s"
    print(f"{n_ok}/{len(res['runs'])} runs written to {out} ({took})")
