"""Captions and the corpus of the icons benchmark: pure caption functions and reading the
kept sets into records. See :mod:`sotalign.datasets.icons` for the caption rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .sources import _ID_RE, IconSet, read_collections, read_set, select_sets

MAX_ALIASES = 3
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
