"""Trained semi-supervised baselines of SPEC §7: STRUCTURE, NNCLR and S-CLIP.

Each baseline trains the same heads as SOTAlign (:class:`sotalign.models.AlignmentModel`: f, g,
SigLIP scale t and bias b) with the same trainer, optimiser and data, and differs only in the
objective. As for SAIL, a validation split is carved from the pairs (``val_fraction``) and the
weights with the best validation mean R@1 are kept (``early_stopping``); the test split is never
seen. The trained heads are saved as a :class:`sotalign.models.HeadsAligner`, so
``SOTAlign.save``/``load`` work unchanged.

Notation: paired batch (A_b, B_b) of n rows, unpaired batches X_b, Y_b of m rows,
``za = f(A_b)``, ``zb = g(B_b)`` etc. (L2-normalised), ``L_c(K)`` the contrastive loss of the
estimator's ``sup_loss`` on an image×text cosine matrix K whose diagonal holds the positives
(entry-mean SigLIP ``−mean_ij log σ(z_ij (t·K_ij + b))`` by default; symmetric InfoNCE with
``sup_loss="infonce"``). ``L_sup = L_c(za zbᵀ)`` is SAIL's loss.

Methods (``SOTAlign(method=NAME, method_params={...})``, ``sotalign fit --method NAME
--set 'method_params={"lam": 10}'``):

* ``structure`` / ``structure_semisup`` — STRUCTURE (Gröger, Wen, Le, Brbić, "With Limited Data
  for Multimodal Alignment, Let the STRUCTURE Guide You", NeurIPS 2025), one level::

      L = L_sup + λ · ½ [R(A_b, za) + R(B_b, zb)]
      R(U, Z) = JS(softmax_row(S(U)/τ) ‖ softmax_row(S(Z)/τ))   (mean over rows)
      S(U) = Ũ Ũᵀ,  Ũ = Û − mean_rows(Û),  Û = rows of U L2-normalised

  i.e. the row-softmax (temperature τ) of the centred, normalised cosine similarity matrix of
  the frozen input space must stay close, in Jensen-Shannon divergence
  ``JS(P‖Q) = ½ KL(P‖M) + ½ KL(Q‖M)``, ``M = ½(P+Q)``, to that of the aligned space, for each
  modality. The frozen side carries no gradient. ``structure_semisup`` applies R to the
  paired and unpaired rows together: ``R([A_b; X_b], [za; zx])`` and ``R([B_b; Y_b], [zb; zy])``.
  method_params: ``lam`` (λ, default 10; the paper sweeps 0.1…1000), ``tau`` (τ, default 0.1).
  The authors' code weighs λ in linearly over its first 500 steps and, through the argument
  order of ``torch.nn.functional.kl_div``, computes ``½ KL(M‖P) + ½ KL(M‖Q)``; here λ is
  constant and the divergence is the Jensen-Shannon divergence of the paper. Memory grows as
  (n+m)² per modality.

* ``nnclr`` — nearest-neighbour supervision as in DeCLIP (Li et al., ICLR 2022) and NNCLR
  (Dwibedi et al., ICCV 2021), adapted to unpaired pools: the nearest unpaired image of a
  paired image (cosine in the frozen input space) is an extra positive for the paired text,
  and the nearest unpaired text of a paired text is an extra positive for the paired image::

      L = L_sup + w · ½ [L_c(f(X[ν_X(A_i)]) zbᵀ) + L_c(za g(Y[ν_Y(B_i)])ᵀ)]

  ``ν_X(A_i)`` is one of the ``k`` nearest rows of the unpaired image pool to ``A_i``
  (``k = 1``: the nearest; ``k > 1``: one of the k drawn uniformly at every step). The
  neighbour tables are computed once, before training, by chunked matrix products on the
  training device (memory: n_p × chunk floats, independent of the pool size, so memory-mapped
  pools of millions of rows work). With ``k > 1`` each step's draw comes from a generator
  seeded with ``seed`` and the indices of a tiny unpaired batch (8 rows per pool, otherwise
  unused) that the trainer's sampler draws; the sampler's state is checkpointed, so a resumed
  run repeats the draws of an uninterrupted one.
  method_params: ``k`` (default 1; the paper uses 1, 5, 10), ``w`` (default 1).

* ``sclip`` — S-CLIP (Mo, Kim, Lee, Shin, "S-CLIP: Semi-supervised Vision-Language Learning
  using Few Specialist Captions", NeurIPS 2023), caption-level pseudo-labelling by optimal
  transport. For the unpaired images, the entropic OT plan ``P = OT_ε(cos(X_b, A_b))``
  (:func:`sotalign.ot.sinkhorn`, uniform marginals, no gradient) between unpaired and paired
  images gives each unpaired image a pseudo-caption,

      soft:  t̃_i = normalise(Σ_j P_ij zb_j / Σ_j P_ij)     hard:  t̃_i = zb_{argmax_j P_ij}

  and likewise each unpaired text gets a pseudo-image ĩ from ``OT_ε(cos(Y_b, B_b))`` and za::

      L = L_sup + w · ½ [L_c(zx t̃ᵀ) + L_c(ĩ zyᵀ)]

  The pseudo-partners keep their gradient through g (resp. f); only the plan is fixed.
  method_params: ``w`` (default 1), ``mode`` (``soft`` | ``hard``, default soft), ``eps``
  (default 0.05), ``affinity`` (``aligned``: cosines of the current heads, as in S-CLIP, the
  default; ``input``: cosines of the frozen embeddings), ``sinkhorn_iters`` (default 100).

The SOTAlign objective with any teacher × divergence of the paper's Table 1 (SPEC §4) needs no
separate method: ``SOTAlign(teacher="procrustes"|"cca"|"contrastive",
divergence="klot"|"cka"|"ginfonce"|"none", alpha=...)``, and the teachers alone are the
methods ``procrustes``, ``cca`` and ``contrastive``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..arrays import l2_normalize
from ..config import SOTAlignConfig
from ..errors import ConfigError, InputError, closest
from ..losses import infonce_loss, siglip_loss, supervised_loss
from ..models import AlignmentModel
from ..ot import sinkhorn
from ..training import Batch, EmbeddingPool, TrainData, resolve_device
from .baselines import train_selected
from .registry import MethodResult, MethodSpec, register_method

__all__ = [
    "NNCLRObjective",
    "SCLIPObjective",
    "StructureObjective",
    "js_divergence_rows",
    "nearest_neighbours",
    "pseudo_partners",
    "structure_regulariser",
]


# ----------------------------------------------------------------------------- shared pieces


def contrastive(kind: str, K: Tensor, model: AlignmentModel) -> Tensor:
    """``L_c(K)``: entry-mean SigLIP (default) or symmetric InfoNCE; positives on the diagonal."""
    if kind == "infonce":
        return infonce_loss(K, model.scale)
    return siglip_loss(K, model.scale, model.bias)


def _params(cfg: SOTAlignConfig, method: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """``cfg.method_params`` merged over ``defaults``; unknown keys raise :class:`ConfigError`."""
    raw = cfg.method_params or {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f'method_params must be a mapping such as {{"{next(iter(defaults))}": ...}},'
            f" got {raw!r}"
        )
    given = dict(raw)
    for key in given:
        if key not in defaults:
            raise ConfigError(
                f"method '{method}' has no parameter '{key}'{closest(key, list(defaults))};"
                f" its method_params are {', '.join(defaults)}"
            )
    return {**defaults, **given}


def _positive(method: str, name: str, value: Any, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(
            f"method '{method}': method_params {name} must be a number {bound}, got {value!r}"
        )
    return v


def _need_unpaired(data: TrainData, method: str) -> None:
    if not data.has_unpaired:
        raise InputError(
            f"method '{method}' learns from unpaired data: give both unpaired pools"
            " (--unpaired-images and --unpaired-texts, or X and Y to fit)"
        )


def _train(
    cfg: SOTAlignConfig,
    data: TrainData,
    resume: bool,
    build: Callable[[TrainData], tuple[TrainData, Any]],
    **overrides: Any,
) -> MethodResult:
    """Early-stop on a split of the pairs, then refit on all pairs (as SAIL and SOTAlign)."""
    train = cfg.replace_train(divergence="none", **overrides)
    return train_selected(cfg, data, resume, build, train)


def _sup(
    kind: str,
    model: AlignmentModel,
    za: Tensor,
    zb: Tensor,
    zx: Tensor | None = None,
    zy: Tensor | None = None,
) -> Tensor:
    """The estimator's supervised loss ``L_sup`` (``sup_loss``) on the paired batch."""
    return supervised_loss(kind, za, zb, zx, zy, model.scale, model.bias)


