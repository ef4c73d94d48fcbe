"""Encoder spec strings (``efficientnet-lite0``, ``hf:…``, ``st:…`` …): the registry and loaders.

See :mod:`sotalign.encoders` for the specs understood.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sotalign.errors import ConfigError, closest

from .base import Encoder, ImageEncoder, TextEncoder
from .images import (
    _EFFICIENTNET_LITE_SIZES,
    EfficientNetLiteEncoder,
    HFImageEncoder,
    OpenClipImageEncoder,
    TimmImageEncoder,
)
from .texts import HFTextEncoder, SentenceTransformerEncoder

Factory = Callable[..., Encoder]
_REGISTRY: dict[tuple[str, str], Factory] = {}


def register_encoder(prefix: str, modality: str, factory: Factory) -> None:
    """Register ``factory(rest_of_spec, device=..., **options)`` under ``prefix:`` for a modality.

    ``prefix`` without a colon registers an exact name (like ``efficientnet-lite0``) called as
    ``factory("", device=...)``.
    """
    if modality not in ("image", "text"):
        raise ConfigError(f"modality must be 'image' or 'text', not {modality!r}")
    _REGISTRY[(modality, prefix)] = factory


for _v in _EFFICIENTNET_LITE_SIZES:
    register_encoder(
        f"efficientnet-lite{_v}",
        "image",
        lambda _rest, _v=_v, **kw: EfficientNetLiteEncoder(_v, **kw),
    )
register_encoder("hf:", "image", HFImageEncoder)
register_encoder("timm:", "image", TimmImageEncoder)
register_encoder("open_clip:", "image", OpenClipImageEncoder)
register_encoder("st:", "text", SentenceTransformerEncoder)
register_encoder("hf:", "text", HFTextEncoder)
for _n in ("all-MiniLM-L6-v2", "minilm"):
    register_encoder(_n, "text", lambda _rest, _n=_n, **kw: SentenceTransformerEncoder(_n, **kw))


def available_encoders(modality: str) -> list[str]:
    """Spec names and prefixes registered for ``modality``."""
    return sorted(p for (m, p) in _REGISTRY if m == modality)


def load_encoder(spec: str, modality: str, device: str | None = "auto", **options: Any) -> Encoder:
    """Build the encoder named by ``spec`` (see the module docstring) for ``"image"``/``"text"``.

    ``options`` go to the encoder's constructor (e.g. ``pooling="cls"`` for ``hf:`` images).
    Unknown names raise :class:`ConfigError` listing the valid ones.
    """
    if modality not in ("image", "text"):
        raise ConfigError(f"modality must be 'image' or 'text', not {modality!r}")
    spec = spec.strip()
    names = available_encoders(modality)
    exact = {p.lower(): p for p in names if not p.endswith(":")}
    if spec.lower() in exact:
        return _REGISTRY[(modality, exact[spec.lower()])]("", device=device, **options)
    prefix, sep, rest = spec.partition(":")
    key = prefix.lower() + ":"
    if sep and (modality, key) in _REGISTRY:
        if not rest:
            raise ConfigError(f"encoder spec {spec!r} names no model after '{key}'")
        return _REGISTRY[(modality, key)](rest, device=device, **options)
    other = "text" if modality == "image" else "image"
    if spec.lower() in {p.lower() for p in available_encoders(other)} or (
        sep and (other, key) in _REGISTRY
    ):
        raise ConfigError(
            f"--encoder {spec!r} is a{'n' if other == 'image' else ''} {other} "
            f"encoder; {modality} encoders: {', '.join(names)}"
        )
    raise ConfigError(
        f"unknown {modality} encoder {spec!r}; use one of {', '.join(names)}" + closest(spec, names)
    )


def load_image_encoder(spec: str, device: str | None = "auto", **options: Any) -> ImageEncoder:
    """:func:`load_encoder` for images."""
    enc = load_encoder(spec, "image", device=device, **options)
    assert isinstance(enc, ImageEncoder)
    return enc


def load_text_encoder(spec: str, device: str | None = "auto", **options: Any) -> TextEncoder:
    """:func:`load_encoder` for texts."""
    enc = load_encoder(spec, "text", device=device, **options)
    assert isinstance(enc, TextEncoder)
    return enc
