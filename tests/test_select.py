"""The one selection routine: score candidates on validation, keep the best, refit it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sotalign.methods.selection import Candidate, Fitted, Split, select, split_pairs
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
