"""Training the alignment heads (SPEC §3, Algorithm 1).

* :mod:`.config` — :class:`TrainConfig`, the typed options of one training run;
* :mod:`.data` — embedding pools and the seeded batch sampler;
* :mod:`.objective` — the SOTAlign objective ``L_sup + α·D(K ‖ K*)``;
* :mod:`.trainer` — the generic :class:`Trainer` (any objective), validation, checkpoints;
* :mod:`.progress` — one progress bar for a whole fit (every candidate's training).
"""

from __future__ import annotations

from .config import TrainConfig
from .data import Batch, BatchSampler, EmbeddingPool, TrainData
from .objective import SOTAlignObjective, objective_from_config
from .progress import FitProgress, current_progress, fit_progress
from .trainer import (
    Objective,
    Trainer,
    TrainingDivergedError,
    TrainResult,
    ValData,
    latest_checkpoint,
    lr_at,
    resolve_device,
    validation_score,
)

__all__ = [
    "Batch",
    "BatchSampler",
    "EmbeddingPool",
    "FitProgress",
    "Objective",
    "SOTAlignObjective",
    "TrainConfig",
    "TrainData",
    "TrainResult",
    "Trainer",
    "TrainingDivergedError",
    "ValData",
    "current_progress",
    "fit_progress",
    "latest_checkpoint",
    "lr_at",
    "objective_from_config",
    "resolve_device",
    "validation_score",
]
