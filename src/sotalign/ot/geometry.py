"""Geometries: where the affinity ``K`` of an entropic OT problem comes from (SPEC §3).

The cost is ``C = −K``; a geometry gives ``K`` (n×m) to the solvers in one of two forms:

- :class:`Dense` — a materialised matrix ``K``;
- :class:`Embeddings` — row embeddings ``x`` (n×d) and ``y`` (m×d) with ``K = x yᵀ`` (cosines for
  L2-normalised rows), evaluated in row tiles ``K_I = x_I yᵀ`` by one GEMM each, so that a solver
  working tile by tile never holds an n×m matrix (memory O((n + m) d + tile)).

Everything a solver or KLOT needs from ``K`` goes through a handful of primitives:
``rows(I, s, h) = s·K_I + h`` (a shifted, scaled row tile: the log-kernel ``(K_I + g)/ε`` of the
log-domain updates), ``affinity()`` (the whole matrix), ``span()`` (``max K − min K`` or a
bound on it: where ε-scaling starts) and ``grads(G)`` / ``add_grads`` (the chain rule from
``∂/∂K = G`` to the geometry's own tensors: ``G`` itself, or ``(G y, Gᵀ x)`` for embeddings).

Memory policy of ``mode="auto"``: dense KLOT peaks at 3 n×m matrices in the compute dtype; it is
chosen when they fit in 60% of the device's free memory (:func:`dense_fits`). The decision of
:func:`auto_mode` is cached per ``(n, m, device, itemsize)``, so a training loop reads the free
memory (``/proc/meminfo`` or ``cudaMemGetInfo``) once per batch shape, not once per step.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from sotalign.errors import InputError
from sotalign.parallel import LOCAL, Comm

__all__ = [
    "Dense",
    "Embeddings",
    "Geometry",
    "auto_mode",
    "compute_dtype",
    "dense_fits",
    "global_span",
    "sharded_log_marginals",
]

TILE_BYTES = 256 << 20
"""Default memory budget of one row tile (bytes)."""


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else (half, bf16, float32) is solved in float32.

    (ε* = 0.01 on cosines gives exponents up to 100: half precision cannot hold the kernel.)
    """
    return torch.float64 if dtype == torch.float64 else torch.float32


