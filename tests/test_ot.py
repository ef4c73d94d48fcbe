"""sotalign.ot against independent references: unrolled autograd, POT, finite differences."""

from __future__ import annotations

import math

import pytest
import torch

from sotalign.errors import ConfigError, InputError
from sotalign.ot import KLOTInfo, klot, klot_embeddings, sinkhorn


def _cosines(n: int, m: int, d: int = 8, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)
    y = torch.nn.functional.normalize(torch.randn(m, d, generator=g, dtype=dtype), dim=1)
    return x @ y.T


def _unrolled_log_plan(K: torch.Tensor, eps: float, n_iter: int) -> torch.Tensor:
    """Plain differentiable log-domain Sinkhorn (the reference autograd path)."""
    n, m = K.shape
    L = K / eps
    log_a = torch.full((n,), -math.log(n), dtype=K.dtype)
    log_b = torch.full((m,), -math.log(m), dtype=K.dtype)
    v = torch.zeros(m, dtype=K.dtype)
    u = torch.zeros(n, dtype=K.dtype)
    for _ in range(n_iter):
        u = log_a - torch.logsumexp(L + v[None, :], dim=1)
        v = log_b - torch.logsumexp(L + u[:, None], dim=0)
    return L + u[:, None] + v[None, :]


@pytest.mark.parametrize(
    ("n", "m", "eps", "eps_t", "seed"),
    [(7, 7, 0.5, 0.1, 0), (6, 9, 0.2, 0.05, 1), (10, 5, 0.1, 0.05, 2)],
)
def test_klot_gradient_matches_unrolled_autograd(n, m, eps, eps_t, seed, device):
    K = _cosines(n, m, seed=seed)
    Kt = _cosines(n, m, seed=seed + 100)
    iters = 3000
    # Reference: autograd through a fully converged unrolled Sinkhorn, P* fixed.
    Kr = K.clone().requires_grad_(True)
    log_p = _unrolled_log_plan(Kr, eps, iters)
    with torch.no_grad():
        log_p_star = _unrolled_log_plan(Kt, eps_t, iters)
    kl_ref = (log_p_star.exp() * (log_p_star - log_p)).sum()
    (grad_ref,) = torch.autograd.grad(kl_ref, Kr)

    Kk = K.to(device).requires_grad_(True)
    val = klot(Kk, Kt.to(device), eps=eps, eps_teacher=eps_t, n_iter=iters)
    val.backward()
    assert val.dtype == torch.float64 and Kk.grad.device.type == device.type
    assert abs(val.item() - kl_ref.item()) <= 1e-9 * max(1.0, abs(kl_ref.item()))
    grad = Kk.grad.cpu()
    rel = (grad - grad_ref).norm() / grad_ref.norm()
    assert rel < 1e-5, rel
    # and the closed form itself: (P - P*)/eps
    closed = (log_p.detach().exp() - log_p_star.exp()) / eps
    assert torch.allclose(grad, closed, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize(("n", "m", "eps"), [(8, 8, 0.05), (12, 7, 0.1), (5, 11, 1.0)])
def test_sinkhorn_matches_pot(n, m, eps, device):
    ot = pytest.importorskip("ot")
    K = _cosines(n, m, seed=n + m)
    a = torch.full((n,), 1.0 / n, dtype=torch.float64)
    b = torch.full((m,), 1.0 / m, dtype=torch.float64)
    P_pot = ot.sinkhorn(
        a.numpy(),
        b.numpy(),
        (-K).numpy(),
        reg=eps,
        method="sinkhorn_log",
        numItermax=20000,
        stopThr=1e-14,
    )
    res = sinkhorn(K.to(device), eps, n_iter=20000, tol=1e-13)
    assert res.converged
    assert res.plan.dtype == torch.float64 and res.plan.device.type == device.type
    plan, f, g = res.plan.cpu(), res.f.cpu(), res.g.cpu()
    diff = (plan - torch.from_numpy(P_pot)).abs().max().item()
    assert diff < 1e-6 * max(1.0, float(P_pot.max())), diff
    # Gibbs form with the reported potentials
    gibbs = ((K + f[:, None] + g[None, :]) / eps).exp()
    assert torch.allclose(gibbs, plan, atol=1e-14, rtol=1e-10)


def test_klot_finite_differences(device):
    K = _cosines(6, 8, seed=3).to(device)
    Kt = _cosines(6, 8, seed=4).to(device)
    eps, eps_t = 0.2, 0.05

    def f(Kin: torch.Tensor) -> float:
        return klot(Kin, Kt, eps=eps, eps_teacher=eps_t, n_iter=2000, tol=1e-14).item()

    Kk = K.clone().requires_grad_(True)
    klot(Kk, Kt, eps=eps, eps_teacher=eps_t, n_iter=2000, tol=1e-14).backward()
    g = torch.Generator().manual_seed(7)
    for _ in range(4):
        D = torch.randn(K.shape, generator=g, dtype=torch.float64).to(device)
        h = 1e-5
        fd = (f(K + h * D) - f(K - h * D)) / (2 * h)
        an = float((Kk.grad * D).sum())
        assert abs(fd - an) <= 1e-6 * max(1.0, abs(an)), (fd, an)


@pytest.mark.parametrize(("n", "m"), [(16, 16), (20, 13)])
def test_sinkhorn_marginals_and_iterations(n, m, device):
    K = _cosines(n, m, seed=5, dtype=torch.float32).to(device)
    res = sinkhorn(K, 0.05, n_iter=500, tol=1e-6)
    P = res.plan.double()
    err = (P.sum(1) - 1 / n).abs().sum() + (P.sum(0) - 1 / m).abs().sum()
    assert res.plan.dtype == torch.float32
    assert abs(float(err) - res.marginal_error) < 1e-6
    assert res.converged and res.marginal_error <= 1e-5
    assert res.n_iter < 500
    assert abs(float(P.sum()) - 1.0) < 1e-5
    # fixed iterations: exactly n_iter
    res2 = sinkhorn(K, 0.05, n_iter=3)
    assert res2.n_iter == 3
    # weighted marginals
    a = torch.arange(1, n + 1, dtype=torch.float32, device=device)
    res3 = sinkhorn(K, 0.1, n_iter=2000, tol=1e-6, a=a)
    assert torch.allclose(res3.plan.sum(1), a / a.sum(), atol=1e-5)


def test_half_precision_is_upcast(device):
    K = _cosines(10, 10, seed=9, dtype=torch.float32).to(device)
    Kt = _cosines(10, 10, seed=10, dtype=torch.float32).to(device)
    res = sinkhorn(K.half(), 0.01)
    assert res.plan.dtype == torch.float32
    assert torch.isfinite(res.log_plan).all()
    Kh = K.bfloat16().requires_grad_(True)
    v = klot(Kh, Kt.bfloat16(), eps=0.05, eps_teacher=0.01)
    v.backward()
    assert v.dtype == torch.bfloat16 and Kh.grad.dtype == torch.bfloat16
    assert torch.isfinite(Kh.grad.float()).all()


def test_klot_embeddings_gradients_match_matrix_klot(device):
    g = torch.Generator().manual_seed(11)
    n, m, d = 9, 12, 5

    def unit(rows: int, dim: int) -> torch.Tensor:
        z = torch.randn(rows, dim, generator=g, dtype=torch.float64)
        return torch.nn.functional.normalize(z, dim=1).to(device)

    zx, zy, tx, ty = unit(n, d), unit(m, d), unit(n, 4), unit(m, 4)
    zx.requires_grad_(True)
    zy.requires_grad_(True)
    loss, info = klot_embeddings(zx, zy, tx, ty, eps=0.1, eps_teacher=0.05, n_iter=300)
    loss.backward()
    assert isinstance(info, KLOTInfo)
    d_info = info.as_dict()
    assert d_info["n_iter"] == 300 and d_info["n_iter_teacher"] == 300
    assert info.marginal_error < 1e-6
    assert zx.grad.device.type == device.type

    K = (zx.detach() @ zy.detach().T).requires_grad_(True)
    val = klot(K, tx @ ty.T, eps=0.1, eps_teacher=0.05, n_iter=300)
    val.backward()
    assert abs(val.item() - loss.item()) < 1e-12
    assert torch.allclose(zx.grad, K.grad @ zy.detach(), atol=1e-12)
    assert torch.allclose(zy.grad, K.grad.T @ zx.detach(), atol=1e-12)


def test_bad_inputs_raise():
    K = torch.zeros(3, 3)
    with pytest.raises(ConfigError):
        sinkhorn(K, 0.0)
    with pytest.raises(ConfigError):
        sinkhorn(K, 0.1, n_iter=0)
    with pytest.raises(InputError):
        sinkhorn(torch.zeros(3), 0.1)
    with pytest.raises(InputError):
        klot(torch.zeros(3, 3), torch.zeros(3, 4))
    with pytest.raises(ConfigError, match="did you mean"):
        klot_embeddings(torch.eye(3), torch.eye(3), torch.eye(3), torch.eye(3), mode="dens")
    bad = torch.zeros(3, 3)
    bad[0, 0] = float("nan")
    with pytest.raises(InputError):
        sinkhorn(bad, 0.1)
    with pytest.raises(InputError, match="affinity contains NaN"):
        klot(bad, K)
    with pytest.raises(InputError, match="not finite"):
        klot_embeddings(bad, torch.eye(3), torch.eye(3), torch.eye(3))
