"""Log-domain Sinkhorn: the reference solver of SPEC §3 and its tiled (online) form.

Both iterate, in scaled potentials ``u = f/ε``, ``v = g/ε`` and log-kernel ``L = K/ε``::

    u ← log a − LSE_j(L_ij + v_j),     v ← log b − LSE_i(L_ij + u_i),     log P = L + u ⊕ v,

starting from ``u = v = 0``. Nothing can overflow (every exponent goes through a log-sum-exp).

- :func:`solve_log` — literally the above on the whole matrix (an n×m temporary per half-step).
  The reference for tests and benchmarks.
- :func:`solve_tiled` — the same updates computed from the geometry one row tile at a time
  (``L_I = (K_I + g)/ε`` by one GEMM for embeddings, online log-sum-exp over the tiles for the
  column update): memory O(tile) besides the geometry, one GEMM pass per iteration
  (compute-bound); with a tolerance, ε-scaling and over-relaxation (:mod:`.control`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sotalign.parallel import LOCAL, Comm

from .control import Relaxation, Schedule, is_converged, l1_error
from .geometry import Geometry, global_span
from .output import SinkhornOutput

__all__ = ["solve_log", "solve_tiled"]


def solve_log(
    geom: Geometry,
    eps: float,
    n_iter: int,
    tol: float | None,
    log_a: Tensor,
    log_b: Tensor,
    check_every: int = 10,
) -> SinkhornOutput:
    """Log-domain Sinkhorn exactly as SPEC §3 (see the module docstring).

    After a column update the column marginals are exact, so the L1 marginal error equals the
    row error ``Σ_i |exp(u_i + LSE_j(L_ij + v_j)) − a_i|``, checked every ``check_every``
    iterations when ``tol`` is given. The returned error is recomputed from ``log P = L + u ⊕ v``,
    which the output keeps.
    """
    K = geom.affinity()
    L = K / eps
    v = torch.zeros(K.shape[1], dtype=K.dtype, device=K.device)
    u = torch.zeros(K.shape[0], dtype=K.dtype, device=K.device)
    a = log_a.exp()
    it = 0
    for it in range(1, n_iter + 1):
        u = log_a - torch.logsumexp(L + v[None, :], dim=1)
        v = log_b - torch.logsumexp(L + u[:, None], dim=0)
        if tol is not None and (it % check_every == 0 or it == n_iter):
            row = (u + torch.logsumexp(L + v[None, :], dim=1)).exp()
            if float((row - a).abs().sum()) <= tol:
                break
    log_plan = L.add_(u[:, None]).add_(v[None, :])
    row = torch.logsumexp(log_plan, dim=1).exp()
    col = torch.logsumexp(log_plan, dim=0).exp()
    err = l1_error(row, col, a, log_b.exp())
    return SinkhornOutput(
        geom=geom,
        f=eps * u,
        g=eps * v,
        eps=eps,
        n_iter=it,
        marginal_error=err,
        converged=is_converged(err, tol),
        solver="log",
        _log_plan=log_plan,
    )


def solve_tiled(
    geom: Geometry,
    eps: float,
    n_iter: int,
    tol: float | None,
    log_a: Tensor,
    log_b: Tensor,
    *,
    accelerate: bool = False,
    init: tuple[Tensor, Tensor] | None = None,
    exact_error: bool = True,
    comm: Comm = LOCAL,
) -> SinkhornOutput:
    """Log-domain Sinkhorn on ``K`` computed tile by tile (online log-sum-exp).

    One pass over row tiles per iteration: for a tile ``I``, ``L_I = (K_I + g)/ε`` gives the
    exact row update ``f_I = ε (log a_I − LSE_j L_I)``; the same tile, shifted by the new
    ``f_I``, is folded into a running column log-sum-exp, which gives the column update
    ``g += ε (log b − LSE_i(...))`` after the pass. These are exactly the updates of SPEC §3
    (one GEMM per iteration for embeddings instead of an n×m matrix in memory). The column sums
    of the intermediate plan ``(f_new, g_old)`` give its exact L1 marginal error at no extra cost.

    Stopping on the tolerance leaves that intermediate plan (its error is exact); otherwise the
    last column update follows it, and the error of the returned plan is recomputed by one more
    pass when ``exact_error`` (KLOT skips it: its final pass measures the plan anyway).
    """
    n, m = geom.shape
    dtype, dev = geom.dtype, geom.device
    a, b = log_a.exp(), log_b.exp()
    R = geom.tile_rows()
    if init is None:
        f = torch.zeros(n, dtype=dtype, device=dev)
        g = torch.zeros(m, dtype=dtype, device=dev)
    else:
        f = init[0].detach().to(device=dev, dtype=dtype).clone()
        g = init[1].detach().to(device=dev, dtype=dtype).clone()
    span = (lambda: global_span(geom, comm)) if init is None else None
    sched = Schedule.make(eps, n_iter, tol, accelerate, span)
    total = 0
    err = math.inf
    exact = False
    relax = Relaxation(sched.relax)
    for e, final, stage_tol in sched.stages():
        relax = Relaxation(sched.relax)
        w = 1.0
        while total < n_iter:
            col = torch.full((m,), -math.inf, dtype=dtype, device=dev)
            row_err = torch.zeros((), dtype=dtype, device=dev)
            g_over_e = (g / e)[None, :]
            for i in range(0, n, R):
                L = geom.rows(i, i + R, 1.0 / e, g_over_e)
                fhat = log_a[i : i + R] - torch.logsumexp(L, dim=1)  # exact update / e
                fnew = fhat if w <= 1.0 else (1.0 - w) * (f[i : i + R] / e) + w * fhat
                if w > 1.0:  # row mass of the relaxed update: a_i exp(fnew - fhat)
                    row_err += (a[i : i + R] * ((fnew - fhat).exp() - 1.0)).abs().sum()
                f[i : i + R] = e * fnew
                L.add_(fnew[:, None])
                torch.logaddexp(col, torch.logsumexp(L, dim=0), out=col)
            row_err = comm.logsumexp_(col, also_sum=row_err)
            err = float(row_err) + float((col.exp() - b).abs().sum())
            relax.observe(err)
            total += 1
            if stage_tol is not None and err <= stage_tol:
                exact = final
                break
            w = relax.update()
            ghat = g / e + log_b - col
            gnew = ghat if w <= 1.0 else (1.0 - w) * (g / e) + w * ghat
            g = e * gnew
    out = SinkhornOutput(
        geom=geom,
        f=f,
        g=g,
        eps=eps,
        n_iter=total,
        marginal_error=err,
        converged=False,
        solver="tiled",
        diagnostics={"eps_schedule": list(sched.eps), "omega": relax.omega},
    )
    if not exact and exact_error:
        row, col = out.marginals()
        err = l1_error(row, comm.sum_(col), a, b, comm)
        out.marginal_error = err
    out.converged = is_converged(err, tol)
    return out
