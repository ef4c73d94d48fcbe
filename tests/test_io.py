"""Readers, writers and input checks of sotalign.io.

Files are written with each format's own library (numpy, safetensors, h5py, pyarrow), so the
readers are checked against independent writers. Every error must be an InputError whose message
is one line and names the file.
"""

from __future__ import annotations

import json
import os
import sys
import tracemalloc
import warnings
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import safetensors.numpy
import safetensors.torch
import torch

from sotalign import io
from sotalign.errors import InputError, MissingDependencyError, UnderdeterminedWarning
from sotalign.io import atomic, folders

FLOATS = [np.float16, np.float32, np.float64]


def expect_input_error(fn, *fragments: str) -> str:
    """Call ``fn``; require an InputError with a one-line message containing ``fragments``."""
    with pytest.raises(InputError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg, msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


def rand(n: int = 7, d: int = 5, dtype=np.float32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)


# --- writers of each format (independent of sotalign) ------------------------------------------


def write_npy(path: Path, a: np.ndarray) -> Path:
    np.save(path, a)
    return path


def write_npz(path: Path, a: np.ndarray, name: str = "embeddings", **extra) -> Path:
    np.savez(path, **{name: a}, **extra)
    return path


def write_safetensors(path: Path, a: np.ndarray, name: str = "embeddings", **extra) -> Path:
    safetensors.numpy.save_file({name: a, **extra}, str(path))
    return path


def write_h5(path: Path, a: np.ndarray, name: str = "embeddings", **kw) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset(name, data=a, **kw)
    return path


def write_parquet_fixed(path: Path, a: np.ndarray, name: str = "embeddings") -> Path:
    col = pa.FixedSizeListArray.from_arrays(pa.array(a.ravel()), a.shape[1])
    pq.write_table(pa.table({"id": pa.array(range(len(a))), name: col}), path)
    return path


def write_parquet_list(path: Path, a: np.ndarray) -> Path:
    offsets = pa.array(np.arange(0, a.size + 1, a.shape[1], dtype=np.int32))
    col = pa.ListArray.from_arrays(offsets, pa.array(a.ravel()))
    pq.write_table(pa.table({"vec": col, "caption": pa.array(["x"] * len(a))}), path)
    return path


def write_parquet_columns(path: Path, a: np.ndarray) -> Path:
    pq.write_table(pa.table({f"d{j}": a[:, j] for j in range(a.shape[1])}), path)
    return path


WRITERS = {
    "npy": (".npy", write_npy),
    "npz": (".npz", write_npz),
    "safetensors": (".safetensors", write_safetensors),
    "h5": (".h5", write_h5),
    "h5-gzip": (".hdf5", lambda p, a: write_h5(p, a, chunks=True, compression="gzip")),
    "parquet-fixed": (".parquet", write_parquet_fixed),
    "parquet-list": (".parquet", write_parquet_list),
    "parquet-columns": (".pq", write_parquet_columns),
}


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("fmt", list(WRITERS))
@pytest.mark.parametrize("mmap", [True, False], ids=["mmap", "read"])
def test_round_trip_every_format_keeps_values_and_dtype(tmp_path, fmt, dtype, mmap):
    suffix, write = WRITERS[fmt]
    a = rand(9, 6, dtype)
    a[0, 0] = np.finfo(dtype).max  # extremes survive bit-exactly
    a[1, 1] = np.finfo(dtype).tiny
    path = write(tmp_path / f"emb{suffix}", a)
    got = io.load_embeddings(path, mmap=mmap)
    assert got.dtype == np.dtype(dtype)  # float16 is returned as stored, never upcast
    assert got.shape == a.shape
    np.testing.assert_array_equal(np.asarray(got), a)


def test_bfloat16_safetensors_read_as_float32_exactly(tmp_path):
    t = torch.randn(6, 4).to(torch.bfloat16)
    safetensors.torch.save_file({"embeddings": t}, str(tmp_path / "e.safetensors"))
    got = io.load_embeddings(tmp_path / "e.safetensors")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, t.float().numpy())


