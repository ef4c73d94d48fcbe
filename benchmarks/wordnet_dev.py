#!/usr/bin/env python
"""Protocol exploration on the WordNet development split (never the test split).

Fits one configuration on N drawn pairs (``pairs=``, ``seed=``) plus the full unpaired pools,
for a fixed number of steps without early stopping, and prints its mean R@1 on the cache's
fixed 1,000-pair validation split (disjoint from the pair pool, the pools and the test split).
Every other ``key=value`` is a ``SOTAlign`` parameter (JSON values). Used to choose the
benchmark protocol (head type, α range, ε); results in ``results/wordnet_dev.md``.

    python benchmarks/wordnet_dev.py method=sotalign alpha=1.0 head=teacher pairs=200
"""

import json
import sys
import time

import torch

from sotalign import SOTAlign
from sotalign.datasets.wordnet import draw_pairs, load_wordnet
from sotalign.eval import retrieval_metrics

torch.set_num_threads(1)
args = dict(a.split("=", 1) for a in sys.argv[1:])
n = int(args.pop("pairs", 200))
seed = int(args.pop("seed", 0))
params = dict(
    steps=300,
    dim=512,
    batch_unpaired=1024,
    optimizer="adamw",
    lr=1e-3,
    progress=False,
    early_stopping=False,
    seed=seed,
)
for k, v in args.items():
    try:
        params[k] = json.loads(v)
    except ValueError:
        params[k] = v
d = load_wordnet()
p = draw_pairs(d, n, seed)
Xv, Yv = d.validation()
t = time.time()
est = SOTAlign(**params).fit(p.a, p.b, d.unpaired_x(), d.unpaired_y())
m = retrieval_metrics(est.encode_images(Xv), est.encode_texts(Yv))
shown = {k: params[k] for k in params if k != "progress"}
print(
    json.dumps(
        {
            "params": shown,
            "val_mean_R@1": round(float(m["mean_R@1"]), 2),
            "sec": round(time.time() - t),
        }
    )
)
