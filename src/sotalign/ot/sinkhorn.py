"""One entry point for entropic OT: :func:`sinkhorn` dispatches on the geometry and the mode."""

from __future__ import annotations

import torch
from torch import Tensor

from sotalign.errors import ConfigError, InputError
from sotalign.parallel import as_comm

from .config import SinkhornConfig, with_options
from .geometry import Dense, Geometry, auto_mode, compute_dtype, sharded_log_marginals
from .log_domain import solve_log, solve_tiled
from .output import SinkhornOutput
from .scaling import solve_scaling

__all__ = ["sinkhorn"]


def sinkhorn(
    geom: Tensor | Geometry,
    eps: float | None = None,
    n_iter: int | None = None,
    tol: float | None = None,
    *,
    mode: str | None = None,
    config: SinkhornConfig | None = None,
    a: Tensor | None = None,
    b: Tensor | None = None,
    accelerate: bool | None = None,
    init: tuple[Tensor, Tensor] | None = None,
    group: object = None,
) -> SinkhornOutput:
    """Balanced entropic OT between the rows and columns of an affinity ``K`` (cost ``−K``).

    Solves (SPEC §3)::

        OT_ε(K) = argmin_{P ≥ 0, P 1 = a, Pᵀ 1 = b}  −⟨P, K⟩ + ε ⟨P, log P⟩

    with marginals ``a`` (rows, default uniform ``1/n``) and ``b`` (columns, default ``1/m``),
    total mass 1. The optimal plan has the Gibbs form ``P_ij = exp((K_ij + f_i + g_j) / ε)``
    with dual potentials ``f, g``, which the result holds (the plan is formed on demand).

    Args:
        geom: the affinity: an n×m matrix (e.g. cosines in [-1, 1]), or a :class:`Geometry`
            (:class:`Dense`, or :class:`Embeddings` for ``K = x yᵀ`` evaluated in row tiles).
            Any float dtype (solved in float32, or float64 if given float64); not differentiated.
        eps, n_iter, tol, mode: the options of :class:`SinkhornConfig` (ε; iterations, the
            maximum over all ε-scaling stages with ``tol``; L1 marginal-error tolerance; solver).
            An option left at ``None`` takes the value of ``config`` (default:
            ``SinkhornConfig()``). Modes: ``"dense"`` (and ``"auto"`` for a matrix): stabilised
            scaling-domain solver, two matrix-vector products per iteration on a kernel built
            once (2 n×m matrices); ``"tiled"``: online log-domain solver, one pass over row tiles
            per iteration (no n×m matrix for embeddings); ``"log"``: the reference log-domain
            solver of SPEC §3 (a log-sum-exp over an n×m temporary per half-step). ``"auto"`` on
            embeddings: dense when 3 n×m matrices fit in 60% of free memory, else tiled.
        config: a :class:`SinkhornConfig` (validated when built).
        a, b: optional positive marginals (renormalised to mass 1).
        accelerate: ε-scaling + adaptive over-relaxation (dense and tiled solvers, only with
            ``tol``); default: on when ``tol`` is given.
        init: warm start ``(f, g)``, e.g. the potentials of a previous result on the same sizes
            (no ε-scaling then).
        group: a ``torch.distributed`` process group (or a :class:`sotalign.parallel.Comm`)
            to solve one problem sharded by rows: ``geom`` is then this rank's row block
            ``K_I`` (n_r×m, e.g. :func:`sotalign.parallel.row_block` of the rows), ``a`` its
            rows' weights (normalised over all ranks), ``b`` and the columns the same on every
            rank. The result holds this rank's ``f_I`` and the shared ``g``; its plan is the row
            block ``P_I``; errors and decisions are global (identical on every rank). Modes
            ``dense``/``auto`` (scaling solver per rank) and ``tiled``; not ``log``. ``None``
            (default): one process, whether or not a default group exists.

    Returns:
        :class:`SinkhornOutput` (``plan``, ``log_plan``, ``f``, ``g``, ``n_iter``,
        ``marginal_error``, ``converged``, ``stabilised``, ``solver``, ``diagnostics``).
    """
    comm = as_comm(group)
    given = {"eps": eps, "n_iter": n_iter, "tol": tol, "mode": mode}
    cfg = with_options(SinkhornConfig, config, {k: v for k, v in given.items() if v is not None})
    if not isinstance(geom, Geometry):
        geom = Dense(geom)
    with torch.no_grad():
        geom = geom.cast(compute_dtype(geom.dtype))
        geom.check_finite()
        n, m = geom.shape
        log_a, log_b = sharded_log_marginals(geom, comm, a, b)
        if init is not None and (
            len(init) != 2 or tuple(init[0].shape) != (n,) or tuple(init[1].shape) != (m,)
        ):
            raise InputError(f"init must be a pair (f, g) of shapes ({n},) and ({m},)")
        mode = cfg.mode
        if mode == "auto":
            itemsize = geom.tensors[0].element_size()
            mode = "dense" if not geom.materialises else auto_mode(n, m, str(geom.device), itemsize)
        args = (geom, cfg.eps, cfg.n_iter, cfg.tol, log_a, log_b)
        if mode == "log":
            if init is not None:
                raise ConfigError("init (warm start) needs mode 'dense', 'tiled' or 'auto'")
            if comm.sharded:
                raise ConfigError("mode 'log' (the reference solver) runs in one process only")
            return solve_log(*args)
        acc = (cfg.tol is not None) if accelerate is None else bool(accelerate)
        if mode == "tiled":
            return solve_tiled(*args, accelerate=acc, init=init, comm=comm)
        return solve_scaling(*args, accelerate=acc, init=init, comm=comm)[0]
