"""What the benchmark datasets share: where caches live, nested pair draws, split accessors.

A benchmark dataset holds both embeddings of every item (``x``: the image side, ``y``: the text
side; row i of one and row i of the other describe the same item) and fixed index arrays for
its splits. Training pairs are drawn from a pair pool as the first ``n`` entries of a
``seed``-permutation of it (:func:`nested_draw`), so for one seed a smaller draw is a subset of
a larger one and a supervision curve compares like with like.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sotalign.errors import InputError

__all__ = ["SplitRows", "cache_root", "nested_draw"]


def cache_root() -> Path:
    """Root of the project's caches: ``$SOTALIGN_CACHE`` or ``~/.cache/sotalign``."""
    env = os.environ.get("SOTALIGN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sotalign"


def nested_draw(pool_size: int, n: int, seed: int, what: str) -> np.ndarray:
    """Positions ``0..pool_size-1`` of ``n`` training pairs: the first ``n`` of a
    ``seed``-permutation, so draws of one seed are nested across ``n``. ``what`` names the pool
    in the error raised when ``n`` is outside ``1..pool_size``."""
    if not 1 <= n <= pool_size:
        raise InputError(f"n_pairs={n} is outside 1..{pool_size} (the {what})")
    return np.random.default_rng(seed).permutation(pool_size)[:n]


class SplitRows:
    """Row accessors of a dataset with embeddings ``x``, ``y`` (float16 memory maps, typically)
    and index arrays ``test_idx``, ``val_idx``, ``pair_pool_idx``; every accessor returns
    float32 copies."""

    x: np.ndarray
    y: np.ndarray
    test_idx: np.ndarray
    val_idx: np.ndarray
    pair_pool_idx: np.ndarray

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @staticmethod
    def rows(arr: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """``arr[idx]`` as a float32 array."""
        return np.asarray(arr[idx], dtype=np.float32)

    def test(self) -> tuple[np.ndarray, np.ndarray]:
        """Test pairs ``(x rows, y rows)``, row k of one matching row k of the other."""
        return self.rows(self.x, self.test_idx), self.rows(self.y, self.test_idx)

    def validation(self) -> tuple[np.ndarray, np.ndarray]:
        """Validation pairs (never drawn as training pairs)."""
        return self.rows(self.x, self.val_idx), self.rows(self.y, self.val_idx)

    def draw_indices(self, n_pairs: int, seed: int, what: str) -> np.ndarray:
        """Item indices of ``n_pairs`` training pairs from the pair pool (:func:`nested_draw`)."""
        pool = self.pair_pool_idx
        return pool[nested_draw(len(pool), n_pairs, seed, what)]
