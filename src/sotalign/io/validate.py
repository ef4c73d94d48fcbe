"""Checks of arrays and saved models before any work starts.

:func:`validate_training_inputs` checks the paired arrays (A, B) and the unpaired pools (X, Y)
of a training run; :func:`check_finite` scans any array, memory-mapped ones included, in
bounded chunks; :func:`check_embedding_meta` checks the shape and dtype that every embeddings
reader and writer requires; :func:`check_format_version` checks a saved model's format version.
Every failure is an :class:`~sotalign.errors.InputError` with a one-line message naming the
array (or file) and the fix.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import InputError, UnderdeterminedWarning
from .files import PathLike

__all__ = [
    "CHUNK_BYTES",
    "check_embedding_meta",
    "check_finite",
    "check_format_version",
    "dtype_of",
    "is_torch",
    "validate_training_inputs",
]

#: Bytes of input examined per step by :func:`check_finite` and written per step by
#: :func:`~sotalign.io.save_embeddings`; bounds their extra memory whatever the array size.
CHUNK_BYTES = 4 * 2**20


def is_torch(x: Any) -> bool:
    """True for a torch tensor (tested by module, so numpy-like objects are not mistaken)."""
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach")


def dtype_of(x: Any) -> tuple[np.dtype[Any] | None, str]:
    """(numpy dtype or None, printable dtype name) for a numpy array or a torch tensor."""
    if is_torch(x):
        name = str(x.dtype).replace("torch.", "")
        if name == "bfloat16":
            return np.dtype(np.float32), name  # checked like a float; converted when read
        try:
            return torch.empty(0, dtype=x.dtype).numpy().dtype, name
        except (TypeError, RuntimeError):
            return None, name
    dt = np.asarray(x).dtype if not hasattr(x, "dtype") else np.dtype(x.dtype)
    return dt, str(dt)


def check_embedding_meta(
    shape: tuple[int, ...], dtype: np.dtype[Any] | None, dname: str, where: str
) -> None:
    """Raise InputError unless ``shape``/``dtype`` describe a non-empty 2-D float array."""
    kind = dtype.kind if dtype is not None else "?"
    if kind in "iub":
        what = "boolean" if kind == "b" else f"integer ({dname})"
        raise InputError(
            f"{where}: holds {what} values, not embeddings; embeddings must be floating point"
            " (float16/32/64): pass the file of vectors, or convert it with"
            " array.astype('float32')"
        )
    if kind in "US":
        raise InputError(
            f"{where}: holds strings, not embeddings; pass the file of embedding vectors"
            " (float16/32/64), not the captions or file names"
        )
    if kind != "f" or (dtype is not None and dtype.itemsize not in (2, 4, 8)):
        raise InputError(
            f"{where}: holds {dname} values; embeddings must be float16, float32 or float64:"
            " convert with array.astype('float32')"
        )
    if len(shape) != 2:
        if len(shape) == 1:
            raise InputError(
                f"{where}: is a 1-D array of {shape[0]} values; embeddings must be 2-D (one row"
                " per item): reshape with array.reshape(n_items, dim)"
            )
        raise InputError(
            f"{where}: has shape {tuple(shape)}; embeddings must be 2-D (rows = items,"
            " columns = dimensions): reshape with array.reshape(-1, dim)"
        )
    if shape[0] == 0 or shape[1] == 0:
        raise InputError(
            f"{where}: holds no data (shape {tuple(shape)}); re-create it with the embeddings"
        )


def check_finite(array: Any, name: str, *, chunk_bytes: int = CHUNK_BYTES) -> None:
    """Raise InputError naming the first row that holds a NaN or an infinity.

    The array (numpy, ``np.memmap`` or torch tensor) is scanned in row blocks of about
    ``chunk_bytes``, so a memory-mapped file of millions of rows is never loaded whole; the
    extra memory is bounded by the block. Integer and boolean arrays are finite by definition.
    """
    shape = tuple(array.shape)
    if not shape:
        array = array.reshape(1)
        shape = (1,)
    torch_input = is_torch(array)
    if torch_input:
        if not (array.is_floating_point() or array.is_complex()):
            return
    else:
        dtype = np.dtype(array.dtype)
        if dtype.kind in "biu":
            return
        if dtype.kind not in "fc":
            raise InputError(f"{name}: holds {dtype} values, not numbers")
    n = shape[0]
    row_items = math.prod(shape[1:]) if len(shape) > 1 else 1
    if n == 0 or row_items == 0:
        return
    itemsize = array.element_size() if torch_input else np.dtype(array.dtype).itemsize
    rows = max(1, chunk_bytes // max(1, row_items * itemsize))
    for start in range(0, n, rows):
        block = array[start : start + rows]
        if torch_input:
            ok = torch.isfinite(block).reshape(block.shape[0], -1).all(dim=1).cpu().numpy()
        else:
            ok = _finite_rows(np.asarray(block))
        if not ok.all():
            j = int(np.argmin(ok))
            row = block[j]
            row_np = row.float().cpu().numpy() if torch_input else np.asarray(row)
            what = "NaN" if np.isnan(row_np).any() else "Inf"
            raise InputError(
                f"{name}: row {start + j} holds {what} (the first non-finite row); remove that"
                " row or re-compute its embedding"
            )


def _finite_rows(block: np.ndarray) -> np.ndarray:
    """Per-row "all finite" of a numpy block.

    float16 has no fast ``isfinite`` loop in numpy; a float16 value is NaN or ±Inf exactly when
    its five exponent bits are all ones (mask 0x7C00), so the row maximum of ``bits & 0x7C00``
    tells the same about 3x faster.
    """
    flat = block.reshape(block.shape[0], -1)
    if flat.dtype == np.float16 and flat.dtype.isnative:
        bits = np.ascontiguousarray(flat).view(np.uint16)
        return np.bitwise_and(bits, np.uint16(0x7C00)).max(axis=1) < 0x7C00
    return np.isfinite(flat).all(axis=1)


def _shape_dtype(x: Any, where: str) -> tuple[tuple[int, ...], np.dtype[Any] | None, str]:
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        try:
            x = np.asarray(x)
        except Exception as exc:
            raise InputError(f"{where}: not an array ({type(x).__name__})") from exc
    dt, dname = dtype_of(x)
    return tuple(int(s) for s in x.shape), dt, dname


_ROLE_NAMES = {
    "A": "paired images",
    "B": "paired texts",
    "X": "unpaired images",
    "Y": "unpaired texts",
}


def validate_training_inputs(
    A: Any,
    B: Any,
    X: Any = None,
    Y: Any = None,
    *,
    names: Mapping[str, str] | None = None,
    check_values: bool = True,
    require_both_pools: bool = True,
) -> None:
    """Check the arrays of a training run before any work starts.

    ``A``/``B`` are the paired image/text embeddings (row i of A matches row i of B); ``X``/``Y``
    the optional unpaired image/text pools. ``names`` maps "A", "B", "X", "Y" to what messages
    call them (e.g. file names); the defaults are "paired images", etc. Arrays may be numpy
    arrays, memory-maps or torch tensors.

    Raises InputError for: an array that is not 2-D, empty, or not floating point; paired arrays
    with different row counts; fewer than 2 pairs (the teachers centre the pairs and divide by
    n_p - 1); an unpaired pool whose dimension differs from its paired side; NaN/Inf rows (when
    ``check_values``, by a chunked scan); one unpaired pool without the other (unless
    ``require_both_pools=False``: KLOT matches unpaired images against unpaired texts).

    Warns (:class:`~sotalign.errors.UnderdeterminedWarning`) when a side has at least as many
    dimensions as there are pairs: the centred pair covariance S (SPEC §2) then has rank at most
    n_p - 1 < d, so it is singular and only the ridge λI keeps Σ = S + λI invertible; the fit
    works but is driven by λ in the missing directions.
    """
    label = {**_ROLE_NAMES, **(names or {})}
    arrays = {"A": A, "B": B, "X": X, "Y": Y}
    meta: dict[str, tuple[int, ...]] = {}
    for role, arr in arrays.items():
        if arr is None:
            continue
        shape, dt, dname = _shape_dtype(arr, label[role])
        check_embedding_meta(shape, dt, dname, label[role])
        meta[role] = shape
    if require_both_pools and (X is None) != (Y is None):
        given, missing = ("X", "Y") if Y is None else ("Y", "X")
        raise InputError(
            f"{label[given]}: given without {label[missing]}; pass both unpaired pools"
            " (images and texts) or neither"
        )
    (na, da), (nb, db) = meta["A"], meta["B"]
    if na != nb:
        raise InputError(
            f"{label['B']}: {nb} rows but {label['A']} has {na}; the i-th rows of the two files"
            " must be a pair"
        )
    if na < 2:
        raise InputError(
            f"{label['A']}: only {na} pair; at least 2 pairs are needed (the teacher centres"
            " the pairs and divides by n_pairs - 1): add pairs"
        )
    for role, paired, side in (("X", "A", "image"), ("Y", "B", "text")):
        if role in meta and meta[role][1] != meta[paired][1]:
            raise InputError(
                f"{label[role]}: {meta[role][1]} dimensions but {label[paired]} has"
                f" {meta[paired][1]}; the unpaired {side}s must come from the same {side} encoder"
                " as the paired ones"
            )
    if check_values:
        for role, arr in arrays.items():
            if arr is not None:
                check_finite(arr, label[role])
    dmax = max(da, db)
    if dmax >= na:
        side = label["A"] if da >= db else label["B"]
        warnings.warn(
            f"{side}: {dmax} dimensions but only {na} pairs; the pair covariance is"
            f" rank-deficient (rank <= {na - 1}) and only the ridge term keeps the linear"
            " teacher well-posed: add pairs, or raise the ridge (teacher_reg; teacher_reg=auto"
            " selects it on validation)",
            UnderdeterminedWarning,
            stacklevel=2,
        )


def check_format_version(found: Any, expected: Any, path: PathLike) -> None:
    """Raise InputError unless a saved model's format version ``found`` equals ``expected``."""
    if found is None:
        raise InputError(
            f"{path}: no format version recorded; this is not a sotalign model folder (or it is"
            " damaged): pass the folder written by `sotalign fit`"
        )
    if str(found) != str(expected):
        raise InputError(
            f"{path}: model format version {found}, but this sotalign reads version {expected};"
            " re-train the model with this sotalign, or load it with the sotalign release that"
            " wrote it"
        )
