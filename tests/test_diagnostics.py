"""Mutual k-NN alignment and spherical sliced Wasserstein diagnostics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sotalign.diagnostics import (
    knn_indices,
    mutual_knn_alignment,
    pool_shift,
    spherical_sliced_wasserstein,
)
from sotalign.errors import InputError


def _brute_mutual_knn(A: np.ndarray, B: np.ndarray, k: int) -> float:
    """Reference: explicit Python loops, full sort of cosine similarities."""

    def neighbours(X: np.ndarray) -> list[set[int]]:
        Z = X / np.linalg.norm(X, axis=1, keepdims=True)
        S = Z @ Z.T
        out = []
        for i in range(len(Z)):
            order = [j for j in np.argsort(-S[i], kind="stable") if j != i]
            out.append(set(order[:k]))
        return out

    na, nb = neighbours(A), neighbours(B)
    return float(np.mean([len(a & b) / k for a, b in zip(na, nb, strict=True)]))


def test_identical_encoders_give_one() -> None:
    rng = np.random.default_rng(0)
    A = rng.normal(size=(300, 20))
    assert mutual_knn_alignment(A, A, k=10) == 1.0
    # invariant to a rotation and a rescaling of rows (cosine neighbourhoods unchanged)
    Q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    B = (A @ Q) * rng.uniform(0.5, 2.0, size=(300, 1))
    assert mutual_knn_alignment(A, B, k=10) == pytest.approx(1.0)


def test_independent_encoders_give_chance() -> None:
    rng = np.random.default_rng(1)
    n, k = 1000, 10
    vals = [
        mutual_knn_alignment(rng.normal(size=(n, 32)), rng.normal(size=(n, 48)), k=k)
        for _ in range(3)
    ]
    chance = k / (n - 1)
    assert np.mean(vals) == pytest.approx(chance, rel=0.25)


def test_matches_brute_force_reference_and_torch_input() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(size=(120, 5))
    A = z @ rng.normal(size=(5, 16)) + 0.5 * rng.normal(size=(120, 16))
    B = np.tanh(z @ rng.normal(size=(5, 24))) + 0.5 * rng.normal(size=(120, 24))
    got = mutual_knn_alignment(torch.tensor(A, dtype=torch.float32), B, k=7, n_samples=None)
    ref = _brute_mutual_knn(A.astype(np.float32).astype(np.float64), B, 7)
    assert got == pytest.approx(ref, abs=1e-12)
    assert 0.1 < got < 0.9  # shared latent: partial agreement


def test_knn_excludes_self() -> None:
    X = np.random.default_rng(3).normal(size=(50, 4))
    nn = knn_indices(X, 3)
    assert not (nn == np.arange(50)[:, None]).any()


def test_subsampling_is_seeded() -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(size=(3000, 4))
    A, B = z @ rng.normal(size=(4, 8)), z @ rng.normal(size=(4, 8)) + rng.normal(size=(3000, 8))
    a = mutual_knn_alignment(A, B, n_samples=500, seed=7)
    assert a == mutual_knn_alignment(A, B, n_samples=500, seed=7)
    assert a != mutual_knn_alignment(A, B, n_samples=500, seed=8)


def test_mutual_knn_errors() -> None:
    A = np.zeros((10, 3)) + 1.0
    with pytest.raises(InputError, match="rows"):
        mutual_knn_alignment(A, A[:5])
    with pytest.raises(InputError, match="k="):
        mutual_knn_alignment(A, A, k=10)
    with pytest.raises(InputError, match="NaN"):
        mutual_knn_alignment(np.full((10, 3), np.nan), A, k=2)


def test_ssw_zero_for_identical_and_grows_with_shift() -> None:
    rng = np.random.default_rng(5)
    P = rng.normal(size=(400, 16))
    assert spherical_sliced_wasserstein(P, P, n_projections=50) == pytest.approx(0.0, abs=1e-9)
    # row scaling does not matter: pools live on the sphere
    assert spherical_sliced_wasserstein(P, 3 * P, n_projections=50) == pytest.approx(0.0, abs=1e-9)
    Q = rng.normal(size=(400, 16))  # same distribution, different samples
    same = spherical_sliced_wasserstein(P, Q, n_projections=50)
    shift = np.zeros(16)
    shift[0] = 1.0
    small = spherical_sliced_wasserstein(P, Q + 2.0 * shift, n_projections=50)
    large = spherical_sliced_wasserstein(P, Q + 8.0 * shift, n_projections=50)
    assert same < small < large
    assert small > 3 * same


def test_ssw_seeded_and_subsampled() -> None:
    rng = np.random.default_rng(6)
    P, Q = rng.normal(size=(600, 8)), rng.normal(size=(500, 8)) + 0.3
    a = spherical_sliced_wasserstein(P, Q, n_samples=200, n_projections=30, seed=1)
    assert a == spherical_sliced_wasserstein(P, Q, n_samples=200, n_projections=30, seed=1)
    assert a != spherical_sliced_wasserstein(P, Q, n_samples=200, n_projections=30, seed=2)
    with pytest.raises(InputError, match="width"):
        spherical_sliced_wasserstein(P, Q[:, :5])


def test_pool_shift_reports_floor() -> None:
    rng = np.random.default_rng(7)
    paired = rng.normal(size=(600, 8))
    near = pool_shift(rng.normal(size=(600, 8)), paired, n_samples=300, n_projections=30)
    far = pool_shift(rng.normal(size=(600, 8)) + 1.5, paired, n_samples=300, n_projections=30)
    assert near["ssw"] < 3 * near["floor"]
    assert far["ssw"] > 3 * far["floor"] > 0
