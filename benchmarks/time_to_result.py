"""Test mean R@1 against wall time on WordNet at 1,000 pairs: the default CPU recipe, budgeted
fits, and the paper's recipe (budgeted; unbudgeted it is only planned, from measured steps).

Every run is `SOTAlign(...).fit` through the bench's `run_one` (pairs drawn with the seed, the
full unpaired pools, α selected on a validation split of the pairs, refit on all pairs), timed
end to end (teacher, selection, refit). The paper's recipe without a budget (Lion, 2,000 steps,
batches of 4,096, d = 1,024, α among four values: 5 trainings) is not affordable on 2 CPU cores;
its row gives the time its plan predicts (`sotalign.methods.plan`: seconds per step measured on
this data × trainings × steps) and no score.

Usage (the committed results):
    .venv/bin/python benchmarks/time_to_result.py --out benchmarks/results/time_to_result
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

RUNS: list[tuple[str, dict[str, Any]]] = [
    ("cpu recipe (default)", {}),
    ("cpu recipe, budget 60 s", {"budget": 60}),
    ("cpu recipe, budget 150 s", {"budget": 150}),
    ("paper recipe, budget 300 s", {"recipe": "paper", "budget": 300}),
]


def paper_plan(data: Any, pairs: int, seed: int) -> dict[str, Any]:
    """The plan of the paper's recipe on this data: measured s/step × trainings × steps."""
    from sotalign import SOTAlign
    from sotalign.methods.plan import time_step
    from sotalign.methods.selection import Split, halving_schedule
    from sotalign.models import make_teacher
    from sotalign.training import TrainData, objective_from_config

    cfg = SOTAlign(recipe="paper", seed=seed, progress=False).config()
    A, B = data.draw(pairs, seed)
    X, Y = data.unpaired(None, seed)
    split = Split.of(TrainData.from_arrays(A, B, X, Y), cfg.val_fraction, seed)
    teacher = make_teacher("cca", reg=cfg.teacher_reg).fit(
        split.train.images.array, split.train.texts.array
    )
    alpha = max(cfg.alpha_grid)
    sec = time_step(cfg, cfg.train, split.train, objective_from_config(cfg.train, alpha), teacher)
    candidates = len(cfg.alpha_grid) + 1  # α = 0 and the grid, then the refit
    steps = cfg.train.steps
    rung = halving_schedule(candidates, steps, cfg.train.eval_every)
    total = rung.steps(candidates, steps) if rung else candidates * steps
    total += int(cfg.refit) * steps
    return {
        "sec_per_step": sec,
        "trainings": round(total / steps, 2),  # trainings' worth of steps (halving)
        "steps": steps,
        "total_steps": total,
        "estimate_s": sec * total,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pairs", type=int, default=1000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--out", default="benchmarks/results/time_to_result")
    args = p.parse_args()

    from sotalign.bench.data import load_bench_data
    from sotalign.bench.run import run_one
    from sotalign.methods.plan import format_duration

    data = load_bench_data(dataset="wordnet")
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        for name, params in RUNS:
            t0 = time.perf_counter()
            r = run_one(data, "sotalign", args.pairs, seed, {"progress": False, **params})
            rows.append(
                {
                    "run": name,
                    "seed": seed,
                    "mean_R@1": r["test"]["mean_R@1"],
                    "wall_s": time.perf_counter() - t0,
                    "fit_s": r["fit_seconds"],
                    "settings": r["settings"],
                    "selected": r["selected"],
                }
            )
            done = f"{rows[-1]['mean_R@1']:.2f} in {r['fit_seconds']:.0f} s"
            print(f"{name} seed {seed}: {done}", flush=True)
        for method in ("cca", "sail"):
            r = run_one(data, method, args.pairs, seed, {"progress": False})
            score = r["test"]["mean_R@1"]
            rows.append({"run": f"baseline {method}", "seed": seed, "mean_R@1": score,
                         "fit_s": r["fit_seconds"], "wall_s": r["fit_seconds"]})  # fmt: skip
    plan = paper_plan(data, args.pairs, args.seeds[0])
    print(f"paper recipe, no budget: planned {format_duration(plan['estimate_s'])}", flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": "python benchmarks/time_to_result.py " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_after": os.getloadavg(),
    }
    out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "rows": rows, "paper_plan": plan}, indent=1)
    )
    names = [n for n, _ in RUNS] + ["baseline cca", "baseline sail"]
    lines = ["| run | mean R@1 (test) | fit time |", "|---|---|---|"]
    for n in names:
        rs = [r for r in rows if r["run"] == n]
        r1 = sum(r["mean_R@1"] for r in rs) / len(rs)
        t = sum(r["fit_s"] for r in rs) / len(rs)
        lines.append(f"| {n} | {r1:.2f} | {format_duration(t)} |")
    lines.append(
        f"| paper recipe, no budget | not run | {format_duration(plan['estimate_s'])} (planned:"
        f" {plan['total_steps']} steps × {plan['sec_per_step']:.2f} s) |"
    )
    out.with_suffix(".table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for n in names:
        rs = [r for r in rows if r["run"] == n]
        ax.scatter([r["fit_s"] / 60 for r in rs], [r["mean_R@1"] for r in rs], label=n)
    ax.axvline(plan["estimate_s"] / 60, ls=":", c="grey")
    ax.text(plan["estimate_s"] / 60, ax.get_ylim()[0], " paper recipe\n (planned)", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("fit time (min, 2 CPU cores)")
    ax.set_ylabel("test mean R@1 (%)")
    ax.set_title(f"WordNet, {args.pairs} pairs")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)


if __name__ == "__main__":
    main()
