"""Model selection on a validation split carved from the pairs — the one routine every method,
the estimator and the benchmark use.

Given candidates (ways of fitting an aligner) and a split of the pairs into a training part
and a validation part, :func:`select`

1. fits every candidate on the training part (trained candidates early-stop on validation and
   report their best step),
2. scores each on the validation pairs by the key (mean R@1, MRR) of
   :func:`sotalign.eval.selection_key` — the mean reciprocal rank breaks ties of R@1, which a
   small validation gallery produces often; exact ties keep the earlier (simpler) candidate,
3. with ``refit``, fits the winner again on *all* pairs, along the same learning-rate schedule
   and stopped at its best validation step (``stop_at``), so the final model sees every pair;
   without, the winner as fitted on the training part is the result.

Every training is checkpointed when a checkpoint folder is given (each candidate in its own
subfolder, the final fit beside them) and the selection table is cached row by row as the
candidates finish, so ``resume`` skips the finished candidates, continues the interrupted one
from its last checkpoint and does not select again once it had chosen — ending with the result
of an uninterrupted run. The test split is never seen.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..eval import paired_rank_metrics, selection_key
from ..io import write_json_atomic
from ..models import Aligner
from ..parallel import is_writer
from ..training import TrainData, ValData, current_progress

__all__ = [
    "Candidate",
    "Fitted",
    "Selection",
    "Split",
    "cached_table",
    "carve_validation",
    "score_aligner",
    "select",
    "split_pairs",
]


def split_pairs(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of pair indices into (train, validation); validation has ≥ 2 pairs."""
    rng = np.random.Generator(np.random.PCG64(seed + 7919))
    perm = rng.permutation(n)
    n_val = max(2, round(n * val_fraction))
    if n - n_val < 2:
        raise InputError(
            f"{n} pairs are too few to hold out a validation split; "
            "pass alpha=<number> (e.g. --set alpha=1e-3) to skip selection"
        )
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@dataclass
class Split:
    """The pairs to train on (unpaired pools unchanged) and the validation pairs (or None)."""

    train: TrainData
    val: ValData | None

    @classmethod
    def of(cls, data: TrainData, val_fraction: float, seed: int) -> Split:
        """Hold out ``val_fraction`` of the pairs (:func:`split_pairs`)."""
        tr, va = split_pairs(data.n_pairs, val_fraction, seed)
        return cls(_subset(data, tr), ValData(data.images.gather(va), data.texts.gather(va)))


def carve_validation(
    data: TrainData, val_fraction: float, seed: int, early_stopping: bool = True
) -> Split:
    """A validation split for early stopping, or none (all pairs train) when early stopping is
    off, ``val_fraction`` is 0 or there are fewer than 10 pairs."""
    if not (early_stopping and val_fraction > 0 and data.n_pairs >= 10):
        return Split(data, None)
    return Split.of(data, val_fraction, seed)


def _subset(data: TrainData, idx: np.ndarray) -> TrainData:
    return TrainData.from_arrays(
        data.images.array[idx],
        data.texts.array[idx],
        None if data.unpaired_images is None else data.unpaired_images.array,
        None if data.unpaired_texts is None else data.unpaired_texts.array,
    )


def score_aligner(aligner: Any, val: ValData) -> tuple[float, float]:
    """(mean R@1, MRR) in percent of anything with ``encode_images``/``encode_texts``."""
    m = paired_rank_metrics(aligner.encode_images(val.images), aligner.encode_texts(val.texts))
    return m["mean_R@1"], m["MRR"]


@dataclass
class Fitted:
    """One fit of a candidate: the aligner, its best validation step and score (when it
    early-stopped during training; otherwise it is scored afterwards) and its history."""

    aligner: Aligner
    best_step: int | None = None
    score: tuple[float | None, float | None] | None = None
    history: list[dict[str, float]] = field(default_factory=list)


