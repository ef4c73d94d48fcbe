import numpy as np
import pytest
import torch

from sotalign.errors import InputError
from sotalign.eval import class_prototypes, retrieval_metrics, zero_shot_accuracy


def _brute_force(img, txt, t2i, k):
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    S = img @ txt.T
    i2t = np.mean([np.any(t2i[np.argsort(-S[i])[:k]] == i) for i in range(len(img))])
    t2i_hits = np.mean([t2i[j] in np.argsort(-S[:, j])[:k] for j in range(len(txt))])
    return 100 * i2t, 100 * t2i_hits


def test_retrieval_matches_brute_force_with_several_captions(rng):
    img = rng.normal(size=(40, 6)).astype(np.float32)
    t2i = np.repeat(np.arange(40), 3)
    rng.shuffle(t2i)
    txt = img[t2i] + 1.2 * rng.normal(size=(120, 6)).astype(np.float32)
    m = retrieval_metrics(img, txt, t2i)
    for k in (1, 5, 10):
        i2t, t2i_r = _brute_force(img, txt, t2i, k)
        assert m["i2t"][f"R@{k}"] == pytest.approx(i2t, abs=1e-4)
        assert m["t2i"][f"R@{k}"] == pytest.approx(t2i_r, abs=1e-4)
    assert m["mean_R@1"] == pytest.approx(0.5 * (m["i2t"]["R@1"] + m["t2i"]["R@1"]))
    assert 0 < m["i2t"]["R@1"] < 100


def test_retrieval_perfect_and_errors():
    e = torch.eye(5)
    m = retrieval_metrics(e, e)
    assert m["mean_R@1"] == 100.0
    with pytest.raises(InputError, match=r"valid: 0\.\.4"):
        retrieval_metrics(e, e, [0, 1, 2, 3, 5])
    with pytest.raises(InputError, match="text-image index"):
        retrieval_metrics(torch.eye(3), torch.eye(5)[:, :3])


def test_zero_shot(rng):
    protos_raw = rng.normal(size=(4, 3, 8))  # 4 classes × 3 templates
    protos = class_prototypes(protos_raw)
    assert protos.shape == (4, 8)
    labels = rng.integers(0, 4, size=50)
    imgs = protos.numpy()[labels] + 0.05 * rng.normal(size=(50, 8))
    assert zero_shot_accuracy(imgs, protos, labels) == 100.0
    flat = class_prototypes(protos_raw.reshape(12, 8), n_templates=3)
    torch.testing.assert_close(flat, protos)
    wrong = zero_shot_accuracy(imgs, protos, (labels + 1) % 4)
    assert wrong < 50


def test_paired_rank_metrics_match_brute_force(rng):
    from sotalign.eval import paired_rank_metrics

    img, txt = rng.normal(size=(37, 8)), rng.normal(size=(37, 8))
    txt[5] = txt[6]  # a tie: both texts score alike against every image
    S = (img / np.linalg.norm(img, axis=1, keepdims=True)) @ (
        txt / np.linalg.norm(txt, axis=1, keepdims=True)).T
    S = torch.tensor(S, dtype=torch.float32).numpy()
    r_i2t = np.array([(S[i] > S[i, i]).sum() for i in range(37)])
    r_t2i = np.array([(S[:, j] > S[j, j]).sum() for j in range(37)])
    m = paired_rank_metrics(img.astype(np.float32), txt.astype(np.float32), chunk=10)
    assert m["mean_R@1"] == pytest.approx(50 * ((r_i2t == 0).mean() + (r_t2i == 0).mean()))
    assert m["MRR"] == pytest.approx(50 * ((1 / (r_i2t + 1)).mean() + (1 / (r_t2i + 1)).mean()),
                                     rel=1e-5)
    ref = retrieval_metrics(img, txt)["mean_R@1"]
    assert m["mean_R@1"] == pytest.approx(ref)
    with pytest.raises(InputError):
        paired_rank_metrics(img[:3], txt[:4])
