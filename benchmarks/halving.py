#!/usr/bin/env python
"""Successive halving against full selection, with ``fit``'s defaults (the cpu recipe).

On the development splits only (never test): WordNet — N drawn pairs plus the full unpaired
pools, scored on the cache's fixed 1,000-pair validation split; emoji — N drawn pairs plus its
unpaired pools, scored on the pool pairs left unused by the draw. For each (dataset, pairs,
seed) the same fit runs with ``selection="full"`` and ``selection="halving"`` side by side;
recorded: the selected candidate, the development mean R@1, wall seconds and the planned
training steps; a third configuration adds ``head="auto"`` (both heads compete). Results
(appended per run, so an interrupted sweep resumes) in
``results/halving.json``; the table in ``results/halving.md``.

    python benchmarks/halving.py            # both data sets
    python benchmarks/halving.py wordnet    # one
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sotalign import SOTAlign
from sotalign.datasets import emoji
from sotalign.datasets.wordnet import draw_pairs, load_wordnet
from sotalign.eval import paired_rank_metrics

OUT = Path(__file__).parent / "results"
SEEDS = (0, 1, 2)
SETTINGS = {"wordnet": (200, 1000), "emoji": (100, 300)}
CONFIGS = {
    "full": {"selection": "full"},
    "halving": {"selection": "halving"},
    "halving, head=auto": {"selection": "halving", "head": "auto"},
}


def wordnet_runs(n: int):
    d = load_wordnet()
    Xv, Yv = d.validation()
    X, Y = d.unpaired_x(), d.unpaired_y()
    for seed in SEEDS:
        p = draw_pairs(d, n, seed)
        yield seed, (p.a, p.b, X, Y), (Xv, Yv)


def emoji_runs(n: int):
    d = emoji.load_emoji()
    for seed in SEEDS:
        p = emoji.draw_pairs(d, n, seed)
        drawn = set(map(tuple, np.round(p.images[:, :4], 5)))
        mask = np.array([tuple(np.round(r[:4], 5)) not in drawn for r in d.pool_images])
        data = (p.images, p.texts, d.unpaired_images, d.unpaired_texts)
        yield seed, data, (d.pool_images[mask], d.pool_texts[mask])


def main() -> None:
    which = sys.argv[1:] or list(SETTINGS)
    log = OUT / "halving.json"
    rows = json.loads(log.read_text()) if log.exists() else []
    done = {(r["dataset"], r["pairs"], r["seed"], r["selection"]) for r in rows}
    for name in which:
        runs = wordnet_runs if name == "wordnet" else emoji_runs
        for n in SETTINGS[name]:
            for seed, data, (Xd, Yd) in runs(n):
                for selection, params in CONFIGS.items():
                    if (name, n, seed, selection) in done:
                        continue
                    torch.manual_seed(0)
                    t0 = time.perf_counter()
                    est = SOTAlign(**params, seed=seed, progress=False).fit(*data)
                    sec = time.perf_counter() - t0
                    m = paired_rank_metrics(est.encode_images(Xd), est.encode_texts(Yd))
                    chosen = next(r["candidate"] for r in est.selection_ if r["selected"])
                    row = {
                        "dataset": name,
                        "pairs": n,
                        "seed": seed,
                        "selection": selection,
                        "selected": chosen,
                        "dev_mean_R@1": round(float(m["mean_R@1"]), 2),
                        "seconds": round(sec, 1),
                        "total_steps": est.plan_["total_steps"],
                    }
                    print(json.dumps(row), flush=True)
                    rows.append(row)
                    log.write_text(json.dumps(rows, indent=1))
    write_table(rows)


def write_table(rows: list[dict]) -> None:
    lines = [
        "# Successive halving vs full selection (fit's defaults, development splits)",
        "",
        "Command: `python benchmarks/halving.py` — mean over seeds"
        f" {list(SEEDS)}; development mean R@1 (%) of the final model, wall seconds of the fit"
        " (2 CPU cores shared with other jobs: compare the planned training steps, not the"
        " seconds) and the training steps it planned, with the candidate each seed selected."
        " Configurations: " + "; ".join(f"`{k}` = {v}" for k, v in CONFIGS.items()),
        "",
        "| data | pairs | configuration | dev mean R@1 | seconds | steps | winners (per seed) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, ns in SETTINGS.items():
        for n in ns:
            for config in CONFIGS:
                rs = [
                    r
                    for r in rows
                    if (r["dataset"], r["pairs"], r["selection"]) == (name, n, config)
                ]
                if not rs:
                    continue
                rs.sort(key=lambda r: r["seed"])
                lines.append(
                    f"| {name} | {n} | {config} | {np.mean([r['dev_mean_R@1'] for r in rs]):.2f}"
                    f" | {np.mean([r['seconds'] for r in rs]):.0f}"
                    f" | {np.mean([r['total_steps'] for r in rs]):.0f}"
                    f" | {', '.join(r['selected'] for r in rs)} |"
                )
    (OUT / "halving.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
