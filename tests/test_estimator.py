import numpy as np
import pytest
import torch

from sotalign import SOTAlign
from sotalign.errors import ConfigError, InputError
from sotalign.eval import retrieval_metrics

FAST = dict(steps=200, lr=1e-3, dim=64, batch_unpaired=256, sinkhorn_iters=50, progress=False)


@pytest.fixture(scope="module")
def problem():
    from sotalign.synthetic import TwoView

    tv = TwoView(d_x=64, d_y=48, latent=16, noise=0.3, seed=0)
    A, B = tv.pairs(50, 1)
    X, Y = tv.unpaired(3000, 3000, 2)
    Ti, Tt = tv.pairs(600, 3)
    return A, B, X, Y, Ti, Tt


def _score(est, Ti, Tt):
    return retrieval_metrics(est.encode_images(Ti), est.encode_texts(Tt))["mean_R@1"]


def test_sotalign_beats_siglip_on_pairs_only(problem, device):
    """Few pairs + many unpaired samples: SOTAlign ≫ SigLIP on the pairs alone (SAIL)."""
    A, B, X, Y, Ti, Tt = problem
    kw = {**FAST, "device": str(device), "early_stopping": False}
    sail = SOTAlign(method="sail", **kw).fit(A, B)
    sot = SOTAlign(method="sotalign", alpha=0.1, **kw).fit(A, B, X, Y)
    s_sail, s_sot = _score(sail, Ti, Tt), _score(sot, Ti, Tt)
    assert s_sot > s_sail + 10.0, (s_sot, s_sail)


def test_save_load_roundtrip_is_identical(problem, tmp_path):
    A, B, X, Y, Ti, Tt = problem
    est = SOTAlign(alpha=0.1, early_stopping=False, **{**FAST, "steps": 5}).fit(A, B, X, Y)
    est.save(tmp_path / "m")
    again = SOTAlign.load(tmp_path / "m")
    np.testing.assert_array_equal(again.encode_images(Ti), est.encode_images(Ti))
    np.testing.assert_array_equal(again.encode_texts(Tt), est.encode_texts(Tt))
    # the loaded model holds the resolved schedule (the recipe's values written out)
    assert again.config() == est.config()
    assert again.get_params() == est.config().to_flat()
    # torch in → torch out
    assert isinstance(again.encode_images(torch.tensor(Ti)), torch.Tensor)
    with pytest.raises(InputError, match="not empty"):
        est.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]


def test_auto_alpha_selects_best_candidate_on_validation(problem):
    A, B, X, Y, *_ = problem
    est = SOTAlign(alpha_grid=(0.1,), **{**FAST, "steps": 60}).fit(A, B, X, Y)
    names = [c["candidate"] for c in est.selection_]
    assert names == ["teacher:cca", "alpha=0", "alpha=0.1"]
    chosen = [c for c in est.selection_ if c["selected"]]
    assert len(chosen) == 1
    assert chosen[0]["val_mean_R@1"] == max(c["val_mean_R@1"] for c in est.selection_)


def test_same_seed_same_result(problem, device):
    A, B, X, Y, Ti, _ = problem
    kw = {**FAST, "steps": 15, "alpha": 0.1, "early_stopping": False, "device": str(device)}
    e1 = SOTAlign(seed=3, **kw).fit(A, B, X, Y)
    e2 = SOTAlign(seed=3, **kw).fit(A, B, X, Y)
    e3 = SOTAlign(seed=4, **kw).fit(A, B, X, Y)
    np.testing.assert_array_equal(e1.encode_images(Ti), e2.encode_images(Ti))
    assert not np.allclose(e1.encode_images(Ti), e3.encode_images(Ti))


@pytest.mark.parametrize("method", ["cca", "procrustes", "semisup_sail"])
def test_other_methods_fit(problem, method):
    A, B, X, Y, Ti, Tt = problem
    est = SOTAlign(method=method, **{**FAST, "steps": 100}).fit(A, B, X, Y)
    assert _score(est, Ti, Tt) > 5.0  # chance: 100 / 600 = 0.17 %


def test_parameter_errors(problem):
    A, B, *_ = problem
    with pytest.raises(TypeError, match="alhpa"):  # an explicit signature, as scikit-learn's
        SOTAlign(alhpa=0.1)
    with pytest.raises(ConfigError, match="did you mean 'alpha'"):
        SOTAlign().set_params(alhpa=0.1)
    with pytest.raises(ConfigError, match="did you mean 'sotalign'"):
        SOTAlign(method="sotalgn").fit(A, B)
    with pytest.raises(RuntimeError, match="not fitted"):
        SOTAlign().encode_images(A)


