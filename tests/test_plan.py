"""Recipes (the schedule of the unset parameters), the time plan and budget of a fit, and the
one progress bar of a whole fit."""

from __future__ import annotations

import json
import math
import warnings

import pytest

import sotalign.methods.sotalign as sotalign_method
from sotalign import SOTAlign
from sotalign.config import DEFAULTS, RECIPES, SOTAlignConfig, parse_duration, resolve_recipe
from sotalign.errors import ConfigError
from sotalign.methods.plan import HEADROOM, MIN_STEPS, Plan, format_duration, plan_steps

# -- durations and the step plan (pure) ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(600, 600.0), (2.5, 2.5), ("90s", 90.0), ("10m", 600.0), ("10min", 600.0), ("1.5h", 5400.0),
     (" 2M ", 120.0), ("45", 45.0)],
)  # fmt: skip
def test_durations_parse(text, seconds):
    assert parse_duration("budget", text) == seconds


@pytest.mark.parametrize("bad", ["5x", "m", "", "-3m", 0, -1, math.nan, math.inf, True, [60]])
def test_bad_durations_are_refused_in_one_line(bad):
    with pytest.raises(ConfigError, match="budget must be a positive duration"):
        SOTAlign(budget=bad).config()


def test_plan_steps_fit_the_budget():
    assert plan_steps(300, 4, 0.5, None) == 300  # no budget: as configured
    assert plan_steps(300, 4, 0.5, 10_000) == 300  # fits: never raised above the configured
    # 0.85 * 120 s / (4 trainings * 0.5 s) = 51 steps
    assert plan_steps(300, 4, 0.5, 120) == math.floor(HEADROOM * 120 / (4 * 0.5)) == 51
    assert plan_steps(300, 0, 0.5, 1) == 300  # nothing to train
    with pytest.raises(ConfigError, match="leaves 3 steps for each of 4 trainings"):
        plan_steps(300, 4, 0.5, 9)
    assert plan_steps(300, 4, 0.5, MIN_STEPS * 4 * 0.5 / HEADROOM + 1e-9) == MIN_STEPS


def test_plan_describes_itself():
    p = Plan(4, 3, 150, 300, 0.7, "cpu", budget_s=600.0)
    assert p.estimate_s == pytest.approx(4 * 150 * 0.7)
    assert p.describe() == (
        "plan: 3 candidates + refit × 150 steps, about 7 min on cpu (0.7 s/step);"
        " budget 10 min (steps lowered from 300)"
    )
    assert [format_duration(s) for s in (3.25, 42, 420, 3900)] == ["3.2 s", "42 s", "7 min",
                                                                    "1 h 05 min"]  # fmt: skip


# -- recipes ---------------------------------------------------------------------------------


def test_recipe_fills_only_what_is_not_given():
    cpu = SOTAlign(device="cpu").config()
    assert cpu.recipe == "cpu"
    for key, value in RECIPES["cpu"].items():
        assert cpu.to_flat()[key] == value, key
    assert cpu.head == "teacher"  # SOTAlign starts at its teacher under the cpu recipe
    mine = SOTAlign(device="cpu", steps=77, head="linear", alpha_grid=[0.5]).config()
    assert (mine.train.steps, mine.head, mine.alpha_grid) == (77, "linear", (0.5,))
    assert mine.train.optimizer == "adamw"  # the rest still from the recipe
    paper = SOTAlign(device="cpu", recipe="paper").config()
    assert paper.to_flat() | {"recipe": "auto", "device": "auto"} == DEFAULTS.to_flat()
    assert SOTAlign(method="sail", device="cpu").config().head == "linear"  # no teacher to start at


def test_auto_recipe_follows_the_device(monkeypatch):
    assert resolve_recipe("auto", "cpu") == "cpu"
    assert resolve_recipe("auto", "cuda:1") == "paper"
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert resolve_recipe("auto", "auto") == "paper"
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert resolve_recipe("auto", "auto") == "cpu"
    with pytest.raises(ConfigError, match="recipe"):
        SOTAlign(recipe="gpu").config()


