"""A wrapper that runs ``python -m sotalign ARGS...`` and holds still after a given optimiser
step, so that a test can kill it at a known point.

``python hold.py KILL_AT MARKER RANK ARGS...``: after optimiser step KILL_AT (counted by a
global torch optimiser hook, so it does not depend on where the trainer lives) the process whose
``RANK`` environment variable equals RANK (``any``: every process) writes its pid to MARKER and
sleeps until killed. Under torchrun the other ranks then block in the next collective.
"""

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