@pytest.mark.parametrize("fmt", ["npy", "safetensors", "h5"])
def test_memmapped_formats_return_a_memmap_and_mmap_false_a_copy(tmp_path, fmt):
    suffix, write = WRITERS[fmt]
    a = rand(5, 3, np.float16)
    path = write(tmp_path / f"e{suffix}", a)
    mapped = io.load_embeddings(path)
    assert isinstance(mapped, np.memmap)
    assert Path(mapped.filename).resolve() == path.resolve()
    assert not mapped.flags.writeable  # read-only: a reader can never damage the cache
    read = io.load_embeddings(path, mmap=False)
    assert not isinstance(read, np.memmap)
    np.testing.assert_array_equal(read, a)


@pytest.mark.parametrize("fmt", ["npy", "safetensors", "h5"])
def test_large_file_is_mapped_not_loaded(tmp_path, fmt):
    """A 64 MiB file is opened with (far) less than 1 MiB of traced allocations."""
    n, d = 2**20, 16  # float32: 64 MiB
    suffix = WRITERS[fmt][0]
    path = tmp_path / f"big{suffix}"
    if fmt == "npy":
        m = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
        m[-1] = 1.5
        m.flush()
        del m
    elif fmt == "h5":
        with h5py.File(path, "w") as f:
            ds = f.create_dataset("embeddings", shape=(n, d), dtype=np.float32)
            ds[-1] = 1.5
    else:
        a = np.zeros((n, d), np.float32)
        a[-1] = 1.5
        safetensors.numpy.save_file({"embeddings": a}, str(path))
        del a
    tracemalloc.start()
    try:
        got = io.load_embeddings(path)
        last = float(got[-1, 0])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.shape == (n, d) and last == 1.5
    assert peak < 2**20, f"load_embeddings allocated {peak} bytes for a 64 MiB file"


def test_key_selects_among_several_arrays(tmp_path):
    a, b = rand(4, 3), rand(4, 3, seed=1)
    npz = tmp_path / "two.npz"
    np.savez(npz, img=a, txt=b)
    np.testing.assert_array_equal(io.load_embeddings(npz, key="txt"), b)
    st = tmp_path / "two.safetensors"
    safetensors.numpy.save_file({"img": a, "txt": b}, str(st))
    np.testing.assert_array_equal(io.load_embeddings(st, key="img"), a)
    h5 = tmp_path / "two.h5"
    with h5py.File(h5, "w") as f:
        f["group/img"] = a
        f["group/txt"] = b
    np.testing.assert_array_equal(io.load_embeddings(h5, key="/group/txt"), b)
    # With no key, several candidates are ambiguous; the error lists them and asks for a key.
    for path in (npz, st, h5):
        expect_input_error(lambda p=path: io.load_embeddings(p), str(path), "key")
    expect_input_error(lambda: io.load_embeddings(npz, key="tx"), "did you mean 'txt'")


def test_only_2d_array_is_chosen_without_key(tmp_path):
    a = rand(4, 3)
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["ids"] = np.arange(4)
        f["feats"] = a
    np.testing.assert_array_equal(io.load_embeddings(path), a)


def test_save_embeddings_round_trip_and_float16_option(tmp_path):
    a = rand(11, 4, np.float64)
    p = io.save_embeddings(tmp_path / "a.npy", a)
    np.testing.assert_array_equal(np.load(p), a)  # default keeps dtype: nothing lost
    p16 = io.save_embeddings(tmp_path / "a16.npy", a, dtype="float16")
    np.testing.assert_array_equal(np.load(p16), a.astype(np.float16))
    t = torch.randn(3, 5)
    np.testing.assert_array_equal(np.load(io.save_embeddings(tmp_path / "t.npy", t)), t.numpy())


def test_save_embeddings_from_memmap_in_blocks(tmp_path, monkeypatch):
    a = rand(1000, 8)
    src = write_npy(tmp_path / "src.npy", a)
    monkeypatch.setattr(io, "CHUNK_BYTES", 8 * 4 * 64)  # 64 rows per block: 16 blocks
    out = io.save_embeddings(tmp_path / "dst.npy", io.load_embeddings(src), dtype=np.float16)
    np.testing.assert_array_equal(np.load(out), a.astype(np.float16))