# ----------------------------------------------------------------------------- STRUCTURE


def js_divergence_rows(log_p: Tensor, log_q: Tensor) -> Tensor:
    """Mean over rows of ``JS(p_i ‖ q_i) = ½ KL(p_i‖m_i) + ½ KL(q_i‖m_i)``, ``m = ½(p+q)``.

    Inputs are row-wise log-probabilities; ``log m`` is formed with a log-sum-exp, so rows with
    vanishing entries stay finite. Values lie in ``[0, log 2]``.
    """
    log_m = torch.logaddexp(log_p, log_q) - math.log(2.0)

    def kl_to_m(log_u: Tensor) -> Tensor:  # 0·log 0 = 0 for entries of zero probability
        u = log_u.exp()
        return torch.where(u > 0, u * (log_u - log_m), torch.zeros_like(u)).sum(-1)

    return (0.5 * (kl_to_m(log_p) + kl_to_m(log_q))).mean()


def _structure_logits(U: Tensor, tau: float) -> Tensor:
    """``S(U)/τ`` with ``S(U) = ŨŨᵀ``, Ũ the row-normalised, then mean-centred rows of U."""
    u = l2_normalize(U.float())
    u = u - u.mean(0, keepdim=True)
    return (u @ u.T) / tau


def structure_regulariser(original: Tensor, aligned: Tensor, tau: float = 0.1) -> Tensor:
    """STRUCTURE's one-level regulariser ``R(U, Z)``: JS divergence between the row-softmaxes of
    the centred, normalised similarity matrices of the frozen inputs ``U`` (no gradient) and of
    the aligned embeddings ``Z`` (Gröger et al. 2025; see the module docstring)."""
    with torch.no_grad():
        log_p = F.log_softmax(_structure_logits(original, tau), dim=-1)
    log_q = F.log_softmax(_structure_logits(aligned, tau), dim=-1)
    return js_divergence_rows(log_p, log_q)


