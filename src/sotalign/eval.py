"""Evaluation: cross-modal retrieval and zero-shot classification (SPEC §5).

Retrieval uses cosine similarity of the aligned, L2-normalised embeddings. Several captions may
describe one image (COCO-style): ``text_to_image[j]`` is the image of caption ``j``.

* image→text: an image is a hit at k if **any** of its captions is among its k nearest texts;
* text→image: a caption is a hit at k if its image is among its k nearest images.

Ties count **against** the query: a candidate scoring exactly as high as the true one ranks
above it, so a duplicated or constant embedding never scores well (all-equal scores give
R@1 = 0 and MRR ≈ 1/n). Ranks are exact, with no sampling or random tie-breaking, so the
figures are reproducible. On tie-free scores they equal CLIP_benchmark's top-k figures.
Embeddings holding NaN or inf are refused with a one-line :class:`~sotalign.errors.InputError`
(a damaged model must never produce a report).

When several items share one caption (the same "home" icon in many icon sets),
:func:`grouped_retrieval_metrics` counts every item of the caption group as a hit.

The main metric is **mean R@1**, the mean of the two R@1 values. All figures are percentages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .arrays import as_tensor, l2_normalize
from .errors import InputError

KS = (1, 5, 10)


def _check_index(text_to_image: Tensor, n_images: int, n_texts: int) -> None:
    if text_to_image.ndim != 1 or text_to_image.shape[0] != n_texts:
        raise InputError(
            f"text-image index has {text_to_image.numel()} entries but there are {n_texts} texts;"
            " it must give one image row per text"
        )
    if n_texts and (int(text_to_image.min()) < 0 or int(text_to_image.max()) >= n_images):
        raise InputError(
            f"text-image index holds values in [{int(text_to_image.min())},"
            f" {int(text_to_image.max())}] but there are {n_images} images"
            f" (valid: 0..{n_images - 1})"
        )


def _check_finite(emb: Tensor, what: str, chunk: int = 4096) -> None:
    """One-line InputError if any entry of ``emb`` is NaN or ±inf (a damaged model or input
    would otherwise produce a report). Scanned ``chunk`` rows at a time."""
    if emb.is_floating_point() or emb.is_complex():
        flat = emb.reshape(emb.shape[0], -1) if emb.ndim else emb.reshape(1, 1)
        for s in range(0, flat.shape[0], chunk):
            bad = ~torch.isfinite(flat[s : s + chunk]).all(1)
            if bool(bad.any()):
                n_bad = sum(
                    int((~torch.isfinite(flat[t : t + chunk]).all(1)).sum())
                    for t in range(s, flat.shape[0], chunk)
                )
                first = s + int(bad.nonzero()[0, 0])
                raise InputError(
                    f"{what} embeddings hold NaN or inf in {n_bad} row(s) (first: row {first});"
                    " refusing to score them: check the model (re-save or re-fit it) and the"
                    " input embeddings"
                )


def _n_not_below(sims: Tensor, true: Tensor) -> Tensor:
    """Per row, how many entries of ``sims`` are *not* strictly below ``true`` (a column): the
    entries ``≥ true``, a NaN on either side counting too (against the query). Computed as
    ``width − #(sims < true)``: one comparison pass over the chunk."""
    return sims.shape[1] - (sims < true).sum(1, dtype=torch.int32).long()


def _finite_pair(image_emb: Any, text_emb: Any, chunk: int) -> tuple[Tensor, Tensor]:
    """Both embeddings as tensors (on the images' device), checked finite, L2-normalised."""
    img = as_tensor(image_emb)
    txt = as_tensor(text_emb, device=img.device)
    _check_finite(img, "image", chunk)
    _check_finite(txt, "text", chunk)
    return l2_normalize(img), l2_normalize(txt)


