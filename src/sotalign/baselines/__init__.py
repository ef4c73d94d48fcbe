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
            import inspect

            from ..errors import ConfigError, closest

            params = getattr(est, "method_params", None) or {}
            if not isinstance(params, dict):
                raise ConfigError(f"method_params of '{cls.kind}' must be a mapping, "
                                  f"got {type(params).__name__}")
            valid = [n for n in inspect.signature(cls).parameters if n != "self"]
            for name in params:
                if name not in valid:
                    raise ConfigError(
                        f"unknown option '{name}' for method '{cls.kind}'"
                        f"{closest(name, valid)}; valid options: {', '.join(valid)}"
                    )
            return cls(**params).fit(data.images.array, data.texts.array)

        return MethodSpec(cls.kind, summary, fit)

    register_method(make(ASIFAligner, "ASIF: relative representations against the pairs "
                                      "(training-free)"))
    register_method(make(CSAAligner, "CSA: CCA with correlation-weighted similarity "
                                     "(training-free)"))


_register_methods()
from . import trained  # noqa: E402,F401  (registers STRUCTURE, NNCLR, S-CLIP)
