"""Fuzzing every reader with random bytes, truncations and byte flips of valid files.

A reader may return a well-formed result (some random files are valid) or raise InputError with
a one-line message naming the file; any other exception fails, and so does a hang: each call runs
under a hard timer (SIGALRM) on top of hypothesis' per-example deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import safetensors.numpy
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sotalign import io
from sotalign.errors import InputError

HARD_LIMIT_S = 10.0
# SOTALIGN_FUZZ_EXAMPLES=2000 runs a deeper search than the default quick one.
EXAMPLES = int(os.environ.get("SOTALIGN_FUZZ_EXAMPLES", "30"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=3),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class Hang(BaseException):
    """Raised by the timer; a BaseException so that no reader can swallow it."""


@contextlib.contextmanager
def hard_limit(seconds: float = HARD_LIMIT_S) -> Iterator[None]:
    def on_alarm(signum: int, frame: Any) -> None:
        raise Hang(f"reader still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# --- readers and what a successful result must look like ----------------------------------------


def _embeddings(mmap: bool) -> Callable[[Path], Any]:
    def read(path: Path) -> Any:
        out = io.load_embeddings(path, mmap=mmap)
        assert isinstance(out, np.ndarray) and out.ndim == 2 and out.size > 0
        assert out.dtype in (np.float16, np.float32, np.float64)
        np.asarray(out[-1]).tobytes()  # the last row is really there
        return out

    return read


def _index(path: Path) -> Any:
    out = io.load_index(path)
    assert out.dtype == np.int64 and out.ndim == 1 and out.size > 0 and (out >= 0).all()
    return out


def _safetensors(path: Path) -> Any:
    tensors, meta = io.load_safetensors(path)
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
    return tensors


READERS: dict[str, tuple[str, Callable[[Path], Any]]] = {
    "npy-mmap": (".npy", _embeddings(True)),
    "npy-read": (".npy", _embeddings(False)),
    "npz": (".npz", _embeddings(False)),
    "safetensors-mmap": (".safetensors", _embeddings(True)),
    "safetensors-read": (".safetensors", _embeddings(False)),
    "h5-mmap": (".h5", _embeddings(True)),
    "hdf5-read": (".hdf5", _embeddings(False)),
    "parquet": (".parquet", _embeddings(False)),
    "index-npy": (".npy", _index),
    "index-txt": (".txt", _index),
    "index-json": (".json", _index),
    "index-csv": (".csv", _index),
    "model-safetensors": (".safetensors", _safetensors),
}

# Valid files the truncation and byte-flip fuzzers start from.
A = np.random.default_rng(0).standard_normal((12, 5)).astype(np.float16)


def _valid_bytes(reader: str, folder: Path) -> bytes:
    suffix = READERS[reader][0]
    path = folder / f"valid-{reader}{suffix}"
    if reader.startswith("npy"):
        np.save(path, A)
    elif reader == "npz":
        np.savez(path, embeddings=A, ids=np.arange(12))
    elif reader.startswith("safetensors"):
        safetensors.numpy.save_file({"embeddings": A, "ids": np.arange(12)}, str(path))
    elif reader == "h5-mmap":
        with h5py.File(path, "w") as f:
            f["embeddings"] = A
            f["ids"] = np.arange(12)
    elif reader == "hdf5-read":
        with h5py.File(path, "w") as f:
            f.create_dataset("embeddings", data=A, chunks=(4, 5), compression="gzip")
    elif reader == "parquet":
        col = pa.FixedSizeListArray.from_arrays(pa.array(A.ravel()), 5)
        pq.write_table(pa.table({"embeddings": col, "id": list(range(12))}), path)
    elif reader == "index-npy":
        np.save(path, np.arange(12) % 5)
    elif reader == "index-txt":
        path.write_text("\n".join(str(i % 5) for i in range(12)) + "\n")
    elif reader == "index-json":
        path.write_text(str([i % 5 for i in range(12)]))
    elif reader == "index-csv":
        path.write_text("image\n" + "\n".join(str(i % 5) for i in range(12)) + "\n")
    elif reader == "model-safetensors":
        safetensors.torch.save_file(
            {"w": torch.randn(3, 4)}, str(path), metadata={"format_version": "1"}
        )
    return path.read_bytes()


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@pytest.fixture(scope="module")
def valid(folder: Path) -> dict[str, bytes]:
    out = {name: _valid_bytes(name, folder) for name in READERS}
    for name, data in out.items():  # the starting points really are valid
        path = folder / f"check-{name}{READERS[name][0]}"
        path.write_bytes(data)
        READERS[name][1](path)
    return out


def outcome(reader: str, data: bytes, folder: Path) -> str:
    """Feed ``data`` to ``reader``; return "ok" or "error"; fail on anything else."""
    suffix, read = READERS[reader]
    path = folder / f"fuzz-{reader}{suffix}"
    path.write_bytes(data)
    with hard_limit():
        try:
            read(path)
        except InputError as exc:
            msg = str(exc)
            assert "\n" not in msg, msg
            assert str(path) in msg, msg
            return "error"
    return "ok"


# Headers that get random bytes past the first check of each format.
PREFIXES = [
    b"",
    b"\x93NUMPY\x01\x00",
    b"\x93NUMPY\x01\x00v\x00{'descr': '<f2', 'fortran_order': False, 'shape': (",
    b"PK\x03\x04",
    b"\x89HDF\r\n\x1a\n",
    b"PAR1",
    (40).to_bytes(8, "little") + b'{"embeddings":{"dtype":"F16","shape":[',
    b"[",
    b"0\n1\n",
]


@pytest.mark.parametrize("reader", list(READERS))
@FUZZ
@given(prefix=st.sampled_from(PREFIXES), body=st.binary(max_size=2048))
def test_random_bytes(folder, reader, prefix, body):
    outcome(reader, prefix + body, folder)


BINARY = [r for r in READERS if not r.startswith("index-") or r == "index-npy"]


@pytest.mark.parametrize("reader", list(READERS))
@FUZZ
@given(data=st.data())
def test_truncated_valid_files(folder, valid, reader, data):
    full = valid[reader]
    keep = data.draw(st.integers(0, len(full) - 1), label="keep")
    result = outcome(reader, full[:keep], folder)
    if reader in BINARY:
        # A binary file cut short is never silently accepted (text indices may be cut at a line).
        assert result == "error", f"{reader}: a file cut to {keep}/{len(full)} bytes was read"


@pytest.mark.parametrize("reader", list(READERS))
@settings(FUZZ, max_examples=max(1, EXAMPLES * 2 // 3))
@given(data=st.data())
def test_byte_flips_of_valid_files(folder, valid, reader, data):
    buf = bytearray(valid[reader])
    positions = data.draw(st.lists(st.integers(0, len(buf) - 1), min_size=1, max_size=4))
    values = data.draw(
        st.lists(st.integers(0, 255), min_size=len(positions), max_size=len(positions))
    )
    for pos, val in zip(positions, values, strict=True):
        buf[pos] = val
    outcome(reader, bytes(buf), folder)


def test_the_timer_catches_a_hang():
    """The guard itself works: a reader stuck in a loop is stopped and reported."""
    with pytest.raises(Hang), hard_limit(0.2):
        while True:
            pass


# --- structured fuzzing: well-framed headers with random content --------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
ST_DTYPES = ["F16", "F32", "F64", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "X"]
ST_ENTRY = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(ST_DTYPES) | JSON,
        "shape": st.lists(st.integers(-2, 2**40) | st.integers(0, 6), max_size=3) | JSON,
        "data_offsets": st.lists(
            st.integers(-5, 2**40) | st.integers(0, 200), min_size=2, max_size=2
        )
        | JSON,
    }
)
ST_HEADER = (
    st.dictionaries(
        st.sampled_from(["embeddings", "w", "ids"]) | st.text(max_size=4),
        ST_ENTRY | JSON,
        max_size=3,
    ).flatmap(
        lambda d: (
            st.just(d)
            | st.dictionaries(
                st.text(max_size=4) | st.just("k"), st.text(max_size=4) | JSON, max_size=2
            ).map(lambda m: {**d, "__metadata__": m})
        )
    )
    | JSON
)


@pytest.mark.parametrize("reader", ["safetensors-mmap", "safetensors-read", "model-safetensors"])
@FUZZ
@given(header=ST_HEADER, tail=st.binary(max_size=256))
def test_safetensors_with_random_headers(folder, reader, header, tail):
    import json

    raw = json.dumps(header).encode()
    outcome(reader, len(raw).to_bytes(8, "little") + raw + tail, folder)


NPY_DESCR = [
    "<f2",
    "<f4",
    ">f8",
    "<i8",
    "|b1",
    "<U3",
    "|O",
    "<f16",
    "|V8",
    "<c8",
    "zz",
    "[('a', '<f4')]",
    "('<f4', (2,))",
]
NPY_DIM = st.integers(-3, 2**62) | st.integers(0, 8)


@pytest.mark.parametrize("reader", ["npy-mmap", "npy-read", "index-npy"])
@FUZZ
@given(
    descr=st.sampled_from(NPY_DESCR),
    fortran=st.booleans(),
    shape=st.lists(NPY_DIM, max_size=3).map(tuple),
    tail=st.binary(max_size=256),
    major=st.sampled_from([1, 2, 3]),
)
def test_npy_with_random_headers(folder, reader, descr, fortran, shape, tail, major):
    d = descr if descr.startswith(("[", "(")) else repr(descr)
    text = f"{{'descr': {d}, 'fortran_order': {fortran}, 'shape': {shape!r}, }}".encode()
    size = 4 if major > 1 else 2
    pre = 6 + 2 + size
    pad = (-(pre + len(text) + 1)) % 64
    header = text + b" " * pad + b"\n"
    data = b"\x93NUMPY" + bytes([major, 0]) + len(header).to_bytes(size, "little") + header
    outcome(reader, data + tail, folder)
