"""A fitted model that takes raw images and texts: :class:`AlignedModel`.

A :class:`~sotalign.SOTAlign` model maps *embeddings* into the shared space. Its folder also
records the frozen encoders the embeddings came from (``config.json`` → ``"encoders"``,
pinned by the manifest), so :class:`AlignedModel` can go from a picture or a sentence to the
shared space, as a CLIP model does::

    z_img = normalize(g(f_img(image)))      z_txt = normalize(h(f_txt(text)))

with ``f_img``, ``f_txt`` the recorded encoders (:mod:`sotalign.encoders`, loaded lazily, once,
from local files) and ``g``, ``h`` the fitted aligner. On top of the two encoders:

- :meth:`AlignedModel.classify` — zero-shot classification: the prototype of class ``c`` is
  the renormalised mean of the aligned embeddings of its prompts (``template.format(label)``
  for every template, :func:`sotalign.eval.class_prototypes`); an image gets the classes of
  highest cosine ``⟨z_img, p_c⟩``.
- :meth:`AlignedModel.search` — the ``k`` gallery items of highest cosine with a query (a text
  against images, an image against texts, or any query against precomputed aligned rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .encoders import IMAGE_EXTENSIONS, Encoder, load_encoder
from .errors import ConfigError, InputError
from .estimator import SOTAlign
from .eval import class_prototypes

__all__ = ["DEFAULT_TEMPLATES", "AlignedModel", "Classification", "SearchResult"]

DEFAULT_TEMPLATES: tuple[str, ...] = ("{}", "a photo of {}.", "an icon of {}.")
"""Prompts of a class when none are given (``{}`` is replaced by the label)."""

PROGRESS_MIN = 512
"""Inputs from which encoding shows a progress bar (when ``progress`` is on)."""


@dataclass(frozen=True)
class Classification:
    """Zero-shot predictions: ``indices[i]`` the top-k classes of image ``i`` (best first),
    ``scores[i]`` their cosines, ``labels`` the class names."""

    indices: np.ndarray
    scores: np.ndarray
    labels: list[str]

    @property
    def predicted(self) -> list[str]:
        """The top-1 class name of every image."""
        return [self.labels[int(i)] for i in self.indices[:, 0]]

    def accuracy(self, truth: Sequence[str | int], k: int = 1) -> float:
        """Top-``k`` accuracy (percent) against true labels (names or class indices)."""
        if len(truth) != len(self.indices):
            raise InputError(f"{len(truth)} true labels for {len(self.indices)} images")
        if k > self.indices.shape[1]:
            raise InputError(f"top-{k} accuracy needs top_k >= {k} predictions")
        where = {name: i for i, name in enumerate(self.labels)}
        idx = []
        for t in truth:
            if isinstance(t, str):
                if t not in where:
                    raise InputError(
                        f"true label {t!r} is not one of the {len(self.labels)} labels"
                    )
                idx.append(where[t])
            else:
                idx.append(int(t))
        hits = (self.indices[:, :k] == np.asarray(idx)[:, None]).any(1)
        return float(hits.mean() * 100) if len(hits) else 0.0


@dataclass(frozen=True)
class SearchResult:
    """The ``k`` best gallery rows of each query: ``indices[q]``, ``scores[q]`` (cosine)."""

    indices: np.ndarray
    scores: np.ndarray


class AlignedModel:
    """A fitted model plus its frozen encoders: raw images and texts in, one space out.

    Parameters
    ----------
    model:
        A fitted :class:`~sotalign.SOTAlign`.
    image_encoder, text_encoder:
        Encoder specs (:mod:`sotalign.encoders`); default: the ones recorded with the model.
    device:
        Where the encoders run (``auto``: CUDA when available).
    batch_size:
        Inputs per encoder batch (default: the encoder's own).
    progress:
        Show a progress bar on long inputs.
    """

    def __init__(
        self,
        model: SOTAlign,
        *,
        image_encoder: str | None = None,
        text_encoder: str | None = None,
        device: str = "auto",
        batch_size: int | None = None,
        progress: bool = True,
    ) -> None:
        model._check_fitted()
        self.model = model
        recorded = getattr(model, "encoders_", None) or {}
        self.specs = {
            "image": image_encoder or _spec(recorded.get("image")),
            "text": text_encoder or _spec(recorded.get("text")),
        }
        self.device = device
        self.batch_size = batch_size
        self.progress = progress
        self._encoders: dict[str, Encoder] = {}

    @classmethod
    def load(cls, folder: str | Path, **kwargs: Any) -> AlignedModel:
        """Load a model folder written by ``sotalign fit`` / :meth:`SOTAlign.save` (checked
        as :meth:`SOTAlign.load` checks it); ``kwargs`` as for the constructor."""
        return cls(SOTAlign.load(folder), **kwargs)

    # -- encoders ---------------------------------------------------------------------------
    def encoder(self, modality: str) -> Encoder:
        """The frozen ``"image"`` or ``"text"`` encoder, loaded on first use and kept."""
        if modality not in self._encoders:
            spec = self.specs[modality]
            if spec is None:
                raise ConfigError(
                    f"this model does not record its {modality} encoder: fit it with"
                    f" --{modality}-encoder SPEC (or on files made by `sotalign embed`, whose"
                    f" .json sidecar fit reads), or pass {modality}_encoder=SPEC"
                )
            enc = load_encoder(spec, modality, device=self.device)
            want = self.model.d_x_ if modality == "image" else self.model.d_y_
            if enc.dim != want:
                raise ConfigError(
                    f"{modality} encoder {spec!r} gives {enc.dim}-d features but the model was"
                    f" fitted on {want}-d {modality} embeddings; use the encoder it was fitted on"
                )
            self._encoders[modality] = enc
        return self._encoders[modality]

    def _features(self, modality: str, inputs: Sequence[Any]) -> np.ndarray:
        enc = self.encoder(modality)
        bs = self.batch_size or enc.default_batch_size
        if len(inputs) < PROGRESS_MIN or not self.progress:
            return enc.encode(inputs, batch_size=bs)
        out = []
        with tqdm(total=len(inputs), desc=f"encode {modality}s", unit=modality) as bar:
            for i in range(0, len(inputs), bs):
                out.append(enc.encode(inputs[i : i + bs], batch_size=bs))
                bar.update(len(out[-1]))
        return np.concatenate(out)

    # -- the field's duck types ---------------------------------------------------------------
    def encode_image(self, images: Any) -> np.ndarray:
        """Aligned, L2-normalised embeddings (``n × d``, float32) of images given as paths,
        bytes or PIL images (one, or a sequence)."""
        items = _as_list(images, (str, Path, bytes))
        feats = self._features("image", items)
        return np.asarray(self.model.encode_images(feats), np.float32)

    def encode_text(self, texts: str | Sequence[str]) -> np.ndarray:
        """Aligned, L2-normalised embeddings (``n × d``, float32) of strings (one, or a list)."""
        items = _as_list(texts, (str,))
        feats = self._features("text", items)
        return np.asarray(self.model.encode_texts(feats), np.float32)

    # -- what users do with it ----------------------------------------------------------------
    def class_prototypes(
        self, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES
    ) -> np.ndarray:
        """One aligned prototype per label (``n_labels × d``), see the module docstring."""
        labels, templates = list(labels), list(templates)
        if not labels:
            raise InputError("classify needs at least one label")
        if not templates or any("{}" not in t for t in templates):
            raise InputError("every template must contain '{}' where the label goes")
        prompts = [t.format(label) for label in labels for t in templates]
        Z = self.encode_text(prompts)
        return class_prototypes(Z, len(templates)).numpy()

    def classify(
        self,
        images: Any,
        labels: Sequence[str],
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        top_k: int = 1,
    ) -> Classification:
        """Zero-shot classification of ``images`` among ``labels`` (prompts from
        ``templates``); the ``top_k`` classes of each image, best first."""
        protos = self.class_prototypes(labels, templates)
        Z = images if _is_aligned(images) else self.encode_image(images)
        top_k = max(1, min(int(top_k), len(protos)))
        idx, scores = _top_k(np.asarray(Z, np.float32), protos, top_k)
        return Classification(idx, scores, list(labels))

    def search(
        self, query: Any, gallery: Any, k: int = 10, gallery_kind: str = "auto"
    ) -> SearchResult:
        """The ``k`` gallery items of highest cosine with each query.

        ``query``: a string (or list of strings) → text; anything else (a path, a PIL image, a
        list of them) → image; or already aligned rows (a 2-D array). ``gallery``: aligned rows
        (a 2-D array, e.g. a memory-mapped ``sotalign encode`` output), or raw items, encoded as
        ``gallery_kind`` (``image``/``text``; ``auto``: texts if they are strings, else images).
        """
        Q = query if _is_aligned(query) else self._encode_any(query, "auto")
        G = gallery if _is_aligned(gallery) else self._encode_any(gallery, gallery_kind)
        k = max(1, min(int(k), len(G)))
        idx, scores = _top_k(np.asarray(Q, np.float32), G, k)
        return SearchResult(idx, scores)

    def _encode_any(self, items: Any, kind: str) -> np.ndarray:
        if kind not in ("auto", "image", "text"):
            raise ConfigError(f"gallery_kind must be auto, image or text, not {kind!r}")
        if kind == "auto":
            first = items if isinstance(items, str) else next(iter(items), None)
            kind = "text" if isinstance(first, str) and not _looks_like_image(first) else "image"
        return self.encode_text(items) if kind == "text" else self.encode_image(items)


def _spec(info: Any) -> str | None:
    if isinstance(info, dict):
        return info.get("spec")
    return info if isinstance(info, str) else None


def _as_list(x: Any, scalar: tuple[type, ...]) -> list[Any]:
    if isinstance(x, scalar) or not isinstance(x, Sequence | np.ndarray):
        return [x]
    return list(x)


def _is_aligned(x: Any) -> bool:
    return isinstance(x, np.ndarray | torch.Tensor) and x.ndim == 2 and x.dtype != object


def _looks_like_image(text: str) -> bool:
    return Path(text).suffix.lower() in IMAGE_EXTENSIONS and Path(text).is_file()


def _top_k(Q: np.ndarray, G: Any, k: int, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows of ``G`` by dot product with each row of ``Q`` (rows are unit norm),
    streaming ``G`` in chunks so a memory-mapped gallery is never loaded whole."""
    q = torch.as_tensor(np.ascontiguousarray(Q, np.float32))
    best_s = torch.full((q.shape[0], 0), -np.inf)
    best_i = torch.zeros((q.shape[0], 0), dtype=torch.long)
    for lo in range(0, len(G), chunk):
        g = torch.as_tensor(np.ascontiguousarray(G[lo : lo + chunk], np.float32))
        s = q @ g.T
        s_all = torch.cat([best_s, s], 1)
        i_all = torch.cat([best_i, torch.arange(lo, lo + len(g)).expand(q.shape[0], -1)], 1)
        top = torch.topk(s_all, min(k, s_all.shape[1]), dim=1)
        best_s, best_i = top.values, torch.gather(i_all, 1, top.indices)
    return best_i.numpy(), best_s.numpy()


# the duck types of the field (open_clip / CLIP_benchmark), plural spellings as SOTAlign's
AlignedModel.encode_images = AlignedModel.encode_image  # type: ignore[attr-defined]
AlignedModel.encode_texts = AlignedModel.encode_text  # type: ignore[attr-defined]
