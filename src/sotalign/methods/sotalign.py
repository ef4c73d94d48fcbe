"""SOTAlign (SPEC §2-§3): a linear teacher fitted on the pairs, then heads trained with
``L_sup + α·D(K ‖ K*)`` on the pairs plus unpaired batches.

With ``alpha="auto"`` the candidates are the teacher alone, the heads without the divergence
(α = 0) and every α of ``alpha_grid``; they are fitted on the training part of the pairs (the
teacher of that part shared by all), selected on validation and the winner is refitted on all
pairs (:func:`sotalign.methods.selection.select`). A fixed α trains once, early-stopped on a
validation split. The Table 1 variants swap the divergence (``sotalign_cka``,
``sotalign_ginfonce``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from ..config import SOTAlignConfig
from ..models import LinearTeacher
from ..training import TrainData, ValData, objective_from_config
from .common import fit_teacher, heads_candidate, table_file
from .registry import MethodResult, MethodSpec, register_method
from .selection import Candidate, Fitted, Split, carve_validation, select

__all__ = ["fit_sotalign"]


def _teacher_cache(cfg: SOTAlignConfig) -> Callable[[TrainData], LinearTeacher]:
    """The teacher of a set of pairs, fitted once per set (candidates share it)."""
    cache: dict[int, tuple[TrainData, LinearTeacher]] = {}

    def teacher_for(data: TrainData) -> LinearTeacher:
        hit = cache.get(id(data))
        if hit is None or hit[0] is not data:
            hit = (data, fit_teacher(cfg, data))
            cache[id(data)] = hit
        return hit[1]

    return teacher_for


def fit_sotalign(
    cfg: SOTAlignConfig, data: TrainData, resume: bool, divergence: str | None = None
) -> MethodResult:
    """SOTAlign; ``divergence`` replaces ``cfg.train.divergence`` (the Table 1 methods)."""
    train = cfg.replace_train(divergence=divergence) if divergence else cfg.train
    uses_div = train.divergence != "none" and data.has_unpaired
    auto = cfg.alpha == "auto"
    if not uses_div and not auto and float(cfg.alpha) > 0:
        warnings.warn(
            "no unpaired data (or divergence 'none'): training SigLIP on pairs only", stacklevel=3
        )
    teacher_for = _teacher_cache(cfg)

    def heads(alpha: float, name: str) -> Candidate:
        objective = objective_from_config(train, alpha)

        def build(d: TrainData) -> tuple[TrainData, object, LinearTeacher | None]:
            return d, objective, teacher_for(d) if (uses_div or auto) else None

        return heads_candidate(cfg, name, build, train, resume, {"alpha": alpha})

    if not auto:
        split = carve_validation(data, cfg.val_fraction, train.seed, cfg.early_stopping)
        sel = select(
            [heads(float(cfg.alpha), f"alpha={float(cfg.alpha):g}")], data, split, refit=False
        )
        return MethodResult(sel.aligner, [], sel.history)

    def teacher_alone(
        d: TrainData, val: ValData | None, stop_at: int | None, final: bool
    ) -> Fitted:
        return Fitted(teacher_for(d))

    candidates = [Candidate(f"teacher:{cfg.teacher}", teacher_alone, {"alpha": None})]
    alphas = [0.0] + (list(cfg.alpha_grid) if uses_div else [])
    candidates += [heads(a, f"alpha={a:g}") for a in alphas]
    split = Split.of(data, cfg.val_fraction, train.seed)
    sel = select(
        candidates, data, split, refit=cfg.refit, table_file=table_file(cfg), resume=resume
    )
    return MethodResult(sel.aligner, sel.table, sel.history)


register_method(
    MethodSpec(
        "sotalign",
        "teacher + heads with SigLIP + α·KLOT (default)",
        fit_sotalign,
        uses_unpaired=True,
    )
)
for _div, _summary in (
    ("cka", "SOTAlign with CKA between K and K* instead of KLOT (Table 1)"),
    ("ginfonce", "SOTAlign with generalised InfoNCE instead of KLOT (Table 1)"),
):
    register_method(
        MethodSpec(
            f"sotalign_{_div}",
            _summary,
            lambda cfg, data, resume, _d=_div: fit_sotalign(cfg, data, resume, _d),
            uses_unpaired=True,
        )
    )
