"""Evaluation: cross-modal retrieval and zero-shot classification (SPEC §5).

Retrieval uses cosine similarity of the aligned, L2-normalised embeddings. Several captions may
describe one image (COCO-style): ``text_to_image[j]`` is the image of caption ``j``.

* image→text: an image is a hit at k if **any** of its captions is among its k nearest texts;
* text→image: a caption is a hit at k if its image is among its k nearest images.

The main metric is **mean R@1**, the mean of the two R@1 values. All figures are percentages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import InputError
from .teachers import as_tensor, l2_normalize

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


@torch.no_grad()
def retrieval_metrics(
    image_emb: Any,
    text_emb: Any,
    text_to_image: Any = None,
    ks: Sequence[int] = KS,
    chunk: int = 4096,
) -> dict[str, Any]:
    """Recall@k in both directions, in percent.

    Parameters
    ----------
    image_emb, text_emb:
        Aligned embeddings (n_images × d and n_texts × d); they are L2-normalised here.
    text_to_image:
        Image row of each text; ``None`` means one caption per image in the same order.

    Returns
    -------
    ``{"i2t": {"R@1": …, "R@5": …, "R@10": …}, "t2i": {…}, "mean_R@1": …}``
    """
    img = l2_normalize(as_tensor(image_emb))
    txt = l2_normalize(as_tensor(text_emb))
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
    kmax = max(ks)

    # text -> image: rank of the true image among all images.
    t2i_rank = torch.empty(n_t, dtype=torch.long)
    for s in range(0, n_t, chunk):
        sims = txt[s : s + chunk] @ img.T
        true = sims.gather(1, t2i_idx[s : s + chunk, None])
        t2i_rank[s : s + chunk] = (sims > true).sum(1)

    # image -> text: best rank over the image's captions.
    i2t_rank = torch.full((n_i,), n_t, dtype=torch.long)
    for s in range(0, n_i, chunk):
        sims = img[s : s + chunk] @ txt.T
        top = sims.topk(min(kmax, n_t), dim=1).indices  # (c, kmax)
        hit_img = t2i_idx[top]  # image of each retrieved caption
        own = torch.arange(s, s + sims.shape[0])[:, None]
        match = hit_img == own
        first = torch.where(
            match.any(1), match.float().argmax(1), torch.full((sims.shape[0],), n_t)
        )
        i2t_rank[s : s + chunk] = first

    def recall(rank: Tensor) -> dict[str, float]:
        return {f"R@{k}": float((rank < k).float().mean() * 100) for k in ks}

    out = {"i2t": recall(i2t_rank), "t2i": recall(t2i_rank)}
    out["mean_R@1"] = 0.5 * (out["i2t"]["R@1"] + out["t2i"]["R@1"])
    return out


@torch.no_grad()
def paired_rank_metrics(image_emb: Any, text_emb: Any, chunk: int = 4096) -> dict[str, float]:
    """Mean R@1 and mean reciprocal rank (both in percent) of one-to-one pairs.

    Row i of ``image_emb`` matches row i of ``text_emb``. With ``r`` the 0-based rank of the
    true partner (ties counted against it), ``MRR = mean 1/(r+1)`` over both directions. MRR
    uses the whole ranking, so it separates models that a small validation gallery scores
    alike on R@1; model selection compares (mean R@1, MRR) in that order.
    """
    img = l2_normalize(as_tensor(image_emb))
    txt = l2_normalize(as_tensor(text_emb))
    if img.shape != txt.shape or img.shape[0] == 0:
        raise InputError(
            f"paired metrics need as many images as texts (got {tuple(img.shape)} and"
            f" {tuple(txt.shape)})"
        )
    n = img.shape[0]
    r_i2t = torch.empty(n, dtype=torch.long)
    r_t2i = torch.empty(n, dtype=torch.long)
    for s in range(0, n, chunk):
        rows = torch.arange(s, min(s + chunk, n))
        sims = img[rows] @ txt.T
        r_i2t[rows] = (sims > sims[torch.arange(len(rows)), rows][:, None]).sum(1)
        sims = txt[rows] @ img.T
        r_t2i[rows] = (sims > sims[torch.arange(len(rows)), rows][:, None]).sum(1)
    r1 = 50.0 * float((r_i2t == 0).float().mean() + (r_t2i == 0).float().mean())
    mrr = 50.0 * float((1.0 / (r_i2t + 1)).mean() + (1.0 / (r_t2i + 1)).mean())
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


def format_table(rows: dict[str, dict[str, Any]], extra: Sequence[str] = ()) -> str:
    """A Markdown table of retrieval metrics, one row per model name."""
    cols = ["I2T R@1", "I2T R@5", "I2T R@10", "T2I R@1", "T2I R@5", "T2I R@10", "mean R@1"]
    cols += list(extra)
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, m in rows.items():
        vals = [m["i2t"]["R@1"], m["i2t"]["R@5"], m["i2t"]["R@10"]]
        vals += [m["t2i"]["R@1"], m["t2i"]["R@5"], m["t2i"]["R@10"], m["mean_R@1"]]
        vals += [m.get(c, float("nan")) for c in extra]
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in vals) + " |")
    return "\n".join(lines)
