"""Baselines of SPEC §7 that share the aligner interface of :mod:`sotalign.teachers`.

Training-free baselines (fitted in closed form on the pairs only):

* :class:`ASIFAligner` (``kind="asif"``, method ``asif``) — relative representations against
  the pairs as anchors, top-k sparsified and sharpened (Norelli et al. 2023);
* :class:`CSAAligner` (``kind="csa"``, method ``csa``) — CCA with a canonical-correlation
  weighted similarity (Li et al. 2025).

Importing this package registers both as aligners (so saved models load) and as methods of
:class:`sotalign.SOTAlign` (``SOTAlign(method="asif", method_params={"k": 100})``).
"""

from __future__ import annotations

from typing import Any

from .asif import ASIFAligner
from .csa import CSAAligner

__all__ = ["BASELINES", "ASIFAligner", "CSAAligner"]

BASELINES: dict[str, type] = {"asif": ASIFAligner, "csa": CSAAligner}


def _register_methods() -> None:
    from ..estimator import MethodSpec, register_method

    def make(cls: type, summary: str) -> MethodSpec:
        def fit(est: Any, data: Any) -> Any:
            params = dict(getattr(est, "method_params", None) or {})
            return cls(**params).fit(data.images.array, data.texts.array)

        return MethodSpec(cls.kind, summary, fit)

    register_method(make(ASIFAligner, "ASIF: relative representations against the pairs "
                                      "(training-free)"))
    register_method(make(CSAAligner, "CSA: CCA with correlation-weighted similarity "
                                     "(training-free)"))


_register_methods()
from . import trained  # noqa: E402,F401  (registers STRUCTURE, NNCLR, S-CLIP)