@torch.no_grad()
def retrieval_metrics(
    image_emb: Any,
    text_emb: Any,
    text_to_image: Any = None,
    ks: Sequence[int] = KS,
    chunk: int = 4096,
) -> dict[str, Any]:
    """Recall@k in both directions, in percent, ties counted against the query.

    With ``S[i, j]`` the cosine of image i and caption j, ``g(j)`` the image of caption j and
    ``C(i) = {j : g(j) = i}`` the captions of image i, the 0-based ranks are

    * text→image, caption j: ``r_j = #{i ≠ g(j) : S[i, j] ≥ S[g(j), j]}``;
    * image→text, image i: ``r_i = min_{c ∈ C(i)} #{j ∉ C(i) : S[i, j] ≥ S[i, c]}``
      ``= #{j ∉ C(i) : S[i, j] ≥ max_{c ∈ C(i)} S[i, c]}``,

    and ``R@k = 100 · mean(r < k)``. So a caption is a hit at k when fewer than k other images
    score at least as high as its image, and an image is a hit at k when one of its captions
    has fewer than k captions of *other* images scoring at least as high: a caption tied with a
    wrong one at the boundary is not a hit. An image's own other captions never count against
    it (the COCO convention: any of its captions in the top k is a hit). An image with no
    caption is never a hit. Embeddings holding NaN or inf are refused (one-line
    :class:`InputError`), so a damaged model never produces a report. On tie-free scores these
    are exactly the top-k figures of CLIP_benchmark.

    Parameters
    ----------
    image_emb, text_emb:
        Aligned embeddings (n_images × d and n_texts × d); they are L2-normalised here.
    text_to_image:
        Image row of each text; ``None`` means one caption per image in the same order.
    chunk:
        Rows of the similarity matrix formed at a time (memory ``chunk × n`` per direction).

    Returns
    -------
    ``{"i2t": {"R@1": …, "R@5": …, "R@10": …}, "t2i": {…}, "mean_R@1": …}``
    """
    img, txt = _finite_pair(image_emb, text_emb, chunk)
    n_i, n_t = img.shape[0], txt.shape[0]
    if n_i == 0 or n_t == 0:
        raise InputError("retrieval needs at least one image and one text")
    if img.shape[1] != txt.shape[1]:
        raise InputError(
            f"image and text embeddings differ in width: {img.shape[1]} vs {txt.shape[1]}"
        )
    if text_to_image is None:
        if n_i != n_t:
            raise InputError(
                f"{n_i} images and {n_t} texts: pass a text-image index when they differ"
            )
        t2i_idx = torch.arange(n_t)
    else:
        t2i_idx = torch.as_tensor(np.asarray(text_to_image), dtype=torch.long).reshape(-1)
        _check_index(t2i_idx, n_i, n_t)
    t2i_idx = t2i_idx.to(img.device)

    # text -> image: r_j = #{i ≠ g(j) : S[i, j] ≥ S[g(j), j]}. The true image itself is
    # counted by _n_not_below (x < x is false), hence the − 1.
    t2i_rank = torch.empty(n_t, dtype=torch.long)
    for s in range(0, n_t, chunk):
        sims = txt[s : s + chunk] @ img.T
        true = sims.gather(1, t2i_idx[s : s + chunk, None])
        t2i_rank[s : s + chunk] = (_n_not_below(sims, true) - 1).cpu()

    # image -> text: r_i = #{j ∉ C(i) : S[i, j] ≥ b_i} with b_i = max_{c ∈ C(i)} S[i, c]
    # (r_i decreases as S[i, c] grows, so the min over c is reached at the best caption),
    # i.e. all captions ≥ b_i minus the image's own captions ≥ b_i. The own captions of a chunk
    # of images are a contiguous run of the captions sorted by image: O(captions) extra work.
    n_caps = torch.bincount(t2i_idx, minlength=n_i)
    by_image, order = torch.sort(t2i_idx, stable=True)
    never = torch.iinfo(torch.long).max  # an image without captions is never a hit
    i2t_rank = torch.empty(n_i, dtype=torch.long)
    for s in range(0, n_i, chunk):
        e = min(s + chunk, n_i)
        sims = img[s:e] @ txt.T  # (e − s) × n_t
        lo, hi = (int(torch.searchsorted(by_image, v)) for v in (s, e))
        rows, cols = by_image[lo:hi] - s, order[lo:hi]
        own = sims[rows, cols]  # the chunk's images × their own captions, flattened
        # b_i; a NaN own score is never the best (its count is all the other captions), and
        # an image whose own scores are all NaN gets b_i = −inf: every other caption counts
        best = torch.full((e - s,), -math.inf, device=img.device, dtype=sims.dtype)
        best = best.scatter_reduce(0, rows, own.masked_fill(own.isnan(), -math.inf), "amax")
        own_ge = torch.zeros(e - s, dtype=torch.long, device=img.device)
        own_ge = own_ge.scatter_add(0, rows, (~(own < best[rows])).long())
        rank = _n_not_below(sims, best[:, None]) - own_ge
        i2t_rank[s:e] = torch.where(n_caps[s:e] > 0, rank, never).cpu()

    def recall(rank: Tensor) -> dict[str, float]:
        return {f"R@{k}": 100.0 * int((rank < k).sum()) / rank.numel() for k in ks}

    out = {"i2t": recall(i2t_rank), "t2i": recall(t2i_rank)}
    out["mean_R@1"] = 0.5 * (out["i2t"]["R@1"] + out["t2i"]["R@1"])
    return out


