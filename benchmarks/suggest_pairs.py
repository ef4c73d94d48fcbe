"""Does choosing which pairs to label help? `suggest_pairs` strategies against random choice.

Protocol (development data only, never the test split): the bench's pair pool (WordNet: 10,000
pairs; emoji: 800) is split once (seed 12345) into a candidate part and a held-out development
part (WordNet 1,000 pairs, emoji 200). A strategy picks n rows of the candidate part from ONE
side's embeddings only (``images``: as if choosing images to caption; ``texts``: captions to
illustrate); those rows' pairs fit the CCA teacher (ridge 0.1, the default teacher, a closed form:
no training noise), which is scored by mean R@1 on the development pairs. Mean ± std over seeds
(the seed drives the strategy's randomness).

Usage (the committed results):
    .venv/bin/python benchmarks/suggest_pairs.py --out benchmarks/results/suggest_pairs
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

SETTINGS = {"wordnet": ((200, 1000), 1000), "emoji": ((100, 300), 200)}


def _key(r: dict) -> tuple:
    return r["dataset"], r["pairs"], r["side"], r["strategy"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--datasets", nargs="+", default=["wordnet", "emoji"])
    p.add_argument("--out", default="benchmarks/results/suggest_pairs")
    args = p.parse_args()

    from sotalign.bench.data import load_bench_data
    from sotalign.eval import paired_rank_metrics
    from sotalign.labelling import suggest_pairs
    from sotalign.models.teachers import CCATeacher

    rows = []
    t0 = time.perf_counter()
    for ds in args.datasets:
        data = load_bench_data(dataset=ds)
        I = np.asarray(data.pool_images, np.float32)  # noqa: E741
        T = np.asarray(data.pool_texts, np.float32)
        pair_counts, n_dev = SETTINGS[ds]
        perm = np.random.default_rng(12345).permutation(len(I))
        dev, cand = perm[:n_dev], perm[n_dev:]
        for n in pair_counts:
            for side in ("images", "texts"):
                pool = I[cand] if side == "images" else T[cand]
                for strategy in ("random", "kmeans", "farthest"):
                    if strategy == "random" and side == "texts":
                        continue  # random ignores the side
                    for seed in range(args.seeds):
                        ts = time.perf_counter()
                        idx = cand[suggest_pairs(pool, n, strategy, seed=seed)]
                        pick_s = time.perf_counter() - ts
                        t = CCATeacher(0.1).fit(I[idx], T[idx])
                        m = paired_rank_metrics(t.encode_images(I[dev]), t.encode_texts(T[dev]))
                        rows.append({"dataset": ds, "pairs": n, "side": side,
                                     "strategy": strategy, "seed": seed,
                                     "dev_mean_R@1": m["mean_R@1"], "pick_s": pick_s})  # fmt: skip
                    key = (ds, n, side, strategy)
                    got = [r["dev_mean_R@1"] for r in rows if _key(r) == key]
                    print(f"{ds} {n} {side} {strategy}: {statistics.mean(got):.2f}", flush=True)

    def cell(ds: str, n: int, side: str, strategy: str) -> tuple[float, float]:
        side = "images" if strategy == "random" else side
        v = [r["dev_mean_R@1"] for r in rows if _key(r) == (ds, n, side, strategy)]
        return statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0

    lines = ["| data | pairs | random | k-means (images) | k-means (texts) | farthest (images)"
             " | farthest (texts) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for ds in args.datasets:
        for n in SETTINGS[ds][0]:
            base = cell(ds, n, "images", "random")[0]
            out = [f"{base:.2f} ± {cell(ds, n, 'images', 'random')[1]:.2f}"]
            for strategy in ("kmeans", "farthest"):
                for side in ("images", "texts"):
                    m, s = cell(ds, n, side, strategy)
                    out.append(f"{m:.2f} ± {s:.2f} ({m - base:+.2f})")
            lines.append(f"| {ds} | {n} | " + " | ".join(out) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": "python benchmarks/suggest_pairs.py " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "wall_s": time.perf_counter() - t0,
    }
    out_path.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    out_path.with_suffix(".table.md").write_text(table)


if __name__ == "__main__":
    main()
