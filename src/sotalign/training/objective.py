"""The SOTAlign objective of Algorithm 1 (SPEC §3): ``L_sup + α·D(K ‖ K*)``.

For a paired batch (A_b, B_b) and unpaired batches (X_b, Y_b)::

    L = L_sup(cos(f(A_b), g(B_b))) + α·D(K ‖ K*),  K = cos(f(X_b), g(Y_b)),  K* = teacher(X_b, Y_b)

with D one of :data:`sotalign.losses.DIVERGENCES` (KLOT by default) or ``none``. An objective is
any callable ``objective(model, batch) -> (loss, logs)``; the trainer needs nothing else, and
the trained baselines bring their own.

Sharded training (a batch whose ``comm`` spans W ranks, see :mod:`.data`): each rank returns
its *share* of the loss — the terms of its rows — and gradients of that share. Text-side
embeddings are gathered with :meth:`~sotalign.parallel.Comm.gather_rows`, whose backward sums
their gradient over ranks; the trainer then sums the parameter gradients over ranks, which
gives the gradient of the whole objective, exactly as one process computes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from ..losses import get_divergence, siglip_loss, supervised_loss
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

    @property
    def shardable(self) -> bool:
        """Whether the objective runs sharded over ranks (SigLIP with KLOT or no divergence)."""
        return self.sup_loss == "siglip" and (self.divergence in ("klot", "none") or not self.alpha)

    def __call__(self, model: AlignmentModel, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        if batch.comm.sharded:
            return self._sharded(model, batch)
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
            logs.update(_info_logs(info))
        return loss, logs

    def _sharded(self, model: AlignmentModel, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """This rank's share of the objective (the shares sum to it; see the module docstring).

        Paired SigLIP: this rank's image rows against all texts (gathered with gradient), the
        positives on the diagonal shifted by the rank's offset, divided by the whole batch's
        entry count. KLOT: this rank's unpaired image rows against all unpaired texts
        (gathered), :func:`sotalign.ot.klot_embeddings` sharded over the same group. The
        logged terms are the whole batch's (identical on every rank).
        """
        comm = batch.comm
        if not self.shardable:
            raise ConfigError(
                "under torchrun the objective must be SigLIP with KLOT (or no divergence);"
                f" got sup_loss={self.sup_loss}, divergence={self.divergence}"
            )
        za = model.embed_images(batch.a)
        zb = comm.gather_rows(model.embed_texts(batch.b))
        n = zb.shape[0]
        sup = siglip_loss(
            za @ zb.T, model.scale, model.bias, offset=batch.pair_offset, entries=n * n
        )
        logs: dict[str, float] = {"sup": comm.sum_float(sup.detach())}
        loss = sup
        if self.divergence == "klot" and self.alpha > 0 and batch.x is not None:
            if model.teacher is None:
                raise ConfigError("divergence 'klot' needs a fitted teacher")
            assert batch.y is not None
            zx = model.embed_images(batch.x)
            zy = comm.gather_rows(model.embed_texts(batch.y))
            with torch.no_grad():
                tx = model.teacher.encode_images(batch.x)
                ty = comm.gather_rows(model.teacher.encode_texts(batch.y))
            div, info = get_divergence("klot")(
                zx.float(), zy.float(), tx.float(), ty.float(), group=comm, **self.div_options
            )
            loss = loss + self.alpha * div
            logs["div"] = float(info["value"])
            logs.update(_info_logs(info))
        return loss, logs


def _info_logs(info: dict[str, Any]) -> dict[str, float]:
    """The numeric diagnostics of a divergence for the training log (not its value again)."""
    skip = ("value", "world_size")
    return {k: float(v) for k, v in info.items() if isinstance(v, (int, float)) and k not in skip}


def objective_from_config(cfg: TrainConfig, alpha: float = 0.0) -> SOTAlignObjective:
    """The SOTAlign objective of ``cfg``'s terms with divergence weight ``alpha``."""
    options: dict[str, Any] = {}
    if cfg.divergence == "klot":
        options = {"config": cfg.klot}
    elif cfg.divergence == "ginfonce":
        options = {"temperature": cfg.ginfonce_temperature}
    return SOTAlignObjective(cfg.sup_loss, cfg.divergence, float(alpha), options)
