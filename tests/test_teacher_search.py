"""teacher_reg="auto": the CCA ridge selected on the validation split of the pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sotalign import SOTAlign
from sotalign.errors import ConfigError
from sotalign.eval import paired_rank_metrics
from sotalign.methods.selection import Split
from sotalign.methods.teacher_search import search_ridge
from sotalign.models.teachers import CCATeacher
from sotalign.training import TrainData

GRID = (0.1, 0.01, 0.001, 1.0)


@pytest.fixture(scope="module")
def few_pairs(two_view):
    """64-d / 48-d views with 96 pairs: the ridge matters (small ridges over-fit)."""
    A, B = two_view.pairs(120, 1)
    return A, B, Split.of(TrainData.from_arrays(A, B), 0.2, 0)


def test_each_ridge_is_scored_as_a_teacher_fitted_on_its_own(few_pairs):
    _, _, split = few_pairs
    reg, rows = search_ridge(split, GRID)
    A, B = split.train.images.array, split.train.texts.array
    for row in rows:  # an independent fit and score of the same ridge
        t = CCATeacher(reg=row["teacher_reg"]).fit(np.asarray(A), np.asarray(B))
        m = paired_rank_metrics(t.encode_images(split.val.images), t.encode_texts(split.val.texts))
        assert row["val_mean_R@1"] == pytest.approx(m["mean_R@1"])
        assert row["val_MRR"] == pytest.approx(m["MRR"])
    best = max(rows, key=lambda r: (r["val_mean_R@1"], r["val_MRR"]))
    assert reg == best["teacher_reg"] and best["selected"]
    assert sum(r["selected"] for r in rows) == 1
    worst = min(rows, key=lambda r: (r["val_mean_R@1"], r["val_MRR"]))
    assert worst["val_mean_R@1"] < best["val_mean_R@1"]  # the choice matters on this data


def test_exact_ties_keep_the_earlier_ridge(few_pairs):
    _, _, split = few_pairs
    reg, rows = search_ridge(split, (0.5, 0.5, 0.5))
    assert reg == 0.5 and [r["selected"] for r in rows] == [True, False, False]


def test_the_cca_method_uses_the_selected_ridge(few_pairs):
    A, B, _ = few_pairs
    est = SOTAlign(method="cca", teacher_reg="auto", progress=False).fit(A, B)
    chosen = next(r for r in est.teacher_search_ if r["selected"])["teacher_reg"]
    assert est.aligner_.reg == chosen and len(est.teacher_search_) == len(GRID)
    fixed = SOTAlign(method="cca", teacher_reg=0.001, progress=False).fit(A, B)
    assert fixed.aligner_.reg == 0.001 and fixed.teacher_search_ == []


def test_sotalign_distils_the_selected_teacher(few_pairs, two_view, tmp_path):
    A, B, _ = few_pairs
    X, Y = two_view.unpaired(200, 180, 2)
    est = SOTAlign(
        teacher_reg="auto", steps=10, dim=16, batch_unpaired=64, sinkhorn_iters=10,
        alpha_grid=[1.0], device="cpu", progress=False,
    ).fit(A, B, X, Y)  # fmt: skip
    chosen = next(r for r in est.teacher_search_ if r["selected"])
    teacher_row = next(r for r in est.selection_ if r["candidate"] == "teacher:cca")
    # the teacher candidate is the chosen ridge's teacher: same split, same fit, same score
    assert teacher_row["val_mean_R@1"] == pytest.approx(chosen["val_mean_R@1"])
    assert teacher_row["val_MRR"] == pytest.approx(chosen["val_MRR"])
    est.save(tmp_path / "m")
    params = json.loads((tmp_path / "m" / "config.json").read_text())["params"]
    assert params["teacher_reg"] == "auto" and params["teacher_reg_grid"] == list(GRID)
    assert SOTAlign.load(tmp_path / "m").config() == est.config()


@pytest.mark.parametrize(
    ("params", "match"),
    [({"teacher_reg": "best"}, "teacher_reg must be a number >= 0 or 'auto'"),
     ({"teacher_reg": -1}, "teacher_reg"),
     ({"teacher_reg_grid": []}, "teacher_reg_grid must be a non-empty list"),
     ({"teacher_reg_grid": "0.1"}, "teacher_reg_grid must be a non-empty list"),
     ({"teacher_reg_grid": [0.1, -2]}, "teacher_reg_grid entry")],
)  # fmt: skip
def test_bad_ridge_settings_are_refused_in_one_line(params, match):
    with pytest.raises(ConfigError, match=match):
        SOTAlign(**params).config()


def test_a_fixed_alpha_fit_below_its_teacher_says_so(few_pairs, two_view):
    A, B, _ = few_pairs
    X, Y = two_view.unpaired(200, 180, 2)
    kw = dict(alpha=0.1, dim=16, batch_unpaired=64, device="cpu", progress=False)
    with pytest.warns(UserWarning, match=r"clearly below its own teacher .*alpha='auto'"):
        SOTAlign(steps=2, lr=1e-6, head="linear", **kw).fit(A, B, X, Y)  # barely trained
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*below its own teacher")
        SOTAlign(steps=20, head="teacher", **kw).fit(A, B, X, Y)  # starts at the teacher
