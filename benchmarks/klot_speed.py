"""KLOT forward+backward speed, memory and accuracy, all methods side by side in one run.

Problem: unpaired batch of n images and n texts, student embeddings d = 1024, teacher embeddings
d* = 384 (L2-normalised rows with cluster structure, cosines roughly in [-0.7, 0.95]),
eps = 0.05 (student), eps* = 0.01 (teacher). One "step" = both Sinkhorn solves + KL value +
gradient with respect to the image embeddings (and the text embeddings for our paths).

Methods:
  reference      log-domain Sinkhorn of SPEC §3 (100 fixed iterations, LSE over an n×n temporary
                 per half-step) + closed-form gradient (``sotalign.ot.klot_embeddings(mode="log")``)
  pot            POT ``ot.sinkhorn(method="sinkhorn_log")`` (100 iterations) + closed form
  autograd       backpropagation through 100 unrolled log-domain iterations (float32)
  dense-100      ours, dense, 100 fixed iterations (``klot_embeddings(mode="dense")``)
  dense-tol      ours, dense, tol = 1e-4 (eps-scaling + over-relaxation)
  tiled-tol      ours, tiled (no n×n matrix), tol = 1e-4
  tiled-k        ours, tiled, a fixed small number of iterations (the 50k run)
Accuracy is measured against a float64 run to a tight tolerance (our scaling solver in float64;
that solver is tested against POT and the log-domain reference in tests/test_ot*.py).
The memory-bandwidth floor is the measured time of one float32 n×n matrix-vector product
(median of 20) times the number of matrix-vector passes: two per Sinkhorn iteration per solve.

Usage (the committed results):
    .venv/bin/python benchmarks/klot_speed.py --out benchmarks/results/klot_speed

Before/after a change of the solver, in one run: ``--baseline /tmp/old_ot.py`` loads an older
``sotalign/ot.py`` (a single module file with the same ``klot_embeddings`` keyword options) and
times its dense/tiled paths beside ours, interleaved repeat by repeat; its rows are named
``<method> (baseline)``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from sotalign import ot as sot

Step = Callable[[], dict[str, Any]]


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
def make_batch(n: int, d: int = 1024, dt_: int = 384, seed: int = 0, k: int = 64) -> tuple:
    """Clustered unit embeddings: a shared 32-d latent seen through fixed random maps + noise."""
    g = torch.Generator().manual_seed(seed)
    r = 32
    C = torch.randn(k, r, generator=g)
    Wx = torch.randn(r, d, generator=g)
    Wy = torch.randn(r, d, generator=g)
    Wt = torch.randn(r, dt_, generator=g)
    hx = C[torch.randint(k, (n,), generator=g)] + 0.5 * torch.randn(n, r, generator=g)
    hy = C[torch.randint(k, (n,), generator=g)] + 0.5 * torch.randn(n, r, generator=g)
    iso = 0.15 * math.sqrt(r)
    N = torch.nn.functional.normalize
    zx = N(hx @ Wx + iso * torch.randn(n, d, generator=g), dim=1)
    zy = N(hy @ Wx + 0.5 * (hy @ Wy) / math.sqrt(r) + iso * torch.randn(n, d, generator=g), dim=1)
    tx = N(hx @ Wt + iso * torch.randn(n, dt_, generator=g), dim=1)
    ty = N(hy @ Wt + iso * torch.randn(n, dt_, generator=g), dim=1)
    return zx.contiguous(), zy.contiguous(), tx.contiguous(), ty.contiguous()


# ------------------------------------------------------------------------------------------------
# memory: peak resident set size of this process during a call (Linux VmHWM, reset per call)
# ------------------------------------------------------------------------------------------------
def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return -1


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


DEVICE = torch.device("cpu")  # --device


def measure(fn: Step) -> tuple[float, int, dict[str, Any]]:
    """(seconds, peak extra bytes over the resident set before the call, fn's output).

    On CUDA: seconds between synchronisations, peak allocated device memory above the start.
    """
    import gc

    gc.collect()
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)
        torch.cuda.reset_peak_memory_stats(DEVICE)
        base = torch.cuda.memory_allocated(DEVICE)
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize(DEVICE)
        sec = time.perf_counter() - t0
        return sec, torch.cuda.max_memory_allocated(DEVICE) - base, out
    ok = _reset_peak()
    base = _status("VmRSS")
    t0 = time.perf_counter()
    out = fn()
    sec = time.perf_counter() - t0
    peak = _status("VmHWM") - base if ok else -1
    return sec, peak, out


# ------------------------------------------------------------------------------------------------
# methods (each returns value, grad wrt zx, marginal errors, iterations)
# ------------------------------------------------------------------------------------------------
EPS, EPS_T = 0.05, 0.01


def _ours(zx, zy, tx, ty, module: ModuleType = sot, **kw) -> Step:
    """``module.klot_embeddings`` with keyword options (``module``: ours or a baseline)."""

    def step() -> dict[str, Any]:
        x = zx.clone().requires_grad_(True)
        y = zy.clone().requires_grad_(True)
        loss, info = module.klot_embeddings(x, y, tx, ty, eps=EPS, eps_teacher=EPS_T, **kw)
        loss.backward()
        return {"value": float(loss.detach()), "grad": x.grad, **info.as_dict()}

    return step


def _reference(zx, zy, tx, ty) -> Step:
    cfg = sot.KLOTConfig(eps=EPS, eps_teacher=EPS_T, n_iter=100, mode="log")

    def step() -> dict[str, Any]:
        x = zx.clone().requires_grad_(True)
        val, info = sot.klot_embeddings(x, zy, tx, ty, cfg)
        val.backward()
        return {"value": float(val.detach()), "grad": x.grad, **info.as_dict()}

    return step


def load_baseline(path: str) -> ModuleType:
    """An older ``sotalign/ot.py`` loaded from a file (it may import ``sotalign.errors``)."""
    spec = importlib.util.spec_from_file_location("klot_speed_baseline", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _pot(zx, zy, tx, ty) -> Step:
    import ot as pot

    def step() -> dict[str, Any]:
        n, m = zx.shape[0], zy.shape[0]
        a = torch.full((n,), 1.0 / n, device=zx.device)
        b = torch.full((m,), 1.0 / m, device=zx.device)
        K = zx @ zy.T
        P = pot.sinkhorn(a, b, -K, reg=EPS, method="sinkhorn_log", numItermax=100, stopThr=0.0)
        del K
        Kt = tx @ ty.T
        Ps = pot.sinkhorn(a, b, -Kt, reg=EPS_T, method="sinkhorn_log", numItermax=100, stopThr=0.0)
        del Kt
        val = float((Ps * (Ps.clamp_min(1e-38).log() - P.clamp_min(1e-38).log())).sum())
        G = (P - Ps) / EPS
        err = float((P.sum(1) - a).abs().sum() + (P.sum(0) - b).abs().sum())
        err_t = float((Ps.sum(1) - a).abs().sum() + (Ps.sum(0) - b).abs().sum())
        return {
            "value": val,
            "grad": G @ zy,
            "marginal_error": err,
            "marginal_error_teacher": err_t,
            "n_iter": 100,
            "n_iter_teacher": 100,
        }

    return step


def _autograd(zx, zy, tx, ty) -> Step:
    def unrolled(K: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
        n, m = K.shape
        L = K / eps
        la, lb = -math.log(n), -math.log(m)
        v = torch.zeros(m, device=K.device)
        u = torch.zeros(n, device=K.device)
        for _ in range(iters):
            u = la - torch.logsumexp(L + v[None, :], dim=1)
            v = lb - torch.logsumexp(L + u[:, None], dim=0)
        return L + u[:, None] + v[None, :]

    def step() -> dict[str, Any]:
        x = zx.clone().requires_grad_(True)
        log_p = unrolled(x @ zy.T, EPS, 100)
        with torch.no_grad():
            log_ps = unrolled(tx @ ty.T, EPS_T, 100)
        val = (log_ps.exp() * (log_ps - log_p)).sum()
        val.backward()
        P = log_p.detach().exp()
        Ps = log_ps.exp()
        n = P.shape[0]
        err = float((P.sum(1) - 1 / n).abs().sum() + (P.sum(0) - 1 / n).abs().sum())
        err_t = float((Ps.sum(1) - 1 / n).abs().sum() + (Ps.sum(0) - 1 / n).abs().sum())
        return {
            "value": float(val.detach()),
            "grad": x.grad,
            "marginal_error": err,
            "marginal_error_teacher": err_t,
            "n_iter": 100,
            "n_iter_teacher": 100,
        }

    return step


def float64_reference(zx, zy, tx, ty, tol: float, max_iter: int) -> dict[str, Any]:
    """KL value and gradient wrt zx from float64 solves run to ``tol``."""
    x = zx.double().requires_grad_(True)
    cfg = sot.KLOTConfig(eps=EPS, eps_teacher=EPS_T, n_iter=max_iter, tol=tol, mode="dense")
    loss, info = sot.klot_embeddings(x, zy.double(), tx.double(), ty.double(), cfg)
    loss.backward()
    return {"value": float(loss.detach()), "grad": x.grad.float(), **info.as_dict()}


def gemv_seconds(n: int, reps: int = 20) -> float:
    E = torch.rand(n, n, device=DEVICE)
    v = torch.rand(n, device=DEVICE)
    E.mv(v)
    ts = []
    for _ in range(reps):
        if DEVICE.type == "cuda":
            torch.cuda.synchronize(DEVICE)
        t0 = time.perf_counter()
        E.mv(v)
        if DEVICE.type == "cuda":
            torch.cuda.synchronize(DEVICE)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


# ------------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    if DEVICE.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(DEVICE)
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            k, _, v = line.partition(":")
            if k.strip() in ("Model name", "L2 cache", "L3 cache", "Hypervisor vendor"):
                info[k.strip()] = v.strip()
        info["mem_total_gb"] = round(_meminfo("MemTotal") / 2**30, 1)
    except OSError:
        pass
    return info


def _meminfo(key: str) -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return -1


_ENV = {
    # every allocation above 128 KiB is its own mapping, returned to the OS when freed, so the
    # resident-set peak of a call measures what the call allocated
    "MALLOC_MMAP_THRESHOLD_": "131072",
    # OpenMP threads sleep instead of spinning while waiting (the machine's cores are shared)
    "OMP_WAIT_POLICY": "PASSIVE",
}


def main() -> None:
    if any(os.environ.get(k) != v for k, v in _ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **_ENV})
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[1024, 2048, 4096, 8192])
    p.add_argument("--tiled-n", type=int, default=50000, help="tiled-only run size (0: skip)")
    p.add_argument("--tiled-iters", type=int, default=1, help="iterations per solve there")
    p.add_argument("--d", type=int, default=1024, help="student embedding dimension")
    p.add_argument("--d-teacher", type=int, default=384, help="teacher embedding dimension")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument(
        "--slow-max-n", type=int, default=4096, help="largest n for the reference and POT baselines"
    )
    p.add_argument("--ref-tol", type=float, default=1e-5, help="float64 reference tolerance")
    p.add_argument("--autograd-max-n", type=int, default=1024)
    p.add_argument("--tiled-tol-max-n", type=int, default=1024)
    p.add_argument("--out", default="benchmarks/results/klot_speed")
    p.add_argument("--baseline", metavar="FILE", help="an older sotalign/ot.py to time beside ours")
    p.add_argument("--only", nargs="*", help="run only these methods (e.g. dense-100 tiled-tol)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (CUDA: synchronised timings)")
    p.add_argument("--render", nargs="+", metavar="JSON", help="only print tables of results")
    args = p.parse_args()
    if args.render:
        print(render_files(args.render))
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    global DEVICE
    DEVICE = torch.device(args.device)
    base = load_baseline(args.baseline) if args.baseline else None
    cmd = "python " + " ".join(sys.argv)
    load0 = os.getloadavg()
    rows: list[dict[str, Any]] = []
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        payload = {
            "command": cmd,
            "env": _ENV,
            "started_utc": started,
            "machine": machine(),
            "load_avg_start": load0,
            "load_avg_now": os.getloadavg(),
            "settings": {
                "eps": EPS,
                "eps_teacher": EPS_T,
                "d": args.d,
                "d_teacher": args.d_teacher,
                "tol": args.tol,
                "repeats": args.repeats,
                "threads": args.threads,
                "baseline": args.baseline,
                "device": str(DEVICE),
            },
            "rows": rows,
        }
        out.with_suffix(".json").write_text(json.dumps(payload, indent=1))
        out.with_suffix(".md").write_text(render(payload))

    for n in args.sizes:
        zx, zy, tx, ty = (t.to(DEVICE) for t in make_batch(n, args.d, args.d_teacher))
        t_gemv = gemv_seconds(n)
        print(f"n={n}: gemv {t_gemv * 1e3:.2f} ms", flush=True)
        t0 = time.perf_counter()
        ref = float64_reference(zx, zy, tx, ty, tol=args.ref_tol, max_iter=10000)
        print(
            f"  float64 reference {time.perf_counter() - t0:.1f}s: KL {ref['value']:.6f} "
            f"err {ref['marginal_error']:.1e}/{ref['marginal_error_teacher']:.1e} "
            f"iters {ref['n_iter']}/{ref['n_iter_teacher']}",
            flush=True,
        )
        # (name, one step per module: ours first, then the baseline's if any, repeats)
        methods: list[tuple[str, list[Step], int]] = []
        slow_reps = args.repeats if n <= 4096 else 1
        if n <= args.slow_max_n:
            methods.append(("reference", [_reference(zx, zy, tx, ty)], slow_reps))
            methods.append(("pot", [_pot(zx, zy, tx, ty)], 1 if n > 2048 else args.repeats))
        if n <= args.autograd_max_n:
            methods.append(("autograd", [_autograd(zx, zy, tx, ty)], 1))
        mods = [sot] if base is None else [sot, base]
        ours: list[tuple[str, dict[str, Any], int]] = [
            ("dense-100", {"mode": "dense", "n_iter": 100}, args.repeats),
            ("dense-tol", {"mode": "dense", "n_iter": 5000, "tol": args.tol}, args.repeats),
        ]
        if n <= args.tiled_tol_max_n:
            reps = 1 if base is None else args.repeats
            ours.append(("tiled-tol", {"mode": "tiled", "n_iter": 5000, "tol": args.tol}, reps))
        for name, kw, reps in ours:
            methods.append((name, [_ours(zx, zy, tx, ty, module=m, **kw) for m in mods], reps))
        for name, fns, reps in methods:
            if args.only and name not in args.only:
                continue
            times: list[list[float]] = [[] for _ in fns]
            peaks: list[list[int]] = [[] for _ in fns]
            results: list[dict[str, Any]] = [{} for _ in fns]
            for _ in range(reps):  # interleaved: ours, baseline, ours, baseline, ...
                for k, fn in enumerate(fns):
                    sec, peak, results[k] = measure(fn)
                    times[k].append(sec)
                    peaks[k].append(peak)
            for k in range(len(fns)):
                label = name if k == 0 else f"{name} (baseline)"
                rows.append(summarise(label, n, times[k], peaks[k], results[k], ref, t_gemv))
                r = rows[-1]
                print(
                    f"  {label:21s} {r['time_s']:8.2f}s peak {r['peak_mb']:8.0f} MB "
                    f"err {r['marginal_error']:.1e}/{r['marginal_error_teacher']:.1e} "
                    f"KL relerr {r['kl_rel_error']:.1e} grad relerr {r['grad_rel_error']:.1e}",
                    flush=True,
                )
            save()
        del zx, zy, tx, ty
    if args.tiled_n:
        n = args.tiled_n
        zx, zy, tx, ty = (t.to(DEVICE) for t in make_batch(n, args.d, args.d_teacher))
        for k, m in enumerate([sot] if base is None else [sot, base]):
            fn = _ours(zx, zy, tx, ty, module=m, mode="tiled", n_iter=args.tiled_iters)
            sec, peak, res = measure(fn)
            label = f"tiled-{args.tiled_iters}it" + (" (baseline)" if k else "")
            rows.append(summarise(label, n, [sec], [peak], res, None, None))
            print(f"n={n} {label}: {sec:.1f}s peak {peak / 2**20:.0f} MB", flush=True)
            save()
    save()
    print(render({"rows": rows}))


def summarise(
    name: str,
    n: int,
    times: list[float],
    peaks: list[int],
    res: dict[str, Any],
    ref: dict[str, Any] | None,
    t_gemv: float | None,
) -> dict[str, Any]:
    passes = 2 * (int(res["n_iter"]) + int(res["n_iter_teacher"]))
    row: dict[str, Any] = {
        "n": n,
        "method": name,
        "time_s": statistics.median(times),
        "times_s": times,
        "peak_mb": max(peaks) / 2**20,
        "peak_nxn_f32": max(peaks) / (4.0 * n * n),
        "marginal_error": float(res["marginal_error"]),
        "marginal_error_teacher": float(res["marginal_error_teacher"]),
        "n_iter": int(res["n_iter"]),
        "n_iter_teacher": int(res["n_iter_teacher"]),
        "value": float(res["value"]),
        "finite": bool(
            math.isfinite(float(res["value"])) and bool(torch.isfinite(res["grad"]).all())
        ),
    }
    if ref is not None:
        row["kl_rel_error"] = abs(row["value"] - ref["value"]) / abs(ref["value"])
        row["grad_rel_error"] = float((res["grad"] - ref["grad"]).norm() / ref["grad"].norm())
        row["ref_value"] = ref["value"]
        row["ref_marginal_errors"] = [ref["marginal_error"], ref["marginal_error_teacher"]]
    else:
        row["kl_rel_error"] = float("nan")
        row["grad_rel_error"] = float("nan")
    if t_gemv is not None:
        row["gemv_ms"] = t_gemv * 1e3
        row["bandwidth_floor_s"] = passes * t_gemv
        row["floor_200_passes_s"] = 200 * t_gemv
        row["time_over_floor"] = row["time_s"] / row["bandwidth_floor_s"]
    return row


def render(payload: dict[str, Any]) -> str:
    """Markdown table (plus the run's command, machine and settings when present)."""
    rows = payload["rows"]
    lines: list[str] = []
    for key in (
        "command",
        "started_utc",
        "machine",
        "env",
        "settings",
        "load_avg_start",
        "load_avg_now",
    ):
        if key in payload:
            lines.append(f"- {key}: `{json.dumps(payload[key])}`")
    if lines:
        lines.append("")
    lines += [
        "| n | method | time (s) | speed-up vs reference | peak MB | peak / (4 n² B) | marg. err "
        "(student / teacher) | iters (s / t) | KL rel. err | grad rel. err | "
        "time / GEMV floor | time / 200-GEMV floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ref_time = {r["n"]: r["time_s"] for r in rows if r["method"] == "reference"}
    for r in rows:
        speed = f"{ref_time[r['n']] / r['time_s']:.1f}×" if r["n"] in ref_time else "–"
        floor = f"{r['time_over_floor']:.2f}" if "time_over_floor" in r else "–"
        f200 = f"{r['time_s'] / r['floor_200_passes_s']:.2f}" if "floor_200_passes_s" in r else "–"
        lines.append(
            f"| {r['n']} | {r['method']} | {r['time_s']:.2f} | {speed} | {r['peak_mb']:.0f} | "
            f"{r['peak_nxn_f32']:.2f} | {r['marginal_error']:.1e} / "
            f"{r['marginal_error_teacher']:.1e} | {r['n_iter']} / {r['n_iter_teacher']} | "
            f"{r['kl_rel_error']:.1e} | {r['grad_rel_error']:.1e} | {floor} | {f200} |"
        )
    return "\n".join(lines) + "\n"


def render_files(paths: list[str]) -> str:
    """Render several result JSON files (e.g. the main run and the large tiled run)."""
    parts = []
    for path in paths:
        payload = json.loads(Path(path).read_text())
        parts.append(f"### {Path(path).name}\n\n" + render(payload))
    return "\n".join(parts)


if __name__ == "__main__":
    main()
