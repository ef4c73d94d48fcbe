"""Building the icons cache (fetch, read, render, embed with resumable shards, manifest) and
the command line ``python -m sotalign.datasets.icons``."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sotalign.embed import embed_image_files, embed_text_list, side_paths
from sotalign.encoders import load_image_encoder, load_text_encoder, sha256_file
from sotalign.errors import InputError, SotalignError
from sotalign.io import atomic_write, write_json_atomic

from .corpus import IconRecord, read_corpus
from .load import (
    BUILD_COMMAND,
    FAILED_FILE,
    FORMAT_VERSION,
    ICONS_FILE,
    MANIFEST_FILE,
    STAGES_FILE,
    default_cache_dir,
)
from .render import BACKGROUND, RENDER_SIZE, png_path, render_icons, renderer_versions
from .sources import (
    EXCLUDED_PREFIX_STARTS,
    EXCLUDED_PREFIXES,
    ICONIFY_VERSION,
    PACKAGE,
    resolve_source,
)
from .splits import SAMPLE_SEED, sample_evenly

IMAGE_ENCODER = "efficientnet-lite0"
TEXT_ENCODER = "st:all-MiniLM-L6-v2"


def _fingerprint(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode() + b"\0")
    return h.hexdigest()


def _stage_done(out_dir: Path, stage: str, fp: str, outputs: Sequence[Path]) -> bool:
    try:
        stages = json.loads((out_dir / STAGES_FILE).read_text())
    except (OSError, ValueError):
        return False
    return stages.get(stage) == fp and all(p.is_file() for p in outputs)


def _mark_stage(out_dir: Path, stage: str, fp: str) -> None:
    path = out_dir / STAGES_FILE
    try:
        stages = json.loads(path.read_text())
    except (OSError, ValueError):
        stages = {}
    stages[stage] = fp
    write_json_atomic(path, stages)


def _spec(spec_or_encoder: Any) -> str:
    return spec_or_encoder if isinstance(spec_or_encoder, str) else str(spec_or_encoder.spec)


def _encoder(spec_or_encoder: Any, modality: str, device: str) -> Any:
    """The encoder object (loaded only when a stage has work to do)."""
    if not isinstance(spec_or_encoder, str):
        return spec_or_encoder
    load = load_image_encoder if modality == "image" else load_text_encoder
    return load(spec_or_encoder, device=device)


def _embedding_file(kind: str, spec: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9.-]+", "-", spec.split(":", 1)[-1]).strip("-")
    return f"{kind}_{safe}.npy"


def build_icons(
    out_dir: Path | None = None,
    *,
    source: Path | None = None,
    version: str = ICONIFY_VERSION,
    limit: int | None = None,
    max_images: int | None = None,
    seed: int = SAMPLE_SEED,
    embed: bool = True,
    image_encoder: Any = IMAGE_ENCODER,
    text_encoder: Any = TEXT_ENCODER,
    device: str = "cpu",
    batch_size: int = 64,
    shard_size: int = 2048,
    workers: int = 2,
    progress: bool = True,
    keep_shards: bool = False,
) -> dict[str, Any]:
    """Build the icons cache in ``out_dir`` and return its manifest (see the module doc).

    ``source``: an unpacked ``@iconify/json`` folder or a tarball instead of ``npm pack``.
    ``limit``/``max_images``: build only that many icons, sampled evenly over the sets.
    ``embed=False`` stops after rendering (no embeddings; such a cache cannot be loaded).
    ``image_encoder``/``text_encoder``: spec strings or encoder objects (for tests).
    """
    t_start = time.time()
    seconds: dict[str, float] = {}
    for what, v in (("--limit", limit), ("--max-images", max_images)):
        if v is not None and v < 1:
            raise InputError(f"{what} must be a positive number of icons, got {v}")
    out_dir = Path(out_dir) if out_dir is not None else default_cache_dir(limit)
    out_dir.mkdir(parents=True, exist_ok=True)

    t = time.time()
    root, source_info = resolve_source(out_dir, Path(source) if source else None, version)
    seconds["fetch"] = time.time() - t

    t = time.time()
    corpus = read_corpus(root)
    if not corpus.records:
        raise InputError(f"{root}: no icons in the kept sets")
    seconds["read"] = time.time() - t
    ids = [r.id for r in corpus.records]
    cap = min(v for v in (limit, max_images, len(ids)) if v is not None)
    sel = sample_evenly(ids, cap, seed)
    records = [corpus.records[i] for i in sel]

    t = time.time()
    png_dir = out_dir / "png"
    ok, failed, n_rendered_now = render_icons(
        root, corpus.sets, records, png_dir, progress=progress
    )
    seconds["render"] = time.time() - t
    with atomic_write(out_dir / FAILED_FILE, "w") as fh:
        fh.write("id\terror\n")
        fh.writelines(f"{i}\t{' '.join(e.split())}\n" for i, e in failed)
    rendered = [r for r, k in zip(records, ok, strict=True) if k]
    if not rendered:
        raise InputError("no icon could be rendered; see " + str(out_dir / FAILED_FILE))

    kept = rendered
    images_meta: dict[str, Any] | None = None
    texts_meta: dict[str, Any] | None = None
    n_embed_failed = 0
    x_file = y_file = ""
    outputs = [ICONS_FILE, FAILED_FILE]
    if embed:
        x_spec = _spec(image_encoder)
        x_file = _embedding_file("images", x_spec)
        x_path = out_dir / x_file
        files = [str(png_path(png_dir, r.id)) for r in rendered]
        fp = _fingerprint(x_spec, files)
        t = time.time()
        if not _stage_done(out_dir, "images", fp, [x_path, side_paths(x_path)["paths"]]):
            embed_image_files(
                _encoder(image_encoder, "image", device),
                files,
                x_path,
                batch_size=batch_size,
                shard_size=shard_size,
                workers=workers,
                overwrite=True,
                progress=progress,
                keep_shards=keep_shards,
            )
            _mark_stage(out_dir, "images", fp)
        seconds["embed_images"] = time.time() - t
        done = set(side_paths(x_path)["paths"].read_text(encoding="utf-8").splitlines())
        kept = [r for r, f in zip(rendered, files, strict=True) if f in done]
        n_embed_failed = len(rendered) - len(kept)
        images_meta = json.loads(side_paths(x_path)["meta"].read_text())

        y_spec = _spec(text_encoder)
        y_file = _embedding_file("texts", y_spec)
        y_path = out_dir / y_file
        captions = [r.caption for r in kept]
        fp = _fingerprint(y_spec, captions)
        t = time.time()
        if not _stage_done(out_dir, "texts", fp, [y_path]):
            embed_text_list(
                _encoder(text_encoder, "text", device),
                captions,
                y_path,
                shard_size=max(shard_size, 8192),
                overwrite=True,
                progress=progress,
                keep_shards=keep_shards,
            )
            _mark_stage(out_dir, "texts", fp)
        seconds["embed_texts"] = time.time() - t
        texts_meta = json.loads(side_paths(y_path)["meta"].read_text())
        outputs += [x_file, y_file]

    set_of = {s.prefix: s for s in corpus.sets}
    with atomic_write(out_dir / ICONS_FILE, "w") as fh:
        fh.write("id\tset\tlicense\tgroup\tcaption\n")
        for r in kept:
            fh.write(f"{r.id}\t{r.prefix}\t{set_of[r.prefix].license}\t{r.group}\t{r.caption}\n")

    def count(recs: Iterable[IconRecord]) -> Counter[str]:
        return Counter(r.prefix for r in recs)

    c_corpus, c_sel, c_rend, c_kept = (
        count(corpus.records),
        count(records),
        count(rendered),
        count(kept),
    )
    per_set = {
        s.prefix: {
            "name": s.name,
            "license": s.license,
            "category": s.category,
            "palette": s.palette,
            "corpus": c_corpus[s.prefix],
            "selected": c_sel[s.prefix],
            "rendered": c_rend[s.prefix],
            "kept": c_kept[s.prefix],
        }
        for s in corpus.sets
    }

    def by_license(c: Counter[str]) -> dict[str, int]:
        out: Counter[str] = Counter()
        for p, k in c.items():
            out[set_of[p].license] += k
        return dict(out.most_common())

    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as pkg_version

    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for pkg in ("pillow", "sotalign"):
        try:
            versions[pkg] = pkg_version(pkg)
        except PackageNotFoundError:
            versions[pkg] = "unknown"
    versions.update(renderer_versions())
    seconds["total"] = time.time() - t_start
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "dataset": "iconify-icons",
        "embedded": bool(embed),
        "n": len(kept),
        "limit": limit,
        "max_images": max_images,
        "sample_seed": seed,
        "source": source_info,
        "excluded_prefixes": sorted(EXCLUDED_PREFIXES),
        "excluded_prefix_starts": list(EXCLUDED_PREFIX_STARTS),
        "skipped_sets": corpus.skipped_sets,
        "n_sets": len(corpus.sets),
        "n_corpus": len(corpus.records),
        "n_selected": len(records),
        "n_rendered": len(rendered),
        "n_render_failed": len(failed),
        "n_embed_failed": n_embed_failed,
        "per_license_corpus": by_license(c_corpus),
        "per_license": by_license(c_kept),
        "per_set": per_set,
        "render": {
            "size": RENDER_SIZE,
            "background": BACKGROUND,
            "monochrome": "black on white (currentColor -> #000000) when info.palette is false",
            "rendered_now": n_rendered_now,
            "per_second": (
                round(n_rendered_now / seconds["render"], 2) if n_rendered_now else None
            ),
        },
        "images": None
        if images_meta is None
        else {"file": x_file, **{k: images_meta.get(k) for k in ("encoder", "dim", "dtype")}},
        "texts": None
        if texts_meta is None
        else {"file": y_file, **{k: texts_meta.get(k) for k in ("encoder", "dim", "dtype")}},
        "versions": versions,
        "sha256": {name: sha256_file(out_dir / name) for name in outputs},
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }
    write_json_atomic(out_dir / MANIFEST_FILE, manifest)
    return manifest


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
def _iter_summary(manifest: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    for k in ("n", "n_sets", "n_corpus", "n_selected", "n_render_failed", "n_embed_failed"):
        yield k, manifest.get(k)
    yield "per_license", manifest.get("per_license")
    yield "seconds", manifest.get("seconds")


def main(argv: list[str] | None = None) -> int:
    """``python -m sotalign.datasets.icons [--out DIR] [--limit N] [--max-images N] ...``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog=BUILD_COMMAND,
        description="Build the icons benchmark cache: @iconify/json icons rendered to PNG, "
        "EfficientNet-Lite0 image and all-MiniLM-L6-v2 caption embeddings.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="cache folder (default $SOTALIGN_CACHE/icons, else ~/.cache/sotalign/icons; "
        "icons-limitN with --limit)",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="a small N-icon subset (into icons-limitN)"
    )
    parser.add_argument(
        "--max-images",
        type=int,
        default=None,
        help="at most N icons, sampled evenly over the sets (a build that fits a time budget)",
    )
    parser.add_argument("--seed", type=int, default=SAMPLE_SEED, help="seed of the subset")
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="an unpacked @iconify/json folder or its .tgz instead of running npm pack",
    )
    parser.add_argument(
        "--iconify-version",
        default=ICONIFY_VERSION,
        help=f"version of {PACKAGE} to pack (default {ICONIFY_VERSION}; 'latest' allowed)",
    )
    parser.add_argument("--no-embed", action="store_true", help="stop after rendering")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=2, help="image decoding threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--keep-shards", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = args.out if args.out is not None else default_cache_dir(args.limit)
    try:
        manifest = build_icons(
            out,
            source=args.source,
            version=args.iconify_version,
            limit=args.limit,
            max_images=args.max_images,
            seed=args.seed,
            embed=not args.no_embed,
            device=args.device,
            batch_size=args.batch_size,
            shard_size=args.shard_size,
            workers=args.workers,
            progress=not args.no_progress,
            keep_shards=args.keep_shards,
        )
    except SotalignError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    print(json.dumps(dict(_iter_summary(manifest)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
