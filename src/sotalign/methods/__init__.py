"""Methods: named ways of fitting an aligner, and the one model-selection routine they share.

* :mod:`.registry` — :class:`MethodSpec`, :class:`MethodResult`, :func:`register_method`;
* :mod:`.select` — validation splits and :func:`select` (fit candidates, score on validation,
  refit the winner on all pairs at its best step);
* :mod:`.common` — teacher fitting and head training shared by the methods;
* :mod:`.sotalign` — SOTAlign and its Table 1 variants;
* :mod:`.baselines` — SAIL, the teachers alone, ASIF, CSA;
* :mod:`.trained` — STRUCTURE, NNCLR, S-CLIP.

Importing this package registers every built-in method.
"""

from __future__ import annotations

from . import baselines, sotalign, trained  # noqa: F401  (register the built-in methods)
from .registry import (
    METHODS,
    MethodResult,
    MethodSpec,
    available_methods,
    get_method,
    register_method,
)
from .selection import Candidate, Fitted, Selection, Split, select, split_pairs

__all__ = [
    "METHODS",
    "Candidate",
    "Fitted",
    "MethodResult",
    "MethodSpec",
    "Selection",
    "Split",
    "available_methods",
    "get_method",
    "register_method",
    "select",
    "split_pairs",
]
