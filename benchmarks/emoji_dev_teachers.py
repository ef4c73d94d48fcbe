#!/usr/bin/env python
"""Linear teachers on emoji pool pairs left unused by 100-pair draws (seeds 0-2; never the test
split): CCA at several ridges, Procrustes and CSA at several weight powers. Results in
``results/emoji_dev.md``.

    python benchmarks/emoji_dev_teachers.py
"""

import numpy as np
import torch

from sotalign.datasets import emoji
from sotalign.eval import paired_rank_metrics
from sotalign.models import CSAAligner, make_teacher

torch.set_num_threads(1)
d = emoji.load_emoji()
res: dict[str, list[float]] = {}
for seed in (0, 1, 2):
    p = emoji.draw_pairs(d, 100, seed)
    drawn = set(map(tuple, np.round(p.images[:, :4], 5)))
    mask = np.array([tuple(np.round(r[:4], 5)) not in drawn for r in d.pool_images])
    Xd, Yd = d.pool_images[mask], d.pool_texts[mask]
    cands = {f"cca{r}": make_teacher("cca", reg=r) for r in (0.03, 0.1, 0.3, 1.0, 3.0)}
    cands["procrustes"] = make_teacher("procrustes")
    for w in (0.5, 1.0, 2.0):
        cands[f"csa_w{w}"] = CSAAligner(weight_power=w)
    for name, t in cands.items():
        t.fit(p.images, p.texts)
        m = paired_rank_metrics(t.encode_images(Xd), t.encode_texts(Yd))
        res.setdefault(name, []).append(m["mean_R@1"])
for k, v in res.items():
    print(k, np.round(v, 2), round(float(np.mean(v)), 2))
print("development pairs (seed 2):", int(mask.sum()))