def test_save_embeddings_refuses_bad_arrays_and_keeps_old_file(tmp_path):
    target = io.save_embeddings(tmp_path / "e.npy", rand(3, 2))
    before = target.read_bytes()
    overflow = np.full((4, 2), 1e6)
    expect_input_error(
        lambda: io.save_embeddings(target, overflow, dtype="float16"),
        "e.npy",
        "row 0",
        "float16",
        "float32",
    )
    bad = rand(5, 2)
    bad[3, 1] = np.inf
    expect_input_error(lambda: io.save_embeddings(target, bad), "row 3", "Inf")
    expect_input_error(lambda: io.save_embeddings(target, np.ones((3, 2), np.int64)), "integer")
    expect_input_error(lambda: io.save_embeddings(tmp_path / "e.bin", rand()), ".npy")
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["e.npy"]  # no temporary files left behind


# --- bad files ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", io.EMBEDDING_SUFFIXES)
def test_empty_and_missing_files(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    expect_input_error(lambda: io.load_embeddings(path), str(path), "empty")
    missing = tmp_path / f"missing{suffix}"
    expect_input_error(lambda: io.load_embeddings(missing), str(missing), "no such file")
    folder = tmp_path / f"dir{suffix}"
    folder.mkdir()
    expect_input_error(lambda: io.load_embeddings(folder), "folder")


def test_unknown_suffix_suggests_the_closest(tmp_path):
    path = tmp_path / "e.safetensor"
    path.write_bytes(b"x")
    expect_input_error(lambda: io.load_embeddings(path), "did you mean '.safetensors'")


@pytest.mark.parametrize("fmt", list(WRITERS))
@pytest.mark.parametrize("cut", [0.5, 0.9, -1])
def test_truncated_files(tmp_path, fmt, cut):
    suffix, write = WRITERS[fmt]
    path = write(tmp_path / f"e{suffix}", rand(50, 8))
    data = path.read_bytes()
    keep = len(data) - 1 if cut == -1 else int(len(data) * cut)
    path.write_bytes(data[:keep])
    expect_input_error(lambda: io.load_embeddings(path), str(path))


@pytest.mark.parametrize("suffix", io.EMBEDDING_SUFFIXES)
def test_garbage_bytes(tmp_path, suffix):
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(b"this is not an embeddings file\n" * 20)
    expect_input_error(lambda: io.load_embeddings(path), str(path))


def test_npy_header_and_object_arrays(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    expect_input_error(lambda: io.load_embeddings(path), "obj.npy", "unpickles")
    huge = tmp_path / "huge.npy"  # a header that promises 8 EiB; must not try to allocate it
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1152921504606846976, 2), }"
    pad = 64 - (10 + len(header) + 1) % 64
    huge.write_bytes(
        b"\x93NUMPY\x01\x00"
        + (len(header) + pad + 1).to_bytes(2, "little")
        + header
        + b" " * pad
        + b"\n"
        + b"\0" * 64
    )
    for mmap in (True, False):
        expect_input_error(lambda m=mmap: io.load_embeddings(huge, mmap=m), "huge.npy", "truncated")


@pytest.mark.parametrize("fmt", ["npy", "npz", "safetensors", "h5", "parquet-fixed"])
@pytest.mark.parametrize("kind", ["int", "bool"])
def test_integer_arrays_are_refused(tmp_path, fmt, kind):
    suffix, write = WRITERS[fmt]
    a = np.arange(12).reshape(4, 3) if kind == "int" else np.ones((4, 3), bool)
    path = write(tmp_path / f"ints{suffix}", a)
    expect_input_error(lambda: io.load_embeddings(path), str(path), "floating point")


def test_string_arrays_are_refused(tmp_path):
    np.save(tmp_path / "s.npy", np.array([["a", "b"], ["c", "d"]]))
    expect_input_error(lambda: io.load_embeddings(tmp_path / "s.npy"), "strings")
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["embeddings"] = np.array([[b"a", b"b"]])
    expect_input_error(lambda: io.load_embeddings(tmp_path / "s.h5"), "strings")
    pq.write_table(pa.table({"caption": ["a", "b"]}), tmp_path / "s.parquet")
    expect_input_error(lambda: io.load_embeddings(tmp_path / "s.parquet"), "strings")
    col = pa.array([["a", "b"], ["c", "d"]])
    pq.write_table(pa.table({"vec": col}), tmp_path / "sl.parquet")
    expect_input_error(lambda: io.load_embeddings(tmp_path / "sl.parquet"), "strings")


