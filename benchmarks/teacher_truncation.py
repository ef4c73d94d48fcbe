#!/usr/bin/env python
"""Does dropping (or down-weighting) weak canonical directions help the CCA teacher?

On the development splits only (never test): WordNet — the cache's fixed 1,000-pair validation
split; emoji — the pool pairs left unused by each draw. For each draw the CCA teacher (ridge 0.1
and the alternative the ridge search most often picks) keeps its top ``k`` canonical directions
(a fraction of all) and optionally weights direction ``i`` by ρ_i^p before the cosine. Mean R@1
(%) averaged over seeds. Results in ``results/teacher_truncation.md``.

    python benchmarks/teacher_truncation.py
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch

from sotalign.arrays import l2_normalize
from sotalign.datasets import emoji
from sotalign.datasets.wordnet import draw_pairs, load_wordnet
from sotalign.eval import paired_rank_metrics
from sotalign.models import make_teacher

FRACS = (1.0, 0.75, 0.5, 0.25)
POWERS = (0.0, 0.5, 1.0)
SEEDS = (0, 1, 2)


def score(t, Xd, Yd, frac: float, power: float) -> float:
    sd = t.state_dict()
    rho = t.correlations_.double()
    k = max(1, int(rho.numel() * frac))

    def enc(X, mu, W):
        Z = (l2_normalize(torch.as_tensor(np.asarray(X)).double()) - mu.double()) @ W.double()[
            :, :k
        ]
        return Z * rho[:k] ** power

    A, B = enc(Xd, sd["mu_a"], sd["w_x"]), enc(Yd, sd["mu_b"], sd["w_y"])
    return paired_rank_metrics(A, B)["mean_R@1"]


def wordnet_draws(n: int):
    d = load_wordnet()
    Xv, Yv = d.validation()
    for seed in SEEDS:
        p = draw_pairs(d, n, seed)
        yield p.a, p.b, Xv, Yv


def emoji_draws(n: int):
    d = emoji.load_emoji()
    for seed in SEEDS:
        p = emoji.draw_pairs(d, n, seed)
        drawn = set(map(tuple, np.round(p.images[:, :4], 5)))
        mask = np.array([tuple(np.round(r[:4], 5)) not in drawn for r in d.pool_images])
        yield p.images, p.texts, d.pool_images[mask], d.pool_texts[mask]


def main() -> None:
    torch.set_num_threads(2)
    lines = [
        "# CCA teacher: keeping the top fraction of canonical directions, weighted by ρ^p",
        "",
        "Command: `python benchmarks/teacher_truncation.py` — development splits only, mean R@1"
        f" (%) over seeds {list(SEEDS)}. `keep 1.0, p 0` is the teacher as it is.",
        "",
    ]
    for name, draws, ns, regs in (
        ("wordnet", wordnet_draws, (200, 1000), (0.1, 0.01)),
        ("emoji", emoji_draws, (100, 300), (0.1, 1.0)),
    ):
        for n in ns:
            acc: dict[tuple[float, float, float], list[float]] = {}
            for A, B, Xd, Yd in draws(n):
                for reg in regs:
                    t = make_teacher("cca", reg=reg).fit(A, B)
                    for frac, pw in itertools.product(FRACS, POWERS):
                        acc.setdefault((reg, frac, pw), []).append(score(t, Xd, Yd, frac, pw))
            lines += [
                f"## {name}, {n} pairs",
                "",
                "| ridge | keep | p | mean R@1 |",
                "|---|---|---|---|",
            ]
            best = max(acc, key=lambda k: np.mean(acc[k]))
            for (reg, frac, pw), v in acc.items():
                m = f"{np.mean(v):.2f}"
                m = f"**{m}**" if (reg, frac, pw) == best else m
                lines.append(f"| {reg:g} | {frac:g} | {pw:g} | {m} |")
            lines.append("")
            print(name, n, "best", best, round(float(np.mean(acc[best])), 2), flush=True)
    out = Path(__file__).parent / "results" / "teacher_truncation.md"
    out.write_text("\n".join(lines))
    print("wrote", out)


if __name__ == "__main__":
    main()
