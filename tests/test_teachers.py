import numpy as np
import pytest
import torch

from sotalign.arrays import l2_normalize
from sotalign.errors import ConfigError, InputError
from sotalign.models import aligner_from_state
from sotalign.models.teachers import (
    CCATeacher,
    ContrastiveTeacher,
    ProcrustesTeacher,
    cca_fit,
    make_teacher,
)


def _data(two_view, n=300, seed=1):
    A, B = two_view.pairs(n, seed)
    return torch.tensor(A, dtype=torch.float64), torch.tensor(B, dtype=torch.float64)


def _centred(A, B):
    A, B = l2_normalize(A), l2_normalize(B)
    return A - A.mean(0), B - B.mean(0)


def test_cca_whitened_cross_covariance_is_diagonal(two_view):
    A, B = _data(two_view)
    _, _, wx, wy, rho = cca_fit(A, B, reg=0.1)
    Ac, Bc = _centred(A, B)
    n = A.shape[0]
    Sxy = Ac.T @ Bc / (n - 1)
    C = wx.T @ Sxy @ wy
    torch.testing.assert_close(C, torch.diag(rho), atol=1e-10, rtol=0)
    # whitening: W_xᵀ(S_xx + λI)W_x = I
    Sxx = Ac.T @ Ac / (n - 1) + 0.1 * torch.eye(A.shape[1], dtype=A.dtype)
    torch.testing.assert_close(
        wx.T @ Sxx @ wx, torch.eye(wx.shape[1], dtype=A.dtype), atol=1e-8, rtol=0
    )
    assert torch.all(rho[:-1] >= rho[1:]), "canonical correlations must be sorted"
    assert float(rho.min()) >= 0 and float(rho.max()) <= 1
    assert wx.shape[1] == min(A.shape[1], B.shape[1])  # all components kept


def test_cca_without_ridge_matches_qr_reference(two_view):
    """λ = 0: canonical correlations = singular values of Q_aᵀQ_b (Björck–Golub)."""
    A, B = _data(two_view, n=500)
    *_, rho = cca_fit(A, B, reg=0.0)
    Ac, Bc = _centred(A, B)
    Qa, _ = torch.linalg.qr(Ac)
    Qb, _ = torch.linalg.qr(Bc)
    ref = torch.linalg.svdvals(Qa.T @ Qb)[: rho.numel()]
    torch.testing.assert_close(rho, ref, atol=1e-4, rtol=0)
    assert float(rho[0]) > 0.9  # the two views share a latent


def test_procrustes_matches_scipy():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(0)
    A = torch.randn(200, 20, generator=g, dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.randn(20, 20, generator=g, dtype=torch.float64))
    B = A @ Q + 0.05 * torch.randn(200, 20, generator=g, dtype=torch.float64)
    t = ProcrustesTeacher().fit(A, B)
    Ac, Bc = _centred(A, B)
    R, _ = scipy_linalg.orthogonal_procrustes(Ac.numpy(), Bc.numpy())
    np.testing.assert_allclose((t.w_x_.double() @ t.w_y_.double().T).numpy(), R, atol=1e-5)


@pytest.mark.parametrize("name", ["cca", "procrustes", "contrastive"])
def test_teachers_align_heldout_pairs_and_roundtrip(two_view, name):
    from sotalign.eval import retrieval_metrics

    A, B = two_view.pairs(200, 1)
    Ti, Tt = two_view.pairs(300, 2)
    kw = {"steps": 150, "lr": 3e-3} if name == "contrastive" else {}
    t = make_teacher(name, **kw).fit(A, B)
    m = retrieval_metrics(t.encode_images(Ti), t.encode_texts(Tt))
    assert m["mean_R@1"] > 10 * 100 / 300, m  # chance is 0.33 %
    zi = t.encode_images(Ti)
    torch.testing.assert_close(zi.norm(dim=1), torch.ones(300), atol=1e-5, rtol=0)
    again = aligner_from_state(t.get_config(), t.state_dict())
    torch.testing.assert_close(again.encode_images(Ti), zi)
    torch.testing.assert_close(again.affinity(Ti[:5], Tt[:7]), t.affinity(Ti[:5], Tt[:7]))


def test_teacher_errors():
    with pytest.raises(ConfigError, match="did you mean 'cca'"):
        make_teacher("cka")
    with pytest.raises(InputError, match="rows"):
        CCATeacher().fit(np.zeros((5, 3)), np.zeros((4, 3)))
    with pytest.raises(InputError, match="at least 2 pairs"):
        CCATeacher().fit(np.ones((1, 3)), np.ones((1, 3)))
    with pytest.raises(ConfigError):
        ContrastiveTeacher(loss="nope")


@pytest.mark.parametrize("n", [20, 200])
def test_inverse_square_root_low_rank_path_matches_eigh(n):
    from sotalign.models.teachers import inv_sqrt_cov, inv_sqrt_psd

    g = torch.Generator().manual_seed(n)
    X = torch.randn(n, 64, generator=g, dtype=torch.float64)
    Xc = X - X.mean(0)
    S = Xc.T @ Xc / (n - 1)
    ref = inv_sqrt_psd(S + 0.1 * torch.eye(64, dtype=S.dtype))
    torch.testing.assert_close(inv_sqrt_cov(Xc, 0.1, S), ref, atol=1e-9, rtol=1e-9)
