"""Bundled and benchmark datasets (embeddings plus fixed splits).

* :mod:`sotalign.datasets.emoji`: real emoji images and captions, embedded and committed
  (``load_emoji``, ``draw_pairs``);
* :mod:`sotalign.datasets.wordnet`: WordNet glosses under two text encoders (large pools).

Submodules are imported on use; importing this package loads nothing heavy.
"""
