"""Selecting the CCA teacher's ridge on the validation split of the pairs.

The ridge λ of :func:`sotalign.models.teachers.cca_fit` (``C_aa + λI``, ``C_bb + λI`` in the
whitening) trades the canonical correlations fitted on few pairs against their stability; the
paper fixes λ = 0.1, while the λ that suits a data set differs (on the WordNet development split
λ = 0.01 scores 1.4 points of mean R@1 above 0.1 at 1,000 pairs, and 0.1 is best at 200). With
``teacher_reg="auto"`` every λ of ``teacher_reg_grid`` fits the teacher on the training part of
the pairs and is scored on the validation part by the key of :func:`sotalign.eval.selection_key`
(mean R@1, ties broken by the MRR; exact ties keep the earlier λ of the grid, the paper's 0.1
first by default). The chosen λ is then used everywhere the method fits its teacher — the
candidates of SOTAlign's selection and the refit on all pairs. The test split is never seen.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import SOTAlignConfig
from ..eval import selection_key
from ..models import make_teacher
from .selection import Split, score_aligner

__all__ = ["resolve_teacher_reg", "search_ridge"]


def search_ridge(split: Split, grid: tuple[float, ...]) -> tuple[float, list[dict[str, Any]]]:
    """The ridge of ``grid`` whose CCA teacher (fitted on ``split.train``) scores best on
    ``split.val``, and one row per ridge (``teacher_reg``, ``val_mean_R@1``, ``val_MRR``)."""
    if split.val is None:
        raise ValueError("search_ridge needs validation pairs")
    rows: list[dict[str, Any]] = []
    A, B = split.train.images.array, split.train.texts.array
    for reg in grid:
        teacher = make_teacher("cca", reg=float(reg)).fit(A, B)
        r1, mrr = score_aligner(teacher, split.val)
        rows.append({"teacher_reg": float(reg), "val_mean_R@1": r1, "val_MRR": mrr})
    best = max(
        range(len(rows)),
        key=lambda i: (selection_key(rows[i]["val_mean_R@1"], rows[i]["val_MRR"]), -i),
    )
    for i, row in enumerate(rows):
        row["selected"] = i == best
    return rows[best]["teacher_reg"], rows


def resolve_teacher_reg(
    cfg: SOTAlignConfig, split: Split
) -> tuple[SOTAlignConfig, list[dict[str, Any]]]:
    """``cfg`` with ``teacher_reg="auto"`` replaced by the ridge selected on ``split`` (and
    the search's rows); any other configuration is returned unchanged, with no rows."""
    if cfg.teacher != "cca" or cfg.teacher_reg != "auto":
        return cfg, []
    reg, rows = search_ridge(split, cfg.teacher_reg_grid)
    return dataclasses.replace(cfg, teacher_reg=reg), rows
