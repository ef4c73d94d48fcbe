"""sotalign.ot geometries, the one output type, the shared ε-schedule and the auto-mode cache."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from sotalign.ot import (
    Dense,
    Embeddings,
    KLOTConfig,
    SinkhornOutput,
    auto_mode,
    geometry,
    klot_embeddings,
    sinkhorn,
)
from sotalign.ot.control import Schedule, eps_schedule


def _unit(n: int, d: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)


def _err(P: torch.Tensor) -> float:
    n, m = P.shape
    return float((P.sum(1) - 1 / n).abs().sum() + (P.sum(0) - 1 / m).abs().sum())


@pytest.fixture
def fresh_auto_cache():
    auto_mode.cache_clear()
    yield
    auto_mode.cache_clear()  # decisions made under monkeypatched memory must not leak


# ------------------------------------------------------------------------------------------------
# geometries
# ------------------------------------------------------------------------------------------------
def test_geometry_primitives(device):
    x, y = _unit(9, 4, 0).to(device), _unit(7, 4, 1).to(device)
    K = x @ y.T
    shift = torch.arange(7, dtype=K.dtype, device=device)[None, :]
    for geom in (Dense(K), Embeddings(x, y, tile_bytes=100)):
        assert geom.shape == (9, 7) and geom.device.type == device.type
        assert torch.allclose(geom.affinity(), K, atol=1e-15)
        assert torch.allclose(geom.rows(2, 5, 3.0, shift), 3.0 * K[2:5] + shift, atol=1e-14)
        assert geom.span() >= float(K.amax() - K.amin())
        grads = geom.grads(torch.ones(9, 7, dtype=K.dtype, device=device))
        acc = geom.new_grads()
        for i in (0, 4, 8):  # row blocks of G = 1
            geom.add_grads(acc, i, torch.ones(min(4, 9 - i), 7, dtype=K.dtype, device=device))
        for full, tiled in zip(grads, acc, strict=True):
            assert torch.allclose(full, tiled, atol=1e-14)
    assert Dense(K).span() == float(K.amax() - K.amin())  # exact range
    assert Embeddings(x, y).span() == 2.0  # cosines: the bound, unaffected by rounding
    assert Embeddings(x * (1 + 1e-6), y).span() == 2.0
    assert Embeddings(3 * x, y).span() == pytest.approx(6.0)
    assert Embeddings(1.02 * x, y).span() == pytest.approx(2.04)
    assert Embeddings(x, y, tile_bytes=100).tile_rows() == 1  # budget below one row: 1 row


def test_one_output_type_for_every_solver_and_geometry(device):
    x, y = _unit(12, 5, 2).to(device), _unit(10, 5, 3).to(device)
    K = x @ y.T
    ref = sinkhorn(K, 0.1, n_iter=5000, tol=1e-12, mode="log")
    for geom in (K, Dense(K), Embeddings(x, y, tile_bytes=300)):
        for mode, solver in (("log", "log"), ("dense", "scaling"), ("tiled", "tiled")):
            res = sinkhorn(geom, 0.1, n_iter=5000, tol=1e-12, mode=mode)
            assert type(res) is SinkhornOutput and res.solver == solver
            assert res.converged and res.eps == 0.1 and res.f.device.type == device.type
            assert torch.allclose(res.plan, ref.plan, atol=1e-12)
            # the plan is the Gibbs form of the potentials, formed on demand
            gibbs = ((K + res.f[:, None] + res.g[None, :]) / 0.1).exp()
            assert torch.allclose(res.plan, gibbs, rtol=1e-9, atol=1e-15)
            assert torch.allclose(res.log_plan.exp(), res.plan)
            row, col = res.marginals()
            assert torch.allclose(row, res.plan.sum(1)) and torch.allclose(col, res.plan.sum(0))


@pytest.mark.parametrize("kw", [{"n_iter": 5}, {"n_iter": 3, "tol": 1e-12}, {"n_iter": 9}])
def test_tiled_output_reports_the_error_of_the_returned_plan(kw, device):
    """Stopped by the budget (after a column update, or before the final ε-stage ran)."""
    x, y = _unit(30, 6, 4).to(device), _unit(20, 6, 5).to(device)
    res = sinkhorn(Embeddings(x, y, tile_bytes=2000), 0.02, mode="tiled", **kw)
    assert res.n_iter == kw["n_iter"]
    assert abs(_err(res.plan) - res.marginal_error) < 1e-12
    assert not res.converged


def test_auto_mode_on_embeddings_and_matrices(device, fresh_auto_cache, monkeypatch):
    x, y = _unit(8, 3, 6).to(device), _unit(6, 3, 7).to(device)
    assert sinkhorn(Embeddings(x, y), 0.1).solver == "scaling"  # small: dense fits
    auto_mode.cache_clear()
    monkeypatch.setattr(geometry, "_available_bytes", lambda device: 0)
    assert sinkhorn(Embeddings(x, y), 0.1).solver == "tiled"  # no memory: tiled
    assert sinkhorn(x @ y.T, 0.1).solver == "scaling"  # a given matrix is solved densely


# ------------------------------------------------------------------------------------------------
# the shared ε-scaling schedule
# ------------------------------------------------------------------------------------------------
def test_eps_schedule():
    assert eps_schedule(0.05, 2.0) == pytest.approx([2.0, 0.8, 0.32, 0.128, 0.0512, 0.05])
    assert eps_schedule(0.05, 0.04) == [0.05]
    assert eps_schedule(0.05, 0.05) == [0.05]
    sched = eps_schedule(1e-3, 1.7)
    assert sched[0] == 1.7 and sched[-1] == 1e-3 and all(e > 1e-3 for e in sched[:-1])
    assert all(math.isclose(b / a, 0.4) for a, b in itertools.pairwise(sched[:-1]))
    # used only with a tolerance, acceleration on, and a cold start
    assert Schedule.make(0.05, 100, 1e-4, True, lambda: 2.0).eps[0] == 2.0
    assert Schedule.make(0.05, 100, None, True, lambda: 2.0).eps == (0.05,)
    assert Schedule.make(0.05, 100, 1e-4, False, lambda: 2.0).eps == (0.05,)
    assert Schedule.make(0.05, 100, 1e-4, True, None).eps == (0.05,)
    stages = list(Schedule.make(0.05, 100, 1e-6, True, lambda: 1.0).stages())
    assert [s[2] for s in stages] == [1e-3, 1e-3, 1e-3, 1e-3, 1e-6]  # stage tolerances
    assert [s[1] for s in stages] == [False] * 4 + [True]


def test_both_fast_solvers_use_the_same_schedule(device):
    x, y = _unit(25, 6, 8, dtype=torch.float32).to(device), _unit(25, 6, 9).float().to(device)
    K = x @ y.T
    span = float(K.amax() - K.amin())
    dense = sinkhorn(Dense(K), 0.01, n_iter=3000, tol=1e-4, mode="dense")
    tiled = sinkhorn(Dense(K), 0.01, n_iter=3000, tol=1e-4, mode="tiled")
    emb = sinkhorn(Embeddings(x, y), 0.01, n_iter=3000, tol=1e-4, mode="tiled")
    assert dense.diagnostics["eps_schedule"] == eps_schedule(0.01, span)
    assert tiled.diagnostics["eps_schedule"] == eps_schedule(0.01, span)
    assert emb.diagnostics["eps_schedule"] == eps_schedule(0.01, 2.0)
    assert dense.converged and tiled.converged and emb.converged


# ------------------------------------------------------------------------------------------------
# mode="auto": decided once per problem size and device
# ------------------------------------------------------------------------------------------------
def test_auto_mode_reads_free_memory_once_per_shape(monkeypatch, fresh_auto_cache):
    reads = []

    def fake_available(device: torch.device) -> int:
        reads.append(device)
        return 3 * 20 * 16 * 4 * 2  # room for dense 20×16 float32, not 40×16 or float64

    monkeypatch.setattr(geometry, "_available_bytes", fake_available)
    cfg = KLOTConfig(n_iter=3)
    zx, zy = _unit(20, 4, 10, torch.float32), _unit(16, 4, 11, torch.float32)
    for _ in range(3):
        _, info = klot_embeddings(zx, zy, zx[:, :2], zy[:, :2], cfg)
        assert info.mode == "dense"
    assert len(reads) == 1
    zx2 = _unit(40, 4, 12, torch.float32)
    for _ in range(2):
        _, info = klot_embeddings(zx2, zy, zx2[:, :2], zy[:, :2], cfg)
        assert info.mode == "tiled"
    assert len(reads) == 2
    _, info = klot_embeddings(zx.double(), zy.double(), zx[:, :2], zy[:, :2], cfg)
    assert info.mode == "tiled" and len(reads) == 3  # itemsize is part of the key
    assert auto_mode.cache_info().currsize == 3
    auto_mode.cache_clear()
    klot_embeddings(zx, zy, zx[:, :2], zy[:, :2], cfg)
    assert len(reads) == 4


def test_dense_fits_reads_memory_every_call(monkeypatch):
    reads = []
    monkeypatch.setattr(geometry, "_available_bytes", lambda d: reads.append(d) or 10**9)
    assert geometry.dense_fits(100, 100) and geometry.dense_fits(100, 100)
    assert len(reads) == 2
    assert not geometry.dense_fits(10**5, 10**5)


def test_info_as_dict_is_json_able():
    zx, zy = _unit(7, 3, 13, torch.float32), _unit(5, 3, 14, torch.float32)
    for mode in ("dense", "tiled", "log"):
        _, info = klot_embeddings(zx, zy, zx[:, :2], zy[:, :2], mode=mode, n_iter=4)
        d = info.as_dict()
        assert set(d) == {
            "marginal_error",
            "marginal_error_teacher",
            "n_iter",
            "n_iter_teacher",
            "converged",
            "converged_teacher",
            "stabilised",
            "stabilised_teacher",
            "mode",
            "value",
            "world_size",
        }
        assert d["mode"] == mode and d["n_iter"] == 4
        assert type(d["marginal_error"]) is float and type(d["n_iter"]) is int
        assert type(d["converged"]) is bool and type(d["stabilised_teacher"]) is bool
        assert json.loads(json.dumps(d)) == d
