"""Loading a built icons cache: the embeddings, the captions and the protocol's splits."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from sotalign.encoders import sha256_file
from sotalign.errors import InputError

from ..protocol import SplitRows, cache_root
from .splits import SPLIT_SEED, caption_groups, split_icons

ICONS_FILE = "icons.tsv"
FAILED_FILE = "render_failed.tsv"
MANIFEST_FILE = "manifest.json"
STAGES_FILE = "stages.json"
FORMAT_VERSION = 1
BUILD_COMMAND = "python -m sotalign.datasets.icons"


# --------------------------------------------------------------------------------------------
# locations
# --------------------------------------------------------------------------------------------
def default_cache_dir(limit: int | None = None) -> Path:
    """Folder of the icons cache; a ``--limit N`` build goes to ``icons-limitN``."""
    return cache_root() / ("icons" if limit is None else f"icons-limit{int(limit)}")


# --------------------------------------------------------------------------------------------
# load + protocol
# --------------------------------------------------------------------------------------------
@dataclass
class IconsData(SplitRows):
    """The icons benchmark: both embeddings of every icon, captions and the split indices.

    ``x`` (image embeddings) and ``y`` (caption embeddings) are float16 memory maps, row i both
    of icon ``ids[i]``; the accessors return float32 copies. ``test_groups[k]`` is the caption
    group of test icon ``test_idx[k]`` (for :func:`sotalign.eval.grouped_retrieval_metrics`). With
    ``shifted=True`` the unpaired pools come from disjoint sets of icon sets.
    """

    x: np.ndarray
    y: np.ndarray
    ids: list[str]
    sets: np.ndarray
    captions: list[str]
    groups: list[str]
    licenses: list[str]
    test_idx: np.ndarray
    val_idx: np.ndarray
    pair_pool_idx: np.ndarray
    unpaired_images_idx: np.ndarray
    unpaired_texts_idx: np.ndarray
    test_groups: np.ndarray
    shifted: bool = False
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def unpaired_images(self) -> np.ndarray:
        """Image embeddings of the unpaired image pool."""
        return self.rows(self.x, self.unpaired_images_idx)

    def unpaired_texts(self) -> np.ndarray:
        """Caption embeddings of the unpaired text pool (icons disjoint from the image pool)."""
        return self.rows(self.y, self.unpaired_texts_idx)

    def summary(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "sets": len(set(self.sets.tolist())),
            "test": len(self.test_idx),
            "test_caption_groups": len(np.unique(self.test_groups)),
            "validation": len(self.val_idx),
            "pair_pool": len(self.pair_pool_idx),
            "unpaired_images": len(self.unpaired_images_idx),
            "unpaired_texts": len(self.unpaired_texts_idx),
            "shifted": self.shifted,
            "d_x": int(self.x.shape[1]),
            "d_y": int(self.y.shape[1]),
        }


class PairDraw(NamedTuple):
    """Training pairs from the pair pool: image rows, caption rows and their icon indices."""

    images: np.ndarray
    texts: np.ndarray
    indices: np.ndarray


def _missing(path: Path, what: str) -> InputError:
    hint = ""
    m = re.fullmatch(r"icons-limit(\d+)", path.name)
    if m:
        hint = f" --limit {m.group(1)}"
    return InputError(
        f"icons benchmark cache {what} in {path}: build it with "
        f"'{BUILD_COMMAND}{hint} --out {path}' (needs npm and 'pip install sotalign[icons]'; "
        "the full build takes hours of CPU, --max-images N builds a subset)"
    )


def load_icons(
    cache: str | os.PathLike[str] | None = None,
    *,
    shifted: bool = False,
    n_test: int | None = None,
    n_val: int | None = None,
    n_pair_pool: int | None = None,
    split_seed: int = SPLIT_SEED,
    verify: bool = False,
) -> IconsData:
    """Load the cached icons benchmark and its splits (``shifted``: the set-shifted pools).

    ``cache`` is the folder written by the build (default :func:`default_cache_dir`).
    ``verify=True`` re-checks the sha256 of every file.
    """
    path = Path(cache).expanduser() if cache is not None else default_cache_dir()
    mpath = path / MANIFEST_FILE
    if not mpath.is_file():
        raise _missing(path, "not found")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise _missing(path, f"has an unreadable {MANIFEST_FILE} ({exc})") from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise _missing(path, f"has format {manifest.get('format_version')!r}; rebuild it")
    if not manifest.get("embedded") or not manifest.get("images") or not manifest.get("texts"):
        raise _missing(path, "holds no embeddings (built with --no-embed)")
    x_file, y_file = manifest["images"]["file"], manifest["texts"]["file"]
    for name in (ICONS_FILE, x_file, y_file):
        if not (path / name).is_file():
            raise _missing(path, f"lacks {name}")
        if verify and sha256_file(path / name) != manifest["sha256"].get(name):
            raise _missing(path, f"has a corrupted {name} (sha256 mismatch)")
    x = np.load(path / x_file, mmap_mode="r", allow_pickle=False)
    y = np.load(path / y_file, mmap_mode="r", allow_pickle=False)
    with open(path / ICONS_FILE, encoding="utf-8") as fh:
        next(fh)
        rows = [line.rstrip("\n").split("\t", 4) for line in fh]
    n = int(manifest["n"])
    if x.shape[0] != n or y.shape[0] != n or len(rows) != n or any(len(r) != 5 for r in rows):
        raise _missing(
            path,
            f"is inconsistent (manifest n={n}, images {x.shape}, texts {y.shape}, "
            f"{len(rows)} icons); rebuild it",
        )
    ids = [r[0] for r in rows]
    s = split_icons(ids, n_test=n_test, n_val=n_val, n_pair_pool=n_pair_pool, seed=split_seed)
    groups = [r[3] for r in rows]
    pre = "shifted_" if shifted else ""
    return IconsData(
        x=x,
        y=y,
        ids=ids,
        sets=np.array([r[1] for r in rows], dtype=object),
        captions=[r[4] for r in rows],
        groups=groups,
        licenses=[r[2] for r in rows],
        test_idx=s["test"],
        val_idx=s["validation"],
        pair_pool_idx=s["pair_pool"],
        unpaired_images_idx=s[pre + "unpaired_images"],
        unpaired_texts_idx=s[pre + "unpaired_texts"],
        test_groups=caption_groups([groups[i] for i in s["test"]]),
        shifted=shifted,
        manifest=manifest,
        path=path,
    )


def draw_pairs(data: IconsData, n_pairs: int, seed: int = 0) -> PairDraw:
    """``n_pairs`` training pairs from the pair pool, seeded; nested across ``n_pairs``."""
    idx = data.draw_indices(n_pairs, seed, "icons pair pool")
    return PairDraw(data.rows(data.x, idx), data.rows(data.y, idx), idx)
