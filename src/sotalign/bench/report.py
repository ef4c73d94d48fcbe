"""Aggregation and rendering of a benchmark result: mean ± std over seeds, Markdown tables and
PNG plots."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write

__all__ = ["MAIN", "aggregate", "plot", "render_markdown", "with_reference"]

MAIN = "mean_R@1"

# ----------------------------------------------------------------------------- aggregation


def _mean_std(vals: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(vals, float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def aggregate(
    runs: list[dict[str, Any]],
    sweep: str,
    xkey: str,
    metric: Callable[[dict[str, Any]], float | None],
) -> dict[str, dict[int, Any]]:
    """``{method: {x: (mean, std, n)}}`` over seeds for one sweep."""
    groups: dict[str, dict[int, list[float]]] = {}
    for r in runs:
        if r.get("sweep") != sweep or r.get("error"):
            continue
        v = metric(r)
        if v is None:
            continue
        groups.setdefault(r["method"], {}).setdefault(int(r[xkey]), []).append(float(v))
    return {
        m: {x: (*_mean_std(v), len(v)) for x, v in sorted(d.items())} for m, d in groups.items()
    }


def with_reference(runs: list[dict[str, Any]], sweep: str, xkey: str) -> list[dict[str, Any]]:
    """The runs of an ``unpaired`` or ``batch`` sweep plus, as its reference point, the main
    sweep's runs of the same method, pairs and seed (full pools, the common batch size)."""
    swept = [r for r in runs if r.get("sweep") == sweep]
    keys = {(r["method"], r["pairs"], r["seed"]) for r in swept}
    ref = [
        {**r, "sweep": sweep}
        for r in runs
        if r.get("sweep") == "pairs"
        and (r["method"], r["pairs"], r["seed"]) in keys
        and r.get(xkey) is not None
        and not any(int(r[xkey]) == int(q[xkey]) for q in swept)
    ]
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
    lines = [
        f"| method \\ {xlabel} | " + " | ".join(str(x) for x in xs) + " |",
        "|---" * (len(xs) + 1) + "|",
    ]
    for m in [m for m in methods if m in agg] + [m for m in agg if m not in methods]:
        cells = [_cell(agg[m].get(x), x in agg[m] and agg[m][x][0] == best[x]) for x in xs]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _method_pairs_table(rows: dict[tuple[str, int], list[str]], column: str) -> str:
    """A ``| method | pairs | column |`` table of per-seed cells; empty without rows."""
    if not rows:
        return ""
    lines = [f"| method | pairs | {column} |", "|---|---|---|"]
    for (m, n), v in sorted(rows.items()):
        lines.append(f"| {m} | {n} | {', '.join(v)} |")
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
    return _method_pairs_table(rows, "selected per seed")


def _lowered_steps(runs: list[dict[str, Any]]) -> str:
    """Runs whose time budget planned fewer steps than configured (``run["plan"]``): the
    planned steps per training of each seed, so an under-trained model is visible."""
    rows: dict[tuple[str, int], list[str]] = {}
    for r in runs:
        plan = r.get("plan") or {}
        if r.get("error") or r.get("sweep") != "pairs" or not plan:
            continue
        if plan["steps"] < plan["configured_steps"]:
            cell = f"{plan['steps']} of {plan['configured_steps']} (seed {r['seed']})"
            rows.setdefault((r["method"], r["pairs"]), []).append(cell)
    return _method_pairs_table(rows, "steps per training")


