import numpy as np
import pytest
import torch

from sotalign.errors import InputError
from sotalign.eval import (
    class_prototypes,
    paired_rank_metrics,
    retrieval_metrics,
    zero_shot_accuracy,
)


def _brute_force(img, txt, t2i, k):
    """CLIP_benchmark's top-k recall (argsort, no tie handling): valid on tie-free scores."""
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    S = img @ txt.T
    i2t = np.mean([np.any(t2i[np.argsort(-S[i])[:k]] == i) for i in range(len(img))])
    t2i_hits = np.mean([t2i[j] in np.argsort(-S[:, j])[:k] for j in range(len(txt))])
    return 100 * i2t, 100 * t2i_hits


def test_retrieval_matches_clip_benchmark_on_tie_free_data(rng):
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


# ----------------------------------------------------------------------------- ties
# Ties count against the query. The tests below use embeddings whose cosines are exact in
# float32 whatever the summation order (entries ±1 in 16 dimensions: norm 4; or four entries
# ±1 among the rest zero: norm 2), so a tie in the float64 reference is a tie in the
# implementation too, and the two must agree exactly.


def _signs(rng, n, d=16):
    return rng.choice([-1.0, 1.0], size=(n, d))


def _sparse(rng, n, d=6, nnz=4):
    out = np.zeros((n, d))
    for row in out:
        row[rng.choice(d, nnz, replace=False)] = rng.choice([-1.0, 1.0], size=nnz)
    return out


def _noisy_captions(rng, img, t2i, kind):
    """Captions near their image: a few flipped signs, or (sparse) some rows redrawn."""
    txt = img[t2i].copy()
    if kind == "signs":
        for row in txt:
            row[rng.choice(row.size, rng.integers(0, 5), replace=False)] *= -1
    else:
        redraw = rng.random(len(txt)) < 0.4
        txt[redraw] = _sparse(rng, int(redraw.sum()), d=img.shape[1])
    return txt


def _hadamard(n):
    H = np.ones((1, 1))
    while H.shape[0] < n:
        H = np.block([[H, H], [H, -H]])
    return H


def _reference_ranks(img, txt, t2i):
    """0-based ranks by the definitions, float64, explicit loops (see ``retrieval_metrics``):
    caption j: other images scoring ≥ its image; image i: min over its captions c of the
    captions of other images scoring ≥ c (``None``: no caption, never a hit)."""
    img = np.asarray(img, np.float64)
    txt = np.asarray(txt, np.float64)
    img = img / np.maximum(np.linalg.norm(img, axis=1, keepdims=True), 1e-12)
    txt = txt / np.maximum(np.linalg.norm(txt, axis=1, keepdims=True), 1e-12)
    n_i, n_t = len(img), len(txt)
    S = [[float(np.dot(img[i], txt[j])) for j in range(n_t)] for i in range(n_i)]
    t2i_rank = [
        sum(1 for i in range(n_i) if i != t2i[j] and S[i][j] >= S[t2i[j]][j]) for j in range(n_t)
    ]
    i2t_rank = []
    for i in range(n_i):
        own = [c for c in range(n_t) if t2i[c] == i]
        i2t_rank.append(
            min(
                (sum(1 for j in range(n_t) if t2i[j] != i and S[i][j] >= S[i][c]) for c in own),
                default=None,
            )
        )
    return i2t_rank, t2i_rank, S


def _recall(ranks, k):
    return 100.0 * np.mean([r is not None and r < k for r in ranks])


def _assert_matches_reference(m, i2t_rank, t2i_rank, ks=(1, 5, 10)):
    for k in ks:
        assert m["i2t"][f"R@{k}"] == pytest.approx(_recall(i2t_rank, k), abs=1e-9), k
        assert m["t2i"][f"R@{k}"] == pytest.approx(_recall(t2i_rank, k), abs=1e-9), k
    assert m["mean_R@1"] == pytest.approx(0.5 * (_recall(i2t_rank, 1) + _recall(t2i_rank, 1)))


