"""SOTAlign (SPEC §2-§3): a linear teacher fitted on the pairs, then heads trained with
``L_sup + α·D(K ‖ K*)`` on the pairs plus unpaired batches.

With ``alpha="auto"`` the candidates are the teacher alone, the heads without the divergence
(α = 0) and every α of ``alpha_grid``; they are fitted on the training part of the pairs (the
teacher of that part shared by all), selected on validation and the winner is refitted on all
pairs (:func:`sotalign.methods.selection.select`) — by default with successive halving: all
trained candidates to a third of the steps, the best third on to the end. A fixed α trains
once, early-stopped on a validation split. The Table 1 variants swap the divergence
(``sotalign_cka``, ``sotalign_ginfonce``).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Any

from ..config import HEAD_CANDIDATES, SOTAlignConfig
from ..errors import ConfigError
from ..models import LinearTeacher
from ..training import TrainConfig, TrainData, ValData, fit_progress, objective_from_config
from .common import fit_teacher, heads_candidate, table_file
from .plan import plan_fit, time_step
from .registry import MethodResult, MethodSpec, register_method
from .selection import (
    HALVING_ETA,
    Candidate,
    Fitted,
    Halving,
    Split,
    cached_table,
    carve_validation,
    halving_schedule,
    score_aligner,
    select,
)
from .teacher_search import resolve_teacher_reg

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
    # teacher_reg="auto": the CCA ridge chosen on the validation split (the α selection's own)
    ridge_rows: list[dict[str, Any]] = []
    if cfg.teacher == "cca" and cfg.teacher_reg == "auto":
        cfg, ridge_rows = resolve_teacher_reg(cfg, Split.of(data, cfg.val_fraction, train.seed))
    uses_div = train.divergence != "none" and data.has_unpaired
    auto = cfg.alpha == "auto"
    if not uses_div and not auto and float(cfg.alpha) > 0:
        warnings.warn(
            "no unpaired data (or divergence 'none'): training SigLIP on pairs only", stacklevel=3
        )
    teacher_for = _teacher_cache(cfg)
    with_teacher = uses_div or auto

    def heads(alpha: float, name: str, train: TrainConfig, head: str | None = None) -> Candidate:
        objective = objective_from_config(train, alpha)

        def build(d: TrainData) -> tuple[TrainData, object, LinearTeacher | None]:
            return d, objective, teacher_for(d) if with_teacher else None

        own = cfg if head is None else dataclasses.replace(cfg, head=head)
        info: dict[str, Any] = {"alpha": alpha} if head is None else {"alpha": alpha, "head": head}
        return heads_candidate(own, name, build, train, resume, info)

    def probe(
        d: TrainData,
        alphas: list[float],
        refit_alpha: float | None = None,
        train: TrainConfig = train,
        halved: bool = False,
    ) -> Callable[[], float]:
        """Mean seconds per step over the planned trainings on ``d``: one per α of ``alphas``,
        plus a refit (charged as a training with ``refit_alpha``, the costliest candidate's).
        ``halved`` (successive halving): every candidate is charged its own steps up to the
        rung (``1/η`` of the schedule) and the continued ones the costliest candidate's —
        which of them continue is not known before they have run."""

        def seconds() -> float:
            planned = [*alphas, *([] if refit_alpha is None else [refit_alpha])]
            teacher = teacher_for(d) if with_teacher else None
            # a step with α = 0 skips the OT term; every α > 0 costs about the same: one timing
            # per kind of step, the smallest α of each kind standing for it
            kinds = {a > 0: a for a in sorted(set(planned), reverse=True)}
            cost = {
                k: time_step(cfg, train, d, objective_from_config(train, a), teacher)
                for k, a in kinds.items()
            }
            own = [cost[a > 0] for a in alphas]
            refit = [] if refit_alpha is None else [cost[refit_alpha > 0]]
            if not (halved and len(alphas) >= 2):
                return sum(own + refit) / len(own + refit)
            f, kept = 1 / HALVING_ETA, math.ceil(len(alphas) / HALVING_ETA)
            steps = len(alphas) * f + kept * (1 - f) + len(refit)  # in trainings
            return (f * sum(own) + kept * (1 - f) * max(own) + sum(refit)) / steps

        return seconds

    if not auto:
        if cfg.head == "auto":
            raise ConfigError(
                "head='auto' selects the head together with alpha (alpha='auto'); with a fixed"
                " alpha give head=teacher or head=linear"
            )
        alpha = float(cfg.alpha)
        split = carve_validation(data, cfg.val_fraction, train.seed, cfg.early_stopping)
        train, plan = plan_fit(
            cfg, train, trainings=1, candidates=1, probe=probe(split.train, [alpha]), resume=resume
        )
        with fit_progress(plan.total_steps, cfg.progress):
            sel = select([heads(alpha, f"alpha={alpha:g}", train)], data, split, refit=False)
        if split.val is not None and sel.table and with_teacher:
            _warn_below_teacher(sel.table[0], score_aligner(teacher_for(split.train), split.val))
        return MethodResult(sel.aligner, [], sel.history, plan.as_dict(), ridge_rows)

    def teacher_alone(
        d: TrainData, val: ValData | None, stop_at: int | None, final: bool
    ) -> Fitted:
        return Fitted(teacher_for(d))

    # head="auto": every α with the teacher-initialised and with the linear head
    heads_grid: list[str | None] = list(HEAD_CANDIDATES) if cfg.head == "auto" else [None]
    grid = [(a, h) for a in [0.0] + (list(cfg.alpha_grid) if uses_div else []) for h in heads_grid]
    alphas = [a for a, _ in grid]
    split = Split.of(data, cfg.val_fraction, train.seed)
    table = table_file(cfg)
    names = [f"teacher:{cfg.teacher}"] + [
        f"alpha={a:g}" + ("" if h is None else f",head={h}") for a, h in grid
    ]
    rows = cached_table(table, names) if resume else []  # what an interrupted run finished
    done = any(r.get("selected") for r in rows)
    halving = cfg.selection == "halving" and not done
    # halving caches no row before it has chosen: every candidate is left until then
    left = 0 if done else len(alphas) - (0 if halving else max(len(rows) - 1, 0))
    train, plan = plan_fit(
        cfg,
        train,
        trainings=left + int(cfg.refit),
        candidates=len(alphas),
        probe=probe(
            split.train,
            alphas[len(alphas) - left :],
            max(alphas) if cfg.refit else None,
            halved=halving,
        ),
        resume=resume,
        halving=(lambda steps: halving_schedule(left, steps, train.eval_every))
        if halving
        else None,
    )
    candidates = [Candidate(names[0], teacher_alone, {"alpha": None})]
    candidates += [heads(a, name, train, h) for (a, h), name in zip(grid, names[1:], strict=True)]
    rung = Halving(plan.rung, plan.kept) if plan.rung is not None and plan.kept else None
    with fit_progress(plan.total_steps, cfg.progress):
        sel = select(
            candidates,
            data,
            split,
            refit=cfg.refit,
            table_file=table,
            resume=resume,
            halving=rung,
        )
    return MethodResult(sel.aligner, sel.table, sel.history, plan.as_dict(), ridge_rows)


BELOW_TEACHER_POINTS = 2.0
"""A fixed-α fit this many points of validation mean R@1 (and 10 %) below its own teacher is
reported (``alpha="auto"`` keeps the teacher as a candidate and cannot end there)."""


def _warn_below_teacher(row: dict[str, Any], teacher: tuple[float, float]) -> None:
    heads, ref = float(row["val_mean_R@1"]), float(teacher[0])
    if heads < ref - BELOW_TEACHER_POINTS and heads < 0.9 * ref:
        warnings.warn(
            f"the trained model ends clearly below its own teacher on the validation pairs"
            f" (mean R@1 {heads:.1f} vs {ref:.1f}): train longer, lower alpha, or use"
            " alpha='auto', which keeps the teacher when it is better",
            stacklevel=4,
        )


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
