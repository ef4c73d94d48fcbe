"""A wrapper that runs ``python -m sotalign ARGS...`` and holds still after a given optimiser
step, so that a test can kill it at a known point.

``python hold.py KILL_AT MARKER RANK ARGS...``: after optimiser step KILL_AT (counted by a
global torch optimiser hook, so it does not depend on where the trainer lives) the process whose
``RANK`` environment variable equals RANK (``any``: every process) writes its pid to MARKER and
sleeps until killed. Under torchrun the other ranks then block in the next collective.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

HOLD_WRAPPER = """
import os, runpy, sys, time
from torch.optim.optimizer import register_optimizer_step_post_hook

kill_at, marker, rank = int(sys.argv[1]), sys.argv[2], sys.argv[3]
steps = 0

def hold(optimizer, args, kwargs):
    global steps
    steps += 1
    if steps == kill_at and rank in ("any", os.environ.get("RANK")):
        with open(marker + ".tmp", "w") as fh:
            fh.write(str(os.getpid()))
        os.replace(marker + ".tmp", marker)
        while True:  # until the test kills this process
            time.sleep(60)

register_optimizer_step_post_hook(hold)
sys.argv = ["sotalign", *sys.argv[4:]]
runpy.run_module("sotalign", run_name="__main__", alter_sys=True)
"""


def write_hold_wrapper(folder: Path) -> Path:
    """Write the wrapper as ``folder/hold.py``; return its path."""
    path = folder / "hold.py"
    path.write_text(HOLD_WRAPPER)
    return path


def kill_when_held(
    cmd: list[str], marker: Path, cwd: Path, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run ``cmd`` (which runs the wrapper); once a process writes ``marker``, SIGKILL that
    process and wait for ``cmd`` to end (a launcher such as torchrun then stops the others).
    Returns the exit status of ``cmd`` and its output."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if not marker.exists():
            proc.kill()
            raise AssertionError(f"the run never held still: {proc.communicate()[0]}")
        os.kill(int(marker.read_text()), signal.SIGKILL)
        output, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, output
