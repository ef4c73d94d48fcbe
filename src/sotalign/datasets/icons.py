"""An image–text benchmark with large pools: open-source icons and the words that name them.

Source: the npm package ``@iconify/json`` (IconifyJSON), which bundles a few hundred open-source
icon sets. Each set is one file ``json/<prefix>.json`` holding ``icons`` (``name → {body, width?,
height?, left?, top?, hidden?}``), set-level ``width``/``height``/``left``/``top``, ``aliases``
(``alias → {parent, …}``), optionally ``categories`` (``category → [names]``) and theme
``suffixes``/``prefixes``, and ``info`` (``name``, ``license`` ``{title, spdx}``, ``category``,
``palette``); ``collections.json`` indexes the sets.

Corpus
------
* sets: those listed in ``collections.json``, minus :data:`EXCLUDED_PREFIXES` and every prefix
  that starts with one of :data:`EXCLUDED_PREFIX_STARTS` (these are never unpacked, read,
  rendered or embedded: they are filtered from the index before any set file is opened), minus
  the sets the index marks ``hidden`` (deprecated copies of other sets) and the sets tagged
  ``Contains Animations`` (a static render shows an unfinished first frame). Set files that the
  index does not list are ignored;
* icons: every icon of a kept set that is not ``hidden``; its id is ``<prefix>:<name>``. Aliases
  are not icons (they repeat their parent's image); an alias without transformations (only
  ``parent``) lends its name to its parent's caption.

Images
------
Each icon becomes ``<svg viewBox="left top width height" width="224" height="224">body</svg>``
(icon dimensions over set dimensions, IconifyJSON defaults 0, 0, 16, 16; the icon is fitted and
centred), rendered by resvg (``pip install 'sotalign[icons]'``) to a 224 × 224 RGB PNG on white.
Monochrome sets (``info.palette`` false) are drawn black on white (``currentColor`` → black);
coloured sets keep their own colours. An icon that fails to render, or renders blank (fewer
than :data:`MIN_INK_PIXELS` non-white pixels), is skipped and listed in ``render_failed.tsv``.

Captions (:func:`icon_caption`)
-------------------------------
``"<name words>[, <alias words>…]. <icon categories>, <set category>"``, e.g.
``"arrow left bold. arrows, ui"``: the name split on ``-``; size tokens of a theme suffix or
prefix the set declares are dropped (``24px``, ``20``, ``4x3``: the render has one size) and a
trailing ``<n>px`` token is dropped; style words are kept (``bold`` is visible). Up to
:data:`MAX_ALIASES` plain aliases that add words follow. Then the icon's categories in the set
(CamelCase split, lower-cased) and the set's ``info.category`` without its grid/size/status
words (``"UI 24px"`` → ``ui``, ``"Archive / Unmaintained"`` → nothing). The name words without
the declared theme affix are the icon's **caption group** (:func:`name_words` with
``keep_style=False``): the ``home`` icons of forty sets fall in one group, and so do ``bell``,
``bell-bold`` and ``bell-fill`` of a set that declares ``bold`` and ``fill`` as theme suffixes.

Protocol (:func:`split_icons`, pure and seeded; sizes shrink for small builds)
-------------------------------------------------------------------------------
Icons are ordered by a seeded hash of their id, so an icon's place depends on its id, not on the
order of the corpus.

* ``test``: 5,000 icons spread over the sets in proportion to their sizes (largest remainders,
  at least one per set while the test size allows), evaluation only; :func:`caption_groups`
  gives each test icon the id of its caption group, so retrieval is scored per icon
  (``text_to_image=None`` in :func:`sotalign.eval.retrieval_metrics`) and per group
  (:func:`grouped_retrieval_metrics`: every icon sharing the caption group is a hit);
* ``validation``: the next 1,000 icons; ``pair_pool``: the next 10,000, from which
  :func:`draw_pairs` draws nested training pairs (for one seed, 200 pairs are the first 200 of
  1,000);
* the remainder splits into two disjoint halves: the unpaired images (only their image
  embeddings are used) and the unpaired texts (only their caption embeddings), so no hidden true
  pair exists between the pools;
* ``shifted``: the same test/validation/pair pool, but the remainder is split by *set*: the sets
  are dealt in seeded order to whichever side holds fewer icons, unpaired images come from one
  side's sets and unpaired texts from the other's (no set on both sides).

Build
-----
``python -m sotalign.datasets.icons [--limit N] [--max-images N]`` (or
``python scripts/build_icons.py``): ``npm pack @iconify/json@<version>`` into the cache (the only
network access), unpack the kept set files, read the corpus, render the PNGs, embed images with
EfficientNet-Lite0 and captions with all-MiniLM-L6-v2 through :mod:`sotalign.embed` (resumable
shards, float16), and write ``manifest.json`` (package versions, sha256 of inputs and outputs,
counts per set and per licence, seconds per stage). Every stage resumes: existing PNGs are kept,
finished embedding shards are reused. ``--max-images N`` builds the N-icon subset sampled evenly
over the sets (:func:`sample_evenly`: every set gives ``min(size, q)`` icons) for a time budget;
``--limit N`` builds the same kind of subset into ``icons-limitN`` for quick tests. The cache is
``$SOTALIGN_CACHE/icons`` (default ``~/.cache/sotalign/icons``): ``icons.tsv`` (id, set, licence,
caption group, caption per row), ``images_efficientnet-lite0.npy``,
``texts_all-MiniLM-L6-v2.npy``, ``render_failed.tsv``, ``png/<prefix>/<name>.png`` and the
package under ``npm/`` and ``iconify/``. EfficientNet-Lite0 dominates the cost (about 17
images/s on 2 idle cores).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from sotalign.datasets.wordnet import cache_root
from sotalign.errors import ConfigError, InputError, MissingDependencyError, SotalignError
from sotalign.io import atomic_write, write_json_atomic

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

RENDER_SIZE = 224
BACKGROUND = "#ffffff"
MIN_INK_PIXELS = 16  # pixels darker than 250 in some channel; fewer: a blank render
MAX_ALIASES = 3
DEFAULT_BOX = {"left": 0.0, "top": 0.0, "width": 16.0, "height": 16.0}

IMAGE_ENCODER = "efficientnet-lite0"
TEXT_ENCODER = "st:all-MiniLM-L6-v2"
ICONS_FILE = "icons.tsv"
FAILED_FILE = "render_failed.tsv"
MANIFEST_FILE = "manifest.json"
STAGES_FILE = "stages.json"
FORMAT_VERSION = 1
BUILD_COMMAND = "python -m sotalign.datasets.icons"

N_TEST = 5000
N_VAL = 1000
N_PAIR_POOL = 10000
SPLIT_SEED = 0
SAMPLE_SEED = 0

_ID_RE = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")
_SIZE_TOKEN_RE = re.compile(r"\d+(?:px)?|\d+x\d+")
_PX_TOKEN_RE = re.compile(r"\d+px")
_CATEGORY_NOISE = (
    "other / mixed grid",
    "mixed grid",
    "archive / unmaintained",
    "high detail",
    "multicolor",
)
_CAMEL_RE = re.compile(r"(?<=[a-z])(?=[A-Z])")


# --------------------------------------------------------------------------------------------
# locations
# --------------------------------------------------------------------------------------------
def default_cache_dir(limit: int | None = None) -> Path:
    """Folder of the icons cache; a ``--limit N`` build goes to ``icons-limitN``."""
    return cache_root() / ("icons" if limit is None else f"icons-limit{int(limit)}")


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
# captions (pure)
# --------------------------------------------------------------------------------------------
def name_words(
    name: str,
    suffixes: Iterable[str] = (),
    prefixes: Iterable[str] = (),
    *,
    keep_style: bool = True,
) -> str:
    """The words of an icon name: split on ``-``, size tokens of a declared theme dropped.

    ``suffixes``/``prefixes`` are the set's declared theme affixes (IconifyJSON ``suffixes``
    and ``prefixes`` keys). Of the longest declared suffix (and prefix) that the name carries,
    the size tokens (``24``, ``24px``, ``4x3``) are dropped and the style words kept (all of it
    is dropped with ``keep_style=False``: the caption-group key); then a trailing ``<n>px``
    token is dropped. At least one word is always kept.

    >>> name_words("arrow-left-bold", ["bold"])
    'arrow left bold'
    >>> name_words("bell-20-solid", ["20-solid", "solid"])
    'bell solid'
    >>> name_words("bell-20-solid", ["20-solid", "solid"], keep_style=False)
    'bell'
    >>> name_words("hospital-24px")
    'hospital'
    """

    def kept(affix: list[str]) -> list[str]:
        return [t for t in affix if keep_style and not _SIZE_TOKEN_RE.fullmatch(t)]

    tokens = [t for t in name.lower().split("-") if t]
    for suffix in sorted({s for s in suffixes if s}, key=len, reverse=True):
        st = suffix.lower().split("-")
        if len(tokens) > len(st) and tokens[-len(st) :] == st:
            tokens = tokens[: -len(st)] + kept(st)
            break
    for prefix in sorted({p for p in prefixes if p}, key=len, reverse=True):
        pt = prefix.lower().split("-")
        if len(tokens) > len(pt) and tokens[: len(pt)] == pt:
            tokens = kept(pt) + tokens[len(pt) :]
            break
    while len(tokens) > 1 and _PX_TOKEN_RE.fullmatch(tokens[-1]):
        tokens.pop()
    return " ".join(tokens) if tokens else name.lower()


def category_words(category: str) -> str:
    """An icon category as words: CamelCase split, lower-cased (``FoodDrink`` → ``food drink``)."""
    return " ".join(_CAMEL_RE.sub(" ", category).lower().split())


def clean_set_category(category: str | None) -> str | None:
    """A set's ``info.category`` without grid, size and status words (None when nothing is left).

    >>> clean_set_category("UI 16px / 32px"), clean_set_category("Holiday / Seasonal")
    ('ui', 'holiday, seasonal')
    >>> clean_set_category("Archive / Unmaintained") is None
    True
    """
    if not category:
        return None
    text = category.lower()
    for phrase in _CATEGORY_NOISE:
        text = text.replace(phrase, " ")
    text = re.sub(r"\b\d+px\b", " ", text)
    parts = [" ".join(p.split()) for p in text.split("/")]
    out = ", ".join(p for p in parts if p)
    return out or None


def icon_caption(
    name: str,
    *,
    categories: Sequence[str] = (),
    set_category: str | None = None,
    aliases: Sequence[str] = (),
    suffixes: Iterable[str] = (),
    prefixes: Iterable[str] = (),
) -> str:
    """The caption of an icon (see the module doc), e.g. ``"arrow left bold. arrows, ui"``.

    >>> icon_caption("arrow-left-bold", categories=["Arrows"], set_category="UI 24px")
    'arrow left bold. arrows, ui'
    >>> icon_caption("house", aliases=["home", "home-house"], set_category="Archive / Unmaintained")
    'house, home'
    """
    suffixes, prefixes = list(suffixes), list(prefixes)
    head = name_words(name, suffixes, prefixes)
    words = [head]
    seen = set(head.split())
    for alias in aliases:
        if len(words) > MAX_ALIASES:
            break
        w = name_words(alias, suffixes, prefixes)
        if set(w.split()) <= seen:
            continue  # adds no word
        words.append(w)
        seen |= set(w.split())
    tail: list[str] = []
    for c in [category_words(c) for c in categories] + [clean_set_category(set_category)]:
        if c and c not in tail:
            tail.append(c)
    return ", ".join(words) + (". " + ", ".join(tail) if tail else "")


# --------------------------------------------------------------------------------------------
# the corpus
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IconRecord:
    """One icon of the corpus: id (``prefix:name``), caption and caption group."""

    id: str
    prefix: str
    name: str
    caption: str
    group: str


def plain_aliases(data: Mapping[str, Any]) -> dict[str, list[str]]:
    """``icon name → alias names`` for aliases without transformations (chains resolved)."""
    aliases = data.get("aliases") or {}
    icons = data.get("icons") or {}
    out: dict[str, list[str]] = {}
    for alias, spec in aliases.items():
        target, hops = alias, 0
        while target in aliases and hops < 8:
            s = aliases[target]
            if not isinstance(s, dict) or set(s) != {"parent"}:
                target = ""
                break
            target, hops = s["parent"], hops + 1
        if target in icons and isinstance(spec, dict) and _ID_RE.fullmatch(alias):
            out.setdefault(target, []).append(alias)
    return out


def set_records(prefix: str, data: Mapping[str, Any], set_category: str | None) -> list[IconRecord]:
    """The corpus records of one set: every non-hidden icon with a valid name, sorted by name."""
    cats: dict[str, list[str]] = {}
    for cat, names in (data.get("categories") or {}).items():
        for n in names or []:
            cats.setdefault(n, []).append(cat)
    # an alias that repeats the set's prefix ("bx-bug-alt" in set bx) is read without it
    aliases = {k: [a.removeprefix(f"{prefix}-") for a in v] for k, v in plain_aliases(data).items()}
    suffixes = list((data.get("suffixes") or {}).keys())
    prefixes = list((data.get("prefixes") or {}).keys())
    out = []
    for name in sorted(data["icons"]):
        icon = data["icons"][name]
        if not isinstance(icon, dict) or icon.get("hidden") or not _ID_RE.fullmatch(name):
            continue
        caption = icon_caption(
            name,
            categories=cats.get(name, []),
            set_category=set_category,
            aliases=aliases.get(name, []),
            suffixes=suffixes,
            prefixes=prefixes,
        )
        group = name_words(name, suffixes, prefixes, keep_style=False)
        out.append(IconRecord(f"{prefix}:{name}", prefix, name, caption, group))
    return out


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------
class RenderError(InputError):
    """An icon that cannot be rendered (bad SVG, or a blank image)."""


def _num(v: Any) -> str:
    f = float(v)
    return str(int(f)) if f.is_integer() else repr(f)


def icon_svg(
    icon: Mapping[str, Any],
    set_data: Mapping[str, Any],
    *,
    monochrome: bool,
    size: int = RENDER_SIZE,
) -> str:
    """A standalone SVG document of one IconifyJSON icon, ``size`` pixels square.

    The view box is the icon's ``left top width height`` (falling back to the set's, then to
    0 0 16 16); the icon is fitted and centred. Monochrome: ``currentColor`` becomes black.
    """
    if any(icon.get(k) for k in ("rotate", "hFlip", "vFlip")):
        raise RenderError("icon transformations (rotate/flip) are not supported")
    box = {k: icon.get(k, set_data.get(k, d)) for k, d in DEFAULT_BOX.items()}
    if float(box["width"]) <= 0 or float(box["height"]) <= 0:
        raise RenderError(f"empty view box {box}")
    body = str(icon.get("body", ""))
    if monochrome:
        body = re.sub("currentcolor", "#000000", body, flags=re.IGNORECASE)
    view = " ".join(_num(box[k]) for k in ("left", "top", "width", "height"))
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="{size}" height="{size}" viewBox="{view}" color="#000000">{body}</svg>'
    )


def _resvg() -> Any:
    try:
        import resvg_py
    except ImportError as exc:
        raise MissingDependencyError(
            "rendering icons needs resvg: pip install 'sotalign[icons]' (or resvg-py)"
        ) from exc
    return resvg_py


def render_svg(svg: str, size: int = RENDER_SIZE) -> Any:
    """Render an SVG document to a ``size × size`` RGB ``PIL.Image`` on white.

    Raises :class:`RenderError` if resvg refuses the SVG or the result is blank.
    """
    from PIL import Image

    resvg = _resvg()
    try:
        png = resvg.svg_to_bytes(svg_string=svg, background=BACKGROUND, skip_system_fonts=True)
        img = Image.open(io.BytesIO(bytes(png)))
        img.load()
    except Exception as exc:  # resvg raises ValueError; a corrupt PNG anything
        raise RenderError(f"render failed ({type(exc).__name__}: {exc})") from exc
    img = img.convert("RGB")  # opaque already: resvg fills the background
    if img.size != (size, size):
        raise RenderError(f"rendered {img.size[0]}x{img.size[1]} instead of {size}x{size}")
    ink = int((np.asarray(img).min(axis=2) < 250).sum())
    if ink < MIN_INK_PIXELS:
        raise RenderError(f"blank render ({ink} non-white pixels)")
    return img


def renderer_versions() -> dict[str, str]:
    """Versions of the renderer (resvg-py and the resvg it wraps)."""
    from importlib.metadata import version

    resvg = _resvg()
    return {
        "resvg-py": version("resvg-py"),
        "resvg": str(getattr(resvg, "__resvg_version__", "unknown")),
    }


def png_path(png_dir: Path, icon_id: str) -> Path:
    """Where the PNG of ``prefix:name`` lives: ``png_dir/prefix/name.png``."""
    prefix, _, name = icon_id.partition(":")
    if not (_ID_RE.fullmatch(prefix) and _ID_RE.fullmatch(name)):
        raise InputError(f"invalid icon id {icon_id!r}")
    return png_dir / prefix / f"{name}.png"


# --------------------------------------------------------------------------------------------
# sampling and splits (pure)
# --------------------------------------------------------------------------------------------
def _hash_keys(keys: Sequence[str], seed: int) -> np.ndarray:
    """A seeded pseudo-random uint64 per key (the first 8 bytes of sha256(seed, key))."""
    out = np.empty(len(keys), dtype=np.uint64)
    s = f"{int(seed)}\0".encode()
    for i, k in enumerate(keys):
        out[i] = int.from_bytes(hashlib.sha256(s + k.encode()).digest()[:8], "big")
    return out


def hash_order(keys: Sequence[str], seed: int) -> np.ndarray:
    """Positions of ``keys`` sorted by their seeded hash (ties by position): a seeded shuffle
    in which each key's place depends on the key, not on the order of the list."""
    return np.lexsort((np.arange(len(keys)), _hash_keys(keys, seed))).astype(np.int64)


