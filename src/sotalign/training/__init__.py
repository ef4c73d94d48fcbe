"""Training the alignment heads (SPEC §3, Algorithm 1).

* :mod:`.config` — :class:`TrainConfig`, the typed options of one training run;
* :mod:`.data` — embedding pools and the seeded batch sampler;
* :mod:`.objective` — the SOTAlign objective ``L_sup + α·D(K ‖ K*)``;
* :mod:`.trainer` — the generic :class:`Trainer` (any objective), validation, checkpoints.
"""

from __future__ import annotations

from .config import TrainConfig
from .data import Batch, BatchSampler, EmbeddingPool, TrainData
from .objective import SOTAlignObjective, objective_from_config
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
    "Objective",
    "SOTAlignObjective",
    "TrainConfig",
    "TrainData",
    "TrainResult",
    "Trainer",
    "TrainingDivergedError",
    "ValData",
    "latest_checkpoint",
    "lr_at",
    "objective_from_config",
    "resolve_device",
    "validation_score",
]
