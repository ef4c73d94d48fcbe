"""Diagnostics that predict how well two frozen encoders can be aligned (SPEC §5).

* :func:`mutual_knn_alignment` — the mutual k-nearest-neighbour metric of Huh et al. (2024,
  "The Platonic Representation Hypothesis"): on n pairs (row i of ``A`` and row i of ``B`` describe
  the same item), let N_A(i) be the k nearest neighbours of A_i among the other rows of A by cosine
  similarity (self excluded), and N_B(i) likewise in B. Then

      m_k(A, B) = (1/n) Σ_i |N_A(i) ∩ N_B(i)| / k   ∈ [0, 1].

  It is 1 when both encoders induce the same neighbourhoods and k/(n−1) in expectation for
  independent encoders. SOTAlign's paper uses k = 10 on about 1,000 pairs; the alignment it can
  reach correlates with m_k.
* :func:`spherical_sliced_wasserstein` — the spherical sliced Wasserstein distance of Bonet et al.
  (ICLR 2023), via POT's ``ot.sliced_wasserstein_sphere``, between two pools of one modality
  after L2-normalising their rows (points on S^{d−1}):

      SSW_p(μ, ν) = ( ∫_{V_{d,2}} W_p^p(P^U_# μ, P^U_# ν) dσ(U) )^{1/p},  P^U(x) = Uᵀx/‖Uᵀx‖,

  estimated by Monte Carlo over ``n_projections`` random 2-planes U, with the circle Wasserstein
  distance on each. Both pools are subsampled without replacement to at most ``n_samples`` rows
  (default 2,000) with a seeded generator. The paper uses it between the unpaired and the paired
  pool of each modality: the closer they are, the more the unpaired data help.
  :func:`pool_shift` adds a noise floor — the same distance between two disjoint halves of the
  paired pool, i.e. what sampling alone gives at that sample size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import InputError

__all__ = ["mutual_knn_alignment", "pool_shift", "spherical_sliced_wasserstein"]


def _as_2d_float64(X: Any, name: str) -> np.ndarray:
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().double().numpy()
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D array (rows = samples), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(f"{name} contains NaN or infinite values")
    return arr


def _normalise(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def _subsample(n: int, n_samples: int | None, rng: np.random.Generator) -> np.ndarray:
    if n_samples is None or n <= n_samples:
        return np.arange(n)
    return np.sort(rng.choice(n, size=n_samples, replace=False))


def knn_indices(X: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k nearest rows of each row by cosine similarity, self excluded."""
    Z = _normalise(X)
    S = Z @ Z.T
    np.fill_diagonal(S, -np.inf)
    # argpartition then order is irrelevant: only the neighbour sets matter.
    return np.argpartition(-S, kth=k - 1, axis=1)[:, :k]


def mutual_knn_alignment(
    A: Any,
    B: Any,
    k: int = 10,
    *,
    n_samples: int | None = 1000,
    seed: int = 0,
) -> float:
    """Mutual k-NN alignment m_k(A, B) of two encoders on paired rows (see the module doc).

    ``n_samples`` rows (the same rows of A and B) are drawn with ``seed`` when there are more
    pairs; ``None`` uses all of them.
    """
    A_ = _as_2d_float64(A, "A")
    B_ = _as_2d_float64(B, "B")
    if A_.shape[0] != B_.shape[0]:
        raise InputError(f"A has {A_.shape[0]} rows and B has {B_.shape[0]}: they must be pairs")
    rows = _subsample(A_.shape[0], n_samples, np.random.default_rng(seed))
    n = len(rows)
    if not 1 <= k <= n - 1:
        raise InputError(f"k={k} must be between 1 and n-1={n - 1} (number of pairs used - 1)")
    na = knn_indices(A_[rows], k)
    nb = knn_indices(B_[rows], k)
    # |N_A(i) ∩ N_B(i)| per row via a boolean membership matrix.
    member = np.zeros((n, n), dtype=bool)
    np.put_along_axis(member, na, True, axis=1)
    overlap = np.take_along_axis(member, nb, axis=1).sum(1)
    return float(overlap.mean() / k)


def spherical_sliced_wasserstein(
    P: Any,
    Q: Any,
    *,
    n_samples: int | None = 2000,
    n_projections: int = 200,
    p: int = 2,
    seed: int = 0,
) -> float:
    """SSW_p between the L2-normalised rows of ``P`` and ``Q`` (POT, Bonet et al. 2023).

    Each pool is subsampled to at most ``n_samples`` rows; projections and subsamples are seeded.
    """
    import ot

    P_ = _as_2d_float64(P, "P")
    Q_ = _as_2d_float64(Q, "Q")
    if P_.shape[1] != Q_.shape[1]:
        raise InputError(f"pools differ in width: {P_.shape[1]} vs {Q_.shape[1]}")
    if P_.shape[1] < 3:
        raise InputError("the spherical sliced Wasserstein distance needs dimension >= 3")
    rng = np.random.default_rng(seed)
    P_ = _normalise(P_[_subsample(P_.shape[0], n_samples, rng)])
    Q_ = _normalise(Q_[_subsample(Q_.shape[0], n_samples, rng)])
    value = ot.sliced_wasserstein_sphere(
        P_, Q_, n_projections=n_projections, p=p, seed=int(rng.integers(2**31 - 1))
    )
    return float(value)


def pool_shift(
    unpaired: Any,
    paired: Any,
    *,
    n_samples: int | None = 2000,
    n_projections: int = 200,
    seed: int = 0,
) -> dict[str, float]:
    """SSW between an unpaired pool and the paired pool of one modality, with a noise floor.

    The paired pool is split at random into two disjoint halves P1 and P2 (each capped at
    ``n_samples`` rows) and an equally large subsample U of the unpaired pool is drawn. Returns
    ``{"ssw": SSW(U, P2), "floor": SSW(P1, P2), "n": |P2|}``, both with the same projections:
    the floor is what sampling alone gives at that size, so ``ssw`` well above ``floor`` means a
    real distribution shift between the unpaired and the paired data.
    """
    Pp = _as_2d_float64(paired, "paired")
    U = _as_2d_float64(unpaired, "unpaired")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(Pp.shape[0])
    half = Pp.shape[0] // 2
    m = half if n_samples is None else min(half, n_samples)
    m = min(m, U.shape[0])
    if m < 2:
        raise InputError("pool_shift needs at least 4 paired and 2 unpaired rows")
    p1, p2 = Pp[perm[:m]], Pp[perm[half : half + m]]
    u = U[rng.choice(U.shape[0], size=m, replace=False)]
    proj_seed = int(rng.integers(2**31 - 1))
    kw: dict[str, Any] = {"n_samples": None, "n_projections": n_projections, "seed": proj_seed}
    return {
        "ssw": spherical_sliced_wasserstein(u, p2, **kw),
        "floor": spherical_sliced_wasserstein(p1, p2, **kw),
        "n": float(m),
    }