def _timings(runs: list[dict[str, Any]], methods: Sequence[str]) -> str:
    agg = aggregate(runs, "pairs", "pairs", lambda r: r["fit_seconds"])
    if not agg:
        return ""
    xs = sorted({x for d in agg.values() for x in d})
    lines = [
        "| method \\ pairs | " + " | ".join(str(x) for x in xs) + " |",
        "|---" * (len(xs) + 1) + "|",
    ]
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
    out += [
        f"Data: `{json.dumps(result['data'])}`",
        "",
        f"Common parameters: `{json.dumps(cfg['params'])}`; per-method: "
        f"`{json.dumps(cfg['method_params'])}`; grids: `{json.dumps(cfg['grids'])}`",
        "",
    ]
    seeds = cfg["seeds"]
    out += [
        f"## Test mean R@1 (%) vs number of pairs — mean ± std over seeds {seeds}",
        "",
        "Best mean per column in bold. Hyper-parameters selected on a validation split of "
        "the drawn pairs; the test split is used once per final model.",
        "",
        _table(aggregate(runs, "pairs", "pairs", lambda r: r["test"][MAIN]), "pairs", methods),
        "",
    ]
    for d, lab in (("i2t", "I2T"), ("t2i", "T2I")):
        out += [
            f"### {lab} R@1",
            "",
            _table(
                aggregate(runs, "pairs", "pairs", lambda r, d=d: r["test"][d]["R@1"]),
                "pairs",
                methods,
            ),
            "",
        ]
    if any("test_grouped" in r for r in runs):
        n_groups = result["data"].get("test_caption_groups")
        of = f" ({n_groups} distinct captions among the test pairs)" if n_groups else ""
        out += [
            "## Test mean R@1 (%), a caption's whole group counted as hits",
            "",
            f"Test pairs sharing one caption form a group{of}; here retrieving any pair of the "
            "query's group is a hit (`sotalign.eval.grouped_retrieval_metrics`). The tables "
            "above count only the query's own pair.",
            "",
            _table(
                aggregate(
                    runs,
                    "pairs",
                    "pairs",
                    lambda r: r["test_grouped"][MAIN] if "test_grouped" in r else None,
                ),
                "pairs",
                methods,
            ),
            "",
        ]
    if any("zero_shot_top1" in r for r in runs):
        out += [
            "## Zero-shot top-1 (%)",
            "",
            _table(
                aggregate(runs, "pairs", "pairs", lambda r: r.get("zero_shot_top1")),
                "pairs",
                methods,
            ),
            "",
        ]

    def sweep_pairs(sweep: str) -> str:
        return ", ".join(
            str(n) for n in sorted({r["pairs"] for r in runs if r.get("sweep") == sweep})
        )

    if any(r.get("sweep") == "unpaired" for r in runs):
        out += [
            f"## Test mean R@1 vs unpaired samples per pool ({sweep_pairs('unpaired')} pairs)",
            "",
            "The largest size is the main table's run (full pools).",
            "",
            _table(
                aggregate(
                    with_reference(runs, "unpaired", "unpaired"),
                    "unpaired",
                    "unpaired",
                    lambda r: r["test"][MAIN],
                ),
                "unpaired",
                methods,
            ),
            "",
        ]
    if any(r.get("sweep") == "batch" for r in runs):
        out += [
            f"## Test mean R@1 vs unpaired batch size ({sweep_pairs('batch')} pairs)",
            "",
            _table(
                aggregate(
                    with_reference(runs, "batch", "batch_unpaired"),
                    "batch",
                    "batch_unpaired",
                    lambda r: r["test"][MAIN],
                ),
                "batch",
                methods,
            ),
            "",
        ]
    sel = _selection_summary(runs)
    if sel:
        out += ["## Selected candidates (validation split of the pairs)", "", sel, ""]
    low = _lowered_steps(runs)
    if low:
        out += ["## Steps lowered by the time budget (`budget`)", "", low, ""]
    tim = _timings(runs, methods)
    if tim:
        out += ["## Mean fit seconds (selection included)", "", tim, ""]
    errs = [r for r in runs if r.get("error")]
    if errs:
        out += (
            ["## Failed runs", ""]
            + [f"- {r['method']} pairs={r['pairs']} seed={r['seed']}: {r['error']}" for r in errs]
            + [""]
        )
    diag = result.get("diagnostics")
    if diag:
        out += ["## Diagnostics", "", f"`{json.dumps(diag)}`", ""]
    out += [f"Environment: {json.dumps(result['environment'])}", ""]
    if notes:
        out += ["## What we learned", "", notes.strip(), ""]
    return "\n".join(out)


def plot(result: dict[str, Any], out: Path) -> list[str]:
    """Mean R@1 curves (mean ± std over seeds) of each sweep as PNG files in ``out``."""
    import matplotlib  # heavy: imported only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    runs = result["runs"]
    specs = [
        ("pairs", "pairs", "number of pairs", "pairs.png"),
        ("unpaired", "unpaired", "unpaired samples per pool", "unpaired.png"),
        ("batch", "batch_unpaired", "unpaired batch size", "batch.png"),
    ]
    for sweep, key, xlabel, fname in specs:
        pts = runs if sweep == "pairs" else with_reference(runs, sweep, key)
        agg = aggregate(pts, sweep, key, lambda r: r["test"][MAIN])
        if not agg:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        cmap = plt.get_cmap("tab10" if len(agg) <= 10 else "tab20")
        for k, (m, d) in enumerate(agg.items()):
            xs = list(d)
            ax.errorbar(
                xs,
                [d[x][0] for x in xs],
                yerr=[d[x][1] for x in xs],
                marker="o",
                capsize=3,
                label=m,
                color=cmap(k % cmap.N),
                linewidth=2.5 if m == "sotalign" else 1.5,
            )
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
