"""Caption -> image indices: :func:`load_index` reads one from a file, :func:`check_index`
checks one against the data.

Entry ``i`` of an index is the row of caption ``i``'s image, so several captions can share an
image. Files: ``.npy`` (1-D integers, or ``(n, 1)``; floats only if all integral), ``.txt`` (one
integer per line), ``.json`` (a list of integers), ``.csv`` (one column, optional header line).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, SotalignError, closest
from .files import PathLike, existing_file, is_int, reason
from .npy import open_npy

__all__ = ["INDEX_SUFFIXES", "check_index", "load_index"]

INDEX_SUFFIXES: tuple[str, ...] = (".npy", ".txt", ".json", ".csv")

_INT_RE = re.compile(r"[+-]?[0-9]+")


def load_index(path: PathLike) -> np.ndarray:
    """Read a caption -> image index: entry ``i`` is the row of caption ``i``'s image.

    Formats: ``.npy`` (1-D integer array, or ``(n, 1)``; floats only if all integral), ``.txt``
    (one integer per line), ``.json`` (a list of integers), ``.csv`` (one column; an optional
    header line). Returns a 1-D ``int64`` array of non-negative values. Check it against the data
    with :func:`check_index`.
    """
    p = existing_file(path, "caption index")
    where = str(p)
    suffix = p.suffix.lower()
    if suffix not in INDEX_SUFFIXES:
        raise InputError(
            f"{p}: unknown index file type '{suffix}'{closest(suffix, list(INDEX_SUFFIXES))};"
            f" use one of {', '.join(INDEX_SUFFIXES)}"
        )
    try:
        if suffix == ".npy":
            values = _index_from_npy(p)
        else:
            try:
                text = p.read_text(encoding="utf-8-sig")
            except UnicodeDecodeError as exc:
                raise InputError(f"{where}: not UTF-8 text; write one integer per line") from exc
            if suffix == ".txt":
                values = _index_from_lines(text.splitlines(), where, header=False)
            elif suffix == ".csv":
                values = _index_from_csv(text, where)
            else:
                values = _index_from_json(text, where)
    except SotalignError:
        raise
    except Exception as exc:
        raise InputError(
            f"{where}: cannot read this index file ({reason(exc)}); re-create it"
        ) from exc
    if values.size == 0:
        raise InputError(f"{where}: the index is empty; it needs one image row per caption")
    neg = np.flatnonzero(values < 0)
    if neg.size:
        i = int(neg[0])
        raise InputError(
            f"{where}: entry {i} is {int(values[i])}; image rows count from 0, so indices"
            " must be >= 0"
        )
    return values


def check_index(
    index: Any, n_images: int, n_texts: int, *, name: str = "caption index"
) -> np.ndarray:
    """Check a caption -> image index against the data; return it as 1-D int64.

    ``index[i]`` must be the row of caption i's image: one entry per text (``n_texts``), each in
    ``[0, n_images)``. Raises InputError naming the first bad entry.
    """
    idx = np.asarray(index)
    if idx.ndim != 1:
        raise InputError(f"{name}: has shape {idx.shape}; it must be 1-D (one entry per caption)")
    if idx.dtype.kind not in "iu":
        raise InputError(f"{name}: holds {idx.dtype} values; it must hold integer image rows")
    if idx.shape[0] != n_texts:
        raise InputError(
            f"{name}: {idx.shape[0]} entries but there are {n_texts} texts; it needs one image"
            " row per caption, in caption order"
        )
    bad = np.flatnonzero((idx < 0) | (idx >= n_images))
    if bad.size:
        i = int(bad[0])
        raise InputError(
            f"{name}: entry {i} (caption {i}) is {int(idx[i])} but there are {n_images} images"
            f" (valid rows 0..{n_images - 1}); it refers to a missing image: check that the"
            " index belongs to these files"
        )
    return idx.astype(np.int64, copy=False)


def _parse_int(token: str, where: str, line: int) -> int:
    t = token.strip()
    if not _INT_RE.fullmatch(t):
        shown = t if len(t) <= 30 else t[:27] + "..."
        raise InputError(
            f"{where}: line {line}: {shown!r} is not an integer; the index needs one image row"
            " number per caption"
        )
    return int(t)


def _index_from_npy(p: Path) -> np.ndarray:
    where = str(p)
    arr = open_npy(p, mmap=False, embeddings=False)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InputError(
            f"{where}: index has shape {arr.shape}; it must be 1-D (one image row per caption)"
        )
    if arr.dtype.kind in "iu":
        if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            raise InputError(f"{where}: index values exceed int64; they cannot be image rows")
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        a64 = arr.astype(np.float64)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(a64) | (a64 != np.round(a64))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"{where}: entry {i} is {arr[i].item()!r}, not a whole number; the index needs"
                " integer image rows"
            )
        if arr.size and np.abs(a64).max() >= 2**63:
            raise InputError(f"{where}: index values exceed int64; they cannot be image rows")
        return arr.astype(np.int64)
    raise InputError(
        f"{where}: holds {arr.dtype} values; the index must hold integers (image rows)"
    )


def _to_int64(values: list[int], where: str) -> np.ndarray:
    for i, v in enumerate(values):
        if not -(2**63) <= v < 2**63:
            raise InputError(f"{where}: entry {i} ({v}) is out of the int64 range")
    return np.asarray(values, dtype=np.int64)


def _index_from_lines(lines: list[str], where: str, *, header: bool) -> np.ndarray:
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    start = 1 if header else 0
    out: list[int] = []
    for ln in range(start, len(lines)):
        if not lines[ln].strip():
            raise InputError(
                f"{where}: line {ln + 1} is empty; write one image row number per caption,"
                " with no gaps"
            )
        out.append(_parse_int(lines[ln], where, ln + 1))
    return _to_int64(out, where)


def _index_from_csv(text: str, where: str) -> np.ndarray:
    rows = list(csv.reader(text.splitlines()))
    while rows and not any(c.strip() for c in rows[-1]):
        rows.pop()
    for i, row in enumerate(rows):
        if len(row) != 1:
            raise InputError(
                f"{where}: line {i + 1} has {len(row)} columns; the index CSV must have exactly"
                " one column (the image row of each caption)"
            )
    cells = [r[0] for r in rows]
    header = bool(cells) and not _INT_RE.fullmatch(cells[0].strip())
    return _index_from_lines(cells, where, header=header)


def _index_from_json(text: str, where: str) -> np.ndarray:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InputError(
            f"{where}: invalid JSON ({reason(exc)}); write a list of integers"
        ) from exc
    if not isinstance(data, list):
        raise InputError(
            f"{where}: holds a JSON {type(data).__name__}; the index must be a JSON list of"
            " integers (one image row per caption)"
        )
    for i, v in enumerate(data):
        if not is_int(v):
            raise InputError(
                f"{where}: entry {i} is {json.dumps(v)[:30]}, not an integer; the index needs"
                " integer image rows"
            )
    return _to_int64(data, where)
