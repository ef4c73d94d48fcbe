"""Dense Sinkhorn in the scaling domain with log-domain absorption (Schmitzer 2019, Alg. 2).

State: potentials ``f, g`` absorbed in the kernel ``E = exp((K + f ⊕ g)/ε)`` (one n×m buffer,
built once per ε) and scalings ``u, v``, so that ``P = diag(u) E diag(v)``. One iteration is::

    u ← a / (E v),     v ← b / (Eᵀ u),

two memory-bound matrix-vector products, the same iterates as the log-domain updates of SPEC §3
(``log u`` is the change of ``f/ε``). Memory: ``K`` plus the kernel buffer (2 n×m matrices).

Stabilisation: when a scaling leaves ``[e^−25, e^25]`` (or is not finite) it is absorbed into the
potentials (``f += ε log u``) and the kernel is rebuilt; rows/columns whose sums underflow get the
exact log-domain (log-sum-exp) update instead. The kernel never overflows: rows whose largest
exponent is positive have ``f`` lowered first (:func:`_fill_kernel`). Potentials start from the
max-plus initialisation ``f_i = −max_j K_ij``, ``g_j = −max_i (K_ij + f_i)`` (an entry 1 in every
row and column of the first kernel, so no sum underflows at the start, even for tiny ε).

The L1 marginal error of the current plan comes for free each iteration from the products already
computed (``u ⊙ E v`` and ``v ⊙ Eᵀ u``). With a tolerance: ε-scaling and adaptive over-relaxation
``u ← u^(1−ω) (a / E v)^ω`` (:mod:`.control`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from sotalign.parallel import LOCAL, Comm

from .control import Relaxation, Schedule, is_converged, l1_error
from .geometry import Geometry, global_span
from .output import SinkhornOutput

__all__ = ["ScalingState", "solve_scaling"]

_CHUNK = 1 << 20  # elements per row chunk of element-wise passes (~4 MB in float32: cache-sized)
_TAU = 25.0  # scalings are absorbed into the potentials when |log u| or |log v| exceeds this


@dataclass
class ScalingState:
    """Solver state: ``P = diag(u) E diag(v)`` with ``E = exp((K + f ⊕ g) / eps)``."""

    E: Tensor
    f: Tensor
    g: Tensor
    u: Tensor
    v: Tensor
    eps: float
    n_absorb: int = 0
    n_log_rows: int = 0
    n_kernel: int = 0
    stages: list[float] = field(default_factory=list)

    def potentials(self) -> tuple[Tensor, Tensor]:
        """Final dual potentials ``(f + eps log u, g + eps log v)``."""
        return self.f + self.eps * self.u.log(), self.g + self.eps * self.v.log()

    def marginals(self, comm: Comm = LOCAL) -> tuple[Tensor, Tensor]:
        """Exact row and column sums of ``P`` (two matrix-vector products).

        Sharded: the rows are this rank's, the column sums are summed over ranks."""
        return self.u * (self.E @ self.v), self.v * comm.sum_(self.E.T @ self.u)

    def plan_(self) -> Tensor:
        """Overwrite the kernel buffer with the plan ``P = u E v`` and return it."""
        self.E.mul_(self.u[:, None]).mul_(self.v[None, :])
        self.u = torch.ones_like(self.u)
        self.v = torch.ones_like(self.v)
        return self.E