def tile_rows(m: int, budget_bytes: int, itemsize: int, copies: int = 6) -> int:
    """Rows per tile so that ``copies`` temporaries of ``rows × m`` fit in ``budget_bytes``."""
    return max(1, min(4096, budget_bytes // max(1, copies * m * itemsize)))


class Geometry(ABC):
    """The affinity ``K`` (n×m) of an OT problem with cost ``−K``; see the module docstring."""

    tile_bytes: int = TILE_BYTES

    @property
    @abstractmethod
    def shape(self) -> tuple[int, int]:
        """``(n, m)``."""

    @property
    @abstractmethod
    def tensors(self) -> tuple[Tensor, ...]:
        """The tensors that define ``K`` (``(K,)`` or ``(x, y)``)."""

    @property
    def dtype(self) -> torch.dtype:
        return self.tensors[0].dtype

    @property
    def device(self) -> torch.device:
        return self.tensors[0].device

    @property
    def materialises(self) -> bool:
        """Whether :meth:`affinity` allocates a new n×m matrix (else it returns a stored one)."""
        return True

    @abstractmethod
    def cast(self, dtype: torch.dtype) -> Geometry:
        """The same geometry on detached tensors of ``dtype`` (no copy when already so)."""

    @abstractmethod
    def affinity(self, out: Tensor | None = None) -> Tensor:
        """The n×m matrix ``K`` (written into ``out`` when given)."""

    @abstractmethod
    def rows(self, start: int, stop: int, scale: float, shift: Tensor) -> Tensor:
        """A new tile ``scale · K[start:stop] + shift`` (``shift`` broadcasts as ``(1, m)``)."""

    @abstractmethod
    def span(self) -> float:
        """``max K − min K`` or a bound on it: the first ε of ε-scaling (:mod:`.control`)."""

    @abstractmethod
    def check_finite(self) -> None:
        """Raise :class:`~sotalign.errors.InputError` if a defining tensor has NaN or Inf."""

    @abstractmethod
    def new_grads(self) -> tuple[Tensor, ...]:
        """Buffers for the gradient with respect to :attr:`tensors`, filled by :meth:`add_grads`."""

    @abstractmethod
    def add_grads(self, grads: tuple[Tensor, ...], start: int, G_rows: Tensor) -> None:
        """Chain rule for the rows ``start:start+len(G_rows)`` of ``G = ∂L/∂K``."""

    @abstractmethod
    def grads(self, G: Tensor) -> tuple[Tensor, ...]:
        """Chain rule for a whole ``G = ∂L/∂K``: the gradient with respect to :attr:`tensors`."""

    def tile_rows(self, copies: int = 6) -> int:
        """Rows per tile of the tiled solver (``copies`` n-row temporaries in ``tile_bytes``)."""
        itemsize = self.tensors[0].element_size()
        return tile_rows(self.shape[1], self.tile_bytes, itemsize, copies)

    def log_kernel(self, f: Tensor, g: Tensor, eps: float) -> Tensor:
        """``(K + f ⊕ g) / eps`` as a new n×m matrix: the log of the Gibbs plan of ``(f, g)``."""
        K = self.affinity()
        out = K + f[:, None] if not self.materialises else K.add_(f[:, None])
        return out.add_(g[None, :]).div_(eps)

    def plan_marginals(self, f: Tensor, g: Tensor, eps: float) -> tuple[Tensor, Tensor]:
        """Row and column sums of ``P = exp((K + f ⊕ g)/eps)``, one row tile at a time."""
        n, m = self.shape
        R = self.tile_rows()
        row = torch.empty(n, dtype=self.dtype, device=self.device)
        col = torch.zeros(m, dtype=self.dtype, device=self.device)
        shift = (g / eps)[None, :]
        for i in range(0, n, R):
            P = self.rows(i, i + R, 1.0 / eps, shift).add_((f[i : i + R] / eps)[:, None]).exp_()
            row[i : i + R] = P.sum(1)
            col += P.sum(0)
        return row, col

    def log_marginals(
        self, a: Tensor | None = None, b: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(log a, log b)``: uniform ``1/n``, ``1/m`` by default, else renormalised to mass 1."""
        n, m = self.shape
        dtype, device = self.dtype, self.device

        def one(w: Tensor | None, size: int, name: str) -> Tensor:
            if w is None:
                return torch.full((size,), -math.log(size), dtype=dtype, device=device)
            w = torch.as_tensor(w, dtype=dtype, device=device)
            if w.shape != (size,):
                raise InputError(f"marginal {name} must have shape ({size},), got {tuple(w.shape)}")
            if not bool(torch.isfinite(w).all()) or bool((w <= 0).any()):
                raise InputError(f"marginal {name} must be positive and finite")
            return (w / w.sum()).log()

        return one(a, n, "a"), one(b, m, "b")


def _check_float_matrix(t: object, name: str) -> None:
    if not isinstance(t, Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise InputError(f"{name} must be a non-empty 2-D matrix, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor, got {t.dtype}")


class Dense(Geometry):
    """A given affinity matrix ``K`` (n×m)."""

    def __init__(self, K: Tensor, *, tile_bytes: int = TILE_BYTES, name: str = "K") -> None:
        _check_float_matrix(K, name)
        self.K = K
        self.tile_bytes = int(tile_bytes)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.K.shape[0]), int(self.K.shape[1]))

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        return (self.K,)

    @property
    def materialises(self) -> bool:
        return False

    def cast(self, dtype: torch.dtype) -> Dense:
        return Dense(self.K.detach().to(dtype), tile_bytes=self.tile_bytes)

    def affinity(self, out: Tensor | None = None) -> Tensor:
        return self.K if out is None else out.copy_(self.K)

    def rows(self, start: int, stop: int, scale: float, shift: Tensor) -> Tensor:
        return torch.add(shift, self.K[start:stop], alpha=scale)

    def span(self) -> float:
        return float(self.K.amax() - self.K.amin())

    def check_finite(self) -> None:
        if not bool(torch.isfinite(self.K).all()):
            raise InputError("the affinity contains NaN or Inf; check the embeddings behind it")

    def new_grads(self) -> tuple[Tensor, ...]:
        return (torch.empty_like(self.K),)

    def add_grads(self, grads: tuple[Tensor, ...], start: int, G_rows: Tensor) -> None:
        grads[0][start : start + G_rows.shape[0]] = G_rows

    def grads(self, G: Tensor) -> tuple[Tensor, ...]:
        return (G,)


class Embeddings(Geometry):
    """``K = x yᵀ`` from row embeddings ``x`` (n×d) and ``y`` (m×d), evaluated in row tiles."""

    def __init__(
        self, x: Tensor, y: Tensor, *, tile_bytes: int = TILE_BYTES, names: str = "xy"
    ) -> None:
        _check_float_matrix(x, names[0])
        _check_float_matrix(y, names[1])
        if x.shape[1] != y.shape[1]:
            raise InputError(
                f"{names[0]} and {names[1]} must have the same embedding dimension, got "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        self.x, self.y = x, y
        self.tile_bytes = int(tile_bytes)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.x.shape[0]), int(self.y.shape[0]))

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        return (self.x, self.y)

    def cast(self, dtype: torch.dtype) -> Embeddings:
        x = self.x.detach().to(dtype)
        return Embeddings(x, self.y.detach().to(x.device, dtype), tile_bytes=self.tile_bytes)

    def affinity(self, out: Tensor | None = None) -> Tensor:
        return torch.mm(self.x, self.y.T, out=out)

    def rows(self, start: int, stop: int, scale: float, shift: Tensor) -> Tensor:
        return torch.addmm(shift, self.x[start:stop], self.y.T, alpha=scale)

    def span(self) -> float:
        """``2 max‖x_i‖ max‖y_j‖`` (Cauchy–Schwarz: ``|x_i · y_j| ≤ ‖x_i‖ ‖y_j‖``).

        Exactly 2 when that product is within 1% of 1 (L2-normalised rows: cosines), so that
        the ε-scaling schedule of cosines does not depend on the rounding of the norms.
        """
        r = float(self.x.norm(dim=1).amax()) * float(self.y.norm(dim=1).amax())
        return 2.0 if abs(r - 1.0) <= 0.01 else 2.0 * r

    def check_finite(self) -> None:
        if not (bool(torch.isfinite(self.x).all()) and bool(torch.isfinite(self.y).all())):
            raise InputError("the embeddings contain NaN or Inf")

    def new_grads(self) -> tuple[Tensor, ...]:
        return (torch.empty_like(self.x), torch.zeros_like(self.y))

    def add_grads(self, grads: tuple[Tensor, ...], start: int, G_rows: Tensor) -> None:
        stop = start + G_rows.shape[0]
        grads[0][start:stop] = G_rows @ self.y
        grads[1].addmm_(G_rows.T, self.x[start:stop])

    def grads(self, G: Tensor) -> tuple[Tensor, ...]:
        return (G @ self.y, G.T @ self.x)


def global_span(geom: Geometry, comm: Comm = LOCAL) -> float:
    """:meth:`Geometry.span` of the whole problem when ``geom`` is one rank's row block.

    A matrix: ``max K − min K`` over every rank's rows. Embeddings: the largest per-rank bound
    (the column embeddings are the same on every rank, so this is the bound of the whole ``x``).
    """
    if not comm.sharded:
        return geom.span()
    if isinstance(geom, Dense):
        hi = comm.max_(geom.K.amax().reshape(1).clone())
        lo = comm.min_(geom.K.amin().reshape(1).clone())
        return float(hi[0] - lo[0])
    return float(comm.max_(torch.tensor([geom.span()], dtype=torch.float64, device=geom.device))[0])


def sharded_log_marginals(
    geom: Geometry, comm: Comm, a: Tensor | None = None, b: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """``(log a_I, log b)`` when ``geom`` is one rank's row block ``I`` of the whole problem.

    Uniform rows are ``1/N`` with ``N`` the total number of rows over all ranks; given row
    weights are this rank's and are normalised by their sum over all ranks. Columns as
    :meth:`Geometry.log_marginals` (the same on every rank).
    """
    if not comm.sharded:
        return geom.log_marginals(a, b)
    n = geom.shape[0]
    log_b = geom.log_marginals(None, b)[1]
    dtype, device = geom.dtype, geom.device
    if a is None:
        total = comm.sum_float(torch.tensor(float(n), dtype=torch.float64, device=device))
        return torch.full((n,), -math.log(total), dtype=dtype, device=device), log_b
    w = torch.as_tensor(a, dtype=dtype, device=device)
    if w.shape != (n,):
        raise InputError(f"marginal a must have this rank's {n} rows, got {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()) or bool((w <= 0).any()):
        raise InputError("marginal a must be positive and finite")
    return (w / comm.sum_float(w.sum())).log(), log_b


# ----------------------------------------------------------------------------------------------
# memory policy of mode="auto"
# ----------------------------------------------------------------------------------------------
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
    """Whether dense KLOT (3 n×m matrices of ``itemsize`` bytes) fits in 60% of free memory.

    Reads the free memory of ``device`` now (not cached; see :func:`auto_mode`).
    """
    need = 3 * n * m * itemsize
    return need <= 0.6 * _available_bytes(torch.device(device))


@functools.lru_cache(maxsize=256)
def auto_mode(n: int, m: int, device: str, itemsize: int) -> str:
    """``"dense"`` if :func:`dense_fits` else ``"tiled"``, decided once per arguments (cached).

    ``device`` is a string such as ``"cpu"`` or ``"cuda:0"`` (``str(tensor.device)``);
    ``auto_mode.cache_clear()`` forgets the decisions (e.g. after freeing memory).
    """
    return "dense" if dense_fits(n, m, device, itemsize) else "tiled"
