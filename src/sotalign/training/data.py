"""The data pipeline of training: pools of cached embeddings and the batch sampler.

Pools may be numpy arrays, memory-mapped ``.npy`` files (10M × 1024 float16 is fine: only the
rows of a batch are ever read) or torch tensors. Each step draws (Algorithm 1):

* a paired batch: all pairs when there are at most ``batch_pairs`` of them, else a random subset;
* an unpaired image batch and an unpaired text batch of the same size
  ``m = min(batch_unpaired, n_x, n_y)``, drawn independently without replacement.

The sampler's state is a JSON-able dict, so a checkpoint can resume the exact same stream.

Under ``torchrun`` (a :class:`~sotalign.parallel.Comm` over W ranks) every rank draws the same
global batch from the same seeded generator and reads only its block of rows
(:func:`~sotalign.parallel.row_block`) of the paired batch and of each unpaired batch: the
global batch does not depend on W.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..parallel import LOCAL, Comm, row_block


class EmbeddingPool:
    """Rows of a 2-D array gathered as float32 tensors; never loads a memmap whole."""

    def __init__(self, array: Any) -> None:
        if isinstance(array, Tensor):
            array = array.detach().cpu().numpy()
        self.array = array
        _advise_random(array)

    def __len__(self) -> int:
        return int(self.array.shape[0])

    @property
    def dim(self) -> int:
        return int(self.array.shape[1])

    def gather(self, idx: np.ndarray | None, device: Any = "cpu") -> Tensor:
        """Rows ``idx`` (all rows if ``None``) as a float32 tensor on ``device``."""
        rows = np.asarray(self.array if idx is None else self.array[idx], dtype=np.float32)
        if not rows.flags.writeable:  # a read-only memmap read whole: torch wants its own copy
            rows = rows.copy()
        return torch.from_numpy(rows).to(device)


def _advise_random(array: Any) -> None:
    """Tell the kernel a memory-mapped pool is read at random rows (no read-ahead).

    Batches gather scattered rows; the default read-ahead would pull ~128 KiB around every row
    and fill the page cache with rows never used.
    """
    import mmap

    mm = getattr(array, "_mmap", None)
    if mm is None and isinstance(getattr(array, "base", None), mmap.mmap):
        mm = array.base
    if isinstance(mm, mmap.mmap) and hasattr(mm, "madvise") and hasattr(mmap, "MADV_RANDOM"):
        with contextlib.suppress(OSError, ValueError):
            mm.madvise(mmap.MADV_RANDOM)


@dataclass
class TrainData:
    """Paired pools (row i of ``images`` ↔ row i of ``texts``) and optional unpaired pools."""

    images: EmbeddingPool
    texts: EmbeddingPool
    unpaired_images: EmbeddingPool | None = None
    unpaired_texts: EmbeddingPool | None = None

    @classmethod
    def from_arrays(cls, A: Any, B: Any, X: Any = None, Y: Any = None) -> TrainData:
        return cls(
            EmbeddingPool(A),
            EmbeddingPool(B),
            None if X is None else EmbeddingPool(X),
            None if Y is None else EmbeddingPool(Y),
        )

    @property
    def n_pairs(self) -> int:
        return len(self.images)

    @property
    def has_unpaired(self) -> bool:
        return self.unpaired_images is not None and self.unpaired_texts is not None


@dataclass
class Batch:
    """One training step's data: paired ``a``/``b`` and unpaired ``x``/``y`` (or ``None``).

    Sharded (``comm`` over several ranks): this rank's rows of each; ``pair_offset`` is the
    position of its first pair in the global paired batch (the SigLIP positives' diagonal).
    """

    a: Tensor
    b: Tensor
    x: Tensor | None = None
    y: Tensor | None = None
    idx_pairs: np.ndarray | None = None
    idx_x: np.ndarray | None = None
    idx_y: np.ndarray | None = None
    comm: Comm = LOCAL
    pair_offset: int = 0


class BatchSampler:
    """Draws :class:`Batch` objects from :class:`TrainData` with a seeded numpy generator."""

    def __init__(
        self,
        data: TrainData,
        batch_pairs: int,
        batch_unpaired: int,
        seed: int,
        device: Any,
        comm: Comm = LOCAL,
    ) -> None:
        self.data = data
        self.comm = comm
        self.batch_pairs = int(batch_pairs)
        self.batch_unpaired = int(batch_unpaired)
        self.device = device
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self._all_pairs: tuple[Tensor, Tensor] | None = None
        self._pair_offset = 0

    @property
    def unpaired_size(self) -> int:
        d = self.data
        if not d.has_unpaired or self.batch_unpaired <= 0:
            return 0
        assert d.unpaired_images is not None and d.unpaired_texts is not None
        return min(self.batch_unpaired, len(d.unpaired_images), len(d.unpaired_texts))

    def _draw(self, n: int, m: int) -> np.ndarray:
        return np.sort(self.rng.choice(n, size=m, replace=False))

    def _mine(self, idx: np.ndarray) -> tuple[np.ndarray, int]:
        """This rank's block of the global rows ``idx`` and its offset (all of it for one)."""
        if not self.comm.sharded:
            return idx, 0
        start, stop = row_block(len(idx), self.comm.world_size, self.comm.rank)
        return idx[start:stop], start

    def next(self) -> Batch:
        d = self.data
        c = self.comm
        if d.n_pairs <= self.batch_pairs:
            idx_p = None
            if self._all_pairs is None:  # all pairs every step: gather them once
                mine, self._pair_offset = self._mine(np.arange(d.n_pairs))
                rows = None if not c.sharded else mine
                a_all = d.images.gather(rows, self.device)
                self._all_pairs = (a_all, d.texts.gather(rows, self.device))
            a, b = self._all_pairs
            offset = self._pair_offset
        else:
            idx_p = self._draw(d.n_pairs, self.batch_pairs)
            mine, offset = self._mine(idx_p)
            a, b = d.images.gather(mine, self.device), d.texts.gather(mine, self.device)
        m = self.unpaired_size
        if m == 0:
            return Batch(a, b, idx_pairs=idx_p, comm=c, pair_offset=offset)
        assert d.unpaired_images is not None and d.unpaired_texts is not None
        ix = self._draw(len(d.unpaired_images), m)
        iy = self._draw(len(d.unpaired_texts), m)
        x = d.unpaired_images.gather(self._mine(ix)[0], self.device)
        y = d.unpaired_texts.gather(self._mine(iy)[0], self.device)
        return Batch(a, b, x, y, idx_p, ix, iy, comm=c, pair_offset=offset)

    def state(self) -> dict[str, Any]:
        return self.rng.bit_generator.state

    def set_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state