def _row_chunk(m: int) -> int:
    return max(1, _CHUNK // max(m, 1))


def _fill_kernel(E: Tensor, K: Tensor, f: Tensor, g: Tensor, eps: float) -> None:
    """``E = exp((K + f ⊕ g) / eps)`` in place, chunk by chunk (no n×m temporary).

    Rows whose largest exponent is positive have ``f`` lowered (in place) so that every entry is
    at most 1: the kernel can never overflow, whatever the potentials.
    """
    n, m = K.shape
    R = _row_chunk(m)
    inv = 1.0 / eps
    for i in range(0, n, R):
        blk = E[i : i + R]
        torch.add(K[i : i + R], f[i : i + R, None], out=blk)
        blk.add_(g[None, :])
        over = blk.amax(dim=1).clamp_(min=0.0)
        blk.sub_(over[:, None])
        f[i : i + R] -= over
        blk.mul_(inv).exp_()


def _column_sums(E: Tensor, u: Tensor, lo: float, hi: float, comm: Comm) -> tuple[Tensor, bool]:
    """``(Eᵀu, absorb)``: the column sums for new row scalings ``u``, and whether ``u`` left
    ``[lo, hi]`` (or is not finite) on any rank, so that the rows must be absorbed first.

    Sharded, both travel in one all-reduce (the flag appended to the column sums); the sums
    are then discarded when some rank must absorb (rare). One process: the sums are formed
    only when they are used.
    """
    mn, mx = torch.aminmax(u)
    out = not (lo <= float(mn) and float(mx) <= hi)
    if not comm.sharded:
        return (E.T @ u if not out else u), out
    both = comm.sum_(torch.cat([E.T @ u, u.new_tensor([float(out)])]))
    return both[:-1], float(both[-1]) > 0


def _max_plus_init(K: Tensor, comm: Comm) -> tuple[Tensor, Tensor]:
    """Potentials with ``max_j (K_ij + f_i + g_j) = 0`` for every row and every column.

    Sharded: the column maximum is taken over every rank's rows."""
    n, m = K.shape
    f = -K.amax(dim=1)
    R = _row_chunk(m)
    cmax = torch.full((m,), -math.inf, dtype=K.dtype, device=K.device)
    for i in range(0, n, R):
        torch.maximum(cmax, (K[i : i + R] + f[i : i + R, None]).amax(dim=0), out=cmax)
    return f, -comm.max_(cmax)


def _exact_update(
    K: Tensor,
    other: Tensor,
    log_w: Tensor,
    eps: float,
    idx: Tensor,
    dim: int,
    comm: Comm = LOCAL,
) -> Tensor:
    """Exact log-domain Sinkhorn update of the potentials at indices ``idx``.

    Rows (``dim=1``): ``f_i = eps log a_i − eps LSE_j((K_ij + g_j) / eps)``; columns likewise
    (sharded: the column log-sum-exp runs over every rank's rows). Done in chunks of indices so
    that no n×m temporary is created.
    """
    lse = torch.empty(idx.numel(), dtype=K.dtype, device=K.device)
    R = _row_chunk(K.shape[1] if dim == 1 else K.shape[0])
    for s in range(0, idx.numel(), R):
        ids = idx[s : s + R]
        blk = K.index_select(0, ids) if dim == 1 else K.index_select(1, ids).T
        lse[s : s + R] = torch.logsumexp((blk + other[None, :]) / eps, dim=1)
    if dim == 0:
        comm.logsumexp_(lse)
    return eps * (log_w[idx] - lse)


def _absorb(
    st: ScalingState,
    K: Tensor,
    eps: float,
    u: Tensor,
    v: Tensor,
    sums: Tensor,
    log_w: Tensor,
    tiny: float,
    dim: int,
    comm: Comm = LOCAL,
) -> None:
    """Absorb the scalings into the potentials and rebuild the kernel (log-domain stabilisation).

    ``dim=1``: a row update produced ``u`` from row sums ``sums``; rows whose sums underflowed get
    the exact log-domain update. ``dim=0``: the same for a column update.

    Sharded, every rank absorbs at once (``g`` and ``v`` are shared by every rank's kernel
    block): a row absorption is agreed on by an all-reduce of the ranks' flags, a column
    absorption is decided on the reduced (identical) ``v``.
    """
    st.n_absorb += 1
    bad = ~(sums > tiny) | ~torch.isfinite(u if dim == 1 else v)
    if dim == 1:
        st.g.add_(eps * v.log())
        st.f.add_(eps * torch.where(bad, torch.ones_like(u), u).log())
        idx = bad.nonzero().flatten()
        if idx.numel():
            st.f[idx] = _exact_update(K, st.g, log_w, eps, idx, dim=1)
    else:
        st.f.add_(eps * u.log())
        st.g.add_(eps * torch.where(bad, torch.ones_like(v), v).log())
        idx = bad.nonzero().flatten()
        if idx.numel():
            st.g[idx] = _exact_update(K, st.f, log_w, eps, idx, dim=0, comm=comm)
    st.n_log_rows += int(idx.numel())
    _fill_kernel(st.E, K, st.f, st.g, eps)
    st.n_kernel += 1
    st.u = torch.ones_like(st.u)
    st.v = torch.ones_like(st.v)


def solve_scaling(
    geom: Geometry,
    eps: float,
    n_iter: int,
    tol: float | None,
    log_a: Tensor,
    log_b: Tensor,
    *,
    accelerate: bool = False,
    init: tuple[Tensor, Tensor] | None = None,
    out: Tensor | None = None,
    comm: Comm = LOCAL,
) -> tuple[SinkhornOutput, ScalingState]:
    """Stabilised scaling-domain Sinkhorn (see the module docstring) on ``geom.affinity()``.

    ``out``: an n×m buffer for the kernel (else one is allocated). Returns the output and the
    final state, whose kernel buffer the caller may turn into the plan in place
    (:meth:`ScalingState.plan_`). ``n_iter`` counts iterations over all ε-stages.

    Sharded (``comm`` over W ranks): ``geom`` is this rank's row block ``K_I`` and ``log_a``
    the global row marginal's entries for those rows; ``u_I`` and ``f_I`` stay local, ``v``
    and ``g`` are replicated: ``Eᵀu = Σ_r E_rᵀ u_r`` is all-reduced (one length-m vector per
    iteration) and so are the scalar marginal errors, so every rank takes the same decisions.
    """
    K = geom.affinity()
    n, m = K.shape
    dtype, dev = K.dtype, K.device
    a, b = log_a.exp(), log_b.exp()
    tiny = float(torch.finfo(dtype).tiny) * 1e4
    lo, hi = math.exp(-_TAU), math.exp(_TAU)
    if init is None:
        f, g = _max_plus_init(K, comm)
    else:
        f = init[0].detach().to(device=dev, dtype=dtype).clone()
        g = init[1].detach().to(device=dev, dtype=dtype).clone()
    E = out if out is not None else torch.empty_like(K)
    span = (lambda: global_span(geom, comm)) if init is None else None
    sched = Schedule.make(eps, n_iter, tol, accelerate, span)
    st = ScalingState(
        E=E,
        f=f,
        g=g,
        u=torch.ones(n, dtype=dtype, device=dev),
        v=torch.ones(m, dtype=dtype, device=dev),
        eps=eps,
    )
    total = 0
    err = math.inf
    relax = Relaxation(sched.relax)
    for e, final, stage_tol in sched.stages():
        st.eps = e
        st.stages.append(e)
        _fill_kernel(E, K, f, g, e)
        st.n_kernel += 1
        u = torch.ones(n, dtype=dtype, device=dev)
        v = torch.ones(m, dtype=dtype, device=dev)
        t: Tensor | None = None
        relax = Relaxation(sched.relax)
        w = 1.0
        while True:
            s = E @ v
            col_err = float((v * t - b).abs().sum()) if t is not None else math.inf
            err = comm.sum_float((u * s - a).abs().sum()) + col_err
            relax.observe(err)
            if stage_tol is not None and err <= stage_tol:
                break
            if total >= n_iter:
                break
            w = relax.update()
            # ---- row update ----
            un = a / s
            if w > 1.0:
                un = u.pow(1.0 - w) * un.pow(w)
            t, absorb = _column_sums(E, un, lo, hi, comm)
            if absorb:
                _absorb(st, K, e, un, v, s, log_a, tiny, dim=1, comm=comm)
                u, v = st.u, st.v
                t = comm.sum_(E.T @ u)
            else:
                u = un
            # ---- column update ----
            vn = b / t
            if w > 1.0:
                vn = v.pow(1.0 - w) * vn.pow(w)
            mn, mx = torch.aminmax(vn)
            if not (lo <= float(mn) and float(mx) <= hi):
                _absorb(st, K, e, u, vn, t, log_b, tiny, dim=0, comm=comm)
                u, v = st.u, st.v
                t = None
            else:
                v = vn
            total += 1
        st.u, st.v = u, v
        if not final:  # absorb and move to the next eps
            f.add_(e * u.log())
            g.add_(e * v.log())
    if not math.isfinite(err):
        err = l1_error(*st.marginals(comm), a, b, comm)
    fp, gp = st.potentials()
    result = SinkhornOutput(
        geom=geom,
        f=fp,
        g=gp,
        eps=eps,
        n_iter=total,
        marginal_error=err,
        converged=is_converged(err, tol),
        stabilised=st.n_absorb > 0,
        solver="scaling",
        diagnostics={
            "n_absorb": st.n_absorb,
            "n_log_rows": st.n_log_rows,
            "n_kernel": st.n_kernel,
            "eps_schedule": list(st.stages),
            "omega": relax.omega,
        },
    )
    return result, st
