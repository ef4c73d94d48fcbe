"""From images and captions to embedding files: ``sotalign embed images|texts``.

A run reads its inputs (an image folder or a list of image files; a ``.txt``/``.jsonl``/``.csv``
of texts), embeds them in batches with a frozen encoder (:mod:`sotalign.encoders`) and writes a
``.npy`` matrix (float16 by default) plus side files next to it::

    X.npy           rows = inputs that were embedded, in input order
    X.paths.txt     (images) the file behind each row, row-aligned
    X.failed.tsv    (images, only if some failed) index, path and error of each skipped image
    X.json          encoder (spec, versions, dim), counts, dtype, timing

Large inputs are processed in shards of ``shard_size`` inputs. Each finished shard is written
atomically into ``X.npy.parts/`` (``shard-00000.npy`` then its ``.json`` record, which marks it
complete); rerunning the same command after an interruption skips the finished shards (also
with ``--overwrite``, which only replaces an existing output and discards the shards of a
different run). The
final ``X.npy`` is streamed from the shards through one atomic write, then ``X.npy.parts/`` is
removed. An image that cannot be decoded is reported, listed in ``X.failed.tsv`` and skipped; the
run goes on.

Importing this module does not import torch or load any model.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sotalign.encoders import IMAGE_EXTENSIONS, load_image
from sotalign.errors import ConfigError, InputError, closest
from sotalign.io import atomic_write, save_embeddings, write_json_atomic

TEXT_FIELDS = ("text", "caption", "sentence")
DTYPES = ("float16", "float32")
FLOAT16_MAX = float(np.finfo(np.float16).max)
STATE_VERSION = 1


# --------------------------------------------------------------------------------------------
# reading inputs


def list_images(source: str | Path, recursive: bool = True) -> list[Path]:
    """Image files of a folder (sorted, recursive by default) or of a list file.

    A list file (``.txt``/``.lst``) holds one path per line; relative paths are relative to the
    list file's folder; blank lines and lines starting with ``#`` are ignored.
    """
    src = Path(source).expanduser()
    if src.is_dir():
        it = src.rglob("*") if recursive else src.iterdir()
        files = sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise InputError(
                f"--input {src}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in this folder"
            )
        return files
    if not src.exists():
        raise InputError(f"--input {src}: no such folder or file")
    if src.suffix.lower() in IMAGE_EXTENSIONS:
        raise InputError(
            f"--input {src} is one image; pass its folder or a .txt list of image paths"
        )
    try:
        lines = src.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"--input {src}: not a UTF-8 text list of image paths") from exc
    files = []
    for line in lines:
        s = line.strip()
        if s and not s.startswith("#"):
            p = Path(s).expanduser()
            files.append(p if p.is_absolute() else src.parent / p)
    if not files:
        raise InputError(f"--input {src}: the list holds no image paths")
    return files


def _pick_field(fields: Sequence[str], field_name: str | None, where: str) -> str:
    if field_name is not None:
        if field_name not in fields:
            raise InputError(
                f"{where}: no field {field_name!r} (fields: {', '.join(fields)})"
                + closest(field_name, list(fields))
            )
        return field_name
    for f in TEXT_FIELDS:
        if f in fields:
            return f
    if len(fields) == 1:
        return fields[0]
    raise InputError(
        f"{where}: cannot tell which field holds the text (fields: {', '.join(fields)});"
        " pass --field NAME"
    )


def read_texts(path: str | Path, field_name: str | None = None) -> list[str]:
    """Texts from ``.txt`` (one per line), ``.jsonl`` (strings or objects) or ``.csv``.

    For ``.jsonl`` objects and ``.csv`` columns, ``field_name`` picks the field; by default the
    first of ``text``, ``caption``, ``sentence`` that exists, or the only field. Every line of a
    ``.txt`` is one text (the final newline does not make an extra text), so rows stay aligned
    with the file's lines.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"--input {p}: no such file")
    suffix = p.suffix.lower()
    try:
        raw = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"--input {p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if suffix == ".txt":
        texts = raw.split("\n")
        if texts and texts[-1] == "":
            texts.pop()
        texts = [t.rstrip("\r") for t in texts]
    elif suffix == ".jsonl":
        texts = []
        chosen: str | None = None
        for i, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"--input {p}: line {i} is not JSON ({exc.msg})") from exc
            if isinstance(obj, str):
                texts.append(obj)
                continue
            if not isinstance(obj, dict):
                raise InputError(f"--input {p}: line {i} is neither a string nor an object")
            chosen = chosen or _pick_field(list(obj), field_name, f"--input {p} line {i}")
            value = obj.get(chosen)
            if not isinstance(value, str):
                raise InputError(f"--input {p}: line {i} has no string field {chosen!r}")
            texts.append(value)
    elif suffix in (".csv", ".tsv"):
        reader = csv.DictReader(raw.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        if not reader.fieldnames:
            raise InputError(f"--input {p}: empty file (expected a header row)")
        col = _pick_field(list(reader.fieldnames), field_name, f"--input {p}")
        texts = []
        for i, row in enumerate(reader, 2):
            value = row.get(col)
            if value is None:
                raise InputError(f"--input {p}: row {i} has no value in column {col!r}")
            texts.append(value)
    else:
        raise InputError(f"--input {p}: unsupported text file type; use .txt, .jsonl or .csv")
    if not texts:
        raise InputError(f"--input {p}: no texts found")
    return texts


# --------------------------------------------------------------------------------------------
# the sharded, resumable run


@dataclass
class EmbedResult:
    """What a run wrote: the output, row count, failures and throughput."""

    out: Path
    n_inputs: int
    n_rows: int
    dim: int
    failed: list[tuple[int, str, str]] = field(default_factory=list)
    seconds: float = 0.0
    n_embedded_now: int = 0
    resumed_shards: int = 0

    @property
    def per_second(self) -> float:
        return self.n_embedded_now / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class _Chunk:
    rows: np.ndarray
    ok: list[int]  # positions (global indices) of the rows
    failed: list[tuple[int, str, str]]


def side_paths(out: Path) -> dict[str, Path]:
    """Names of the files written next to ``out`` (``X.npy`` → ``X.paths.txt`` …)."""
    stem = out.with_suffix("")
    return {
        "paths": stem.with_name(stem.name + ".paths.txt"),
        "failed": stem.with_name(stem.name + ".failed.tsv"),
        "meta": stem.with_name(stem.name + ".json"),
        "parts": out.with_name(out.name + ".parts"),
    }


def _fingerprint(kind: str, spec: str, dtype: str, shard_size: int, items: Sequence[str]) -> str:
    h = hashlib.sha256()
    for part in (kind, spec, dtype, str(shard_size), str(len(items))):
        h.update(part.encode() + b"\0")
    for it in items:
        h.update(it.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


def check_output(out: Path, overwrite: bool) -> None:
    if out.suffix != ".npy":
        raise ConfigError(f"--out {out}: the output must be a .npy file")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name ending in .npy")
    if out.exists() and not overwrite:
        raise ConfigError(f"--out {out} exists; pass --overwrite to replace it")


def _open_parts(parts: Path, fingerprint: str, overwrite: bool) -> None:
    state = parts / "state.json"
    if parts.exists() and not any(parts.iterdir()):  # created, then interrupted at once
        parts.rmdir()
    if parts.exists():
        same = False
        if state.is_file():
            try:
                same = json.loads(state.read_text())["fingerprint"] == fingerprint
            except (OSError, ValueError, KeyError):
                same = False
        if same:  # same encoder, inputs, dtype and shard size: finished shards are reused
            return
        if not overwrite:
            raise ConfigError(
                f"{parts} holds the shards of a different run (other encoder, inputs, dtype or"
                " shard size); delete it or pass --overwrite"
            )
        shutil.rmtree(parts)
    parts.mkdir(parents=True)
    write_json_atomic(state, {"version": STATE_VERSION, "fingerprint": fingerprint})


def _run(
    *,
    kind: str,
    items: Sequence[str],
    encode_chunk: Callable[[int, Sequence[str], Callable[[int], None]], _Chunk],
    out: Path,
    encoder_info: dict[str, Any],
    dtype: str,
    shard_size: int,
    overwrite: bool,
    progress: bool,
    keep_shards: bool,
    extra_meta: dict[str, Any],
) -> EmbedResult:
    from tqdm.auto import tqdm

    if dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    if shard_size < 1:
        raise ConfigError(f"--shard-size {shard_size}: must be at least 1")
    sides = side_paths(out)
    n = len(items)
    fp = _fingerprint(kind, encoder_info["spec"], dtype, shard_size, items)
    _open_parts(sides["parts"], fp, overwrite)
    n_shards = (n + shard_size - 1) // shard_size
    done = [
        (sides["parts"] / f"shard-{s:05d}.json").is_file()
        and (sides["parts"] / f"shard-{s:05d}.npy").is_file()
        for s in range(n_shards)
    ]
    initial = sum(min(shard_size, n - s * shard_size) for s in range(n_shards) if done[s])
    unit = "img" if kind == "images" else "text"
    bar = tqdm(
        total=n,
        initial=initial,
        unit=unit,
        desc=f"embed {kind}",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
        smoothing=0.1,
    )
    t0 = time.perf_counter()
    n_now = 0
    try:
        for s in range(n_shards):
            if done[s]:
                continue
            lo, hi = s * shard_size, min(n, (s + 1) * shard_size)
            chunk = encode_chunk(lo, items[lo:hi], bar.update)
            n_now += hi - lo
            rows = chunk.rows
            if dtype == "float16":
                peak = float(np.abs(rows).max()) if rows.size else 0.0
                if not np.isfinite(peak) or peak > FLOAT16_MAX:
                    raise ConfigError(
                        f"embeddings reach {peak:.3g}, beyond float16; pass --dtype float32"
                    )
            shard = sides["parts"] / f"shard-{s:05d}.npy"
            if rows.shape[0]:
                save_embeddings(shard, rows, dtype=dtype)
            else:  # every input of the shard failed
                with atomic_write(shard) as fh:
                    np.save(fh, rows.astype(dtype))
            write_json_atomic(
                sides["parts"] / f"shard-{s:05d}.json",
                {"ok": chunk.ok, "failed": [list(f) for f in chunk.failed]},
            )
            for idx, path, err in chunk.failed:
                bar.write(f"skipped {kind[:-1]} {idx} ({path}): {err}", file=sys.stderr)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0

    # assemble: stream the shards into one .npy through a single atomic write
    ok: list[int] = []
    failed: list[tuple[int, str, str]] = []
    shapes = []
    for s in range(n_shards):
        rec = json.loads((sides["parts"] / f"shard-{s:05d}.json").read_text())
        ok += rec["ok"]
        failed += [tuple(f) for f in rec["failed"]]  # type: ignore[misc]
        shapes.append(np.load(sides["parts"] / f"shard-{s:05d}.npy", mmap_mode="r").shape)
    dim = int(encoder_info["dim"])
    n_rows = sum(sh[0] for sh in shapes)
    if failed:
        with atomic_write(sides["failed"], "w") as fh:
            fh.write("index\tpath\terror\n")
            fh.writelines(f"{i}\t{p}\t{e}\n" for i, p, e in failed)
    elif sides["failed"].exists():
        sides["failed"].unlink()
    if n_rows == 0:
        raise InputError(
            f"none of the {n} {kind} could be embedded; the errors are in {sides['failed']}"
        )
    with atomic_write(out) as fh:
        header = {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": (n_rows, dim)}
        np.lib.format.write_array_header_1_0(fh, header)
        for s in range(n_shards):
            arr = np.load(sides["parts"] / f"shard-{s:05d}.npy", mmap_mode="r")
            if arr.shape[0]:
                if arr.shape[1] != dim:
                    raise InputError(f"shard {s} of {out} has dimension {arr.shape[1]} != {dim}")
                fh.write(np.ascontiguousarray(arr).tobytes())
    if kind == "images":
        with atomic_write(sides["paths"], "w") as fh:
            fh.writelines(items[i] + "\n" for i in ok)
    result = EmbedResult(
        out=out,
        n_inputs=n,
        n_rows=n_rows,
        dim=dim,
        failed=failed,
        seconds=seconds,
        n_embedded_now=n_now,
        resumed_shards=sum(done),
    )
    write_json_atomic(
        sides["meta"],
        {
            "kind": kind,
            "encoder": encoder_info,
            "n_inputs": n,
            "n_rows": n_rows,
            "dim": dim,
            "dtype": dtype,
            "n_failed": len(failed),
            "shard_size": shard_size,
            "seconds_last_run": round(seconds, 3),
            "per_second_last_run": round(result.per_second, 3) if n_now else None,
            **extra_meta,
        },
    )
    if not keep_shards:
        shutil.rmtree(sides["parts"], ignore_errors=True)
    return result


def embed_image_files(
    encoder: Any,
    files: Sequence[str | Path],
    out: str | Path,
    *,
    batch_size: int = 64,
    dtype: str = "float16",
    shard_size: int = 10_000,
    workers: int = 4,
    overwrite: bool = False,
    progress: bool = True,
    keep_shards: bool = False,
) -> EmbedResult:
    """Embed image files with an :class:`~sotalign.encoders.ImageEncoder` into ``out`` (.npy).

    Decoding and preprocessing run in ``workers`` threads, a few batches ahead of the model.
    Images that fail to decode are skipped and listed (see the module docstring).
    """
    out = Path(out)
    check_output(out, overwrite)
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: must be at least 1")
    items = [str(f) for f in files]
    if not items:
        raise InputError("no images to embed")

    def prepare(start: int, paths: Sequence[str]) -> tuple[Any, list[int], list[tuple]]:
        import torch

        tensors, ok, failed = [], [], []
        for j, p in enumerate(paths):
            try:
                tensors.append(encoder.preprocess(load_image(p)))
                ok.append(start + j)
            except InputError as exc:
                failed.append((start + j, p, str(exc).split(": ", 1)[-1]))
            except Exception as exc:  # a decoder that succeeds but preprocessing that chokes
                failed.append((start + j, p, f"{type(exc).__name__}: {exc}"))
        return (torch.stack(tensors) if tensors else None), ok, failed

    def encode_chunk(lo: int, paths: Sequence[str], tick: Callable[[int], None]) -> _Chunk:
        rows, ok, failed = [np.zeros((0, encoder.dim), np.float32)], [], []
        starts = range(0, len(paths), batch_size)
        with ThreadPoolExecutor(max(1, workers)) as pool:
            pending: deque[Future] = deque()
            it = iter(starts)
            for st in it:
                pending.append(pool.submit(prepare, lo + st, paths[st : st + batch_size]))
                if len(pending) > max(1, workers):
                    break
            while pending:
                batch, b_ok, b_failed = pending.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.submit(prepare, lo + nxt, paths[nxt : nxt + batch_size]))
                if batch is not None:
                    rows.append(encoder.forward(batch))
                ok += b_ok
                failed += b_failed
                tick(len(b_ok) + len(b_failed))
        return _Chunk(np.concatenate(rows), ok, failed)

    return _run(
        kind="images",
        items=items,
        encode_chunk=encode_chunk,
        out=out,
        encoder_info=encoder.info(),
        dtype=dtype,
        shard_size=shard_size,
        overwrite=overwrite,
        progress=progress,
        keep_shards=keep_shards,
        extra_meta={"batch_size": batch_size},
    )


def embed_text_list(
    encoder: Any,
    texts: Sequence[str],
    out: str | Path,
    *,
    batch_size: int = 128,
    dtype: str = "float16",
    shard_size: int = 50_000,
    overwrite: bool = False,
    progress: bool = True,
    keep_shards: bool = False,
) -> EmbedResult:
    """Embed texts with a :class:`~sotalign.encoders.TextEncoder` into ``out`` (.npy)."""
    out = Path(out)
    check_output(out, overwrite)
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: must be at least 1")
    if not texts:
        raise InputError("no texts to embed")

    def encode_chunk(lo: int, chunk: Sequence[str], tick: Callable[[int], None]) -> _Chunk:
        rows = [np.zeros((0, encoder.dim), np.float32)]
        for st in range(0, len(chunk), batch_size):
            batch = list(chunk[st : st + batch_size])
            rows.append(encoder.encode(batch, batch_size=len(batch)))
            tick(len(batch))
        return _Chunk(np.concatenate(rows), list(range(lo, lo + len(chunk))), [])

    return _run(
        kind="texts",
        items=list(texts),
        encode_chunk=encode_chunk,
        out=out,
        encoder_info=encoder.info(),
        dtype=dtype,
        shard_size=shard_size,
        overwrite=overwrite,
        progress=progress,
        keep_shards=keep_shards,
        extra_meta={"batch_size": batch_size},
    )