def _has_tie_with_truth(S, t2i):
    """Some caption's true image ties with another image (the case ties decide)."""
    return any(
        S[i][j] == S[t2i[j]][j] for j in range(len(t2i)) for i in range(len(S)) if i != t2i[j]
    )


@pytest.mark.parametrize("kind", ["signs", "sparse"])
@pytest.mark.parametrize("seed", range(4))
def test_retrieval_matches_tie_aware_reference_with_several_captions(kind, seed):
    rng = np.random.default_rng(seed)
    make = _signs if kind == "signs" else _sparse
    n_i = 30
    img = make(rng, n_i)
    img[1] = img[0]  # a duplicated image embedding
    # 0 to 4 captions per image, shuffled; image n_i - 1 has none (never a hit)
    counts = rng.integers(0, 5, size=n_i)
    counts[-1] = 0
    counts[:3] = np.maximum(counts[:3], 1)
    t2i = np.repeat(np.arange(n_i), counts)
    rng.shuffle(t2i)
    txt = _noisy_captions(rng, img, t2i, kind)
    i2t_rank, t2i_rank, S = _reference_ranks(img, txt, t2i)
    assert _has_tie_with_truth(S, t2i)  # the data exercise ties
    for chunk in (7, 4096):  # chunks that split the queries, and one that does not
        m = retrieval_metrics(img.astype(np.float32), txt.astype(np.float32), t2i, chunk=chunk)
        _assert_matches_reference(m, i2t_rank, t2i_rank)


@pytest.mark.parametrize("kind", ["signs", "sparse"])
@pytest.mark.parametrize("seed", range(4))
def test_paired_metrics_match_tie_aware_reference(kind, seed):
    rng = np.random.default_rng(100 + seed)
    make = _signs if kind == "signs" else _sparse
    n = 37
    img = make(rng, n)
    txt = _noisy_captions(rng, img, np.arange(n), kind)
    txt[5] = txt[6]  # a duplicated text embedding
    i2t_rank, t2i_rank, S = _reference_ranks(img, txt, np.arange(n))
    assert _has_tie_with_truth(S, np.arange(n))
    r1 = 0.5 * (_recall(i2t_rank, 1) + _recall(t2i_rank, 1))
    mrr = 50 * (np.mean([1 / (r + 1) for r in i2t_rank]) + np.mean([1 / (r + 1) for r in t2i_rank]))
    for chunk in (10, 4096):
        m = paired_rank_metrics(img.astype(np.float32), txt.astype(np.float32), chunk=chunk)
        assert m["mean_R@1"] == pytest.approx(r1, abs=1e-9)
        assert m["MRR"] == pytest.approx(mrr, abs=1e-9)
    full = retrieval_metrics(img, txt)
    _assert_matches_reference(full, i2t_rank, t2i_rank)
    assert full["mean_R@1"] == pytest.approx(m["mean_R@1"], abs=1e-9)


@pytest.mark.parametrize("const", [0.0, 1.0])
def test_all_equal_scores_never_score_well(const):
    n = 20
    same = np.full((n, 16), const, dtype=np.float32)  # every cosine is exactly `const`
    m = paired_rank_metrics(same, same)
    assert m["mean_R@1"] == 0.0
    assert m["MRR"] == pytest.approx(100 / n)  # rank n - 1 for every query, both directions
    for t2i in (None, np.repeat(np.arange(n), 3)):  # one caption per image; three per image
        txt = same if t2i is None else np.full((3 * n, 16), const, dtype=np.float32)
        r = retrieval_metrics(same, txt, t2i, chunk=6)
        assert r["mean_R@1"] == 0.0
        for direction in ("i2t", "t2i"):
            assert r[direction] == {"R@1": 0.0, "R@5": 0.0, "R@10": 0.0}, direction


