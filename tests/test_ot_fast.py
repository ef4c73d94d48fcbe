"""Fast KLOT paths (stabilised scaling solver, tiled solver) against float64 references."""

from __future__ import annotations

import math

import pytest
import torch

from sotalign import ot as sot
from sotalign.errors import InputError
from sotalign.ot import klot, klot_embeddings, sinkhorn


def _unit(n: int, d: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)


def _clustered(n: int, m: int, d: int, seed: int, dtype=torch.float64):
    """Unit embeddings with cluster structure (cosines spread over most of [-1, 1])."""
    g = torch.Generator().manual_seed(seed)
    C = torch.randn(6, d, generator=g, dtype=dtype)
    x = C[torch.randint(6, (n,), generator=g)] + 0.3 * torch.randn(n, d, generator=g, dtype=dtype)
    y = C[torch.randint(6, (m,), generator=g)] + 0.3 * torch.randn(m, d, generator=g, dtype=dtype)
    N = torch.nn.functional.normalize
    return N(x, dim=1), N(y, dim=1)


def _marg_err(P: torch.Tensor) -> float:
    n, m = P.shape
    P = P.double()
    return float((P.sum(1) - 1 / n).abs().sum() + (P.sum(0) - 1 / m).abs().sum())


# ------------------------------------------------------------------------------------------------
# solver paths agree with float64 references
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "m", "eps"), [(20, 20, 0.1), (17, 29, 0.03), (31, 12, 0.5)])
def test_scaling_solver_matches_pot_float64(n, m, eps, device):
    ot = pytest.importorskip("ot")
    x, y = _clustered(n, m, 6, seed=n * m)
    K = x @ y.T
    a = torch.full((n,), 1.0 / n, dtype=torch.float64)
    b = torch.full((m,), 1.0 / m, dtype=torch.float64)
    P_pot = torch.from_numpy(
        ot.sinkhorn(
            a.numpy(),
            b.numpy(),
            (-K).numpy(),
            reg=eps,
            method="sinkhorn_log",
            numItermax=50000,
            stopThr=1e-13,
        )
    )
    for acc in (False, True):
        res = sinkhorn(K.to(device), eps, n_iter=50000, tol=1e-12, mode="dense", accelerate=acc)
        assert res.solver == "scaling" and res.converged and res.f.device.type == device.type
        plan = res.plan.cpu()
        assert (plan - P_pot).abs().max().item() < 1e-6 * max(1.0, P_pot.max().item())
        assert abs(_marg_err(plan) - res.marginal_error) < 1e-12
        gibbs = ((K + res.f.cpu()[:, None] + res.g.cpu()[None, :]) / eps).exp()
        assert torch.allclose(gibbs, plan, rtol=1e-9, atol=1e-15)


def test_fast_klot_matches_reference_klot_float64(device):
    x, y = _clustered(24, 19, 5, seed=1)
    tx, ty = _clustered(24, 19, 4, seed=2)
    K, Kt = (x @ y.T).to(device), (tx @ ty.T).to(device)
    out = {}
    for mode in ("log", "dense"):
        Kk = K.clone().requires_grad_(True)
        v = klot(Kk, Kt, eps=0.05, eps_teacher=0.01, n_iter=50000, tol=1e-11, mode=mode)
        v.backward()
        out[mode] = (v.item(), Kk.grad)
    assert abs(out["log"][0] - out["dense"][0]) < 1e-8 * abs(out["log"][0])
    g_ref, g = out["log"][1], out["dense"][1]
    assert ((g - g_ref).norm() / g_ref.norm()).item() < 1e-6


