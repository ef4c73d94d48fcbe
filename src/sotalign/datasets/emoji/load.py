"""Loading the committed emoji files: :class:`EmojiData`, :func:`load_emoji`, the splits.

Also the fixed split sizes and seed (:func:`split_items`), the file names and format version
shared with :mod:`.build`, and the caption and class-name formats.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from sotalign.encoders import sha256_file
from sotalign.errors import InputError

from ..protocol import nested_draw

SPLIT_SEED = 0
N_TEST = 400
N_VAL = 200
N_POOL = 800
N_OOD_TEXTS = 2000
TEMPLATES = ("{}", "an emoji of {}.", "a {} emoji.", "an icon of {}.")
FORMAT_VERSION = 1
FILES = {
    "images": "images.npy",
    "texts": "texts.npy",
    "ood_texts": "ood_texts.npy",
    "group_prompts": "group_prompts.npy",
    "subgroup_prompts": "subgroup_prompts.npy",
    "metadata": "metadata.json",
}
BUILD_COMMAND = "python scripts/build_emoji.py"


def default_root() -> Path:
    """``$SOTALIGN_EMOJI_DIR`` if set, else ``data/emoji`` of the source checkout."""
    env = os.environ.get("SOTALIGN_EMOJI_DIR")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[4] / "data" / "emoji"


def caption(label: str, tags: list[str] | None) -> str:
    """``"<label>. <tag>, <tag>, …"`` (the label alone when there are no tags)."""
    return f"{label}. {', '.join(tags)}" if tags else label


def class_name(key: str, level: str) -> str:
    """Readable class name: groups ``food-drink`` → ``food and drink``; subgroups ``-`` → space."""
    return key.replace("-", " and " if level == "group" else " ")


@dataclass
class EmojiData:
    """The emoji benchmark as float32 arrays (rows of ``*_images`` ↔ rows of ``*_texts``).

    ``pool_*``, ``val_*`` and ``test_*`` are row-aligned pairs; ``unpaired_images`` and
    ``unpaired_texts`` are disjoint pools with no true pair between them; ``ood_texts`` are
    out-of-domain texts (WordNet glosses). ``test_text_to_image[j]`` is the image of test
    caption ``j``. ``test_groups``/``test_subgroups`` index ``group_names``/``subgroup_names``;
    ``group_prompts`` is ``n_groups × n_templates × d_text`` (templates in ``templates``).
    """

    pool_images: np.ndarray
    pool_texts: np.ndarray
    unpaired_images: np.ndarray
    unpaired_texts: np.ndarray
    val_images: np.ndarray
    val_texts: np.ndarray
    test_images: np.ndarray
    test_texts: np.ndarray
    test_text_to_image: np.ndarray
    test_groups: np.ndarray
    test_subgroups: np.ndarray
    val_groups: np.ndarray
    val_subgroups: np.ndarray
    ood_texts: np.ndarray
    group_names: list[str]
    subgroup_names: list[str]
    templates: list[str]
    group_prompts: np.ndarray
    subgroup_prompts: np.ndarray
    pool_captions: list[str]
    unpaired_captions: list[str]
    val_captions: list[str]
    test_captions: list[str]
    ood_captions: list[str]
    pool_labels: list[str]
    unpaired_image_labels: list[str]
    val_labels: list[str]
    test_labels: list[str]
    unpaired_image_is_variant: np.ndarray
    manifest: dict[str, Any] = field(default_factory=dict)
    root: Path | None = None

    def summary(self) -> dict[str, int]:
        """Counts per split."""
        return {
            "pool_pairs": len(self.pool_images),
            "unpaired_images": len(self.unpaired_images),
            "unpaired_images_skin_tone_variants": int(self.unpaired_image_is_variant.sum()),
            "unpaired_texts": len(self.unpaired_texts),
            "ood_texts": len(self.ood_texts),
            "val_pairs": len(self.val_images),
            "test_pairs": len(self.test_images),
            "groups": len(self.group_names),
            "subgroups": len(self.subgroup_names),
        }


def _missing(root: Path, what: str) -> InputError:
    return InputError(
        f"emoji data: {what} in {root}; use a clone of the repository (data/emoji/), set"
        f" SOTALIGN_EMOJI_DIR, or regenerate the files with '{BUILD_COMMAND} --out DIR' and"
        " pass root=DIR"
    )


def load_emoji(root: str | os.PathLike[str] | None = None, *, verify: bool = True) -> EmojiData:
    """Load the embedded emoji benchmark from ``root`` (default :func:`default_root`).

    With ``verify`` the sha256 of every file is checked against ``manifest.json``.
    """
    root = Path(root).expanduser() if root is not None else default_root()
    man_path = root / "manifest.json"
    if not man_path.is_file():
        raise _missing(root, "no manifest.json")
    try:
        manifest = json.loads(man_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{man_path}: not valid JSON ({exc}); regenerate the data") from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{man_path}: format version {manifest.get('format_version')!r}, this sotalign"
            f" reads {FORMAT_VERSION}; regenerate with '{BUILD_COMMAND}'"
        )
    for name in FILES.values():
        p = root / name
        if not p.is_file():
            raise _missing(root, f"{name} is missing")
        if verify and sha256_file(p) != manifest["files"][name]["sha256"]:
            raise InputError(
                f"{p}: sha256 differs from manifest.json (file changed or corrupt); restore it"
                f" (git checkout data/emoji) or regenerate with '{BUILD_COMMAND}'"
            )
    meta = json.loads((root / FILES["metadata"]).read_text(encoding="utf-8"))

    def arr(key: str) -> np.ndarray:
        return np.load(root / FILES[key]).astype(np.float32)

    images, texts = arr("images"), arr("texts")
    items = meta["items"]
    variants = meta["variants"]
    splits = {k: np.asarray(v, dtype=np.int64) for k, v in meta["splits"].items()}
    n_base = len(items)
    var_rows = np.asarray([n_base + v for v in meta["variant_rows_unpaired"]], dtype=np.int64)
    un_img = np.concatenate([splits["unpaired_images"], var_rows])
    groups = np.asarray([it["group_class"] for it in items], dtype=np.int64)
    subgroups = np.asarray([it["subgroup_class"] for it in items], dtype=np.int64)

    def caps(idx: np.ndarray) -> list[str]:
        return [items[i]["caption"] for i in idx]

    def labels(idx: np.ndarray) -> list[str]:
        return [items[i]["label"] for i in idx]

    test = splits["test"]
    return EmojiData(
        pool_images=images[splits["pool"]],
        pool_texts=texts[splits["pool"]],
        unpaired_images=images[un_img],
        unpaired_texts=texts[splits["unpaired_texts"]],
        val_images=images[splits["val"]],
        val_texts=texts[splits["val"]],
        test_images=images[test],
        test_texts=texts[test],
        test_text_to_image=np.arange(len(test), dtype=np.int64),
        test_groups=groups[test],
        test_subgroups=subgroups[test],
        val_groups=groups[splits["val"]],
        val_subgroups=subgroups[splits["val"]],
        ood_texts=arr("ood_texts"),
        group_names=list(meta["group_names"]),
        subgroup_names=list(meta["subgroup_names"]),
        templates=list(meta["templates"]),
        group_prompts=arr("group_prompts"),
        subgroup_prompts=arr("subgroup_prompts"),
        pool_captions=caps(splits["pool"]),
        unpaired_captions=caps(splits["unpaired_texts"]),
        val_captions=caps(splits["val"]),
        test_captions=caps(test),
        ood_captions=list(meta["ood_texts"]),
        pool_labels=labels(splits["pool"]),
        unpaired_image_labels=labels(splits["unpaired_images"])
        + [variants[v]["label"] for v in meta["variant_rows_unpaired"]],
        val_labels=labels(splits["val"]),
        test_labels=labels(test),
        unpaired_image_is_variant=np.concatenate(
            [np.zeros(len(splits["unpaired_images"]), bool), np.ones(len(var_rows), bool)]
        ),
        manifest=manifest,
        root=root,
    )


class EmojiPairs(NamedTuple):
    """Training pairs drawn from the pool: ``images[i]`` ↔ ``texts[i]``; ``idx`` into the pool."""

    images: np.ndarray
    texts: np.ndarray
    idx: np.ndarray


def draw_pairs(data: EmojiData, n: int, seed: int = 0) -> EmojiPairs:
    """``n`` pairs from the pool: the first ``n`` of a ``seed``-permutation of it, nested
    across ``n`` (:func:`sotalign.datasets.protocol.nested_draw`)."""
    idx = nested_draw(len(data.pool_images), n, seed, "emoji pool size")
    return EmojiPairs(data.pool_images[idx], data.pool_texts[idx], idx)


def split_items(n_items: int, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """The fixed splits of ``n_items`` base emoji (sorted index arrays).

    A ``seed``-permutation gives test, val and pool (in that order, scaled down when
    ``n_items`` is small); the remainder is halved into unpaired images and unpaired texts.
    """
    need = N_TEST + N_VAL + N_POOL
    scale = min(1.0, 0.8 * n_items / need)
    n_test, n_val, n_pool = (max(1, int(k * scale)) for k in (N_TEST, N_VAL, N_POOL))
    perm = np.random.default_rng(seed).permutation(n_items)
    a, b, c = n_test, n_test + n_val, n_test + n_val + n_pool
    rest = perm[c:]
    half = len(rest) // 2
    parts = {
        "test": perm[:a],
        "val": perm[a:b],
        "pool": perm[b:c],
        "unpaired_images": rest[:half],
        "unpaired_texts": rest[half:],
    }
    return {k: np.sort(v) for k, v in parts.items()}
