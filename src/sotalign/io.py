"""Reading and writing embeddings, indices, JSON and weights; every write is atomic.

Readers
-------
:func:`load_embeddings` reads one 2-D array of cached embeddings (rows = items, columns =
encoder dimensions) from ``.npy``, ``.npz``, ``.safetensors``, HDF5 (``.h5``/``.hdf5``) or
parquet (``.parquet``/``.pq``). Large files are memory-mapped where the format allows it
(``.npy``; uncompressed tensors in ``.safetensors``; contiguous, unfiltered HDF5 datasets), so a
file of ten million rows costs no memory until rows are touched. float16 is returned as stored:
callers upcast one batch at a time. :func:`load_index` reads a caption -> image index.

Every reader checks the file before trusting it (the header against the file size, offsets
against the data, dtypes, shapes) and turns any failure into :class:`~sotalign.errors.InputError`
with a one-line message naming the file and the fix. HDF5 and parquet need the ``formats`` extra
(``pip install 'sotalign[formats]'``); they are imported only when such a file is read.

Checks
------
:func:`validate_training_inputs` checks the paired arrays (A, B) and the unpaired pools (X, Y)
before a training run starts; :func:`check_finite` scans any array, memory-mapped ones included,
in bounded chunks; :func:`check_index` checks a caption -> image index against the data;
:func:`check_format_version` checks a saved model's format version.

Writers
-------
All writes go through :func:`atomic_write`: data goes to a temporary file in the target folder,
is flushed and fsync'ed, then renamed over the target. A crash or an exception mid-write leaves
the previous file (or no file) in place, never a truncated one.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import re
import struct
import tempfile
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from sotalign.errors import (
    InputError,
    MissingDependencyError,
    SotalignError,
    UnderdeterminedWarning,
    closest,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "EMBEDDING_SUFFIXES",
    "INDEX_SUFFIXES",
    "atomic_write",
    "check_finite",
    "check_format_version",
    "check_index",
    "load_embeddings",
    "load_index",
    "load_safetensors",
    "prepare_output_dir",
    "save_embeddings",
    "save_safetensors_atomic",
    "validate_training_inputs",
    "write_json_atomic",
]

PathLike = str | os.PathLike[str]

EMBEDDING_SUFFIXES: tuple[str, ...] = (
    ".npy",
    ".npz",
    ".safetensors",
    ".h5",
    ".hdf5",
    ".parquet",
    ".pq",
)
INDEX_SUFFIXES: tuple[str, ...] = (".npy", ".txt", ".json", ".csv")

#: Bytes of input examined per step by :func:`check_finite` and written per step by
#: :func:`save_embeddings`; bounds their extra memory whatever the array size.
CHUNK_BYTES = 4 * 2**20

_SAFETENSORS_MAX_HEADER = 100_000_000  # the limit of the reference implementation
_FORMATS_EXTRA = "pip install 'sotalign[formats]'"

# The process umask, read once: temporary files are created 0600, and the renamed file should get
# the permissions an ordinary ``open(path, "w")`` would have given it.
_UMASK = os.umask(0)
os.umask(_UMASK)


# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success fsync it and rename it over ``path``.

    A crash or an exception leaves ``path`` as it was (absent or the previous version); the
    temporary file is removed. The rename is atomic on POSIX file systems because the temporary
    file lives in the same folder; the folder is fsync'ed afterwards so the rename survives a
    power loss.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """fsync a folder so that a rename inside it is durable (best effort; not on all systems)."""
    with contextlib.suppress(OSError):
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _json_default(obj: Any) -> Any:
    """JSON encoding for numpy scalars and arrays, torch scalars and paths."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if type(obj).__module__.startswith("torch") and hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def write_json_atomic(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically.

    numpy and torch scalars/arrays and paths are converted to plain JSON values.
    """
    with atomic_write(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=False, default=_json_default)
        fh.write("\n")


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    """A one-line, bounded description of a low-level exception."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _existing_file(path: PathLike, what: str) -> Path:
    """Return ``Path(path)`` if it is a readable, non-empty file; else raise InputError."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file; check the path of the {what}")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not a file; pass the {what} file itself")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise InputError(f"{p}: cannot read it ({_reason(exc)}); check its permissions") from exc
    if size == 0:
        raise InputError(f"{p}: the file is empty (0 bytes); re-create the {what}")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: permission denied; make the file readable (chmod +r)")
    return p


def _require(module: str, path: Path) -> Any:
    """Import an optional package, or say which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{path}: reading {path.suffix} files needs the '{module}' package; install it with:"
            f" {_FORMATS_EXTRA}"
        ) from exc


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach")


