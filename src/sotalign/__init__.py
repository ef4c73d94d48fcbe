"""sotalign: align frozen image and text encoders from a few pairs plus unpaired data.

SOTAlign (Roschmann et al., ICML 2026): a linear teacher fitted on the pairs, then alignment
heads trained with SigLIP on the pairs plus the KLOT divergence between the optimal-transport
plans of the student and the teacher on unpaired batches, with a closed-form gradient.

Quick start::

    from sotalign import SOTAlign
    model = SOTAlign().fit(paired_images, paired_texts, unpaired_images, unpaired_texts)
    zi, zt = model.encode_images(images), model.encode_texts(texts)
    model.save("my-model");  model = SOTAlign.load("my-model")

A model fitted on files from ``sotalign embed`` records its encoders and takes raw inputs::

    from sotalign import AlignedModel
    m = AlignedModel.load("my-model")
    m.encode_image(["cat.png"]), m.encode_text(["a cat"]), m.classify(images, ["cat", "dog"])
"""

from __future__ import annotations

from .aligned import AlignedModel
from .errors import ConfigError, InputError, SotalignError
from .estimator import SOTAlign
from .methods import available_methods, register_method
from .version import __version__

__all__ = [
    "AlignedModel",
    "ConfigError",
    "InputError",
    "SOTAlign",
    "SotalignError",
    "__version__",
    "available_methods",
    "register_method",
]
