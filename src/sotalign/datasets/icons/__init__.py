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
order of the corpus. The splits hash in their own domain (:data:`SPLIT_DOMAIN`), independent of
the order in which :func:`sample_evenly` chose a ``--max-images`` subset: with one shared order a
capped set's sampled icons would all come first, filling the pair pool with the large sets and
the unpaired pools with the small ones.

* ``test``: 5,000 icons spread over the sets in proportion to their sizes (largest remainders,
  at least one per set while the test size allows), evaluation only; :func:`caption_groups`
  gives each test icon the id of its caption group, so retrieval is scored per icon
  (``text_to_image=None`` in :func:`sotalign.eval.retrieval_metrics`) and per group
  (:func:`sotalign.eval.grouped_retrieval_metrics`: every icon sharing the caption group is a hit);
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

Modules: :mod:`.sources` (the package, the kept sets), :mod:`.corpus` (captions, records),
:mod:`.render` (SVG → PNG), :mod:`.splits` (sampling, splits, caption groups),
:mod:`.build` (the cache, the command line), :mod:`.load` (the cache → splits).
"""

from __future__ import annotations

from .build import (
    IMAGE_ENCODER,
    TEXT_ENCODER,
    build_icons,
    main,
)
from .corpus import (
    MAX_ALIASES,
    Corpus,
    IconRecord,
    category_words,
    clean_set_category,
    icon_caption,
    name_words,
    plain_aliases,
    read_corpus,
    set_records,
)
from .load import (
    BUILD_COMMAND,
    FAILED_FILE,
    FORMAT_VERSION,
    ICONS_FILE,
    MANIFEST_FILE,
    IconsData,
    PairDraw,
    default_cache_dir,
    draw_pairs,
    load_icons,
)
from .render import (
    BACKGROUND,
    MIN_INK_PIXELS,
    RENDER_SIZE,
    RenderError,
    icon_svg,
    png_path,
    render_icons,
    render_svg,
    renderer_versions,
)
from .sources import (
    EXCLUDED_PREFIX_STARTS,
    EXCLUDED_PREFIXES,
    ICONIFY_VERSION,
    PACKAGE,
    SKIPPED_SET_TAGS,
    IconSet,
    is_excluded,
    npm_pack,
    read_collections,
    read_set,
    resolve_source,
    select_sets,
    unpack,
)
from .splits import (
    N_PAIR_POOL,
    N_TEST,
    N_VAL,
    SAMPLE_SEED,
    SPLIT_DOMAIN,
    SPLIT_SEED,
    caption_groups,
    hash_order,
    sample_evenly,
    split_icons,
    split_sizes,
    spread_quotas,
)

__all__ = [
    "BACKGROUND",
    "BUILD_COMMAND",
    "EXCLUDED_PREFIXES",
    "EXCLUDED_PREFIX_STARTS",
    "FAILED_FILE",
    "FORMAT_VERSION",
    "ICONIFY_VERSION",
    "ICONS_FILE",
    "IMAGE_ENCODER",
    "MANIFEST_FILE",
    "MAX_ALIASES",
    "MIN_INK_PIXELS",
    "N_PAIR_POOL",
    "N_TEST",
    "N_VAL",
    "PACKAGE",
    "RENDER_SIZE",
    "SAMPLE_SEED",
    "SKIPPED_SET_TAGS",
    "SPLIT_DOMAIN",
    "SPLIT_SEED",
    "TEXT_ENCODER",
    "Corpus",
    "IconRecord",
    "IconSet",
    "IconsData",
    "PairDraw",
    "RenderError",
    "build_icons",
    "caption_groups",
    "category_words",
    "clean_set_category",
    "default_cache_dir",
    "draw_pairs",
    "hash_order",
    "icon_caption",
    "icon_svg",
    "is_excluded",
    "load_icons",
    "main",
    "name_words",
    "npm_pack",
    "plain_aliases",
    "png_path",
    "read_collections",
    "read_corpus",
    "read_set",
    "render_icons",
    "render_svg",
    "renderer_versions",
    "resolve_source",
    "sample_evenly",
    "select_sets",
    "set_records",
    "split_icons",
    "split_sizes",
    "spread_quotas",
    "unpack",
]
