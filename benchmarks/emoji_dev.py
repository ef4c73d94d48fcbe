#!/usr/bin/env python
"""Protocol exploration on emoji pool pairs that the draws leave unused (never the test split).

For seeds 0, 1, 2: draw N pairs (first argument) from the 800-pair pool, fit the configuration
given as JSON (second argument; SOTAlign parameters over 300 steps, 512-d heads) with the full
unpaired pools, and score mean R@1 on the pool pairs not drawn. Results in
``results/emoji_dev.md``.

    python benchmarks/emoji_dev.py 100 '{"head": "teacher", "alpha_grid": [0.1, 0.01]}'
"""

import json
import sys

import numpy as np
import torch

from sotalign import SOTAlign
from sotalign.datasets import emoji
from sotalign.eval import paired_rank_metrics

torch.set_num_threads(1)
d = emoji.load_emoji()
n = int(sys.argv[1])
cfg = json.loads(sys.argv[2])
out = []
for seed in (0, 1, 2):
    p = emoji.draw_pairs(d, n, seed)
    drawn = set(map(tuple, np.round(p.images[:, :4], 5)))
    mask = np.array([tuple(np.round(r[:4], 5)) not in drawn for r in d.pool_images])
    Xd, Yd = d.pool_images[mask], d.pool_texts[mask]
    est = SOTAlign(**{"steps": 300, "dim": 512, "progress": False, "seed": seed, **cfg}).fit(
        p.images, p.texts, d.unpaired_images, d.unpaired_texts
    )
    out.append(paired_rank_metrics(est.encode_images(Xd), est.encode_texts(Yd))["mean_R@1"])
print(n, cfg, np.round(out, 2), round(float(np.mean(out)), 2), flush=True)
