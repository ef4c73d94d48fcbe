"""Entropic optimal transport and the KLOT divergence (SPEC §3).

Problem solved everywhere in this package (balanced entropic OT with cost ``C = −K``)::

    OT_ε(K) = argmin_{P ≥ 0, P 1 = a, Pᵀ 1 = b}  −⟨P, K⟩ + ε ⟨P, log P⟩

with uniform marginals ``a = 1/n``, ``b = 1/m`` by default, so plans have total mass 1. The optimal
plan has the Gibbs form ``P_ij = exp((K_ij + f_i + g_j) / ε)`` where ``f, g`` are the dual
potentials (``f = ε u``, ``g = ε v`` in the scaled notation of SPEC §3).

KLOT (SPEC §3, Algorithm 1 of the paper)::

    KLOT(K ‖ K*) = KL(P* ‖ P) = Σ_ij P*_ij (log P*_ij − log P_ij),   P = OT_ε(K),  P* = OT_ε*(K*).

Its gradient has the closed form of Theorem 5.1 / C.4: ``∇_K KL(T ‖ OT_ε(K)) = (P − T) / ε`` for
any fixed plan ``T`` with the same marginals; the *student* ε is used. Both Sinkhorn solves run
outside autograd; the forward value is the exact KL of the two computed plans.

All solves run in float32 or float64: half-precision inputs are upcast (ε* = 0.01 on cosines
gives exponents up to 100).

Layout (in the spirit of OTT-JAX: geometry → solver → output):

- :mod:`.config` — :class:`SinkhornConfig`, :class:`KLOTConfig`: the options, validated once.
- :mod:`.geometry` — where ``K`` comes from: :class:`Dense` (a matrix) or :class:`Embeddings`
  (``K = x yᵀ`` evaluated in row tiles); the memory policy of ``mode="auto"``.
- :mod:`.control` — what the solvers share: ε-scaling schedule, stopping rule, over-relaxation.
- :mod:`.log_domain` — the reference log-domain solver of SPEC §3 and its tiled form.
- :mod:`.scaling` — the fast dense solver (scaling domain, log-domain absorption).
- :mod:`.output` — :class:`SinkhornOutput`, the one result type (plan on demand).
- :mod:`.sinkhorn` — :func:`sinkhorn`, one entry point dispatching on geometry and mode.
- :mod:`.klot` — :func:`klot`, :func:`klot_embeddings`: one autograd Function for both forms.

Solvers (all device-agnostic: CPU or CUDA tensors, results on the input's device), by mode:

- ``"log"`` — the reference log-domain Sinkhorn of SPEC §3 (a log-sum-exp over an n×m temporary
  per half-iteration). Used by tests and benchmarks as the reference.
- ``"dense"`` (``"auto"`` for matrices) — the kernel ``E = exp((K + f ⊕ g)/ε)`` is built once in
  one n×m buffer, iterations are two matrix-vector products (memory-bound); scalings are absorbed
  into the potentials when they leave ``[e^−25, e^25]`` and rows/columns whose sums underflow get
  the exact log-domain update (Schmitzer 2019). With ``tol``: ε-scaling and adaptive
  over-relaxation. The result says whether it had to stabilise (``stabilised``).
- ``"tiled"`` — the log-domain updates computed from the geometry one row tile at a time (one
  GEMM per iteration for embeddings, online log-sum-exp): memory O((n + m) d), never an n×m
  matrix. With ``tol``: the same ε-scaling and over-relaxation.

Memory (float32, n×m problems): ``klot_embeddings(mode="dense")`` peaks at 3 n×m matrices (teacher
affinity, later overwritten by the student affinity; teacher kernel → P*; student kernel → P → G)
and keeps none for the backward pass (it stores ``G zy`` and ``Gᵀ zx``); ``klot`` on given
matrices allocates 2 more n×m matrices besides its two inputs (4 in all) and keeps ``G``;
``mode="tiled"`` holds only row tiles (``tile_bytes``, 256 MiB by default).
"""

from __future__ import annotations

from .config import MODES, KLOTConfig, SinkhornConfig
from .geometry import Dense, Embeddings, Geometry, auto_mode, dense_fits
from .klot import KLOTInfo, klot, klot_embeddings
from .output import SinkhornOutput
from .sinkhorn import sinkhorn

__all__ = [
    "MODES",
    "Dense",
    "Embeddings",
    "Geometry",
    "KLOTConfig",
    "KLOTInfo",
    "SinkhornConfig",
    "SinkhornOutput",
    "auto_mode",
    "dense_fits",
    "klot",
    "klot_embeddings",
    "sinkhorn",
]
