import itertools
import json

import numpy as np
import pytest
import torch

from sotalign.models import AlignmentModel, CCATeacher
from sotalign.ot import KLOTConfig
from sotalign.training import (
    TrainConfig,
    TrainData,
    Trainer,
    TrainingDivergedError,
    latest_checkpoint,
    lr_at,
    objective_from_config,
)

ALPHA = 0.1  # divergence weight of the trainer tests


def test_lr_schedule_warmup_then_cosine():
    lrs = [lr_at(s, 100, 1.0, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in itertools.pairwise(lrs[:10]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))
    assert lrs[-1] < 0.01


def _setup(two_view, steps=12, device="cpu", **kw):
    A, B = two_view.pairs(40, 1)
    X, Y = two_view.unpaired(300, 250, 2)
    data = TrainData.from_arrays(A, B, X, Y)
    teacher = CCATeacher().fit(A, B)
    cfg = TrainConfig(
        steps=steps,
        lr=1e-3,
        batch_pairs=32,
        batch_unpaired=64,
        klot=KLOTConfig(n_iter=30),
        device=str(device),
        **kw,
    )
    torch.manual_seed(0)
    model = AlignmentModel(A.shape[1], B.shape[1], dim=32, teacher=teacher)
    return model, data, cfg


def test_resume_gives_the_same_weights(two_view, tmp_path, device):
    model, data, cfg = _setup(two_view, checkpoint_every=4, device=device)
    full = Trainer(model, objective_from_config(cfg, ALPHA), data, cfg, progress=False)
    full.run()
    ref = {k: v.clone() for k, v in model.state_dict().items()}

    ck = tmp_path / "ck"
    model1, _, _ = _setup(two_view)
    t1 = Trainer(
        model1, objective_from_config(cfg, ALPHA), data, cfg, checkpoint_dir=ck, progress=False
    )
    t1.run(stop_after=6)  # "killed" after 6 steps; last checkpoint at step 4
    assert latest_checkpoint(ck).name == "step-000000004"
    model2, _, _ = _setup(two_view)  # fresh process: new model, new optimiser
    t2 = Trainer(
        model2, objective_from_config(cfg, ALPHA), data, cfg, checkpoint_dir=ck, progress=False
    )
    res = t2.run(resume=True)
    assert res.steps_done == cfg.steps
    for k, v in model2.state_dict().items():
        assert torch.allclose(v, ref[k], atol=1e-6, rtol=0), k
    # the weights did move: resuming is not trivially equal to the initial state
    assert not torch.allclose(ref["f.linear.weight"].cpu(), _setup(two_view)[0].f.linear.weight)
    # nothing pickled: safetensors + JSON only
    files = {p.name for p in latest_checkpoint(ck).iterdir()}
    assert files == {"tensors.safetensors", "state.json"}
    json.loads((latest_checkpoint(ck) / "state.json").read_text())


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(two_view, tmp_path):
    model, data, cfg = _setup(two_view, checkpoint_every=2)
    base = objective_from_config(cfg, ALPHA)
    calls = {"n": 0}

    def objective(m, batch):
        calls["n"] += 1
        loss, logs = base(m, batch)
        return (loss * float("nan") if calls["n"] == 4 else loss), logs

    tr = Trainer(model, objective, data, cfg, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(TrainingDivergedError, match="non-finite at step 3"):
        tr.run()
    last = latest_checkpoint(tmp_path)
    assert last is not None and last.name == "step-000000002"
    from safetensors.torch import load_file

    assert all(
        torch.isfinite(v).all() for v in load_file(str(last / "tensors.safetensors")).values()
    )


def test_training_logs_loss_terms_and_ot_diagnostics(two_view, device):
    model, data, cfg = _setup(two_view, steps=3, device=device)
    res = Trainer(model, objective_from_config(cfg, ALPHA), data, cfg, progress=False).run()
    h = res.history[-1]
    for key in ("loss", "sup", "div", "marginal_error", "lr"):
        assert key in h and np.isfinite(h[key]), key


def test_teacher_head_starts_exactly_at_the_teacher(two_view):
    from sotalign.arrays import l2_normalize

    A, B = two_view.pairs(100, 1)
    Ti, Tt = two_view.pairs(30, 2)
    teacher = CCATeacher().fit(A, B)
    model = AlignmentModel(A.shape[1], B.shape[1], dim=64, head="teacher", teacher=teacher)
    with torch.no_grad():
        K_student = model.embed_images(torch.tensor(Ti)) @ model.embed_texts(torch.tensor(Tt)).T
    K_teacher = teacher.affinity(Ti, Tt)
    torch.testing.assert_close(K_student, K_teacher, atol=1e-5, rtol=0)
    # a wider teacher than the head is truncated, a random init is not the teacher
    other = AlignmentModel(A.shape[1], B.shape[1], dim=64, head="linear", teacher=teacher)
    with torch.no_grad():
        K_rand = l2_normalize(other.f(torch.tensor(Ti))) @ l2_normalize(other.g(torch.tensor(Tt))).T
    assert not torch.allclose(K_rand, K_teacher, atol=1e-2)


def test_stop_at_follows_the_full_schedule_and_checkpoints_its_end(two_view, tmp_path, device):
    """A refit stopped at step s reproduces the first s steps of the full-length run."""
    model, data, cfg = _setup(two_view, steps=12, checkpoint_every=5, device=device)
    full = Trainer(model, objective_from_config(cfg, ALPHA), data, cfg, progress=False)
    full.run(stop_after=7)  # the reference: 7 steps of the 12-step schedule
    ref = {k: v.clone() for k, v in model.state_dict().items()}
    model2, _, _ = _setup(two_view, steps=12)
    t2 = Trainer(
        model2,
        objective_from_config(cfg, ALPHA),
        data,
        cfg,
        checkpoint_dir=tmp_path,
        progress=False,
    )
    res = t2.run(stop_at=7)
    assert res.steps_done == 7
    assert [h["lr"] for h in t2.history] == [lr_at(s, 12, cfg.lr, cfg.warmup) for s in range(7)]
    assert t2.history[-1]["lr"] > 0.3 * cfg.lr  # not a compressed schedule decayed to ~0
    for k, v in model2.state_dict().items():
        torch.testing.assert_close(v, ref[k], rtol=0, atol=0)
    assert latest_checkpoint(tmp_path).name == "step-000000007"  # the end is checkpointed


def test_early_stopping_ties_go_to_the_later_step(two_view, monkeypatch):
    import sotalign.training.trainer as train_mod
    from sotalign.training import ValData

    scores = iter(
        [(50.0, 60.0), (70.0, 80.0), (70.0, 90.0), (70.0, 90.0), (70.0, 75.0), (65.0, 99.0)]
    )
    monkeypatch.setattr(train_mod, "validation_score", lambda model, val: next(scores))
    model, data, cfg = _setup(two_view, steps=12, eval_every=2)
    val = ValData(torch.zeros(2, 64), torch.zeros(2, 48))
    res = Trainer(
        model, objective_from_config(cfg, ALPHA), data, cfg, val=val, progress=False
    ).run()
    # evaluations at steps 2, 4, ..., 12: R@1 first, MRR breaks ties (step 10 loses on it),
    # equal pairs -> the later step (8, not 6)
    assert (res.best_step, res.best_score, res.best_mrr) == (8, 70.0, 90.0)
