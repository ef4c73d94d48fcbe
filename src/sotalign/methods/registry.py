"""The method registry: named ways of fitting an aligner.

A method is a function ``fit(config, data, resume) -> MethodResult``: it reads only the
validated :class:`sotalign.config.SOTAlignConfig`, trains or solves whatever it needs on the
:class:`sotalign.training.TrainData`, and returns its aligner together with a report (the
validation selection table and the training history). Methods never write onto the estimator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import SOTAlignConfig
from ..errors import ConfigError, closest
from ..models import Aligner
from ..training import TrainData

__all__ = [
    "METHODS",
    "FitFn",
    "MethodResult",
    "MethodSpec",
    "available_methods",
    "get_method",
    "register_method",
]


@dataclass
class MethodResult:
    """What a method returns: the fitted aligner and its report."""

    aligner: Aligner
    selection: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    teacher_search: list[dict[str, Any]] = field(default_factory=list)


FitFn = Callable[[SOTAlignConfig, TrainData, bool], MethodResult]
"""``fit(config, data, resume)``; ``resume`` continues from ``config.checkpoint_dir``."""


@dataclass
class MethodSpec:
    """A named way of fitting an aligner; ``uses_unpaired``: it learns from unpaired pools."""

    name: str
    summary: str
    fit: FitFn
    uses_unpaired: bool = False


METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    """Make ``spec`` available as ``SOTAlign(method=spec.name)`` and ``sotalign fit --method``."""
    METHODS[spec.name] = spec
    return spec


def available_methods() -> dict[str, MethodSpec]:
    """All registered methods (the built-in ones register when :mod:`sotalign.methods` loads)."""
    return METHODS


def get_method(name: str) -> MethodSpec:
    """The method called ``name``, or a one-line :class:`ConfigError` listing the choices."""
    if name not in METHODS:
        raise ConfigError(
            f"unknown method '{name}'{closest(name, list(METHODS))};"
            f" choose one of {', '.join(sorted(METHODS))}"
        )
    return METHODS[name]
