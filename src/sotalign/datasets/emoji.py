"""The bundled emoji dataset: real image–caption pairs, embedded offline, with fixed splits.

Sources (all from package registries, versions recorded in the manifest):

* images: the colour bitmaps of Debian's ``fonts-noto-color-emoji`` (``NotoColorEmoji.ttf``),
  rendered with Pillow (size 109, ``embedded_color=True``, complex-script layout for ZWJ and
  skin-tone sequences), centred on a white square. An emoji that the font does not draw as one
  glyph (too new for the font, or a sequence it does not ligate) is left out;
* captions: npm ``emojibase-data`` (``en/data.json``): ``"<label>. <tag>, <tag>, …"``, e.g.
  ``"person running. fast, hurry, marathon, move"``; its ``group`` and ``subgroup`` are the class
  labels. Regional-indicator letters (no group) and the ``component`` group (skin-tone swatches,
  hair styles) are left out;
* out-of-domain texts: WordNet noun glosses (Debian ``wordnet-base``, ``data.noun``).

Splits (fixed by :data:`SPLIT_SEED`; the item indices of every split are stored in
``metadata.json``, so they do not depend on this code): a permutation of the base emoji gives

* ``test``: :data:`N_TEST` pairs (evaluation only; ``test_text_to_image`` is the identity);
* ``val``: :data:`N_VAL` pairs (choose hyper-parameters here, never on test);
* ``pool``: :data:`N_POOL` pairs, from which :func:`draw_pairs` draws the training pairs;
* the rest, halved: ``unpaired images`` (only their images are used) and ``unpaired texts``
  (only their captions), so no true pair exists between the two unpaired pools.

Extra unpaired data, labelled as such:

* ``unpaired_images`` also holds the skin-tone variants (e.g. "waving hand: dark skin tone") of
  the base emoji in the ``pool`` and ``unpaired images`` splits only, never of val/test emoji or
  of emoji whose caption is in ``unpaired texts`` (``unpaired_image_is_variant`` marks them);
* ``ood_texts``: :data:`N_OOD_TEXTS` WordNet noun glosses, real text but out of domain; add them
  to the unpaired texts to test robustness to off-distribution unpaired data.

Zero-shot classes: the emoji groups (9) and subgroups, each embedded under :data:`TEMPLATES`
(``group_prompts``: ``n_classes × n_templates × d``).

The committed files (``data/emoji/`` at the repository root) hold EfficientNet-Lite0 image
embeddings and all-MiniLM-L6-v2 text embeddings in float16 with a ``manifest.json`` (encoders
and versions, counts, sha256 of each file). ``python scripts/build_emoji.py`` regenerates them
from scratch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from sotalign.datasets.wordnet import read_glosses
from sotalign.embed import embed_image_files
from sotalign.encoders import (
    load_image_encoder,
    load_text_encoder,
    package_version,
    sha256_file,
)
from sotalign.errors import InputError
from sotalign.io import atomic_write, write_json_atomic

SPLIT_SEED = 0
N_TEST = 400
N_VAL = 200
N_POOL = 800
N_OOD_TEXTS = 2000
OOD_SEED = 1
EMOJIBASE_VERSION = "17.0.0"
FONT_PATH = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
FONT_SIZE = 109  # the only size of the font's bitmap strike
CANVAS = 144  # rendered images are CANVAS × CANVAS, white background
WORDNET_DIR = Path("/usr/share/wordnet")
TEMPLATES = ("{}", "an emoji of {}.", "a {} emoji.", "an icon of {}.")
IMAGE_ENCODER = "efficientnet-lite0"
TEXT_ENCODER = "st:all-MiniLM-L6-v2"
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
# a few rendered images are committed (data/emoji/samples/) so that the image rows can be
# re-derived with the real encoder without the font, and to try `sotalign embed images` on
SAMPLE_HEXCODES = ("1F600", "1F436", "1F34E", "1F697", "26BD", "1F4A1", "1F1EF-1F1F5", "2764")


# --------------------------------------------------------------------------------------------
# loading the committed files


def default_root() -> Path:
    """``$SOTALIGN_EMOJI_DIR`` if set, else ``data/emoji`` of the source checkout."""
    env = os.environ.get("SOTALIGN_EMOJI_DIR")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[3] / "data" / "emoji"


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
    """``n`` pairs from the pool: the first ``n`` of a ``seed``-permutation of it.

    Draws are nested: for one seed the 100 pairs are the first 100 of the 300 pairs, so a
    supervision curve compares like with like.
    """
    m = len(data.pool_images)
    if not 1 <= n <= m:
        raise InputError(f"n={n} pairs is outside 1..{m} (the emoji pool size)")
    idx = np.random.default_rng(seed).permutation(m)[:n]
    return EmojiPairs(data.pool_images[idx], data.pool_texts[idx], idx)


# --------------------------------------------------------------------------------------------
# building from scratch (scripts/build_emoji.py)


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


def _run_quiet(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def _dpkg_version(package: str) -> str | None:
    if shutil.which("dpkg-query") is None:
        return None
    res = _run_quiet(["dpkg-query", "-W", "-f=${Version}", package])
    return res.stdout.strip() or None if res.returncode == 0 else None


def _apt_install(package: str, log: Any) -> bool:
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return False
    log(f"installing Debian package {package} (apt-get) …")
    res = _run_quiet(["apt-get", "install", "-y", "-q", package])
    if res.returncode != 0:
        _run_quiet(["apt-get", "update", "-q"])
        res = _run_quiet(["apt-get", "install", "-y", "-q", package])
    return res.returncode == 0


def find_font(font: Path | None, install: bool, log: Any) -> Path:
    """The Noto Color Emoji font: ``font``, the Debian path, or installed with apt-get."""
    path = font or FONT_PATH
    if not path.is_file() and font is None and install:
        _apt_install("fonts-noto-color-emoji", log)
    if not path.is_file():
        raise InputError(
            f"emoji font {path} not found: run 'apt-get install fonts-noto-color-emoji'"
            " (Debian/Ubuntu) or pass --font PATH/NotoColorEmoji.ttf"
        )
    return path


def find_emojibase(emojibase: Path | None, cache: Path, install: bool, log: Any) -> Path:
    """Folder of the npm package ``emojibase-data`` (with ``en/data.json``, ``meta/groups.json``).

    ``emojibase``, else ``cache/emojibase-data-<version>/package``, fetched with ``npm pack``.
    """
    if emojibase is not None:
        folder = emojibase
    else:
        folder = cache / f"emojibase-data-{EMOJIBASE_VERSION}" / "package"
        if not (folder / "en" / "data.json").is_file() and install:
            if shutil.which("npm") is None:
                raise InputError(
                    "npm is needed to fetch emojibase-data: install it (apt-get install npm) or"
                    f" run 'npm pack emojibase-data@{EMOJIBASE_VERSION}' elsewhere, untar it and"
                    " pass --emojibase DIR/package"
                )
            dest = folder.parent
            dest.mkdir(parents=True, exist_ok=True)
            log(f"fetching emojibase-data@{EMOJIBASE_VERSION} with npm pack …")
            res = _run_quiet(["npm", "pack", f"emojibase-data@{EMOJIBASE_VERSION}"], cwd=dest)
            tgz = dest / f"emojibase-data-{EMOJIBASE_VERSION}.tgz"
            if res.returncode != 0 or not tgz.is_file():
                raise InputError(
                    f"'npm pack emojibase-data@{EMOJIBASE_VERSION}' failed"
                    f" ({res.stderr.strip()[-200:]}); fetch it by hand and pass --emojibase DIR"
                )
            with tarfile.open(tgz) as tf:
                tf.extractall(dest, filter="data")
    for rel in ("en/data.json", "meta/groups.json", "package.json"):
        if not (folder / rel).is_file():
            raise InputError(
                f"emojibase-data: {folder / rel} not found; pass --emojibase pointing at the"
                f" unpacked npm package (npm pack emojibase-data@{EMOJIBASE_VERSION})"
            )
    return folder


def render_emoji(font: Any, text: str) -> Any:
    """The emoji as an RGB ``CANVAS × CANVAS`` image on white, or ``None`` if not one glyph.

    The font draws a supported emoji (sequences included) as a single bitmap of at most
    136 × 128 pixels; an unsupported sequence falls apart into several glyphs (wider) and an
    unsupported code point draws nothing.
    """
    from PIL import Image, ImageDraw

    layer = Image.new("RGBA", (4 * CANVAS, 2 * CANVAS), (0, 0, 0, 0))
    ImageDraw.Draw(layer).text((8, 8), text, font=font, embedded_color=True)
    bbox = layer.getchannel("A").getbbox()
    if bbox is None:
        return None
    w, h = bbox[2] - bbox[0], bbox[3] - bbox[1]
    if w > CANVAS or h > CANVAS:
        return None
    glyph = layer.crop(bbox)
    canvas = Image.new("RGBA", (CANVAS, CANVAS), (255, 255, 255, 255))
    canvas.alpha_composite(glyph, ((CANVAS - w) // 2, (CANVAS - h) // 2))
    return canvas.convert("RGB")


def build_emoji(
    out: Path,
    *,
    cache: Path,
    font: Path | None = None,
    emojibase: Path | None = None,
    wordnet_dir: Path = WORDNET_DIR,
    install: bool = True,
    limit: int | None = None,
    n_ood: int = N_OOD_TEXTS,
    device: str = "cpu",
    log: Any = print,
) -> dict[str, Any]:
    """Render, caption, split and embed the emoji dataset into ``out``; return the manifest.

    Rendered PNGs and resumable embedding shards live under ``cache``. ``limit`` keeps the
    first ``limit`` base emoji (for quick checks; the splits shrink accordingly).
    """
    from PIL import ImageFont, features

    t_start = time.perf_counter()
    font_path = find_font(font, install, log)
    base = find_emojibase(emojibase, cache, install, log)
    if not (wordnet_dir / "data.noun").is_file() and install:
        _apt_install("wordnet-base", log)
    raqm = bool(features.check("raqm"))
    if not raqm:
        log("warning: Pillow has no raqm layout: ZWJ and skin-tone sequences will not render")
    pil_font = ImageFont.truetype(
        str(font_path),
        FONT_SIZE,
        layout_engine=ImageFont.Layout.RAQM if raqm else ImageFont.Layout.BASIC,
    )
    data = json.loads((base / "en" / "data.json").read_text(encoding="utf-8"))
    gmeta = json.loads((base / "meta" / "groups.json").read_text(encoding="utf-8"))
    eb_version = json.loads((base / "package.json").read_text(encoding="utf-8"))["version"]
    group_keys = {int(k): v for k, v in gmeta["groups"].items()}
    subgroup_keys = {int(k): v for k, v in gmeta["subgroups"].items()}

    # 1. render base emoji and their skin-tone variants
    img_dir = cache / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    items: list[dict[str, Any]] = []
    dropped: list[str] = []
    for e in sorted(data, key=lambda e: e.get("order", 1 << 30)):
        if e.get("group") is None or group_keys[e["group"]] == "component":
            continue
        if limit is not None and len(items) >= limit:
            break
        img = render_emoji(pil_font, e["emoji"])
        if img is None:
            dropped.append(e["hexcode"])
            continue
        png = img_dir / f"{e['hexcode']}.png"
        if not png.is_file():
            img.save(png)
        items.append(
            {
                "hexcode": e["hexcode"],
                "emoji": e["emoji"],
                "label": e["label"],
                "caption": caption(e["label"], e.get("tags")),
                "group": group_keys[e["group"]],
                "subgroup": subgroup_keys[e["subgroup"]],
                "skins": e.get("skins", []),
            }
        )
    # classes: groups and subgroups present, in emojibase order
    group_list = [k for _, k in sorted(group_keys.items()) if any(it["group"] == k for it in items)]
    sub_list = [
        k for _, k in sorted(subgroup_keys.items()) if any(it["subgroup"] == k for it in items)
    ]
    for it in items:
        it["group_class"] = group_list.index(it["group"])
        it["subgroup_class"] = sub_list.index(it["subgroup"])

    splits = split_items(len(items))
    split_of = {int(i): name for name, idx in splits.items() for i in idx}
    variants: list[dict[str, Any]] = []
    variant_rows_unpaired: list[int] = []
    n_variant_dropped = 0
    for i, it in enumerate(items):
        # variants only of emoji whose images may be seen in training and whose caption is not
        # in the unpaired-text pool: no near-duplicates of val/test, no hidden pairs
        if split_of[i] not in ("pool", "unpaired_images"):
            continue
        for sk in it["skins"]:
            img = render_emoji(pil_font, sk["emoji"])
            if img is None:
                n_variant_dropped += 1
                continue
            png = img_dir / f"{sk['hexcode']}.png"
            if not png.is_file():
                img.save(png)
            variant_rows_unpaired.append(len(variants))
            variants.append(
                {"hexcode": sk["hexcode"], "emoji": sk["emoji"], "label": sk["label"], "base": i}
            )
    for it in items:
        del it["skins"]
    log(
        f"rendered {len(items)} base emoji ({len(dropped)} not drawable by the font) and"
        f" {len(variants)} skin-tone variants ({n_variant_dropped} not drawable)"
    )

    # 2. out-of-domain texts: WordNet noun glosses
    nouns = [g.text for g in read_glosses(wordnet_dir) if g.pos == "n"]
    pick = np.sort(
        np.random.default_rng(OOD_SEED).choice(len(nouns), min(n_ood, len(nouns)), False)
    )
    ood = [nouns[i] for i in pick]

    # 3. embed (resumable: shards and finished matrices wait in out/.build)
    image_encoder = load_image_encoder(IMAGE_ENCODER, device=device)
    text_encoder = load_text_encoder(TEXT_ENCODER, device=device)
    files = [str(img_dir / f"{it['hexcode']}.png") for it in items]
    files += [str(img_dir / f"{v['hexcode']}.png") for v in variants]
    tmp = out / ".build"
    tmp.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    images_npy = tmp / FILES["images"]
    if not _finished(images_npy, files):
        res = embed_image_files(
            image_encoder, files, images_npy, batch_size=32, shard_size=256, overwrite=True
        )
        if res.failed:
            raise InputError(f"{len(res.failed)} rendered emoji failed to embed: {res.failed}")
    t_images = time.perf_counter() - t0
    names = [class_name(k, "group") for k in group_list]
    sub_names = [class_name(k, "subgroup") for k in sub_list]
    text_jobs = {
        "texts": [it["caption"] for it in items],
        "ood_texts": ood,
        "group_prompts": [t.format(c) for c in names for t in TEMPLATES],
        "subgroup_prompts": [t.format(c) for c in sub_names for t in TEMPLATES],
    }
    t0 = time.perf_counter()
    for key, texts in text_jobs.items():
        emb = text_encoder.encode(texts)
        if key.endswith("_prompts"):  # n_classes × n_templates × d
            emb = emb.reshape(-1, len(TEMPLATES), emb.shape[-1])
        with atomic_write(tmp / FILES[key]) as fh:
            np.save(fh, emb.astype(np.float16))
    t_texts = time.perf_counter() - t0

    meta = {
        "format_version": FORMAT_VERSION,
        "caption_format": "<label>. <tag>, <tag>, ...",
        "group_names": names,
        "subgroup_names": sub_names,
        "group_keys": group_list,
        "subgroup_keys": sub_list,
        "templates": list(TEMPLATES),
        "split_seed": SPLIT_SEED,
        "splits": {k: [int(i) for i in v] for k, v in splits.items()},
        "items": items,
        "variants": variants,
        "variant_rows_unpaired": variant_rows_unpaired,
        "ood_texts": ood,
        "ood_source": "WordNet 3.0 noun glosses (Debian wordnet-base data.noun); out of domain",
        "dropped_not_drawable": dropped,
    }
    write_json_atomic(tmp / FILES["metadata"], meta)
    for name in FILES.values():
        os.replace(tmp / name, out / name)
    shutil.rmtree(tmp, ignore_errors=True)
    samples = write_samples(out, items, img_dir)

    def enc_info(enc: Any) -> dict[str, Any]:
        info = enc.info()
        info["weights"] = {Path(w).name: sha256_file(w) for w in enc.weight_files()}
        return info

    manifest = {
        "format_version": FORMAT_VERSION,
        "description": "Noto Color Emoji images and emojibase captions, embedded (float16)",
        "build_command": BUILD_COMMAND + (f" --limit {limit}" if limit else ""),
        "encoders": {"image": enc_info(image_encoder), "text": enc_info(text_encoder)},
        "sources": {
            "emojibase-data (npm)": eb_version,
            "fonts-noto-color-emoji (Debian)": _dpkg_version("fonts-noto-color-emoji")
            or f"unknown ({font_path.name} sha256 {sha256_file(font_path)[:16]})",
            "wordnet-base (Debian)": _dpkg_version("wordnet-base") or "unknown",
            "pillow": package_version("pillow"),
            "raqm layout": raqm,
        },
        "counts": {
            "base_emoji": len(items),
            "base_emoji_not_drawable": len(dropped),
            "skin_tone_variants": len(variants),
            "image_rows": len(items) + len(variants),
            "ood_texts": len(ood),
            "groups": len(names),
            "subgroups": len(sub_names),
            "templates": len(TEMPLATES),
        },
        "splits": {k: len(v) for k, v in splits.items()}
        | {"unpaired_images_with_variants": len(splits["unpaired_images"]) + len(variants)},
        "split_seed": SPLIT_SEED,
        "rows": {
            "images.npy": "base emoji (metadata items order), then skin-tone variants",
            "texts.npy": "captions of the base emoji, row-aligned with the first images",
        },
        "build_seconds": {
            "total": round(time.perf_counter() - t_start, 1),
            "embed_images": round(t_images, 1),
            "embed_texts": round(t_texts, 1),
        },
        "files": {
            name: {
                "sha256": sha256_file(out / name),
                "bytes": (out / name).stat().st_size,
            }
            | (
                {"shape": list(np.load(out / name, mmap_mode="r").shape), "dtype": "float16"}
                if name.endswith(".npy")
                else {}
            )
            for name in FILES.values()
        },
        "samples": samples,
    }
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


def write_samples(out: Path, items: list[dict[str, Any]], img_dir: Path) -> list[dict[str, Any]]:
    """Copy the rendered PNGs of :data:`SAMPLE_HEXCODES` to ``out/samples`` with their rows.

    Writes ``samples/<hexcode>.png`` and ``samples/captions.txt`` (one caption per line, in the
    order of the PNG names); returns ``[{hexcode, row, file, sha256}]`` (row of images.npy and
    texts.npy) for the manifest.
    """
    rows = {it["hexcode"]: i for i, it in enumerate(items)}
    dest = out / "samples"
    dest.mkdir(parents=True, exist_ok=True)
    chosen = sorted(h for h in SAMPLE_HEXCODES if h in rows)
    records = []
    for h in chosen:
        data = (img_dir / f"{h}.png").read_bytes()
        with atomic_write(dest / f"{h}.png") as fh:
            fh.write(data)
        records.append(
            {
                "hexcode": h,
                "row": rows[h],
                "file": f"samples/{h}.png",
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    with atomic_write(dest / "captions.txt", "w") as fh:
        fh.writelines(items[rows[h]]["caption"] + "\n" for h in chosen)
    return records


def _finished(npy: Path, files: list[str]) -> bool:
    """Whether ``npy`` was already embedded from exactly ``files`` (its ``.paths.txt``)."""
    paths = npy.with_name(npy.stem + ".paths.txt")
    return npy.is_file() and paths.is_file() and paths.read_text().splitlines() == files
