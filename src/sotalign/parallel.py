"""Row sharding over ``torch.distributed``: the collectives a sharded solver and trainer need.

A batch of ``n`` rows (images) against ``m`` columns (texts) is split by rows over the ``W``
processes of a group: rank ``r`` holds the contiguous block ``I_r`` of
:func:`row_block` (sizes differ by at most one) and every column. What crosses ranks is
always a length-``m`` vector or a scalar (Sinkhorn's column update, marginal errors), or the
column-side embeddings (gathered once per step, :meth:`Comm.gather_rows`).

:class:`Comm` wraps a process group; its reductions are no-ops for a single process
(:data:`LOCAL`), so the sharded and the single-process code paths are the same code. Every
collective must be reached by every rank in the same order: decisions that guard a
collective are taken on reduced (hence identical) values only.

Launch: ``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`init_from_env` joins that group (gloo on CPU, NCCL on CUDA) with a
timeout, so that a rank whose peers died fails with a clear message instead of waiting forever.
"""

from __future__ import annotations

import datetime
import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from .errors import ConfigError, SotalignError

__all__ = [
    "LOCAL",
    "Comm",
    "DistributedError",
    "as_comm",
    "env_world_size",
    "init_from_env",
    "is_writer",
    "row_block",
    "shutdown",
]

DEFAULT_TIMEOUT_S = 600.0
"""Seconds a collective may wait for the other ranks (``SOTALIGN_DIST_TIMEOUT`` overrides)."""


class DistributedError(SotalignError):
    """A collective failed: another rank died, hung, or could not be reached."""


def row_block(n: int, world_size: int, rank: int) -> tuple[int, int]:
    """``(start, stop)`` of rank ``rank``'s rows when ``n`` rows are split over ``world_size``.

    Contiguous blocks; the first ``n mod W`` ranks get one row more (uneven splits allowed).
    """
    base, extra = divmod(int(n), int(world_size))
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


@dataclass(frozen=True)
class Comm:
    """The reductions of a row-sharded computation over a ``torch.distributed`` group.

    ``group=None`` with ``world_size=1`` is the single-process communicator :data:`LOCAL`
    (every reduction returns its input). Build a sharded one with :meth:`from_group`.
    """

    group: Any = None
    world_size: int = 1
    rank: int = 0

    @classmethod
    def from_group(cls, group: Any = None) -> Comm:
        """The communicator of ``group`` (``None``: the default group, if one is initialised).

        Without an initialised default group this is :data:`LOCAL`.
        """
        if group is None and not (dist.is_available() and dist.is_initialized()):
            return LOCAL
        world = dist.get_world_size(group)
        if world == 1:
            return LOCAL
        return cls(group=group, world_size=world, rank=dist.get_rank(group))

    @property
    def sharded(self) -> bool:
        """Whether there is more than one rank."""
        return self.world_size > 1

    @property
    def backend(self) -> str:
        """The group's back-end (``"gloo"``, ``"nccl"``), or ``"none"`` for one process."""
        return str(dist.get_backend(self.group)) if self.sharded else "none"

    def _reduce(self, t: Tensor, op: Any) -> Tensor:
        if self.sharded:
            try:
                dist.all_reduce(t, op=op, group=self.group)
            except (RuntimeError, ValueError) as exc:  # DistBackendError is a RuntimeError
                raise DistributedError(_lost(self, exc)) from exc
        return t

    def sum_(self, t: Tensor) -> Tensor:
        """All-reduce ``t`` in place by summation; returns it."""
        return self._reduce(t, dist.ReduceOp.SUM if self.sharded else None)

    def max_(self, t: Tensor) -> Tensor:
        """All-reduce ``t`` in place by maximum; returns it."""
        return self._reduce(t, dist.ReduceOp.MAX if self.sharded else None)

    def min_(self, t: Tensor) -> Tensor:
        """All-reduce ``t`` in place by minimum; returns it."""
        return self._reduce(t, dist.ReduceOp.MIN if self.sharded else None)

    def sum_float(self, t: Tensor) -> float:
        """The sum over ranks of a scalar tensor, as a float (identical on every rank)."""
        if not self.sharded:
            return float(t)
        return float(self.sum_(t.detach().reshape(1).clone())[0])

    def logsumexp_(self, t: Tensor, also_sum: Tensor | None = None) -> Tensor:
        """``log Σ_r exp(t_r)`` element-wise over ranks, in place (max, then sum of shifts).

        Stable: the global maximum ``M`` is all-reduced first and ``M + log Σ_r exp(t_r − M)``
        is formed; entries that are ``−inf`` on every rank stay ``−inf``. With ``also_sum`` (a
        scalar tensor), returns its sum over ranks, carried in the same all-reduce (one
        collective fewer per Sinkhorn iteration); else returns ``t``.
        """
        if not self.sharded:
            return t if also_sum is None else also_sum
        top = self.max_(t.clone())
        shift = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
        parts = torch.exp(t - shift)
        if also_sum is not None:
            parts = torch.cat([parts, also_sum.reshape(1).to(parts.dtype)])
        s = self.sum_(parts)
        if also_sum is not None:
            t.copy_(s[:-1].log_().add_(shift))
            return s[-1]
        return t.copy_(s.log_().add_(shift))

    def gather_rows(self, t: Tensor) -> Tensor:
        """All ranks' row blocks of ``t`` stacked in rank order (blocks may differ in size).

        Differentiable: the backward pass sums the incoming gradient over ranks and returns
        each rank its own block (every rank's loss depends on every gathered row), as
        open_clip's ``gather_features`` does for its contrastive loss. Without gradient when
        ``t`` does not require one.
        """
        if not self.sharded:
            return t
        if t.requires_grad and torch.is_grad_enabled():
            return _GatherRows.apply(self, t)
        return _gather(self, t.detach())[0]


