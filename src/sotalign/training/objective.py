"""The SOTAlign objective of Algorithm 1 (SPEC §3): ``L_sup + α·D(K ‖ K*)``.

For a paired batch (A_b, B_b) and unpaired batches (X_b, Y_b)::

    L = L_sup(cos(f(A_b), g(B_b))) + α·D(K ‖ K*),  K = cos(f(X_b), g(Y_b)),  K* = teacher(X_b, Y_b)

with D one of :data:`sotalign.losses.DIVERGENCES` (KLOT by default) or ``none``. An objective is
any callable ``objective(model, batch) -> (loss, logs)``; the trainer needs nothing else, and
the trained baselines bring their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from ..losses import get_divergence, supervised_loss
from ..models import AlignmentModel
from .config import TrainConfig
from .data import Batch

__all__ = ["SOTAlignObjective", "objective_from_config"]


@dataclass
class SOTAlignObjective:
    """``L_sup + α·D(K ‖ K*)`` of Algorithm 1 (D = none, klot, cka or ginfonce).

    ``div_options`` are the divergence's keyword options, built once (for KLOT a validated
    :class:`sotalign.ot.KLOTConfig`)."""

    sup_loss: str = "siglip"
    divergence: str = "klot"
    alpha: float = 0.0
    div_options: dict[str, Any] = field(default_factory=dict)

    def __call__(self, model: AlignmentModel, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        za, zb = model.embed_images(batch.a), model.embed_texts(batch.b)
        has_u = batch.x is not None and batch.y is not None
        use_div = self.divergence != "none" and self.alpha > 0
        # Embed the unpaired batch only when a term uses it (not for plain SigLIP with α = 0).
        embed_u = has_u and (use_div or self.sup_loss == "semisup_siglip")
        zx = model.embed_images(batch.x) if embed_u else None  # type: ignore[arg-type]
        zy = model.embed_texts(batch.y) if embed_u else None  # type: ignore[arg-type]
        sup = supervised_loss(self.sup_loss, za, zb, zx, zy, model.scale, model.bias)
        logs: dict[str, float] = {"sup": float(sup.detach())}
        loss = sup
        if use_div and has_u:
            if model.teacher is None:
                raise ConfigError(f"divergence '{self.divergence}' needs a fitted teacher")
            assert zx is not None and zy is not None
            with torch.no_grad():
                tx = model.teacher.encode_images(batch.x)
                ty = model.teacher.encode_texts(batch.y)
            div, info = get_divergence(self.divergence)(
                zx.float(), zy.float(), tx.float(), ty.float(), **self.div_options
            )
            loss = loss + self.alpha * div
            logs["div"] = float(div.detach())
            logs.update({k: float(v) for k, v in info.items() if isinstance(v, (int, float))})
        return loss, logs


def objective_from_config(cfg: TrainConfig, alpha: float = 0.0) -> SOTAlignObjective:
    """The SOTAlign objective of ``cfg``'s terms with divergence weight ``alpha``."""
    options: dict[str, Any] = {}
    if cfg.divergence == "klot":
        options = {"config": cfg.klot}
    elif cfg.divergence == "ginfonce":
        options = {"temperature": cfg.ginfonce_temperature}
    return SOTAlignObjective(cfg.sup_loss, cfg.divergence, float(alpha), options)
