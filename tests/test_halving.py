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


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_head_auto_makes_both_heads_candidates(tmp_path):
    from sotalign import ConfigError

    A, B = DATA.pairs(150, 1)
    X, Y = DATA.unpaired(240, 200, 2)
    kw = dict(device="cpu", dim=16, batch_unpaired=64, sinkhorn_iters=10, progress=False,
              steps=30, alpha_grid=[1.0])  # fmt: skip
    est = SOTAlign(head="auto", **kw).fit(A, B, X, Y)
    names = [r["candidate"] for r in est.selection_]
    assert names == ["teacher:cca", "alpha=0,head=teacher", "alpha=0,head=linear",
                     "alpha=1,head=teacher", "alpha=1,head=linear"]  # fmt: skip
    assert est.plan_["candidates"] == 4 and est.plan_["kept"] == 2  # ⌈4/3⌉ continue
    chosen = next(r for r in est.selection_ if r["selected"])
    if chosen.get("head"):  # the final model has the selected head
        assert est.aligner_.head == chosen["head"]
    # each candidate is the fit with that head: its row equals a fit with head=... alone
    one = SOTAlign(head="linear", **kw).fit(A, B, X, Y)
    ref = {r["candidate"]: r for r in one.selection_}
    for row in est.selection_:
        if row.get("head") == "linear" and "stopped_at" not in row:
            alone = ref[row["candidate"].removesuffix(",head=linear")]
            assert row["val_mean_R@1"] == alone["val_mean_R@1"]
    with pytest.raises(ConfigError, match="with a fixed alpha"):
        SOTAlign(head="auto", alpha=0.1, **kw).fit(A, B, X, Y)
    with pytest.raises(ConfigError, match="head='auto'"):
        SOTAlign(method="sail", head="auto", **kw).fit(A, B)
