"""The one selection routine: score candidates on validation, keep the best, refit it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sotalign.methods.selection import (
    Candidate,
    Fitted,
    Halving,
    Split,
    best_until,
    halving_schedule,
    select,
    split_pairs,
)
from sotalign.training import TrainData


class Recorder:
    """A candidate whose fits are recorded; its 'aligner' is its own name."""

    def __init__(self, name, score, best_step=None):
        self.name, self.score, self.best_step, self.calls = name, score, best_step, []

    def fit(self, data, val, stop_at, final):
        self.calls.append(
            {"n": data.n_pairs, "val": val is not None, "stop_at": stop_at, "final": final}
        )
        return Fitted(self.name, self.best_step, self.score, [{"step": 1}])

    def candidate(self):
        return Candidate(self.name, self.fit, {"tag": self.name})


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return TrainData.from_arrays(rng.standard_normal((40, 4)), rng.standard_normal((40, 3)))


def test_picks_by_r1_then_mrr_and_refits_the_winner_at_its_best_step(data):
    a, b, c = (
        Recorder("a", (50.0, 60.0), 3),
        Recorder("b", (50.0, 70.0), 8),
        Recorder("c", (40.0, 99.0), 9),
    )
    split = Split.of(data, 0.2, seed=0)
    sel = select([a.candidate(), b.candidate(), c.candidate()], data, split, refit=True)
    assert sel.aligner == "b"
    assert [r["selected"] for r in sel.table] == [False, True, False]
    assert sel.table[1] == {
        "candidate": "b",
        "tag": "b",
        "val_mean_R@1": 50.0,
        "val_MRR": 70.0,
        "best_step": 8,
        "selected": True,
    }
    # every candidate trained on the 32 training pairs with validation, none final ...
    for r in (a, b, c):
        assert r.calls[0] == {"n": 32, "val": True, "stop_at": None, "final": False}
    # ... and only the winner was refitted on all 40 pairs, stopped at its best step
    assert b.calls[1] == {"n": 40, "val": False, "stop_at": 8, "final": True}
    assert len(a.calls) == len(c.calls) == 1


def test_exact_ties_keep_the_earlier_candidate(data):
    a, b = Recorder("a", (50.0, 60.0)), Recorder("b", (50.0, 60.0))
    sel = select([a.candidate(), b.candidate()], data, Split.of(data, 0.2, 0), refit=False)
    assert sel.aligner == "a" and len(a.calls) == 1  # no refit, no second fit


def test_single_candidate_without_refit_trains_once_as_the_final_fit(data):
    a = Recorder("a", (10.0, 20.0), 4)
    sel = select([a.candidate()], data, Split.of(data, 0.2, 0), refit=False)
    assert a.calls == [{"n": 32, "val": True, "stop_at": None, "final": True}]
    assert sel.table[0]["selected"]


def test_without_validation_the_first_candidate_is_fitted_on_all_pairs(data):
    a, b = Recorder("a", None), Recorder("b", None)
    sel = select([a.candidate(), b.candidate()], data, Split(data, None), refit=True)
    assert sel.aligner == "a" and sel.table == [] and b.calls == []
    assert a.calls == [{"n": 40, "val": False, "stop_at": None, "final": True}]


def test_candidates_without_a_training_score_are_scored_on_validation(data):
    class Perfect:  # maps pair i of both sides to the same one-hot vector
        def encode_images(self, X):
            return np.eye(len(X), 8)

        def encode_texts(self, Y):
            return np.eye(len(Y), 8)

    class Constant:  # every row the same: ties must not count as hits
        def encode_images(self, X):
            return np.ones((len(X), 8))

        def encode_texts(self, Y):
            return np.ones((len(Y), 8))

    cands = [
        Candidate("constant", lambda d, v, s, f: Fitted(Constant())),
        Candidate("perfect", lambda d, v, s, f: Fitted(Perfect())),
    ]
    sel = select(cands, data, Split.of(data, 0.2, 0), refit=False)
    assert [r["val_mean_R@1"] for r in sel.table] == [0.0, 100.0]
    assert isinstance(sel.aligner, Perfect)


def test_resume_reuses_the_cached_table(data, tmp_path):
    table_file = tmp_path / "selection.json"
    a, b = Recorder("a", (10.0, 0.0), 2), Recorder("b", (20.0, 0.0), 5)
    select(
        [a.candidate(), b.candidate()],
        data,
        Split.of(data, 0.2, 0),
        refit=True,
        table_file=table_file,
    )
    assert json.loads(table_file.read_text())[1]["selected"]
    a2, b2 = Recorder("a", (99.0, 0.0), 2), Recorder("b", (0.0, 0.0), 5)
    sel = select(
        [a2.candidate(), b2.candidate()],
        data,
        Split.of(data, 0.2, 0),
        refit=True,
        table_file=table_file,
        resume=True,
    )
    assert a2.calls == [] and b2.calls == [{"n": 40, "val": False, "stop_at": 5, "final": True}]
    assert sel.aligner == "b"


def test_split_pairs_is_seeded_disjoint_and_refuses_too_few_pairs():
    tr, va = split_pairs(50, 0.2, seed=3)
    assert len(va) == 10 and not set(tr) & set(va) and sorted([*tr, *va]) == list(range(50))
    _, va2 = split_pairs(50, 0.2, seed=3)
    assert np.array_equal(va, va2)
    from sotalign.errors import InputError

    with pytest.raises(InputError, match="too few"):
        split_pairs(3, 0.5, 0)


# -- successive halving --------------------------------------------------------------------


class Staged:
    """A trained candidate whose validation curve is given: ``curve[s]`` is (R@1, MRR) at
    validation step ``s``; it records how far it was advanced."""

    def __init__(self, name, curve, total=12):
        self.name, self.curve, self.total = name, curve, total
        self.advanced: list[tuple[int | None, bool]] = []
        self.history: list[dict[str, float]] = []
        self.step = 0

    def start(self, data, val):
        assert val is not None and data.n_pairs == 32
        return self

    def advance(self, stop_at=None, pause=False):
        self.advanced.append((stop_at, pause))
        end = self.total if stop_at is None else stop_at
        for s in range(self.step + 1, end + 1):
            row = {"step": s}
            if s in self.curve:
                row["val_mean_R@1"], row["val_MRR"] = self.curve[s]
            self.history.append(row)
        self.step = end

    def finish(self):
        r1, mrr, step = best_until(self.history, self.total)
        return Fitted(self.name, step, (r1, mrr), self.history)

    def fit(self, data, val, stop_at, final):  # the refit (or a full training)
        self.refit = {"n": data.n_pairs, "stop_at": stop_at, "final": final}
        return Fitted(self.name + "-refit", stop_at, None, [])

    def candidate(self):
        return Candidate(self.name, self.fit, {"tag": self.name}, start=self.start)


def test_halving_schedule_puts_the_rung_on_a_validation_step():
    assert halving_schedule(3, 300) == Halving(90, 1)  # validation every 30: 90 is nearest 100
    assert halving_schedule(5, 2000) == Halving(600, 2)  # ⌈5/3⌉ continue
    assert halving_schedule(6, 300, eval_every=25) == Halving(100, 2)
    assert halving_schedule(1, 300) is None  # nothing to halve
    assert halving_schedule(3, 30, eval_every=30) is None  # no validation before the end
    assert Halving(90, 1).steps(3, 300) == 3 * 90 + 210


def test_halving_continues_only_the_best_at_the_rung_and_refits_the_winner(data):
    # b leads at the rung (step 4) and ends best; c would have overtaken a later but is
    # stopped at the rung: halving only sees what the rung shows
    a = Staged("a", {2: (30.0, 40.0), 4: (35.0, 45.0), 8: (36.0, 46.0)})
    b = Staged("b", {2: (20.0, 30.0), 4: (50.0, 55.0), 8: (60.0, 65.0), 12: (58.0, 64.0)})
    c = Staged("c", {2: (10.0, 20.0), 4: (34.0, 40.0), 12: (90.0, 95.0)})
    teacher = Recorder("teacher", (40.0, 50.0))
    cands = [teacher.candidate(), a.candidate(), b.candidate(), c.candidate()]
    sel = select(cands, data, Split.of(data, 0.2, 0), refit=True, halving=Halving(4, 1))
    assert [r["candidate"] for r in sel.table] == ["teacher", "a", "b", "c"]
    assert [r["selected"] for r in sel.table] == [False, False, True, False]
    assert a.advanced == c.advanced == [(4, True)]  # stopped at the rung, never continued
    assert b.advanced == [(4, True), (None, False)]  # continued from where it stopped
    assert sel.table[1] == {"candidate": "a", "tag": "a", "val_mean_R@1": 35.0,
                            "val_MRR": 45.0, "best_step": 4, "stopped_at": 4,
                            "selected": False}  # fmt: skip
    assert sel.table[2]["val_mean_R@1"] == 60.0 and sel.table[2]["best_step"] == 8
    assert "stopped_at" not in sel.table[2] and sel.table[0]["val_mean_R@1"] == 40.0
    assert b.refit == {"n": 40, "stop_at": 8, "final": True} and sel.aligner == "b-refit"
    assert not hasattr(a, "refit") and not hasattr(c, "refit")


def test_halving_ties_at_the_rung_keep_the_earlier_candidate_and_can_keep_the_teacher(data):
    a = Staged("a", {4: (30.0, 40.0), 12: (31.0, 41.0)})
    b = Staged("b", {4: (30.0, 40.0), 12: (99.0, 99.0)})
    teacher = Recorder("teacher", (50.0, 60.0))
    sel = select([teacher.candidate(), a.candidate(), b.candidate()], data,
                 Split.of(data, 0.2, 0), refit=False, halving=Halving(4, 1))  # fmt: skip
    assert a.advanced == [(4, True), (None, False)] and b.advanced == [(4, True)]
    assert sel.aligner == "teacher" and sel.table[0]["selected"]


def test_best_until_reads_the_history_up_to_a_step_with_ties_to_the_later():
    history = [{"step": 1}, {"step": 2, "val_mean_R@1": 5.0, "val_MRR": 9.0},
               {"step": 4, "val_mean_R@1": 5.0, "val_MRR": 9.0},
               {"step": 6, "val_mean_R@1": 7.0, "val_MRR": 1.0}]  # fmt: skip
    assert best_until(history, 5) == (5.0, 9.0, 4)
    assert best_until(history, 6) == (7.0, 1.0, 6)
    assert best_until(history, 1) == (None, None, None)
