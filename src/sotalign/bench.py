"""``sotalign bench``: sweep methods × number of pairs × seeds, plus unpaired-pool and batch sweeps.

Protocol (SPEC §5). For every setting (method, number of pairs n, seed s):

1. ``n`` pairs are drawn from the pair pool with ``seed = s``; draws are nested (for one seed the
   100 pairs are the first 100 of the 300), so supervision curves compare like with like.
2. Hyper-parameters are selected on a validation split carved from those ``n`` pairs only
   (:func:`sotalign.estimator.split_pairs`): SOTAlign's ``alpha="auto"`` scores the teacher
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
import math
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from .errors import ConfigError, InputError, closest

__all__ = ["BenchData", "bench_app", "load_bench_data", "parse_grid", "run_bench"]

MAIN = "mean_R@1"


# ----------------------------------------------------------------------------- data


@dataclass
class BenchData:
    """Everything a sweep needs: a pair pool, unpaired pools, a test split, optional classes.

    ``draw(n, seed)`` returns ``n`` row-aligned pairs ``(A, B)`` from the pool (nested across
    ``n`` for one seed). ``zero_shot`` is ``(test_labels, prompt_embeddings, n_templates)``
    with prompt embeddings in the text encoder's space (classes × templates × d_y), or None.
    """

    name: str
    pool_images: np.ndarray
    pool_texts: np.ndarray
    unpaired_images: np.ndarray | None
    unpaired_texts: np.ndarray | None
    test_images: np.ndarray
    test_texts: np.ndarray
    test_index: np.ndarray | None = None
    zero_shot: tuple[np.ndarray, np.ndarray] | None = None
    draw_fn: Callable[[int, int], tuple[np.ndarray, np.ndarray]] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def draw(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        if self.draw_fn is not None:
            return self.draw_fn(n, seed)
        m = len(self.pool_images)
        if not 1 <= n <= m:
            raise InputError(f"--pairs {n} is outside 1..{m} (the size of the pair pool)")
        idx = np.random.default_rng(seed).permutation(m)[:n]
        return (np.asarray(self.pool_images[idx], np.float32),
                np.asarray(self.pool_texts[idx], np.float32))

    def unpaired(self, size: int | None, seed: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Both unpaired pools, or seeded nested subsamples of ``size`` rows of each."""
        X, Y = self.unpaired_images, self.unpaired_texts
        if X is None or Y is None or size is None:
            return X, Y
        out = []
        for k, P in enumerate((X, Y)):
            if size > len(P):
                raise InputError(
                    f"--unpaired-sizes {size} exceeds the unpaired pool of {len(P)} rows"
                )
            idx = np.sort(np.random.default_rng(10_007 * seed + k).permutation(len(P))[:size])
            out.append(np.asarray(P[idx], np.float32))
        return out[0], out[1]

    def summary(self) -> dict[str, Any]:
        def n(a: Any) -> int:
            return 0 if a is None else len(a)

        return {
            "dataset": self.name,
            "pair_pool": n(self.pool_images),
            "unpaired_images": n(self.unpaired_images),
            "unpaired_texts": n(self.unpaired_texts),
            "test_images": n(self.test_images),
            "test_texts": n(self.test_texts),
            "d_x": int(self.pool_images.shape[1]),
            "d_y": int(self.pool_texts.shape[1]),
            **self.info,
        }


