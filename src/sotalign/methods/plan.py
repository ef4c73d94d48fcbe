"""How long a fit will take, and how many steps fit a time budget.

A fit with selection runs ``T`` trainings of ``S`` steps each (every trained candidate, then the
refit of the winner), so its time is about

    t ≈ T · S · s,     s = the measured seconds per training step

— with successive halving (:mod:`sotalign.methods.selection`) a candidate stopped at the rung
counts as the share of a training it runs, so ``T`` need not be whole

(the teacher, validation and saving are small next to it on the pools SOTAlign is for).
:func:`time_step` measures ``s`` on the run's own data, objective and device — a few real
steps of a throw-away trainer after one warm-up step (median); under torchrun the slowest
rank's. With a budget ``B``, :func:`plan_steps` keeps the configured ``S`` when it fits and
otherwise lowers it to ``⌊0.85·B / (T·s)⌋`` (15 % is left for what the formula leaves out);
the learning-rate schedule follows the planned ``S``, so a budgeted run is a complete,
shorter training, not a truncated one. The time the measurement itself took is taken off the
budget first.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..config import SOTAlignConfig
from ..errors import ConfigError
from ..io import write_json_atomic
from ..models import AlignmentModel, LinearTeacher
from ..parallel import Comm, is_writer
from ..training import Objective, TrainConfig, TrainData, Trainer, resolve_device
from .selection import Halving

__all__ = [
    "HEADROOM",
    "LONG_FIT_S",
    "MIN_STEPS",
    "PLAN_FILE",
    "PROBE_STEPS",
    "Plan",
    "device_name",
    "format_duration",
    "plan_fit",
    "plan_steps",
    "report",
    "time_step",
]

HEADROOM = 0.85
"""Share of a budget planned for training steps (the rest: teacher, validation, saving)."""
MIN_STEPS = 10
"""Fewest steps per training a budget may plan; a smaller budget is refused."""
LONG_FIT_S = 3600.0
"""Without a budget, a plan longer than this is warned about."""
PLAN_FILE = "plan.json"
"""The plan, saved beside the checkpoints (a resumed fit keeps its schedule)."""
PROBE_REPEATS = 2
PROBE_STEPS = 1 + PROBE_REPEATS
"""Optimiser steps :func:`time_step` takes (on a throw-away model) before a fit trains."""


@dataclass(frozen=True)
class Plan:
    """The trainings of a fit and their expected time (``estimate_s``, an upper bound: an
    early-stopped refit is shorter)."""

    trainings: int
    candidates: int
    steps: int
    configured_steps: int
    sec_per_step: float
    device: str
    budget_s: float | None = None
    rung: int | None = None
    kept: int | None = None

    @property
    def total_steps(self) -> int:
        """Training steps of the whole fit: with successive halving (``rung``, ``kept``) the
        candidates run to the rung and ``kept`` of them on to the end; the rest train fully."""
        if self.rung is None or self.kept is None:
            return self.trainings * self.steps
        halved = self.candidates * self.rung + self.kept * (self.steps - self.rung)
        return halved + (self.trainings - self.candidates) * self.steps

    @property
    def estimate_s(self) -> float:
        return self.total_steps * self.sec_per_step

    def describe(self) -> str:
        what = f"{self.candidates} candidate{'s' * (self.candidates != 1)}"
        if self.rung is not None:
            what += f" (the best {self.kept} continued after step {self.rung})"
        if self.trainings > self.candidates:
            what += " + refit"
        line = (
            f"plan: {what} × {self.steps} steps, about {format_duration(self.estimate_s)}"
            f" on {self.device} ({self.sec_per_step:.3g} s/step)"
        )
        if self.budget_s is not None:
            line += f"; budget {format_duration(self.budget_s)}"
            if self.steps < self.configured_steps:
                line += f" (steps lowered from {self.configured_steps})"
        return line

    def as_dict(self) -> dict[str, float | int | str | None]:
        return {**asdict(self), "total_steps": self.total_steps, "estimate_s": self.estimate_s}


def format_duration(seconds: float) -> str:
    """``42 s``, ``7 min``, ``1 h 05 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def plan_steps(
    configured: int, trainings: float, sec_per_step: float, budget_s: float | None
) -> int:
    """Steps per training: ``configured``, or fewer so that ``trainings`` of them fit in
    ``HEADROOM · budget_s`` (see the module docstring)."""
    if budget_s is None or trainings == 0:
        return configured
    fit = math.floor(HEADROOM * budget_s / (trainings * max(sec_per_step, 1e-9)))
    if fit < MIN_STEPS:
        need = MIN_STEPS * trainings * sec_per_step / HEADROOM
        raise ConfigError(
            f"a budget of {format_duration(budget_s)} leaves {max(fit, 0)} steps for each of"
            f" {trainings:.3g} trainings ({sec_per_step:.3g} s/step here); give at least"
            f" {format_duration(need)}, fewer candidates (alpha=<number>) or smaller batches"
        )
    return min(configured, fit)