def test_tiled_follows_reference_trajectory_exactly(device):
    """Tiled solver = reference log-domain updates (same start, same iterates) at fixed n_iter."""
    zx, zy = (z.to(device) for z in _clustered(37, 23, 5, seed=3))
    tx, ty = (z.to(device) for z in _clustered(37, 23, 3, seed=4))
    for iters in (1, 7, 60):
        Kk = (zx @ zy.T).requires_grad_(True)
        v_ref = klot(Kk, tx @ ty.T, eps=0.05, eps_teacher=0.01, n_iter=iters, mode="log")
        v_ref.backward()
        x = zx.clone().requires_grad_(True)
        y = zy.clone().requires_grad_(True)
        # tiny tiles: several row tiles per pass
        v, info = klot_embeddings(x, y, tx, ty, n_iter=iters, mode="tiled", tile_bytes=4000)
        v.backward()
        assert info.mode == "tiled" and info.n_iter == iters
        assert abs(v.item() - v_ref.item()) < 1e-10 * max(1.0, abs(v_ref.item()))
        assert torch.allclose(x.grad, Kk.grad @ zy, atol=1e-10)
        assert torch.allclose(y.grad, Kk.grad.T @ zx, atol=1e-10)
        # the tiled solver on the given matrices (row tiles of K): the same trajectory
        Km = (zx @ zy.T).requires_grad_(True)
        v_m = klot(Km, tx @ ty.T, n_iter=iters, mode="tiled", tile_bytes=4000)
        v_m.backward()
        assert abs(v_m.item() - v_ref.item()) < 1e-10 * max(1.0, abs(v_ref.item()))
        assert torch.allclose(Km.grad, Kk.grad, atol=1e-10)


def test_tiled_matches_dense_float32(device):
    zx, zy = (z.to(device) for z in _clustered(150, 110, 16, seed=5, dtype=torch.float32))
    tx, ty = (z.to(device) for z in _clustered(150, 110, 8, seed=6, dtype=torch.float32))
    tol = 1e-5
    x64 = zx.double().requires_grad_(True)
    v64, _ = klot_embeddings(
        x64, zy.double(), tx.double(), ty.double(), mode="dense", n_iter=20000, tol=1e-10
    )
    v64.backward()
    for mode in ("dense", "tiled"):
        x = zx.clone().requires_grad_(True)
        y = zy.clone().requires_grad_(True)
        v, info = klot_embeddings(x, y, tx, ty, mode=mode, tile_bytes=200_000, n_iter=4000, tol=tol)
        v.backward()
        assert v.dtype == torch.float32 and info.mode == mode
        assert abs(v.item() - v64.item()) <= 1e-3 * abs(v64.item()), (mode, v.item())
        rel = ((x.grad.double() - x64.grad).norm() / x64.grad.norm()).item()
        assert rel < 1e-2, (mode, rel)
        assert info.marginal_error <= 1.5 * tol and info.marginal_error_teacher <= 1.5 * tol
    # fixed iterations in float32: tiled = reference log-domain trajectory
    Kk = (zx @ zy.T).requires_grad_(True)
    v_ref = klot(Kk, tx @ ty.T, n_iter=50, mode="log")
    v_ref.backward()
    x = zx.clone().requires_grad_(True)
    v, _ = klot_embeddings(x, zy, tx, ty, mode="tiled", tile_bytes=100_000, n_iter=50)
    v.backward()
    assert abs(v.item() - v_ref.item()) < 1e-4 * abs(v_ref.item())
    assert ((x.grad - Kk.grad @ zy).norm() / x.grad.norm()).item() < 1e-3


def test_dense_gradient_is_closed_form(device):
    zx, zy = (z.to(device) for z in _clustered(30, 40, 6, seed=7))
    tx, ty = (z.to(device) for z in _clustered(30, 40, 4, seed=8))
    x = zx.clone().requires_grad_(True)
    y = zy.clone().requires_grad_(True)
    v, info = klot_embeddings(x, y, tx, ty, n_iter=3000, tol=1e-12, mode="dense")
    (3.0 * v).backward()
    P = sinkhorn(zx @ zy.T, 0.05, n_iter=50000, tol=1e-13, mode="log").plan
    Ps = sinkhorn(tx @ ty.T, 0.01, n_iter=50000, tol=1e-13, mode="log").plan
    G = (P - Ps) / 0.05
    assert torch.allclose(x.grad, 3.0 * G @ zy, atol=1e-7)
    assert torch.allclose(y.grad, 3.0 * G.T @ zx, atol=1e-7)
    kl = (Ps * (Ps.log() - P.log())).sum().item()
    assert abs(v.item() - kl) < 1e-8 * kl
    assert info.converged and info.converged_teacher


