"""Building the emoji dataset from scratch (``scripts/build_emoji.py``).

Render, caption, split and embed the emoji, then write the files, samples and manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

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

from .load import (
    BUILD_COMMAND,
    FILES,
    FORMAT_VERSION,
    N_OOD_TEXTS,
    SPLIT_SEED,
    TEMPLATES,
    caption,
    class_name,
    split_items,
)
from .sources import (
    FONT_SIZE,
    _apt_install,
    _dpkg_version,
    find_emojibase,
    find_font,
    render_emoji,
)

OOD_SEED = 1
WORDNET_DIR = Path("/usr/share/wordnet")
IMAGE_ENCODER = "efficientnet-lite0"
TEXT_ENCODER = "st:all-MiniLM-L6-v2"
# a few rendered images are committed (data/emoji/samples/) so that the image rows can be
# re-derived with the real encoder without the font, and to try `sotalign embed images` on
SAMPLE_HEXCODES = ("1F600", "1F436", "1F34E", "1F697", "26BD", "1F4A1", "1F1EF-1F1F5", "2764")


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
