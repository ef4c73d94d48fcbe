"""The configuration tree: one home per default, typed checks once, flat names for users."""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest

from sotalign import SOTAlign
from sotalign.config import (
    DEFAULTS,
    FLAT,
    PARAM_NAMES,
    RECIPE_FIELDS,
    SOTAlignConfig,
    load_params,
)
from sotalign.errors import ConfigError, InputError
from sotalign.ot import KLOTConfig
from sotalign.training import TrainConfig


def test_estimator_signature_is_the_config_tree():
    sig = inspect.signature(SOTAlign.__init__)
    params = {n: p for n, p in sig.parameters.items() if n != "self"}
    assert set(params) == set(PARAM_NAMES)
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    flat = DEFAULTS.to_flat()
    # the schedule parameters default to None ("the recipe's value"); the rest are the tree's
    assert {n: p.default for n, p in params.items()} == {
        n: None if n in RECIPE_FIELDS else v for n, v in flat.items()
    }
    # and the tree's defaults are the dataclasses' own (no second copy anywhere)
    assert flat["eps"] == KLOTConfig().eps and flat["sinkhorn_iters"] == KLOTConfig().n_iter
    assert flat["steps"] == TrainConfig().steps and flat["alpha"] == "auto"


def test_flat_names_map_onto_the_tree():
    assert FLAT["sinkhorn_iters"] == ("train", "klot", "n_iter")
    assert FLAT["ot_mode"] == ("train", "klot", "mode")
    assert FLAT["lr"] == ("train", "lr") and FLAT["alpha"] == ("alpha",)
    cfg = SOTAlignConfig.from_flat(
        {
            "sinkhorn_iters": 7,
            "ot_mode": "tiled",
            "lr": 0.5,
            "eval_every": 3,
            "ginfonce_temperature": 0.2,
        }
    )
    assert cfg.train.klot.n_iter == 7 and cfg.train.klot.mode == "tiled"
    assert cfg.train.lr == 0.5 and cfg.train.eval_every == 3
    assert cfg.train.ginfonce_temperature == 0.2
    assert SOTAlignConfig.from_flat(cfg.to_flat()) == cfg


def test_get_set_params_round_trip():
    est = SOTAlign(steps=10, eps=0.1)
    assert est.get_params()["steps"] == 10 and est.get_params()["eps"] == 0.1
    assert est.set_params(lr=0.5) is est and est.lr == 0.5
    assert est.config().train.lr == 0.5
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        est.set_params(step=3)
    with pytest.raises(TypeError):
        SOTAlign(stepz=3)  # an explicit signature: Python itself refuses unknown keywords


@pytest.mark.parametrize(
    "params, message",
    [
        ({"steps": "abc"}, "steps must be an integer >= 1, got 'abc'"),
        ({"steps": 2.5}, "steps must be an integer >= 1, got 2.5"),
        ({"steps": True}, "steps must be an integer >= 1, got True"),
        ({"dim": 0}, "dim must be an integer >= 1, got 0"),
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
        ({"lr": float("nan")}, "lr must be a finite number > 0, got nan"),
        ({"lr": "fast"}, "lr must be a finite number > 0, got 'fast'"),
        ({"alpha": "bogus"}, "alpha must be a number >= 0 or 'auto', got 'bogus'"),
        ({"alpha": -1.0}, "alpha must be a finite number >= 0"),
        ({"alpha_grid": []}, "alpha_grid must be a non-empty list"),
        ({"early_stopping": "yes"}, "early_stopping must be true or false, got 'yes'"),
        ({"teacher": "cac"}, "did you mean 'cca'"),
        ({"optimizer": "adam"}, "optimizer must be one of lion, adamw"),
        ({"divergence": "klott"}, "did you mean 'klot'"),
        ({"device": "gpu"}, "device must be auto, cpu or cuda[:N], got 'gpu'"),
        ({"warmup": 1.0}, "warmup is a fraction of the steps in [0, 1)"),
        ({"checkpoint_every": -3}, "checkpoint_every must be an integer >= 0, got -3"),
        ({"eps": float("inf")}, "eps"),
        ({"eps": 1e9}, "eps must be at most 10 for the cosine affinities"),
        ({"eps_teacher": 50}, "eps_teacher must be at most 10"),
        ({"sinkhorn_iters": 0}, "n_iter"),
        ({"ot_mode": "dens"}, "dense"),
    ],
)
def test_every_wrong_value_is_one_line_naming_the_parameter(params, message):
    with pytest.raises(ConfigError) as info:
        SOTAlignConfig.from_flat(params)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_integral_floats_are_integers():
    cfg = SOTAlignConfig.from_flat({"steps": 1e3, "dim": 64.0})
    assert cfg.train.steps == 1000 and isinstance(cfg.train.steps, int) and cfg.dim == 64


def test_configs_are_frozen_and_replace_validates_again():
    cfg = SOTAlignConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.steps = 3  # type: ignore[misc]
    assert cfg.replace_train(steps=3).steps == 3
    with pytest.raises(ConfigError, match="steps"):
        cfg.replace_train(steps=0)


def test_estimator_checks_its_parameters_when_fitting(two_view):
    A, B = two_view.pairs(30, 1)
    est = SOTAlign(steps="many")  # stored as given (scikit-learn style) ...
    assert est.steps == "many"
    with pytest.raises(ConfigError, match="steps must be an integer"):
        est.fit(A, B)  # ... and refused, in one line, before any work


def test_load_params_from_files_and_sets(tmp_path):
    cfg = tmp_path / "p.json"
    cfg.write_text(json.dumps({"steps": 50, "alpha_grid": [0.1, 0.01]}))
    params = load_params(cfg, ["lr=0.001", "teacher=procrustes", "sinkhorn_tol=null"])
    assert params == {
        "steps": 50,
        "alpha_grid": (0.1, 0.01),
        "lr": 0.001,
        "teacher": "procrustes",
        "sinkhorn_tol": None,
    }
    toml = tmp_path / "p.toml"
    toml.write_text('steps = "many"\n')
    with pytest.raises(ConfigError, match="steps must be an integer >= 1, got 'many'"):
        load_params(toml, None)
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        load_params(None, ["stepz=3"])
    with pytest.raises(ConfigError, match="key=value"):
        load_params(None, ["steps"])
    with pytest.raises(InputError, match="not found"):
        load_params(tmp_path / "missing.json", None)


def test_a_missing_cuda_device_is_one_line(two_view, monkeypatch):
    import torch

    from sotalign.training import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no usable CUDA device; use device=auto or device=cpu"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"
    A, B = two_view.pairs(30, 1)
    with pytest.raises(ConfigError, match="no usable CUDA device"):
        SOTAlign(method="sail", steps=2, device="cuda", progress=False).fit(A, B)


def test_read_only_pools_are_gathered_without_torch_warnings(tmp_path):
    import warnings

    import numpy as np

    from sotalign.training import EmbeddingPool

    np.save(tmp_path / "a.npy", np.arange(12, dtype=np.float32).reshape(4, 3))
    pool = EmbeddingPool(np.load(tmp_path / "a.npy", mmap_mode="r"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = pool.gather(None)
    assert rows.tolist() == np.arange(12).reshape(4, 3).tolist()