@pytest.mark.parametrize("fmt", ["npy", "npz", "safetensors", "h5", "parquet-fixed"])
def test_empty_arrays_are_refused(tmp_path, fmt):
    suffix, write = WRITERS[fmt]
    path = write(tmp_path / f"none{suffix}", np.zeros((0, 4), np.float32))
    expect_input_error(lambda: io.load_embeddings(path), str(path), "no data")


@pytest.mark.parametrize("fmt", ["npy", "npz", "safetensors", "h5"])
def test_non_2d_arrays_are_refused(tmp_path, fmt):
    suffix, write = WRITERS[fmt]
    one = write(tmp_path / f"one{suffix}", np.ones(5, np.float32))
    expect_input_error(lambda: io.load_embeddings(one), "1-D", "reshape")
    three = write(tmp_path / f"three{suffix}", np.ones((2, 3, 4), np.float32))
    expect_input_error(lambda: io.load_embeddings(three, key="embeddings"), "(2, 3, 4)")


def test_hdf5_without_the_dataset(tmp_path):
    path = tmp_path / "nodata.h5"
    with h5py.File(path, "w") as f:
        f["ids"] = np.arange(5)
        f.create_group("empty")
    expect_input_error(lambda: io.load_embeddings(path), "nodata.h5", "'embeddings'", "'ids'")
    expect_input_error(lambda: io.load_embeddings(path, key="embedings"), "no dataset named")
    with h5py.File(tmp_path / "bare.h5", "w"):
        pass
    expect_input_error(lambda: io.load_embeddings(tmp_path / "bare.h5"), "no dataset")


def test_parquet_shape_problems(tmp_path):
    ragged = tmp_path / "ragged.parquet"
    pq.write_table(pa.table({"e": pa.array([[1.0, 2.0], [1.0], [3.0, 4.0]])}), ragged)
    expect_input_error(lambda: io.load_embeddings(ragged), "row 1 has 1 values", "row 0 has 2")
    nulls = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"e": pa.array([[1.0, 2.0], None])}), nulls)
    expect_input_error(lambda: io.load_embeddings(nulls), "row 1 is null")
    inner = tmp_path / "inner.parquet"
    pq.write_table(pa.table({"e": pa.array([[1.0, None]])}), inner)
    expect_input_error(lambda: io.load_embeddings(inner), "null")
    mixed = tmp_path / "mixed.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0], "id": [1, 2]}), mixed)
    expect_input_error(lambda: io.load_embeddings(mixed), "'id'", "list column")
    scalar = tmp_path / "scalar.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0]}), scalar)
    expect_input_error(lambda: io.load_embeddings(scalar, key="a"), "scalars")


def test_safetensors_header_lies(tmp_path):
    good = write_safetensors(tmp_path / "g.safetensors", rand(4, 2)).read_bytes()
    n = int.from_bytes(good[:8], "little")
    header = json.loads(good[8 : 8 + n])

    def rewrite(name: str, **change) -> Path:
        h = {**header, "embeddings": {**header["embeddings"], **change}}
        raw = json.dumps(h).encode()
        path = tmp_path / name
        path.write_bytes(len(raw).to_bytes(8, "little") + raw + good[8 + n :])
        return path

    expect_input_error(
        lambda: io.load_embeddings(rewrite("a.safetensors", shape=[400, 2])),
        "a.safetensors",
        "needs",
    )
    past_end = rewrite("b.safetensors", data_offsets=[0, 10**9])
    expect_input_error(lambda: io.load_embeddings(past_end), "outside")
    expect_input_error(
        lambda: io.load_embeddings(rewrite("c.safetensors", dtype="F99")), "unsupported dtype"
    )
    long_header = tmp_path / "d.safetensors"
    long_header.write_bytes((2**40).to_bytes(8, "little") + good[8:])
    expect_input_error(lambda: io.load_embeddings(long_header), "header length")
    expect_input_error(lambda: io.load_safetensors(long_header), "header length")


def test_missing_optional_packages_name_the_extra(tmp_path, monkeypatch):
    h5 = write_h5(tmp_path / "e.h5", rand())
    par = write_parquet_fixed(tmp_path / "e.parquet", rand())
    monkeypatch.setitem(sys.modules, "h5py", None)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    for path, pkg in ((h5, "h5py"), (par, "pyarrow")):
        with pytest.raises(MissingDependencyError) as info:
            io.load_embeddings(path)
        assert pkg in str(info.value) and "sotalign[formats]" in str(info.value)


