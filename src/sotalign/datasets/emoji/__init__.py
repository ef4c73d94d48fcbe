"""The bundled emoji dataset: real image–caption pairs, embedded offline, with fixed splits.

Sources (all from package registries, versions recorded in the manifest):

* images: the colour bitmaps of Debian's ``fonts-noto-color-emoji`` (``NotoColorEmoji.ttf``),
  rendered with Pillow (size 109, ``embedded_color=True``, complex-script layout for ZWJ and
  skin-tone sequences), centred on a white square. An emoji that the font does not draw as one
  glyph (too new for the font, or a sequence it does not ligate) is left out;
* captions: npm ``emojibase-data`` (``en/data.json``): ``"<label>. <tag>, <tag>, …"``, e.g.
  ``"person running. fast, hurry, marathon, move"``; its ``group`` and ``subgroup`` are the class
  labels. Regional-indicator letters (no group) and the ``component`` group (skin-tone swatches,
  hair styles) are left out;
* out-of-domain texts: WordNet noun glosses (Debian ``wordnet-base``, ``data.noun``).

Splits (fixed by :data:`SPLIT_SEED`; the item indices of every split are stored in
``metadata.json``, so they do not depend on this code): a permutation of the base emoji gives

* ``test``: :data:`N_TEST` pairs (evaluation only; ``test_text_to_image`` is the identity);
* ``val``: :data:`N_VAL` pairs (choose hyper-parameters here, never on test);
* ``pool``: :data:`N_POOL` pairs, from which :func:`draw_pairs` draws the training pairs;
* the rest, halved: ``unpaired images`` (only their images are used) and ``unpaired texts``
  (only their captions), so no true pair exists between the two unpaired pools.

Extra unpaired data, labelled as such:

* ``unpaired_images`` also holds the skin-tone variants (e.g. "waving hand: dark skin tone") of
  the base emoji in the ``pool`` and ``unpaired images`` splits only, never of val/test emoji or
  of emoji whose caption is in ``unpaired texts`` (``unpaired_image_is_variant`` marks them);
* ``ood_texts``: :data:`N_OOD_TEXTS` WordNet noun glosses, real text but out of domain; add them
  to the unpaired texts to test robustness to off-distribution unpaired data.

Zero-shot classes: the emoji groups (9) and subgroups, each embedded under :data:`TEMPLATES`
(``group_prompts``: ``n_classes × n_templates × d``).

The committed files (``data/emoji/`` at the repository root) hold EfficientNet-Lite0 image
embeddings and all-MiniLM-L6-v2 text embeddings in float16 with a ``manifest.json`` (encoders
and versions, counts, sha256 of each file). ``python scripts/build_emoji.py`` regenerates them
from scratch.

Modules: :mod:`.load` (the committed files, splits and pair draws), :mod:`.build` (building
from scratch), :mod:`.sources` (font, rendering, emojibase-data, Debian packages).
"""

from __future__ import annotations

from .build import (
    IMAGE_ENCODER,
    OOD_SEED,
    SAMPLE_HEXCODES,
    TEXT_ENCODER,
    WORDNET_DIR,
    build_emoji,
    write_samples,
)
from .load import (
    BUILD_COMMAND,
    FILES,
    FORMAT_VERSION,
    N_OOD_TEXTS,
    N_POOL,
    N_TEST,
    N_VAL,
    SPLIT_SEED,
    TEMPLATES,
    EmojiData,
    EmojiPairs,
    caption,
    class_name,
    default_root,
    draw_pairs,
    load_emoji,
    split_items,
)
from .sources import (
    CANVAS,
    EMOJIBASE_VERSION,
    FONT_PATH,
    FONT_SIZE,
    find_emojibase,
    find_font,
    render_emoji,
)

__all__ = [
    "BUILD_COMMAND",
    "CANVAS",
    "EMOJIBASE_VERSION",
    "FILES",
    "FONT_PATH",
    "FONT_SIZE",
    "FORMAT_VERSION",
    "IMAGE_ENCODER",
    "N_OOD_TEXTS",
    "N_POOL",
    "N_TEST",
    "N_VAL",
    "OOD_SEED",
    "SAMPLE_HEXCODES",
    "SPLIT_SEED",
    "TEMPLATES",
    "TEXT_ENCODER",
    "WORDNET_DIR",
    "EmojiData",
    "EmojiPairs",
    "build_emoji",
    "caption",
    "class_name",
    "default_root",
    "draw_pairs",
    "find_emojibase",
    "find_font",
    "load_emoji",
    "render_emoji",
    "split_items",
    "write_samples",
]
