"""sotalign.ot options: defaults written once, validated once (one-line errors), frozen."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sotalign.errors import ConfigError
from sotalign.ot import MODES, KLOTConfig, SinkhornConfig, klot, klot_embeddings, sinkhorn
from sotalign.ot import config as ot_config


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)


def test_defaults():
    assert dataclasses.asdict(KLOTConfig()) == {
        "eps": 0.05,
        "eps_teacher": 0.01,
        "n_iter": 100,
        "tol": None,
        "mode": "auto",
        "tile_bytes": 256 << 20,
    }
    assert dataclasses.asdict(SinkhornConfig()) == {
        "eps": 0.05,
        "n_iter": 100,
        "tol": None,
        "mode": "auto",
    }
    assert MODES == ("auto", "dense", "tiled", "log")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"eps": 0}, "eps must be a finite number > 0 (e.g. 0.05), got 0"),
        ({"eps": -0.1}, "eps must be a finite number > 0"),
        ({"eps": float("inf")}, "eps must be a finite number > 0 (e.g. 0.05), got inf"),
        ({"eps": float("nan")}, "got nan"),
        ({"eps": "0.05"}, "eps must be a finite number > 0 (e.g. 0.05), got '0.05'"),
        ({"eps": True}, "eps must be a finite number > 0 (e.g. 0.05), got True"),
        ({"eps": None}, "eps must be a finite number > 0"),
        ({"eps_teacher": float("inf")}, "eps_teacher must be a finite number > 0 (e.g. 0.01)"),
        ({"eps_teacher": 0.0}, "eps_teacher must be a finite number > 0"),
        ({"n_iter": 0}, "n_iter must be an integer >= 1 (e.g. 100), got 0"),
        ({"n_iter": 2.5}, "n_iter must be an integer >= 1 (e.g. 100), got 2.5"),
        ({"n_iter": True}, "n_iter must be an integer >= 1 (e.g. 100), got True"),
        ({"n_iter": "100"}, "n_iter must be an integer >= 1 (e.g. 100), got '100'"),
        ({"tol": 0}, "tol must be a finite number > 0"),
        ({"tol": float("inf")}, "tol must be a finite number > 0"),
        ({"tol": "1e-4"}, "tol must be a finite number > 0"),
        ({"mode": "dens"}, "mode must be one of auto, dense, tiled, log, got 'dens'"),
        ({"mode": "dens"}, "(did you mean 'dense'?)"),
        ({"mode": "scaling"}, "mode must be one of auto, dense, tiled, log, got 'scaling'"),
        ({"mode": 3}, "mode must be one of auto, dense, tiled, log, got 3"),
        ({"tile_bytes": 0}, "tile_bytes must be an integer >= 1"),
    ],
)
def test_klot_config_rejects_in_one_line(options, message):
    with pytest.raises(ConfigError) as info:
        KLOTConfig(**options)
    text = str(info.value)
    assert message in text and "\n" not in text
    if "tile_bytes" not in options and "eps_teacher" not in options:
        with pytest.raises(ConfigError, match=next(iter(options))):
            SinkhornConfig(**options)


def test_values_are_normalised_to_their_types():
    cfg = KLOTConfig(eps=1, eps_teacher=1, n_iter=1e3, tol=1, tile_bytes=4096.0)
    assert cfg.eps == 1.0 and isinstance(cfg.eps, float) and isinstance(cfg.eps_teacher, float)
    assert cfg.n_iter == 1000 and isinstance(cfg.n_iter, int)
    assert cfg.tol == 1.0 and isinstance(cfg.tol, float)
    assert cfg.tile_bytes == 4096 and isinstance(cfg.tile_bytes, int)


def test_configs_are_frozen_and_replace_validates_again():
    cfg = KLOTConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.eps = 0.1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        SinkhornConfig().n_iter = 3  # type: ignore[misc]
    assert dataclasses.replace(cfg, n_iter=3).n_iter == 3
    with pytest.raises(ConfigError, match="n_iter"):
        dataclasses.replace(cfg, n_iter=0)
    assert hash(cfg) == hash(KLOTConfig()) and cfg == KLOTConfig()


def test_options_and_config_objects_in_the_api():
    K = _unit(6, 3, 0) @ _unit(5, 3, 1).T
    Kt = _unit(6, 2, 2) @ _unit(5, 2, 3).T
    cfg = KLOTConfig(eps=0.1, n_iter=7, mode="log")
    assert klot(K, Kt, cfg).item() == klot(K, Kt, eps=0.1, n_iter=7, mode="log").item()
    # options override the config's fields
    assert klot(K, Kt, cfg, eps=0.2).item() == klot(K, Kt, eps=0.2, n_iter=7, mode="log").item()
    with pytest.raises(ConfigError, match=r"unknown KLOTConfig option 'method' \(did you mean"):
        klot(K, Kt, method="log")
    with pytest.raises(ConfigError, match="config must be a KLOTConfig, got SinkhornConfig"):
        klot(K, Kt, SinkhornConfig())
    with pytest.raises(ConfigError, match="eps must be"):
        klot(K, Kt, cfg, eps=-1.0)
    with pytest.raises(ConfigError, match="unknown KLOTConfig option 'n_iters'"):
        klot_embeddings(_unit(4, 3, 0), _unit(4, 3, 1), _unit(4, 2, 2), _unit(4, 2, 3), n_iters=5)
    # sinkhorn: positional eps/n_iter, a SinkhornConfig, options over the config
    scfg = SinkhornConfig(eps=0.1, n_iter=3)
    assert sinkhorn(K, config=scfg).n_iter == 3
    assert sinkhorn(K, 0.1, 4).n_iter == 4
    over = sinkhorn(K, 0.2, config=scfg)
    assert over.eps == 0.2 and over.n_iter == 3
    assert sinkhorn(K).eps == SinkhornConfig().eps
    with pytest.raises(ConfigError, match="config must be a SinkhornConfig"):
        sinkhorn(K, config=KLOTConfig())  # type: ignore[arg-type]


def test_a_config_object_is_not_validated_again(monkeypatch):
    """klot_embeddings(..., config) checks no option per call (every training step)."""
    cfg = KLOTConfig(n_iter=5)
    calls = []
    original = KLOTConfig.__post_init__

    def counting(self: KLOTConfig) -> None:
        calls.append(1)
        original(self)

    monkeypatch.setattr(KLOTConfig, "__post_init__", counting)
    monkeypatch.setattr(ot_config, "check_float", None)  # any validation would crash
    zx, zy, tx, ty = _unit(5, 3, 0), _unit(4, 3, 1), _unit(5, 2, 2), _unit(4, 2, 3)
    for _ in range(3):
        _, info = klot_embeddings(zx, zy, tx, ty, cfg)
        assert info.n_iter == 5
        klot(zx @ zy.T, tx @ ty.T, cfg)
    assert calls == []
    monkeypatch.setattr(ot_config, "check_float", lambda *a, **k: 0.05)
    klot_embeddings(zx, zy, tx, ty, cfg, eps=0.05)  # options: one new, validated config
    assert calls == [1]
