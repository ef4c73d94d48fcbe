"""Entropic optimal transport and the KLOT divergence (SPEC §3).

Problem solved everywhere in this module (balanced entropic OT with cost ``C = -K``)::

    OT_eps(K) = argmin_{P >= 0, P 1 = a, P^T 1 = b}  -<P, K> + eps <P, log P>

with uniform marginals ``a = 1/n``, ``b = 1/m`` by default, so plans have total mass 1.
The optimal plan has the Gibbs form ``P_ij = exp((K_ij + f_i + g_j) / eps)`` where ``f, g`` are the
dual potentials (``f = eps * u``, ``g = eps * v`` in the scaled notation of SPEC §3).

KLOT (SPEC §3, Algorithm 1 of the paper)::

    KLOT(K || K*) = KL(P* || P) = sum_ij P*_ij (log P*_ij - log P_ij),
    P = OT_eps(K),  P* = OT_eps*(K*).

Its gradient has the closed form of Theorem 5.1 / C.4:
``grad_K KL(T || OT_eps(K)) = (P - T) / eps`` for any fixed plan ``T`` with the same marginals; the
*student* eps is used. Both Sinkhorn solves run outside autograd; the forward value is the exact
KL of the two computed plans.

All solves run in float32 or float64: half-precision inputs are upcast (eps* = 0.01 on cosines gives
exponents up to 100).

Solvers (all device-agnostic: CPU or CUDA tensors, results on the input's device):

- ``"log"`` — the reference log-domain Sinkhorn of SPEC §3 (a log-sum-exp over an n×m temporary
  per half-iteration). Used by tests and benchmarks as the reference.
- ``"scaling"`` (dense default) — the kernel ``E = exp((K + f ⊕ g)/eps)`` is built once in one
  n×m buffer, iterations are two matrix-vector products (memory-bound); scalings are absorbed into
  the potentials when they leave ``[e^-25, e^25]`` and rows/columns whose sums underflow get the
  exact log-domain update (Schmitzer 2019). With ``tol``: eps-scaling and adaptive
  over-relaxation. The result says whether it had to stabilise (``stabilised``, ``extra``).
- tiled — the log-domain updates computed from the embeddings one row tile at a time (one GEMM per
  iteration, online log-sum-exp): memory O((n + m) d), never an n×m matrix.

Memory (float32, n×m problems): ``klot_embeddings(mode="dense")`` peaks at 3 n×m matrices (teacher
affinity, later overwritten by the student affinity; teacher kernel → P*; student kernel → P → G)
and keeps none for the backward pass (it stores ``G zy`` and ``G^T zx``); ``klot`` on given
matrices allocates 2 more n×m matrices besides its two inputs (4 in all) and keeps ``G``;
``mode="tiled"`` holds only row tiles (``tile_bytes``, 256 MiB by default).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from sotalign.errors import ConfigError, InputError, closest

__all__ = [
    "KLOTInfo",
    "SinkhornResult",
    "dense_fits",
    "klot",
    "klot_embeddings",
    "sinkhorn",
]

_MODES = ("auto", "dense", "tiled")


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------
@dataclass
class SinkhornResult:
    """Output of :func:`sinkhorn`.

    Attributes:
        log_plan: ``log P`` (n×m), ``log P_ij = (K_ij + f_i + g_j) / eps``.
        f: row potential (n,), in the units of ``K``.
        g: column potential (m,), in the units of ``K``.
        eps: the regularisation used.
        n_iter: number of full Sinkhorn iterations (one row + one column update each) performed.
        marginal_error: ``||P 1 - a||_1 + ||P^T 1 - b||_1`` of the returned plan (plans of mass 1).
        converged: ``marginal_error <= tol`` when a tolerance was given; when ``tol`` is None,
            whether the error is below ``1e-4`` (the library's default accuracy target).
        stabilised: the solver had to fall back to / absorb into the log domain to avoid
            under/overflow (always False for the pure log-domain solver, which cannot overflow).
        method: which solver produced the result.
    """

    log_plan: Tensor
    f: Tensor
    g: Tensor
    eps: float
    n_iter: int
    marginal_error: float
    converged: bool
    stabilised: bool = False
    method: str = "log"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def plan(self) -> Tensor:
        """The transport plan ``P = exp(log_plan)`` (total mass 1)."""
        return self.log_plan.exp()


@dataclass
class KLOTInfo:
    """Diagnostics of one KLOT evaluation (both Sinkhorn solves)."""

    marginal_error: float
    marginal_error_teacher: float
    n_iter: int
    n_iter_teacher: int
    converged: bool = True
    converged_teacher: bool = True
    stabilised: bool = False
    stabilised_teacher: bool = False
    mode: str = "dense"

    def as_dict(self) -> dict[str, Any]:
        """JSON-able dict (for training logs)."""
        return asdict(self)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------
def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else (half, bf16, float32) is solved in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_eps(eps: float, name: str = "eps") -> float:
    eps = float(eps)
    if not (math.isfinite(eps) and eps > 0):
        raise ConfigError(
            f"{name} must be a positive finite number, got {eps}; pass e.g. {name}=0.05"
        )
    return eps


def _check_iters(n_iter: int, tol: float | None) -> tuple[int, float | None]:
    if int(n_iter) < 1:
        raise ConfigError(f"n_iter must be >= 1, got {n_iter}; pass e.g. n_iter=100")
    if tol is not None:
        tol = float(tol)
        if not (tol > 0 and math.isfinite(tol)):
            raise ConfigError(f"tol must be a positive number or None, got {tol}")
    return int(n_iter), tol


def _check_klot_args(
    eps: float, eps_teacher: float, n_iter: int, tol: float | None
) -> tuple[float, float, int, float | None]:
    """The shared option checks of :func:`klot` and :func:`klot_embeddings`."""
    n_iter, tol = _check_iters(n_iter, tol)
    return _check_eps(eps), _check_eps(eps_teacher, "eps_teacher"), n_iter, tol


def _check_matrix(K: Tensor, name: str) -> None:
    if not isinstance(K, Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(K).__name__}")
    if K.dim() != 2 or K.shape[0] < 1 or K.shape[1] < 1:
        raise InputError(f"{name} must be a non-empty 2-D matrix, got shape {tuple(K.shape)}")
    if not K.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor, got {K.dtype}")


def _log_marginals(
    a: Tensor | None, b: Tensor | None, n: int, m: int, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    def one(w: Tensor | None, size: int, name: str) -> Tensor:
        if w is None:
            return torch.full((size,), -math.log(size), dtype=dtype, device=device)
        w = torch.as_tensor(w, dtype=dtype, device=device)
        if w.shape != (size,):
            raise InputError(f"marginal {name} must have shape ({size},), got {tuple(w.shape)}")
        if not bool(torch.isfinite(w).all()) or bool((w <= 0).any()):
            raise InputError(f"marginal {name} must be positive and finite")
        w = w / w.sum()
        return w.log()

    return one(a, n, "a"), one(b, m, "b")


# ----------------------------------------------------------------------------------------------
# Reference log-domain Sinkhorn
# ----------------------------------------------------------------------------------------------
def _sinkhorn_log(
    K: Tensor,
    eps: float,
    n_iter: int,
    tol: float | None,
    log_a: Tensor,
    log_b: Tensor,
    check_every: int = 10,
) -> SinkhornResult:
    """Log-domain Sinkhorn exactly as SPEC §3.

    ``L = K / eps``, ``u = v = 0``; repeat ``u <- log a - LSE_j(L_ij + v_j)``,
    ``v <- log b - LSE_i(L_ij + u_i)``; ``log P = L + u ⊕ v``. After a column update the column
    marginals are exact, so the L1 marginal error equals the row error
    ``sum_i |exp(u_i + LSE_j(L_ij + v_j)) - a_i|``, checked every ``check_every`` iterations when
    ``tol`` is given.
    """
    L = K / eps
    v = torch.zeros(K.shape[1], dtype=K.dtype, device=K.device)
    u = torch.zeros(K.shape[0], dtype=K.dtype, device=K.device)
    a = log_a.exp()
    it = 0
    err = float("inf")
    converged = False
    for it in range(1, n_iter + 1):
        u = log_a - torch.logsumexp(L + v[None, :], dim=1)
        v = log_b - torch.logsumexp(L + u[:, None], dim=0)
        if tol is not None and (it % check_every == 0 or it == n_iter):
            row = (u + torch.logsumexp(L + v[None, :], dim=1)).exp()
            err = float((row - a).abs().sum())
            if err <= tol:
                converged = True
                break
    log_plan = L + u[:, None] + v[None, :]
    err = _marginal_error(log_plan, log_a, log_b)
    if tol is None:
        converged = err <= 1e-4
    return SinkhornResult(
        log_plan=log_plan,
        f=eps * u,
        g=eps * v,
        eps=eps,
        n_iter=it,
        marginal_error=err,
        converged=converged,
        stabilised=False,
        method="log",
    )


def _marginal_error(log_plan: Tensor, log_a: Tensor, log_b: Tensor) -> float:
    """``||P 1 - a||_1 + ||P^T 1 - b||_1`` computed from ``log P`` (LSE, no overflow)."""
    row = torch.logsumexp(log_plan, dim=1).exp()
    col = torch.logsumexp(log_plan, dim=0).exp()
    return float((row - log_a.exp()).abs().sum() + (col - log_b.exp()).abs().sum())


# ----------------------------------------------------------------------------------------------
# Fast dense solver: scaling domain with log-domain absorption (Schmitzer 2019)
# ----------------------------------------------------------------------------------------------
_CHUNK = 1 << 20  # elements per row chunk of element-wise passes (~4 MB in float32: cache-sized)
_TAU = 25.0  # scalings are absorbed into the potentials when |log u| or |log v| exceeds this
_STAGE_TOL = 1e-3  # marginal error at which an intermediate eps-scaling stage stops
_EPS_DECAY = 0.4  # geometric factor of the eps-scaling schedule
_OMEGA_WARMUP = 20  # plain iterations before the over-relaxation factor is estimated
_OMEGA_MAX = 1.95


@dataclass
class _ScalingState:
    """Solver state: ``P = diag(u) E diag(v)`` with ``E = exp((K + f ⊕ g) / eps)``."""

    E: Tensor
    f: Tensor
    g: Tensor
    u: Tensor
    v: Tensor
    eps: float
    n_iter: int = 0
    marginal_error: float = math.inf
    converged: bool = False
    n_absorb: int = 0
    n_log_rows: int = 0
    n_kernel: int = 0
    stages: list[float] = field(default_factory=list)
    omega: float = 1.0
    trace: list[float] = field(default_factory=list)

    def potentials(self) -> tuple[Tensor, Tensor]:
        """Final dual potentials ``(f + eps log u, g + eps log v)``."""
        return self.f + self.eps * self.u.log(), self.g + self.eps * self.v.log()

    def marginals(self) -> tuple[Tensor, Tensor]:
        """Exact row and column sums of ``P`` (two matrix-vector products)."""
        return self.u * (self.E @ self.v), self.v * (self.E.T @ self.u)

    def plan_(self) -> Tensor:
        """Overwrite the kernel buffer with the plan ``P = u E v`` and return it."""
        self.E.mul_(self.u[:, None]).mul_(self.v[None, :])
        self.u = torch.ones_like(self.u)
        self.v = torch.ones_like(self.v)
        return self.E


def _row_chunks(n: int, m: int) -> int:
    return max(1, _CHUNK // max(m, 1))


def _fill_kernel(E: Tensor, K: Tensor, f: Tensor, g: Tensor, eps: float) -> None:
    """``E = exp((K + f ⊕ g) / eps)`` in place, chunk by chunk (no n×m temporary).

    Rows whose largest exponent is positive have ``f`` lowered (in place) so that every entry is
    at most 1: the kernel can never overflow, whatever the potentials.
    """
    n, m = K.shape
    R = _row_chunks(n, m)
    inv = 1.0 / eps
    for i in range(0, n, R):
        blk = E[i : i + R]
        torch.add(K[i : i + R], f[i : i + R, None], out=blk)
        blk.add_(g[None, :])
        over = blk.amax(dim=1).clamp_(min=0.0)
        blk.sub_(over[:, None])
        f[i : i + R] -= over
        blk.mul_(inv).exp_()


def _max_plus_init(K: Tensor) -> tuple[Tensor, Tensor]:
    """Potentials with ``max_j (K_ij + f_i + g_j) = 0`` for every row and every column.

    ``f_i = -max_j K_ij``, ``g_j = -max_i (K_ij + f_i)``: the kernel then has an entry equal to 1
    in every row and column, so no row or column sum underflows at the start, even for tiny eps.
    """
    n, m = K.shape
    f = -K.amax(dim=1)
    R = _row_chunks(n, m)
    cmax = torch.full((m,), -math.inf, dtype=K.dtype, device=K.device)
    for i in range(0, n, R):
        torch.maximum(cmax, (K[i : i + R] + f[i : i + R, None]).amax(dim=0), out=cmax)
    return f, -cmax


def _exact_update(
    K: Tensor, other: Tensor, log_w: Tensor, eps: float, idx: Tensor, dim: int
) -> Tensor:
    """Exact log-domain Sinkhorn update of the potentials at indices ``idx``.

    Rows (``dim=1``): ``f_i = eps log a_i - eps LSE_j((K_ij + g_j) / eps)``; columns likewise.
    Done in chunks of indices so that no n×m temporary is created.
    """
    out = torch.empty(idx.numel(), dtype=K.dtype, device=K.device)
    other_len = K.shape[1] if dim == 1 else K.shape[0]
    R = max(1, _CHUNK // max(other_len, 1))
    for s in range(0, idx.numel(), R):
        ids = idx[s : s + R]
        blk = K.index_select(0, ids) if dim == 1 else K.index_select(1, ids).T
        blk = (blk + other[None, :]) / eps
        out[s : s + R] = eps * (log_w[ids] - torch.logsumexp(blk, dim=1))
    return out


def _omega_rule(errs: list[float], w: float) -> float:
    """Adaptive over-relaxation factor from the error history of the current stage.

    After ``_OMEGA_WARMUP`` plain iterations the contraction rate per iteration is estimated as
    ``lambda = (err_k / err_{k-10})^(1/10)`` and ``w = 2 / (1 + sqrt(1 - lambda))`` (capped at
    ``_OMEGA_MAX``) is kept for the rest of the stage. If the error ever exceeds 10x its minimum
    after that, plain updates (``w = 1``, marked by the sentinel ``-1``) are used from then on.
    """
    k = len(errs)
    if w < 0:
        return w
    if w > 1.0 and errs[-1] > 10.0 * min(errs):
        return -1.0
    if k == _OMEGA_WARMUP + 1 and w == 1.0:
        lam = errs[-1] / errs[-11] if math.isfinite(errs[-11]) else 1.0
        lam = lam**0.1 if lam > 0 else 0.0
        if lam < 1.0:
            return min(_OMEGA_MAX, 2.0 / (1.0 + math.sqrt(1.0 - lam)))
    return w


def _sinkhorn_scaling(
    K: Tensor,
    eps: float,
    n_iter: int,
    tol: float | None,
    log_a: Tensor,
    log_b: Tensor,
    *,
    accelerate: bool = False,
    init: tuple[Tensor, Tensor] | None = None,
    out: Tensor | None = None,
) -> _ScalingState:
    """Stabilised scaling-domain Sinkhorn (Schmitzer 2019, Alg. 2) with optional acceleration.

    State: potentials ``f, g`` absorbed in the kernel ``E = exp((K + f ⊕ g)/eps)`` (one n×m
    buffer, built once) and scalings ``u, v``, so that ``P = diag(u) E diag(v)``. One iteration is
    ``u <- a / (E v)``, ``v <- b / (E^T u)``: two memory-bound matrix-vector products, the same
    iterates as the log-domain updates of SPEC §3 (``log u`` = change of ``f / eps``).

    Stabilisation: when a scaling leaves ``[e^-25, e^25]`` (or is not finite) it is absorbed into
    the potentials (``f += eps log u``) and the kernel is rebuilt; rows/columns whose sums
    underflow get the exact log-domain (log-sum-exp) update instead. Both are counted in the state
    (``n_absorb``, ``n_log_rows``). The kernel never overflows (see :func:`_fill_kernel`).

    The L1 marginal error of the current plan is obtained for free each iteration from the
    products already computed (``u ⊙ E v`` and ``v ⊙ E^T u``).

    Acceleration (only with ``tol``): eps-scaling (geometric schedule from the affinity range
    down to ``eps``, factor 0.4, intermediate stages stopped at error 1e-3) and adaptive
    over-relaxation ``u <- u^(1-w) (a / E v)^w`` with ``w = 2 / (1 + sqrt(1 - lambda))``, lambda
    the observed contraction rate per iteration (Thibault et al. 2021; Lehmann et al. 2022), reset
    to 1 whenever the error stops decreasing. ``n_iter`` counts iterations over all stages.
    """
    n, m = K.shape
    dtype, dev = K.dtype, K.device
    a, b = log_a.exp(), log_b.exp()
    tiny = float(torch.finfo(dtype).tiny) * 1e4
    lo, hi = math.exp(-_TAU), math.exp(_TAU)
    if init is None:
        f, g = _max_plus_init(K)
    else:
        f = init[0].detach().to(device=dev, dtype=dtype).clone()
        g = init[1].detach().to(device=dev, dtype=dtype).clone()
    E = out if out is not None else torch.empty_like(K)
    schedule = [eps]
    if accelerate and tol is not None and init is None:
        span = float(K.amax() - K.amin())
        e = span
        sched = []
        while e > eps:
            sched.append(e)
            e *= _EPS_DECAY
        schedule = [*sched, eps]
    st = _ScalingState(
        E=E,
        f=f,
        g=g,
        u=torch.ones(n, dtype=dtype, device=dev),
        v=torch.ones(m, dtype=dtype, device=dev),
        eps=eps,
    )
    total = 0
    for k, e in enumerate(schedule):
        final = k == len(schedule) - 1
        st.eps = e
        st.stages.append(e)
        _fill_kernel(E, K, f, g, e)
        st.n_kernel += 1
        u = torch.ones(n, dtype=dtype, device=dev)
        v = torch.ones(m, dtype=dtype, device=dev)
        t: Tensor | None = None
        stage_tol = tol if final else max(tol or 0.0, _STAGE_TOL)
        errs: list[float] = []
        w = 1.0
        while True:
            s = E @ v
            col_err = float((v * t - b).abs().sum()) if t is not None else math.inf
            err = float((u * s - a).abs().sum()) + col_err
            errs.append(err)
            if stage_tol is not None and err <= stage_tol:
                break
            if total >= n_iter:
                break
            if accelerate and tol is not None:
                w = _omega_rule(errs, w)
            # ---- row update ----
            un = a / s
            if w > 1.0:
                un = u.pow(1.0 - w) * un.pow(w)
            mn, mx = torch.aminmax(un)
            if not (lo <= float(mn) and float(mx) <= hi):
                _absorb(st, K, e, un, v, s, log_a, tiny, dim=1)
                u, v = st.u, st.v
            else:
                u = un
            t = E.T @ u
            # ---- column update ----
            vn = b / t
            if w > 1.0:
                vn = v.pow(1.0 - w) * vn.pow(w)
            mn, mx = torch.aminmax(vn)
            if not (lo <= float(mn) and float(mx) <= hi):
                _absorb(st, K, e, u, vn, t, log_b, tiny, dim=0)
                u, v = st.u, st.v
                t = None
            else:
                v = vn
            total += 1
        st.u, st.v = u, v
        st.marginal_error = err
        st.omega = max(w, 1.0)
        st.trace = errs
        if not final:  # absorb and move to the next eps
            f.add_(e * u.log())
            g.add_(e * v.log())
    st.n_iter = total
    if not math.isfinite(st.marginal_error):
        r, c = st.marginals()
        st.marginal_error = float((r - a).abs().sum() + (c - b).abs().sum())
    st.converged = st.marginal_error <= (tol if tol is not None else 1e-4)
    return st


def _absorb(
    st: _ScalingState,
    K: Tensor,
    eps: float,
    u: Tensor,
    v: Tensor,
    sums: Tensor,
    log_w: Tensor,
    tiny: float,
    dim: int,
) -> None:
    """Absorb the scalings into the potentials and rebuild the kernel (log-domain stabilisation).

    ``dim=1``: a row update produced ``u`` from row sums ``sums``; rows whose sums underflowed get
    the exact log-domain update. ``dim=0``: the same for a column update.
    """
    st.n_absorb += 1
    bad = ~(sums > tiny) | ~torch.isfinite(u if dim == 1 else v)
    if dim == 1:
        st.g.add_(eps * v.log())
        safe_u = torch.where(bad, torch.ones_like(u), u)
        st.f.add_(eps * safe_u.log())
        idx = bad.nonzero().flatten()
        if idx.numel():
            st.f[idx] = _exact_update(K, st.g, log_w, eps, idx, dim=1)
    else:
        st.f.add_(eps * u.log())
        safe_v = torch.where(bad, torch.ones_like(v), v)
        st.g.add_(eps * safe_v.log())
        idx = bad.nonzero().flatten()
        if idx.numel():
            st.g[idx] = _exact_update(K, st.f, log_w, eps, idx, dim=0)
    st.n_log_rows += int(idx.numel())
    _fill_kernel(st.E, K, st.f, st.g, eps)
    st.n_kernel += 1
    st.u = torch.ones_like(st.u)
    st.v = torch.ones_like(st.v)


def _state_to_result(st: _ScalingState, K: Tensor) -> SinkhornResult:
    f, g = st.potentials()
    log_plan = (K + f[:, None] + g[None, :]) / st.eps
    return SinkhornResult(
        log_plan=log_plan,
        f=f,
        g=g,
        eps=st.eps,
        n_iter=st.n_iter,
        marginal_error=st.marginal_error,
        converged=st.converged,
        stabilised=st.n_absorb > 0,
        method="scaling",
        extra={
            "n_absorb": st.n_absorb,
            "n_log_rows": st.n_log_rows,
            "n_kernel": st.n_kernel,
            "eps_schedule": list(st.stages),
            "omega": st.omega,
        },
    )


_METHODS = ("auto", "scaling", "log")


def sinkhorn(
    K: Tensor,
    eps: float,
    n_iter: int = 100,
    tol: float | None = None,
    *,
    a: Tensor | None = None,
    b: Tensor | None = None,
    method: str = "auto",
    accelerate: bool | None = None,
    init: tuple[Tensor, Tensor] | None = None,
) -> SinkhornResult:
    """Balanced entropic OT between the rows and columns of an affinity matrix ``K`` (cost ``-K``).

    Solves ``max_P <P, K> - eps <P, log P>`` over plans with marginals ``a`` (rows, default
    uniform ``1/n``) and ``b`` (columns, default ``1/m``); total mass 1 (SPEC §3). The optimal
    plan is ``P_ij = exp((K_ij + f_i + g_j) / eps)``.

    Args:
        K: affinity matrix (n×m), e.g. cosines in [-1, 1]; any float dtype (solved in float32,
            or float64 if given float64). Not differentiated.
        eps: entropic regularisation (> 0).
        n_iter: number of iterations (with ``tol``: the maximum, over all eps-scaling stages).
        tol: stop once the L1 marginal error is at most ``tol``.
        a, b: optional positive marginals (renormalised to mass 1).
        method: ``"scaling"`` (default for ``"auto"``): stabilised scaling-domain solver, two
            matrix-vector products per iteration, kernel built once; ``"log"``: the reference
            log-domain solver of SPEC §3 (a log-sum-exp over an n×m temporary per half-step).
        accelerate: eps-scaling + adaptive over-relaxation (scaling method only); default: on
            when ``tol`` is given, off for a fixed number of iterations.
        init: warm start ``(f, g)``, e.g. the potentials of a previous result on the same sizes.

    Returns:
        :class:`SinkhornResult` (plan, log_plan, f, g, n_iter, marginal_error, converged,
        stabilised, method, extra diagnostics).
    """
    _check_matrix(K, "K")
    eps = _check_eps(eps)
    n_iter, tol = _check_iters(n_iter, tol)
    if method not in _METHODS:
        raise ConfigError(
            f"unknown Sinkhorn method '{method}'; choose one of {list(_METHODS)}"
            + closest(method, _METHODS)
        )
    with torch.no_grad():
        Kc = K.detach().to(_compute_dtype(K.dtype))
        if not bool(torch.isfinite(Kc).all()):
            raise InputError("K contains NaN or Inf; check the embeddings that produced it")
        n, m = Kc.shape
        log_a, log_b = _log_marginals(a, b, n, m, Kc.dtype, Kc.device)
        if init is not None and (
            len(init) != 2 or tuple(init[0].shape) != (n,) or tuple(init[1].shape) != (m,)
        ):
            raise InputError(f"init must be a pair (f, g) of shapes ({n},) and ({m},)")
        if method == "log":
            if init is not None:
                raise ConfigError("init (warm start) needs method='scaling' or 'auto'")
            return _sinkhorn_log(Kc, eps, n_iter, tol, log_a, log_b)
        acc = (tol is not None) if accelerate is None else bool(accelerate)
        st = _sinkhorn_scaling(Kc, eps, n_iter, tol, log_a, log_b, accelerate=acc, init=init)
        return _state_to_result(st, Kc)


# ----------------------------------------------------------------------------------------------
# Tiled (online) log-domain solver: never holds an n×m matrix
# ----------------------------------------------------------------------------------------------
def _tile_rows(m: int, budget_bytes: int, itemsize: int, copies: int = 6) -> int:
    return max(1, min(4096, budget_bytes // max(1, copies * m * itemsize)))


@dataclass
class _TiledState:
    f: Tensor
    g: Tensor
    eps: float
    n_iter: int
    marginal_error: float
    converged: bool
    stages: list[float]
    omega: float


def _sinkhorn_tiled(
    x: Tensor,
    y: Tensor,
    eps: float,
    n_iter: int,
    tol: float | None,
    *,
    accelerate: bool = False,
    tile_bytes: int = 256 << 20,
) -> _TiledState:
    """Log-domain Sinkhorn on ``K = x y^T`` computed tile by tile (online log-sum-exp).

    One pass over row tiles per iteration: for a tile ``I`` the GEMM ``L_I = (x_I y^T + g)/eps``
    gives the exact row update ``f_I = eps (log a_I - LSE_j L_I)``; the same tile, shifted by the
    new ``f_I``, is folded into a running column log-sum-exp, which gives the column update
    ``g += eps (log b - LSE_i(...))`` after the pass. These are exactly the updates of SPEC §3
    (one GEMM per iteration instead of an n×m matrix in memory). The column sums of the
    intermediate plan ``(f_new, g_old)`` give its exact L1 marginal error at no extra cost.
    Acceleration (with ``tol``): eps-scaling and adaptive over-relaxation, as for the dense solver.
    """
    n, m = x.shape[0], y.shape[0]
    dtype, dev = x.dtype, x.device
    log_a = torch.full((n,), -math.log(n), dtype=dtype, device=dev)
    log_b = torch.full((m,), -math.log(m), dtype=dtype, device=dev)
    b = log_b.exp()
    R = _tile_rows(m, tile_bytes, x.element_size())
    f = torch.zeros(n, dtype=dtype, device=dev)
    g = torch.zeros(m, dtype=dtype, device=dev)
    schedule = [eps]
    if accelerate and tol is not None:
        e = 2.0  # cosine affinities span at most [-1, 1]
        sched = []
        while e > eps:
            sched.append(e)
            e *= _EPS_DECAY
        schedule = [*sched, eps]
    total = 0
    err = math.inf
    w = 1.0
    yT = y.T
    for k, e in enumerate(schedule):
        final = k == len(schedule) - 1
        stage_tol = tol if final else max(tol or 0.0, _STAGE_TOL)
        errs: list[float] = []
        w = 1.0
        while total < n_iter:
            col = torch.full((m,), -math.inf, dtype=dtype, device=dev)
            row_err = torch.zeros((), dtype=dtype, device=dev)
            g_over_e = (g / e)[None, :]
            for i in range(0, n, R):
                L = torch.addmm(g_over_e, x[i : i + R], yT, beta=1.0, alpha=1.0 / e)
                fhat = log_a[i : i + R] - torch.logsumexp(L, dim=1)  # exact update / e
                fnew = fhat if w <= 1.0 else (1.0 - w) * (f[i : i + R] / e) + w * fhat
                if w > 1.0:  # row mass of the relaxed update: a_i exp(fnew - fhat)
                    row_err += (log_a[i : i + R].exp() * ((fnew - fhat).exp() - 1.0)).abs().sum()
                f[i : i + R] = e * fnew
                L.add_(fnew[:, None])
                torch.logaddexp(col, torch.logsumexp(L, dim=0), out=col)
            err = float(row_err) + float((col.exp() - b).abs().sum())
            errs.append(err)
            total += 1
            if stage_tol is not None and err <= stage_tol:
                break
            if accelerate and tol is not None:
                w = _omega_rule(errs, w)
            ghat = g / e + log_b - col
            gnew = ghat if w <= 1.0 else (1.0 - w) * (g / e) + w * ghat
            g = e * gnew
        if total >= n_iter and not final:
            continue
    conv = err <= (tol if tol is not None else 1e-4)
    return _TiledState(
        f=f,
        g=g,
        eps=eps,
        n_iter=total,
        marginal_error=err,
        converged=conv,
        stages=schedule,
        omega=max(w, 1.0),
    )


# ----------------------------------------------------------------------------------------------
# KLOT
# ----------------------------------------------------------------------------------------------
def _kl_from_logs(log_p_star: Tensor, log_p: Tensor) -> Tensor:
    """``sum P* (log P* - log P)`` from log-plans (entries with P* = 0 contribute 0)."""
    p_star = log_p_star.exp()
    return (p_star * (log_p_star - log_p)).sum()


def _info(
    ms: float, mt: float, its: int, itt: int, cs: bool, ct: bool, ss: bool, stt: bool, mode: str
) -> KLOTInfo:
    return KLOTInfo(
        marginal_error=ms,
        marginal_error_teacher=mt,
        n_iter=its,
        n_iter_teacher=itt,
        converged=cs,
        converged_teacher=ct,
        stabilised=ss,
        stabilised_teacher=stt,
        mode=mode,
    )


def _solve_pair_reference(
    K: Tensor, K_teacher: Tensor, eps: float, eps_teacher: float, n_iter: int, tol: float | None
) -> tuple[Tensor, Tensor, KLOTInfo]:
    """Reference path: log-domain solves, explicit log-plans (several n×m temporaries)."""
    n, m = K.shape
    log_a, log_b = _log_marginals(None, None, n, m, K.dtype, K.device)
    rs = _sinkhorn_log(K, eps, n_iter, tol, log_a, log_b)
    rt = _sinkhorn_log(K_teacher, eps_teacher, n_iter, tol, log_a, log_b)
    value = _kl_from_logs(rt.log_plan, rs.log_plan)
    G = (rs.log_plan.exp() - rt.log_plan.exp()) / eps
    info = _info(
        rs.marginal_error,
        rt.marginal_error,
        rs.n_iter,
        rt.n_iter,
        rs.converged,
        rt.converged,
        False,
        False,
        "reference",
    )
    return value, G, info


def _teacher_dense(
    Kt: Tensor, eps_t: float, n_iter: int, tol: float | None, acc: bool, out: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, _ScalingState]:
    """Solve the teacher problem; return (P* in ``out``, row sums, column sums, f*, g*, state)."""
    n, m = Kt.shape
    log_a, log_b = _log_marginals(None, None, n, m, Kt.dtype, Kt.device)
    st = _sinkhorn_scaling(Kt, eps_t, n_iter, tol, log_a, log_b, accelerate=acc, out=out)
    r, c = st.marginals()
    st.marginal_error = float((r - log_a.exp()).abs().sum() + (c - log_b.exp()).abs().sum())
    f, g = st.potentials()
    return st.plan_(), r, c, f, g, st


def _neg_entropy(
    P: Tensor, K: Tensor, f: Tensor, g: Tensor, r: Tensor, c: Tensor, eps: float
) -> Tensor:
    """``sum_ij P_ij (K_ij + f_i + g_j) / eps`` with ``r, c`` the row/column sums of ``P``.

    For ``P`` the teacher plan and ``(K, f, g, eps)`` any Gibbs plan ``Q = exp((K+f+g)/eps)``,
    this is ``<P, log Q>`` without forming ``log Q``: one dot product, no temporary.
    """
    return (torch.dot(P.reshape(-1), K.reshape(-1)) + torch.dot(r, f) + torch.dot(c, g)) / eps


def _dense_pair(
    K: Tensor | None,
    Kt: Tensor,
    eps: float,
    eps_t: float,
    n_iter: int,
    tol: float | None,
    *,
    make_K: Any = None,
) -> tuple[Tensor, Tensor, KLOTInfo]:
    """Fast dense KLOT: returns (value, G = (P - P*)/eps, info).

    Memory: besides ``K`` and ``Kt`` themselves it allocates two n×m buffers (the teacher
    kernel, then P*; the student kernel, then P, then G). If ``make_K`` is given, ``K`` is None
    and the student affinity is written into ``Kt``'s buffer once P* is known (3 matrices).
    """
    acc = tol is not None
    n, m = Kt.shape
    P_star, r_t, c_t, f_t, g_t, st_t = _teacher_dense(
        Kt, eps_t, n_iter, tol, acc, torch.empty_like(Kt)
    )
    h_star = _neg_entropy(P_star, Kt, f_t, g_t, r_t, c_t, eps_t)
    if K is None:
        K = make_K(Kt)  # may overwrite Kt
    log_a, log_b = _log_marginals(None, None, n, m, K.dtype, K.device)
    st = _sinkhorn_scaling(K, eps, n_iter, tol, log_a, log_b, accelerate=acc)
    r, c = st.marginals()
    st.marginal_error = float((r - log_a.exp()).abs().sum() + (c - log_b.exp()).abs().sum())
    f, g = st.potentials()
    cross = _neg_entropy(P_star, K, f, g, r_t, c_t, eps)
    value = h_star - cross
    G = st.plan_()
    G.sub_(P_star).div_(eps)
    del P_star
    info = _info(
        st.marginal_error,
        st_t.marginal_error,
        st.n_iter,
        st_t.n_iter,
        st.marginal_error <= (tol or 1e-4),
        st_t.marginal_error <= (tol or 1e-4),
        st.n_absorb > 0,
        st_t.n_absorb > 0,
        "dense",
    )
    return value, G, info


class _KLOTFunction(torch.autograd.Function):
    """value = KL(P* || P); d value / d K = (P - P*) / eps (Theorem 5.1 / C.4)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        K: Tensor,
        K_teacher: Tensor,
        eps: float,
        eps_teacher: float,
        n_iter: int,
        tol: float | None,
        method: str,
        info_out: dict[str, KLOTInfo],
    ) -> Tensor:
        with torch.no_grad():
            dtype = _compute_dtype(K.dtype)
            Kc = K.detach().to(dtype)
            Kt = K_teacher.detach().to(device=Kc.device, dtype=dtype)
            if not bool(torch.isfinite(Kc).all()) or not bool(torch.isfinite(Kt).all()):
                raise InputError("KLOT affinities contain NaN or Inf; check the embeddings/heads")
            if method == "log":
                value, G, info = _solve_pair_reference(Kc, Kt, eps, eps_teacher, n_iter, tol)
            else:
                value, G, info = _dense_pair(Kc, Kt, eps, eps_teacher, n_iter, tol)
        info_out["info"] = info
        ctx.save_for_backward(G)
        ctx.in_dtype = K.dtype
        return value.to(K.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        (G,) = ctx.saved_tensors
        grad_K = (grad_output.to(G.dtype) * G).to(ctx.in_dtype)
        return grad_K, None, None, None, None, None, None, None


def _check_pair(K: Tensor, K_teacher: Tensor) -> None:
    _check_matrix(K, "K_student")
    _check_matrix(K_teacher, "K_teacher")
    if K.shape != K_teacher.shape:
        raise InputError(
            f"student and teacher affinities must have the same shape, got {tuple(K.shape)} "
            f"and {tuple(K_teacher.shape)}"
        )


def klot(
    K_student: Tensor,
    K_teacher: Tensor,
    eps: float = 0.05,
    eps_teacher: float = 0.01,
    n_iter: int = 100,
    tol: float | None = None,
    *,
    method: str = "auto",
) -> Tensor:
    """KLOT divergence ``KL(OT_eps*(K*) || OT_eps(K))`` (SPEC §3) with the closed-form gradient.

    Forward: both plans by Sinkhorn (no autograd), value ``sum P* (log P* - log P)`` computed
    exactly from the Gibbs form of the plans (``log P = (K + f ⊕ g)/eps``). Backward:
    ``grad_K = grad_output * (P - P*) / eps`` with the student ``eps`` (Theorem 5.1 / C.4);
    ``K_teacher`` receives no gradient.

    ``method``: ``"auto"``/``"scaling"`` (fast stabilised solver; with ``tol`` also
    eps-scaling and over-relaxation) or ``"log"`` (reference log-domain solver).
    Memory (float32 inputs, fast path): the two inputs plus two n×m buffers, one of which (G) is
    kept for the backward pass.

    Returns a scalar of ``K_student``'s dtype (computation in float32, or float64 for float64).
    """
    _check_pair(K_student, K_teacher)
    eps, eps_teacher, n_iter, tol = _check_klot_args(eps, eps_teacher, n_iter, tol)
    if method not in _METHODS:
        raise ConfigError(
            f"unknown KLOT method '{method}'; choose one of {list(_METHODS)}"
            + closest(method, _METHODS)
        )
    holder: dict[str, KLOTInfo] = {}
    return _KLOTFunction.apply(K_student, K_teacher, eps, eps_teacher, n_iter, tol, method, holder)


# ----------------------------------------------------------------------------------------------
# KLOT from embeddings: dense or tiled, gradients to the embeddings
# ----------------------------------------------------------------------------------------------
def _tiled_pair(
    zx: Tensor,
    zy: Tensor,
    tx: Tensor,
    ty: Tensor,
    eps: float,
    eps_t: float,
    n_iter: int,
    tol: float | None,
    tile_bytes: int,
) -> tuple[Tensor, Tensor, Tensor, KLOTInfo]:
    """Tiled KLOT: value, grad wrt zx (G zy), grad wrt zy (G^T zx); no n×m matrix is held.

    Both solves by :func:`_sinkhorn_tiled`; then one pass over row tiles recomputes
    ``log P_I = (zx_I zy^T + f_I + g)/eps`` and ``log P*_I`` and accumulates
    ``KL += sum P*_I (log P*_I - log P_I)``, ``G_I = (P_I - P*_I)/eps``, ``grad_zx[I] = G_I zy``,
    ``grad_zy += G_I^T zx_I``, plus the exact row/column sums of both plans.
    """
    acc = tol is not None
    n, m = zx.shape[0], zy.shape[0]
    st_t = _sinkhorn_tiled(tx, ty, eps_t, n_iter, tol, accelerate=acc, tile_bytes=tile_bytes)
    st = _sinkhorn_tiled(zx, zy, eps, n_iter, tol, accelerate=acc, tile_bytes=tile_bytes)
    dtype, dev = zx.dtype, zx.device
    R = _tile_rows(m, tile_bytes, zx.element_size(), copies=8)
    value = torch.zeros((), dtype=torch.float64, device=dev)
    gx = torch.empty_like(zx)
    gy = torch.zeros_like(zy)
    rs = torch.empty(n, dtype=dtype, device=dev)
    rt = torch.empty(n, dtype=dtype, device=dev)
    cs = torch.zeros(m, dtype=dtype, device=dev)
    ct = torch.zeros(m, dtype=dtype, device=dev)
    gs, gt = (st.g / eps)[None, :], (st_t.g / eps_t)[None, :]
    for i in range(0, n, R):
        S = torch.addmm(gs, zx[i : i + R], zy.T, alpha=1.0 / eps)
        S.add_((st.f[i : i + R] / eps)[:, None])
        T = torch.addmm(gt, tx[i : i + R], ty.T, alpha=1.0 / eps_t)
        T.add_((st_t.f[i : i + R] / eps_t)[:, None])
        Pt = T.exp()
        value += (Pt * (T - S)).sum(dtype=torch.float64)
        S.exp_()  # P tile
        rs[i : i + R] = S.sum(1)
        rt[i : i + R] = Pt.sum(1)
        cs += S.sum(0)
        ct += Pt.sum(0)
        S.sub_(Pt).div_(eps)  # G tile
        gx[i : i + R] = S @ zy
        gy.addmm_(S.T, zx[i : i + R])
    a = 1.0 / n
    b = 1.0 / m
    err_s = float((rs - a).abs().sum() + (cs - b).abs().sum())
    err_t = float((rt - a).abs().sum() + (ct - b).abs().sum())
    lim = tol if tol is not None else 1e-4
    info = _info(
        err_s, err_t, st.n_iter, st_t.n_iter, err_s <= lim, err_t <= lim, False, False, "tiled"
    )
    return value.to(dtype), gx, gy, info


def _available_bytes(device: torch.device) -> int:
    """Free memory on ``device`` (CUDA: ``mem_get_info``; CPU: MemAvailable of /proc/meminfo)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def dense_fits(n: int, m: int, device: torch.device | str = "cpu", itemsize: int = 4) -> bool:
    """Whether dense KLOT (3 n×m matrices) fits in 60% of the free memory of ``device``."""
    need = 3 * n * m * itemsize
    return need <= 0.6 * _available_bytes(torch.device(device))


class _KLOTEmbeddingsFunction(torch.autograd.Function):
    """KLOT from embeddings; the gradients ``G zy`` and ``G^T zx`` are formed in the forward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        zx: Tensor,
        zy: Tensor,
        tx: Tensor,
        ty: Tensor,
        eps: float,
        eps_t: float,
        n_iter: int,
        tol: float | None,
        mode: str,
        tile_bytes: int,
        info_out: dict[str, KLOTInfo],
    ) -> Tensor:
        dtype = _compute_dtype(zx.dtype)
        with torch.no_grad():
            x, y = zx.detach().to(dtype), zy.detach().to(dtype)
            tx_, ty_ = tx.detach().to(device=x.device, dtype=dtype), ty.detach().to(x.device, dtype)
            if mode == "tiled":
                value, gx, gy, info = _tiled_pair(
                    x, y, tx_, ty_, eps, eps_t, n_iter, tol, tile_bytes
                )
            else:
                Kt = tx_ @ ty_.T

                def make_K(buf: Tensor) -> Tensor:
                    return torch.mm(x, y.T, out=buf)

                value, G, info = _dense_pair(None, Kt, eps, eps_t, n_iter, tol, make_K=make_K)
                del Kt
                gx = G @ y
                gy = G.T @ x
                del G
        if not math.isfinite(float(value)):
            raise InputError("KLOT value is not finite; check the embeddings (NaN/Inf?)")
        info_out["info"] = info
        ctx.save_for_backward(gx, gy)
        ctx.dtypes = (zx.dtype, zy.dtype)
        return value.to(zx.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        gx, gy = ctx.saved_tensors
        go = grad_output.to(gx.dtype)
        return (
            (go * gx).to(ctx.dtypes[0]),
            (go * gy).to(ctx.dtypes[1]),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )


def klot_embeddings(
    zx: Tensor,
    zy: Tensor,
    tx: Tensor,
    ty: Tensor,
    *,
    eps: float = 0.05,
    eps_teacher: float = 0.01,
    n_iter: int = 100,
    tol: float | None = None,
    mode: str = "auto",
    tile_bytes: int = 256 << 20,
) -> tuple[Tensor, KLOTInfo]:
    """KLOT between the student affinity ``K = zx zy^T`` and the teacher affinity ``K* = tx ty^T``.

    Rows are expected L2-normalised (cosines). Gradients flow to ``zx`` and ``zy``:
    ``grad_zx = G zy``, ``grad_zy = G^T zx`` with ``G = (P - P*) / eps`` (Theorem 5.1 / C.4);
    ``tx, ty`` get none. n (images) and m (texts) may differ.

    Modes:
        ``"dense"``: fast stabilised scaling-domain solver on materialised n×m affinities; peak
            memory 3 n×m matrices in the compute dtype (teacher affinity, later overwritten by
            the student affinity; kernel → P*; kernel → P → G).
        ``"tiled"``: online log-domain solver that recomputes affinity tiles from the
            embeddings with GEMMs each iteration; memory O((n + m)(d + tile rows)), never an
            n×m matrix; cost one GEMM pass per iteration (compute-bound).
        ``"auto"``: dense when 3 n×m matrices fit in 60% of the free memory, else tiled.

    With ``tol``, solves stop when the L1 marginal error (mass-1 plans) is at most ``tol`` and
    use eps-scaling + over-relaxation; ``n_iter`` is then the maximum.

    Returns ``(loss, info)``: ``info`` is a :class:`KLOTInfo` (iterations and final marginal
    errors of both solves, stabilisation flags, mode used).
    """
    if mode not in _MODES:
        raise ConfigError(
            f"unknown KLOT mode '{mode}'; choose one of {list(_MODES)}" + closest(mode, _MODES)
        )
    for name, z in (("zx", zx), ("zy", zy), ("tx", tx), ("ty", ty)):
        if not isinstance(z, Tensor) or z.dim() != 2 or not z.is_floating_point():
            raise InputError(f"{name} must be a 2-D floating-point tensor")
    if zx.shape[1] != zy.shape[1] or tx.shape[1] != ty.shape[1]:
        raise InputError("zx/zy (and tx/ty) must have the same embedding dimension")
    if zx.shape[0] != tx.shape[0] or zy.shape[0] != ty.shape[0]:
        raise InputError(
            "student and teacher batches must have the same sizes: "
            f"zx {tuple(zx.shape)} vs tx {tuple(tx.shape)}, "
            f"zy {tuple(zy.shape)} vs ty {tuple(ty.shape)}"
        )
    if zx.shape[0] < 1 or zy.shape[0] < 1:
        raise InputError("KLOT needs at least one image and one text")
    eps, eps_teacher, n_iter, tol = _check_klot_args(eps, eps_teacher, n_iter, tol)
    if mode == "auto":
        itemsize = 8 if zx.dtype == torch.float64 else 4
        mode = "dense" if dense_fits(zx.shape[0], zy.shape[0], zx.device, itemsize) else "tiled"
    holder: dict[str, KLOTInfo] = {}
    loss = _KLOTEmbeddingsFunction.apply(
        zx, zy, tx, ty, eps, eps_teacher, n_iter, tol, mode, int(tile_bytes), holder
    )
    return loss, holder["info"]
