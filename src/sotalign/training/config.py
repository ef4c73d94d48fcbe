"""The typed configuration of head training (SPEC §3), validated once, when it is built.

:class:`TrainConfig` holds what one training run needs — optimisation, batches, the objective's
terms and the KLOT solver's options (a nested :class:`sotalign.ot.KLOTConfig`). It is frozen:
a method derives a variant with :func:`dataclasses.replace`, which validates again. The weight
α of the divergence is not part of it: α is chosen per candidate by a method and handed to the
objective (:func:`sotalign.training.objective.objective_from_config`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..checks import check_choice, check_float, check_int
from ..errors import ConfigError
from ..losses import DIVERGENCES, SUP_LOSSES
from ..ot import KLOTConfig

__all__ = ["MAX_EPS", "OPTIMIZERS", "TrainConfig", "check_device"]

OPTIMIZERS = ("lion", "adamw")
MAX_EPS = 10.0
"""Largest ε (and ε*) accepted for training: affinities are cosines in [-1, 1], so beyond it the
entropic plan is nearly uniform (``e^{2/ε}`` ≤ 1.22) and KLOT gives no training signal."""


def check_device(name: str, value: Any) -> str:
    """``auto`` or a torch device string (``cpu``, ``cuda``, ``cuda:1``)."""
    if isinstance(value, torch.device):
        value = str(value)
    if isinstance(value, str):
        if value == "auto":
            return value
        try:
            torch.device(value)
            return value
        except (RuntimeError, ValueError):
            pass
    raise ConfigError(f"{name} must be auto, cpu or cuda[:N], got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of head training; defaults follow the paper (SPEC §3).

    steps, lr, weight_decay, warmup, optimizer: Lion, 2000 steps, lr 1e-4, wd 1e-5, linear
    warm-up over 10 % of the steps then cosine decay to 0. batch_pairs: paired batch cap (all
    pairs up to 10k); batch_unpaired: size of the unpaired image and text batches (0: none).
    sup_loss, divergence: the terms of ``L_sup + α·D``; klot: KLOT's entropic OT options;
    ginfonce_temperature: τ of the generalised InfoNCE divergence. eval_every: validation
    interval in steps when a validation split is given (0: every steps/10). checkpoint_every:
    checkpoint interval (0: none). seed, device (``auto``: CUDA when available).
    """

    steps: int = 2000
    lr: float = 1e-4
    weight_decay: float = 1e-5
    warmup: float = 0.1
    optimizer: str = "lion"
    batch_pairs: int = 10_000
    batch_unpaired: int = 4096
    sup_loss: str = "siglip"
    divergence: str = "klot"
    klot: KLOTConfig = field(default_factory=KLOTConfig)
    ginfonce_temperature: float = 0.05
    eval_every: int = 0
    checkpoint_every: int = 0
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("steps", check_int("steps", self.steps, lo=1))
        put("lr", check_float("lr", self.lr, lo=0.0, lo_open=True))
        put("weight_decay", check_float("weight_decay", self.weight_decay, lo=0.0))
        put("warmup", check_float("warmup", self.warmup, lo=0.0))
        if self.warmup >= 1:
            raise ConfigError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}")
        put("optimizer", check_choice("optimizer", self.optimizer, OPTIMIZERS))
        put("batch_pairs", check_int("batch_pairs", self.batch_pairs, lo=2))
        put("batch_unpaired", check_int("batch_unpaired", self.batch_unpaired, lo=0))
        put("sup_loss", check_choice("sup_loss", self.sup_loss, SUP_LOSSES))
        put("divergence", check_choice("divergence", self.divergence, (*DIVERGENCES, "none")))
        if isinstance(self.klot, Mapping):
            put("klot", KLOTConfig(**self.klot))
        elif not isinstance(self.klot, KLOTConfig):
            raise ConfigError(f"klot must be a KLOTConfig or a mapping, got {self.klot!r}")
        for name in ("eps", "eps_teacher"):
            value = getattr(self.klot, name)
            if value > MAX_EPS:
                flat = math.exp(2 / MAX_EPS) - 1
                raise ConfigError(
                    f"{name} must be at most {MAX_EPS:g} for the cosine affinities of training"
                    f" (in [-1, 1], so the plan is uniform to within {flat:.0%} and KLOT carries"
                    f" no signal), got {value:g}"
                )
        put(
            "ginfonce_temperature",
            check_float("ginfonce_temperature", self.ginfonce_temperature, lo=0.0, lo_open=True),
        )
        put("eval_every", check_int("eval_every", self.eval_every, lo=0))
        put("checkpoint_every", check_int("checkpoint_every", self.checkpoint_every, lo=0))
        put("seed", check_int("seed", self.seed, lo=0))
        put("device", check_device("device", self.device))
