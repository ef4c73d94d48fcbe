"""``python -m sotalign.datasets.icons``: build the icons benchmark cache."""

from __future__ import annotations

from .build import main

raise SystemExit(main())
