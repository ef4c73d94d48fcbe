"""Scale of the data pipeline: training steps streamed from memory-mapped unpaired pools.

Writes synthetic unpaired pools (float16 ``.npy``; rows = tanh of a random projection of a shared
16-d latent, plus noise) of ``--pool`` rows × ``--dim`` columns per modality to ``--workdir``
(outside the repository), plus ``--pairs`` pairs, then runs ``--steps`` SOTAlign training steps
with the pools memory-mapped, and reports steps per second and the process's peak resident memory
next to the size of the pools on disk: the pools are never loaded whole.

    python benchmarks/pipeline_scale.py --pool 1000000 --pairs 10000 --steps 20 \\
        --out benchmarks/results/pipeline_scale
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sotalign.io import atomic_write


def write_pool(path: Path, n: int, d: int, proj: np.ndarray, seed: int, chunk: int = 65536) -> None:
    if path.exists() and np.load(path, mmap_mode="r").shape == (n, d):
        return
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, d))
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        z = rng.standard_normal((m, proj.shape[0]), dtype=np.float32)
        block = np.tanh(z @ proj) + 0.3 * rng.standard_normal((m, d), dtype=np.float32)
        out[s : s + m] = block
    out.flush()
    del out
    tmp.rename(path)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_status_mb(field: str) -> float:
    """A memory field of /proc/self/status in MB (Linux; NaN elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def main() -> None:
    from sotalign.models import AlignmentModel, CCATeacher
    from sotalign.ot import KLOTConfig
    from sotalign.training import TrainConfig, TrainData, Trainer, objective_from_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=int, default=1_000_000)
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--batch-unpaired", type=int, default=4096)
    ap.add_argument("--batch-pairs", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sinkhorn-iters", type=int, default=100)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/sotalign-scale"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--write-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.workdir.mkdir(parents=True, exist_ok=True)
    fx, fy = args.workdir / f"X_{args.pool}.npy", args.workdir / f"Y_{args.pool}.npy"
    if not (fx.exists() and fy.exists()):  # write the pools in a child process, then rerun
        import subprocess

        child_args = [*sys.argv[1:], "--write-only"]
        code = f"import sys; sys.argv[1:] = {child_args!r}; import runpy; "
        code += f"runpy.run_path({__file__!r}, run_name='__main__')"
        subprocess.run([sys.executable, "-c", code], check=True)
    rng = np.random.default_rng(0)
    px = rng.standard_normal((16, args.dim)).astype(np.float32) / 4
    py = rng.standard_normal((16, args.dim)).astype(np.float32) / 4
    write_pool(fx, args.pool, args.dim, px, 1)
    write_pool(fy, args.pool, args.dim, py, 2)
    if args.write_only:
        return
    z = rng.standard_normal((args.pairs, 16)).astype(np.float32)
    A = (np.tanh(z @ px) + 0.3 * rng.standard_normal((args.pairs, args.dim))).astype(np.float32)
    B = (np.tanh(z @ py) + 0.3 * rng.standard_normal((args.pairs, args.dim))).astype(np.float32)
    X = np.load(fx, mmap_mode="r")
    Y = np.load(fy, mmap_mode="r")
    rss_before = peak_rss_mb()
    teacher = CCATeacher().fit(A, B)
    cfg = TrainConfig(
        steps=args.steps,
        lr=1e-4,
        batch_pairs=args.batch_pairs,
        batch_unpaired=args.batch_unpaired,
        klot=KLOTConfig(n_iter=args.sinkhorn_iters),
        device="auto",
    )
    torch.manual_seed(0)
    model = AlignmentModel(args.dim, args.dim, 1024, teacher=teacher)
    data = TrainData.from_arrays(A, B, X, Y)
    trainer = Trainer(model, objective_from_config(cfg, 1e-3), data, cfg, progress=False)
    step_times = []
    for _ in range(args.steps):
        s = time.perf_counter()
        trainer.run(stop_after=1)
        step_times.append(time.perf_counter() - s)
    warm = step_times[1:] or step_times
    med = float(np.median(warm))
    pool_gb = 2 * X.size * 2 / 1e9
    last = trainer.history[-1]
    lines = [
        "# Data pipeline at scale: memory-mapped unpaired pools",
        "",
        f"Command: `python {' '.join(sys.argv)}`",
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"device {trainer.device}, torch {torch.__version__}",
        "",
        "| pairs | unpaired pools | on disk | unpaired batch | steps | median s/step | steps/s |"
        " peak RSS | anonymous RSS at end | file-backed RSS at end |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {args.pairs:,} | 2 × {args.pool:,} × {args.dim} f16 | {pool_gb:.1f} GB |"
        f" {args.batch_unpaired} | {args.steps} | {med:.2f} | {1 / med:.3f} |"
        f" {peak_rss_mb() / 1024:.2f} GB | {proc_status_mb('RssAnon') / 1024:.2f} GB |"
        f" {proc_status_mb('RssFile') / 1024:.2f} GB |",
        "",
        "Anonymous RSS is the process's own memory (pairs, model, optimiser, OT buffers);"
        " file-backed RSS is the pages of the memory-mapped pools touched so far (shared with the"
        " page cache, dropped under memory pressure). Run the script once to write the pools;"
        " the figures above come from a run that found them on disk, so the peak excludes"
        " writing them.",
        "",
        f"Peak RSS before training (pairs in RAM, pools mapped): {rss_before / 1024:.2f} GB;"
        " Last step: " + ", ".join(f"{k}={v:.3g}" for k, v in last.items() if isinstance(v, float)),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        with atomic_write(args.out.with_suffix(".md"), "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
