"""Training-free baselines (ASIF, CSA): retrieval on synthetic two-view data, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sotalign.errors import ConfigError, InputError
from sotalign.models import (
    ALIGNERS,
    Aligner,
    ASIFAligner,
    CCATeacher,
    CSAAligner,
    aligner_from_state,
)


def two_views(
    n: int, d_x: int = 48, d_y: int = 64, d_z: int = 8, noise: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A shared latent z, two different random non-linear maps plus noise."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d_z))
    wx1, wx2 = rng.normal(size=(d_z, 64)), rng.normal(size=(64, d_x)) / 8
    wy1, wy2 = rng.normal(size=(d_z, 96)), rng.normal(size=(96, d_y)) / 10
    x = np.tanh(z @ wx1 / 2) @ wx2 + noise * rng.normal(size=(n, d_x)) / np.sqrt(d_x) + 0.5
    y = np.maximum(z @ wy1 / 2, 0) @ wy2 + noise * rng.normal(size=(n, d_y)) / np.sqrt(d_y)
    return x.astype(np.float32), y.astype(np.float32)


def mean_r1(zx: torch.Tensor, zy: torch.Tensor) -> float:
    """Mean of image→text and text→image R@1 (fraction) for one-to-one pairs."""
    S = zx @ zy.T
    target = torch.arange(S.shape[0])
    return 0.5 * float(
        (S.argmax(1) == target).float().mean() + (S.argmax(0) == target).float().mean()
    )


@pytest.fixture(scope="module")
def data() -> dict[str, torch.Tensor]:
    x, y = two_views(1400)
    t = {
        k: torch.from_numpy(v)
        for k, v in {"A": x[:800], "B": y[:800], "Xt": x[800:], "Yt": y[800:]}.items()
    }
    return t


BASELINES = [
    pytest.param(lambda: ASIFAligner(k=64, p=4.0), id="asif"),
    pytest.param(lambda: ASIFAligner(k=64, p=4.0, center=False), id="asif-uncentred"),
    pytest.param(lambda: CSAAligner(), id="csa"),
    pytest.param(lambda: CSAAligner(dim=16), id="csa-dim16"),
]


@pytest.mark.parametrize("make", BASELINES)
def test_retrieval_far_above_chance(make, data) -> None:
    al = make().fit(data["A"], data["B"])
    assert isinstance(al, Aligner)
    zx, zy = al.encode_images(data["Xt"]), al.encode_texts(data["Yt"])
    assert zx.shape == zy.shape and zx.shape[0] == 600
    torch.testing.assert_close(zx.norm(dim=1), torch.ones(600))
    torch.testing.assert_close(zy.norm(dim=1), torch.ones(600))
    chance = 1 / 600
    r1 = mean_r1(zx, zy)
    assert r1 > 25 * chance, r1
    # the pairing matters: the same aligner fitted on shuffled pairs is near chance
    perm = torch.randperm(800, generator=torch.Generator().manual_seed(0))
    bad = make().fit(data["A"], data["B"][perm])
    assert mean_r1(bad.encode_images(data["Xt"]), bad.encode_texts(data["Yt"])) < r1 / 4


def test_against_library_metric(data) -> None:
    eval_mod = pytest.importorskip("sotalign.eval")
    al = CSAAligner().fit(data["A"], data["B"])
    zx, zy = al.encode_images(data["Xt"]), al.encode_texts(data["Yt"])
    m = eval_mod.retrieval_metrics(zx, zy)
    assert m["mean_R@1"] == pytest.approx(100 * mean_r1(zx, zy), abs=1e-6)


@pytest.mark.parametrize("make", BASELINES)
def test_state_round_trip(make, data, tmp_path) -> None:
    al = make().fit(data["A"], data["B"])
    cfg, state = al.get_config(), al.state_dict()
    import json

    cfg = json.loads(json.dumps(cfg))  # JSON-able
    assert cfg["kind"] in ALIGNERS
    # through safetensors, as the model folder stores it
    import safetensors.torch as st

    st.save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    back = aligner_from_state(cfg, st.load_file(str(tmp_path / "w.safetensors")))
    assert type(back) is type(al)
    torch.testing.assert_close(
        back.encode_images(data["Xt"]), al.encode_images(data["Xt"]), rtol=0, atol=0
    )
    torch.testing.assert_close(
        back.encode_texts(data["Yt"]), al.encode_texts(data["Yt"]), rtol=0, atol=0
    )


def test_asif_matches_explicit_formula() -> None:
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(30, 5)), rng.normal(size=(30, 7))
    X = rng.normal(size=(9, 5))
    k, p = 6, 3.0
    al = ASIFAligner(k=k, p=p, center=False, chunk=4).fit(A, B)
    got = al.encode_images(X).double().numpy()
    An = A / np.linalg.norm(A, axis=1, keepdims=True)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    ref = np.zeros((9, 30))
    for i in range(9):
        r = An @ Xn[i]
        top = np.argsort(-r)[:k]
        ref[i, top] = np.maximum(r[top], 0) ** p
        ref[i] /= np.linalg.norm(ref[i])
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert ((got > 0).sum(1) <= k).all()
    # k is clipped to the number of anchors
    wide = ASIFAligner(k=1000, center=False).fit(A, B)
    assert wide.encode_texts(rng.normal(size=(3, 7))).shape == (3, 30)


def test_csa_matches_weighted_cca_similarity(data) -> None:
    """cos of CSA embeddings = Σ ρ_j u_j v_j over ρ-weighted norms, u, v the CCA coordinates."""
    cca = CCATeacher().fit(data["A"], data["B"])
    csa = CSAAligner().fit(data["A"], data["B"])
    torch.testing.assert_close(csa.correlations_, cca.correlations_)
    Xn = data["Xt"][:50].double()
    Yn = data["Yt"][:50].double()
    u = (Xn / Xn.norm(dim=1, keepdim=True) - cca.mu_a_.double()) @ cca.w_x_.double()
    v = (Yn / Yn.norm(dim=1, keepdim=True) - cca.mu_b_.double()) @ cca.w_y_.double()
    rho = cca.correlations_.double()
    num = (u * rho) @ v.T
    den = (u.pow(2) @ rho).sqrt()[:, None] * (v.pow(2) @ rho).sqrt()[None, :]
    got = (csa.encode_images(data["Xt"][:50]) @ csa.encode_texts(data["Yt"][:50]).T).double()
    torch.testing.assert_close(got, num / den, atol=2e-4, rtol=0)
    # weight_power 0 gives back the CCA teacher
    plain = CSAAligner(weight_power=0.0).fit(data["A"], data["B"])
    torch.testing.assert_close(
        plain.encode_images(data["Xt"]), cca.encode_images(data["Xt"]), atol=1e-4, rtol=0
    )


def test_errors() -> None:
    with pytest.raises(ConfigError):
        ASIFAligner(k=0)
    with pytest.raises(ConfigError):
        ASIFAligner(p=-1.0)
    with pytest.raises(ConfigError):
        CSAAligner(reg=-0.1)
    with pytest.raises(ConfigError):
        CSAAligner(dim=0)
    A = np.ones((10, 4))
    for cls in (ASIFAligner, CSAAligner):
        with pytest.raises(InputError, match="row"):
            cls().fit(A, np.ones((9, 3)))
        with pytest.raises(RuntimeError, match="not fitted"):
            cls().encode_images(A)
    al = ASIFAligner().fit(np.random.rand(10, 4), np.random.rand(10, 3))
    with pytest.raises(InputError, match="columns"):
        al.encode_images(np.ones((2, 5)))


def test_estimator_methods(data, tmp_path) -> None:
    sotalign = pytest.importorskip("sotalign")
    for name, params in (("asif", {"k": 64, "p": 4.0}), ("csa", {"dim": 16})):
        est = sotalign.SOTAlign(method=name, method_params=params, progress=False)
        est.fit(data["A"].numpy(), data["B"].numpy())
        zx = est.encode_images(data["Xt"].numpy())
        est.save(tmp_path / name)
        back = sotalign.SOTAlign.load(tmp_path / name)
        np.testing.assert_array_equal(back.encode_images(data["Xt"].numpy()), zx)
        assert est.score(data["Xt"].numpy(), data["Yt"].numpy())["mean_R@1"] > 5.0


def test_estimator_rejects_unknown_option(data) -> None:
    sotalign = pytest.importorskip("sotalign")
    est = sotalign.SOTAlign(method="asif", method_params={"kk": 3}, progress=False)
    with pytest.raises(ConfigError, match="did you mean 'k'"):
        est.fit(data["A"].numpy(), data["B"].numpy())