@torch.no_grad()
def grouped_retrieval_metrics(
    image_emb: Any,
    text_emb: Any,
    groups: Any,
    ks: Sequence[int] = (1, 5, 10),
    chunk: int = 2048,
) -> dict[str, Any]:
    """Recall@k in percent where every item of the query's caption group counts as a hit.

    Row i of ``image_emb`` and of ``text_emb`` is icon i, ``groups[i]`` its caption group, and
    ``S[i, j]`` the cosine of image i and caption j. With ``G(q)`` the icons of q's group:

    * text→image, caption j: ``r_j = #{i ∉ G(j) : S[i, j] ≥ max_{i' ∈ G(j)} S[i', j]}``;
    * image→text, image i: ``r_i = #{j ∉ G(i) : S[i, j] ≥ max_{j' ∈ G(i)} S[i, j']}``;

    ``R@k = 100 · mean(r < k)``; ties count against the query, as in
    :func:`retrieval_metrics`, whose one-caption-per-image figures these equal
    when every group has one icon. Same output layout (``i2t``, ``t2i``, ``mean_R@1``).
    """
    img = np.asarray(image_emb, dtype=np.float32)
    txt = np.asarray(text_emb, dtype=np.float32)
    g = np.asarray(groups).reshape(-1)
    if img.ndim != 2 or img.shape != txt.shape or g.shape[0] != img.shape[0] or not len(g):
        raise InputError(
            f"grouped retrieval needs row-aligned images, texts and groups (got "
            f"{img.shape}, {txt.shape}, {g.shape})"
        )
    if not (np.isfinite(img).all() and np.isfinite(txt).all()):
        raise InputError("embeddings hold NaN or inf; refusing to score them")

    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    img, txt = unit(img), unit(txt)
    n = len(g)
    ranks = {"i2t": np.empty(n, np.int64), "t2i": np.empty(n, np.int64)}
    for name, query, gallery in (("i2t", img, txt), ("t2i", txt, img)):
        for s in range(0, n, chunk):
            sims = query[s : s + chunk] @ gallery.T
            own = g[s : s + chunk, None] == g[None, :]
            best = np.where(own, sims, -np.inf).max(axis=1, keepdims=True)
            ranks[name][s : s + chunk] = ((sims >= best) & ~own).sum(axis=1)
    out: dict[str, Any] = {
        d: {f"R@{k}": 100.0 * float((r < k).mean()) for k in ks} for d, r in ranks.items()
    }
    out["mean_R@1"] = 0.5 * (out["i2t"]["R@1"] + out["t2i"]["R@1"])
    return out