LOCAL = Comm()
"""The single-process communicator: every reduction is the identity."""


def as_comm(group: object) -> Comm:
    """A :class:`Comm` from ``None`` (one process), a :class:`Comm`, or a process group."""
    if group is None:
        return LOCAL
    if isinstance(group, Comm):
        return group
    return Comm.from_group(group)


def _lost(comm: Comm, exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"rank {comm.rank} of {comm.world_size}: a collective operation failed ({first[:200]});"
        " another rank probably died or hung: see its output above"
    )


def _gather(comm: Comm, t: Tensor) -> tuple[Tensor, list[int]]:
    """Variable-size all-gather of row blocks: sizes first, then blocks padded to the largest."""
    try:
        size = torch.tensor([t.shape[0]], dtype=torch.int64, device=t.device)
        sizes = [torch.zeros_like(size) for _ in range(comm.world_size)]
        dist.all_gather(sizes, size, group=comm.group)
        counts = [int(s[0]) for s in sizes]
        top = max(counts)
        pad = t
        if t.shape[0] < top:
            pad = torch.cat([t, t.new_zeros((top - t.shape[0], *t.shape[1:]))])
        blocks = [torch.empty_like(pad) for _ in range(comm.world_size)]
        dist.all_gather(blocks, pad.contiguous(), group=comm.group)
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(_lost(comm, exc)) from exc
    return torch.cat([b[:c] for b, c in zip(blocks, counts, strict=True)]), counts


class _GatherRows(torch.autograd.Function):
    """All-gather of row blocks with gradient: backward = all-reduce(sum), keep own block."""

    @staticmethod
    def forward(ctx: Any, comm: Comm, t: Tensor) -> Tensor:  # type: ignore[override]
        out, counts = _gather(comm, t.detach())
        ctx.comm = comm
        ctx.start = sum(counts[: comm.rank])
        ctx.count = counts[comm.rank]
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor]:  # type: ignore[override]
        total = ctx.comm.sum_(grad.contiguous().clone())
        return None, total[ctx.start : ctx.start + ctx.count]


# ----------------------------------------------------------------------------------------------
# launching
# ----------------------------------------------------------------------------------------------
def env_world_size() -> int:
    """``WORLD_SIZE`` as set by ``torchrun`` (1 when not launched by it)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError as exc:
        raise ConfigError(
            f"WORLD_SIZE must be an integer, got {os.environ['WORLD_SIZE']!r}"
        ) from exc


def _timeout() -> datetime.timedelta:
    raw = os.environ.get("SOTALIGN_DIST_TIMEOUT", str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(
            f"SOTALIGN_DIST_TIMEOUT must be a positive number of seconds, got {raw!r}"
        )
    return datetime.timedelta(seconds=seconds)


def init_from_env(device: str = "auto") -> Comm:
    """Join the process group that ``torchrun`` describes in the environment.

    Without ``WORLD_SIZE > 1`` nothing is initialised and :data:`LOCAL` is returned. The
    back-end is NCCL when ``device`` resolves to CUDA, else gloo; collectives time out after
    ``SOTALIGN_DIST_TIMEOUT`` seconds (600 by default). On CUDA each process uses the GPU
    ``LOCAL_RANK``. Calling it again returns the group already joined.
    """
    if env_world_size() == 1:
        return LOCAL
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run without torchrun")
    if dist.is_initialized():
        return Comm.from_group()
    for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise ConfigError(
                f"WORLD_SIZE is set but {var} is not: launch with torchrun"
                " (torchrun --nproc-per-node=N -m sotalign fit ...)"
            )
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        dist.init_process_group(backend=backend, timeout=_timeout())
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(f"cannot join the process group ({backend}): {exc}") from exc
    return Comm.from_group()


def is_writer() -> bool:
    """Whether this process writes shared files: rank 0 of the default group, or the only one."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def shutdown() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
