"""Aligners: everything that maps both modalities into one shared, L2-normalised space.

* :mod:`.registry` — the :class:`Aligner` protocol and the ``kind`` registry used to load models;
* :mod:`.teachers` — the linear teachers of SPEC §2 (ridge CCA, Procrustes, contrastive);
* :mod:`.heads` — the trainable heads, :class:`AlignmentModel` and :class:`HeadsAligner`;
* :mod:`.asif`, :mod:`.csa` — the training-free baselines of SPEC §7.

Importing this package registers every built-in aligner, so any saved model can be loaded.
"""

from __future__ import annotations

from .asif import ASIFAligner
from .csa import CSAAligner
from .heads import HEADS, AlignmentModel, HeadsAligner, make_head
from .registry import ALIGNERS, Aligner, aligner_from_state, register_aligner
from .teachers import (
    TEACHERS,
    CCATeacher,
    ContrastiveTeacher,
    LinearTeacher,
    ProcrustesTeacher,
    make_teacher,
)

__all__ = [
    "ALIGNERS",
    "HEADS",
    "TEACHERS",
    "ASIFAligner",
    "Aligner",
    "AlignmentModel",
    "CCATeacher",
    "CSAAligner",
    "ContrastiveTeacher",
    "HeadsAligner",
    "LinearTeacher",
    "ProcrustesTeacher",
    "aligner_from_state",
    "make_head",
    "make_teacher",
    "register_aligner",
]
