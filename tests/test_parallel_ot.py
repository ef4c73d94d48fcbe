"""Sharded Sinkhorn and KLOT over 2 and 3 gloo ranks equal the single-process solve (float64).

Every rank solves the whole problem in one process too (the reference) and reports the largest
relative difference of its row block: potentials, plan, value, gradients (texts gathered with
:meth:`Comm.gather_rows`, their gradient summed over ranks by its backward).
"""

from __future__ import annotations

import pytest
import torch

from dist_helpers import run_ranks
from sotalign.errors import ConfigError
from sotalign.ot import Embeddings, klot, klot_embeddings, sinkhorn
from sotalign.parallel import LOCAL, Comm, row_block

CASES = [
    ("dense", {"n_iter": 40}),
    ("tiled", {"n_iter": 40}),
    ("dense", {"n_iter": 1000, "tol": 1e-7}),  # ε-scaling and over-relaxation
    ("tiled", {"n_iter": 1000, "tol": 1e-7}),
    ("dense", {"n_iter": 150, "eps": 0.002}),  # small ε: the kernel needs stabilising
]


def _unit(n: int, d: int, gen: torch.Generator) -> torch.Tensor:
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def _solver_checks(comm: Comm, n: int, m: int, seed: int, cases: list = CASES) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    zx, zy, tx, ty = _unit(n, 6, gen), _unit(m, 6, gen), _unit(n, 8, gen), _unit(m, 8, gen)
    i0, i1 = row_block(n, comm.world_size, comm.rank)
    j0, j1 = row_block(m, comm.world_size, comm.rank)
    out = []
    for mode, opts in cases:
        rec: dict = {"mode": mode, **opts}
        ref = sinkhorn(Embeddings(zx, zy), mode=mode, **opts)
        sh = sinkhorn(Embeddings(zx[i0:i1], zy), mode=mode, group=comm, **opts)
        rec["f"] = _rel(sh.f, ref.f[i0:i1])
        rec["g"] = _rel(sh.g, ref.g)
        rec["plan"] = _rel(sh.plan, ref.plan[i0:i1])
        rec["iters"] = [sh.n_iter, ref.n_iter]
        rec["err"] = [sh.marginal_error, ref.marginal_error]
        rec["stabilised"] = [sh.stabilised, ref.stabilised]
        K = zx @ zy.T
        refk = sinkhorn(K, mode=mode, **opts)
        shk = sinkhorn(K[i0:i1], mode=mode, group=comm, **opts)
        rec["f_matrix"] = _rel(shk.f, refk.f[i0:i1])
        rec["g_matrix"] = _rel(shk.g, refk.g)

        a, b = zx.clone().requires_grad_(), zy.clone().requires_grad_()
        value, _ = klot_embeddings(a, b, tx, ty, mode=mode, **opts)
        value.backward()
        al, bl = zx[i0:i1].clone().requires_grad_(), zy[j0:j1].clone().requires_grad_()
        share, info = klot_embeddings(
            al, comm.gather_rows(bl), tx[i0:i1], ty, mode=mode, group=comm, **opts
        )
        share.backward()
        whole = float(value.detach())
        rec["value"] = abs(info.value - whole) / abs(whole)
        rec["value_sum"] = abs(comm.sum_float(share.detach()) - whole) / abs(whole)
        rec["grad_x"] = _rel(al.grad, a.grad[i0:i1])
        rec["grad_y"] = _rel(bl.grad, b.grad[j0:j1])
        rec["world_size"] = info.world_size

        Ks = K.clone().requires_grad_()
        Kt = tx @ ty.T
        v2 = klot(Ks, Kt, mode=mode, **opts)
        v2.backward()
        Kl = K[i0:i1].clone().requires_grad_()
        s2 = klot(Kl, Kt[i0:i1], mode=mode, group=comm, **opts)
        s2.backward()
        rec["value_matrix"] = abs(comm.sum_float(s2.detach()) - float(v2)) / abs(float(v2))
        rec["grad_matrix"] = _rel(Kl.grad, Ks.grad[i0:i1])
        out.append(rec)
    return out


@pytest.mark.parametrize(("world", "n", "m"), [(2, 23, 17), (3, 4, 31)])
def test_sharded_solves_equal_the_single_process_solve(tmp_path, world, n, m):
    results = run_ranks(world, _solver_checks, tmp_path, n, m, world * 100 + n)
    keys = ("f", "g", "plan", "f_matrix", "g_matrix", "value", "value_sum", "grad_x", "grad_y")
    for rank, recs in enumerate(results):
        for rec in recs:
            where = f"rank {rank}, {rec['mode']} {rec.get('n_iter')} {rec.get('tol')}"
            for key in (*keys, "value_matrix", "grad_matrix"):
                assert rec[key] <= 1e-8, f"{where}: {key} differs by {rec[key]:.2e}"
            assert rec["iters"][0] == rec["iters"][1], where
            assert rec["err"][0] == pytest.approx(rec["err"][1], rel=1e-6, abs=1e-12), where
            assert rec["world_size"] == world
    # the small-ε case did exercise the stabilised (absorbing) path, sharded and not
    assert any(r["stabilised"][0] for recs in results for r in recs if r.get("eps") == 0.002)
    # rows were split unevenly and every rank took part
    assert len(results) == world


def test_one_process_is_the_local_communicator():
    assert Comm.from_group() is LOCAL and not LOCAL.sharded
    t = torch.arange(3.0)
    assert LOCAL.sum_(t) is t and LOCAL.gather_rows(t) is t
    assert LOCAL.sum_float(torch.tensor(2.5)) == 2.5


def test_row_blocks_cover_the_rows_once():
    for n in (1, 5, 22, 23):
        for w in (1, 2, 3, 4):
            blocks = [row_block(n, w, r) for r in range(w)]
            assert blocks[0][0] == 0 and blocks[-1][1] == n
            assert all(blocks[r][1] == blocks[r + 1][0] for r in range(w - 1))
            sizes = [b - a for a, b in blocks]
            assert max(sizes) - min(sizes) <= 1


def _log_mode_refused(comm: Comm) -> str:
    try:
        sinkhorn(torch.rand(3, 4, dtype=torch.float64), mode="log", group=comm)
    except ConfigError as exc:
        return str(exc)
    return "accepted"


def test_the_reference_solver_refuses_sharding(tmp_path):
    msgs = run_ranks(2, _log_mode_refused, tmp_path)
    assert all("one process" in m for m in msgs)