def test_model_from_another_format_version_is_refused(problem, tmp_path):
    import json

    A, B, *_ = problem
    SOTAlign(method="cca").fit(A, B).save(tmp_path / "m")
    cfg_path = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["format_version"] = 99
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="format version 99"):
        SOTAlign.load(tmp_path / "m")


def test_sail_refits_on_all_pairs_up_to_the_validated_step():
    from sotalign.synthetic import TwoView

    tv = TwoView(d_x=32, d_y=24, latent=8, noise=0.3, seed=0)
    A, B = tv.pairs(60, 1)
    kw = dict(method="sail", steps=40, lr=1e-3, dim=16, progress=False)
    est = SOTAlign(**kw).fit(A, B)
    (sel,) = est.selection_
    assert sel["selected"] and sel["best_step"] is not None and sel["val_MRR"] is not None
    assert est.train_history_[-1]["step"] == sel["best_step"]  # refit stops at the best step
    no_refit = SOTAlign(**kw, refit=False).fit(A, B)
    # a validation curve that peaks early: the refit stops there, on the 40-step schedule
    import sotalign.training.trainer as train_mod
    from sotalign.training import lr_at

    falling = iter([(90.0 - i, 90.0 - i) for i in range(100)])
    mp = pytest.MonkeyPatch()
    mp.setattr(train_mod, "validation_score", lambda model, val: next(falling))
    try:
        early = SOTAlign(**kw).fit(A, B)
    finally:
        mp.undo()
    assert early.selection_[0]["best_step"] == 4  # the first evaluation (every 40 // 10 steps)
    assert [h["step"] for h in early.train_history_] == [1, 2, 3, 4]
    assert early.train_history_[-1]["lr"] == lr_at(3, 40, 1e-3, 0.1)
    # the refit sees all 60 pairs; without refit the heads saw the 48 training pairs only
    assert not torch.equal(
        est.aligner_.model.f.linear.weight, no_refit.aligner_.model.f.linear.weight
    )


@pytest.mark.parametrize(
    "method, divergence", [("sotalign_cka", "cka"), ("sotalign_ginfonce", "ginfonce")]
)
def test_table1_divergence_methods_train_with_their_divergence(method, divergence, monkeypatch):
    import sotalign.training.objective as train_mod
    from sotalign.synthetic import TwoView

    seen = []
    real = train_mod.get_divergence
    monkeypatch.setattr(train_mod, "get_divergence", lambda name: seen.append(name) or real(name))
    tv = TwoView(d_x=32, d_y=24, latent=8, noise=0.3, seed=0)
    A, B = tv.pairs(60, 1)
    X, Y = tv.unpaired(400, 400, 2)
    Ti, Tt = tv.pairs(200, 3)
    est = SOTAlign(
        method=method,
        steps=40,
        lr=1e-3,
        dim=16,
        batch_unpaired=64,
        alpha_grid=(0.1,),
        progress=False,
    ).fit(A, B, X, Y)
    assert set(seen) == {divergence} and est.divergence == "klot"  # parameter left as given
    assert [c["candidate"] for c in est.selection_] == ["teacher:cca", "alpha=0", "alpha=0.1"]
    from sotalign.eval import retrieval_metrics

    score = retrieval_metrics(est.encode_images(Ti), est.encode_texts(Tt))["mean_R@1"]
    assert score > 10.0  # chance: 0.5 %


def test_candidates_tied_on_r1_are_separated_by_mrr(problem, monkeypatch):
    import sotalign.methods.selection as est_mod
    import sotalign.training.trainer as train_mod

    A, B, X, Y, *_ = problem
    monkeypatch.setattr(est_mod, "score_aligner", lambda teacher, val: (50.0, 60.0))
    monkeypatch.setattr(train_mod, "validation_score", lambda model, val: (50.0, 70.0))
    est = SOTAlign(alpha_grid=(0.1,), **{**FAST, "steps": 10}).fit(A, B, X, Y)
    picked = [c["candidate"] for c in est.selection_ if c["selected"]]
    # all three tie on R@1; the MRR beats the teacher; α = 0 and α = 0.1 tie exactly, so the
    # earlier (simpler) candidate is kept
    assert picked == ["alpha=0"]
