"""Synthetic two-view data with a known shared latent (for tests and scale benchmarks).

A latent ``z ~ N(0, I_k)`` is seen through two different random non-linear maps with noise:

    x = tanh(z M₁ˣ) M₂ˣ + σ ξ,      y = tanh(z M₁ʸ) M₂ʸ + σ ξ'

Rows drawn with the same ``z`` are true pairs. Unpaired pools are drawn from independent
latents, so no hidden pairs exist between them. This is not a substitute for real data; it
makes pools of any size with a known ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class TwoView:
    """A fixed pair of random views of a ``latent``-dimensional Gaussian latent."""

    d_x: int = 64
    d_y: int = 48
    latent: int = 16
    noise: float = 0.3
    seed: int = 0

    def __post_init__(self) -> None:
        r = np.random.default_rng(self.seed)
        self._mx1 = r.normal(size=(self.latent, self.d_x)) / np.sqrt(self.latent) * 1.5
        self._mx2 = r.normal(size=(self.d_x, self.d_x)) / np.sqrt(self.d_x)
        self._my1 = r.normal(size=(self.latent, self.d_y)) / np.sqrt(self.latent) * 1.5
        self._my2 = r.normal(size=(self.d_y, self.d_y)) / np.sqrt(self.d_y)

    def view_x(self, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = np.tanh(z @ self._mx1) @ self._mx2
        return (x + self.noise * rng.normal(size=x.shape)).astype(np.float32)

    def view_y(self, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        y = np.tanh(z @ self._my1) @ self._my2
        return (y + self.noise * rng.normal(size=y.shape)).astype(np.float32)

    def pairs(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` true pairs (row i of each output shares a latent)."""
        rng = np.random.default_rng(seed)
        z = rng.normal(size=(n, self.latent))
        return self.view_x(z, rng), self.view_y(z, rng)

    def unpaired(self, n_x: int, n_y: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Independent unpaired pools of ``n_x`` images and ``n_y`` texts."""
        rng = np.random.default_rng(seed)
        X = self.view_x(rng.normal(size=(n_x, self.latent)), rng)
        Y = self.view_y(rng.normal(size=(n_y, self.latent)), rng)
        return X, Y

    def write_pool(
        self, path: str | Path, n: int, view: str, seed: int, chunk: int = 65536
    ) -> np.memmap:
        """Write an unpaired pool of ``n`` rows as a float16 ``.npy`` memmap, chunk by chunk."""
        rng = np.random.default_rng(seed)
        d = self.d_x if view == "x" else self.d_y
        out = np.lib.format.open_memmap(Path(path), mode="w+", dtype=np.float16, shape=(n, d))
        fn = self.view_x if view == "x" else self.view_y
        for s in range(0, n, chunk):
            m = min(chunk, n - s)
            out[s : s + m] = fn(rng.normal(size=(m, self.latent)), rng)
        out.flush()
        return out
