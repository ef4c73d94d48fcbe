"""HDF5 (``.h5``/``.hdf5``) and parquet (``.parquet``/``.pq``) embeddings files.

Both need the ``formats`` extra (``pip install 'sotalign[formats]'``): h5py and pyarrow are
imported only when such a file is read, and a missing one raises
:class:`~sotalign.errors.MissingDependencyError` naming the extra.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .files import choose_array, name_list, require
from .npy import npy_nbytes
from .validate import check_embedding_meta

__all__ = ["read_hdf5", "read_parquet"]


def read_hdf5(p: Path, key: str | None, mmap: bool) -> np.ndarray:
    """Read the dataset ``key`` (a path inside the file), else ``embeddings``, else the only
    2-D dataset; memory-mapped when ``mmap`` and the dataset is contiguous and unfiltered."""
    h5py = require("h5py", p)
    where = str(p)
    with h5py.File(p, "r") as f:
        found: dict[str, Any] = {}

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                found[name] = obj

        f.visititems(visit)
        names = list(found)
        if key is not None and key.strip("/") in found:
            key = key.strip("/")
        cands = [n for n, d in found.items() if d.shape is not None and len(d.shape) == 2]
        if key is None and "embeddings" not in found and not names:
            raise InputError(
                f"{where}: the HDF5 file holds no dataset; write the embeddings to a dataset"
                " named 'embeddings'"
            )
        if key is None and "embeddings" not in found and len(cands) != 1:
            hint = "several 2-D datasets" if cands else "no 'embeddings' dataset"
            raise InputError(
                f"{where}: {hint} (it holds: {name_list(names)}); name the embeddings dataset"
                " 'embeddings' or pass its name as the key"
            )
        name = choose_array(names, key, cands, where, "dataset")
        dset = found[name]
        label = f"{where}[{name}]"
        shape = tuple(dset.shape) if dset.shape is not None else ()
        check_embedding_meta(shape, dset.dtype, str(dset.dtype), label)
        offset = None
        if dset.chunks is None:
            with contextlib.suppress(Exception):
                offset = dset.id.get_offset()
        if (
            mmap
            and offset is not None
            and dset.chunks is None
            and not dset.external
            and dset.compression is None
        ):
            need = npy_nbytes(shape, dset.dtype)
            if offset + need > p.stat().st_size:
                raise InputError(
                    f"{label}: truncated: data runs past the end of the file; re-create the file"
                )
            return np.memmap(p, dtype=dset.dtype, mode="r", offset=offset, shape=shape)
        return np.asarray(dset[()])


def read_parquet(p: Path, key: str | None) -> np.ndarray:
    """Read the list column ``key``, else ``embeddings``/``embedding``, else the only list
    column; with no list column, all columns, which must be floats (one per dimension)."""
    pa = require("pyarrow", p)
    pq = require("pyarrow.parquet", p)
    pc = require("pyarrow.compute", p)
    where = str(p)
    pf = pq.ParquetFile(p)
    schema = pf.schema_arrow
    names = list(schema.names)
    types = {f.name: f.type for f in schema}

    def is_list(t: Any) -> bool:
        return bool(
            pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
        )

    if not names:
        raise InputError(f"{where}: the parquet file has no columns; store the embeddings in it")
    list_cols = [n for n in names if is_list(types[n])]
    if key is not None or list_cols:
        if key is None and len(list_cols) > 1:
            for preferred in ("embeddings", "embedding"):
                if preferred in list_cols:
                    key = preferred
                    break
        col = choose_array(names, key, list_cols, where, "column")
        label = f"{where}[{col}]"
        if not is_list(types[col]):
            raise InputError(
                f"{label}: column holds {types[col]} scalars; pass the list column of"
                " embedding vectors, or store one float column per dimension and pass no key"
            )
        vtype = types[col].value_type
        if not pa.types.is_floating(vtype):
            check_embedding_meta((0, 0), _arrow_np_dtype(pa, vtype), str(vtype), label)
        arr = pf.read(columns=[col]).column(0).combine_chunks()
        if arr.null_count:
            first = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
            raise InputError(f"{label}: row {first} is null; every row needs an embedding")
        n = len(arr)
        if pa.types.is_fixed_size_list(arr.type):
            dim = arr.type.list_size
        else:
            lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
            dim = int(lengths[0]) if n else 0
            if n and (lengths != dim).any():
                i = int(np.flatnonzero(lengths != dim)[0])
                raise InputError(
                    f"{label}: row {i} has {int(lengths[i])} values but row 0 has {dim}; all"
                    " embeddings must have the same dimension"
                )
        values = arr.flatten()
        if values.null_count:
            raise InputError(f"{label}: holds null values inside vectors; re-create the file")
        flat = values.to_numpy(zero_copy_only=False)
        check_embedding_meta((n, dim), flat.dtype, str(flat.dtype), label)
        return flat.reshape(n, dim)
    # No list column: every column is one dimension.
    nonfloat = [n for n in names if not pa.types.is_floating(types[n])]
    if nonfloat:
        if len(nonfloat) == len(names):
            check_embedding_meta(
                (0, 0), _arrow_np_dtype(pa, types[names[0]]), str(types[names[0]]), where
            )
        raise InputError(
            f"{where}: no list column, and columns {name_list(nonfloat)} are not floats; store"
            " the embeddings in one list column, or only float columns (one per dimension)"
        )
    table = pf.read()
    cols = []
    for n in names:
        c = table.column(n)
        if c.null_count:
            raise InputError(f"{where}[{n}]: holds nulls; every row needs a full embedding")
        cols.append(c.to_numpy())
    check_embedding_meta(
        (table.num_rows, len(cols)), np.result_type(*cols) if cols else None, "float", where
    )
    return np.column_stack(cols)


def _arrow_np_dtype(pa: Any, t: Any) -> np.dtype[Any] | None:
    """A numpy dtype of the same kind as an arrow type (for error messages), or None."""
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t):
        return np.dtype("U1")
    if pa.types.is_boolean(t):
        return np.dtype(bool)
    if pa.types.is_integer(t):
        return np.dtype(np.int64)
    return None
