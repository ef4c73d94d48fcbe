"""What the iterative Sinkhorn solvers share: ε-scaling, stopping, over-relaxation.

Convergence is measured by the L1 marginal error of the current plan (mass-1 plans)::

    err(P) = ‖P 1 − a‖₁ + ‖Pᵀ 1 − b‖₁,

a run *converged* when ``err ≤ tol`` (``tol = None``: when ``err ≤ 1e-4``, the library's default
accuracy target). The solvers obtain ``err`` of their current iterate at no extra cost from the
sums an iteration computes anyway.

Acceleration (the fast solvers, only with a tolerance; Schmitzer 2019, Thibault et al. 2021,
Lehmann et al. 2022):

- **ε-scaling**: solve for ``ε_0 = span ≥ max K − min K``, then ``ε_{k+1} = 0.4 ε_k`` while above
  the target ε, then the target; each stage starts from the potentials of the previous one and
  stops at error ``max(tol, 1e-3)`` (the final stage at ``tol``). ``n_iter`` bounds the
  iterations of all stages together. Not used with a warm start (the potentials are then
  already close).
- **over-relaxation**: ``log u ← (1 − ω) log u + ω log û`` (û the plain Sinkhorn update), with
  ``ω = 2 / (1 + √(1 − λ))``, λ the contraction rate per iteration observed after 20 plain
  iterations of a stage (capped at 1.95), and plain updates (ω = 1) for the rest of the stage
  once the error exceeds 10× its minimum.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from torch import Tensor

from sotalign.parallel import LOCAL, Comm

__all__ = [
    "DEFAULT_TOL",
    "Relaxation",
    "Schedule",
    "eps_schedule",
    "is_converged",
    "l1_error",
]

DEFAULT_TOL = 1e-4  # "converged" without a tolerance
STAGE_TOL = 1e-3  # marginal error at which an intermediate ε-scaling stage stops
EPS_DECAY = 0.4  # geometric factor of the ε-scaling schedule
OMEGA_WARMUP = 20  # plain iterations before the over-relaxation factor is estimated
OMEGA_MAX = 1.95


def is_converged(err: float, tol: float | None) -> bool:
    """``err ≤ tol`` (``tol = None``: ``err ≤ 1e-4``)."""
    return err <= (tol if tol is not None else DEFAULT_TOL)


def l1_error(
    row: Tensor, col: Tensor, a: Tensor | float, b: Tensor | float, comm: Comm = LOCAL
) -> float:
    """``‖row − a‖₁ + ‖col − b‖₁`` for the row/column sums of a plan and the marginals.

    Sharded: ``row``/``a`` are this rank's rows (their part is summed over ranks), ``col`` the
    full (already reduced) column sums."""
    if comm.sharded:
        return comm.sum_float((row - a).abs().sum()) + float((col - b).abs().sum())
    return float((row - a).abs().sum() + (col - b).abs().sum())


def eps_schedule(eps: float, span: float) -> list[float]:
    """``[span, 0.4 span, 0.4² span, …, eps]``: the ε-scaling stages down to the target ``eps``.

    Every listed value before ``eps`` is above it; ``span ≤ eps`` gives ``[eps]``.
    """
    out = []
    e = span
    while e > eps:
        out.append(e)
        e *= EPS_DECAY
    return [*out, eps]


@dataclass(frozen=True)
class Schedule:
    """The stages of one solve and its iteration budget.

    Attributes:
        eps: the ε of each stage (the last one is the target).
        tol: the final tolerance (``None``: fixed number of iterations).
        n_iter: iterations allowed over all stages.
        relax: whether over-relaxation is used.
    """

    eps: tuple[float, ...]
    tol: float | None
    n_iter: int
    relax: bool

    @classmethod
    def make(
        cls,
        eps: float,
        n_iter: int,
        tol: float | None,
        accelerate: bool,
        span: Callable[[], float] | None,
    ) -> Schedule:
        """Acceleration only with ``tol``; ε-scaling only when ``span`` is given (cold start)."""
        active = accelerate and tol is not None
        stages = eps_schedule(eps, span()) if active and span is not None else [eps]
        return cls(tuple(stages), tol, n_iter, active)

    def stages(self) -> Iterator[tuple[float, bool, float | None]]:
        """``(ε, final, stop tolerance)`` per stage."""
        last = len(self.eps) - 1
        for k, e in enumerate(self.eps):
            final = k == last
            yield e, final, (self.tol if final else max(self.tol or 0.0, STAGE_TOL))


def omega_rule(errs: list[float], w: float) -> float:
    """Adaptive over-relaxation factor from the error history of the current stage.

    After ``OMEGA_WARMUP`` plain iterations the contraction rate per iteration is estimated as
    ``λ = (err_k / err_{k−10})^(1/10)`` and ``ω = 2 / (1 + √(1 − λ))`` (capped at ``OMEGA_MAX``)
    is kept for the rest of the stage. If the error ever exceeds 10× its minimum after that,
    plain updates (``ω = 1``, marked by the sentinel ``−1``) are used from then on.
    """
    k = len(errs)
    if w < 0:
        return w
    if w > 1.0 and errs[-1] > 10.0 * min(errs):
        return -1.0
    if k == OMEGA_WARMUP + 1 and w == 1.0:
        lam = errs[-1] / errs[-11] if math.isfinite(errs[-11]) else 1.0
        lam = lam**0.1 if lam > 0 else 0.0
        if lam < 1.0:
            return min(OMEGA_MAX, 2.0 / (1.0 + math.sqrt(1.0 - lam)))
    return w


class Relaxation:
    """Over-relaxation state of one ε-stage: record each error, then ask for the next ω."""

    def __init__(self, active: bool) -> None:
        self.active = active
        self.errs: list[float] = []
        self.w = 1.0

    def observe(self, err: float) -> None:
        """Record the marginal error of the current iterate."""
        self.errs.append(err)

    def update(self) -> float:
        """The factor for the next update (``> 1``: relaxed; ``≤ 1``: plain)."""
        if self.active:
            self.w = omega_rule(self.errs, self.w)
        return self.w

    @property
    def omega(self) -> float:
        """The factor in use, for diagnostics (1 for plain updates)."""
        return max(self.w, 1.0)