FitCandidate = Callable[[TrainData, "ValData | None", "int | None", bool], Fitted]
"""``fit(data, val, stop_at, final)``: fit on ``data``; early-stop on ``val`` when given; stop
at step ``stop_at`` of the full schedule; ``final``: this fit is the result (checkpoint it)."""


@dataclass
class Candidate:
    """A named way of fitting; ``info`` adds columns to its row of the selection table."""

    name: Any
    fit: FitCandidate
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Selection:
    """The selected, final aligner; the table of candidates and scores; its training history."""

    aligner: Aligner
    table: list[dict[str, Any]]
    history: list[dict[str, float]]


def select(
    candidates: list[Candidate],
    data: TrainData,
    split: Split,
    *,
    refit: bool,
    table_file: Path | None = None,
    resume: bool = False,
) -> Selection:
    """Fit and score ``candidates`` on ``split``, pick the best, refit it on ``data``.

    See the module docstring. Without validation pairs (``split.val is None``) the first
    candidate is fitted on ``split.train`` and is the result. With one candidate and no refit
    its only fit is the final one. ``table_file``: where the table is cached; with ``resume``
    a cached table is used instead of selecting again.
    """
    if not candidates:
        raise ValueError("select() needs at least one candidate")
    if split.val is None:
        f = candidates[0].fit(split.train, None, None, True)
        return Selection(f.aligner, [], f.history)
    single_final = len(candidates) == 1 and not refit
    fitted: dict[int, Fitted] = {}
    table = cached_table(table_file, [c.name for c in candidates]) if resume else []
    if not any(row.get("selected") for row in table):
        for i, c in enumerate(candidates):
            if i < len(table):
                continue  # scored before the interruption (its row was cached)
            _stage(f"candidate {i + 1}/{len(candidates)}: {c.name}")
            f = c.fit(split.train, split.val, None, single_final)
            r1, mrr = f.score if f.score is not None else score_aligner(f.aligner, split.val)
            fitted[i] = f
            table.append(
                {
                    "candidate": c.name,
                    **c.info,
                    "val_mean_R@1": r1,
                    "val_MRR": mrr,
                    "best_step": f.best_step,
                }
            )
            if table_file is not None and is_writer():  # a resumed run skips this candidate
                write_json_atomic(table_file, table)
        best_i = max(
            range(len(table)),
            key=lambda i: selection_key(table[i]["val_mean_R@1"], table[i]["val_MRR"]),
        )
        for i, row in enumerate(table):
            row["selected"] = i == best_i
        if table_file is not None and is_writer():  # under torchrun: rank 0 writes
            write_json_atomic(table_file, table)
    best_i = next(i for i, row in enumerate(table) if row.get("selected"))
    cand = candidates[best_i]
    if not refit:
        f = fitted.get(best_i) or cand.fit(split.train, split.val, None, single_final)
        return Selection(f.aligner, table, f.history)
    _stage(f"refit on all pairs: {cand.name}")
    f = cand.fit(data, None, table[best_i]["best_step"], True)
    return Selection(f.aligner, table, f.history)


def cached_table(table_file: Path | None, names: list[Any]) -> list[dict[str, Any]]:
    """The rows an interrupted selection cached (one per finished candidate, in order; with a
    ``selected`` row once it had chosen), checked against the candidates' ``names``."""
    if table_file is None or not table_file.is_file():
        return []
    try:
        rows = json.loads(table_file.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{table_file}: cannot read the cached selection ({exc}); start again with --overwrite"
        ) from exc
    names = [str(n) for n in names]
    ok = isinstance(rows, list) and len(rows) <= len(names)
    if not ok or any(
        not isinstance(r, dict) or str(r.get("candidate")) != n
        for r, n in zip(rows, names[: len(rows)], strict=True)
    ):
        raise InputError(
            f"{table_file}: the cached selection is not this fit's (other candidates);"
            " resume with the same settings, or start again with --overwrite"
        )
    return rows


def _stage(label: str) -> None:
    """Name the running training on the fit's progress bar (if one is shown)."""
    progress = current_progress()
    if progress is not None:
        progress.stage(label)
