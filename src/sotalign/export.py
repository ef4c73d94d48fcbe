"""Exporting a fitted model to the field's tools: the text side as a sentence-transformers model.

The aligned text embedding is ``z = normalize(h(f_txt(t)))``: the frozen sentence-transformers
encoder ``f_txt`` followed by the fitted text head ``h``. Every text head but the
training-free baselines is a short chain of standard layers, so the export is a plain
sentence-transformers folder — the encoder's own modules, then

=====================  ==============================================================
aligner / head         appended modules
=====================  ==============================================================
linear head            LayerNorm → Dense(W, b) → Normalize
mlp head               LayerNorm → Dense(W₁, b₁, GELU) → Dense(W₂, b₂) → Normalize
teacher head           Normalize → Dense(W, b − Wμ) → Normalize   (``W(y/‖y‖ − μ) + b``)
linear teacher         Normalize → Dense(Wᵀ, −Wᵀμ) → Normalize    (``Wᵀ(y/‖y‖ − μ)``)
=====================  ==============================================================

``SentenceTransformer(folder).encode(texts)`` then returns the aligned text embeddings, and
anything that evaluates a sentence-transformers model (MTEB, …) evaluates the aligned text
side; loading it needs sentence-transformers only, not sotalign. ASIF and CSA map texts
through their anchors and are not expressible this way: they are refused.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .encoders import SentenceTransformerEncoder, load_encoder
from .errors import ConfigError, InputError
from .estimator import SOTAlign
from .models import HeadsAligner, LinearTeacher

__all__ = ["export_sentence_transformers", "text_head_layers"]


def text_head_layers(model: SOTAlign) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """The text side of a fitted model as layers ``(kind, tensors)``, kind one of
    ``normalize``, ``layernorm`` (weight, bias), ``dense`` (weight ``out × in``, bias) and
    ``dense_gelu`` (see the module docstring)."""
    aligner = model.aligner_
    if isinstance(aligner, LinearTeacher):
        W, mu = aligner.w_y_.double(), aligner.mu_b_.double()
        return [
            ("normalize", {}),
            ("dense", {"weight": W.T, "bias": -(mu @ W)}),
            ("normalize", {}),
        ]
    if isinstance(aligner, HeadsAligner):
        g = aligner.model.g
        sd = {k: v.detach().double() for k, v in g.state_dict().items()}
        if aligner.head == "linear":
            return [
                ("layernorm", {"weight": sd["norm.weight"], "bias": sd["norm.bias"]}),
                ("dense", {"weight": sd["linear.weight"], "bias": sd["linear.bias"]}),
                ("normalize", {}),
            ]
        if aligner.head == "mlp":
            return [
                ("layernorm", {"weight": sd["norm.weight"], "bias": sd["norm.bias"]}),
                ("dense_gelu", {"weight": sd["fc1.weight"], "bias": sd["fc1.bias"]}),
                ("dense", {"weight": sd["fc2.weight"], "bias": sd["fc2.bias"]}),
                ("normalize", {}),
            ]
        if aligner.head == "teacher":
            W, b, mu = sd["linear.weight"], sd["linear.bias"], sd["mu"]
            return [
                ("normalize", {}),
                ("dense", {"weight": W, "bias": b - W @ mu}),
                ("normalize", {}),
            ]
    raise ConfigError(
        f"the text side of a '{model.method}' model ({type(aligner).__name__}) is not a chain of"
        " standard layers and cannot be exported to sentence-transformers; export a model"
        " fitted with sotalign, sail or a linear teacher"
    )


def _st_modules() -> Any:
    try:  # sentence-transformers >= 5.2 moved the modules; older releases keep .models
        from sentence_transformers.base.modules import Dense, Normalize
        from sentence_transformers.sentence_transformer.modules import LayerNorm
    except ImportError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from sentence_transformers.models import Dense, LayerNorm, Normalize
    return Dense, LayerNorm, Normalize


def _build(layers: list[tuple[str, dict[str, torch.Tensor]]]) -> list[nn.Module]:
    Dense, LayerNorm, Normalize = _st_modules()
    out: list[nn.Module] = []
    for kind, t in layers:
        if kind == "normalize":
            out.append(Normalize())
        elif kind == "layernorm":
            ln = LayerNorm(int(t["weight"].shape[0]))
            ln.norm.weight.data = t["weight"].float().clone()
            ln.norm.bias.data = t["bias"].float().clone()
            out.append(ln)
        else:
            d_out, d_in = (int(s) for s in t["weight"].shape)
            act = nn.GELU() if kind == "dense_gelu" else nn.Identity()
            out.append(
                Dense(
                    d_in,
                    d_out,
                    activation_function=act,
                    init_weight=t["weight"].float().clone(),
                    init_bias=t["bias"].float().clone(),
                )
            )
    return out


def export_sentence_transformers(model: SOTAlign, out: str | Path, overwrite: bool = False) -> Path:
    """Write the text side of ``model`` as a sentence-transformers folder ``out`` (see the
    module docstring). The model must record a sentence-transformers text encoder."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise InputError(f"--out {out}: exists and is not an empty folder; pass --overwrite")
    rec = (getattr(model, "encoders_", None) or {}).get("text")
    if not rec:
        raise ConfigError(
            "this model does not record its text encoder; fit it on files made by `sotalign"
            " embed texts --encoder st:…` or with --text-encoder SPEC"
        )
    layers = text_head_layers(model)  # refused before the encoder is loaded
    encoder = load_encoder(rec["spec"], "text", device="cpu")
    if not isinstance(encoder, SentenceTransformerEncoder):
        raise ConfigError(
            f"the text encoder {rec['spec']!r} is not a sentence-transformers model; only the"
            " text side of models on an st: encoder can be exported"
        )
    from sentence_transformers import SentenceTransformer

    base = encoder.model
    modules = [*base, *_build(layers)]
    SentenceTransformer(modules=modules, device="cpu").save(str(out))
    return out