def _dtype_of(x: Any) -> tuple[np.dtype[Any] | None, str]:
    """(numpy dtype or None, printable dtype name) for a numpy array or a torch tensor."""
    if _is_torch(x):
        name = str(x.dtype).replace("torch.", "")
        if name == "bfloat16":
            return np.dtype(np.float32), name  # checked like a float; converted when read
        try:
            import torch

            return torch.empty(0, dtype=x.dtype).numpy().dtype, name
        except (TypeError, RuntimeError):
            return None, name
    dt = np.asarray(x).dtype if not hasattr(x, "dtype") else np.dtype(x.dtype)
    return dt, str(dt)


def _check_embedding_meta(
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


# --------------------------------------------------------------------------------------------
# .npy / .npz
# --------------------------------------------------------------------------------------------


def _read_npy_header(fh: IO[bytes], where: str) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
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
            f"{where}: not a valid .npy file ({_reason(exc)}); re-create it with numpy.save"
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


def _npy_nbytes(shape: tuple[int, ...], dtype: np.dtype[Any]) -> int:
    return math.prod(shape) * dtype.itemsize


def _open_npy(p: Path, *, mmap: bool, embeddings: bool) -> np.ndarray:
    """Check an .npy file's header against its size, then memory-map or read it."""
    where = str(p)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        shape, _, dtype = _read_npy_header(fh, where)
        offset = fh.tell()
    if embeddings:
        _check_embedding_meta(shape, dtype, str(dtype), where)
    need = _npy_nbytes(shape, dtype)
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
            f"{where}: cannot read this .npy file ({_reason(exc)}); re-create it with numpy.save"
        ) from exc


def _choose(names: list[str], key: str | None, candidates: list[str], where: str, what: str) -> str:
    """Pick the array to read: ``key``, else "embeddings", else the only candidate."""
    if key is not None:
        if key in names:
            return key
        raise InputError(
            f"{where}: no {what} named '{key}'{closest(key, names)}; it holds:"
            f" {_list(names)}; pass one of these as the key"
        )
    if "embeddings" in names:
        return "embeddings"
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InputError(
            f"{where}: no 2-D float {what} found (it holds: {_list(names)}); store the"
            " embeddings as a 2-D float array named 'embeddings'"
        )
    raise InputError(
        f"{where}: several 2-D {what}s ({_list(candidates)}) and none is named 'embeddings';"
        " pass the one to use as the key"
    )


def _list(names: list[str], limit: int = 8) -> str:
    if not names:
        return "nothing"
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _read_npz(p: Path, key: str | None) -> np.ndarray:
    where = str(p)
    with zipfile.ZipFile(p) as zf:
        members = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
        names = list(members)
        headers: dict[str, tuple[tuple[int, ...], np.dtype[Any], int]] = {}
        for name, info in members.items():
            with zf.open(info) as fh:
                shape, _, dtype = _read_npy_header(fh, f"{where}[{name}]")
                headers[name] = (shape, dtype, fh.tell())
        cands = [n for n, (s, d, _) in headers.items() if len(s) == 2 and d.kind == "f"]
        name = _choose(names, key, cands, where, "array")
        shape, dtype, hlen = headers[name]
        label = f"{where}[{name}]"
        _check_embedding_meta(shape, dtype, str(dtype), label)
        need = _npy_nbytes(shape, dtype)
        if hlen + need > members[name].file_size:
            raise InputError(
                f"{label}: truncated: its header promises {need} bytes of data but the archive"
                f" member holds {max(members[name].file_size - hlen, 0)}; re-create the file"
            )
        with zf.open(members[name]) as fh:
            return np.lib.format.read_array(fh, allow_pickle=False)