# --- array checks ----------------------------------------------------------------------------


def test_check_finite_reports_first_bad_row_and_kind():
    a = rand(100, 3)
    io.check_finite(a, "ok")
    a[42, 1] = np.nan
    a[77, 0] = np.inf
    expect_input_error(lambda: io.check_finite(a, "x.npy"), "x.npy", "row 42", "NaN")
    a[42, 1] = 0
    expect_input_error(lambda: io.check_finite(a.astype(np.float16), "h"), "row 77", "Inf")
    t = torch.from_numpy(a).to(torch.bfloat16)
    expect_input_error(lambda: io.check_finite(t, "t"), "row 77", "Inf")
    # Every block boundary: the first bad row is found wherever it falls.
    for bad in (0, 9, 10, 11, 99):
        b = np.zeros((100, 3), np.float32)
        b[bad, 2] = -np.inf
        expect_input_error(lambda b=b: io.check_finite(b, "b", chunk_bytes=10 * 12), f"row {bad} ")


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_check_finite_accepts_every_finite_extreme(dtype):
    fi = np.finfo(dtype)
    edge = np.array([fi.max, -fi.max, fi.tiny, fi.smallest_subnormal, -0.0, 1.0], dtype)
    a = np.tile(edge, (7, 1))
    io.check_finite(a, "edges")
    io.check_finite(a.astype(a.dtype.newbyteorder(">")), "edges")
    a[6, 0] = np.inf
    expect_input_error(lambda: io.check_finite(a, "edges"), "row 6 holds Inf")


def test_check_finite_on_ten_million_row_memmap_is_chunked(tmp_path):
    n, d = 10_000_000, 4  # 160 MB sparse file
    path = tmp_path / "big.npy"
    m = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    m[n - 1, 3] = np.nan
    m.flush()
    del m
    arr = io.load_embeddings(path)
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=f"row {n - 1} holds NaN"):
            io.check_finite(arr, "big.npy")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Scanning the whole array at once needs n*d bytes of booleans (40 MB).
    assert peak < 20e6, f"check_finite allocated {peak / 1e6:.0f} MB"


def test_validate_training_inputs_accepts_good_inputs_silently():
    A, B, X, Y = rand(40, 8), rand(40, 6, seed=1), rand(100, 8, seed=2), rand(90, 6, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        io.validate_training_inputs(A, B, X, Y)
        io.validate_training_inputs(torch.from_numpy(A), torch.from_numpy(B))
        io.validate_training_inputs(A.astype(np.float16), B)


def test_validate_training_inputs_errors():
    names = {
        "A": "paired_images.npy",
        "B": "paired_texts.npy",
        "X": "unpaired_images.npy",
        "Y": "unpaired_texts.npy",
    }
    A, B = rand(100, 8), rand(100, 6)

    def check(*args, **kw):
        return lambda: io.validate_training_inputs(*args, names=names, **kw)

    msg = expect_input_error(check(A, B[:99]))
    assert msg == (
        "paired_texts.npy: 99 rows but paired_images.npy has 100; the i-th rows of"
        " the two files must be a pair"
    )
    expect_input_error(
        check(A, B, rand(5, 7), rand(5, 6)),
        "unpaired_images.npy: 7 dimensions",
        "paired_images.npy has 8",
        "same image encoder",
    )
    expect_input_error(check(A, B, rand(5, 8), rand(5, 8)), "unpaired_texts.npy: 8 dimensions")
    expect_input_error(check(A[:1], B[:1]), "paired_images.npy", "only 1 pair", "at least 2")
    expect_input_error(check(A, np.arange(600).reshape(100, 6)), "paired_texts.npy", "integer")
    expect_input_error(check(A, B, np.array([["a"] * 8])), "unpaired_images.npy", "strings")
    expect_input_error(check(A[:0], B[:0]), "paired_images.npy", "no data")
    expect_input_error(check(A[:, 0], B), "paired_images.npy", "1-D")
    Y = rand(50, 6)
    Y[31] = np.nan
    expect_input_error(check(A, B, rand(9, 8), Y), "unpaired_texts.npy: row 31 holds NaN")
    io.validate_training_inputs(A, B, rand(9, 8), Y, check_values=False)  # scan can be skipped
    expect_input_error(check(A, B, None, Y), "unpaired_texts.npy: given without", "both")
    expect_input_error(check(A, B, rand(9, 8)), "unpaired_images.npy: given without")
    io.validate_training_inputs(A, B, rand(9, 8), require_both_pools=False)


def test_more_dimensions_than_pairs_works_with_a_ridge_warning():
    A, B = rand(10, 32), rand(10, 4)
    with pytest.warns(UnderdeterminedWarning, match=r"32 dimensions but only 10 pairs.*ridge"):
        io.validate_training_inputs(A, B, names={"A": "imgs.npy"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        io.validate_training_inputs(rand(33, 32), rand(33, 4))


# --- caption index ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("i.txt", "3\n0\n2\n2\n"),
        ("i.json", "[3, 0, 2, 2]"),
        ("i.csv", "image\n3\n0\n2\n2\n"),
        ("j.csv", "3\r\n0\r\n2\r\n2"),
    ],
)
def test_load_index_text_formats(tmp_path, name, content):
    (tmp_path / name).write_text(content)
    got = io.load_index(tmp_path / name)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [3, 0, 2, 2])