def test_the_saved_model_records_the_resolved_schedule(tmp_path, two_view):
    A, B = two_view.pairs(80, 1)
    est = SOTAlign(method="cca", device="cpu", progress=False).fit(A, B)
    est.save(tmp_path / "m")
    params = json.loads((tmp_path / "m" / "config.json").read_text())["params"]
    assert params["recipe"] == "cpu" and params["steps"] == RECIPES["cpu"]["steps"]
    assert all(params[k] is not None for k in RECIPES["cpu"])
    loaded = SOTAlign.load(tmp_path / "m")
    assert loaded.config() == SOTAlignConfig.from_flat(
        {**params, "alpha_grid": tuple(params["alpha_grid"])}
    )


# -- the plan inside a fit -------------------------------------------------------------------


def _fake_step_time(monkeypatch, seconds: float) -> list[int]:
    calls: list[int] = []

    def fake(*args, **kwargs):
        calls.append(1)
        return seconds

    monkeypatch.setattr(sotalign_method, "time_step", fake)
    return calls


def _small(**kw):
    base = dict(device="cpu", dim=16, batch_unpaired=64, sinkhorn_iters=10, progress=False)
    return SOTAlign(**{**base, **kw})


def test_a_budget_lowers_the_steps_and_the_fit_runs_them(monkeypatch, two_view):
    A, B = two_view.pairs(80, 1)
    X, Y = two_view.unpaired(200, 180, 2)
    _fake_step_time(monkeypatch, 0.5)
    est = _small(alpha=0.1, steps=200, budget=60, early_stopping=False).fit(A, B, X, Y)
    planned = est.plan_["steps"]  # one training (fixed alpha); the probe's time comes off
    assert math.floor(HEADROOM * 59 / 0.5) <= planned <= math.floor(HEADROOM * 60 / 0.5) < 200
    assert est.plan_["configured_steps"] == 200 and est.plan_["trainings"] == 1
    assert len(est.train_history_) == planned  # the steps really run: the plan, not the config
    assert est.train_history_[-1]["lr"] < est.train_history_[planned // 2]["lr"]  # whole schedule


def test_selection_plans_every_training_and_shows_one_bar(monkeypatch, two_view, capsys):
    A, B = two_view.pairs(80, 1)
    X, Y = two_view.unpaired(200, 180, 2)
    _fake_step_time(monkeypatch, 0.01)
    est = _small(steps=12, alpha_grid=[1.0], progress=True, selection="full").fit(A, B, X, Y)
    assert (est.plan_["trainings"], est.plan_["candidates"]) == (3, 2)  # α = 0, α = 1, refit
    assert est.plan_["total_steps"] == 36
    err = capsys.readouterr().err
    assert "plan: 2 candidates + refit × 12 steps" in err
    assert "candidate 2/3: alpha=0" in err and "candidate 3/3: alpha=1" in err
    assert "refit on all pairs" in err
    assert "train:" not in err  # no per-training bar restarting from zero


def test_halving_plans_and_labels_its_stages(monkeypatch, two_view, capsys):
    A, B = two_view.pairs(80, 1)
    X, Y = two_view.unpaired(200, 180, 2)
    _fake_step_time(monkeypatch, 0.01)
    totals: list[int] = []
    real = sotalign_method.fit_progress

    def spy(total, enabled=True):
        totals.append(total)
        return real(total, enabled)

    monkeypatch.setattr(sotalign_method, "fit_progress", spy)
    est = _small(steps=30, alpha_grid=[1.0, 0.1], progress=True).fit(A, B, X, Y)
    plan = est.plan_
    # 3 trained candidates to step 9 (the validation step, every 3, nearest 30 / 3; at most
    # 10), the best 1 of them on to 30, then the refit: 3·9 + 21 + 30 steps
    assert (plan["rung"], plan["kept"], plan["trainings"]) == (9, 1, 4)
    assert plan["total_steps"] == totals[0] == 3 * 9 + 21 + 30
    assert plan["estimate_s"] == pytest.approx(78 * 0.01)
    err = capsys.readouterr().err
    assert "plan: 3 candidates (the best 1 continued after step 9) + refit × 30 steps" in err
    for k, name in enumerate(("alpha=0", "alpha=1", "alpha=0.1"), 1):
        assert f"candidate {k}/3: {name}, to step 9" in err
    chosen = [r for r in est.selection_ if r.get("alpha") is not None and "stopped_at" not in r]
    assert len(chosen) == 1 and f"best 1/1 of step 9: {chosen[0]['candidate']}" in err
    stopped = [r for r in est.selection_ if r.get("stopped_at") == 9]
    assert len(stopped) == 2 and all(r["best_step"] <= 9 for r in stopped)


def test_a_long_plan_without_budget_warns(monkeypatch, two_view):
    A, B = two_view.pairs(80, 1)
    _fake_step_time(monkeypatch, 100.0)
    with pytest.warns(UserWarning, match=r"about 1 h 40 min on cpu .*--budget"):
        _small(alpha=0.1, steps=60, early_stopping=False).fit(A, B, *two_view.unpaired(80, 80, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a budget: no warning (the steps are planned to fit)
        _fake_step_time(monkeypatch, 0.001)
        _small(alpha=0.1, steps=20, budget="1h", early_stopping=False).fit(
            A, B, *two_view.unpaired(80, 80, 2)
        )


def test_a_resumed_fit_keeps_its_plan(monkeypatch, two_view, tmp_path):
    A, B = two_view.pairs(80, 1)
    X, Y = two_view.unpaired(120, 120, 2)
    ckpt = str(tmp_path / "ckpt")
    kw = dict(alpha=0.1, steps=100, budget=30, early_stopping=False, checkpoint_dir=ckpt,
              checkpoint_every=5)  # fmt: skip
    calls = _fake_step_time(monkeypatch, 0.5)
    first = _small(**kw).fit(A, B, X, Y)
    planned = first.plan_["steps"]
    assert math.floor(HEADROOM * 29 / 0.5) <= planned <= math.floor(HEADROOM * 30 / 0.5)
    assert len(calls) == 1
    calls = _fake_step_time(monkeypatch, 5.0)  # a slower machine now: the plan is not redone
    again = _small(**kw).fit(A, B, X, Y, resume=True)
    assert again.plan_ == first.plan_ and not calls
    assert len(again.train_history_) == planned


def test_the_plan_charges_alpha_zero_its_own_cheaper_steps(monkeypatch, two_view):
    A, B = two_view.pairs(80, 1)
    X, Y = two_view.unpaired(200, 180, 2)
    timed: list[float] = []

    def fake(cfg, train, data, objective, teacher, *a, **k):
        timed.append(objective.alpha)
        return 1.0 if objective.alpha > 0 else 0.1  # the OT term dominates a step

    monkeypatch.setattr(sotalign_method, "time_step", fake)
    est = _small(steps=12, alpha_grid=[1.0, 0.1], selection="full").fit(A, B, X, Y)
    # trainings: alpha=0 (0.1 s), alpha=1 and alpha=0.1 (1 s each), the refit (1 s, costliest)
    assert est.plan_["trainings"] == 4 and sorted(timed) == [0.0, 0.1]
    assert est.plan_["sec_per_step"] == pytest.approx((0.1 + 1 + 1 + 1) / 4)
    # successive halving: each candidate its own cost for the first third, the continued one
    # (unknown in advance) the costliest's for the rest, then the refit
    est = _small(steps=12, alpha_grid=[1.0, 0.1]).fit(A, B, X, Y)
    third = (0.1 + 1 + 1) / 3
    assert est.plan_["sec_per_step"] == pytest.approx((third + 2 / 3 * 1 + 1) / (1 + 2 / 3 + 1))
