"""The training history written beside a fitted model."""

from __future__ import annotations

import json

import numpy as np

from sotalign.history import HISTORY_FILE, PLOT_FILE, write_history


def test_history_json_holds_every_step_and_the_selection(tmp_path):
    history = [{"step": s, "loss": 1.0 / s, "sup": 0.5 / s, "lr": 1e-3} for s in range(1, 11)]
    history[4].update({"val_mean_R@1": 40.0, "val_MRR": 55.0})
    history[9].update({"val_mean_R@1": 45.0, "val_MRR": 60.0})
    table = [{"candidate": "alpha=0", "val_mean_R@1": 45.0, "selected": True}]
    paths = write_history(tmp_path, history, table)
    assert [p.name for p in paths] == [HISTORY_FILE, PLOT_FILE]
    saved = json.loads((tmp_path / HISTORY_FILE).read_text())
    assert saved == {"steps": history, "selection": table}
    png = (tmp_path / PLOT_FILE).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_no_training_no_plot(tmp_path):
    assert [p.name for p in write_history(tmp_path, [], [])] == [HISTORY_FILE]
    assert not (tmp_path / PLOT_FILE).exists()
    assert json.loads((tmp_path / HISTORY_FILE).read_text()) == {"steps": [], "selection": []}


def test_a_fit_logs_what_the_history_needs(two_view):
    from sotalign import SOTAlign

    A, B = two_view.pairs(60, 1)
    X, Y = two_view.unpaired(200, 200, 2)
    est = SOTAlign(
        alpha=0.1, steps=10, lr=1e-3, dim=16, batch_unpaired=32, sinkhorn_iters=20, progress=False
    ).fit(A, B, X, Y)
    h = est.train_history_
    assert [r["step"] for r in h] == list(range(1, 11))
    for key in ("loss", "sup", "div", "lr", "marginal_error", "marginal_error_teacher"):
        assert all(np.isfinite(r[key]) for r in h), key
    assert any("val_mean_R@1" in r for r in h)


def test_fit_writes_the_history_beside_the_model(two_view, tmp_path):
    import subprocess
    import sys

    A, B = two_view.pairs(40, 1)
    np.save(tmp_path / "A.npy", A)
    np.save(tmp_path / "B.npy", B)
    cmd = [
        sys.executable,
        "-m",
        "sotalign",
        "fit",
        "--paired-images",
        str(tmp_path / "A.npy"),
        "--paired-texts",
        str(tmp_path / "B.npy"),
        "--out",
        str(tmp_path / "m"),
        "--method",
        "sail",
        "--set",
        "steps=8",
        "--set",
        "dim=8",
        "--quiet",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    saved = json.loads((tmp_path / "m" / HISTORY_FILE).read_text())
    assert saved["selection"][0]["candidate"] == "sail" and saved["selection"][0]["selected"]
    assert [s["step"] for s in saved["steps"]] == list(range(1, saved["steps"][-1]["step"] + 1))
    assert (tmp_path / "m" / PLOT_FILE).read_bytes()[:4] == b"\x89PNG"
