"""The non-SOTAlign methods that need no new objective: SAIL and its semi-supervised variant
(heads trained with SigLIP), the linear teachers used alone, and the training-free baselines
ASIF and CSA (SPEC §7).

SAIL and every trained baseline early-stop on a validation split carved from the pairs and are
then refitted on all pairs for the best number of steps (:func:`train_selected`).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from ..config import SOTAlignConfig
from ..errors import ConfigError, closest
from ..models import ASIFAligner, CSAAligner
from ..training import Objective, TrainConfig, TrainData, objective_from_config
from .common import fit_teacher, heads_candidate, table_file
from .registry import MethodResult, MethodSpec, register_method
from .selection import Split, carve_validation, select
from .teacher_search import resolve_teacher_reg

__all__ = ["train_selected"]


def train_selected(
    cfg: SOTAlignConfig,
    data: TrainData,
    resume: bool,
    build: Callable[[TrainData], tuple[TrainData, Objective]],
    train: TrainConfig | None = None,
) -> MethodResult:
    """Train heads early-stopped on a validation split of the pairs, then refit on all pairs.

    ``build(pairs_data)`` returns the data the trainer sees and the objective for a given set
    of pairs (objectives such as NNCLR's depend on the pairs). ``train`` (default: the
    estimator's, without divergence) configures both runs."""
    train = train or cfg.replace_train(divergence="none")
    split = carve_validation(data, cfg.val_fraction, train.seed, cfg.early_stopping)

    def build3(d: TrainData) -> tuple[TrainData, Objective, None]:
        tr, objective = build(d)
        return tr, objective, None

    cand = heads_candidate(cfg, cfg.method, build3, train, resume, {"alpha": None})
    sel = select([cand], data, split, refit=cfg.refit, table_file=table_file(cfg), resume=resume)
    return MethodResult(sel.aligner, sel.table, sel.history)


def fit_sail(
    cfg: SOTAlignConfig, data: TrainData, resume: bool, sup_loss: str = "siglip"
) -> MethodResult:
    """SAIL: SigLIP on the pairs only (heads of the same shape); ``semisup_siglip`` adds the
    unpaired samples as extra negatives."""
    train = cfg.replace_train(sup_loss=sup_loss, divergence="none")
    objective = objective_from_config(train, 0.0)

    def build(d: TrainData) -> tuple[TrainData, Objective]:
        return (TrainData(d.images, d.texts) if sup_loss == "siglip" else d), objective

    return train_selected(cfg, data, resume, build, train)


def _teacher_method(name: str) -> Callable[[SOTAlignConfig, TrainData, bool], MethodResult]:
    def fit(cfg: SOTAlignConfig, data: TrainData, resume: bool) -> MethodResult:
        rows: list[dict[str, Any]] = []
        if name == "cca" and cfg.teacher_reg == "auto":  # the ridge chosen on validation
            split = Split.of(data, cfg.val_fraction, cfg.train.seed)
            cfg, rows = resolve_teacher_reg(dataclasses.replace(cfg, teacher="cca"), split)
        return MethodResult(fit_teacher(cfg, data, name), teacher_search=rows)

    return fit


def _training_free(cls: type) -> Callable[[SOTAlignConfig, TrainData, bool], MethodResult]:
    """A closed-form baseline fitted on the pairs with ``method_params`` as its options."""
    valid = [n for n in inspect.signature(cls).parameters if n != "self"]

    def fit(cfg: SOTAlignConfig, data: TrainData, resume: bool) -> MethodResult:
        params: dict[str, Any] = dict(cfg.method_params or {})
        for name in params:
            if name not in valid:
                raise ConfigError(
                    f"unknown option '{name}' for method '{cls.kind}'"  # type: ignore[attr-defined]
                    f"{closest(name, valid)}; valid options: {', '.join(valid)}"
                )
        return MethodResult(cls(**params).fit(data.images.array, data.texts.array))

    return fit


register_method(MethodSpec("sail", "SigLIP on the pairs only (SAIL, linear heads)", fit_sail))
register_method(
    MethodSpec(
        "semisup_sail",
        "SigLIP with unpaired samples as extra negatives",
        lambda cfg, data, resume: fit_sail(cfg, data, resume, "semisup_siglip"),
        uses_unpaired=True,
    )
)
for _name, _summary in (
    ("cca", "ridge CCA teacher alone"),
    ("procrustes", "orthogonal Procrustes teacher alone"),
    ("contrastive", "linear SigLIP teacher alone"),
):
    register_method(MethodSpec(_name, _summary, _teacher_method(_name)))
register_method(
    MethodSpec(
        "asif",
        "ASIF: relative representations against the pairs (training-free)",
        _training_free(ASIFAligner),
    )
)
register_method(
    MethodSpec(
        "csa",
        "CSA: CCA with correlation-weighted similarity (training-free)",
        _training_free(CSAAligner),
    )
)
