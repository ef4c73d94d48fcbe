"""The encoder protocol: :class:`Encoder`, :class:`ImageEncoder`, :class:`TextEncoder`.

Also the helpers every encoder uses: importing an optional dependency with an install hint,
and resolving a ``--device`` string.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sotalign.errors import ConfigError, InputError

from .files import package_version
from .preprocess import load_image


def _import(module: str, extra: str) -> Any:
    """Import an optional dependency or raise a ConfigError saying what to install."""
    try:
        return importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken install (e.g. torchvision vs torch)
        raise ConfigError(
            f"the encoder needs the Python package '{module}', which cannot be imported"
            f" ({type(exc).__name__}: {exc}); install it with: pip install {extra}"
        ) from exc


def resolve_device(device: str | None = "auto") -> Any:
    """``"auto"`` → CUDA if available, else CPU; any other string is passed to torch."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(
            f"--device {device!r} is not a torch device (use auto, cpu, cuda)"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device!r}: CUDA is not available here; use --device cpu")
    return dev


class Encoder(ABC):
    """A frozen encoder: ``encode(inputs) -> float32 array (len(inputs) × dim)``."""

    modality: ClassVar[str]
    spec: str
    dim: int
    device: Any
    default_batch_size: ClassVar[int] = 32

    @abstractmethod
    def encode(self, inputs: Sequence[Any], batch_size: int | None = None) -> np.ndarray:
        """Embed ``inputs``; rows follow the input order."""

    def info(self) -> dict[str, Any]:
        """JSON-able description: spec, modality, dimension and library versions."""
        return {
            "spec": self.spec,
            "modality": self.modality,
            "dim": self.dim,
            "class": type(self).__name__,
            "versions": {k: v for k, v in self._versions().items() if v is not None},
            "weights": [str(p) for p in self.weight_files()],
        }

    def _versions(self) -> dict[str, str | None]:
        return {"torch": package_version("torch")}

    def weight_files(self) -> list[Path]:
        """Local files holding the weights (for manifests and checksums)."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(spec={self.spec!r}, dim={self.dim})"


class ImageEncoder(Encoder):
    """An image encoder split into per-image ``preprocess`` and batched ``forward``.

    The split lets a pipeline decode and preprocess images in worker threads while the model
    runs (see :mod:`sotalign.embed`).
    """

    modality: ClassVar[str] = "image"

    @abstractmethod
    def preprocess(self, image: Any) -> Any:
        """RGB PIL image → float32 tensor (C × H × W) ready for :meth:`forward`."""

    @abstractmethod
    def _forward(self, pixels: Any) -> Any:
        """Batch tensor (B × C × H × W) on the device → features (B × dim)."""

    def forward(self, pixels: Any) -> np.ndarray:
        """Features of a preprocessed batch as a float32 array."""
        import torch

        with torch.inference_mode():
            feats = self._forward(pixels.to(self.device))
        return feats.float().cpu().numpy()

    def encode(self, inputs: Sequence[Any], batch_size: int | None = None) -> np.ndarray:
        """Embed images given as paths, bytes or PIL images (decode errors raise InputError)."""
        import torch

        bs = batch_size or self.default_batch_size
        out = [np.zeros((0, self.dim), np.float32)]
        for i in range(0, len(inputs), bs):
            batch = [self.preprocess(load_image(x)) for x in inputs[i : i + bs]]
            out.append(self.forward(torch.stack(batch)))
        return np.concatenate(out)


class TextEncoder(Encoder):
    """A text encoder; ``encode(list[str])``."""

    modality: ClassVar[str] = "text"
    default_batch_size: ClassVar[int] = 128

    def encode(self, inputs: Sequence[Any], batch_size: int | None = None) -> np.ndarray:
        bad = [i for i, t in enumerate(inputs) if not isinstance(t, str)]
        if bad:
            raise InputError(
                f"text input {bad[0]} is a {type(inputs[bad[0]]).__name__}, not a string"
            )
        bs = batch_size or self.default_batch_size
        out = [np.zeros((0, self.dim), np.float32)]
        for i in range(0, len(inputs), bs):
            out.append(self._encode_batch(list(inputs[i : i + bs])))
        return np.concatenate(out)

    @abstractmethod
    def _encode_batch(self, texts: list[str]) -> np.ndarray: ...