# ------------------------------------------------------------------------------------------------
# convergence control, warm starts
# ------------------------------------------------------------------------------------------------
def test_tolerance_and_iterations_are_reported(device):
    x, y = _clustered(64, 64, 8, seed=9, dtype=torch.float32)
    K = (x @ y.T).to(device)
    res = sinkhorn(K, 0.01, n_iter=5000, tol=1e-4)
    assert res.converged and res.marginal_error <= 1e-4 and res.n_iter < 5000
    assert abs(_marg_err(res.plan) - res.marginal_error) < 2e-6
    assert res.diagnostics["eps_schedule"][-1] == 0.01 and len(res.diagnostics["eps_schedule"]) > 1
    fixed = sinkhorn(K, 0.01, n_iter=7)
    assert fixed.n_iter == 7 and not fixed.converged
    assert abs(_marg_err(fixed.plan) - fixed.marginal_error) < 2e-6
    capped = sinkhorn(K, 0.01, n_iter=3, tol=1e-12)
    assert capped.n_iter == 3 and not capped.converged


def test_warm_start_converges_immediately(device):
    x, y = _clustered(40, 50, 6, seed=10)
    K = (x @ y.T).to(device)
    res = sinkhorn(K, 0.02, n_iter=20000, tol=1e-10)
    for mode in ("dense", "tiled"):
        warm = sinkhorn(K, 0.02, n_iter=20000, tol=1e-10, init=(res.f, res.g), mode=mode)
        assert warm.n_iter <= 1 and warm.converged, mode
        assert torch.allclose(warm.plan, res.plan, atol=1e-12)
    with pytest.raises(InputError):
        sinkhorn(K, 0.02, init=(res.f, res.f))


def test_auto_mode_and_info_dict():
    zx, zy = _clustered(12, 9, 4, seed=11, dtype=torch.float32)
    _, info = klot_embeddings(zx, zy, zx[:, :3], zy[:, :3])
    d = info.as_dict()
    assert d["mode"] == "dense" and {"marginal_error", "n_iter", "n_iter_teacher"} <= set(d)
    assert sot.dense_fits(1000, 1000) and not sot.dense_fits(10**7, 10**7)


