"""Time per SOTAlign training step and peak memory per rank: 1 process against 2 (torchrun, gloo).

One step is what `sotalign fit` does each step: draw the paired and unpaired batches, embed them
with the heads, SigLIP on the pairs, KLOT between the student's and the CCA teacher's affinities
on the n × n unpaired batch (both entropic OT plans solved, closed-form gradient), backward, the
gradient all-reduce (2 processes), the Lion step. The real `Trainer` runs it, on synthetic
two-view data (every rank builds the same arrays from one seed).

Configurations, side by side in one run, per unpaired batch size n:
  1 proc  dense   the single-process dense solver (n × n plan in memory)
  1 proc  tiled   the single-process tiled solver (no n × n matrix: recomputed in tiles)
  2 procs dense   sharded: each rank holds n/2 × n of each plan
  2 procs tiled   sharded and tiled
Every process runs one thread (OMP_NUM_THREADS=1), so 2 processes use the 2 cores of this
machine and 1 process uses one: the 2-process rows measure the speed-up of sharding, not of
threads. Each configuration is a fresh process tree: one warm-up step, then ``--repeats`` timed
steps (median reported); the configurations of one n run one after another.

Peak memory per rank: the peak resident set (``ru_maxrss``) minus the resident set before the
first step (inputs, model and the torch runtime excluded), the larger of the ranks; with
``MALLOC_MMAP_THRESHOLD_=131072`` so large temporaries are returned to the system and the
peak measures allocations.

Usage (the committed results):
    .venv/bin/python benchmarks/dist_step.py --sizes 2048 4096 8192 \
        --out benchmarks/results/dist_step
Worker mode (one configuration; under torchrun for 2 processes) is used by the driver.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover - not Linux


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    from sotalign import SOTAlign
    from sotalign.methods.common import fit_teacher
    from sotalign.models import AlignmentModel
    from sotalign.parallel import init_from_env, shutdown
    from sotalign.synthetic import TwoView
    from sotalign.training import TrainData, Trainer, objective_from_config

    comm = init_from_env("cpu")
    tv = TwoView(d_x=args.d_in, d_y=args.d_in, latent=32, noise=0.3, seed=0)
    A, B = tv.pairs(args.pairs, 1)
    X, Y = tv.unpaired(args.batch, args.batch, 2)
    params = dict(
        dim=args.dim, alpha=0.1, batch_unpaired=args.batch, sinkhorn_iters=args.iters,
        ot_mode=args.ot_mode, steps=1000, progress=False, device="cpu", recipe="paper",
        optimizer="lion", lr=1e-4, head="linear",
    )  # fmt: skip
    cfg = SOTAlign(**params).config()
    data = TrainData.from_arrays(A, B, X, Y)
    teacher = fit_teacher(cfg, data)
    torch.manual_seed(0)
    model = AlignmentModel(data.images.dim, data.texts.dim, cfg.dim, cfg.head, teacher=teacher)
    trainer = Trainer(model, objective_from_config(cfg.train, 0.1), data, cfg.train, progress=False)
    rss0 = _rss_mb()
    times = []
    for i in range(1 + args.repeats):
        comm.sum_float(torch.zeros(1))  # all ranks start together (an all-reduce as barrier)
        t = time.perf_counter()
        trainer.run(stop_after=1)
        comm.sum_float(torch.zeros(1))
        if i:  # the first step warms up
            times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    last = trainer.history[-1]
    mine = [peak - rss0, peak]
    every = comm.gather_rows(torch.tensor([mine], dtype=torch.float64))
    if comm.rank == 0:
        rec = {
            "n": args.batch,
            "mode": args.ot_mode,
            "procs": comm.world_size,
            "step_s": statistics.median(times),
            "step_s_all": times,
            "peak_step_mb_per_rank": float(every[:, 0].max()),
            "peak_rss_mb_per_rank": float(every[:, 1].max()),
            "loss": last["loss"],
        }
        with open(args.record, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
    shutdown()


def driver(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = out.with_suffix(".jsonl")
    record.unlink(missing_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="131072")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    me = [str(Path(__file__).resolve())]
    common = ["--worker", "--record", str(record), "--repeats", str(args.repeats),
              "--iters", str(args.iters), "--dim", str(args.dim), "--d-in", str(args.d_in),
              "--pairs", str(args.pairs)]  # fmt: skip
    t_start = time.perf_counter()
    retries: list[str] = []
    for n in args.sizes:
        for mode in args.modes:
            for procs in (1, 2):
                launch = [sys.executable] if procs == 1 else [
                    sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc-per-node={procs}",
                ]  # fmt: skip
                cmd = [*launch, *me, *common, "--batch", str(n), "--ot-mode", mode]
                t = time.perf_counter()
                if subprocess.run(cmd, env=env).returncode != 0:  # see "retries" in the results
                    retries.append(f"n={n} {mode} procs={procs}")
                    subprocess.run(cmd, env=env, check=True)
                print(f"n={n} {mode} procs={procs}: {time.perf_counter() - t:.0f} s", flush=True)
    rows = [json.loads(line) for line in record.read_text().splitlines()]
    meta = {
        "command": "python benchmarks/dist_step.py " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": __import__("torch").__version__,
        "load_average_after": os.getloadavg(),
        "wall_s": time.perf_counter() - t_start,
        "retries": retries,  # launches that failed once and were rerun
        "settings": {k: getattr(args, k) for k in ("iters", "dim", "d_in", "pairs", "repeats")},
    }
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [
        "| n | mode | procs | step (s, median) | speed-up vs 1 proc | peak step MB per rank"
        " | n² float32 MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = next(
            b for b in rows if b["n"] == r["n"] and b["mode"] == r["mode"] and b["procs"] == 1
        )
        lines.append(
            f"| {r['n']} | {r['mode']} | {r['procs']} | {r['step_s']:.2f} |"
            f" {base['step_s'] / r['step_s']:.2f}× | {r['peak_step_mb_per_rank']:.0f} |"
            f" {r['n'] ** 2 * 4 / 2**20:.0f} |"
        )
    out.with_suffix(".table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--record", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--ot-mode", help=argparse.SUPPRESS)
    p.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192])
    p.add_argument("--modes", nargs="+", default=["dense", "tiled"])
    p.add_argument("--iters", type=int, default=20, help="Sinkhorn iterations per solve")
    p.add_argument("--dim", type=int, default=128, help="aligned (student) dimension")
    p.add_argument("--d-in", type=int, default=128, help="input embedding dimension")
    p.add_argument("--pairs", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/dist_step")
    args = p.parse_args()
    if args.worker:
        worker(args)
    else:
        driver(args)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
