"""Trained baselines (STRUCTURE, NNCLR, S-CLIP): the maths against independent references,
learning on synthetic two-view data, equivalences with SAIL, persistence and the CLI."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from sotalign import SOTAlign
from sotalign.errors import ConfigError, InputError
from sotalign.eval import retrieval_metrics
from sotalign.methods import available_methods
from sotalign.methods.trained import (
    NNCLRObjective,
    js_divergence_rows,
    nearest_neighbours,
    pseudo_partners,
    structure_regulariser,
)
from sotalign.training import EmbeddingPool

pytestmark = pytest.mark.filterwarnings("ignore:.*rank-deficient")

FAST = dict(steps=150, lr=1e-3, dim=32, batch_unpaired=128, progress=False)
NEW = ("structure", "structure_semisup", "nnclr", "sclip")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small matrices: one thread is much faster than two on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def problem():
    from sotalign.synthetic import TwoView

    tv = TwoView(d_x=64, d_y=48, latent=16, noise=0.3, seed=0)
    A, B = tv.pairs(50, 1)
    X, Y = tv.unpaired(2000, 2000, 2)
    Ti, Tt = tv.pairs(400, 3)
    return A, B, X, Y, Ti, Tt


def _score(est, Ti, Tt):
    return retrieval_metrics(est.encode_images(Ti), est.encode_texts(Tt))["mean_R@1"]


# ----------------------------------------------------------------------------- the maths


def _np_log_softmax(S):
    S = S - S.max(1, keepdims=True)
    return S - np.log(np.exp(S).sum(1, keepdims=True))


def _np_js(P, Q):
    M = 0.5 * (P + Q)
    kl = lambda U, V: np.sum(np.where(U > 0, U * (np.log(U) - np.log(V)), 0.0), axis=1)  # noqa: E731
    return float(np.mean(0.5 * kl(P, M) + 0.5 * kl(Q, M)))


def test_js_divergence_matches_numpy_and_bounds(rng):
    P = rng.dirichlet(np.ones(7), size=5)
    Q = rng.dirichlet(np.ones(7) * 0.3, size=5)
    got = js_divergence_rows(torch.tensor(np.log(P)), torch.tensor(np.log(Q)))
    assert float(got) == pytest.approx(_np_js(P, Q), rel=1e-10, abs=1e-12)
    assert float(
        js_divergence_rows(torch.tensor(np.log(P)), torch.tensor(np.log(P)))
    ) == pytest.approx(0.0, abs=1e-12)
    # disjoint supports reach the maximum log 2
    e1, e2 = np.eye(2)[[0]], np.eye(2)[[1]]
    with np.errstate(divide="ignore"):
        lp, lq = torch.tensor(np.log(e1)), torch.tensor(np.log(e2))
    assert float(js_divergence_rows(lp, lq)) == pytest.approx(math.log(2.0), rel=1e-12)


def test_structure_regulariser_matches_numpy(rng):
    U = rng.normal(size=(12, 9))
    Z = rng.normal(size=(12, 5))
    tau = 0.1

    def probs(M):
        M = M / np.linalg.norm(M, axis=1, keepdims=True)
        M = M - M.mean(0, keepdims=True)
        return np.exp(_np_log_softmax(M @ M.T / tau))

    ref = _np_js(probs(U), probs(Z))
    got = structure_regulariser(torch.tensor(U), torch.tensor(Z), tau)
    assert float(got) == pytest.approx(ref, rel=1e-4, abs=1e-6)
    # invariant to the scale of the rows; zero when the aligned space is the input space
    assert float(structure_regulariser(torch.tensor(U), torch.tensor(3 * U), tau)) < 1e-6
    # the gradient reaches the aligned side only
    Zt = torch.tensor(Z, requires_grad=True)
    Ut = torch.tensor(U, requires_grad=True)
    structure_regulariser(Ut, Zt, tau).backward()
    assert Zt.grad is not None and float(Zt.grad.abs().sum()) > 0
    assert Ut.grad is None


@pytest.mark.parametrize("k", [1, 5])
def test_nearest_neighbours_match_brute_force_on_a_memmap(rng, tmp_path, k):
    Q = rng.normal(size=(23, 6)).astype(np.float32)
    pool = rng.normal(size=(1000, 6)).astype(np.float32) * rng.uniform(0.1, 5, size=(1000, 1))
    np.save(tmp_path / "pool.npy", pool.astype(np.float32))
    mm = np.load(tmp_path / "pool.npy", mmap_mode="r")
    got = nearest_neighbours(Q, mm, k, chunk_rows=37).numpy()  # many chunks, ragged last one
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    Pn = pool / np.linalg.norm(pool, axis=1, keepdims=True)
    cos = Qn.astype(np.float64) @ Pn.T.astype(np.float64)
    ref = np.argsort(-cos, axis=1)[:, :k]
    assert got.shape == (23, k)
    np.testing.assert_array_equal(got, ref)
    # default chunking gives the same table
    np.testing.assert_array_equal(nearest_neighbours(Q, pool, k).numpy(), ref)
    with pytest.raises(ConfigError):
        nearest_neighbours(Q, pool[:3], 5)


def _np_sinkhorn_plan(K, eps, n_iter):
    m, n = K.shape
    L = K / eps
    u, v = np.zeros(m), np.zeros(n)
    la, lb = np.log(np.full(m, 1 / m)), np.log(np.full(n, 1 / n))
    lse = lambda M, ax: np.log(np.exp(M - M.max(ax, keepdims=True)).sum(ax)) + M.max(ax)  # noqa: E731
    for _ in range(n_iter):
        u = la - lse(L + v[None, :], 1)
        v = lb - lse(L + u[:, None], 0)
    return np.exp(L + u[:, None] + v[None, :])


def test_pseudo_partners_soft_and_hard(rng):
    K = rng.uniform(-1, 1, size=(9, 6))
    P = _np_sinkhorn_plan(K, 0.1, 500)
    W = pseudo_partners(torch.tensor(K), eps=0.1, n_iter=500, mode="soft").double().numpy()
    np.testing.assert_allclose(W, P / P.sum(1, keepdims=True), atol=2e-4)
    np.testing.assert_allclose(W.sum(1), 1.0, atol=1e-5)
    H = pseudo_partners(torch.tensor(K), eps=0.1, n_iter=500, mode="hard").numpy()
    np.testing.assert_array_equal(H.argmax(1), P.argmax(1))
    np.testing.assert_array_equal(H.sum(1), np.ones(9))
    assert set(np.unique(H)) == {0.0, 1.0}


def test_nnclr_draws_among_the_k_neighbours():
    pool_x = EmbeddingPool(np.arange(40, dtype=np.float32).reshape(20, 2))
    table = torch.tensor([[3, 7, 11], [0, 1, 2], [19, 18, 17]])
    obj = NNCLRObjective(table, table, pool_x, pool_x, seed=5)
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(30):
        rows = obj._rows("x", np.array([0, 2]), "cpu", rng).numpy()
        first = int(rows[0, 0]) // 2
        assert first in (3, 7, 11)
        assert int(rows[1, 0]) // 2 in (19, 18, 17)
        seen.add(first)
    assert seen == {3, 7, 11}  # every neighbour gets drawn
    obj1 = NNCLRObjective(table[:, :1], table[:, :1], pool_x, pool_x)
    np.testing.assert_array_equal(
        obj1._rows("y", np.array([1, 2, 0]), "cpu")[:, 0].numpy(), [0.0, 38.0, 6.0]
    )


def test_nnclr_resume_repeats_the_uninterrupted_run(problem, tmp_path):
    """k > 1: the neighbour draws follow the sampler's checkpointed stream, so a run killed
    and resumed ends with exactly the weights of an uninterrupted one."""
    from sotalign.models import AlignmentModel
    from sotalign.training import TrainConfig, TrainData, Trainer

    A, B, X, Y, *_ = problem
    data = TrainData.from_arrays(A, B, X, Y)
    nn_x = nearest_neighbours(A, X, 5)
    nn_y = nearest_neighbours(B, Y, 5)
    cfg = TrainConfig(
        steps=8, lr=1e-3, batch_unpaired=8, divergence="none", checkpoint_every=2, device="cpu"
    )

    def trainer(ckpt, seed=3):
        torch.manual_seed(0)
        obj = NNCLRObjective(nn_x, nn_y, data.unpaired_images, data.unpaired_texts, seed=seed)
        return Trainer(
            AlignmentModel(64, 48, 16), obj, data, cfg, checkpoint_dir=ckpt, progress=False
        )

    full = trainer(tmp_path / "a")
    full.run()
    first = trainer(tmp_path / "b")
    first.run(stop_after=3)  # killed after step 3; the last checkpoint is step 2
    again = trainer(tmp_path / "b")
    again.run(resume=True)
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[k], v, rtol=0, atol=0)
    # the draws matter: another seed of the draws gives other weights
    other = trainer(None, seed=4)
    other.run()
    assert any(
        not torch.equal(other.model.state_dict()[k], v) for k, v in full.model.state_dict().items()
    )


# ----------------------------------------------------------------------------- training


def test_methods_are_registered():
    methods = available_methods()
    for name in NEW:
        assert name in methods
        assert methods[name].uses_unpaired == (name != "structure")


@pytest.mark.parametrize(
    "method, params, kw",
    [
        ("structure", {}, {}),
        ("structure_semisup", {"lam": 1.0}, {}),
        ("nnclr", {}, {}),
        ("nnclr", {"k": 5}, {"batch_pairs": 16}),  # paired batches drawn from the 40 pairs
        ("sclip", {}, {}),
        ("sclip", {"mode": "hard", "affinity": "input", "sinkhorn_iters": 30}, {}),
    ],
)
def test_baselines_learn(problem, method, params, kw):
    A, B, X, Y, Ti, Tt = problem
    est = SOTAlign(method=method, method_params=params, **{**FAST, **kw}).fit(A, B, X, Y)
    assert est.train_history_ and "sup" in est.train_history_[-1]
    assert _score(est, Ti, Tt) > 8.0  # chance: 100 / 400 = 0.25 %


@pytest.mark.parametrize(
    "method, off, base, kw",
    [
        ("structure", {"lam": 0.0}, "sail", {}),
        ("nnclr", {"w": 0.0}, "sail", {}),
        ("sclip", {"w": 0.0}, "semisup_sail", {"sup_loss": "semisup_siglip"}),
    ],
)
def test_extra_term_off_is_sail_and_on_changes_the_model(problem, method, off, base, kw):
    """With its extra term switched off each baseline is exactly its SAIL counterpart (same
    split, sampler and initialisation); with the term on, the heads differ."""
    A, B, X, Y, Ti, _ = problem
    cfg = {**FAST, "steps": 15, **kw}
    ref = SOTAlign(method=base, **cfg).fit(A, B, X, Y).encode_images(Ti)
    zero = SOTAlign(method=method, method_params=off, **cfg).fit(A, B, X, Y).encode_images(Ti)
    on = SOTAlign(method=method, **cfg).fit(A, B, X, Y).encode_images(Ti)
    np.testing.assert_allclose(zero, ref, atol=1e-6)
    assert np.abs(on - ref).max() > 1e-3


def test_save_load_roundtrip(problem, tmp_path):
    A, B, X, Y, Ti, Tt = problem
    est = SOTAlign(method="nnclr", method_params={"k": 5}, **{**FAST, "steps": 5})
    est.fit(A, B, X, Y)
    est.save(tmp_path / "m")
    again = SOTAlign.load(tmp_path / "m")
    np.testing.assert_array_equal(again.encode_images(Ti), est.encode_images(Ti))
    np.testing.assert_array_equal(again.encode_texts(Tt), est.encode_texts(Tt))
    assert again.method == "nnclr" and again.method_params == {"k": 5}


def test_user_errors(problem):
    A, B, X, Y, *_ = problem
    with pytest.raises(ConfigError, match="did you mean 'lam'"):
        SOTAlign(method="structure", method_params={"lamb": 1}, **FAST).fit(A, B)
    with pytest.raises(ConfigError, match="tau"):
        SOTAlign(method="structure", method_params={"tau": 0}, **FAST).fit(A, B)
    with pytest.raises(ConfigError, match="positive integer"):
        SOTAlign(method="nnclr", method_params={"k": 0}, **FAST).fit(A, B, X, Y)
    with pytest.raises(ConfigError, match="did you mean 'hard'"):
        SOTAlign(method="sclip", method_params={"mode": "hrad"}, **FAST).fit(A, B, X, Y)
    with pytest.raises(ConfigError, match="mapping"):
        SOTAlign(method="nnclr", method_params="k=5", **FAST).fit(A, B, X, Y)
    for method in ("structure_semisup", "nnclr", "sclip"):
        with pytest.raises(InputError, match="unpaired"):
            SOTAlign(method=method, **FAST).fit(A, B)


def test_cli_fit_with_method_params(problem, tmp_path):
    A, B, X, Y, Ti, _ = problem
    for name, arr in dict(A=A, B=B, X=X, Y=Y).items():
        np.save(tmp_path / f"{name}.npy", arr)
    args = [
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
        "m",
        "--method",
        "sclip",
        "--set",
        "steps=5",
        "--set",
        "dim=16",
        "--set",
        'method_params={"mode": "hard", "w": 0.5}',
        "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "sotalign", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["params"]["method"] == "sclip"
    assert cfg["params"]["method_params"] == {"mode": "hard", "w": 0.5}
    assert cfg["aligner"]["kind"] == "heads"
    est = SOTAlign.load(tmp_path / "m")
    assert est.encode_images(Ti).shape == (len(Ti), 16)
