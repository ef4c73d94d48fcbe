"""The data of a benchmark sweep: a pair pool, unpaired pools, a test split, optional classes —
from a bundled benchmark (``emoji``, ``wordnet``, ``icons``, ``icons-shifted``) or from the user's
embedding files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets import emoji, icons, wordnet
from ..errors import ConfigError, InputError, closest
from ..io import load_embedding_file, load_index

__all__ = ["BenchData", "load_bench_data"]

# ----------------------------------------------------------------------------- data


@dataclass
class BenchData:
    """Everything a sweep needs: a pair pool, unpaired pools, a test split, optional classes.

    ``draw(n, seed)`` returns ``n`` row-aligned pairs ``(A, B)`` from the pool (nested across
    ``n`` for one seed). ``zero_shot`` is ``(test_labels, prompt_embeddings, n_templates)``
    with prompt embeddings in the text encoder's space (classes × templates × d_y), or None.
    ``test_groups`` (one id per test pair, or None) marks pairs sharing one caption: retrieval is
    then also scored with every pair of the group counted as a hit.
    """

    name: str
    pool_images: np.ndarray
    pool_texts: np.ndarray
    unpaired_images: np.ndarray | None
    unpaired_texts: np.ndarray | None
    test_images: np.ndarray
    test_texts: np.ndarray
    test_index: np.ndarray | None = None
    zero_shot: tuple[np.ndarray, np.ndarray] | None = None
    draw_fn: Callable[[int, int], tuple[np.ndarray, np.ndarray]] | None = None
    test_groups: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def check_pairs(self, *counts: int) -> None:
        """Refuse pair counts the pool cannot give (before any fit, and in :meth:`draw`)."""
        m = len(self.pool_images)
        bad = sorted({int(n) for n in counts if not 1 <= int(n) <= m})
        if bad:
            raise InputError(
                f"--pairs/--sweep-pairs {', '.join(map(str, bad))} outside 1..{m} "
                f"(the {self.name} pair pool holds {m} pairs)"
            )

    def draw(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        self.check_pairs(n)
        if self.draw_fn is not None:
            return self.draw_fn(n, seed)
        m = len(self.pool_images)
        idx = np.random.default_rng(seed).permutation(m)[:n]
        return (
            np.asarray(self.pool_images[idx], np.float32),
            np.asarray(self.pool_texts[idx], np.float32),
        )

    def unpaired(self, size: int | None, seed: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Both unpaired pools, or seeded nested subsamples of ``size`` rows of each."""
        X, Y = self.unpaired_images, self.unpaired_texts
        if X is None or Y is None or size is None:
            return X, Y
        out = []
        for k, P in enumerate((X, Y)):
            if size > len(P):
                raise InputError(
                    f"--unpaired-sizes {size} exceeds the unpaired pool of {len(P)} rows"
                )
            idx = np.sort(np.random.default_rng(10_007 * seed + k).permutation(len(P))[:size])
            out.append(np.asarray(P[idx], np.float32))
        return out[0], out[1]

    def summary(self) -> dict[str, Any]:
        def n(a: Any) -> int:
            return 0 if a is None else len(a)

        return {
            "dataset": self.name,
            "pair_pool": n(self.pool_images),
            "unpaired_images": n(self.unpaired_images),
            "unpaired_texts": n(self.unpaired_texts),
            "test_images": n(self.test_images),
            "test_texts": n(self.test_texts),
            "d_x": int(self.pool_images.shape[1]),
            "d_y": int(self.pool_texts.shape[1]),
            **self.info,
        }


