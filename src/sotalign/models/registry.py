"""The aligner interface and its registry (what a saved model folder can hold).

An *aligner* maps both modalities into one L2-normalised space. Linear teachers, trained heads
and the training-free baselines are all aligners; :func:`register_aligner` makes a class
loadable by its ``kind`` string, so :meth:`sotalign.SOTAlign.load` can rebuild it from
``get_config()`` and ``state_dict()``. Importing :mod:`sotalign.models` registers every built-in
aligner.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from torch import Tensor

from ..arrays import ArrayLike
from ..errors import InputError, closest

__all__ = ["ALIGNERS", "Aligner", "aligner_from_state", "register_aligner"]


@runtime_checkable
class Aligner(Protocol):
    """What an aligner offers: both modalities into one L2-normalised space."""

    kind: ClassVar[str]

    def fit(self, A: ArrayLike, B: ArrayLike) -> Aligner: ...

    def encode_images(self, X: ArrayLike) -> Tensor: ...

    def encode_texts(self, Y: ArrayLike) -> Tensor: ...

    def state_dict(self) -> dict[str, Tensor]: ...

    def get_config(self) -> dict[str, Any]: ...

    @classmethod
    def from_state(cls, config: dict[str, Any], state: dict[str, Tensor]) -> Aligner: ...


ALIGNERS: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register_aligner(cls: T) -> T:
    """Class decorator: make ``cls`` loadable by its ``kind`` string."""
    ALIGNERS[cls.kind] = cls  # type: ignore[attr-defined]
    return cls


def aligner_from_state(config: dict[str, Any], state: dict[str, Tensor]) -> Aligner:
    """Rebuild a registered aligner from its ``get_config()`` and ``state_dict()``."""
    kind = config.get("kind", "")
    if kind not in ALIGNERS:
        raise InputError(f"unknown aligner kind '{kind}'{closest(kind, sorted(ALIGNERS))}")
    return ALIGNERS[kind].from_state(config, state)
