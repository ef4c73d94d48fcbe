"""Training losses and the divergences of the paper's Table 1 (SPEC §3-§4).

Supervised losses act on the paired cosine matrix ``K_p = cos(f(A_b), g(B_b))``; divergences
compare the student affinity ``K = cos(f(X_b), g(Y_b))`` of an unpaired batch with the teacher
affinity ``K*`` of the same batch. Divergences take the embeddings (not the matrices), so that
KLOT can run without ever forming an n×n matrix (see :func:`sotalign.ot.klot_embeddings`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import ConfigError, closest
from .ot import KLOTConfig, klot_embeddings


def siglip_loss(
    K: Tensor,
    scale: Tensor | float,
    bias: Tensor | float,
    *,
    offset: int = 0,
    entries: int | None = None,
) -> Tensor:
    """SigLIP loss with entry-mean reduction (SPEC §3, L_sup).

    ``L = −mean_ij log σ(z_ij (t·K_ij + b))`` with ``z_ij = +1`` for ``i = j`` and ``−1``
    elsewhere. ``K`` may be rectangular (n × m, m ≥ n): positives are the first n diagonal
    entries, every other column is a negative. The mean is over all n·m entries.

    Computed as ``Σ softplus(l_ij) + Σ_i [softplus(−l_ii) − softplus(l_ii)]`` (−log σ(−x) =
    softplus(x)), so no n×m label matrix is built: one n×m temporary fewer per step.

    Row blocks (sharded training): ``K`` holds rows ``offset … offset+n−1`` of the whole
    matrix, whose positives are ``(i, offset + i)``, and the sum is divided by ``entries``
    (the whole matrix's entry count): the blocks' values sum to the whole loss.
    """
    logits = scale * K + bias
    diag = torch.diagonal(logits, offset=offset)
    total = F.softplus(logits).sum() + (F.softplus(-diag) - F.softplus(diag)).sum()
    return total / (logits.numel() if entries is None else entries)


def semisup_siglip_loss(
    za: Tensor, zb: Tensor, zx: Tensor | None, zy: Tensor | None, scale: Tensor, bias: Tensor
) -> Tensor:
    """Semi-supervised SigLIP (SPEC §3 variant; also the semi-supervised SAIL baseline).

    Two rectangular SigLIP losses, averaged: paired texts × (paired + unpaired images) and
    paired images × (paired + unpaired texts). Positives are only on the paired diagonal;
    unpaired samples act as extra negatives. Without unpaired data it is plain SigLIP.
    """
    imgs = za if zx is None else torch.cat([za, zx])
    txts = zb if zy is None else torch.cat([zb, zy])
    l_t = siglip_loss(zb @ imgs.T, scale, bias)
    l_i = siglip_loss(za @ txts.T, scale, bias)
    return 0.5 * (l_t + l_i)


def infonce_loss(K: Tensor, scale: Tensor | float) -> Tensor:
    """Symmetric InfoNCE (CLIP loss): mean of row- and column-wise cross-entropy of ``scale·K``."""
    logits = scale * K
    target = torch.arange(K.shape[0], device=K.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


SUP_LOSSES = ("siglip", "semisup_siglip", "infonce")


def supervised_loss(
    name: str,
    za: Tensor,
    zb: Tensor,
    zx: Tensor | None,
    zy: Tensor | None,
    scale: Tensor,
    bias: Tensor,
) -> Tensor:
    """Dispatch the supervised term by name (``siglip``, ``semisup_siglip``, ``infonce``)."""
    if name == "siglip":
        return siglip_loss(za @ zb.T, scale, bias)
    if name == "semisup_siglip":
        return semisup_siglip_loss(za, zb, zx, zy, scale, bias)
    if name == "infonce":
        return infonce_loss(za @ zb.T, scale)
    raise ConfigError(f"unknown supervised loss '{name}'{closest(name, SUP_LOSSES)}")


# ----------------------------------------------------------------------------- divergences


def _double_centre(K: Tensor) -> Tensor:
    return K - K.mean(0, keepdim=True) - K.mean(1, keepdim=True) + K.mean()


def cka_divergence(zx: Tensor, zy: Tensor, tx: Tensor, ty: Tensor, **_: Any) -> tuple[Tensor, dict]:
    """``1 − CKA(K, K*)`` with double-centred affinities (Table 1, "CKA").

    ``CKA(K, K*) = ⟨HKH, HK*H⟩ / (‖HKH‖_F ‖HK*H‖_F)`` where ``H`` centres rows and columns.
    """
    Kc = _double_centre(zx @ zy.T)
    Tc = _double_centre((tx @ ty.T).to(Kc.dtype))
    cka = (Kc * Tc).sum() / (Kc.norm() * Tc.norm()).clamp_min(1e-12)
    return 1.0 - cka, {}


def ginfonce_divergence(
    zx: Tensor, zy: Tensor, tx: Tensor, ty: Tensor, temperature: float = 0.05, **_: Any
) -> tuple[Tensor, dict]:
    """Generalised InfoNCE (Table 1): KL between row-softmaxes of K*/τ and K/τ.

    ``mean_i KL(softmax(K*_i·/τ) ‖ softmax(K_i·/τ))``, averaged over both directions (rows
    image→text and columns text→image).
    """
    K = zx @ zy.T
    Kt = (tx @ ty.T).to(K.dtype)
    loss = 0.0
    for a, b in ((K, Kt), (K.T, Kt.T)):
        log_p = F.log_softmax(a / temperature, dim=1)
        log_q = F.log_softmax(b / temperature, dim=1)
        loss = loss + (log_q.exp() * (log_q - log_p)).sum(1).mean()
    return 0.5 * loss, {}


def klot_divergence(
    zx: Tensor,
    zy: Tensor,
    tx: Tensor,
    ty: Tensor,
    config: KLOTConfig | None = None,
    group: Any = None,
    **_: Any,
) -> tuple[Tensor, dict]:
    """KLOT(K ‖ K*) = KL(OT_ε*(K*) ‖ OT_ε(K)) with the closed-form gradient (SPEC §3).

    ``config`` holds the solver's options (ε, ε*, iterations, tolerance, dense/tiled mode);
    it was validated when built, so nothing is re-checked per training step. ``group``: shard
    the solve by rows over a process group (``zx``/``tx`` this rank's rows, ``zy``/``ty`` all
    texts; the loss is this rank's share). See :func:`sotalign.ot.klot_embeddings`.
    """
    loss, info = klot_embeddings(zx, zy, tx, ty, config or KLOTConfig(), group=group)
    return loss, info.as_dict()


Divergence = Callable[..., tuple[Tensor, dict]]

DIVERGENCES: dict[str, Divergence] = {
    "klot": klot_divergence,
    "cka": cka_divergence,
    "ginfonce": ginfonce_divergence,
}


def get_divergence(name: str) -> Divergence:
    """Look a divergence up by name (``klot``, ``cka``, ``ginfonce``)."""
    if name not in DIVERGENCES:
        raise ConfigError(
            f"unknown divergence '{name}'{closest(name, list(DIVERGENCES))}; "
            f"choose one of {', '.join(DIVERGENCES)} or 'none'"
        )
    return DIVERGENCES[name]