# ------------------------------------------------------------------------------------------------
# stability: no NaN/Inf for eps in [1e-3, 1] on cosine affinities, adversarial cases included
# ------------------------------------------------------------------------------------------------
def _adversarial(name: str, n: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(12)
    if name == "random":
        x, y = _clustered(n, n, 8, seed=13, dtype=torch.float32)
        return x @ y.T
    if name == "constant_rows":
        K = torch.rand(n, n, generator=g) * 2 - 1
        K[: n // 3] = 0.7
        return K
    if name == "constant":
        return torch.full((n, n), -0.3)
    if name == "blocks":
        s = torch.where(torch.arange(n) < n // 3, 1.0, -1.0)
        K = s[:, None] * s[None, :]
        K[n // 2 :, : n // 4] = 1.0
        return K
    if name == "duplicates":
        x, y = _clustered(n // 4, n, 8, seed=14, dtype=torch.float32)
        return (x.repeat(4, 1) @ y.T).clamp(-1, 1)
    if name == "outlier_columns":
        x, y = _clustered(n, n, 8, seed=15, dtype=torch.float32)
        K = x @ y.T
        K[:, :5] = -1.0  # columns far from every row: underflow at small eps
        K[:3] = -1.0
        return K
    raise KeyError(name)


_CASES = ["random", "constant_rows", "constant", "blocks", "duplicates", "outlier_columns"]


@pytest.mark.parametrize("case", _CASES)
@pytest.mark.parametrize("eps", [1e-3, 1e-2, 0.1, 1.0])
def test_no_nan_or_inf(case, eps, device):
    K = _adversarial(case).to(device)
    Kt = _adversarial("blocks" if case != "blocks" else "random").to(device)
    for kw in ({"n_iter": 50}, {"n_iter": 300, "tol": 1e-4}):
        res = sinkhorn(K, eps, **kw)
        assert torch.isfinite(res.log_plan).all() and torch.isfinite(res.f).all()
        assert torch.isfinite(res.g).all() and math.isfinite(res.marginal_error)
        assert abs(_marg_err(res.plan) - res.marginal_error) < 1e-4
        Kk = K.clone().requires_grad_(True)
        v = klot(Kk, Kt, eps=eps, eps_teacher=eps, **kw)
        v.backward()
        assert math.isfinite(v.item()) and v.item() > -1e-4
        assert torch.isfinite(Kk.grad).all()


def test_small_eps_reports_stabilisation_and_matches_float64(device):
    K = _adversarial("outlier_columns", n=40).to(device)
    ref = sinkhorn(K.double(), 1e-3, n_iter=20000, tol=1e-10, mode="log")
    # fixed iterations, no eps-scaling: scalings leave [e^-25, e^25] and get absorbed
    res = sinkhorn(K, 1e-3, n_iter=300)
    assert res.stabilised and res.diagnostics["n_absorb"] > 0
    assert torch.isfinite(res.log_plan).all()
    assert abs(_marg_err(res.plan) - res.marginal_error) < 1e-4
    # a warm start so bad that whole kernel rows underflow: exact log-domain row updates
    bad_init = (torch.zeros(40, device=device), torch.full((40,), -1.0, device=device))
    res = sinkhorn(K, 1e-2, n_iter=3000, tol=1e-5, init=bad_init)
    assert res.stabilised and res.diagnostics["n_log_rows"] > 0
    assert res.converged and torch.isfinite(res.log_plan).all()
    ref2 = sinkhorn(K.double(), 1e-2, n_iter=20000, tol=1e-10, mode="log")
    assert (res.plan.double() - ref2.plan).abs().sum().item() < 1e-3
    # eps-scaling path
    res = sinkhorn(K, 1e-3, n_iter=3000, tol=1e-5)
    assert res.converged
    assert (res.plan.double() - ref.plan).abs().sum().item() < 1e-3


def test_tiled_no_nan_small_eps(device):
    x, y = (z.to(device) for z in _clustered(40, 30, 6, seed=16, dtype=torch.float32))
    y = y.clone()
    y[:4] = -x[0]  # text rows opposite to an image: extreme affinities
    for eps in (1e-3, 1.0):
        xx = x.clone().requires_grad_(True)
        v, info = klot_embeddings(
            xx, y, x, y, eps=eps, eps_teacher=eps, n_iter=30, mode="tiled", tile_bytes=5000
        )
        v.backward()
        assert math.isfinite(v.item()) and torch.isfinite(xx.grad).all()
        assert math.isfinite(info.marginal_error)


def test_device_matches_cpu(device):
    """Every mode on ``device`` gives the CPU dense result (value and gradient), on ``device``."""
    zx, zy = _clustered(64, 48, 8, seed=17, dtype=torch.float32)
    tx, ty = _clustered(64, 48, 4, seed=18, dtype=torch.float32)
    out = {}
    for dev in ("cpu", device):
        for mode in ("dense", "tiled"):
            x = zx.to(dev).clone().requires_grad_(True)
            v, _ = klot_embeddings(
                x, zy.to(dev), tx.to(dev), ty.to(dev), mode=mode, n_iter=2000, tol=1e-5
            )
            v.backward()
            assert x.grad.device.type == torch.device(dev).type
            out[(str(dev), mode)] = (v.item(), x.grad.cpu().clone())
    ref_v, ref_g = out[("cpu", "dense")]
    for key, (v, g) in out.items():
        assert abs(v - ref_v) < 1e-3 * abs(ref_v), key
        assert ((g - ref_g).norm() / ref_g.norm()).item() < 1e-2, key