def test_load_index_npy(tmp_path):
    for arr in (np.array([1, 0, 4], np.int32), np.array([[1], [0], [4]]), np.array([1.0, 0, 4])):
        np.save(tmp_path / "i.npy", arr)
        np.testing.assert_array_equal(io.load_index(tmp_path / "i.npy"), [1, 0, 4])
    np.save(tmp_path / "f.npy", np.array([1.0, 0.5]))
    expect_input_error(lambda: io.load_index(tmp_path / "f.npy"), "entry 1", "whole number")
    np.save(tmp_path / "m.npy", np.zeros((2, 2), np.int64))
    expect_input_error(lambda: io.load_index(tmp_path / "m.npy"), "1-D")


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("gap.txt", "1\n\n2\n", "line 2 is empty"),
        ("word.txt", "1\ncat\n", "line 2: 'cat' is not an integer"),
        ("float.txt", "1\n2.5\n", "line 2"),
        ("neg.txt", "1\n-1\n", "entry 1 is -1"),
        ("obj.json", '{"a": 1}', "JSON list"),
        ("bool.json", "[0, true]", "entry 1"),
        ("bad.json", "[0, 1", "invalid JSON"),
        ("two.csv", "0,1\n2,3\n", "2 columns"),
        ("none.txt", "\n\n", "empty"),
    ],
)
def test_load_index_errors(tmp_path, name, content, fragment):
    (tmp_path / name).write_text(content)
    expect_input_error(lambda: io.load_index(tmp_path / name), name, fragment)


def test_check_index():
    idx = np.array([0, 0, 1, 2, 2])
    np.testing.assert_array_equal(io.check_index(idx, 3, 5), idx)
    expect_input_error(
        lambda: io.check_index(np.array([0, 3, 1, 9, 0]), 3, 5, name="idx.txt"),
        "idx.txt: entry 1",
        "is 3",
        "3 images",
        "0..2",
    )
    expect_input_error(lambda: io.check_index(idx, 3, 6), "5 entries", "6 texts")
    expect_input_error(lambda: io.check_index(idx - 1, 3, 5), "entry 0")
    expect_input_error(lambda: io.check_index(idx.astype(float), 3, 5), "integer")


# --- output folders, versions, atomic writes ---------------------------------------------------


def test_prepare_output_dir(tmp_path):
    new = io.prepare_output_dir(tmp_path / "a" / "b")
    assert new.is_dir() and list(new.iterdir()) == []
    assert io.prepare_output_dir(new) == new  # an existing empty folder is fine
    (new / "metrics.json").write_text("{}")
    expect_input_error(lambda: io.prepare_output_dir(new), str(new), "not empty", "--overwrite")
    assert io.prepare_output_dir(new, overwrite=True) == new
    assert (new / "metrics.json").read_text() == "{}"  # overwrite deletes nothing by itself
    afile = tmp_path / "file"
    afile.write_text("x")
    expect_input_error(lambda: io.prepare_output_dir(afile), "is a file")
    expect_input_error(lambda: io.prepare_output_dir(afile / "sub"), "cannot write")


