"""Building blocks shared by the methods: fitting the teacher, training fresh heads, and
turning "train heads with this objective" into a selection :class:`~.select.Candidate`."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..config import SOTAlignConfig
from ..models import AlignmentModel, HeadsAligner, LinearTeacher, make_teacher
from ..training import Objective, TrainConfig, TrainData, Trainer, ValData
from .selection import Candidate, Fitted

__all__ = [
    "CANDIDATES_DIR",
    "candidate_dir",
    "fit_teacher",
    "heads_candidate",
    "table_file",
    "train_heads",
]

CANDIDATES_DIR = "candidates"
"""Subfolder of the checkpoint folder holding each selection candidate's checkpoints."""


def fit_teacher(cfg: SOTAlignConfig, data: TrainData, name: str | None = None) -> LinearTeacher:
    """Fit the configured (or named) linear teacher on the pairs of ``data`` (SPEC §2)."""
    name = name or cfg.teacher
    kwargs: dict[str, Any] = {}
    if name == "cca":
        if cfg.teacher_reg == "auto":
            raise ValueError("teacher_reg='auto' must be resolved first (resolve_teacher_reg)")
        kwargs["reg"] = cfg.teacher_reg
    if name == "contrastive":
        kwargs["seed"] = cfg.train.seed
    return make_teacher(name, **kwargs).fit(data.images.array, data.texts.array)


def train_heads(
    cfg: SOTAlignConfig,
    data: TrainData,
    objective: Objective,
    train: TrainConfig,
    *,
    teacher: LinearTeacher | None = None,
    val: ValData | None = None,
    final: bool = False,
    resume: bool = False,
    stop_at: int | None = None,
    checkpoint_dir: Path | None = None,
) -> Fitted:
    """Train fresh heads (seeded) on ``data`` with ``objective``; early-stop on ``val``.

    ``stop_at`` ends at that step on the schedule of ``train.steps``; ``final`` checkpoints
    into ``cfg.checkpoint_dir``, a selection candidate into ``checkpoint_dir`` (when given);
    ``resume`` continues from the checkpoints there."""
    ckpt = cfg.checkpoint_dir if final else checkpoint_dir
    torch.manual_seed(train.seed)
    model = AlignmentModel(data.images.dim, data.texts.dim, cfg.dim, cfg.head, teacher=teacher)
    trainer = Trainer(
        model,
        objective,
        data,
        train,
        val=val,
        checkpoint_dir=ckpt,
        progress=cfg.progress,
    )
    result = trainer.run(resume=resume and ckpt is not None, stop_at=stop_at)
    if val is not None and cfg.early_stopping:
        trainer.restore_best()
    model.teacher = None
    return Fitted(
        HeadsAligner(model.cpu(), cfg.head),
        result.best_step,
        (result.best_score, result.best_mrr) if val is not None else None,
        result.history,
    )


def heads_candidate(
    cfg: SOTAlignConfig,
    name: Any,
    build: Callable[[TrainData], tuple[TrainData, Objective, LinearTeacher | None]],
    train: TrainConfig,
    resume: bool,
    info: dict[str, Any] | None = None,
) -> Candidate:
    """A candidate that trains heads: ``build(pairs_data)`` gives the data the trainer sees,
    the objective and the teacher for a given set of pairs (all may depend on the pairs)."""

    own = candidate_dir(cfg, name)

    def fit(data: TrainData, val: ValData | None, stop_at: int | None, final: bool) -> Fitted:
        tr_data, objective, teacher = build(data)
        return train_heads(
            cfg,
            tr_data,
            objective,
            train,
            teacher=teacher,
            val=val,
            final=final,
            resume=resume,
            stop_at=stop_at,
            checkpoint_dir=own,
        )

    return Candidate(name, fit, dict(info or {}))


def candidate_dir(cfg: SOTAlignConfig, name: Any) -> Path | None:
    """Where a selection candidate's training is checkpointed (``candidates/<name>`` beside
    the final training's checkpoints), so that ``--resume`` continues an interrupted one."""
    if not cfg.checkpoint_dir:
        return None
    slug = re.sub(r"[^A-Za-z0-9=.,_+-]+", "_", str(name)).strip("._") or "candidate"
    return Path(cfg.checkpoint_dir) / CANDIDATES_DIR / slug


def table_file(cfg: SOTAlignConfig) -> Path | None:
    """Where the selection table is cached for ``--resume`` (beside the checkpoints)."""
    return Path(cfg.checkpoint_dir) / "selection.json" if cfg.checkpoint_dir else None