@dataclass
class StructureObjective:
    """``L_sup + λ·½[R(A_b, za) + R(B_b, zb)]``; with ``semisup`` the unpaired rows join R."""

    lam: float = 10.0
    tau: float = 0.1
    semisup: bool = False
    sup_loss: str = "siglip"

    def __call__(self, model: AlignmentModel, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        za, zb = model.embed_images(batch.a), model.embed_texts(batch.b)
        use_u = self.semisup and batch.x is not None and batch.y is not None
        zx = model.embed_images(batch.x) if use_u else None  # type: ignore[arg-type]
        zy = model.embed_texts(batch.y) if use_u else None  # type: ignore[arg-type]
        sup = _sup(self.sup_loss, model, za, zb, zx, zy)
        if use_u:
            assert zx is not None and zy is not None and batch.x is not None
            assert batch.y is not None
            r_img = structure_regulariser(
                torch.cat([batch.a, batch.x]), torch.cat([za, zx]), self.tau
            )
            r_txt = structure_regulariser(
                torch.cat([batch.b, batch.y]), torch.cat([zb, zy]), self.tau
            )
        else:
            r_img = structure_regulariser(batch.a, za, self.tau)
            r_txt = structure_regulariser(batch.b, zb, self.tau)
        reg = 0.5 * (r_img + r_txt)
        loss = sup + self.lam * reg
        return loss, {"sup": float(sup.detach()), "structure": float(reg.detach())}


def _fit_structure(
    cfg: SOTAlignConfig, data: TrainData, resume: bool, semisup: bool
) -> MethodResult:
    name = "structure_semisup" if semisup else "structure"
    p = _params(cfg, name, {"lam": 10.0, "tau": 0.1})
    lam = _positive(name, "lam", p["lam"], allow_zero=True)
    tau = _positive(name, "tau", p["tau"])
    if semisup:
        _need_unpaired(data, name)
    objective = StructureObjective(lam, tau, semisup, cfg.train.sup_loss)

    def build(d: TrainData) -> tuple[TrainData, Any]:
        return (d if semisup else TrainData(d.images, d.texts)), objective

    return _train(cfg, data, resume, build)


# ----------------------------------------------------------------------------- NNCLR


@torch.no_grad()
def nearest_neighbours(
    queries: Any,
    pool: Any,
    k: int = 1,
    *,
    device: Any = "cpu",
    max_entries: int = 1 << 24,
    chunk_rows: int | None = None,
) -> Tensor:
    """Indices (n_q × k, int64, nearest first) of the ``k`` rows of ``pool`` with the largest
    cosine to each row of ``queries``.

    The pool is read in chunks of rows (``chunk_rows``, by default ``max_entries // n_q``
    clipped to [256, 65536]); a running top-k is merged chunk by chunk, so memory stays at
    about ``n_q × (chunk + k)`` similarities whatever the pool size. Ties keep the lower
    index first only up to ``torch.topk``'s ordering.
    """
    q_pool = queries if isinstance(queries, EmbeddingPool) else EmbeddingPool(queries)
    p_pool = pool if isinstance(pool, EmbeddingPool) else EmbeddingPool(pool)
    n_q, n_p = len(q_pool), len(p_pool)
    if k < 1 or k > n_p:
        raise ConfigError(f"k must be in [1, {n_p}] (the pool size), got {k}")
    q = l2_normalize(q_pool.gather(None, device))
    chunk = chunk_rows or int(min(max(max_entries // max(n_q, 1), 256), 65536))
    best_v = torch.full((n_q, 0), -math.inf, device=device)
    best_i = torch.zeros((n_q, 0), dtype=torch.long, device=device)
    for s in range(0, n_p, chunk):
        e = min(s + chunk, n_p)
        block = np.array(p_pool.array[s:e], dtype=np.float32)  # a slice: one read of a memmap
        rows = l2_normalize(torch.from_numpy(block).to(device))
        sims = q @ rows.T
        kk = min(k, e - s)
        v, i = sims.topk(kk, dim=1)
        cat_v = torch.cat([best_v, v], dim=1)
        cat_i = torch.cat([best_i, i + s], dim=1)
        kk = min(k, cat_v.shape[1])
        v, j = cat_v.topk(kk, dim=1)
        best_v, best_i = v, cat_i.gather(1, j)
    return best_i.cpu()


@dataclass
class NNCLRObjective:
    """``L_sup + w·½[L_c(f(NN_X(A)) zbᵀ) + L_c(za g(NN_Y(B))ᵀ)]`` (see the module docstring).

    ``nn_x``/``nn_y``: neighbour tables (n_pairs × k) into ``pool_x``/``pool_y``, row i for
    training pair i.
    """

    nn_x: Tensor
    nn_y: Tensor
    pool_x: EmbeddingPool
    pool_y: EmbeddingPool
    w: float = 1.0
    sup_loss: str = "siglip"
    seed: int = 0
    _cache: dict[str, Tensor] = field(init=False, repr=False, default_factory=dict)

    def step_generator(self, batch: Batch) -> np.random.Generator:
        """The generator of this step's neighbour draws: keyed on ``seed`` and the unpaired
        indices of ``batch`` (so it follows the sampler's checkpointed stream)."""
        key = [self.seed, 104_729]
        for idx in (batch.idx_x, batch.idx_y):
            if idx is not None:
                key.extend(int(i) for i in idx)
        return np.random.default_rng(key)

    def _rows(
        self, which: str, idx: np.ndarray, device: Any, rng: np.random.Generator | None = None
    ) -> Tensor:
        table, pool = (self.nn_x, self.pool_x) if which == "x" else (self.nn_y, self.pool_y)
        k = table.shape[1]
        if k == 1:  # fixed neighbours: gather once per pair (memory = the pairs' size)
            key = f"{which}:{device}"
            if key not in self._cache:
                self._cache[key] = pool.gather(table[:, 0].numpy(), device)
            return self._cache[key][torch.as_tensor(idx, device=device)]
        if rng is None:
            raise ValueError("k > 1 needs a generator for the neighbour draws")
        pick = rng.integers(0, k, size=len(idx))
        rows = table.numpy()[idx, pick]
        return pool.gather(rows, device)

    def __call__(self, model: AlignmentModel, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        za, zb = model.embed_images(batch.a), model.embed_texts(batch.b)
        sup = _sup(self.sup_loss, model, za, zb)
        n, dev = batch.a.shape[0], batch.a.device
        idx = np.arange(n) if batch.idx_pairs is None else np.asarray(batch.idx_pairs)
        rng = self.step_generator(batch) if self.nn_x.shape[1] > 1 else None
        zx_nn = model.embed_images(self._rows("x", idx, dev, rng))
        zy_nn = model.embed_texts(self._rows("y", idx, dev, rng))
        kind = "infonce" if self.sup_loss == "infonce" else "siglip"
        l_x = contrastive(kind, zx_nn @ zb.T, model)
        l_y = contrastive(kind, za @ zy_nn.T, model)
        nn_term = 0.5 * (l_x + l_y)
        loss = sup + self.w * nn_term
        return loss, {"sup": float(sup.detach()), "nn": float(nn_term.detach())}


def _fit_nnclr(cfg: SOTAlignConfig, data: TrainData, resume: bool) -> MethodResult:
    p = _params(cfg, "nnclr", {"k": 1, "w": 1.0})
    k = p["k"]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"method 'nnclr': method_params k must be a positive integer, got {k!r}")
    w = _positive("nnclr", "w", p["w"], allow_zero=True)
    _need_unpaired(data, "nnclr")
    assert data.unpaired_images is not None and data.unpaired_texts is not None
    k = int(min(k, len(data.unpaired_images), len(data.unpaired_texts)))
    device = resolve_device(cfg.train.device)
    unpaired_x, unpaired_y = data.unpaired_images, data.unpaired_texts

    def build(d: TrainData) -> tuple[TrainData, Any]:
        nn_x = nearest_neighbours(d.images, unpaired_x, k, device=device)
        nn_y = nearest_neighbours(d.texts, unpaired_y, k, device=device)
        objective = NNCLRObjective(
            nn_x, nn_y, unpaired_x, unpaired_y, w, cfg.train.sup_loss, cfg.train.seed
        )
        # k = 1: the pools enter only through the neighbour tables, no unpaired batches
        return (TrainData(d.images, d.texts) if k == 1 else d), objective

    if k == 1:
        return _train(cfg, data, resume, build)
    return _train(cfg, data, resume, build, batch_unpaired=8)  # keys of the draws


# ----------------------------------------------------------------------------- S-CLIP


@torch.no_grad()
def pseudo_partners(K: Tensor, eps: float = 0.05, n_iter: int = 100, mode: str = "soft") -> Tensor:
    """Row-stochastic weights (m × n) of each unpaired sample over the n paired samples.

    ``P = OT_ε(K)`` for the affinity ``K`` (m × n, unpaired × paired; uniform marginals, mass
    1); soft: ``W = P / P 1`` (each row of the plan renormalised); hard: ``W_ij = 1`` for
    ``j = argmax_j P_ij``, else 0.
    """
    P = sinkhorn(K.float(), eps, n_iter).plan
    if mode == "hard":
        W = torch.zeros_like(P)
        W[torch.arange(P.shape[0], device=P.device), P.argmax(1)] = 1.0
        return W
    return P / P.sum(1, keepdim=True).clamp_min(1e-30)


@dataclass
class SCLIPObjective:
    """``L_sup + w·½[L_c(zx t̃ᵀ) + L_c(ĩ zyᵀ)]`` with OT pseudo-partners (module docstring)."""

    w: float = 1.0
    mode: str = "soft"
    eps: float = 0.05
    affinity: str = "aligned"
    sinkhorn_iters: int = 100
    sup_loss: str = "siglip"

    def __call__(self, model: AlignmentModel, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        za, zb = model.embed_images(batch.a), model.embed_texts(batch.b)
        if batch.x is None or batch.y is None:
            sup = _sup(self.sup_loss, model, za, zb)
            return sup, {"sup": float(sup.detach())}
        zx, zy = model.embed_images(batch.x), model.embed_texts(batch.y)
        sup = _sup(self.sup_loss, model, za, zb, zx, zy)
        if self.affinity == "input":
            k_img = l2_normalize(batch.x) @ l2_normalize(batch.a).T
            k_txt = l2_normalize(batch.y) @ l2_normalize(batch.b).T
        else:
            k_img, k_txt = zx.detach() @ za.detach().T, zy.detach() @ zb.detach().T
        w_img = pseudo_partners(k_img, self.eps, self.sinkhorn_iters, self.mode)
        w_txt = pseudo_partners(k_txt, self.eps, self.sinkhorn_iters, self.mode)
        t_pseudo = l2_normalize(w_img.to(zb.dtype) @ zb)  # a pseudo-caption per unpaired image
        i_pseudo = l2_normalize(w_txt.to(za.dtype) @ za)  # a pseudo-image per unpaired text
        kind = "infonce" if self.sup_loss == "infonce" else "siglip"
        pseudo = 0.5 * (
            contrastive(kind, zx @ t_pseudo.T, model) + contrastive(kind, i_pseudo @ zy.T, model)
        )
        loss = sup + self.w * pseudo
        return loss, {"sup": float(sup.detach()), "pseudo": float(pseudo.detach())}


def _fit_sclip(cfg: SOTAlignConfig, data: TrainData, resume: bool) -> MethodResult:
    defaults = {"w": 1.0, "mode": "soft", "eps": 0.05, "affinity": "aligned", "sinkhorn_iters": 100}
    p = _params(cfg, "sclip", defaults)
    w = _positive("sclip", "w", p["w"], allow_zero=True)
    eps = _positive("sclip", "eps", p["eps"])
    for key, choices in (("mode", ("soft", "hard")), ("affinity", ("aligned", "input"))):
        if p[key] not in choices:
            raise ConfigError(
                f"method 'sclip': method_params {key} must be one of {', '.join(choices)},"
                f" got {p[key]!r}{closest(str(p[key]), choices)}"
            )
    iters = p["sinkhorn_iters"]
    if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 1:
        raise ConfigError(
            "method 'sclip': method_params sinkhorn_iters must be a positive integer,"
            f" got {iters!r}"
        )
    _need_unpaired(data, "sclip")
    objective = SCLIPObjective(w, p["mode"], eps, p["affinity"], int(iters), cfg.train.sup_loss)
    return _train(cfg, data, resume, lambda d: (d, objective))


# ----------------------------------------------------------------------------- registration


_SPECS: list[tuple[str, str, Callable[[SOTAlignConfig, TrainData, bool], MethodResult], bool]] = [
    (
        "structure",
        "STRUCTURE: SigLIP + λ·JS structure preservation on the pairs",
        lambda cfg, data, resume: _fit_structure(cfg, data, resume, False),
        False,
    ),
    (
        "structure_semisup",
        "STRUCTURE with the unpaired samples in the structure term",
        lambda cfg, data, resume: _fit_structure(cfg, data, resume, True),
        True,
    ),
    ("nnclr", "NNCLR/DeCLIP: unpaired nearest neighbours as extra positives", _fit_nnclr, True),
    (
        "sclip",
        "S-CLIP: OT pseudo-captions and pseudo-images for unpaired samples",
        _fit_sclip,
        True,
    ),
]
for _name, _summary, _fit, _uses_unpaired in _SPECS:
    register_method(MethodSpec(_name, _summary, _fit, uses_unpaired=_uses_unpaired))
