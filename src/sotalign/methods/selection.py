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

With ``halving`` (successive halving, one rung; the default of SOTAlign's selection) the
trained candidates are not all trained to the end: each is trained to the rung step ``r`` (a
validation step near ``S/η`` of its ``S``-step schedule, η = 3), scored there by its best
validation result so far, and only the best ``⌈n/η⌉`` continue, from where they stopped, to
step ``S``; the others keep their rung score in the table. Candidates that do not train (the
teacher alone) are scored outright. With n = 3 trained candidates a selection costs
``3r + (S − r) ≈ 1.67 S`` steps instead of ``3 S``; the learning-rate schedule of a continued
candidate is the one of its full training, so a survivor ends exactly as it would without
halving.

Every training is checkpointed when a checkpoint folder is given (each candidate in its own
subfolder, the final fit beside them) and the selection table is cached row by row as the
candidates finish, so ``resume`` skips the finished candidates, continues the interrupted one
from its last checkpoint and does not select again once it had chosen — ending with the result
of an uninterrupted run. The test split is never seen.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import InputError
from ..eval import paired_rank_metrics, selection_key
from ..io import write_json_atomic
from ..models import Aligner
from ..parallel import is_writer
from ..training import TrainData, ValData, current_progress

__all__ = [
    "HALVING_ETA",
    "Candidate",
    "Fitted",
    "Halving",
    "Run",
    "Selection",
    "Split",
    "best_until",
    "cached_table",
    "carve_validation",
    "halving_schedule",
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


class Run(Protocol):
    """A training that can be advanced in stages (see :class:`~.common.HeadsRun`)."""

    @property
    def history(self) -> list[dict[str, float]]: ...

    def advance(self, stop_at: int | None = None, pause: bool = False) -> None: ...

    def finish(self) -> Fitted: ...


StartRun = Callable[[TrainData, ValData], Run]
"""``start(data, val)``: a :class:`Run` of the candidate on ``data``, early-stopped on ``val``."""


@dataclass
class Candidate:
    """A named way of fitting; ``info`` adds columns to its row of the selection table;
    ``start`` (trained candidates) lets successive halving train it in stages."""

    name: Any
    fit: FitCandidate
    info: dict[str, Any] = field(default_factory=dict)
    start: StartRun | None = None


HALVING_ETA = 3
"""Successive halving keeps the best ``⌈n/η⌉`` of ``n`` trained candidates at step ``≈ S/η``."""


@dataclass(frozen=True)
class Halving:
    """One rung of successive halving: at step ``rung`` the best ``keep`` trained candidates
    continue to the end of their schedule."""

    rung: int
    keep: int

    def steps(self, trained: int, total: int) -> int:
        """Training steps of the selection: every candidate to the rung, ``keep`` to the end."""
        return trained * self.rung + min(self.keep, trained) * (total - self.rung)


def halving_schedule(trained: int, steps: int, eval_every: int = 0) -> Halving | None:
    """The rung for ``trained`` candidates of ``steps`` steps each: the validation step
    (a multiple of ``eval_every``, default ``steps // 10``) nearest ``steps / η``; ``None``
    when there is nothing to halve (fewer than two candidates, or no validation step before
    the end)."""
    every = eval_every or max(steps // 10, 1)
    rung = max(every, round(steps / HALVING_ETA / every) * every)
    if trained < 2 or rung >= steps:
        return None
    return Halving(rung, math.ceil(trained / HALVING_ETA))


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
    halving: Halving | None = None,
) -> Selection:
    """Fit and score ``candidates`` on ``split``, pick the best, refit it on ``data``.

    See the module docstring. Without validation pairs (``split.val is None``) the first
    candidate is fitted on ``split.train`` and is the result. With one candidate and no refit
    its only fit is the final one. ``table_file``: where the table is cached; with ``resume``
    a cached table is used instead of selecting again. ``halving``: train the candidates with
    a ``start`` by successive halving (:func:`halving_schedule`).
    """
    if not candidates:
        raise ValueError("select() needs at least one candidate")
    if split.val is None:
        f = candidates[0].fit(split.train, None, None, True)
        return Selection(f.aligner, [], f.history)
    single_final = len(candidates) == 1 and not refit
    fitted: dict[int, Fitted] = {}
    table = cached_table(table_file, [c.name for c in candidates]) if resume else []
    if halving is not None and not any(row.get("selected") for row in table):
        table, fitted = _halve(candidates, split, halving)
    if not any(row.get("selected") for row in table):
        for i, c in enumerate(candidates):
            if i < len(table):
                continue  # scored before the interruption (its row was cached)
            _stage(f"candidate {i + 1}/{len(candidates)}: {c.name}")
            f = fitted[i] = c.fit(split.train, split.val, None, single_final)
            score = _score(f, split.val)
            table.append(_row(c, score, f.best_step, None))
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


def _halve(
    candidates: list[Candidate], split: Split, h: Halving
) -> tuple[list[dict[str, Any]], dict[int, Fitted]]:
    """Score every candidate by successive halving (module docstring): the rows of the
    table (without ``selected``) and the fits of the candidates trained to the end.

    A resumed selection runs this again: every run continues from its own checkpoints and
    the rung scores are read from the saved histories, so it ends as an uninterrupted one."""
    assert split.val is not None
    rows: dict[int, dict[str, Any]] = {}
    fitted: dict[int, Fitted] = {}
    trained = [i for i, c in enumerate(candidates) if c.start is not None]
    for i, c in enumerate(candidates):
        if c.start is None:
            f = c.fit(split.train, split.val, None, False)
            fitted[i] = f
            score = _score(f, split.val)
            rows[i] = _row(c, score, f.best_step, None)
    runs: dict[int, Run] = {}
    rung: dict[int, tuple[float | None, float | None, int | None]] = {}
    for k, i in enumerate(trained):
        c = candidates[i]
        _stage(f"candidate {k + 1}/{len(trained)}: {c.name}, to step {h.rung}")
        assert c.start is not None
        runs[i] = c.start(split.train, split.val)
        runs[i].advance(h.rung, pause=True)
        rung[i] = best_until(runs[i].history, h.rung)
    order = sorted(trained, key=lambda i: (selection_key(*rung[i][:2]), -i), reverse=True)
    kept = sorted(order[: h.keep])
    for i in trained:
        if i not in kept:
            r1, mrr, step = rung[i]
            rows[i] = _row(candidates[i], (r1, mrr), step, h.rung)
            del runs[i]  # free its model and optimiser
    for k, i in enumerate(kept):
        c = candidates[i]
        _stage(f"best {k + 1}/{len(kept)} of step {h.rung}: {c.name}, to the end")
        runs[i].advance()
        f = fitted[i] = runs.pop(i).finish()
        score = _score(f, split.val)
        rows[i] = _row(c, score, f.best_step, None)
    return [rows[i] for i in range(len(candidates))], fitted


def _score(f: Fitted, val: ValData) -> tuple[float | None, float | None]:
    """A fit's validation score: the one its training recorded, else measured now."""
    return f.score if f.score is not None else score_aligner(f.aligner, val)


def best_until(
    history: list[dict[str, float]], step: int
) -> tuple[float | None, float | None, int | None]:
    """(mean R@1, MRR, step) of the best validation in ``history`` up to ``step`` — what
    early stopping would have kept then (ties go to the later step, as in the trainer)."""
    best: tuple[float | None, float | None, int | None] = (None, None, None)
    for h in history:
        if "val_mean_R@1" in h and h["step"] <= step:
            r1, mrr = h["val_mean_R@1"], h.get("val_MRR")
            if selection_key(r1, mrr) >= selection_key(*best[:2]):
                best = (r1, mrr, int(h["step"]))
    return best


def _row(
    c: Candidate,
    score: tuple[float | None, float | None],
    best_step: int | None,
    stopped: int | None,
) -> dict[str, Any]:
    row = {
        "candidate": c.name,
        **c.info,
        "val_mean_R@1": score[0],
        "val_MRR": score[1],
        "best_step": best_step,
    }
    if stopped is not None:
        row["stopped_at"] = stopped  # halved: not trained past this step
    return row


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
