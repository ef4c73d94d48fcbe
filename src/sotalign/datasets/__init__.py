"""Bundled and benchmark datasets (embeddings plus fixed splits).

* :mod:`sotalign.datasets.emoji`: real emoji images and captions, embedded and committed
  (``load_emoji``, ``draw_pairs``);
* :mod:`sotalign.datasets.wordnet`: WordNet glosses under two text encoders (large pools);
* :mod:`sotalign.datasets.icons`: open-source icons rendered from ``@iconify/json`` and captions
  from their names (large image–text pools; built into a cache, ``load_icons``, ``draw_pairs``).

Submodules are imported on use; importing this package loads nothing heavy.
"""