def test_prepare_output_dir_without_creating(tmp_path):
    target = tmp_path / "new" / "run"
    assert io.prepare_output_dir(target, create=False) == target
    assert list(tmp_path.iterdir()) == []  # nothing created, no probe file left
    afile = tmp_path / "file"
    afile.write_text("x")
    expect_input_error(lambda: io.prepare_output_dir(afile / "run", create=False), "is a file")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    expect_input_error(lambda: io.prepare_output_dir(tmp_path / "full", create=False), "not empty")


def test_prepare_output_dir_unwritable(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(folders.tempfile, "mkstemp", denied)
    expect_input_error(
        lambda: io.prepare_output_dir(tmp_path / "out"), "cannot write", "Permission denied"
    )


def test_check_format_version():
    io.check_format_version(1, 1, "m")
    io.check_format_version("1", 1, "m")
    expect_input_error(
        lambda: io.check_format_version(2, 1, "model_dir"),
        "model_dir",
        "version 2",
        "reads version 1",
    )
    expect_input_error(lambda: io.check_format_version(None, 1, "model_dir"), "no format version")


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"old contents")
    with pytest.raises(RuntimeError, match="boom"), io.atomic_write(path) as fh:
        fh.write(b"new, partial")
        fh.flush()
        raise RuntimeError("boom")
    assert path.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["model.safetensors"]
    with pytest.raises(KeyboardInterrupt), io.atomic_write(tmp_path / "fresh.bin") as fh:
        fh.write(b"x")
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ["model.safetensors"]  # no half-written new file either
    with io.atomic_write(path) as fh:
        fh.write(b"new")
    assert path.read_bytes() == b"new"
    assert (path.stat().st_mode & 0o777) == 0o666 & ~atomic._UMASK


def test_atomic_dir_moves_a_complete_folder_into_place(tmp_path):
    final = tmp_path / "ckpt" / "step-000000010"
    with io.atomic_dir(final) as tmp:
        assert tmp.is_dir() and tmp.parent == final.parent and not final.exists()
        assert not tmp.name.startswith("step-")  # never mistaken for a real folder
        (tmp / "state.json").write_text("{}")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "w.bin").write_bytes(b"w")
    assert os.listdir(final.parent) == ["step-000000010"]  # the temporary is gone
    assert (final / "state.json").read_text() == "{}"
    assert (final / "sub" / "w.bin").read_bytes() == b"w"
    assert (final.stat().st_mode & 0o777) == 0o777 & ~atomic._UMASK


def test_atomic_dir_replaces_an_existing_folder(tmp_path):
    final = tmp_path / "step-1"
    final.mkdir()
    (final / "old.bin").write_bytes(b"old")
    (final / "shared.json").write_text("old")
    with io.atomic_dir(final) as tmp:
        (tmp / "shared.json").write_text("new")
    assert sorted(os.listdir(final)) == ["shared.json"]  # nothing of the old folder is kept
    assert (final / "shared.json").read_text() == "new"
    assert os.listdir(tmp_path) == ["step-1"]


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_atomic_dir_leaves_nothing_behind_on_error(tmp_path, exc):
    fresh = tmp_path / "fresh"
    with pytest.raises(exc), io.atomic_dir(fresh) as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise exc
    assert os.listdir(tmp_path) == []  # neither the folder nor its temporary
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "a.bin").write_bytes(b"old")
    with pytest.raises(exc), io.atomic_dir(kept) as tmp:
        (tmp / "a.bin").write_bytes(b"new, partial")
        raise exc
    assert os.listdir(tmp_path) == ["kept"] and (kept / "a.bin").read_bytes() == b"old"


