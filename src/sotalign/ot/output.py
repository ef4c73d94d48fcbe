"""The one result type of every Sinkhorn solve.

A solve of ``OT_ε(K) = argmin_{P ≥ 0, P1 = a, Pᵀ1 = b} −⟨P, K⟩ + ε⟨P, log P⟩`` is summarised by
its dual potentials ``f, g`` (in the units of ``K``): the plan has the Gibbs form

    P_ij = exp((K_ij + f_i + g_j) / ε),

so :class:`SinkhornOutput` keeps ``f, g`` and the geometry, and forms ``log P`` or ``P`` only on
demand (an n×m matrix, also for a tiled solve).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from .geometry import Geometry

__all__ = ["SinkhornOutput"]


@dataclass
class SinkhornOutput:
    """Output of :func:`sotalign.ot.sinkhorn` (and of each solve inside KLOT).

    Attributes:
        geom: the geometry solved (in the compute dtype).
        f: row potential (n,), in the units of ``K``.
        g: column potential (m,), in the units of ``K``.
        eps: the regularisation of the returned plan.
        n_iter: full Sinkhorn iterations performed (all ε-scaling stages together).
        marginal_error: ``‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁`` of the returned plan (mass-1 plans).
        converged: ``marginal_error ≤ tol`` when a tolerance was given; else whether it is
            below ``1e-4`` (the library's default accuracy target).
        stabilised: the solver had to absorb scalings into the log domain to avoid
            under/overflow (always False for the log-domain solvers, which cannot overflow).
        solver: ``"log"`` (reference), ``"scaling"`` (dense) or ``"tiled"``.
        diagnostics: solver-specific counters (ε schedule, over-relaxation factor, absorptions).
    """

    geom: Geometry = field(repr=False)
    f: Tensor
    g: Tensor
    eps: float
    n_iter: int
    marginal_error: float
    converged: bool
    stabilised: bool = False
    solver: str = "log"
    diagnostics: dict[str, Any] = field(default_factory=dict)
    _log_plan: Tensor | None = field(default=None, repr=False)
    """``log P`` when the solver formed it anyway (the reference solver); else None."""

    @property
    def log_plan(self) -> Tensor:
        """``log P = (K + f ⊕ g) / eps`` (n×m, formed on each access unless the solver kept it)."""
        if self._log_plan is not None:
            return self._log_plan
        return self.geom.log_kernel(self.f, self.g, self.eps)

    @property
    def plan(self) -> Tensor:
        """The transport plan ``P = exp(log P)`` (n×m, total mass 1, formed on each access)."""
        return self.log_plan.exp()

    def marginals(self) -> tuple[Tensor, Tensor]:
        """Row and column sums ``(P1, Pᵀ1)`` of the plan, one row tile at a time."""
        return self.geom.plan_marginals(self.f, self.g, self.eps)
