"""Image loading and preprocessing: decode to RGB (alpha over white), resize and centre crop."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from sotalign.errors import InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_image(source: Any) -> Any:
    """An RGB ``PIL.Image`` from a path, bytes or a PIL image.

    Transparent pixels are composited over white (emoji and icons have alpha). A file that is
    missing or cannot be decoded raises :class:`InputError` naming it.
    """
    from PIL import Image

    if isinstance(source, Image.Image):
        img = source
    else:
        try:
            if isinstance(source, (bytes, bytearray)):
                img = Image.open(io.BytesIO(source))
            else:
                img = Image.open(source)
            img.load()
        except FileNotFoundError as exc:
            raise InputError(f"image {source}: file not found") from exc
        except Exception as exc:  # PIL raises many types for corrupt data
            raise InputError(
                f"image {source}: cannot decode ({type(exc).__name__}: {exc})"
            ) from exc
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return img.convert("RGB")


def resize_center_crop(img: Any, size: int, mean: Sequence[float], std: Sequence[float]) -> Any:
    """Shorter side → ``size`` (bicubic), centre crop ``size × size``, scale to [0, 1], normalise.

    Returns a float32 tensor ``3 × size × size``.
    """
    import torch
    from PIL import Image

    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    img = img.crop((left, top, left + size, top + size))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
