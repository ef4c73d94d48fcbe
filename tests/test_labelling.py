"""Which rows to pair: k-means medoids, farthest points and random choice (sotalign.labelling)
and `sotalign suggest-pairs`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cli_helpers import run_cli
from sotalign.arrays import l2_normalize
from sotalign.errors import ConfigError, InputError
from sotalign.labelling import farthest_points, kmeans, suggest_pairs


def _clusters(n_per: int = 40, k: int = 8, d: int = 16, seed: int = 0) -> np.ndarray:
    """k tight, well separated clusters on the sphere, of very unequal sizes (1 … k parts)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    sizes = [n_per * (i + 1) // 2 + 2 for i in range(k)]
    parts = [c + 0.05 * rng.standard_normal((s, d)) for c, s in zip(centres, sizes, strict=True)]
    return np.concatenate(parts).astype(np.float32)


def _unit(X: np.ndarray) -> torch.Tensor:
    return l2_normalize(torch.as_tensor(X))


def _kmeans_cost(Z: torch.Tensor, idx: np.ndarray) -> float:
    """Σᵢ min_j ‖zᵢ − z_idx[j]‖²: how well the chosen rows represent the pool."""
    return float(torch.cdist(Z, Z[torch.as_tensor(idx)]).min(1).values.pow(2).sum())


def _radius(Z: torch.Tensor, idx: np.ndarray) -> float:
    return float(torch.cdist(Z, Z[torch.as_tensor(idx)]).min(1).values.max())


def test_kmeans_medoids_cover_every_cluster_and_beat_random():
    X = _clusters()
    Z = _unit(X)
    idx = suggest_pairs(X, 8, "kmeans", seed=0)
    assert len(set(idx.tolist())) == 8 and idx.min() >= 0 and idx.max() < len(X)
    labels = np.repeat(np.arange(8), [40 * (i + 1) // 2 + 2 for i in range(8)])
    assert sorted(labels[idx].tolist()) == list(range(8))  # one medoid per cluster
    random_costs = [_kmeans_cost(Z, suggest_pairs(X, 8, "random", seed=s)) for s in range(10)]
    assert _kmeans_cost(Z, idx) < min(random_costs)


def test_farthest_points_cover_the_pool_tighter_than_random():
    X = _clusters(seed=1)
    Z = _unit(X)
    idx = suggest_pairs(X, 8, "farthest", seed=0)
    assert len(set(idx.tolist())) == 8
    assert _radius(Z, idx) < min(_radius(Z, suggest_pairs(X, 8, "random", seed=s))
                                 for s in range(10))  # fmt: skip
    # the greedy rule itself: each new row is the farthest from the ones before it
    chosen = farthest_points(Z, 5, seed=3)
    for t in range(1, 5):
        d = torch.cdist(Z, Z[torch.as_tensor(chosen[:t])]).min(1).values
        assert float(d[chosen[t]]) == pytest.approx(float(d.max()))


def test_kmeans_lowers_its_objective_below_its_seeding():
    Z = _unit(np.random.default_rng(2).standard_normal((300, 8)).astype(np.float32))
    seeded = kmeans(Z, 10, seed=0, iters=0)
    fitted = kmeans(Z, 10, seed=0, iters=25)
    cost = lambda C: float(torch.cdist(Z, C).min(1).values.pow(2).sum())  # noqa: E731
    assert cost(fitted) < cost(seeded)


@pytest.mark.parametrize("strategy", ["random", "kmeans", "farthest"])
def test_deterministic_per_seed_and_subsampled_pools_index_the_pool(strategy):
    X = _clusters(seed=3)
    a = suggest_pairs(X, 6, strategy, seed=4)
    b = suggest_pairs(X, 6, strategy, seed=4)
    np.testing.assert_array_equal(a, b)
    sub = suggest_pairs(X, 6, strategy, seed=4, max_rows=50)  # subsampled before clustering
    assert len(set(sub.tolist())) == 6 and sub.max() < len(X)


def test_bad_requests_are_refused():
    X = _clusters()
    with pytest.raises(InputError, match="cannot suggest"):
        suggest_pairs(X, len(X) + 1)
    with pytest.raises(InputError, match="integer >= 1"):
        suggest_pairs(X, 0)
    with pytest.raises(ConfigError, match="unknown strategy"):
        suggest_pairs(X, 3, "best")
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        suggest_pairs(bad, 3, "kmeans")


def test_cli_writes_one_index_per_line(tmp_path, capsys, monkeypatch):
    X = _clusters()
    np.save(tmp_path / "X.npy", X)
    args = ["suggest-pairs", "--unpaired-images", "X.npy", "--n", "8", "--strategy", "kmeans",
            "--out", "idx.txt", "--quiet"]  # fmt: skip
    code, _, err = run_cli(args, capsys, monkeypatch, tmp_path)
    assert code == 0, err
    got = np.array([int(line) for line in (tmp_path / "idx.txt").read_text().splitlines()])
    np.testing.assert_array_equal(got, suggest_pairs(X, 8, "kmeans", seed=0))
    args = ["suggest-pairs", "--unpaired-texts", "X.npy", "--n", "9999", "--out", "idx.txt"]
    code, _, err = run_cli(args, capsys, monkeypatch, tmp_path)
    assert code == 2 and "cannot suggest 9999" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["suggest-pairs", "--n", "3", "--out", "i.txt"], capsys, monkeypatch,
                             tmp_path)  # fmt: skip
    assert code == 2 and "exactly one pool" in err
