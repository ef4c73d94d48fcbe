"""numpy's own files: ``.npy`` (memory-mapped after its header is checked) and ``.npz``.

The header is parsed and checked against the file size before any data is trusted, and pickled
(object) arrays are refused, so a corrupt or hostile file raises
:class:`~sotalign.errors.InputError` instead of allocating, unpickling or reading past its end.
"""

from __future__ import annotations

import math
import warnings
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import InputError
from .files import choose_array, reason
from .validate import check_embedding_meta

__all__ = ["npy_nbytes", "open_npy", "read_npy_header", "read_npz"]


def read_npy_header(fh: IO[bytes], where: str) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """Read and check the magic string and header of an .npy stream."""
    fmt = np.lib.format
    try:
        with warnings.catch_warnings():
            # The header is a Python literal; odd bytes in it must not print syntax warnings.
            warnings.simplefilter("ignore")
            version = fmt.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(fh)
            else:
                shape, fortran, dtype = fmt._read_array_header(fh, version)
    except Exception as exc:
        raise InputError(
            f"{where}: not a valid .npy file ({reason(exc)}); re-create it with numpy.save"
        ) from exc
    if any(int(s) < 0 for s in shape):
        raise InputError(
            f"{where}: header has a negative dimension {tuple(shape)}; the file is corrupt:"
            " re-create it with numpy.save"
        )
    if dtype.hasobject:
        raise InputError(
            f"{where}: holds Python objects (a pickled array), which sotalign never unpickles;"
            " save a numeric array with numpy.save(path, array.astype('float32'))"
        )
    return tuple(int(s) for s in shape), bool(fortran), dtype


def npy_nbytes(shape: tuple[int, ...], dtype: np.dtype[Any]) -> int:
    """Bytes of data an array of ``shape`` and ``dtype`` occupies."""
    return math.prod(shape) * dtype.itemsize


def open_npy(p: Path, *, mmap: bool, embeddings: bool) -> np.ndarray:
    """Check an .npy file's header against its size, then memory-map or read it."""
    where = str(p)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        shape, _, dtype = read_npy_header(fh, where)
        offset = fh.tell()
    if embeddings:
        check_embedding_meta(shape, dtype, str(dtype), where)
    need = npy_nbytes(shape, dtype)
    if offset + need > size:
        raise InputError(
            f"{where}: truncated: its header promises shape {shape} {dtype} ({need} bytes of"
            f" data) but only {max(size - offset, 0)} bytes follow; re-create the file"
        )
    if need == 0:
        return np.zeros(shape, dtype=dtype)
    try:
        return np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as exc:
        raise InputError(
            f"{where}: cannot read this .npy file ({reason(exc)}); re-create it with numpy.save"
        ) from exc


def read_npz(p: Path, key: str | None) -> np.ndarray:
    """Read the embeddings array of an .npz archive (``key``, else ``embeddings``, else the
    only 2-D float array) after checking every member's header."""
    where = str(p)
    with zipfile.ZipFile(p) as zf:
        members = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
        names = list(members)
        headers: dict[str, tuple[tuple[int, ...], np.dtype[Any], int]] = {}
        for name, info in members.items():
            with zf.open(info) as fh:
                shape, _, dtype = read_npy_header(fh, f"{where}[{name}]")
                headers[name] = (shape, dtype, fh.tell())
        cands = [n for n, (s, d, _) in headers.items() if len(s) == 2 and d.kind == "f"]
        name = choose_array(names, key, cands, where, "array")
        shape, dtype, hlen = headers[name]
        label = f"{where}[{name}]"
        check_embedding_meta(shape, dtype, str(dtype), label)
        need = npy_nbytes(shape, dtype)
        if hlen + need > members[name].file_size:
            raise InputError(
                f"{label}: truncated: its header promises {need} bytes of data but the archive"
                f" member holds {max(members[name].file_size - hlen, 0)}; re-create the file"
            )
        with zf.open(members[name]) as fh:
            return np.lib.format.read_array(fh, allow_pickle=False)