def time_step(
    cfg: SOTAlignConfig,
    train: TrainConfig,
    data: TrainData,
    objective: Objective,
    teacher: LinearTeacher | None,
    repeats: int = PROBE_REPEATS,
) -> float:
    """Seconds per training step of ``objective`` on ``data`` (median of ``repeats`` steps
    after a warm-up step; the slowest rank's under torchrun). Seeds are restored, so the fit
    that follows is the one it would have been."""
    rng = torch.get_rng_state()
    try:
        head = "teacher" if cfg.head == "auto" else cfg.head  # the heads cost the same
        model = AlignmentModel(data.images.dim, data.texts.dim, cfg.dim, head, teacher=teacher)
        trainer = Trainer(model, objective, data, train, progress=False)
        times = []
        for i in range(1 + repeats):
            t0 = time.perf_counter()
            trainer.run(stop_after=1)
            if i:
                times.append(time.perf_counter() - t0)
    finally:
        torch.set_rng_state(rng)
    seconds = statistics.median(times)
    return float(Comm.from_group().max_(torch.tensor([seconds], dtype=torch.float64)))


def report(plan: Plan, show: bool) -> None:
    """Print the plan (stderr, with the progress bars) and warn about a fit over an hour."""
    if show:
        tqdm.write(plan.describe(), file=sys.stderr)
    if plan.budget_s is None and plan.estimate_s > LONG_FIT_S:
        warnings.warn(
            f"this fit is planned to take about {format_duration(plan.estimate_s)} on"
            f" {plan.device} ({plan.trainings} trainings × {plan.steps} steps);"
            " pass --budget 30m (budget='30m') to plan it within a time, or fewer steps",
            stacklevel=3,
        )


def device_name(train: TrainConfig) -> str:
    """``cpu`` or ``cuda``: where the run's training steps execute."""
    return resolve_device(train.device).type


def plan_fit(
    cfg: SOTAlignConfig,
    train: TrainConfig,
    *,
    trainings: int,
    candidates: int,
    probe: Callable[[], float],
    resume: bool = False,
    halving: Callable[[int], Halving | None] | None = None,
) -> tuple[TrainConfig, Plan]:
    """Plan a fit of ``trainings`` trainings (``candidates`` of them selection candidates):
    time a step with ``probe``, fit the steps to ``cfg.budget``, report the plan; return the
    training configuration with the planned steps, and the plan. ``halving(steps)``: the
    successive-halving rung of the candidates for a number of steps (``None``: no halving);
    a budget then counts a halved candidate as the share of a training it runs.

    The plan is saved beside the checkpoints (``plan.json``) and a resumed fit reuses it, so
    an interrupted budgeted fit resumes on the same schedule."""
    saved = Path(cfg.checkpoint_dir) / PLAN_FILE if cfg.checkpoint_dir else None
    plan: Plan | None = None
    if resume and saved is not None and saved.is_file():
        try:
            fields = {f.name for f in dataclasses.fields(Plan)}
            plan = Plan(**{k: v for k, v in json.loads(saved.read_text()).items() if k in fields})
        except (OSError, ValueError, TypeError):
            plan = None  # unreadable: plan again (the checkpoints refuse a different schedule)
    if plan is None:
        t0 = time.perf_counter()
        sec = probe() if trainings else 0.0
        left = None if cfg.budget is None else cfg.budget - (time.perf_counter() - t0)
        h = halving(train.steps) if halving and trainings else None
        share = trainings  # trainings' worth of steps, a halved candidate counted by its share
        if h is not None:
            share = trainings - candidates + h.steps(candidates, train.steps) / train.steps
        steps = plan_steps(train.steps, share, sec, left)
        h = halving(steps) if halving and trainings else None
        plan = Plan(
            trainings,
            candidates,
            steps,
            train.steps,
            sec,
            device_name(train),
            cfg.budget,
            h.rung if h else None,
            h.keep if h else None,
        )
        if saved is not None and is_writer():
            write_json_atomic(saved, plan.as_dict())
    report(plan, cfg.progress and is_writer())
    if plan.steps != train.steps:
        train = dataclasses.replace(train, steps=plan.steps)
    return train, plan