# --------------------------------------------------------------------------------------------
# .safetensors
# --------------------------------------------------------------------------------------------

_ST_NUMPY = {
    "F16": "<f2",
    "F32": "<f4",
    "F64": "<f8",
    "I8": "i1",
    "U8": "u1",
    "I16": "<i2",
    "U16": "<u2",
    "I32": "<i4",
    "U32": "<u4",
    "I64": "<i8",
    "U64": "<u8",
    "BOOL": "?",
    "BF16": "<u2",  # raw bits; converted to float32 when read as embeddings
}
_ST_ITEMSIZE = {
    **{k: np.dtype(v).itemsize for k, v in _ST_NUMPY.items()},
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}


def _read_safetensors_header(
    p: Path,
) -> tuple[dict[str, tuple[str, tuple[int, ...], int, int]], dict[str, str], int]:
    """Parse and check a safetensors header.

    Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON
    ``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}``,
    then the data buffer; offsets are relative to the buffer. Returns ``(tensors, metadata,
    data_start)`` with tensors mapping name -> (dtype, shape, begin, end).
    """
    where = str(p)
    size = p.stat().st_size
    bad = "; it is truncated or not a safetensors file: re-create it"
    with open(p, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise InputError(f"{where}: {size} bytes, too short for a safetensors header{bad}")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > _SAFETENSORS_MAX_HEADER:
            raise InputError(
                f"{where}: header length {n} exceeds the file size ({size} bytes){bad}"
            )
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"{where}: unreadable header ({_reason(exc)}){bad}") from exc
    if not isinstance(header, dict):
        raise InputError(f"{where}: header is not a JSON object{bad}")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise InputError(f"{where}: __metadata__ must map strings to strings{bad}")
    data_start = 8 + n
    data_size = size - data_start
    tensors: dict[str, tuple[str, tuple[int, ...], int, int]] = {}
    for name, info in header.items():
        label = f"{where}[{name}]"
        if not isinstance(info, dict):
            raise InputError(f"{label}: tensor entry is not a JSON object{bad}")
        dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in _ST_ITEMSIZE:
            raise InputError(
                f"{label}: unsupported dtype {dtype!r}; store float16, float32 or float64"
            )
        if not (isinstance(shape, list) and all(_is_int(s) and s >= 0 for s in shape)):
            raise InputError(f"{label}: bad shape {shape!r}{bad}")
        if not (
            isinstance(offs, list)
            and len(offs) == 2
            and all(_is_int(o) for o in offs)
            and 0 <= offs[0] <= offs[1] <= data_size
        ):
            raise InputError(
                f"{label}: data offsets {offs!r} fall outside the {data_size}-byte data buffer{bad}"
            )
        need = math.prod(shape) * _ST_ITEMSIZE[dtype]
        if offs[1] - offs[0] != need:
            raise InputError(
                f"{label}: shape {tuple(shape)} {dtype} needs {need} bytes but its offsets span"
                f" {offs[1] - offs[0]}{bad}"
            )
        tensors[name] = (dtype, tuple(shape), offs[0], offs[1])
    return tensors, meta, data_start


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32 (exact: bf16 is the top half of a float32)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _read_safetensors_embeddings(p: Path, key: str | None, mmap: bool) -> np.ndarray:
    where = str(p)
    tensors, _, start = _read_safetensors_header(p)
    names = list(tensors)
    floats = ("F16", "F32", "F64", "BF16")
    cands = [n for n, (d, s, _, _) in tensors.items() if len(s) == 2 and d in floats]
    name = _choose(names, key, cands, where, "tensor")
    dtype, shape, begin, end = tensors[name]
    label = f"{where}[{name}]"
    if dtype in ("F8_E4M3", "F8_E5M2"):
        raise InputError(f"{label}: float8 embeddings are not supported; store float16 or float32")
    np_dtype = np.dtype(np.float32) if dtype == "BF16" else np.dtype(_ST_NUMPY[dtype])
    _check_embedding_meta(shape, np_dtype, "bfloat16" if dtype == "BF16" else str(np_dtype), label)
    raw_dtype = np.dtype(_ST_NUMPY[dtype])
    if mmap and dtype != "BF16":
        return np.memmap(p, dtype=raw_dtype, mode="r", offset=start + begin, shape=shape)
    with open(p, "rb") as fh:
        fh.seek(start + begin)
        buf = bytearray(fh.read(end - begin))
    arr = np.frombuffer(buf, dtype=raw_dtype).reshape(shape)
    return _bf16_to_f32(arr) if dtype == "BF16" else arr


