#!/usr/bin/env python
"""Linear teachers on the WordNet development split (never the test split): mean R@1 on the
cache's fixed 1,000-pair validation split of CCA at several ridges, Procrustes and CSA, fitted on
200 and 1,000 drawn pairs (seed 0). Results in ``results/wordnet_dev.md``.

    python benchmarks/wordnet_dev_teachers.py
"""

import torch

from sotalign.datasets.wordnet import draw_pairs, load_wordnet
from sotalign.eval import paired_rank_metrics
from sotalign.models import CSAAligner, make_teacher

torch.set_num_threads(1)
d = load_wordnet()
Xv, Yv = d.validation()
for n in (200, 1000):
    p = draw_pairs(d, n, 0)
    cands = {f"cca{r}": make_teacher("cca", reg=r) for r in (0.01, 0.03, 0.1, 0.3, 1.0)}
    cands["procrustes"] = make_teacher("procrustes")
    cands["csa"] = CSAAligner()
    for name, t in cands.items():
        t.fit(p.a, p.b)
        score = paired_rank_metrics(t.encode_images(Xv), t.encode_texts(Yv))["mean_R@1"]
        print(n, name, round(score, 2))
