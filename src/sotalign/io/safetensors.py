"""safetensors files: a checked header parser, the embeddings reader and :func:`load_safetensors`.

The header is parsed here, not by the ``safetensors`` package, so that every claim in it (length,
offsets, dtype, shape) is checked against the file before any data is read; see
:func:`read_safetensors_header` for the layout.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, SotalignError
from .files import PathLike, choose_array, existing_file, is_int, reason
from .validate import check_embedding_meta

__all__ = ["load_safetensors", "read_safetensors_embeddings", "read_safetensors_header"]

_SAFETENSORS_MAX_HEADER = 100_000_000  # the limit of the reference implementation

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


def read_safetensors_header(
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
        raise InputError(f"{where}: unreadable header ({reason(exc)}){bad}") from exc
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
        if not (isinstance(shape, list) and all(is_int(s) and s >= 0 for s in shape)):
            raise InputError(f"{label}: bad shape {shape!r}{bad}")
        if not (
            isinstance(offs, list)
            and len(offs) == 2
            and all(is_int(o) for o in offs)
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


def _bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32 (exact: bf16 is the top half of a float32)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def read_safetensors_embeddings(p: Path, key: str | None, mmap: bool) -> np.ndarray:
    """Read the embeddings tensor (``key``, else ``embeddings``, else the only 2-D float
    tensor); memory-mapped when ``mmap``, except bfloat16, which is converted to float32."""
    where = str(p)
    tensors, _, start = read_safetensors_header(p)
    names = list(tensors)
    floats = ("F16", "F32", "F64", "BF16")
    cands = [n for n, (d, s, _, _) in tensors.items() if len(s) == 2 and d in floats]
    name = choose_array(names, key, cands, where, "tensor")
    dtype, shape, begin, end = tensors[name]
    label = f"{where}[{name}]"
    if dtype in ("F8_E4M3", "F8_E5M2"):
        raise InputError(f"{label}: float8 embeddings are not supported; store float16 or float32")
    np_dtype = np.dtype(np.float32) if dtype == "BF16" else np.dtype(_ST_NUMPY[dtype])
    check_embedding_meta(shape, np_dtype, "bfloat16" if dtype == "BF16" else str(np_dtype), label)
    raw_dtype = np.dtype(_ST_NUMPY[dtype])
    if mmap and dtype != "BF16":
        return np.memmap(p, dtype=raw_dtype, mode="r", offset=start + begin, shape=shape)
    with open(p, "rb") as fh:
        fh.seek(start + begin)
        buf = bytearray(fh.read(end - begin))
    arr = np.frombuffer(buf, dtype=raw_dtype).reshape(shape)
    return _bf16_to_f32(arr) if dtype == "BF16" else arr


def load_safetensors(path: PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file into ``(tensors, metadata)``: CPU torch tensors and the
    ``__metadata__`` strings (``{}`` if none).

    The header is checked against the file before any data is trusted; a truncated or corrupt
    file raises InputError naming it.
    """
    p = existing_file(path, "safetensors file")
    try:
        return _load_safetensors(p)
    except SotalignError:
        raise
    except Exception as exc:
        raise InputError(
            f"{p}: cannot read this safetensors file ({reason(exc)}); it is truncated or"
            " corrupt: re-create it"
        ) from exc


def _load_safetensors(p: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors, meta, start = read_safetensors_header(p)
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
