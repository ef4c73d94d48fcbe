"""Embeddings files: :func:`load_embeddings` reads one 2-D float array, whatever the format;
:func:`save_embeddings` writes one as ``.npy``, atomically and in bounded memory.

Large files are memory-mapped where the format allows it (``.npy``; uncompressed tensors in
``.safetensors``; contiguous, unfiltered HDF5 datasets), so a file of ten million rows costs no
memory until rows are touched. float16 is returned as stored: callers upcast one batch at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, SotalignError, closest
from .atomic import atomic_write
from .columnar import read_hdf5, read_parquet
from .files import PathLike, existing_file, reason
from .npy import open_npy, read_npz
from .safetensors import read_safetensors_embeddings
from .validate import CHUNK_BYTES, check_embedding_meta, check_finite, is_torch

__all__ = ["EMBEDDING_SUFFIXES", "load_embedding_file", "load_embeddings", "save_embeddings"]

EMBEDDING_SUFFIXES: tuple[str, ...] = (
    ".npy",
    ".npz",
    ".safetensors",
    ".h5",
    ".hdf5",
    ".parquet",
    ".pq",
)

_KIND = {
    ".npy": ".npy",
    ".npz": ".npz",
    ".safetensors": "safetensors",
    ".h5": "HDF5",
    ".hdf5": "HDF5",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def load_embeddings(path: PathLike, *, key: str | None = None, mmap: bool = True) -> np.ndarray:
    """Read a 2-D float array of embeddings (rows = items) from a file.

    Formats, chosen by suffix:

    - ``.npy``: memory-mapped read-only when ``mmap`` (an ``np.memmap``); ``key`` is ignored.
    - ``.npz``: the array ``key``, else ``embeddings``, else the only 2-D float array; read whole.
    - ``.safetensors``: the tensor ``key``, else ``embeddings``, else the only 2-D float tensor;
      memory-mapped when ``mmap`` (bfloat16 is converted to float32 and read whole).
    - ``.h5``/``.hdf5``: the dataset ``key`` (a path inside the file), else ``embeddings``, else
      the only 2-D dataset; memory-mapped when ``mmap`` and the dataset is contiguous and
      unfiltered, read whole otherwise (chunked or compressed).
    - ``.parquet``/``.pq``: the list or fixed-size-list column ``key``, else ``embeddings`` /
      ``embedding``, else the only list column; with no list column, all columns, which must be
      floats (one per dimension). Read whole.

    float16/float32/float64 are returned as stored. Values are not scanned here (a full pass over
    a large file); :func:`check_finite` / :func:`validate_training_inputs` do that.

    Raises:
        InputError: the file is missing, empty, truncated, corrupt, holds no suitable array, or
            holds integers, strings, an empty array or an array that is not 2-D.
        MissingDependencyError: HDF5/parquet without the ``formats`` extra.
    """
    p = existing_file(path, "embeddings")
    suffix = p.suffix.lower()
    kind = _KIND.get(suffix)
    if kind is None:
        raise InputError(
            f"{p}: unknown embeddings file type '{suffix}'{closest(suffix, list(_KIND))}; use"
            f" one of {', '.join(EMBEDDING_SUFFIXES)}"
        )
    try:
        if suffix == ".npy":
            return open_npy(p, mmap=mmap, embeddings=True)
        if suffix == ".npz":
            arr = read_npz(p, key)
        elif suffix == ".safetensors":
            arr = read_safetensors_embeddings(p, key, mmap)
        elif kind == "HDF5":
            arr = read_hdf5(p, key, mmap)
        else:
            arr = read_parquet(p, key)
    except SotalignError:
        raise
    except MemoryError as exc:
        raise InputError(
            f"{p}: the file claims an array too large for memory; it is corrupt, or pass"
            " mmap=True / use .npy to memory-map it"
        ) from exc
    except Exception as exc:
        raise InputError(
            f"{p}: cannot read this {kind} file ({reason(exc)}); it is truncated or corrupt:"
            " re-create it"
        ) from exc
    check_embedding_meta(tuple(arr.shape), arr.dtype, str(arr.dtype), str(p))
    return arr


def load_embedding_file(path: PathLike | None, *, check: bool = False) -> np.ndarray | None:
    """:func:`load_embeddings` for a path given on the command line; ``None`` passes through.

    ``FILE::NAME`` picks the array ``NAME`` of an HDF5, npz, safetensors or parquet file that
    holds several (unless a file of that literal name exists). With ``check``, NaN/Inf rows are
    refused as well (a chunked scan, :func:`check_finite`).
    """
    if path is None:
        return None
    key = None
    text = str(path)
    if "::" in text and not Path(text).exists():
        text, key = text.rsplit("::", 1)
        path = Path(text)
    arr = load_embeddings(path, key=key)
    if check:
        check_finite(arr, str(path))
    return arr


def save_embeddings(path: PathLike, array: Any, *, dtype: Any = None) -> Path:
    """Write a 2-D float array to ``path`` (.npy) atomically; return the path.

    ``dtype`` (e.g. ``"float16"`` to halve the size of a cache) converts while writing; the
    default keeps the array's dtype, so nothing is lost unless asked. The array (numpy,
    memory-map or torch tensor) is written in row blocks, so a memory-mapped input is never
    loaded whole. Non-finite input rows, and values that overflow ``dtype``, raise InputError and
    leave ``path`` untouched. Files are little-endian .npy, readable by ``numpy.load``.
    """
    p = Path(path)
    if p.suffix.lower() != ".npy":
        raise InputError(f"{p}: embeddings are saved as .npy; name the file with a .npy suffix")
    where = str(p)
    if is_torch(array):
        t = array.detach().cpu()
        array = (t.float() if str(t.dtype) == "torch.bfloat16" else t).numpy()
    elif not isinstance(array, np.ndarray):
        array = np.asarray(array)
    shape = tuple(array.shape)
    check_embedding_meta(shape, array.dtype, str(array.dtype), f"array for {where}")
    out = np.dtype(dtype) if dtype is not None else array.dtype
    if out.kind != "f" or out.itemsize not in (2, 4, 8):
        raise InputError(f"{where}: cannot save embeddings as {out}; use float16/32/64")
    out = out.newbyteorder("<")
    check_finite(array, f"array for {where}")
    rows = max(1, CHUNK_BYTES // max(1, shape[1] * array.dtype.itemsize))
    header = {"descr": np.lib.format.dtype_to_descr(out), "fortran_order": False, "shape": shape}
    with atomic_write(p, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for start in range(0, shape[0], rows):
            with np.errstate(over="ignore"):
                block = np.ascontiguousarray(array[start : start + rows], dtype=out)
            if out != array.dtype and not np.isfinite(block).all():
                j = int(np.argmin(np.isfinite(block).all(axis=1)))
                raise InputError(
                    f"{where}: row {start + j} exceeds the {out.name} range (max"
                    f" {np.finfo(out).max:g}); save with dtype='float32'"
                )
            fh.write(block.tobytes())
    return p
