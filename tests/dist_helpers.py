"""Run a function on W spawned processes joined in a gloo group (CPU), collect their results.

Each rank calls ``fn(comm, *args)`` and returns a JSON-able value; :func:`run_ranks` returns
the list of values in rank order, or raises with the failing rank's traceback.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _entry(rank: int, world: int, root: str, fn: Callable[..., Any], args: tuple) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    out = Path(root) / f"rank{rank}.json"
    try:
        dist.init_process_group(
            "gloo", init_method=f"file://{root}/store", rank=rank, world_size=world
        )
        from sotalign.parallel import Comm

        value = fn(Comm.from_group(), *args)
        out.write_text(json.dumps({"ok": value}))
    except BaseException:
        out.write_text(json.dumps({"error": traceback.format_exc()}))
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_ranks(
    world: int, fn: Callable[..., Any], root: Path, *args: Any, timeout: float = 300.0
) -> list[Any]:
    """Spawn ``world`` processes running ``fn(comm, *args)``; their return values by rank."""
    root.mkdir(parents=True, exist_ok=True)
    ctx = mp.start_processes(
        _entry, args=(world, str(root), fn, args), nprocs=world, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + timeout
    try:
        while not ctx.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                for p in ctx.processes:
                    p.kill()
                raise AssertionError(f"the ranks did not finish within {timeout} s")
    except mp.ProcessRaisedException as exc:
        raise AssertionError(f"a rank failed:\n{exc}") from None
    results = []
    for r in range(world):
        got = json.loads((root / f"rank{r}.json").read_text())
        if "error" in got:
            raise AssertionError(f"rank {r} failed:\n{got['error']}")
        results.append(got["ok"])
    return results
