"""The KLOT divergence and its closed-form gradient (SPEC §3, Algorithm 1 of the paper).

::

    KLOT(K ‖ K*) = KL(P* ‖ P) = Σ_ij P*_ij (log P*_ij − log P_ij),
    P = OT_ε(K),   P* = OT_ε*(K*)   (mass-1 plans, uniform marginals).

Gradient (Theorem 5.1 / C.4): ``∇_K KL(T ‖ OT_ε(K)) = (OT_ε(K) − T) / ε`` for any fixed plan ``T``
with the same marginals, so ``∇_K KLOT = G = (P − P*) / ε`` with the *student* ε (the appendix
proof and the authors' code; the main text prints ε*). Both solves run outside autograd, the
forward value is the exact KL of the two computed plans, and the backward pass only scales the
gradient formed in the forward: ``G`` for a given matrix ``K``, ``(G zy, Gᵀ zx)`` for
``K = zx zyᵀ``. No unrolling, no implicit differentiation.

The value needs no ``log P`` matrix: with the Gibbs form ``log Q = (K + f ⊕ g)/ε`` of any plan,
``⟨P*, log Q⟩ = (⟨P*, K⟩ + ⟨P*1, f⟩ + ⟨P*ᵀ1, g⟩)/ε`` (one dot product).

Memory (float32, n×m problems), by mode:

- ``"dense"`` from embeddings: peak 3 n×m matrices (teacher affinity, later overwritten by the
  student affinity; teacher kernel → P*; student kernel → P → G) and none kept for the backward
  pass (it keeps ``G zy`` and ``Gᵀ zx``); from given matrices: 2 n×m buffers besides the two
  inputs (4 in all), ``G`` kept for the backward pass.
- ``"tiled"``: row tiles only (``tile_bytes``, 256 MiB by default) besides the geometry: no n×m
  matrix from embeddings.
- ``"log"``: the reference log-domain solves on explicit n×m matrices (several temporaries).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from sotalign.errors import ConfigError, InputError
from sotalign.parallel import Comm, as_comm

from .config import KLOTConfig, with_options
from .control import is_converged, l1_error
from .geometry import (
    Dense,
    Embeddings,
    Geometry,
    auto_mode,
    compute_dtype,
    sharded_log_marginals,
)
from .log_domain import solve_log, solve_tiled
from .output import SinkhornOutput
from .scaling import solve_scaling

__all__ = ["KLOTInfo", "klot", "klot_embeddings"]


@dataclass
class KLOTInfo:
    """Diagnostics of one KLOT evaluation (both Sinkhorn solves; ``*_teacher``: the teacher's)."""

    marginal_error: float
    marginal_error_teacher: float
    n_iter: int
    n_iter_teacher: int
    converged: bool = True
    converged_teacher: bool = True
    stabilised: bool = False
    stabilised_teacher: bool = False
    mode: str = "dense"
    value: float = math.nan
    world_size: int = 1

    @classmethod
    def from_outputs(cls, student: SinkhornOutput, teacher: SinkhornOutput, mode: str) -> KLOTInfo:
        return cls(
            marginal_error=float(student.marginal_error),
            marginal_error_teacher=float(teacher.marginal_error),
            n_iter=int(student.n_iter),
            n_iter_teacher=int(teacher.n_iter),
            converged=bool(student.converged),
            converged_teacher=bool(teacher.converged),
            stabilised=bool(student.stabilised),
            stabilised_teacher=bool(teacher.stabilised),
            mode=mode,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-able dict (floats, ints, bools and the mode string; for training logs)."""
        return asdict(self)


def _measured(out: SinkhornOutput, err: float, tol: float | None) -> SinkhornOutput:
    """``out`` with the exactly measured marginal error of its plan."""
    out.marginal_error = err
    out.converged = is_converged(err, tol)
    return out


# ----------------------------------------------------------------------------------------------
# the three ways to a pair (value, gradients with respect to the student's tensors, info)
# ----------------------------------------------------------------------------------------------
Pair = tuple[Tensor, tuple[Tensor, ...], KLOTInfo]


def _log_pair(student: Geometry, teacher: Geometry, cfg: KLOTConfig, comm: Comm) -> Pair:
    """Reference: log-domain solves, explicit log-plans (several n×m temporaries)."""
    log_a, log_b = student.log_marginals()
    out = solve_log(student, cfg.eps, cfg.n_iter, cfg.tol, log_a, log_b)
    out_t = solve_log(teacher, cfg.eps_teacher, cfg.n_iter, cfg.tol, log_a, log_b)
    info = KLOTInfo.from_outputs(out, out_t, "log")
    log_p, log_ps = out.log_plan, out_t.log_plan
    del out, out_t
    p_star = log_ps.exp()
    value = (p_star * (log_ps - log_p)).sum()
    del log_ps
    G = log_p.exp_().sub_(p_star).div_(cfg.eps)
    del log_p, p_star
    return value, student.grads(G), info


def _neg_entropy(
    P: Tensor, K: Tensor, f: Tensor, g: Tensor, r: Tensor, c: Tensor, eps: float
) -> Tensor:
    """``Σ_ij P_ij (K_ij + f_i + g_j) / eps`` with ``r, c`` the row/column sums of ``P``.

    For ``P`` the teacher plan and ``(K, f, g, eps)`` any Gibbs plan ``Q = exp((K+f+g)/eps)``,
    this is ``⟨P, log Q⟩`` without forming ``log Q``: one dot product, no temporary.
    """
    return (torch.dot(P.reshape(-1), K.reshape(-1)) + torch.dot(r, f) + torch.dot(c, g)) / eps


def _dense_pair(student: Geometry, teacher: Geometry, cfg: KLOTConfig, comm: Comm) -> Pair:
    """Fast dense KLOT: scaling-domain solves, plans formed in place in the kernel buffers.

    Memory: besides the affinities it allocates two n×m buffers (the teacher kernel, then P*;
    the student kernel, then P, then G). From embeddings the student affinity is written into
    the teacher affinity's buffer once P* is known (3 matrices in all). Sharded, each of these
    is this rank's row block (n_r×m).
    """
    acc = cfg.tol is not None
    Kt = teacher.affinity()
    geom_t = Dense(Kt)
    log_a, log_b = sharded_log_marginals(geom_t, comm)
    a, b = log_a.exp(), log_b.exp()
    args = (cfg.n_iter, cfg.tol, log_a, log_b)
    buf = torch.empty_like(Kt)
    out_t, st_t = solve_scaling(geom_t, cfg.eps_teacher, *args, accelerate=acc, out=buf, comm=comm)
    del buf
    r_t, c_t = st_t.marginals()  # this rank's rows; c_t: their column sums
    c_all = comm.sum_(c_t.clone()) if comm.sharded else c_t
    _measured(out_t, l1_error(r_t, c_all, a, b, comm), cfg.tol)
    del c_all
    P_star = st_t.plan_()
    h_star = _neg_entropy(P_star, Kt, out_t.f, out_t.g, r_t, c_t, cfg.eps_teacher)
    K = student.affinity(out=Kt if teacher.materialises else None)  # may overwrite Kt
    del Kt
    out, st = solve_scaling(Dense(K), cfg.eps, *args, accelerate=acc, comm=comm)
    _measured(out, l1_error(*st.marginals(comm), a, b, comm), cfg.tol)
    cross = _neg_entropy(P_star, K, out.f, out.g, r_t, c_t, cfg.eps)
    info = KLOTInfo.from_outputs(out, out_t, "dense")
    G = st.plan_().sub_(P_star).div_(cfg.eps)
    # only G is left (the outputs' geometries hold K, the teacher's state holds P*): the
    # gradients with respect to embeddings are formed beside one n×m matrix
    del P_star, st, st_t, out, out_t, geom_t, K
    return h_star - cross, student.grads(G), info


def _tiled_pair(student: Geometry, teacher: Geometry, cfg: KLOTConfig, comm: Comm) -> Pair:
    """Tiled KLOT: value and gradients without an n×m matrix (for embeddings).

    Both solves by :func:`~sotalign.ot.log_domain.solve_tiled`; then one pass over row tiles
    recomputes ``log P_I = (K_I + f_I + g)/ε`` and ``log P*_I`` and accumulates
    ``KL += Σ P*_I (log P*_I − log P_I)``, ``G_I = (P_I − P*_I)/ε`` (chained to the geometry's
    tensors: ``G_I zy`` and ``G_Iᵀ zx_I``), plus the exact row/column sums of both plans.
    """
    acc = cfg.tol is not None
    eps, eps_t = cfg.eps, cfg.eps_teacher
    log_a, log_b = sharded_log_marginals(student, comm)
    args = (cfg.n_iter, cfg.tol, log_a, log_b)
    out_t = solve_tiled(teacher, eps_t, *args, accelerate=acc, exact_error=False, comm=comm)
    out = solve_tiled(student, eps, *args, accelerate=acc, exact_error=False, comm=comm)
    n, m = student.shape
    dtype, dev = student.dtype, student.device
    R = student.tile_rows(copies=8)
    value = torch.zeros((), dtype=torch.float64, device=dev)
    grads = student.new_grads()
    rs = torch.empty(n, dtype=dtype, device=dev)
    rt = torch.empty(n, dtype=dtype, device=dev)
    cs = torch.zeros(m, dtype=dtype, device=dev)
    ct = torch.zeros(m, dtype=dtype, device=dev)
    gs, gt = (out.g / eps)[None, :], (out_t.g / eps_t)[None, :]
    for i in range(0, n, R):
        S = student.rows(i, i + R, 1.0 / eps, gs).add_((out.f[i : i + R] / eps)[:, None])
        T = teacher.rows(i, i + R, 1.0 / eps_t, gt).add_((out_t.f[i : i + R] / eps_t)[:, None])
        Pt = T.exp()
        value += (Pt * (T - S)).sum(dtype=torch.float64)
        S.exp_()  # P tile
        rs[i : i + R] = S.sum(1)
        rt[i : i + R] = Pt.sum(1)
        cs += S.sum(0)
        ct += Pt.sum(0)
        S.sub_(Pt).div_(eps)  # G tile
        student.add_grads(grads, i, S)
    a, b = log_a.exp(), log_b.exp()
    _measured(out, l1_error(rs, comm.sum_(cs), a, b, comm), cfg.tol)
    _measured(out_t, l1_error(rt, comm.sum_(ct), a, b, comm), cfg.tol)
    return value.to(dtype), grads, KLOTInfo.from_outputs(out, out_t, "tiled")


_PAIRS: dict[str, Callable[[Geometry, Geometry, KLOTConfig, Comm], Pair]] = {
    "dense": _dense_pair,
    "tiled": _tiled_pair,
    "log": _log_pair,
}


def _geometry(tensors: list[Tensor], tile_bytes: int) -> Geometry:
    if len(tensors) == 1:
        return Dense(tensors[0], tile_bytes=tile_bytes)
    return Embeddings(tensors[0], tensors[1], tile_bytes=tile_bytes)


class _KLOTFunction(torch.autograd.Function):
    """``KL(P* ‖ P)`` of a student and a teacher geometry; gradient from the closed form.

    ``tensors`` are the student's then the teacher's: ``(K, K*)`` (matrix form) or
    ``(zx, zy, tx, ty)`` (embeddings form). The forward solves both problems without autograd
    and forms the gradient with respect to the student's tensors, ``G`` or ``(G zy, Gᵀ zx)``
    with ``G = (P − P*)/ε`` (Theorem 5.1 / C.4); the backward scales it by the incoming
    gradient. The teacher's tensors receive none.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        cfg: KLOTConfig,
        mode: str,
        info_out: dict[str, KLOTInfo],
        comm: Comm,
        *tensors: Tensor,
    ) -> Tensor:
        k = len(tensors) // 2
        dtype = compute_dtype(tensors[0].dtype)
        dev = tensors[0].device
        with torch.no_grad():
            ts = [t.detach().to(device=dev, dtype=dtype) for t in tensors]
            student = _geometry(ts[:k], cfg.tile_bytes)
            teacher = _geometry(ts[k:], cfg.tile_bytes)
            if not student.materialises:  # given matrices: check them before solving
                student.check_finite()
                teacher.check_finite()
            value, grads, info = _PAIRS[mode](student, teacher, cfg, comm)
        info.value = comm.sum_float(value.to(torch.float64))
        info.world_size = comm.world_size
        if not math.isfinite(info.value):
            raise InputError("KLOT value is not finite; check the embeddings (NaN/Inf?)")
        info_out["info"] = info
        ctx.save_for_backward(*grads)
        ctx.dtypes = tuple(t.dtype for t in tensors[:k])
        return value.to(tensors[0].dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        grads = ctx.saved_tensors
        go = grad_output.to(grads[0].dtype)
        student = [(go * g).to(dt) for g, dt in zip(grads, ctx.dtypes, strict=True)]
        return (None, None, None, None, *student, *([None] * len(student)))


def klot(
    K_student: Tensor,
    K_teacher: Tensor,
    config: KLOTConfig | None = None,
    *,
    group: object = None,
    **options: Any,
) -> Tensor:
    """KLOT divergence ``KL(OT_ε*(K*) ‖ OT_ε(K))`` of two affinity matrices, closed-form gradient.

    Forward: both plans by Sinkhorn (no autograd), value ``Σ P* (log P* − log P)`` computed
    exactly from the Gibbs form of the plans (``log P = (K + f ⊕ g)/ε``). Backward:
    ``grad_K = grad_output · (P − P*)/ε`` with the student ε (Theorem 5.1 / C.4); ``K_teacher``
    receives no gradient.

    Args:
        K_student, K_teacher: n×m affinities (any float dtype; solved in float32, or float64).
        config: a :class:`KLOTConfig` (validated when built; nothing is re-checked here).
        **options: :class:`KLOTConfig` fields overriding ``config`` (or the defaults), e.g.
            ``klot(K, Kt, eps=0.1, mode="log")``. Modes: ``"auto"``/``"dense"`` (fast stabilised
            solver; with ``tol`` also ε-scaling and over-relaxation; the two inputs plus two n×m
            buffers, ``G`` kept for the backward pass), ``"tiled"`` (row tiles of the given
            matrices) or ``"log"`` (reference log-domain solver).
        group: a ``torch.distributed`` process group (or :class:`sotalign.parallel.Comm`):
            the two matrices are then this rank's row blocks (see :func:`klot_embeddings`).

    Returns a scalar of ``K_student``'s dtype (sharded: this rank's share of the sum).
    """
    comm = as_comm(group)
    cfg = with_options(KLOTConfig, config, options)
    for name, K in (("K_student", K_student), ("K_teacher", K_teacher)):
        Dense(K, name=name)  # type and shape checks
    if K_student.shape != K_teacher.shape:
        raise InputError(
            f"student and teacher affinities must have the same shape, got "
            f"{tuple(K_student.shape)} and {tuple(K_teacher.shape)}"
        )
    mode = _sharded_mode("dense" if cfg.mode == "auto" else cfg.mode, comm)
    holder: dict[str, KLOTInfo] = {}
    return _KLOTFunction.apply(cfg, mode, holder, comm, K_student, K_teacher)


def _sharded_mode(mode: str, comm: Comm) -> str:
    if mode == "log" and comm.sharded:
        raise ConfigError("mode 'log' (the reference solver) runs in one process only")
    return mode


def klot_embeddings(
    zx: Tensor,
    zy: Tensor,
    tx: Tensor,
    ty: Tensor,
    config: KLOTConfig | None = None,
    *,
    group: object = None,
    **options: Any,
) -> tuple[Tensor, KLOTInfo]:
    """KLOT between the student affinity ``K = zx zyᵀ`` and the teacher affinity ``K* = tx tyᵀ``.

    Rows are expected L2-normalised (cosines). Gradients flow to ``zx`` and ``zy``:
    ``grad_zx = G zy``, ``grad_zy = Gᵀ zx`` with ``G = (P − P*)/ε`` (Theorem 5.1 / C.4);
    ``tx, ty`` get none. n (images) and m (texts) may differ.

    Args:
        zx, zy: student embeddings (n×d, m×d); tx, ty: teacher embeddings (n×d*, m×d*).
        config: a :class:`KLOTConfig` (validated when built; nothing is re-checked here).
        **options: :class:`KLOTConfig` fields overriding ``config`` (or the defaults).

    Modes:
        ``"dense"``: fast stabilised scaling-domain solver on materialised n×m affinities; peak
            memory 3 n×m matrices in the compute dtype (teacher affinity, later overwritten by
            the student affinity; kernel → P*; kernel → P → G).
        ``"tiled"``: online log-domain solver that recomputes affinity tiles from the
            embeddings with GEMMs each iteration; memory O((n + m)(d + tile rows)), never an
            n×m matrix; cost one GEMM pass per iteration (compute-bound).
        ``"log"``: the reference log-domain solver on materialised affinities.
        ``"auto"``: dense when 3 n×m matrices fit in 60% of the free memory, else tiled (decided
            once per batch shape and device: :func:`~sotalign.ot.auto_mode`).

    With ``tol``, solves stop when the L1 marginal error (mass-1 plans) is at most ``tol`` and
    use ε-scaling + over-relaxation; ``n_iter`` is then the maximum.

    Sharded (``group``: a ``torch.distributed`` process group, or a
    :class:`sotalign.parallel.Comm`, over W ranks): ``zx``/``tx`` are this rank's rows ``I``
    of the image batch and ``zy``/``ty`` the whole text batch (the same on every rank, e.g.
    :meth:`sotalign.parallel.Comm.gather_rows` of each rank's texts, with gradient). Rank r
    holds only its row block of both affinities (n_r×m; the tiled mode only its tiles): row
    updates of Sinkhorn are local, column updates combine a log-sum-exp (or a sum of scaled
    columns) over ranks, and ``G_I = (P_I − P*_I)/ε`` is local. The returned loss is this
    rank's share ``Σ_{i∈I} Σ_j P*_ij (log P*_ij − log P_ij)`` (the shares sum to KLOT) and its
    gradients are the share's: ``G_I zy`` for ``zx`` (complete) and ``G_Iᵀ zx`` for ``zy``
    (to be summed over ranks: the backward of ``gather_rows`` does it). ``info.value`` is the
    whole KLOT on every rank. Per-rank memory: ``1/W`` of the single-process figures.

    Returns ``(loss, info)``: ``info`` is a :class:`KLOTInfo` (the whole value, iterations and
    final marginal errors of both solves, convergence and stabilisation flags, mode used,
    world size).
    """
    comm = as_comm(group)
    cfg = with_options(KLOTConfig, config, options)
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
    mode = cfg.mode
    if mode == "auto":
        itemsize = 8 if zx.dtype == torch.float64 else 4
        mode = auto_mode(zx.shape[0], zy.shape[0], str(zx.device), itemsize)
    mode = _sharded_mode(mode, comm)
    holder: dict[str, KLOTInfo] = {}
    loss = _KLOTFunction.apply(cfg, mode, holder, comm, zx, zy, tx, ty)
    return loss, holder["info"]
