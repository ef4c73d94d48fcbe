"""`sotalign fit` under torchrun (gloo, CPU) trains the same model as one process.

* 2 processes (``torchrun --standalone --nproc-per-node=2``) against 1 process with the same
  settings: the same global batches are drawn, each rank holds half of every batch's rows and of
  the OT plan, gradients are summed over ranks; weights and encoded outputs agree to 1e-4.
* One rank killed with SIGKILL mid-fit: torchrun stops the other one, and ``--resume`` (two
  processes again) ends with the weights of the uninterrupted two-process run.
* Two "nodes" on localhost (two torchrun invocations, ``--nnodes=2``, c10d rendezvous) train the
  same model as the standalone two-process run.

Every process runs with one thread, so the whole file needs no more than the two CPU cores of CI.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import sotalign
from hold_helpers import kill_when_held, write_hold_wrapper
from sotalign.methods.plan import PROBE_STEPS

STEPS = 24
CHECKPOINT_EVERY = 4
# optimiser steps done when rank 1 is killed: the timing probe's, then 10 training steps (past
# checkpoint 8, before 12)
KILL_AT = PROBE_STEPS + 10
ARGS = [
    "--set", f"steps={STEPS}",
    "--set", "dim=16",
    "--set", "alpha=0.1",
    "--set", "batch_unpaired=96",
    "--set", "sinkhorn_iters=20",
    "--set", "early_stopping=false",
    "--checkpoint-every", str(CHECKPOINT_EVERY),
    "--quiet",
]  # fmt: skip
INPUTS = [
    "--paired-images", "A.npy", "--paired-texts", "B.npy",
    "--unpaired-images", "X.npy", "--unpaired-texts", "Y.npy",
]  # fmt: skip
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", SOTALIGN_DIST_TIMEOUT="120")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def _fit(out: str, *extra: str) -> list[str]:
    return ["-m", "sotalign", "fit", *INPUTS, "--out", out, *ARGS, *extra]


def _standalone(nproc: int) -> list[str]:
    return [*TORCHRUN, "--standalone", f"--nproc-per-node={nproc}"]


def _weights(folder: Path) -> dict[str, np.ndarray]:
    return load_file(str(folder / "model.safetensors"))


def _max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in a)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def work(tmp_path_factory, two_view) -> Path:
    """Inputs, and the reference fits every test compares with (one and two processes)."""
    root = tmp_path_factory.mktemp("torchrun")
    A, B = two_view.pairs(60, 1)
    X, Y = two_view.unpaired(301, 257, 2)  # odd pool sizes: uneven row blocks
    for name, arr in dict(A=A, B=B, X=X, Y=Y, T=two_view.pairs(40, 3)[0]).items():
        np.save(root / f"{name}.npy", arr)
    _run([sys.executable, *_fit("one")], root)
    _run([*_standalone(2), *_fit("two")], root)
    return root


def test_two_processes_train_the_model_of_one(work):
    one, two = _weights(work / "one"), _weights(work / "two")
    assert _max_diff(two, one) <= 1e-4
    for model in ("one", "two"):
        _run([sys.executable, "-m", "sotalign", "encode", "--model", model,
              "--images", "T.npy", "--out", f"enc-{model}.npy"], work)  # fmt: skip
    e1, e2 = np.load(work / "enc-one.npy"), np.load(work / "enc-two.npy")
    assert e1.shape == e2.shape == (40, 16)
    assert float(np.abs(e1 - e2).max()) <= 1e-4
    history = json.loads((work / "two" / "history.json").read_text())
    run = {k: history["training"][k] for k in ("world_size", "backend")}
    assert run == {"world_size": 2, "backend": "gloo"}
    one_hist = json.loads((work / "one" / "history.json").read_text())
    run = {k: one_hist["training"][k] for k in ("world_size", "backend")}
    assert run == {"world_size": 1, "backend": "none"}
    assert history["training"]["plan"]["steps"] == one_hist["training"]["plan"]["steps"] == STEPS
    # the logged losses are the whole batch's, not one rank's share
    l1 = [s["loss"] for s in one_hist["steps"]]
    l2 = [s["loss"] for s in history["steps"]]
    assert len(l1) == len(l2) == STEPS
    np.testing.assert_allclose(l2, l1, rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_resume_after_one_rank_is_killed(work):
    # rank 1 holds still after step KILL_AT (and is killed there); rank 0 runs on and blocks
    # in the next step's all-reduce, so both are stopped at the same point every time
    hold = write_hold_wrapper(work)
    marker = work / "rank1.pid"
    cmd = [*_standalone(2), str(hold), str(KILL_AT), str(marker), "1", *_fit("run")[2:]]
    code, output = kill_when_held(cmd, marker, work, env=_env())  # torchrun stops rank 0
    assert code != 0, output
    run = work / "run"
    assert not (run / "model.safetensors").exists()
    steps = sorted(int(p.name.split("-")[1]) for p in (run / "checkpoints").glob("step-*"))
    assert steps and steps[-1] == 8, steps  # steps 9-10 are lost and must be redone

    _run([*_standalone(2), *_fit("run", "--resume")], work)
    resumed, uninterrupted = _weights(run), _weights(work / "two")
    assert _max_diff(resumed, uninterrupted) <= 1e-6
    assert _max_diff(resumed, _weights(work / "one")) <= 1e-4


def test_two_nodes_on_localhost(work):
    port = _free_port()
    procs = []
    for node in (0, 1):
        cmd = [*TORCHRUN, "--nnodes=2", f"--node-rank={node}", "--nproc-per-node=1",
               "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
               "--rdzv-id=sotalign-test", *_fit("nodes")]  # fmt: skip
        procs.append(subprocess.Popen(cmd, cwd=work, env=_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))  # fmt: skip
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=300)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outputs)
    training = json.loads((work / "nodes" / "history.json").read_text())["training"]
    assert (training["world_size"], training["backend"]) == (2, "gloo")
    assert _max_diff(_weights(work / "nodes"), _weights(work / "two")) <= 1e-6


def test_bad_input_fails_on_every_rank_with_one_line(work):
    cmd = [*_standalone(2), *_fit("bad")]
    cmd[cmd.index("X.npy")] = "missing.npy"
    proc = subprocess.run(cmd, cwd=work, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    errors = sorted(line for line in proc.stderr.splitlines() if line.startswith("error: "))
    assert [e.split(":", 2)[1] for e in errors] == [" rank 0/2", " rank 1/2"], proc.stderr
    assert errors[0].split(":", 2)[2] == errors[1].split(":", 2)[2]
    assert "missing.npy" in errors[0]
    package = Path(sotalign.__file__).parent
    assert f'File "{package}' not in proc.stderr  # no traceback through our code
    assert not (work / "bad").exists()
