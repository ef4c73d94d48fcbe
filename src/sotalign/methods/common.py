"""Building blocks shared by the methods: fitting the teacher, training fresh heads, and
turning "train heads with this objective" into a selection :class:`~.select.Candidate`."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..config import SOTAlignConfig
from ..errors import ConfigError
from ..models import AlignmentModel, HeadsAligner, LinearTeacher, make_teacher
from ..training import Objective, TrainConfig, TrainData, Trainer, ValData
from .selection import Candidate, Fitted

__all__ = [
    "CANDIDATES_DIR",
    "HeadsRun",
    "candidate_dir",
    "fit_teacher",
    "heads_candidate",
    "table_file",
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


class HeadsRun:
    """A training of fresh heads (seeded) that can be advanced in stages — the selection's
    successive halving trains a candidate to a rung, scores it and continues only the best.

    ``final`` checkpoints into ``cfg.checkpoint_dir``, a selection candidate into
    ``checkpoint_dir`` (when given); ``resume`` continues from the checkpoints there."""

    def __init__(
        self,
        cfg: SOTAlignConfig,
        data: TrainData,
        objective: Objective,
        train: TrainConfig,
        *,
        teacher: LinearTeacher | None = None,
        val: ValData | None = None,
        final: bool = False,
        resume: bool = False,
        checkpoint_dir: Path | None = None,
    ) -> None:
        ckpt = cfg.checkpoint_dir if final else checkpoint_dir
        if cfg.head == "auto":
            raise ConfigError(
                f"head='auto' selects the head in SOTAlign's selection (alpha='auto'); for"
                f" method '{cfg.method}' or a fixed alpha give head=teacher, linear or mlp"
            )
        torch.manual_seed(train.seed)
        self.cfg, self.val = cfg, val
        self.model = AlignmentModel(
            data.images.dim, data.texts.dim, cfg.dim, cfg.head, teacher=teacher
        )
        self.trainer = Trainer(
            self.model, objective, data, train, val=val, checkpoint_dir=ckpt, progress=cfg.progress
        )
        self._resume = resume and ckpt is not None

    @property
    def history(self) -> list[dict[str, float]]:
        return self.trainer.history

    def advance(self, stop_at: int | None = None, pause: bool = False) -> None:
        """Train up to step ``stop_at`` (default: the end) of the schedule of ``train.steps``;
        ``pause``: a later call continues this training."""
        self.trainer.run(resume=self._resume, stop_at=stop_at, pause=pause)
        self._resume = False  # checkpoints are read once, at the start

    def finish(self) -> Fitted:
        """The result: the best validation weights when early-stopping on ``val``."""
        trainer = self.trainer
        if self.val is not None and self.cfg.early_stopping:
            trainer.restore_best()
        self.model.teacher = None
        return Fitted(
            HeadsAligner(self.model.cpu(), self.cfg.head),
            trainer.best_step,
            (trainer.best_score, trainer.best_mrr) if self.val is not None else None,
            trainer.history,
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

    def start(data: TrainData, val: ValData | None, final: bool = False) -> HeadsRun:
        tr_data, objective, teacher = build(data)
        return HeadsRun(
            cfg,
            tr_data,
            objective,
            train,
            teacher=teacher,
            val=val,
            final=final,
            resume=resume,
            checkpoint_dir=own,
        )

    def fit(data: TrainData, val: ValData | None, stop_at: int | None, final: bool) -> Fitted:
        run = start(data, val, final)
        run.advance(stop_at)
        return run.finish()

    return Candidate(name, fit, dict(info or {}), start)


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