def test_atomic_dir_puts_the_old_folder_back_when_the_move_fails(tmp_path, monkeypatch):
    final = tmp_path / "step-1"
    final.mkdir()
    (final / "a.bin").write_bytes(b"old")
    real_replace = os.replace

    def failing_replace(src, dst):
        if Path(src).name.endswith(".tmp"):  # the new folder's move into place
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space"), io.atomic_dir(final) as tmp:
        (tmp / "a.bin").write_bytes(b"new")
    assert os.listdir(tmp_path) == ["step-1"] and (final / "a.bin").read_bytes() == b"old"


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name an fd")
def test_atomic_dir_fsyncs_every_file_before_the_rename(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    final = tmp_path / "step-1"
    with io.atomic_dir(final) as tmp:
        (tmp / "sub").mkdir()
        for name in ("state.json", "sub/w.bin"):
            (tmp / name).write_bytes(b"x")
    moved = events.index(("replace", str(final)))
    synced = {Path(p).relative_to(tmp).as_posix() for k, p in events[:moved] if k == "fsync"}
    assert {"state.json", "sub/w.bin", "sub", "."} <= synced
    assert ("fsync", str(tmp_path)) in events[moved:]  # the rename itself is made durable


def test_load_embedding_file_picks_a_named_array_and_checks_values(tmp_path):
    a, b = rand(4, 3), rand(4, 2, seed=1)
    npz = write_npz(tmp_path / "e.npz", a, name="img", txt=b)
    assert io.load_embedding_file(None) is None
    np.testing.assert_array_equal(io.load_embedding_file(f"{npz}::txt"), b)
    np.testing.assert_array_equal(io.load_embedding_file(Path(f"{npz}::img")), a)
    literal = write_npy(tmp_path / "odd::name.npy", a)  # an existing file is taken literally
    np.testing.assert_array_equal(io.load_embedding_file(literal), a)
    a[2, 1] = np.inf
    bad = write_npy(tmp_path / "bad.npy", a)
    assert io.load_embedding_file(bad).shape == (4, 3)  # values are not scanned by default
    expect_input_error(lambda: io.load_embedding_file(bad, check=True), "bad.npy", "row 2", "Inf")


def test_write_json_atomic(tmp_path):
    path = tmp_path / "metrics.json"
    io.write_json_atomic(
        path,
        {
            "r1": np.float32(0.5),
            "n": np.int64(3),
            "v": np.arange(2),
            "p": tmp_path,
            "t": torch.tensor(1.5),
        },
    )
    assert json.loads(path.read_text()) == {
        "r1": 0.5,
        "n": 3,
        "v": [0, 1],
        "p": str(tmp_path),
        "t": 1.5,
    }
    before = path.read_text()
    with pytest.raises(TypeError):
        io.write_json_atomic(path, {"a": 1, "b": object()})
    assert path.read_text() == before
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_load_safetensors_reads_every_dtype_and_refuses_corruption(tmp_path):
    tensors = {
        "f.weight": torch.randn(4, 3),
        "half": torch.randn(2).half(),
        "bf": torch.randn(3, 2).bfloat16(),
        "ids": torch.arange(5),
        "empty": torch.zeros(0, 3),
        "np": torch.from_numpy(np.ones((2, 2), np.float64)),
    }
    path = tmp_path / "model.safetensors"
    # Written by the reference library (as SOTAlign.save does), read by the checked reader.
    safetensors.torch.save_file(tensors, str(path), metadata={"format_version": "1", "kind": "cca"})
    got, meta = io.load_safetensors(path)
    assert meta == {"format_version": "1", "kind": "cca"}
    assert set(got) == set(tensors)
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype and torch.equal(got[k], v)
    safetensors.torch.save_file({"w": torch.ones(2)}, str(tmp_path / "ref.safetensors"))
    ref, ref_meta = io.load_safetensors(tmp_path / "ref.safetensors")
    assert torch.equal(ref["w"], torch.ones(2)) and ref_meta == {}
    data = path.read_bytes()
    for keep in (4, 20, len(data) // 2, len(data) - 1):
        (tmp_path / "cut.safetensors").write_bytes(data[:keep])
        expect_input_error(
            lambda: io.load_safetensors(tmp_path / "cut.safetensors"), "cut.safetensors"
        )


def test_messages_stay_on_one_line_whatever_the_file_holds(tmp_path):
    path = tmp_path / "k.safetensors"
    safetensors.numpy.save_file({"a\nb": rand(), "c\rd": rand()}, str(path))
    expect_input_error(lambda: io.load_embeddings(path, key="x\ny"), "'x\\ny'")
    expect_input_error(lambda: io.load_embeddings(path), "several")
    raw = b'{"bad\\nname": null}'
    (tmp_path / "n.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw)
    expect_input_error(lambda: io.load_safetensors(tmp_path / "n.safetensors"), "bad\\nname")
