"""Which samples to pair: proposing the rows of an unpaired pool worth captioning.

Pairs are what users pay for. Given the embeddings ``X`` (N × d) of an unpaired pool, these
functions propose ``n`` rows to label (caption an image, or illustrate a caption), on the unit
sphere (rows L2-normalised, cosine geometry):

* ``random`` — ``n`` distinct rows drawn uniformly (seeded): the baseline.
* ``kmeans`` — k-means medoids: k-means with k = ``n`` (greedy k-means++ seeding: of
  ``2 + ⌊ln k⌋`` draws ∝ squared distance, the one lowering the potential most; Lloyd iterations on
  the normalised rows, minimising ``Σᵢ min_c ‖xᵢ − μ_c‖²``), then for each centroid the nearest
  row not taken yet. The proposed rows cover the pool's modes in proportion to their mass.
* ``farthest`` — farthest-point sampling: start from a seeded random row, then repeatedly add
  the row farthest (in cosine distance) from every row chosen so far, which greedily minimises
  the covering radius ``maxᵢ min_{j∈S} ‖xᵢ − x_j‖`` (a 2-approximation of the optimum).

Pools larger than ``max_rows`` are subsampled (seeded) before clustering, so memory-mapped pools
of millions of rows cost ``O(max_rows · n · d)`` per iteration and are never loaded whole.
Measured against ``random`` on the bundled benchmarks in ``benchmarks/suggest_pairs.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from .arrays import ArrayLike, as_tensor, l2_normalize
from .errors import ConfigError, InputError

__all__ = ["STRATEGIES", "farthest_points", "kmeans", "kmeans_medoids", "suggest_pairs"]

STRATEGIES = ("random", "kmeans", "farthest")


def _rows(X: ArrayLike, max_rows: int, seed: int) -> tuple[np.ndarray, Tensor]:
    """(pool row ids, their L2-normalised float32 embeddings), subsampled to ``max_rows``."""
    n_all = len(X)
    ids = np.arange(n_all)
    if n_all > max_rows:
        ids = np.sort(np.random.default_rng(seed).choice(n_all, max_rows, replace=False))
    return ids, l2_normalize(as_tensor(np.asarray(X[ids]) if n_all > max_rows else X))


def kmeans(
    Z: Tensor,
    k: int,
    seed: int = 0,
    iters: int = 25,
    progress: Callable[[int], None] | None = None,
) -> Tensor:
    """k centroids of the rows of ``Z``: greedy k-means++ seeding, then ``iters`` Lloyd iterations
    (stops early when no assignment changes); an emptied cluster is re-seeded at the row
    farthest from its centroid."""
    gen = torch.Generator().manual_seed(seed)
    n = Z.shape[0]
    first = int(torch.randint(n, (1,), generator=gen))
    C = [Z[first]]
    d2 = ((Z - Z[first]) ** 2).sum(1)
    trials = 2 + int(math.log(k))
    for _ in range(1, k):  # greedy k-means++: of a few draws ∝ d², keep the best new potential
        total = float(d2.sum())
        if total <= 0:
            j = int(d2.argmax())
        else:
            cand = torch.multinomial(d2 / total, trials, replacement=True, generator=gen)
            new_d2 = torch.minimum(d2.unsqueeze(0), torch.cdist(Z[cand], Z).pow(2))
            j = int(cand[int(new_d2.sum(1).argmin())])
        C.append(Z[j])
        d2 = torch.minimum(d2, ((Z - Z[j]) ** 2).sum(1))
    centroids = torch.stack(C)
    assign = None
    for it in range(iters):
        dist = torch.cdist(Z, centroids)
        new = dist.argmin(1)
        if assign is not None and torch.equal(new, assign):
            break
        assign = new
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, assign, Z)
        empty = counts == 0
        centroids = sums / counts.clamp_min(1).unsqueeze(1)
        if empty.any():  # re-seed at the worst-served rows
            worst = dist.min(1).values.topk(int(empty.sum())).indices
            centroids[empty] = Z[worst]
        if progress is not None:
            progress(it + 1)
    return centroids


def kmeans_medoids(Z: Tensor, centroids: Tensor) -> np.ndarray:
    """For each centroid (in order), the nearest row of ``Z`` not taken by an earlier one."""
    dist = torch.cdist(centroids, Z)
    order = dist.argsort(1)
    taken: set[int] = set()
    out = []
    for c in range(centroids.shape[0]):
        for j in order[c].tolist():
            if j not in taken:
                taken.add(j)
                out.append(j)
                break
    return np.asarray(out, dtype=np.int64)


def farthest_points(Z: Tensor, n: int, seed: int = 0) -> np.ndarray:
    """Farthest-point sampling of ``n`` rows of ``Z`` from a seeded random start."""
    gen = torch.Generator().manual_seed(seed)
    first = int(torch.randint(Z.shape[0], (1,), generator=gen))
    chosen = [first]
    d = torch.cdist(Z, Z[first : first + 1]).squeeze(1)
    for _ in range(1, n):
        j = int(d.argmax())
        chosen.append(j)
        d = torch.minimum(d, torch.cdist(Z, Z[j : j + 1]).squeeze(1))
    return np.asarray(chosen, dtype=np.int64)


def suggest_pairs(
    X: ArrayLike,
    n: int,
    strategy: str = "kmeans",
    seed: int = 0,
    max_rows: int = 50_000,
    iters: int = 25,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """``n`` distinct row indices of the pool ``X`` to label, by ``strategy`` (see the module
    docstring); deterministic for a seed."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"the number of pairs to suggest must be an integer >= 1, got {n!r}")
    shape = getattr(X, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] < 1:
        raise InputError(f"the pool must be a 2-D array of embeddings, got shape {shape}")
    if n > shape[0]:
        raise InputError(f"cannot suggest {n} rows from a pool of {shape[0]}; lower --n")
    if strategy == "random":
        return np.sort(np.random.default_rng(seed).choice(shape[0], n, replace=False))
    ids, Z = _rows(X, max(max_rows, n), seed)
    if not bool(torch.isfinite(Z).all()):
        raise InputError("the pool holds NaN or infinite values; clean the embeddings first")
    if strategy == "farthest":
        local = farthest_points(Z, n, seed)
    else:
        local = kmeans_medoids(Z, kmeans(Z, n, seed, iters, progress))
    return ids[local]
