import math

import torch
import torch.nn.functional as F

from sotalign.losses import (
    cka_divergence,
    ginfonce_divergence,
    infonce_loss,
    semisup_siglip_loss,
    siglip_loss,
)


def _unit(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)


def test_siglip_matches_elementwise_formula():
    K = _unit(5, 8, 0) @ _unit(7, 8, 1).T
    t, b = 20.0, -10.0
    total = 0.0
    for i in range(5):
        for j in range(7):
            z = 1.0 if i == j else -1.0
            total += -math.log(1 / (1 + math.exp(-z * (t * float(K[i, j]) + b))))
    assert abs(float(siglip_loss(K, t, b)) - total / 35) < 1e-10


def test_semisup_siglip_reduces_and_extends():
    za, zb = _unit(6, 8, 0), _unit(6, 8, 1)
    zx, zy = _unit(4, 8, 2), _unit(4, 8, 3)
    t, b = torch.tensor(10.0, dtype=torch.float64), torch.tensor(-5.0, dtype=torch.float64)
    plain = siglip_loss(za @ zb.T, t, b)
    # without unpaired data: mean of two SigLIP losses on K and Kᵀ = SigLIP on K
    assert torch.allclose(semisup_siglip_loss(za, zb, None, None, t, b), plain)
    ref = 0.5 * (
        siglip_loss(zb @ torch.cat([za, zx]).T, t, b)
        + siglip_loss(za @ torch.cat([zb, zy]).T, t, b)
    )
    assert torch.allclose(semisup_siglip_loss(za, zb, zx, zy, t, b), ref)
    assert not torch.allclose(ref, plain)


def test_infonce_matches_cross_entropy():
    K = _unit(6, 8, 0) @ _unit(6, 8, 1).T
    ref = 0.5 * (
        F.cross_entropy(5 * K, torch.arange(6)) + F.cross_entropy(5 * K.T, torch.arange(6))
    )
    assert torch.allclose(infonce_loss(K, 5.0), ref)


def test_divergences_vanish_at_teacher_and_are_positive_elsewhere():
    zx, zy = _unit(16, 8, 0), _unit(16, 8, 1)
    ox, oy = _unit(16, 8, 2), _unit(16, 8, 3)
    for div in (cka_divergence, ginfonce_divergence):
        same, _ = div(zx, zy, zx, zy)
        other, _ = div(zx, zy, ox, oy)
        assert abs(float(same)) < 1e-10
        assert float(other) > 1e-3