def _emoji_data() -> BenchData:
    from .datasets import emoji

    d = emoji.load_emoji()

    def draw(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        p = emoji.draw_pairs(d, n, seed)
        return p.images, p.texts

    return BenchData(
        "emoji", d.pool_images, d.pool_texts, d.unpaired_images, d.unpaired_texts,
        d.test_images, d.test_texts, d.test_text_to_image,
        zero_shot=(d.test_groups, d.group_prompts), draw_fn=draw,
        info={"zero_shot": f"{len(d.group_names)} emoji groups x {len(d.templates)} templates"},
    )


def _wordnet_data() -> BenchData:
    from .datasets import wordnet

    d = wordnet.load_wordnet()

    def draw(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        p = wordnet.draw_pairs(d, n, seed)
        return p.a, p.b

    tx, ty = d.test()
    pool = d.pair_pool_idx
    return BenchData(
        "wordnet", np.asarray(d.x[pool], np.float32), np.asarray(d.y[pool], np.float32),
        d.unpaired_x(), d.unpaired_y(), tx, ty, None, draw_fn=draw,
        info={"encoders": "GloVe-50 mean (images side) / all-MiniLM-L6-v2 (texts side)"},
    )


def _load_file(path: Path | None, what: str) -> np.ndarray | None:
    if path is None:
        return None
    from .io import check_finite, load_embeddings

    key = None
    text = str(path)
    if "::" in text and not Path(text).exists():
        text, key = text.rsplit("::", 1)
        path = Path(text)
    arr = load_embeddings(path, key=key)
    check_finite(arr, str(path))
    return arr


def load_bench_data(
    dataset: str | None = None,
    *,
    pairs_images: Path | None = None,
    pairs_texts: Path | None = None,
    unpaired_images: Path | None = None,
    unpaired_texts: Path | None = None,
    test_images: Path | None = None,
    test_texts: Path | None = None,
    test_index: Path | None = None,
) -> BenchData:
    """A bundled benchmark (``emoji``, ``wordnet``) or user embedding files."""
    files = (pairs_images, pairs_texts, unpaired_images, unpaired_texts, test_images, test_texts)
    if dataset is not None:
        if any(f is not None for f in (*files, test_index)):
            raise ConfigError("give either --dataset or embedding files (--pairs-images ...), "
                              "not both")
        loaders = {"emoji": _emoji_data, "wordnet": _wordnet_data}
        if dataset not in loaders:
            raise ConfigError(f"unknown --dataset '{dataset}'{closest(dataset, list(loaders))};"
                              " choose emoji or wordnet")
        return loaders[dataset]()
    if pairs_images is None or pairs_texts is None or test_images is None or test_texts is None:
        raise ConfigError("give --dataset emoji|wordnet, or at least --pairs-images, "
                          "--pairs-texts, --test-images and --test-texts")
    if (unpaired_images is None) != (unpaired_texts is None):
        raise ConfigError("give both --unpaired-images and --unpaired-texts, or neither")
    A, B = _load_file(pairs_images, "pair images"), _load_file(pairs_texts, "pair texts")
    assert A is not None and B is not None
    if A.shape[0] != B.shape[0]:
        raise InputError(f"{pairs_images} has {A.shape[0]} rows but {pairs_texts} has "
                         f"{B.shape[0]}: the pair pool must be row-aligned")
    X, Y = _load_file(unpaired_images, "unpaired images"), _load_file(unpaired_texts, "")
    TX, TY = _load_file(test_images, "test images"), _load_file(test_texts, "test texts")
    assert TX is not None and TY is not None
    for name, arr, ref, path in (("unpaired images", X, A, unpaired_images),
                                 ("unpaired texts", Y, B, unpaired_texts),
                                 ("test images", TX, A, test_images),
                                 ("test texts", TY, B, test_texts)):
        if arr is not None and arr.shape[1] != ref.shape[1]:
            raise InputError(f"{path}: {name} have {arr.shape[1]} columns, the pairs "
                             f"{ref.shape[1]}; use embeddings of the same encoder")
    idx = None
    if test_index is not None:
        from .io import load_index

        idx = load_index(test_index)
        if len(idx) != len(TY) or (len(idx) and int(idx.max()) >= len(TX)):
            raise InputError(f"{test_index}: needs one image row (< {len(TX)}) per test text "
                             f"({len(TY)} texts)")
    elif len(TX) != len(TY):
        raise InputError(f"{len(TX)} test images but {len(TY)} test texts: pass --test-index "
                         "(the image row of each text)")
    return BenchData("files", A, B, X, Y, TX, TY, idx,
                     info={"pairs_images": str(pairs_images), "pairs_texts": str(pairs_texts)})


# ----------------------------------------------------------------------------- parsing


def _parse_sets(items: Sequence[str] | None) -> dict[str, Any]:
    from .cli import load_params

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
    from .cli import parse_value
    from .estimator import PARAM_NAMES

    out: dict[str, dict[str, list[Any]]] = {}
    for item in items or []:
        if ":" not in item or "=" not in item.split(":", 1)[1]:
            raise ConfigError(f"--grid expects METHOD:key=v1|v2, got '{item}'")
        method, kv = item.split(":", 1)
        key, values = kv.split("=", 1)
        key = key.strip()
        base = key.split(".", 1)[0]
        if base not in PARAM_NAMES or (base == "method_params") != ("." in key):
            raise ConfigError(f"--grid key '{key}'{closest(base, PARAM_NAMES)}: use a "
                              "parameter name or method_params.NAME")
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
    from .eval import class_prototypes, retrieval_metrics, zero_shot_accuracy

    zi = est.encode_images(np.asarray(data.test_images, np.float32))
    zt = est.encode_texts(np.asarray(data.test_texts, np.float32))
    out: dict[str, Any] = {"test": retrieval_metrics(zi, zt, data.test_index)}
    if data.zero_shot is not None:
        labels, prompts = data.zero_shot
        _, n_tpl, d = prompts.shape
        zp = est.encode_texts(np.asarray(prompts.reshape(-1, d), np.float32))
        protos = class_prototypes(zp, n_tpl)
        out["zero_shot_top1"] = zero_shot_accuracy(zi, protos, labels)  # one label per image
    return out


def _select_on_pairs(
    params: dict[str, Any], grid: dict[str, list[Any]], A: np.ndarray, B: np.ndarray,
    X: Any, Y: Any,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score every grid point on a validation split of the pairs; return the best params.

    Points compare by validation mean R@1, ties broken by the mean reciprocal rank; exact ties
    keep the earlier point."""
    from .estimator import SOTAlign, split_pairs
    from .eval import paired_rank_metrics, selection_key

    frac = float(params.get("val_fraction", 0.2))
    tr, va = split_pairs(len(A), frac, int(params.get("seed", 0)))
    table = []
    for pt in _grid_points(grid):
        p = dict(params)
        for k, v in pt.items():
            p = _apply(p, k, v)
        est = SOTAlign(**p).fit(A[tr], B[tr], X, Y, check_inputs=False)
        m = paired_rank_metrics(est.encode_images(A[va]), est.encode_texts(B[va]))
        table.append({"candidate": pt, "val_mean_R@1": m[MAIN], "val_MRR": m["MRR"]})
    best = max(table, key=lambda r: selection_key(r["val_mean_R@1"], r["val_MRR"]))
    for r in table:
        r["selected"] = r is best
    p = dict(params)
    for k, v in best["candidate"].items():
        p = _apply(p, k, v)
    return p, table


def run_one(
    data: BenchData, method: str, n_pairs: int, seed: int, params: dict[str, Any],
    grid: dict[str, list[Any]] | None = None, unpaired_size: int | None = None,
) -> dict[str, Any]:
    """Fit ``method`` on ``n_pairs`` pairs drawn with ``seed`` and evaluate it on the test split."""
    from .estimator import SOTAlign, available_methods

    spec = available_methods()[method]
    A, B = data.draw(n_pairs, seed)
    X, Y = data.unpaired(unpaired_size, seed) if spec.uses_unpaired else (None, None)
    p = {**params, "method": method, "seed": seed}
    t0 = time.perf_counter()
    grid_table: list[dict[str, Any]] = []
    if grid:
        p, grid_table = _select_on_pairs(p, grid, A, B, X, Y)
    est = SOTAlign(**p).fit(A, B, X, Y, check_inputs=False)
    fit_s = time.perf_counter() - t0
    res = _encode_eval(est, data)
    n_un = 0 if X is None else len(X)
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items()
                if k not in ("progress",)}
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
        "grid": grid_table,
    }


# ----------------------------------------------------------------------------- aggregation


def _mean_std(vals: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(vals, float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def aggregate(runs: list[dict[str, Any]], sweep: str, xkey: str,
              metric: Callable[[dict[str, Any]], float | None]) -> dict[str, dict[int, Any]]:
    """``{method: {x: (mean, std, n)}}`` over seeds for one sweep."""
    groups: dict[str, dict[int, list[float]]] = {}
    for r in runs:
        if r.get("sweep") != sweep or r.get("error"):
            continue
        v = metric(r)
        if v is None:
            continue
        groups.setdefault(r["method"], {}).setdefault(int(r[xkey]), []).append(float(v))
    return {m: {x: (*_mean_std(v), len(v)) for x, v in sorted(d.items())}
            for m, d in groups.items()}


def with_reference(runs: list[dict[str, Any]], sweep: str, xkey: str) -> list[dict[str, Any]]:
    """The runs of an ``unpaired`` or ``batch`` sweep plus, as its reference point, the main
    sweep's runs of the same method, pairs and seed (full pools, the common batch size)."""
    swept = [r for r in runs if r.get("sweep") == sweep]
    keys = {(r["method"], r["pairs"], r["seed"]) for r in swept}
    ref = [{**r, "sweep": sweep} for r in runs
           if r.get("sweep") == "pairs" and (r["method"], r["pairs"], r["seed"]) in keys
           and r.get(xkey) is not None
           and not any(int(r[xkey]) == int(q[xkey]) for q in swept)]
    return swept + ref


def _cell(t: tuple[float, float, int] | None, best: bool = False) -> str:
    if t is None:
        return "—"
    s = f"{t[0]:.1f} ± {t[1]:.1f}" if t[2] > 1 else f"{t[0]:.1f} (1 seed)"
    if 1 < t[2] < 3:
        s += f" ({t[2]} seeds)"
    return f"**{s}**" if best else s


def _table(agg: dict[str, dict[int, Any]], xlabel: str, methods: Sequence[str]) -> str:
    xs = sorted({x for d in agg.values() for x in d})
    if not xs:
        return "(no runs)"
    best = {x: max((agg[m][x][0] for m in agg if x in agg[m]), default=math.nan) for x in xs}
    lines = [f"| method \\ {xlabel} | " + " | ".join(str(x) for x in xs) + " |",
             "|---" * (len(xs) + 1) + "|"]
    for m in [m for m in methods if m in agg] + [m for m in agg if m not in methods]:
        cells = [_cell(agg[m].get(x), x in agg[m] and agg[m][x][0] == best[x]) for x in xs]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _selection_summary(runs: list[dict[str, Any]]) -> str:
    rows: dict[tuple[str, int], list[str]] = {}
    for r in runs:
        if r.get("error") or r.get("sweep") != "pairs":
            continue
        if r.get("selected") is not None:
            rows.setdefault((r["method"], r["pairs"]), []).append(str(r["selected"]))
        elif r.get("grid"):
            pick = next(g["candidate"] for g in r["grid"] if g["selected"])
            rows.setdefault((r["method"], r["pairs"]), []).append(json.dumps(pick))
    if not rows:
        return ""
    lines = ["| method | pairs | selected per seed |", "|---|---|---|"]
    for (m, n), v in sorted(rows.items()):
        lines.append(f"| {m} | {n} | {', '.join(v)} |")
    return "\n".join(lines)


def _timings(runs: list[dict[str, Any]], methods: Sequence[str]) -> str:
    agg = aggregate(runs, "pairs", "pairs", lambda r: r["fit_seconds"])
    if not agg:
        return ""
    xs = sorted({x for d in agg.values() for x in d})
    lines = ["| method \\ pairs | " + " | ".join(str(x) for x in xs) + " |",
             "|---" * (len(xs) + 1) + "|"]
    for m in [m for m in methods if m in agg]:
        cells = [f"{agg[m][x][0]:.1f}" if x in agg[m] else "—" for x in xs]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(result: dict[str, Any], notes: str | None = None) -> str:
    """The Markdown report of a bench result (tables of mean ± std over seeds)."""
    runs = result["runs"]
    methods = result["config"]["methods"]
    cfg = result["config"]
    out = [f"# sotalign bench — {result['data']['dataset']}", ""]
    out += ["Command:", "", "```", result["command"], "```", ""]
    out += [f"Data: `{json.dumps(result['data'])}`", "",
            f"Common parameters: `{json.dumps(cfg['params'])}`; per-method: "
            f"`{json.dumps(cfg['method_params'])}`; grids: `{json.dumps(cfg['grids'])}`", ""]
    seeds = cfg["seeds"]
    out += [f"## Test mean R@1 (%) vs number of pairs — mean ± std over seeds {seeds}", "",
            "Best mean per column in bold. Hyper-parameters selected on a validation split of "
            "the drawn pairs; the test split is used once per final model.", "",
            _table(aggregate(runs, "pairs", "pairs", lambda r: r["test"][MAIN]), "pairs",
                   methods), ""]
    for d, lab in (("i2t", "I2T"), ("t2i", "T2I")):
        out += [f"### {lab} R@1", "",
                _table(aggregate(runs, "pairs", "pairs", lambda r, d=d: r["test"][d]["R@1"]),
                       "pairs", methods), ""]
    if any("zero_shot_top1" in r for r in runs):
        out += ["## Zero-shot top-1 (%)", "",
                _table(aggregate(runs, "pairs", "pairs", lambda r: r.get("zero_shot_top1")),
                       "pairs", methods), ""]
    def sweep_pairs(sweep: str) -> str:
        return ", ".join(str(n) for n in sorted({r["pairs"] for r in runs
                                                 if r.get("sweep") == sweep}))

    if any(r.get("sweep") == "unpaired" for r in runs):
        out += [f"## Test mean R@1 vs unpaired samples per pool ({sweep_pairs('unpaired')} "
                "pairs)", "",
                "The largest size is the main table's run (full pools).", "",
                _table(aggregate(with_reference(runs, "unpaired", "unpaired"), "unpaired",
                                 "unpaired", lambda r: r["test"][MAIN]), "unpaired", methods),
                ""]
    if any(r.get("sweep") == "batch" for r in runs):
        out += [f"## Test mean R@1 vs unpaired batch size ({sweep_pairs('batch')} pairs)", "",
                _table(aggregate(with_reference(runs, "batch", "batch_unpaired"), "batch",
                                 "batch_unpaired", lambda r: r["test"][MAIN]), "batch", methods),
                ""]
    sel = _selection_summary(runs)
    if sel:
        out += ["## Selected candidates (validation split of the pairs)", "", sel, ""]
    tim = _timings(runs, methods)
    if tim:
        out += ["## Mean fit seconds (selection included)", "", tim, ""]
    errs = [r for r in runs if r.get("error")]
    if errs:
        out += ["## Failed runs", ""] + [
            f"- {r['method']} pairs={r['pairs']} seed={r['seed']}: {r['error']}" for r in errs
        ] + [""]
    diag = result.get("diagnostics")
    if diag:
        out += ["## Diagnostics", "", f"`{json.dumps(diag)}`", ""]
    out += [f"Environment: {json.dumps(result['environment'])}", ""]
    if notes:
        out += ["## What we learned", "", notes.strip(), ""]
    return "\n".join(out)


def _plot(result: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_write

    written = []
    runs = result["runs"]
    specs = [("pairs", "pairs", "number of pairs", "pairs.png"),
             ("unpaired", "unpaired", "unpaired samples per pool", "unpaired.png"),
             ("batch", "batch_unpaired", "unpaired batch size", "batch.png")]
    for sweep, key, xlabel, fname in specs:
        pts = runs if sweep == "pairs" else with_reference(runs, sweep, key)
        agg = aggregate(pts, sweep, key, lambda r: r["test"][MAIN])
        if not agg:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        cmap = plt.get_cmap("tab10" if len(agg) <= 10 else "tab20")
        for k, (m, d) in enumerate(agg.items()):
            xs = list(d)
            ax.errorbar(xs, [d[x][0] for x in xs], yerr=[d[x][1] for x in xs], marker="o",
                        capsize=3, label=m, color=cmap(k % cmap.N),
                        linewidth=2.5 if m == "sotalign" else 1.5)
        ax.set_xscale("log")
        xs_all = sorted({x for d in agg.values() for x in d})
        ax.set_xticks(xs_all, [f"{x:,}" for x in xs_all])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test mean R@1 (%)")
        ax.set_title(f"{result['data']['dataset']}: mean ± std over seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        with atomic_write(out / fname, "wb") as fh:
            fig.savefig(fh, format="png", dpi=110)
        plt.close(fig)
        written.append(fname)
    return written


def diagnostics(data: BenchData, k: int = 10, n: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Mutual k-NN alignment of the encoders on ≤ ``n`` pool pairs and SSW pool shifts."""
    from .diagnostics import mutual_knn_alignment, pool_shift

    m = min(n, len(data.pool_images))
    out: dict[str, Any] = {}
    if m > k + 1:
        out["mutual_knn"] = {"k": k, "n_pairs": m, "value": mutual_knn_alignment(
            data.pool_images, data.pool_texts, k=k, n_samples=m, seed=seed)}
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
    from .estimator import available_methods
    from .io import write_json_atomic

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    known = available_methods()
    for m in list(methods) + list(sweep_methods or []):
        if m not in known:
            raise ConfigError(f"unknown method '{m}'{closest(m, list(known))}; choose from "
                              + ", ".join(sorted(known)))
    method_params = method_params or {}
    grids = grids or {}
    for m in list(method_params) + list(grids):
        if m not in known:
            raise ConfigError(f"--method-set/--grid names unknown method '{m}'"
                              f"{closest(m, list(known))}")
        if m not in methods and m not in (sweep_methods or []):
            log(f"warning: --method-set/--grid for '{m}', which is not in --methods")
    if len(seeds) < 1 or not pairs:
        raise ConfigError("give at least one seed and one number of pairs")
    if len(seeds) < 3:
        log(f"warning: {len(seeds)} seed(s); the std over seeds needs at least 3")
    params = {"progress": False, **(params or {})}
    sweep_pairs = sweep_pairs or min(pairs)
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
                plan.append({"sweep": "unpaired", "method": m, "pairs": sweep_pairs,
                             "seed": seed, "unpaired_size": size})
    for bs in batch_sizes:
        for seed in seeds:
            plan.append({"sweep": "batch", "method": "sotalign", "pairs": sweep_pairs,
                         "seed": seed, "batch_unpaired": bs})

    json_path = out / "results.json"
    done: dict[tuple[Any, ...], dict[str, Any]] = {}
    sources = [Path(p) / "results.json" for p in include or []]
    for src in sources:
        if not src.is_file():
            raise InputError(f"--include {src.parent}: no results.json there")
    if resume and json_path.is_file():  # first: --include folders override OUT's own runs
        sources.insert(0, json_path)
    own: list[dict[str, Any]] = []  # OUT's earlier runs, kept even when outside this plan
    for src in sources:
        for r in json.loads(src.read_text()).get("runs", []):
            if not r.get("error"):
                done[_key(r)] = r
                if src == json_path:
                    own.append(r)
    result: dict[str, Any] = {
        "command": command or "run_bench(...)",
        "data": data.summary(),
        "config": {"methods": list(methods), "pairs": list(pairs), "seeds": list(seeds),
                   "params": params, "method_params": method_params, "grids": grids,
                   "unpaired_sizes": list(unpaired_sizes), "batch_sizes": list(batch_sizes),
                   "sweep_pairs": sweep_pairs, "sweep_methods": sweep_methods},
        "environment": _environment(),
        "diagnostics": {},
        "runs": [],
    }

    def flush() -> None:
        write_json_atomic(json_path, result)
        from .io import atomic_write

        with atomic_write(out / "results.md", "w") as fh:
            fh.write(render_markdown(result, notes))

    t_start = time.perf_counter()
    try:
        result["diagnostics"] = diagnostics(data)
    except Exception as exc:
        result["diagnostics"] = {"error": f"{type(exc).__name__}: {exc}"}
    write_json_atomic(out / "diagnostics.json", result["diagnostics"])
    if render_only:  # merge result folders: no fitting, every run found is reported
        plan = []
        result["runs"] = list(done.values())
        result["config"]["render_only"] = True
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
        label = (f"[{i}/{len(plan)}] {task['sweep']:8s} {task['method']:<16s} "
                 f"pairs={task['pairs']:<5d} seed={task['seed']}")
        if task.get("unpaired_size"):
            label += f" unpaired={task['unpaired_size']}"
        if task.get("batch_unpaired"):
            label += f" batch={task['batch_unpaired']}"
        try:
            r = run_one(data, task["method"], task["pairs"], task["seed"], p,
                        grids.get(task["method"]), task.get("unpaired_size"))
            r.update(task)
            if task["sweep"] == "unpaired":
                r["unpaired"] = task["unpaired_size"]
            log(f"{label}  mean R@1 {r['test'][MAIN]:5.1f}  ({r['fit_seconds']:.1f} s"
                + (f", selected {r['selected']}" if r.get("selected") else "") + ")")
        except (ConfigError, InputError):
            raise
        except Exception as exc:
            r = {**task, "error": f"{type(exc).__name__}: {exc}", "settings": p}
            log(f"{label}  FAILED: {r['error']}")
        result["runs"].append(r)
        result["elapsed_seconds"] = time.perf_counter() - t_start
        flush()
    result["plots"] = _plot(result, out)
    result["elapsed_seconds"] = time.perf_counter() - t_start
    flush()
    return result


def _environment() -> dict[str, Any]:
    import torch

    from . import __version__

    return {"sotalign": __version__, "torch": torch.__version__, "python":
            platform.python_version(), "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


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
    dataset: Annotated[str | None, _Opt(help="Bundled benchmark: emoji or wordnet.")] = None,
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
        str | None, _Opt(help="Unpaired pool sizes swept at --sweep-pairs pairs.")] = None,
    batch_sizes: Annotated[
        str | None, _Opt(help="SOTAlign unpaired batch sizes swept at --sweep-pairs.")] = None,
    sweep_pairs: Annotated[
        int | None, _Opt(help="Pairs of the unpaired/batch sweeps (default: min --pairs).")
    ] = None,
    sweep_methods: Annotated[
        str | None, _Opt(help="Methods of the unpaired sweep (default: those using unpaired).")
    ] = None,
    set_: Annotated[list[str] | None, _Opt("--set", help="key=value for every method.")] = None,
    method_set: Annotated[
        list[str] | None, _Opt(help="METHOD:key=value for one method (repeatable).")] = None,
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
        bool, _Opt(help="Run the methods x pairs x seeds sweep (--no-pairs-sweep: only the "
                        "unpaired/batch sweeps).")
    ] = True,
) -> None:
    """Run a benchmark sweep and write JSON, Markdown, PNG plots and diagnostics to OUT."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    params = _parse_sets(set_)
    per_method = parse_method_sets(method_set)
    from .estimator import PARAM_NAMES

    for m, p in per_method.items():
        for k in p:
            if k not in PARAM_NAMES:  # pragma: no cover - load_params already checks
                raise ConfigError(f"--method-set {m}: unknown key '{k}'")
    data = load_bench_data(
        dataset, pairs_images=pairs_images, pairs_texts=pairs_texts,
        unpaired_images=unpaired_images, unpaired_texts=unpaired_texts,
        test_images=test_images, test_texts=test_texts, test_index=test_index)
    note_text = None
    if notes is not None:
        if not notes.is_file():
            raise InputError(f"--notes {notes}: file not found")
        note_text = notes.read_text()
    cmd = _command_line(ctx)
    res = run_bench(
        data, out,
        methods=[m.strip() for m in methods.split(",") if m.strip()],
        pairs=_ints(pairs, "--pairs"), seeds=[int(s) for s in seeds.split(",") if s.strip()],
        params=params, method_params=per_method, grids=parse_grid(grid),
        unpaired_sizes=_ints(unpaired_sizes, "--unpaired-sizes"),
        batch_sizes=_ints(batch_sizes, "--batch-sizes"), sweep_pairs=sweep_pairs,
        sweep_methods=None if sweep_methods is None else
        [m.strip() for m in sweep_methods.split(",") if m.strip()],
        command=cmd, notes=note_text, resume=resume or render_only, include=include or [],
        render_only=render_only, pairs_sweep=pairs_sweep,
    )
    n_ok = sum(1 for r in res["runs"] if not r.get("error"))
    print(f"{n_ok}/{len(res['runs'])} runs written to {out} "
          f"({res['elapsed_seconds']:.0f} s)")
