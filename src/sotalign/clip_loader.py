"""A sotalign model behind CLIP_benchmark's model-loader contract.

CLIP_benchmark (``clip_benchmark.metrics.zeroshot_classification.evaluate``,
``…zeroshot_retrieval.evaluate``) drives a model through three objects that its loaders return:

- ``transform(pil_image) -> tensor`` — applied by its data loader to every image;
- ``tokenizer(list_of_str) -> tensor`` — moved to the device and handed to ``encode_text``;
- ``model.encode_image(pixels)``, ``model.encode_text(tokens)`` — embeddings it normalises and
  compares by cosine.

:func:`load_clip_benchmark` returns them for a model folder that records its encoders: the
transform is the image encoder's own preprocessing; since the text encoder tokenizes inside
its own pipeline, the "tokens" are row numbers into the texts this tokenizer has seen, and
``encode_text`` encodes those texts. Embeddings are the aligned ones of
:class:`sotalign.AlignedModel` — ``normalize(g(f_img(x)))``, ``normalize(h(f_txt(t)))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .aligned import AlignedModel
from .encoders import ImageEncoder

__all__ = ["ClipBenchmarkModel", "TextRegistry", "load_clip_benchmark"]


class TextRegistry:
    """CLIP_benchmark's ``tokenizer``: each text becomes its row number in this registry."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._ids: dict[str, int] = {}

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        items = [texts] if isinstance(texts, str) else list(texts)
        ids = []
        for t in items:
            if t not in self._ids:
                self._ids[t] = len(self.texts)
                self.texts.append(t)
            ids.append(self._ids[t])
        return torch.tensor(ids, dtype=torch.long)


class ClipBenchmarkModel(torch.nn.Module):
    """``encode_image(pixels)`` / ``encode_text(token_ids)`` on an :class:`AlignedModel`."""

    def __init__(self, aligned: AlignedModel, registry: TextRegistry) -> None:
        super().__init__()
        self.aligned = aligned
        self.registry = registry

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        encoder = self.aligned.encoder("image")
        assert isinstance(encoder, ImageEncoder)
        feats = encoder.forward(pixels)
        z = self.aligned.model.encode_images(feats)
        return torch.as_tensor(z, dtype=torch.float32).to(pixels.device)

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        texts = [self.registry.texts[int(i)] for i in token_ids.reshape(-1).cpu()]
        z = self.aligned.encode_text(texts)
        return torch.as_tensor(z, dtype=torch.float32).to(token_ids.device)


def load_clip_benchmark(
    model_name: str | Path, pretrained: str | None = None, device: Any = "cpu", **_: Any
) -> tuple[ClipBenchmarkModel, Any, TextRegistry]:
    """``(model, transform, tokenizer)`` of the sotalign model folder ``model_name`` (the
    signature of CLIP_benchmark's loaders; ``pretrained`` and other options are unused)."""
    aligned = AlignedModel.load(model_name, device=str(device), progress=False)
    encoder = aligned.encoder("image")
    if not isinstance(encoder, ImageEncoder):  # pragma: no cover - every image spec is one
        raise TypeError(f"{encoder!r} is not an image encoder")
    registry = TextRegistry()

    def transform(image: Any) -> torch.Tensor:
        return encoder.preprocess(image.convert("RGB"))

    return ClipBenchmarkModel(aligned, registry), transform, registry
