"""Successive halving against training every candidate to the end, with the real trainer:
a survivor ends exactly where its full training ends, a stopped candidate is scored by what
its full training had shown at the rung, and the same winner gives the same model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sotalign import SOTAlign
from sotalign.methods.selection import best_until
from sotalign.synthetic import TwoView

# noisy enough that the candidates differ, and the winner (alpha=1) is not the first one
DATA = TwoView(d_x=64, d_y=48, latent=16, noise=0.6, seed=0)


def _fit(two_view, tmp_path, selection):
    A, B = two_view.pairs(150, 1)
    X, Y = two_view.unpaired(240, 200, 2)
    ckpt = tmp_path / selection
    est = SOTAlign(device="cpu", dim=16, batch_unpaired=64, sinkhorn_iters=10, progress=False,
                   steps=30, alpha_grid=[1.0, 0.1], selection=selection,
                   checkpoint_dir=str(ckpt), checkpoint_every=30)  # fmt: skip
    return est.fit(A, B, X, Y), ckpt


def _candidate_history(ckpt, name):
    last = sorted((ckpt / "candidates" / name).glob("step-*"))[-1]
    return json.loads((last / "state.json").read_text())["history"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_halving_matches_full_training_where_it_trains(tmp_path):
    full, full_ckpt = _fit(DATA, tmp_path, "full")
    half, half_ckpt = _fit(DATA, tmp_path, "halving")
    rung = half.plan_["rung"]
    assert rung == 9 and half.plan_["kept"] == 1
    assert half.plan_["total_steps"] < full.plan_["total_steps"]
    by_name = {r["candidate"]: r for r in full.selection_}
    stopped = 0
    for row in half.selection_:
        ref = by_name[row["candidate"]]
        if row.get("stopped_at") is None:  # the teacher, and the survivor trained to the end
            assert (row["val_mean_R@1"], row["val_MRR"], row["best_step"]) == (
                ref["val_mean_R@1"], ref["val_MRR"], ref["best_step"])  # fmt: skip
        else:  # what its full training showed at the rung
            stopped += 1
            history = _candidate_history(full_ckpt, row["candidate"])
            assert (row["val_mean_R@1"], row["val_MRR"], row["best_step"]) == best_until(
                history, rung
            )
            # ... and it was not trained past the rung
            assert [h["step"] for h in _candidate_history(half_ckpt, row["candidate"])][-1] == rung
    assert stopped == 2
    winners = {e: [r["candidate"] for r in e.selection_ if r["selected"]] for e in (half, full)}
    assert winners[half] == winners[full] == ["alpha=1"]
    # the same winner, refitted the same way: the same model, bit for bit
    A, B = DATA.pairs(50, 7)
    assert np.array_equal(half.encode_images(A), full.encode_images(A))
    assert np.array_equal(half.encode_texts(B), full.encode_texts(B))
