"""A `sotalign fit` killed with SIGKILL at a fixed step and resumed ends with the same
weights, bit for bit, as an uninterrupted run with the same seed.

The killed run is `python -m sotalign fit` started through a small wrapper
(``hold_helpers.py``) that counts optimiser steps; after step KILL_AT it writes a marker file
and holds still, and the test kills it there. KILL_AT lies between two checkpoints, so the
resumed run restarts from the last one and redoes the lost steps: the kill point, and so the
test, is the same on every run.
"""

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from hold_helpers import kill_when_held, write_hold_wrapper
from sotalign.methods.plan import PROBE_STEPS

CHECKPOINT_EVERY = 3
# optimiser steps done when killed: the fit's timing probe (PROBE_STEPS, on a throw-away
# model), then 11 training steps: past checkpoint 9, before checkpoint 12
KILL_AT = PROBE_STEPS + 11
LAST_CHECKPOINT = 9

ARGS = [
    "--set",
    "steps=40",
    "--set",
    "dim=32",
    "--set",
    "alpha=0.1",
    "--set",
    "batch_unpaired=128",
    "--set",
    "sinkhorn_iters=30",
    "--set",
    "early_stopping=false",
    "--checkpoint-every",
    str(CHECKPOINT_EVERY),
    "--quiet",
]


def fit_cmd(out):
    return [
        sys.executable,
        "-m",
        "sotalign",
        "fit",
        "--paired-images",
        "A.npy",
        "--paired-texts",
        "B.npy",
        "--unpaired-images",
        "X.npy",
        "--unpaired-texts",
        "Y.npy",
        "--out",
        out,
        *ARGS,
    ]


def _checkpoint_steps(folder: Path) -> list[int]:
    return sorted(
        int(p.name.split("-")[1]) for p in folder.glob("step-*") if (p / "state.json").exists()
    )


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_then_resume_matches_uninterrupted(tmp_path, two_view):
    A, B = two_view.pairs(60, 1)
    X, Y = two_view.unpaired(400, 300, 2)
    for name, arr in dict(A=A, B=B, X=X, Y=Y).items():
        np.save(tmp_path / f"{name}.npy", arr)
    subprocess.run(fit_cmd("ref"), cwd=tmp_path, check=True, timeout=600)

    hold = write_hold_wrapper(tmp_path)
    marker = tmp_path / "ready"
    cmd = [sys.executable, str(hold), str(KILL_AT), str(marker), "any", *fit_cmd("run")[3:]]
    code, output = kill_when_held(cmd, marker, tmp_path)
    assert code == -signal.SIGKILL, output
    assert not (tmp_path / "run" / "model.safetensors").exists()
    # killed mid-interval: steps 10-11 are lost and must be redone from checkpoint 9
    assert _checkpoint_steps(tmp_path / "run" / "checkpoints")[-1] == LAST_CHECKPOINT

    subprocess.run([*fit_cmd("run"), "--resume"], cwd=tmp_path, check=True, timeout=600)
    ref = load_file(str(tmp_path / "ref" / "model.safetensors"))
    got = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert ref.keys() == got.keys()
    for k in ref:
        assert got[k].dtype == ref[k].dtype and got[k].shape == ref[k].shape, k
        assert got[k].tobytes() == ref[k].tobytes(), k  # bit-identical, not merely close


SELECT_ARGS = [
    "--set", "steps=12", "--set", "dim=16", "--set", "alpha_grid=[1.0, 0.1]",
    "--set", "batch_unpaired=96", "--set", "sinkhorn_iters=20",
    "--checkpoint-every", "3", "--quiet",
]  # fmt: skip
# two timing probes (alpha = 0 and > 0), then: full selection — candidate alpha=0 (12 steps)
# and 7 steps of alpha=1; successive halving (rung at step 4, the best 1 continues) — three
# candidates to step 4, then 4 steps of the survivor (alpha=0: every score ties at 100 here,
# and ties keep the earlier candidate)
SELECT_KILL_AT = {"full": 2 * PROBE_STEPS + 12 + 7, "halving": 2 * PROBE_STEPS + 3 * 4 + 4}


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("selection", ["full", "halving"])
def test_a_selection_killed_mid_candidate_resumes_to_the_same_model(tmp_path, two_view, selection):
    A, B = two_view.pairs(80, 1)
    X, Y = two_view.unpaired(300, 250, 2)
    for name, arr in dict(A=A, B=B, X=X, Y=Y).items():
        np.save(tmp_path / f"{name}.npy", arr)
    args = [*SELECT_ARGS, "--set", f"selection={selection}"]
    base = fit_cmd("ref")[: -len(ARGS)]
    subprocess.run([*base, *args], cwd=tmp_path, check=True, timeout=600)

    hold = write_hold_wrapper(tmp_path)
    marker = tmp_path / "ready"
    run = [*fit_cmd("run")[3 : -len(ARGS)], *args]
    cmd = [sys.executable, str(hold), str(SELECT_KILL_AT[selection]), str(marker), "any", *run]
    code, output = kill_when_held(cmd, marker, tmp_path)
    assert code == -signal.SIGKILL, output
    ckpt = tmp_path / "run" / "checkpoints"
    if selection == "full":
        rows = json.loads((ckpt / "selection.json").read_text())
        assert [r["candidate"] for r in rows] == ["teacher:cca", "alpha=0"]  # finished first
        assert _checkpoint_steps(ckpt / "candidates" / "alpha=1")[-1] == 6  # interrupted
    else:  # killed while the survivor continues (step 8): nothing chosen yet
        assert not (ckpt / "selection.json").exists()
        last = {
            n: _checkpoint_steps(ckpt / "candidates" / n)[-1]
            for n in ("alpha=0", "alpha=1", "alpha=0.1")
        }
        assert last == {"alpha=0": 6, "alpha=1": 4, "alpha=0.1": 4}

    # without --resume: refused, pointing to --resume
    again = subprocess.run([*base[:-1], "run", *args], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)  # fmt: skip
    assert again.returncode == 2 and "--resume" in again.stderr
    subprocess.run([*base[:-1], "run", *args, "--resume"], cwd=tmp_path, check=True,
                   timeout=600)  # fmt: skip
    ref = load_file(str(tmp_path / "ref" / "model.safetensors"))
    got = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert ref.keys() == got.keys()
    for k in ref:
        assert got[k].tobytes() == ref[k].tobytes(), k
    table = json.loads((tmp_path / "run" / "history.json").read_text())["selection"]
    ref_table = json.loads((tmp_path / "ref" / "history.json").read_text())["selection"]
    assert table == ref_table and len(table) == 4
