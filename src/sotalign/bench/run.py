"""Benchmark sweeps: methods × number of pairs × seeds, plus unpaired-pool and batch sweeps.

Protocol (SPEC §5). For every setting (method, number of pairs n, seed s):

1. ``n`` pairs are drawn from the pair pool with ``seed = s``; draws are nested (for one seed the
   100 pairs are the first 100 of the 300), so supervision curves compare like with like.
2. Hyper-parameters are selected on a validation split carved from those ``n`` pairs only
   (:func:`sotalign.methods.selection.split_pairs`): SOTAlign's ``alpha="auto"`` scores the teacher
   alone, α = 0 and every α of ``alpha_grid``; a baseline with a ``--grid`` is scored the same
   way on the same split and refitted on all ``n`` pairs; otherwise the baseline's defaults are
   used (trained baselines still early-stop on their own split of the pairs).
3. The final model is evaluated once on the test split: retrieval R@1/5/10 both ways and the
   main metric mean R@1 = ½(I2T R@1 + T2I R@1); zero-shot top-1 where the data has classes
   (:func:`sotalign.eval.zero_shot_accuracy` on class prototypes built from prompt embeddings).

Two further sweeps run at one fixed number of pairs: the size of the unpaired pools
(``--unpaired-sizes``, seeded nested subsamples of both pools) and SOTAlign's unpaired batch size
(``--batch-sizes``).

Outputs in ``--out`` (all written atomically, ``results.json`` after every run so an interrupted
sweep loses at most one run and ``--resume`` continues it): ``results.json`` (every run with its
settings, test metrics, fit seconds and selection table), ``results.md`` (mean ± std over seeds
per method × pairs), ``pairs.png``/``unpaired.png``/``batch.png`` (mean R@1 curves) and
``diagnostics.json`` (mutual k-NN alignment of the two encoders on ≤ 1k pairs, k = 10, and the
spherical sliced Wasserstein distance between each unpaired pool and the paired pool).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..diagnostics import mutual_knn_alignment, pool_shift
from ..errors import ConfigError, InputError, closest
from ..estimator import SOTAlign
from ..eval import (
    class_prototypes,
    grouped_retrieval_metrics,
    retrieval_metrics,
    zero_shot_accuracy,
)
from ..io import atomic_write, write_json_atomic
from ..methods import Candidate, Fitted, Split, available_methods, select
from ..training import TrainData
from ..version import __version__
from .data import BenchData
from .report import MAIN, plot, render_markdown

__all__ = ["diagnostics", "run_bench", "run_one"]

# ----------------------------------------------------------------------------- one run


def _apply(params: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    p = dict(params)
    if key.startswith("method_params."):
        mp = dict(p.get("method_params") or {})
        mp[key.split(".", 1)[1]] = value
        p["method_params"] = mp
    else:
        p[key] = value
    return p


def _grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = [{}]
    for key, vals in grid.items():
        points = [{**pt, key: v} for pt in points for v in vals]
    return points


def _encode_eval(est: Any, data: BenchData) -> dict[str, Any]:
    zi = est.encode_images(np.asarray(data.test_images, np.float32))
    zt = est.encode_texts(np.asarray(data.test_texts, np.float32))
    out: dict[str, Any] = {"test": retrieval_metrics(zi, zt, data.test_index)}
    if data.test_groups is not None:  # pairs sharing a caption: any of the group is a hit
        out["test_grouped"] = grouped_retrieval_metrics(zi, zt, data.test_groups)
    if data.zero_shot is not None:
        labels, prompts = data.zero_shot
        _, n_tpl, d = prompts.shape
        zp = est.encode_texts(np.asarray(prompts.reshape(-1, d), np.float32))
        protos = class_prototypes(zp, n_tpl)
        out["zero_shot_top1"] = zero_shot_accuracy(zi, protos, labels)  # one label per image
    return out


def _grid_candidates(params: dict[str, Any], grid: dict[str, list[Any]]) -> list[Candidate]:
    """One candidate per grid point: the full method fitted with that point's parameters
    (its own selection included), scored on the validation pairs afterwards."""

    def make(point: dict[str, Any]) -> Candidate:
        p = dict(params)
        for k, v in point.items():
            p = _apply(p, k, v)

        def fit(d: TrainData, val: Any, stop_at: Any, final: bool) -> Fitted:
            arrays = (d.images.array, d.texts.array)
            un = (
                (None, None)
                if not d.has_unpaired
                else (d.unpaired_images.array, d.unpaired_texts.array)
            )  # type: ignore[union-attr]
            est = SOTAlign(**p).fit(*arrays, *un, check_inputs=False)
            return Fitted(est, history=est.train_history_)

        return Candidate(point, fit, {"params": p})

    return [make(pt) for pt in _grid_points(grid)]


def run_one(
    data: BenchData,
    method: str,
    n_pairs: int,
    seed: int,
    params: dict[str, Any],
    grid: dict[str, list[Any]] | None = None,
    unpaired_size: int | None = None,
) -> dict[str, Any]:
    """Fit ``method`` on ``n_pairs`` pairs drawn with ``seed`` and evaluate it on the test split."""
    spec = available_methods()[method]
    A, B = data.draw(n_pairs, seed)
    X, Y = data.unpaired(unpaired_size, seed) if spec.uses_unpaired else (None, None)
    p = {**params, "method": method, "seed": seed}
    t0 = time.perf_counter()
    grid_table: list[dict[str, Any]] = []
    if grid:  # grid points compete on a validation split of the pairs, the best is refitted
        data_all = TrainData.from_arrays(A, B, X, Y)
        split = Split.of(data_all, float(p.get("val_fraction", 0.2)), int(p.get("seed", 0)))
        sel = select(_grid_candidates(p, grid), data_all, split, refit=True)
        est = sel.aligner
        grid_table = sel.table
        p = next(row for row in grid_table if row["selected"])["params"]
        for row in grid_table:
            del row["params"]
    else:
        est = SOTAlign(**p).fit(A, B, X, Y, check_inputs=False)
    fit_s = time.perf_counter() - t0
    res = _encode_eval(est, data)
    n_un = 0 if X is None else len(X)
    settings = {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items() if k not in ("progress",)
    }
    sel = getattr(est, "selection_", []) or []
    chosen = next((c for c in sel if c.get("selected")), None)
    return {
        "method": method,
        "pairs": n_pairs,
        "seed": seed,
        "unpaired": n_un,
        "batch_unpaired": p.get("batch_unpaired"),
        "settings": settings,
        **res,
        "fit_seconds": fit_s,
        "selection": sel,
        "selected": None if chosen is None else chosen.get("candidate"),
        "teacher_search": getattr(est, "teacher_search_", []),
        "plan": getattr(est, "plan_", None),  # steps per training (a budget may lower them)
        "grid": grid_table,
    }


def diagnostics(data: BenchData, k: int = 10, n: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Mutual k-NN alignment of the encoders on ≤ ``n`` pool pairs and SSW pool shifts."""
    m = min(n, len(data.pool_images))
    out: dict[str, Any] = {}
    if m > k + 1:
        out["mutual_knn"] = {
            "k": k,
            "n_pairs": m,
            "value": mutual_knn_alignment(
                data.pool_images, data.pool_texts, k=k, n_samples=m, seed=seed
            ),
        }
    if data.unpaired_images is not None and data.unpaired_texts is not None:
        out["ssw_images"] = pool_shift(data.unpaired_images, data.pool_images, seed=seed)
        out["ssw_texts"] = pool_shift(data.unpaired_texts, data.pool_texts, seed=seed)
    return out