def _prefixes_of(ids: Sequence[str]) -> np.ndarray:
    return np.array([i.partition(":")[0] for i in ids], dtype=object)


def spread_quotas(sizes: np.ndarray, total: int, tie: np.ndarray) -> np.ndarray:
    """Integer quotas summing to ``total`` (each ≤ its size): one per non-empty group when
    ``total`` allows, the rest in proportion to the sizes left (largest remainders, ties broken
    by ``tie``, lowest first)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if total >= int(sizes.sum()):
        return sizes.copy()
    base = np.minimum(sizes, 1) if total >= int((sizes > 0).sum()) else np.zeros_like(sizes)
    left = sizes - base
    total_left = total - int(base.sum())
    n_left = int(left.sum())
    exact = left * (total_left / n_left) if n_left else left.astype(float)
    q = np.minimum(np.floor(exact).astype(np.int64), left)
    rest = total_left - int(q.sum())
    for j in np.lexsort((tie, -(exact - q))):
        if rest <= 0:
            break
        if q[j] < left[j]:
            q[j] += 1
            rest -= 1
    return base + q


def sample_evenly(ids: Sequence[str], n: int, seed: int = SAMPLE_SEED) -> np.ndarray:
    """Sorted positions of ``n`` icons spread evenly over the sets (water-filling).

    Every set gives ``min(size, q)`` icons with the largest ``q`` that fits, and the icons left
    over go one per set to the sets with room, in a seeded order; inside a set the icons are
    taken in seeded hash order. ``n`` at least the corpus size returns everything.
    """
    m = len(ids)
    if n >= m:
        return np.arange(m, dtype=np.int64)
    if n < 1:
        raise InputError(f"cannot sample {n} icons: give a positive number")
    prefixes = _prefixes_of(ids)
    sets, inv = np.unique(prefixes, return_inverse=True)
    sizes = np.bincount(inv, minlength=len(sets))
    # water level: largest q with sum(min(size, q)) <= n
    lo, hi = 0, int(sizes.max())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if int(np.minimum(sizes, mid).sum()) <= n:
            lo = mid
        else:
            hi = mid - 1
    quota = np.minimum(sizes, lo)
    extra = n - int(quota.sum())
    for j in hash_order([str(s) for s in sets], seed + 1):
        if extra <= 0:
            break
        if quota[j] < sizes[j]:
            quota[j] += 1
            extra -= 1
    order = hash_order(ids, seed)
    taken = np.zeros(len(sets), dtype=np.int64)
    keep = np.zeros(m, dtype=bool)
    for i in order:
        s = inv[i]
        if taken[s] < quota[s]:
            taken[s] += 1
            keep[i] = True
    return np.flatnonzero(keep).astype(np.int64)


def split_sizes(n: int) -> tuple[int, int, int]:
    """Default ``(n_test, n_val, n_pair_pool)`` for a corpus of ``n`` icons: 5,000 / 1,000 /
    10,000, shrunk to n/5, n/20 and n/5 for small corpora (both unpaired pools keep ~30%)."""
    return min(N_TEST, n // 5), min(N_VAL, n // 20), min(N_PAIR_POOL, n // 5)


def split_icons(
    ids: Sequence[str],
    *,
    n_test: int | None = None,
    n_val: int | None = None,
    n_pair_pool: int | None = None,
    seed: int = SPLIT_SEED,
) -> dict[str, np.ndarray]:
    """The protocol's index sets (positions into ``ids``, ids ``prefix:name``; module doc).

    Keys: ``test``, ``validation``, ``pair_pool``, ``unpaired_images``, ``unpaired_texts``,
    ``shifted_unpaired_images``, ``shifted_unpaired_texts``. The first five are pairwise
    disjoint; the shifted pools are disjoint from each other and from the first three, and no
    set has icons in both shifted pools.
    """
    n = len(ids)
    if len(set(ids)) != n:
        raise InputError("icon ids must be unique")
    d_test, d_val, d_pool = split_sizes(n)
    n_test = d_test if n_test is None else int(n_test)
    n_val = d_val if n_val is None else int(n_val)
    n_pair_pool = d_pool if n_pair_pool is None else int(n_pair_pool)
    if min(n_test, n_val, n_pair_pool) < 0 or n - n_test - n_val - n_pair_pool < 2:
        raise InputError(
            f"icon split sizes test={n_test}, validation={n_val}, pair pool={n_pair_pool} do "
            f"not fit a corpus of {n} icons: use smaller sizes or a larger build"
        )
    prefixes = _prefixes_of(ids)
    sets, inv = np.unique(prefixes, return_inverse=True)
    sizes = np.bincount(inv, minlength=len(sets)).astype(np.int64)
    set_tie = np.argsort(hash_order([str(s) for s in sets], seed + 2))
    quota = spread_quotas(sizes, n_test, set_tie)
    order = hash_order(ids, seed)
    taken = np.zeros(len(sets), dtype=np.int64)
    is_test = np.zeros(n, dtype=bool)
    for i in order:
        s = inv[i]
        if taken[s] < quota[s]:
            taken[s] += 1
            is_test[i] = True
    rest = order[~is_test[order]]
    val = rest[:n_val]
    pool = rest[n_val : n_val + n_pair_pool]
    remainder = rest[n_val + n_pair_pool :]
    half = len(remainder) // 2
    # shifted: deal the sets in seeded order to the side holding fewer remainder icons
    counts = np.bincount(inv[remainder], minlength=len(sets))
    side = np.zeros(len(sets), dtype=np.int8)
    load = [0, 0]
    for j in hash_order([str(s) for s in sets], seed + 3):
        if counts[j] == 0:
            continue
        k = 0 if load[0] <= load[1] else 1
        side[j] = k
        load[k] += int(counts[j])
    rem_side = side[inv[remainder]]
    return {
        "test": np.sort(order[is_test[order]]),
        "validation": val,
        "pair_pool": pool,
        "unpaired_images": remainder[:half],
        "unpaired_texts": remainder[half : 2 * half],
        "shifted_unpaired_images": remainder[rem_side == 0],
        "shifted_unpaired_texts": remainder[rem_side == 1],
    }


def caption_groups(keys: Sequence[str]) -> np.ndarray:
    """Integer group id per key (equal keys, equal ids; numbered by first occurrence)."""
    ids: dict[str, int] = {}
    return np.array([ids.setdefault(k, len(ids)) for k in keys], dtype=np.int64)


def grouped_retrieval_metrics(
    image_emb: Any,
    text_emb: Any,
    groups: Any,
    ks: Sequence[int] = (1, 5, 10),
    chunk: int = 2048,
) -> dict[str, Any]:
    """Recall@k in percent where every item of the query's caption group counts as a hit.

    Row i of ``image_emb`` and of ``text_emb`` is icon i, ``groups[i]`` its caption group, and
    ``S[i, j]`` the cosine of image i and caption j. With ``G(q)`` the icons of q's group:

    * text→image, caption j: ``r_j = #{i ∉ G(j) : S[i, j] ≥ max_{i' ∈ G(j)} S[i', j]}``;
    * image→text, image i: ``r_i = #{j ∉ G(i) : S[i, j] ≥ max_{j' ∈ G(i)} S[i, j']}``;

    ``R@k = 100 · mean(r < k)``; ties count against the query, as in
    :func:`sotalign.eval.retrieval_metrics`, whose one-caption-per-image figures these equal
    when every group has one icon. Same output layout (``i2t``, ``t2i``, ``mean_R@1``).
    """
    img = np.asarray(image_emb, dtype=np.float32)
    txt = np.asarray(text_emb, dtype=np.float32)
    g = np.asarray(groups).reshape(-1)
    if img.ndim != 2 or img.shape != txt.shape or g.shape[0] != img.shape[0] or not len(g):
        raise InputError(
            f"grouped retrieval needs row-aligned images, texts and groups (got "
            f"{img.shape}, {txt.shape}, {g.shape})"
        )
    if not (np.isfinite(img).all() and np.isfinite(txt).all()):
        raise InputError("embeddings hold NaN or inf; refusing to score them")

    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    img, txt = unit(img), unit(txt)
    n = len(g)
    ranks = {"i2t": np.empty(n, np.int64), "t2i": np.empty(n, np.int64)}
    for name, query, gallery in (("i2t", img, txt), ("t2i", txt, img)):
        for s in range(0, n, chunk):
            sims = query[s : s + chunk] @ gallery.T
            own = g[s : s + chunk, None] == g[None, :]
            best = np.where(own, sims, -np.inf).max(axis=1, keepdims=True)
            ranks[name][s : s + chunk] = ((sims >= best) & ~own).sum(axis=1)
    out: dict[str, Any] = {
        d: {f"R@{k}": 100.0 * float((r < k).mean()) for k in ks} for d, r in ranks.items()
    }
    out["mean_R@1"] = 0.5 * (out["i2t"]["R@1"] + out["t2i"]["R@1"])
    return out


# --------------------------------------------------------------------------------------------
# the package
# --------------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    digest = _sha256(tarball)
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
        "sha256": _sha256(tarball),
    }


def _package_json(root: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((root / "package.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


# --------------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------------
@dataclass
class Corpus:
    """The icons of the kept sets, in order (sorted by set, then name)."""

    sets: list[IconSet]
    skipped_sets: dict[str, str]
    records: list[IconRecord]


def read_corpus(root: Path) -> Corpus:
    """Read the index and every kept set of an unpacked package (excluded sets: never)."""
    sets, skipped = select_sets(read_collections(root))
    records: list[IconRecord] = []
    kept: list[IconSet] = []
    for s in sets:
        if not (Path(root) / "json" / f"{s.prefix}.json").is_file():
            skipped[s.prefix] = "no set file"
            continue
        recs = set_records(s.prefix, read_set(root, s.prefix), s.category)
        if not recs:
            skipped[s.prefix] = "no icons"
            continue
        kept.append(s)
        records.extend(recs)
    return Corpus(kept, dict(sorted(skipped.items())), records)


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="icon",
        disable=not enabled,
        file=sys.stderr,
        mininterval=5.0,
    )


def render_icons(
    root: Path,
    sets: Sequence[IconSet],
    records: Sequence[IconRecord],
    png_dir: Path,
    *,
    size: int = RENDER_SIZE,
    progress: bool = True,
) -> tuple[list[bool], list[tuple[str, str]], int]:
    """Render the PNG of every record that lacks one; returns (ok per record, failures, number
    rendered now). A set file is read only if one of its icons still needs rendering."""
    by_set: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_set.setdefault(r.prefix, []).append(i)
    info = {s.prefix: s for s in sets}
    ok = [False] * len(records)
    failed: list[tuple[str, str]] = []
    n_now = 0
    bar = _progress(len(records), "render", progress)
    for prefix, idx in by_set.items():
        todo = []
        for i in idx:
            if png_path(png_dir, records[i].id).is_file():
                ok[i] = True
            else:
                todo.append(i)
        bar.update(len(idx) - len(todo))
        if not todo:
            continue
        data = read_set(root, prefix)
        mono = not info[prefix].palette
        for i in todo:
            rec = records[i]
            try:
                img = render_svg(icon_svg(data["icons"][rec.name], data, monochrome=mono), size)
                with atomic_write(png_path(png_dir, rec.id)) as fh:
                    img.save(fh, format="PNG")
                ok[i] = True
                n_now += 1
            except RenderError as exc:
                failed.append((rec.id, str(exc)))
            bar.update(1)
    bar.close()
    return ok, failed, n_now


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
    from sotalign.encoders import load_image_encoder, load_text_encoder

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
        from sotalign.embed import embed_image_files, embed_text_list, side_paths

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
        "sha256": {name: _sha256(out_dir / name) for name in outputs},
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }
    write_json_atomic(out_dir / MANIFEST_FILE, manifest)
    return manifest


# --------------------------------------------------------------------------------------------
# load + protocol
# --------------------------------------------------------------------------------------------
@dataclass
class IconsData:
    """The icons benchmark: both embeddings of every icon, captions and the split indices.

    ``x`` (image embeddings) and ``y`` (caption embeddings) are float16 memory maps, row i both
    of icon ``ids[i]``; the accessors return float32 copies. ``test_groups[k]`` is the caption
    group of test icon ``test_idx[k]`` (for :func:`grouped_retrieval_metrics`). With
    ``shifted=True`` the unpaired pools come from disjoint sets of icon sets.
    """

    x: np.ndarray
    y: np.ndarray
    ids: list[str]
    sets: np.ndarray
    captions: list[str]
    groups: list[str]
    licenses: list[str]
    test_idx: np.ndarray
    val_idx: np.ndarray
    pair_pool_idx: np.ndarray
    unpaired_images_idx: np.ndarray
    unpaired_texts_idx: np.ndarray
    test_groups: np.ndarray
    shifted: bool = False
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def _rows(self, arr: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return np.asarray(arr[idx], dtype=np.float32)

    def test(self) -> tuple[np.ndarray, np.ndarray]:
        """Test pairs ``(images, captions)``, row k of one matching row k of the other."""
        return self._rows(self.x, self.test_idx), self._rows(self.y, self.test_idx)

    def validation(self) -> tuple[np.ndarray, np.ndarray]:
        """Validation pairs (never drawn as training pairs)."""
        return self._rows(self.x, self.val_idx), self._rows(self.y, self.val_idx)

    def unpaired_images(self) -> np.ndarray:
        """Image embeddings of the unpaired image pool."""
        return self._rows(self.x, self.unpaired_images_idx)

    def unpaired_texts(self) -> np.ndarray:
        """Caption embeddings of the unpaired text pool (icons disjoint from the image pool)."""
        return self._rows(self.y, self.unpaired_texts_idx)

    def summary(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "sets": len(set(self.sets.tolist())),
            "test": len(self.test_idx),
            "test_caption_groups": len(np.unique(self.test_groups)),
            "validation": len(self.val_idx),
            "pair_pool": len(self.pair_pool_idx),
            "unpaired_images": len(self.unpaired_images_idx),
            "unpaired_texts": len(self.unpaired_texts_idx),
            "shifted": self.shifted,
            "d_x": int(self.x.shape[1]),
            "d_y": int(self.y.shape[1]),
        }


class PairDraw(NamedTuple):
    """Training pairs from the pair pool: image rows, caption rows and their icon indices."""

    images: np.ndarray
    texts: np.ndarray
    indices: np.ndarray


def _missing(path: Path, what: str) -> InputError:
    hint = ""
    m = re.fullmatch(r"icons-limit(\d+)", path.name)
    if m:
        hint = f" --limit {m.group(1)}"
    return InputError(
        f"icons benchmark cache {what} in {path}: build it with "
        f"'{BUILD_COMMAND}{hint} --out {path}' (needs npm and 'pip install sotalign[icons]'; "
        "the full build takes hours of CPU, --max-images N builds a subset)"
    )


def load_icons(
    cache: str | os.PathLike[str] | None = None,
    *,
    shifted: bool = False,
    n_test: int | None = None,
    n_val: int | None = None,
    n_pair_pool: int | None = None,
    split_seed: int = SPLIT_SEED,
    verify: bool = False,
) -> IconsData:
    """Load the cached icons benchmark and its splits (``shifted``: the set-shifted pools).

    ``cache`` is the folder written by the build (default :func:`default_cache_dir`).
    ``verify=True`` re-checks the sha256 of every file.
    """
    path = Path(cache).expanduser() if cache is not None else default_cache_dir()
    mpath = path / MANIFEST_FILE
    if not mpath.is_file():
        raise _missing(path, "not found")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise _missing(path, f"has an unreadable {MANIFEST_FILE} ({exc})") from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise _missing(path, f"has format {manifest.get('format_version')!r}; rebuild it")
    if not manifest.get("embedded") or not manifest.get("images") or not manifest.get("texts"):
        raise _missing(path, "holds no embeddings (built with --no-embed)")
    x_file, y_file = manifest["images"]["file"], manifest["texts"]["file"]
    for name in (ICONS_FILE, x_file, y_file):
        if not (path / name).is_file():
            raise _missing(path, f"lacks {name}")
        if verify and _sha256(path / name) != manifest["sha256"].get(name):
            raise _missing(path, f"has a corrupted {name} (sha256 mismatch)")
    x = np.load(path / x_file, mmap_mode="r", allow_pickle=False)
    y = np.load(path / y_file, mmap_mode="r", allow_pickle=False)
    with open(path / ICONS_FILE, encoding="utf-8") as fh:
        next(fh)
        rows = [line.rstrip("\n").split("\t", 4) for line in fh]
    n = int(manifest["n"])
    if x.shape[0] != n or y.shape[0] != n or len(rows) != n or any(len(r) != 5 for r in rows):
        raise _missing(
            path,
            f"is inconsistent (manifest n={n}, images {x.shape}, texts {y.shape}, "
            f"{len(rows)} icons); rebuild it",
        )
    ids = [r[0] for r in rows]
    s = split_icons(ids, n_test=n_test, n_val=n_val, n_pair_pool=n_pair_pool, seed=split_seed)
    groups = [r[3] for r in rows]
    pre = "shifted_" if shifted else ""
    return IconsData(
        x=x,
        y=y,
        ids=ids,
        sets=np.array([r[1] for r in rows], dtype=object),
        captions=[r[4] for r in rows],
        groups=groups,
        licenses=[r[2] for r in rows],
        test_idx=s["test"],
        val_idx=s["validation"],
        pair_pool_idx=s["pair_pool"],
        unpaired_images_idx=s[pre + "unpaired_images"],
        unpaired_texts_idx=s[pre + "unpaired_texts"],
        test_groups=caption_groups([groups[i] for i in s["test"]]),
        shifted=shifted,
        manifest=manifest,
        path=path,
    )


def draw_pairs(data: IconsData, n_pairs: int, seed: int = 0) -> PairDraw:
    """``n_pairs`` training pairs from the pair pool, seeded; nested across ``n_pairs``."""
    pool = data.pair_pool_idx
    if not 1 <= n_pairs <= len(pool):
        raise InputError(f"n_pairs={n_pairs} is outside 1..{len(pool)} (the icons pair pool)")
    idx = pool[np.random.default_rng(seed).permutation(len(pool))[:n_pairs]]
    return PairDraw(data._rows(data.x, idx), data._rows(data.y, idx), idx)


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
