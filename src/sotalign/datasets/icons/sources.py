"""The raw inputs of the icons build: the ``@iconify/json`` package and its sets.

Which sets are kept (the excluded prefixes are filtered from ``collections.json`` before any
set file is opened), reading a set file, ``npm pack`` and unpacking the tarball (excluded set
files are never extracted).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sotalign.encoders import sha256_file
from sotalign.errors import ConfigError, InputError, MissingDependencyError
from sotalign.io import atomic_write

PACKAGE = "@iconify/json"
ICONIFY_VERSION = "2.2.553"  # the version the counts in the docs were taken from
EXCLUDED_PREFIXES: frozenset[str] = frozenset(
    {
        "mdi",
        "mdi-light",
        "tabler",
        "lucide",
        "material-symbols",
        "material-symbols-light",
        "fluent",
    }
)
EXCLUDED_PREFIX_STARTS: tuple[str, ...] = ("fluent-emoji",)
SKIPPED_SET_TAGS: tuple[str, ...] = ("Contains Animations",)
_ID_RE = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")


# --------------------------------------------------------------------------------------------
# which sets
# --------------------------------------------------------------------------------------------
def is_excluded(prefix: str) -> bool:
    """True for a set that must never be read, rendered or embedded (see the module doc)."""
    p = prefix.strip().lower()
    return p in EXCLUDED_PREFIXES or p.startswith(EXCLUDED_PREFIX_STARTS)


@dataclass(frozen=True)
class IconSet:
    """One kept icon set, as its index entry describes it."""

    prefix: str
    name: str
    license: str  # SPDX id, else the licence title
    category: str | None
    palette: bool


def read_collections(root: Path) -> dict[str, dict[str, Any]]:
    """``collections.json`` of an unpacked package (``prefix → info``)."""
    path = Path(root) / "collections.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(
            f"{path} not found: pass the root of an unpacked @iconify/json package"
        ) from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected an object of icon sets")
    return data


def select_sets(
    collections: Mapping[str, Mapping[str, Any]],
) -> tuple[list[IconSet], dict[str, str]]:
    """The kept sets (sorted by prefix) and the reason each other listed set is skipped.

    Excluded prefixes are dropped first, from the index alone; nothing of theirs is opened.
    """
    kept: list[IconSet] = []
    skipped: dict[str, str] = {}
    for prefix in sorted(collections):
        if is_excluded(prefix):
            skipped[prefix] = "excluded"
            continue
        info = collections[prefix] or {}
        if not _ID_RE.fullmatch(prefix):
            skipped[prefix] = "invalid prefix"
        elif info.get("hidden"):
            skipped[prefix] = "hidden (deprecated)"
        elif any(t in SKIPPED_SET_TAGS for t in info.get("tags", []) or []):
            skipped[prefix] = "animated"
        else:
            lic = info.get("license") or {}
            kept.append(
                IconSet(
                    prefix=prefix,
                    name=str(info.get("name", prefix)),
                    license=str(lic.get("spdx") or lic.get("title") or "unknown"),
                    category=info.get("category"),
                    palette=bool(info.get("palette", False)),
                )
            )
    return kept, skipped


def read_set(root: Path, prefix: str) -> dict[str, Any]:
    """The IconifyJSON data of one set; refuses an excluded prefix without opening anything."""
    if is_excluded(prefix):
        raise ConfigError(f"icon set '{prefix}' is excluded from the icons benchmark")
    if not _ID_RE.fullmatch(prefix):
        raise InputError(f"invalid icon set prefix {prefix!r}")
    path = Path(root) / "json" / f"{prefix}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"icon set file {path} not found (listed in collections.json)") from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("icons"), dict):
        raise InputError(f"{path}: not an IconifyJSON icon set (no 'icons' object)")
    return data


# --------------------------------------------------------------------------------------------
# the package
# --------------------------------------------------------------------------------------------
def npm_pack(dest: Path, version: str = ICONIFY_VERSION) -> Path:
    """``npm pack @iconify/json@<version>`` into ``dest``; an existing tarball is reused."""
    dest.mkdir(parents=True, exist_ok=True)
    if version != "latest":
        have = dest / f"iconify-json-{version}.tgz"
        if have.is_file():
            return have
    npm = shutil.which("npm")
    if npm is None:
        raise MissingDependencyError(
            "npm not found: install Node.js/npm, or pass --source DIR (an unpacked "
            "@iconify/json package) or --source FILE.tgz"
        )
    try:
        res = subprocess.run(
            [npm, "pack", f"{PACKAGE}@{version}", "--pack-destination", str(dest), "--json"],
            capture_output=True,
            text=True,
            check=False,
            timeout=1800,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise InputError(f"npm pack {PACKAGE}@{version} failed: {exc}") from exc
    if res.returncode != 0:
        tail = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(f"npm pack {PACKAGE}@{version} failed: {tail}")
    try:
        filename = json.loads(res.stdout)[0]["filename"]
    except (ValueError, KeyError, IndexError) as exc:
        raise InputError(f"npm pack {PACKAGE}@{version}: unexpected output") from exc
    path = dest / Path(filename).name
    if not path.is_file():
        raise InputError(f"npm pack reported {filename} but {path} does not exist")
    return path


def unpack(tarball: Path, dest: Path) -> Path:
    """Unpack the index and the set files of non-excluded sets into ``dest`` (resumable).

    Only ``package/package.json``, ``package/collections.json`` and ``package/json/<prefix>.json``
    with a valid, non-excluded prefix are written; excluded sets are never extracted.
    """
    digest = sha256_file(tarball)
    stamp = dest / ".unpacked"
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "json").mkdir(parents=True)
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                parts = member.name.split("/")
                if parts[:1] != ["package"]:
                    continue
                rel = parts[1:]
                if rel in (["package.json"], ["collections.json"]):
                    target = dest / rel[0]
                elif len(rel) == 2 and rel[0] == "json" and rel[1].endswith(".json"):
                    prefix = rel[1][: -len(".json")]
                    if is_excluded(prefix) or not _ID_RE.fullmatch(prefix):
                        continue
                    target = dest / "json" / rel[1]
                else:
                    continue
                src = tar.extractfile(member)
                if src is None:
                    continue
                with atomic_write(target) as fh:
                    shutil.copyfileobj(src, fh)
    except (OSError, tarfile.TarError) as exc:
        raise InputError(f"{tarball}: cannot unpack ({exc})") from exc
    stamp.write_text(digest + "\n")
    return dest


def resolve_source(out_dir: Path, source: Path | None, version: str) -> tuple[Path, dict[str, Any]]:
    """The unpacked package root and a description of where it came from."""
    if source is None:
        tarball = npm_pack(out_dir / "npm", version)
    elif Path(source).is_file():
        tarball = Path(source)
    else:
        root = Path(source)
        read_collections(root)  # fails early, naming the folder
        pkg = _package_json(root)
        return root, {"package": PACKAGE, "path": str(root), "version": pkg.get("version")}
    root = unpack(tarball, out_dir / "iconify")
    pkg = _package_json(root)
    return root, {
        "package": PACKAGE,
        "version": pkg.get("version"),
        "tarball": tarball.name,
        "sha256": sha256_file(tarball),
    }


def _package_json(root: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((root / "package.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}