def test_a_duplicated_embedding_is_a_miss_both_ways():
    H = _hadamard(16).astype(np.float32)  # orthogonal ±1 rows: cosines exactly 1 or 0
    img, txt = H[:8].copy(), H[:8].copy()
    txt[1] = txt[0]
    # image 0 ties its caption with caption 1 (rank 1); image 1's caption now scores 0 like all
    # others (rank 7); caption 1 loses to image 0 and ties the six others (rank 7)
    m = paired_rank_metrics(img, txt)
    assert m["mean_R@1"] == pytest.approx(50 * (6 / 8 + 7 / 8))
    assert m["MRR"] == pytest.approx(50 * ((1 / 2 + 1 / 8 + 6) / 8 + (1 + 1 / 8 + 6) / 8))
    r = retrieval_metrics(img, txt)
    assert r["i2t"] == pytest.approx({"R@1": 75.0, "R@5": 87.5, "R@10": 100.0})
    assert r["t2i"] == pytest.approx({"R@1": 87.5, "R@5": 87.5, "R@10": 100.0})


def test_multi_caption_ties_count_against_other_images_only():
    H = _hadamard(16).astype(np.float32)
    # two captions per image; image 1's second caption duplicates image 0's first caption, and
    # image 2's two captions are identical (its own captions never count against it)
    txt = H[[0, 8, 1, 0, 2, 2, 3, 11]]
    t2i = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    m = retrieval_metrics(H[:4], txt, t2i)
    # image 0's best caption ties with image 1's copy: rank 1
    assert m["i2t"] == pytest.approx({"R@1": 75.0, "R@5": 100.0, "R@10": 100.0})
    # captions H8, H0 (of image 1) and H11 score 0 with their image, tied with or below all
    # three other images: rank 3
    assert m["t2i"] == pytest.approx({"R@1": 62.5, "R@5": 100.0, "R@10": 100.0})
    i2t_rank, t2i_rank, _ = _reference_ranks(H[:4], txt, t2i)
    assert i2t_rank == [1, 0, 0, 0] and t2i_rank == [0, 3, 0, 3, 0, 0, 0, 3]


def test_an_image_without_captions_is_never_a_hit():
    H = _hadamard(4).astype(np.float32)
    m = retrieval_metrics(H[:3], H[:1], [0])  # images 1 and 2 have no caption
    assert m["i2t"] == pytest.approx({"R@1": 100 / 3, "R@5": 100 / 3, "R@10": 100 / 3})
    assert m["t2i"] == {"R@1": 100.0, "R@5": 100.0, "R@10": 100.0}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_embeddings_are_refused(bad):
    """A broken embedding (a damaged model writes NaN) is refused with one line, never scored:
    a report must not come out of a damaged model."""
    H = _hadamard(16)[:6].astype(np.float32)
    img = H.copy()
    img[2, 3] = bad
    with pytest.raises(
        InputError,
        match=r"^image embeddings hold NaN or inf in 1 row\(s\) "
        r"\(first: row 2\)",
    ) as exc:
        retrieval_metrics(img, H)
    assert "\n" not in str(exc.value)
    with pytest.raises(InputError, match=r"^image embeddings hold NaN or inf"):
        paired_rank_metrics(img, H)
    two = H.copy()
    two[[1, 4], 0] = bad
    with pytest.raises(InputError, match=r"^text embeddings hold NaN or inf in 2 row.*row 1\)"):
        paired_rank_metrics(H, two, chunk=4)  # found in the first chunk, counted in all
    txt = np.concatenate([H[:4], H[:1]])
    txt[4] = bad  # one caption of image 0, behind an index
    with pytest.raises(InputError, match=r"^text embeddings .* \(first: row 4\)"):
        retrieval_metrics(H[:4], txt, [0, 1, 2, 3, 0])
    with pytest.raises(InputError, match="text embeddings"):  # a torch tensor, chunked
        retrieval_metrics(torch.as_tensor(H[:4]), torch.as_tensor(txt), [0, 1, 2, 3, 0], chunk=2)