def save_safetensors_atomic(
    path: PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None
) -> None:
    """Write named tensors (torch tensors or numpy arrays) to a safetensors file atomically.

    ``metadata`` values must be strings (safetensors stores ``__metadata__`` as str -> str);
    encode structured values with ``json.dumps`` first. Tensors are copied to contiguous CPU
    memory, so views and shared storage are fine.
    """
    import safetensors.torch
    import torch

    meta = dict(metadata or {})
    bad = [k for k, v in meta.items() if not (isinstance(k, str) and isinstance(v, str))]
    if bad:
        raise TypeError(f"safetensors metadata must map str to str; bad entries: {bad}")
    out: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        tt = t.detach().cpu() if _is_torch(t) else torch.from_numpy(np.ascontiguousarray(t))
        out[name] = tt.contiguous().clone()
    data = safetensors.torch.save(out, metadata=meta or None)
    with atomic_write(path, "wb") as fh:
        fh.write(data)


def load_safetensors(path: PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file into ``(tensors, metadata)``: CPU torch tensors and the
    ``__metadata__`` strings (``{}`` if none).

    The header is checked against the file before any data is trusted; a truncated or corrupt
    file raises InputError naming it.
    """
    p = _existing_file(path, "safetensors file")
    try:
        return _load_safetensors(p)
    except SotalignError:
        raise
    except Exception as exc:
        raise InputError(
            f"{p}: cannot read this safetensors file ({_reason(exc)}); it is truncated or"
            " corrupt: re-create it"
        ) from exc


def _load_safetensors(p: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    import torch

    tensors, meta, start = _read_safetensors_header(p)
    tdtypes = {
        "F16": torch.float16,
        "F32": torch.float32,
        "F64": torch.float64,
        "BF16": torch.bfloat16,
        "I8": torch.int8,
        "U8": torch.uint8,
        "I16": torch.int16,
        "I32": torch.int32,
        "I64": torch.int64,
        "BOOL": torch.bool,
        "U16": getattr(torch, "uint16", None),
        "U32": getattr(torch, "uint32", None),
        "U64": getattr(torch, "uint64", None),
        "F8_E4M3": getattr(torch, "float8_e4m3fn", None),
        "F8_E5M2": getattr(torch, "float8_e5m2", None),
    }
    out: dict[str, torch.Tensor] = {}
    with open(p, "rb") as fh:
        for name, (dtype, shape, begin, end) in tensors.items():
            tdt = tdtypes.get(dtype)
            if tdt is None:
                raise InputError(
                    f"{p}[{name}]: dtype {dtype} is not supported by this torch; upgrade torch"
                )
            if end == begin:
                out[name] = torch.empty(shape, dtype=tdt)
                continue
            fh.seek(start + begin)
            buf = bytearray(fh.read(end - begin))
            out[name] = torch.frombuffer(buf, dtype=tdt).reshape(shape)
    return out, meta


# --------------------------------------------------------------------------------------------
# HDF5 and parquet
# --------------------------------------------------------------------------------------------


def _read_hdf5(p: Path, key: str | None, mmap: bool) -> np.ndarray:
    h5py = _require("h5py", p)
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
                f"{where}: {hint} (it holds: {_list(names)}); name the embeddings dataset"
                " 'embeddings' or pass its name as the key"
            )
        name = _choose(names, key, cands, where, "dataset")
        dset = found[name]
        label = f"{where}[{name}]"
        shape = tuple(dset.shape) if dset.shape is not None else ()
        _check_embedding_meta(shape, dset.dtype, str(dset.dtype), label)
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
            need = _npy_nbytes(shape, dset.dtype)
            if offset + need > p.stat().st_size:
                raise InputError(
                    f"{label}: truncated: data runs past the end of the file; re-create the file"
                )
            return np.memmap(p, dtype=dset.dtype, mode="r", offset=offset, shape=shape)
        return np.asarray(dset[()])


def _read_parquet(p: Path, key: str | None) -> np.ndarray:
    pa = _require("pyarrow", p)
    pq = _require("pyarrow.parquet", p)
    pc = _require("pyarrow.compute", p)
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
        col = _choose(names, key, list_cols, where, "column")
        label = f"{where}[{col}]"
        if not is_list(types[col]):
            raise InputError(
                f"{label}: column holds {types[col]} scalars; pass the list column of"
                " embedding vectors, or store one float column per dimension and pass no key"
            )
        vtype = types[col].value_type
        if not pa.types.is_floating(vtype):
            _check_embedding_meta((0, 0), _arrow_np_dtype(vtype), str(vtype), label)
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
        _check_embedding_meta((n, dim), flat.dtype, str(flat.dtype), label)
        return flat.reshape(n, dim)
    # No list column: every column is one dimension.
    nonfloat = [n for n in names if not pa.types.is_floating(types[n])]
    if nonfloat:
        if len(nonfloat) == len(names):
            _check_embedding_meta(
                (0, 0), _arrow_np_dtype(types[names[0]]), str(types[names[0]]), where
            )
        raise InputError(
            f"{where}: no list column, and columns {_list(nonfloat)} are not floats; store the"
            " embeddings in one list column, or only float columns (one per dimension)"
        )
    table = pf.read()
    cols = []
    for n in names:
        c = table.column(n)
        if c.null_count:
            raise InputError(f"{where}[{n}]: holds nulls; every row needs a full embedding")
        cols.append(c.to_numpy())
    _check_embedding_meta(
        (table.num_rows, len(cols)), np.result_type(*cols) if cols else None, "float", where
    )
    return np.column_stack(cols)


def _arrow_np_dtype(t: Any) -> np.dtype[Any] | None:
    """A numpy dtype of the same kind as an arrow type (for error messages), or None."""
    import pyarrow as pa

    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t):
        return np.dtype("U1")
    if pa.types.is_boolean(t):
        return np.dtype(bool)
    if pa.types.is_integer(t):
        return np.dtype(np.int64)
    return None


# --------------------------------------------------------------------------------------------
# Public readers
# --------------------------------------------------------------------------------------------

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
    p = _existing_file(path, "embeddings")
    suffix = p.suffix.lower()
    kind = _KIND.get(suffix)
    if kind is None:
        raise InputError(
            f"{p}: unknown embeddings file type '{suffix}'{closest(suffix, list(_KIND))}; use"
            f" one of {', '.join(EMBEDDING_SUFFIXES)}"
        )
    try:
        if suffix == ".npy":
            return _open_npy(p, mmap=mmap, embeddings=True)
        if suffix == ".npz":
            arr = _read_npz(p, key)
        elif suffix == ".safetensors":
            arr = _read_safetensors_embeddings(p, key, mmap)
        elif kind == "HDF5":
            arr = _read_hdf5(p, key, mmap)
        else:
            arr = _read_parquet(p, key)
    except SotalignError:
        raise
    except MemoryError as exc:
        raise InputError(
            f"{p}: the file claims an array too large for memory; it is corrupt, or pass"
            " mmap=True / use .npy to memory-map it"
        ) from exc
    except Exception as exc:
        raise InputError(
            f"{p}: cannot read this {kind} file ({_reason(exc)}); it is truncated or corrupt:"
            " re-create it"
        ) from exc
    _check_embedding_meta(tuple(arr.shape), arr.dtype, str(arr.dtype), str(p))
    return arr


_INT_RE = re.compile(r"[+-]?[0-9]+")


def _parse_int(token: str, where: str, line: int) -> int:
    t = token.strip()
    if not _INT_RE.fullmatch(t):
        shown = t if len(t) <= 30 else t[:27] + "..."
        raise InputError(
            f"{where}: line {line}: {shown!r} is not an integer; the index needs one image row"
            " number per caption"
        )
    return int(t)


def load_index(path: PathLike) -> np.ndarray:
    """Read a caption -> image index: entry ``i`` is the row of caption ``i``'s image.

    Formats: ``.npy`` (1-D integer array, or ``(n, 1)``; floats only if all integral), ``.txt``
    (one integer per line), ``.json`` (a list of integers), ``.csv`` (one column; an optional
    header line). Returns a 1-D ``int64`` array of non-negative values. Check it against the data
    with :func:`check_index`.
    """
    p = _existing_file(path, "caption index")
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
            f"{where}: cannot read this index file ({_reason(exc)}); re-create it"
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


def _index_from_npy(p: Path) -> np.ndarray:
    where = str(p)
    arr = _open_npy(p, mmap=False, embeddings=False)
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
    import csv

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
            f"{where}: invalid JSON ({_reason(exc)}); write a list of integers"
        ) from exc
    if not isinstance(data, list):
        raise InputError(
            f"{where}: holds a JSON {type(data).__name__}; the index must be a JSON list of"
            " integers (one image row per caption)"
        )
    for i, v in enumerate(data):
        if not _is_int(v):
            raise InputError(
                f"{where}: entry {i} is {json.dumps(v)[:30]}, not an integer; the index needs"
                " integer image rows"
            )
    return _to_int64(data, where)


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


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
    torch_input = _is_torch(array)
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
            import torch

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
    dt, dname = _dtype_of(x)
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
        _check_embedding_meta(shape, dt, dname, label[role])
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
            " teacher well-posed: add pairs, or raise the ridge",
            UnderdeterminedWarning,
            stacklevel=2,
        )


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


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


def prepare_output_dir(path: PathLike, overwrite: bool = False, *, create: bool = True) -> Path:
    """Check (and by default create) an output folder that can be written to; return it.

    An existing non-empty folder is refused unless ``overwrite``; with ``overwrite`` its files
    are kept and the ones a run writes are replaced atomically (nothing is deleted). Write access
    is checked by creating and removing a temporary file. With ``create=False`` nothing is left
    on disk: a missing folder is not created, and the check runs in its nearest existing parent
    (use this to check the output before reading the inputs, so a bad input writes nothing).
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{p}: exists and is a file; choose a folder path for the output")
    if p.is_dir() and not overwrite:
        try:
            nonempty = any(p.iterdir())
        except OSError as exc:
            raise InputError(f"{p}: cannot list this folder ({_reason(exc)})") from exc
        if nonempty:
            raise InputError(
                f"{p}: the output folder exists and is not empty; choose another folder or"
                " pass --overwrite (overwrite=True) to replace its files"
            )
    probe = p
    if not create:
        probe = p.absolute()
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise InputError(
                f"{p}: cannot create this output folder ({probe} is a file); choose another path"
            )
    try:
        if create:
            p.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".sotalign-write-test.", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise InputError(
            f"{p}: cannot write to this output folder ({_reason(exc)}); choose a folder you"
            " can write to"
        ) from exc
    return p


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
    if _is_torch(array):
        t = array.detach().cpu()
        array = (t.float() if str(t.dtype) == "torch.bfloat16" else t).numpy()
    elif not isinstance(array, np.ndarray):
        array = np.asarray(array)
    shape = tuple(array.shape)
    _check_embedding_meta(shape, array.dtype, str(array.dtype), f"array for {where}")
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