# ----------------------------------------------------------------------------- sweep


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    """Identity of a run (or a planned task) in a sweep: what the sweep varies, nothing else."""
    value = {"unpaired": r.get("unpaired_size"), "batch": r.get("batch_unpaired")}.get(r["sweep"])
    return (r["sweep"], r["method"], r["pairs"], r["seed"], value)


def run_bench(
    data: BenchData,
    out: str | Path,
    *,
    methods: Sequence[str] = ("sotalign", "sail", "cca"),
    pairs: Sequence[int] = (100, 300),
    seeds: Sequence[int] = (0, 1, 2),
    params: dict[str, Any] | None = None,
    method_params: dict[str, dict[str, Any]] | None = None,
    grids: dict[str, dict[str, list[Any]]] | None = None,
    unpaired_sizes: Sequence[int] = (),
    batch_sizes: Sequence[int] = (),
    sweep_pairs: int | None = None,
    sweep_methods: Sequence[str] | None = None,
    command: str | None = None,
    notes: str | None = None,
    resume: bool = False,
    include: Sequence[str | Path] = (),
    render_only: bool = False,
    pairs_sweep: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the sweeps and write ``results.json``, ``results.md``, PNG plots, diagnostics.

    ``params`` apply to every method, ``method_params[m]`` override them for method ``m``,
    ``grids[m]`` is selected on a validation split of the pairs (see the module doc). Returns
    the result dictionary written to ``results.json``. With ``resume`` the runs already in
    ``out/results.json`` are kept instead of refitted; ``include`` names further result folders
    whose runs are reused the same way (sweeps split over several processes, then merged); a
    run found in several places is taken from the last ``include`` that has it, and from
    ``out`` only when no ``include`` has it. ``render_only`` fits nothing: it reports every
    run found in those folders.
    ``pairs_sweep=False`` runs only the unpaired/batch sweeps (e.g. in a separate process).
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    known = available_methods()
    for m in list(methods) + list(sweep_methods or []):
        if m not in known:
            raise ConfigError(
                f"unknown method '{m}'{closest(m, list(known))}; choose from "
                + ", ".join(sorted(known))
            )
    method_params = method_params or {}
    grids = grids or {}
    for m in list(method_params) + list(grids):
        if m not in known:
            raise ConfigError(
                f"--method-set/--grid names unknown method '{m}'{closest(m, list(known))}"
            )
        if m not in methods and m not in (sweep_methods or []):
            log(f"warning: --method-set/--grid for '{m}', which is not in --methods")
    if len(seeds) < 1 or not pairs:
        raise ConfigError("give at least one seed and one number of pairs")
    if len(seeds) < 3:
        log(f"warning: {len(seeds)} seed(s); the std over seeds needs at least 3")
    params = {"progress": False, **(params or {})}
    sweep_pairs = sweep_pairs or min(pairs)
    if not render_only:  # refuse before the first fit, not after hours of them
        data.check_pairs(*pairs, *([sweep_pairs] if unpaired_sizes or batch_sizes else []))
    sweep_methods = list(sweep_methods or [m for m in methods if known[m].uses_unpaired])
    has_unpaired = data.unpaired_images is not None
    if (unpaired_sizes or batch_sizes) and not has_unpaired:
        raise ConfigError("--unpaired-sizes/--batch-sizes need unpaired pools")

    plan: list[dict[str, Any]] = []
    for n in pairs if pairs_sweep else ():
        for seed in seeds:
            for m in methods:
                plan.append({"sweep": "pairs", "method": m, "pairs": n, "seed": seed})
    for size in unpaired_sizes:
        for seed in seeds:
            for m in sweep_methods:
                plan.append(
                    {
                        "sweep": "unpaired",
                        "method": m,
                        "pairs": sweep_pairs,
                        "seed": seed,
                        "unpaired_size": size,
                    }
                )
    for bs in batch_sizes:
        for seed in seeds:
            plan.append(
                {
                    "sweep": "batch",
                    "method": "sotalign",
                    "pairs": sweep_pairs,
                    "seed": seed,
                    "batch_unpaired": bs,
                }
            )

    json_path = out / "results.json"
    done: dict[tuple[Any, ...], dict[str, Any]] = {}
    sources = [Path(p) / "results.json" for p in include or []]
    for src in sources:
        if not src.is_file():
            raise InputError(f"--include {src.parent}: no results.json there")
    if resume and json_path.is_file():  # first: --include folders override OUT's own runs
        sources.insert(0, json_path)
    earlier: dict[str, Any] = {}  # OUT's earlier results.json (resume only)
    for src in sources:
        loaded = json.loads(src.read_text())
        if src == json_path:
            earlier = loaded
        for r in loaded.get("runs", []):
            if not r.get("error"):
                done[_key(r)] = r
    # OUT's earlier runs, kept even when outside this plan
    own = [r for r in earlier.get("runs", []) if not r.get("error")]
    result: dict[str, Any] = {
        "command": command or "run_bench(...)",
        "data": data.summary(),
        "config": {
            "methods": list(methods),
            "pairs": list(pairs),
            "seeds": list(seeds),
            "params": params,
            "method_params": method_params,
            "grids": grids,
            "unpaired_sizes": list(unpaired_sizes),
            "batch_sizes": list(batch_sizes),
            "sweep_pairs": sweep_pairs,
            "sweep_methods": sweep_methods,
        },
        "environment": _environment(earlier.get("environment")),
        "diagnostics": {},
        "runs": [],
    }

    def flush() -> None:
        write_json_atomic(json_path, result)
        with atomic_write(out / "results.md", "w") as fh:
            fh.write(render_markdown(result, notes))

    # a resumed folder's time is the sum of its sessions' (a resume that fits nothing adds
    # seconds, it does not replace hours of fitting by them); a merge (render_only) fits
    # nothing: its time is its own, and the fitting it reports is summed in fit_seconds_total
    fitted_before = 0.0 if render_only else float(earlier.get("elapsed_seconds", 0.0))
    t_start = time.perf_counter() - fitted_before
    try:
        result["diagnostics"] = diagnostics(data)
    except Exception as exc:
        result["diagnostics"] = {"error": f"{type(exc).__name__}: {exc}"}
    write_json_atomic(out / "diagnostics.json", result["diagnostics"])
    if render_only:  # merge result folders: no fitting, every run found is reported
        plan = []
        result["runs"] = list(done.values())
        result["config"]["render_only"] = True
        result["fit_seconds_total"] = sum(float(r.get("fit_seconds", 0.0)) for r in done.values())
    else:  # runs kept from earlier are written before anything new is fitted
        result["runs"] = [done[_key(t)] for t in plan if _key(t) in done]
        planned = {_key(t) for t in plan}
        result["runs"] += [r for r in own if _key(r) not in planned]
    flush()
    for i, task in enumerate(plan, 1):
        if _key(task) in done:
            continue
        p = {**params, **method_params.get(task["method"], {})}
        if task.get("batch_unpaired") is not None:
            p["batch_unpaired"] = task["batch_unpaired"]
        label = (
            f"[{i}/{len(plan)}] {task['sweep']:8s} {task['method']:<16s} "
            f"pairs={task['pairs']:<5d} seed={task['seed']}"
        )
        if task.get("unpaired_size"):
            label += f" unpaired={task['unpaired_size']}"
        if task.get("batch_unpaired"):
            label += f" batch={task['batch_unpaired']}"
        try:
            r = run_one(
                data,
                task["method"],
                task["pairs"],
                task["seed"],
                p,
                grids.get(task["method"]),
                task.get("unpaired_size"),
            )
            r.update(task)
            if task["sweep"] == "unpaired":
                r["unpaired"] = task["unpaired_size"]
            log(
                f"{label}  mean R@1 {r['test'][MAIN]:5.1f}  ({r['fit_seconds']:.1f} s"
                + (f", selected {r['selected']}" if r.get("selected") else "")
                + ")"
            )
        except (ConfigError, InputError):
            raise
        except Exception as exc:
            r = {**task, "error": f"{type(exc).__name__}: {exc}", "settings": p}
            log(f"{label}  FAILED: {r['error']}")
        result["runs"].append(r)
        result["elapsed_seconds"] = time.perf_counter() - t_start
        flush()
    result["plots"] = plot(result, out)
    result["elapsed_seconds"] = time.perf_counter() - t_start
    flush()
    return result


def _environment(earlier: dict[str, Any] | None = None) -> dict[str, Any]:
    """Versions and machine of this session; a resumed folder keeps its first start
    (``started_utc``) and records this session's as ``resumed_utc``."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    env = {
        "sotalign": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "started_utc": now,
    }
    if earlier and earlier.get("started_utc"):
        env["started_utc"] = earlier["started_utc"]
        env["resumed_utc"] = now
    return env
