"""Property-based tests (hypothesis) of the readers, writers and checks in sotalign.io.

Arrays are written by each format's own library and must read back bit for bit, with their
dtype; the checks must agree with a direct computation on the whole array.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

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
from hypothesis.extra import numpy as hnp

from sotalign import io
from sotalign.errors import InputError, UnderdeterminedWarning

# SOTALIGN_FUZZ_EXAMPLES=500 runs a deeper search than the default quick one.
PROPS = settings(
    max_examples=int(os.environ.get("SOTALIGN_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

FLOAT_DTYPES = st.sampled_from([np.float16, np.float32, np.float64]).map(np.dtype)
SHAPES = st.tuples(st.integers(1, 16), st.integers(1, 8))


@st.composite
def float_arrays(draw, *, finite: bool = False) -> np.ndarray:
    dtype = draw(FLOAT_DTYPES)
    shape = draw(SHAPES)
    elements = st.floats(width=dtype.itemsize * 8, allow_nan=not finite, allow_infinity=not finite)
    return draw(hnp.arrays(dtype, shape, elements=elements))


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-identical (NaN payloads, signed zeros and all), same dtype and shape."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def _write(fmt: str, path: Path, a: np.ndarray) -> Path:
    if fmt == "npy":
        np.save(path, a)
    elif fmt == "npz":
        np.savez_compressed(path, embeddings=a)
    elif fmt == "safetensors":
        safetensors.numpy.save_file({"embeddings": a}, str(path))
    elif fmt == "h5":
        with h5py.File(path, "w") as f:
            f["embeddings"] = a
    elif fmt == "h5-chunked":
        with h5py.File(path, "w") as f:
            f.create_dataset("embeddings", data=a, chunks=True, compression="gzip", shuffle=True)
    elif fmt == "parquet":
        col = pa.FixedSizeListArray.from_arrays(pa.array(a.ravel()), a.shape[1])
        pq.write_table(pa.table({"embeddings": col}), path)
    return path


FORMATS = {
    "npy": ".npy",
    "npz": ".npz",
    "safetensors": ".safetensors",
    "h5": ".h5",
    "h5-chunked": ".hdf5",
    "parquet": ".parquet",
}


@pytest.mark.parametrize("fmt", list(FORMATS))
@PROPS
@given(a=float_arrays(), mmap=st.booleans())
def test_every_reader_returns_what_was_written(folder, fmt, a, mmap):
    path = _write(fmt, folder / f"p{FORMATS[fmt]}", a)
    assert same_bits(io.load_embeddings(path, mmap=mmap), a)


@PROPS
@given(a=float_arrays(finite=True), to16=st.booleans())
def test_save_embeddings_round_trip(folder, a, to16):
    path = folder / "saved.npy"
    dtype = np.float16 if to16 else None
    fits = not to16 or np.all(np.abs(a.astype(np.float64)) <= np.finfo(np.float16).max)
    if fits:
        io.save_embeddings(path, a, dtype=dtype)
        with np.errstate(over="ignore"):
            expected = a.astype(dtype) if to16 else a
        assert same_bits(np.load(path), expected)
        assert same_bits(np.asarray(io.load_embeddings(path)), expected)
    else:
        with pytest.raises(InputError, match="float16 range"):
            io.save_embeddings(path, a, dtype=dtype)


@PROPS
@given(
    values=st.lists(st.integers(0, 2**63 - 1) | st.integers(0, 50), min_size=1, max_size=40),
    fmt=st.sampled_from([".npy", ".txt", ".json", ".csv"]),
)
def test_index_round_trip(folder, values, fmt):
    path = folder / f"index{fmt}"
    if fmt == ".npy":
        np.save(path, np.array(values, dtype=np.int64))
    elif fmt == ".json":
        path.write_text(json.dumps(values))
    elif fmt == ".csv":
        path.write_text("image_row\n" + "\n".join(map(str, values)) + "\n")
    else:
        path.write_text("\n".join(map(str, values)))
    got = io.load_index(path)
    assert got.dtype == np.int64 and got.tolist() == values


@PROPS
@given(
    data=st.data(),
    shape=st.tuples(st.integers(1, 60), st.integers(1, 5)),
    dtype=FLOAT_DTYPES,
    chunk_bytes=st.integers(1, 400),
)
def test_check_finite_reports_the_first_bad_row(data, shape, dtype, chunk_bytes):
    finite = st.floats(width=dtype.itemsize * 8, allow_nan=False, allow_infinity=False)
    a = data.draw(hnp.arrays(dtype, shape, elements=finite))
    if data.draw(st.booleans()):
        a = a.astype(dtype.newbyteorder(">"))  # non-native byte order takes the generic path
    cells = data.draw(
        st.lists(
            st.tuples(
                st.integers(0, shape[0] - 1),
                st.integers(0, shape[1] - 1),
                st.sampled_from([np.nan, np.inf, -np.inf]),
            ),
            max_size=4,
        )
    )
    for i, j, v in cells:
        a[i, j] = v
    bad_rows = np.flatnonzero(~np.isfinite(a).all(axis=1))
    if bad_rows.size == 0:
        io.check_finite(a, "a", chunk_bytes=chunk_bytes)
    else:
        first = int(bad_rows[0])
        kind = "NaN" if np.isnan(a[first]).any() else "Inf"
        with pytest.raises(InputError, match=rf"^a: row {first} holds {kind} "):
            io.check_finite(a, "a", chunk_bytes=chunk_bytes)


@PROPS
@given(
    na=st.integers(0, 12),
    nb=st.integers(0, 12),
    da=st.integers(1, 10),
    db=st.integers(1, 10),
    dx=st.none() | st.integers(1, 10),
    dy=st.none() | st.integers(1, 10),
)
def test_validate_training_inputs_decides_like_the_rules(na, nb, da, db, dx, dy):
    A, B = np.ones((na, da)), np.ones((nb, db))
    X = None if dx is None else np.ones((3, dx))
    Y = None if dy is None else np.ones((3, dy))
    should_fail = (
        na == 0
        or nb == 0
        or na != nb
        or na < 2
        or (dx is None) != (dy is None)
        or (dx is not None and dx != da)
        or (dy is not None and dy != db)
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if should_fail:
            with pytest.raises(InputError):
                io.validate_training_inputs(A, B, X, Y)
            return
        io.validate_training_inputs(A, B, X, Y)
    ridge = [w for w in caught if issubclass(w.category, UnderdeterminedWarning)]
    assert bool(ridge) == (max(da, db) >= na)


TORCH_DTYPES = [
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.int64,
    torch.uint8,
    torch.bool,
]


@PROPS
@given(
    specs=st.dictionaries(
        st.text(min_size=1, max_size=6).filter(lambda s: s != "__metadata__"),
        st.tuples(st.sampled_from(TORCH_DTYPES), st.lists(st.integers(0, 4), max_size=3)),
        min_size=1,
        max_size=4,
    ),
    meta=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    seed=st.integers(0, 1000),
)
def test_safetensors_round_trip(folder, specs, meta, seed):
    g = torch.Generator().manual_seed(seed)
    tensors = {
        name: (torch.randn(shape, generator=g) * 100).to(dtype)
        for name, (dtype, shape) in specs.items()
    }
    path = folder / "m.safetensors"
    safetensors.torch.save_file(tensors, str(path), metadata=meta or None)
    got, got_meta = io.load_safetensors(path)
    assert got_meta == meta
    assert set(got) == set(tensors)
    for name, t in tensors.items():
        assert got[name].dtype == t.dtype and got[name].shape == t.shape
        assert torch.equal(got[name], t)
