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


def _semisup_siglip_by_entries(za, zb, zx, zy, t, b):
    """The semi-supervised SigLIP loss entry by entry, in float64 Python arithmetic.

    Two rectangular SigLIP losses, averaged: each paired text b_i against every image of
    [paired; unpaired] and each paired image a_i against every text of [paired; unpaired],
    label +1 on the pair (i, i) and −1 everywhere else, mean of −log σ(z (t·⟨u, v⟩ + b)).
    """

    def rows(z):
        return [] if z is None else [[float(v) for v in row] for row in z]

    def mean_loss(queries, gallery):
        total, count = 0.0, 0
        for i, q in enumerate(queries):
            for j, g in enumerate(gallery):
                cos = sum(qk * gk for qk, gk in zip(q, g, strict=True))
                z = 1.0 if i == j else -1.0
                total += math.log1p(math.exp(-z * (t * cos + b)))  # −log σ(z·logit)
                count += 1
        return total / count

    A, B, X, Y = rows(za), rows(zb), rows(zx), rows(zy)
    return 0.5 * (mean_loss(B, A + X) + mean_loss(A, B + Y))


def test_semisup_siglip_matches_entrywise_double_loop():
    za, zb = _unit(6, 8, 0), _unit(6, 8, 1)
    zx, zy = _unit(4, 8, 2), _unit(3, 8, 3)  # unpaired sets of different sizes
    t, b = 10.0, -5.0
    ts, bs = torch.tensor(t, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    for x, y in ((zx, zy), (None, None), (zx, None), (None, zy)):
        got = float(semisup_siglip_loss(za, zb, x, y, ts, bs))
        want = _semisup_siglip_by_entries(za, zb, x, y, t, b)
        assert abs(got - want) < 1e-12 * max(1.0, abs(want)), (x is None, y is None)
    # the unpaired samples are real extra negatives: they change the loss
    with_unpaired = _semisup_siglip_by_entries(za, zb, zx, zy, t, b)
    assert abs(with_unpaired - _semisup_siglip_by_entries(za, zb, None, None, t, b)) > 1e-3


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