def _emoji_data() -> BenchData:
    d = emoji.load_emoji()

    def draw(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        p = emoji.draw_pairs(d, n, seed)
        return p.images, p.texts

    return BenchData(
        "emoji",
        d.pool_images,
        d.pool_texts,
        d.unpaired_images,
        d.unpaired_texts,
        d.test_images,
        d.test_texts,
        d.test_text_to_image,
        zero_shot=(d.test_groups, d.group_prompts),
        draw_fn=draw,
        info={"zero_shot": f"{len(d.group_names)} emoji groups x {len(d.templates)} templates"},
    )


def _wordnet_data() -> BenchData:
    d = wordnet.load_wordnet()

    def draw(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        p = wordnet.draw_pairs(d, n, seed)
        return p.a, p.b

    tx, ty = d.test()
    pool = d.pair_pool_idx
    return BenchData(
        "wordnet",
        np.asarray(d.x[pool], np.float32),
        np.asarray(d.y[pool], np.float32),
        d.unpaired_x(),
        d.unpaired_y(),
        tx,
        ty,
        None,
        draw_fn=draw,
        info={"encoders": "GloVe-50 mean (images side) / all-MiniLM-L6-v2 (texts side)"},
    )


def _icons_data(shifted: bool = False) -> BenchData:
    d = icons.load_icons(shifted=shifted)

    def draw(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        p = icons.draw_pairs(d, n, seed)
        return p.images, p.texts

    tx, ty = d.test()
    pool = d.pair_pool_idx
    return BenchData(
        "icons-shifted" if shifted else "icons",
        np.asarray(d.x[pool], np.float32),
        np.asarray(d.y[pool], np.float32),
        d.unpaired_images(),
        d.unpaired_texts(),
        tx,
        ty,
        None,
        draw_fn=draw,
        test_groups=d.test_groups,
        info={
            "encoders": "EfficientNet-Lite0 (images) / all-MiniLM-L6-v2 (captions)",
            "unpaired_pools": "from disjoint sets" if shifted else "disjoint icons",
            "test_caption_groups": len(np.unique(d.test_groups)),
        },
    )


def load_bench_data(
    dataset: str | None = None,
    *,
    pairs_images: Path | None = None,
    pairs_texts: Path | None = None,
    unpaired_images: Path | None = None,
    unpaired_texts: Path | None = None,
    test_images: Path | None = None,
    test_texts: Path | None = None,
    test_index: Path | None = None,
) -> BenchData:
    """A bundled benchmark (``emoji``, ``wordnet``, ``icons``, ``icons-shifted``) or user
    embedding files."""
    files = (pairs_images, pairs_texts, unpaired_images, unpaired_texts, test_images, test_texts)
    if dataset is not None:
        if any(f is not None for f in (*files, test_index)):
            raise ConfigError(
                "give either --dataset or embedding files (--pairs-images ...), not both"
            )
        loaders: dict[str, Callable[[], BenchData]] = {
            "emoji": _emoji_data,
            "wordnet": _wordnet_data,
            "icons": _icons_data,
            "icons-shifted": lambda: _icons_data(shifted=True),
        }
        if dataset not in loaders:
            raise ConfigError(
                f"unknown --dataset '{dataset}'{closest(dataset, list(loaders))};"
                f" choose {', '.join(loaders)}"
            )
        return loaders[dataset]()
    if pairs_images is None or pairs_texts is None or test_images is None or test_texts is None:
        raise ConfigError(
            "give --dataset emoji|wordnet|icons|icons-shifted, or at least --pairs-images, "
            "--pairs-texts, --test-images and --test-texts"
        )
    if (unpaired_images is None) != (unpaired_texts is None):
        raise ConfigError("give both --unpaired-images and --unpaired-texts, or neither")
    A = load_embedding_file(pairs_images, check=True)
    B = load_embedding_file(pairs_texts, check=True)
    assert A is not None and B is not None
    if A.shape[0] != B.shape[0]:
        raise InputError(
            f"{pairs_images} has {A.shape[0]} rows but {pairs_texts} has "
            f"{B.shape[0]}: the pair pool must be row-aligned"
        )
    X = load_embedding_file(unpaired_images, check=True)
    Y = load_embedding_file(unpaired_texts, check=True)
    TX = load_embedding_file(test_images, check=True)
    TY = load_embedding_file(test_texts, check=True)
    assert TX is not None and TY is not None
    for name, arr, ref, path in (
        ("unpaired images", X, A, unpaired_images),
        ("unpaired texts", Y, B, unpaired_texts),
        ("test images", TX, A, test_images),
        ("test texts", TY, B, test_texts),
    ):
        if arr is not None and arr.shape[1] != ref.shape[1]:
            raise InputError(
                f"{path}: {name} have {arr.shape[1]} columns, the pairs "
                f"{ref.shape[1]}; use embeddings of the same encoder"
            )
    idx = None
    if test_index is not None:
        idx = load_index(test_index)
        if len(idx) != len(TY) or (len(idx) and int(idx.max()) >= len(TX)):
            raise InputError(
                f"{test_index}: needs one image row (< {len(TX)}) per test text ({len(TY)} texts)"
            )
    elif len(TX) != len(TY):
        raise InputError(
            f"{len(TX)} test images but {len(TY)} test texts: pass --test-index "
            "(the image row of each text)"
        )
    return BenchData(
        "files",
        A,
        B,
        X,
        Y,
        TX,
        TY,
        idx,
        info={"pairs_images": str(pairs_images), "pairs_texts": str(pairs_texts)},
    )
