"""A `sotalign fit` killed with SIGKILL at a random step and resumed ends with the same
weights as an uninterrupted run with the same seed."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

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
    "3",
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


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_then_resume_matches_uninterrupted(tmp_path, two_view):
    A, B = two_view.pairs(60, 1)
    X, Y = two_view.unpaired(400, 300, 2)
    for name, arr in dict(A=A, B=B, X=X, Y=Y).items():
        np.save(tmp_path / f"{name}.npy", arr)
    subprocess.run(fit_cmd("ref"), cwd=tmp_path, check=True, timeout=600)

    rng = np.random.default_rng(int(time.time()))
    kill_after = int(rng.integers(2, 10))  # kill once this checkpoint step exists (random)
    proc = subprocess.Popen(fit_cmd("run"), cwd=tmp_path)
    ck = tmp_path / "run" / "checkpoints"
    deadline = time.time() + 300
    target = f"step-{3 * kill_after:09d}"
    while time.time() < deadline and proc.poll() is None:
        if (ck / target).is_dir():
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "run" / "model.safetensors").exists()
    subprocess.run([*fit_cmd("run"), "--resume"], cwd=tmp_path, check=True, timeout=600)
    ref = load_file(str(tmp_path / "ref" / "model.safetensors"))
    got = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert ref.keys() == got.keys()
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], atol=1e-6, rtol=0, err_msg=k)