def paired_rank_metrics(image_emb: Any, text_emb: Any, chunk: int = 4096) -> dict[str, float]:
    """Mean R@1 and mean reciprocal rank (both in percent) of one-to-one pairs.

    Row i of ``image_emb`` matches row i of ``text_emb``; ``S[i, j]`` is their cosine. The
    0-based rank of the true partner counts every *other* candidate scoring at least as high
    (ties count against the query). Embeddings holding NaN or inf are refused (InputError):

    * image→text: ``r_i = #{j ≠ i : S[i, j] ≥ S[i, i]}``;
    * text→image: ``r'_j = #{i ≠ j : S[i, j] ≥ S[j, j]}``;

    ``mean R@1 = 50 · (mean[r = 0] + mean[r' = 0])`` (equal to :func:`retrieval_metrics`'
    ``mean_R@1``) and ``MRR = 50 · (mean 1/(r+1) + mean 1/(r'+1))``. All-equal scores give
    R@1 = 0 and MRR = 100/n. MRR uses the whole ranking, so it separates models that a small
    validation gallery scores alike on R@1; model selection compares (mean R@1, MRR) in that
    order.
    """
    img, txt = _finite_pair(image_emb, text_emb, chunk)
    if img.shape != txt.shape or img.shape[0] == 0:
        raise InputError(
            f"paired metrics need as many images as texts (got {tuple(img.shape)} and"
            f" {tuple(txt.shape)})"
        )
    n = img.shape[0]
    r_i2t = torch.empty(n, dtype=torch.long)
    r_t2i = torch.empty(n, dtype=torch.long)
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        diag = (torch.arange(e - s, device=img.device), torch.arange(s, e, device=img.device))
        for query, gallery, rank in ((img, txt, r_i2t), (txt, img, r_t2i)):
            sims = query[s:e] @ gallery.T
            # the true partner itself is counted (x < x is false), hence the − 1
            rank[s:e] = (_n_not_below(sims, sims[diag][:, None]) - 1).cpu()
    r1 = 50.0 * (int((r_i2t == 0).sum()) + int((r_t2i == 0).sum())) / n
    mrr = 50.0 * sum(float((1.0 / (r.double() + 1.0)).mean()) for r in (r_i2t, r_t2i))
    return {"mean_R@1": r1, "MRR": mrr}


def selection_key(r1: float | None, mrr: float | None) -> tuple[float, float]:
    """Sort key of a validation result: mean R@1 first, the MRR breaks its ties; a missing
    score sorts below every real one."""
    return (-math.inf if r1 is None else r1, -math.inf if mrr is None else mrr)


@torch.no_grad()
def class_prototypes(prompt_emb: Any, n_templates: int | None = None) -> Tensor:
    """Zero-shot prototypes: mean of L2-normalised prompt embeddings per class, renormalised.

    ``prompt_emb`` is either ``n_classes × n_templates × d`` or ``(n_classes·n_templates) × d``
    with the templates of a class contiguous (then ``n_templates`` is required).
    """
    E = as_tensor(prompt_emb)
    if E.ndim == 2:
        if not n_templates or E.shape[0] % n_templates:
            raise InputError(
                f"{E.shape[0]} prompt embeddings cannot be split into classes of"
                f" {n_templates} templates"
            )
        E = E.reshape(-1, n_templates, E.shape[-1])
    return l2_normalize(l2_normalize(E).mean(1))


@torch.no_grad()
def zero_shot_accuracy(image_emb: Any, prototypes: Any, labels: Any) -> float:
    """Top-1 accuracy (percent) of nearest-prototype classification by cosine similarity."""
    img = l2_normalize(as_tensor(image_emb))
    protos = l2_normalize(as_tensor(prototypes))
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
    if y.shape[0] != img.shape[0]:
        raise InputError(f"{y.shape[0]} labels for {img.shape[0]} images")
    pred = (img @ protos.T).argmax(1)
    return float((pred == y).float().mean() * 100)
