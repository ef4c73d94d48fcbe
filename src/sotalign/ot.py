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
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from sotalign.errors import ConfigError, InputError

__all__ = [
    "KLOTInfo",
    "SinkhornResult",
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


def sinkhorn(
    K: Tensor,
    eps: float,
    n_iter: int = 100,
    tol: float | None = None,
    *,
    a: Tensor | None = None,
    b: Tensor | None = None,
) -> SinkhornResult:
    """Balanced entropic OT between the rows and columns of an affinity matrix ``K`` (cost ``-K``).

    Solves ``max_P <P, K> - eps <P, log P>`` over plans with marginals ``a`` (rows, default
    uniform ``1/n``) and ``b`` (columns, default ``1/m``); total mass 1 (SPEC §3).

    Args:
        K: affinity matrix (n×m), e.g. cosines in [-1, 1]; any float dtype (solved in float32,
            or float64 if given float64). Not differentiated.
        eps: entropic regularisation (> 0).
        n_iter: number of iterations (with ``tol``: the maximum).
        tol: stop early once the L1 marginal error is at most ``tol``.
        a, b: optional positive marginals (renormalised to mass 1).

    Returns:
        :class:`SinkhornResult` (plan, log_plan, f, g, n_iter, marginal_error, converged, ...).
    """
    _check_matrix(K, "K")
    eps = _check_eps(eps)
    n_iter, tol = _check_iters(n_iter, tol)
    with torch.no_grad():
        Kc = K.detach().to(_compute_dtype(K.dtype))
        if not bool(torch.isfinite(Kc).all()):
            raise InputError("K contains NaN or Inf; check the embeddings that produced it")
        log_a, log_b = _log_marginals(a, b, Kc.shape[0], Kc.shape[1], Kc.dtype, Kc.device)
        return _sinkhorn_log(Kc, eps, n_iter, tol, log_a, log_b)


# ----------------------------------------------------------------------------------------------
# KLOT
# ----------------------------------------------------------------------------------------------
def _kl_from_logs(log_p_star: Tensor, log_p: Tensor) -> Tensor:
    """``sum P* (log P* - log P)`` from log-plans (entries with P* = 0 contribute 0)."""
    p_star = log_p_star.exp()
    return (p_star * (log_p_star - log_p)).sum()


def _solve_pair(
    K: Tensor,
    K_teacher: Tensor,
    eps: float,
    eps_teacher: float,
    n_iter: int,
    tol: float | None,
) -> tuple[Tensor, Tensor, KLOTInfo]:
    """Solve both problems; return (KL value, G = (P - P*)/eps, info), in the compute dtype."""
    dtype = _compute_dtype(K.dtype)
    Kc = K.detach().to(dtype)
    Kt = K_teacher.detach().to(device=Kc.device, dtype=dtype)
    n, m = Kc.shape
    log_a, log_b = _log_marginals(None, None, n, m, dtype, Kc.device)
    if not bool(torch.isfinite(Kc).all()) or not bool(torch.isfinite(Kt).all()):
        raise InputError("KLOT affinities contain NaN or Inf; check the embeddings/heads")
    rs = _sinkhorn_log(Kc, eps, n_iter, tol, log_a, log_b)
    rt = _sinkhorn_log(Kt, eps_teacher, n_iter, tol, log_a, log_b)
    value = _kl_from_logs(rt.log_plan, rs.log_plan)
    G = (rs.log_plan.exp() - rt.log_plan.exp()) / eps
    info = KLOTInfo(
        marginal_error=rs.marginal_error,
        marginal_error_teacher=rt.marginal_error,
        n_iter=rs.n_iter,
        n_iter_teacher=rt.n_iter,
        converged=rs.converged,
        converged_teacher=rt.converged,
        stabilised=rs.stabilised,
        stabilised_teacher=rt.stabilised,
        mode="dense",
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
        info_out: dict[str, KLOTInfo],
    ) -> Tensor:
        with torch.no_grad():
            value, G, info = _solve_pair(K, K_teacher, eps, eps_teacher, n_iter, tol)
        info_out["info"] = info
        ctx.save_for_backward(G)
        ctx.in_dtype = K.dtype
        return value.to(K.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        (G,) = ctx.saved_tensors
        grad_K = (grad_output.to(G.dtype) * G).to(ctx.in_dtype)
        return grad_K, None, None, None, None, None, None


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
) -> Tensor:
    """KLOT divergence ``KL(OT_eps*(K*) || OT_eps(K))`` (SPEC §3) with the closed-form gradient.

    Forward: both plans by Sinkhorn (no autograd), value ``sum P* (log P* - log P)`` computed
    exactly from the log-plans. Backward: ``grad_K = grad_output * (P - P*) / eps`` with the
    student ``eps`` (Theorem 5.1 / C.4); ``K_teacher`` receives no gradient.

    Returns a scalar of ``K_student``'s dtype (computation in float32, or float64 for float64).
    """
    _check_pair(K_student, K_teacher)
    eps = _check_eps(eps)
    eps_teacher = _check_eps(eps_teacher, "eps_teacher")
    n_iter, tol = _check_iters(n_iter, tol)
    holder: dict[str, KLOTInfo] = {}
    return _KLOTFunction.apply(K_student, K_teacher, eps, eps_teacher, n_iter, tol, holder)


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
) -> tuple[Tensor, KLOTInfo]:
    """KLOT between the student affinity ``K = zx zy^T`` and the teacher affinity ``K* = tx ty^T``.

    Rows are expected L2-normalised (cosines). Gradients flow to ``zx`` and ``zy``:
    ``grad_zx = G zy``, ``grad_zy = G^T zx`` with ``G = (P - P*) / eps``; ``tx, ty`` get none.

    Returns ``(loss, info)`` where ``info`` is a :class:`KLOTInfo` (iterations and marginal errors
    of both solves).
    """
    if mode not in _MODES:
        raise ConfigError(
            f"unknown KLOT mode '{mode}'; choose one of {list(_MODES)}" + _closest(mode)
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
    eps = _check_eps(eps)
    eps_teacher = _check_eps(eps_teacher, "eps_teacher")
    n_iter, tol = _check_iters(n_iter, tol)
    dtype = _compute_dtype(zx.dtype)
    K = zx.to(dtype) @ zy.to(dtype).T
    with torch.no_grad():
        Kt = tx.detach().to(dtype) @ ty.detach().to(dtype).T
    holder: dict[str, KLOTInfo] = {}
    loss = _KLOTFunction.apply(K, Kt, eps, eps_teacher, n_iter, tol, holder)
    return loss.to(zx.dtype), holder["info"]


def _closest(name: str) -> str:
    from sotalign.errors import closest

    return closest(name, _MODES)
