"""Array conversion shared by every layer: numpy / memmap / torch in, float tensors out.

Nothing here knows about the method; it sits at the bottom of the import graph with
:mod:`sotalign.errors`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

ArrayLike = Any  # numpy array, memmap or torch tensor

__all__ = ["ArrayLike", "as_tensor", "l2_normalize"]


def as_tensor(X: ArrayLike, dtype: torch.dtype = torch.float32, device: Any = None) -> Tensor:
    """Convert a numpy array, memmap or tensor to a tensor of ``dtype`` (no copy if possible)."""
    if isinstance(X, Tensor):
        return X.to(device=device, dtype=dtype)
    arr = np.asarray(X)
    if arr.dtype == np.float16 and dtype != torch.float16:
        arr = arr.astype(np.float32)
    if not arr.flags.writeable or not arr.flags.c_contiguous:  # e.g. a read-only memmap
        arr = np.array(arr, order="C")
    return torch.from_numpy(arr).to(device=device, dtype=dtype)


def l2_normalize(X: Tensor, eps: float = 1e-12) -> Tensor:
    """Rows divided by their Euclidean norm (zero rows stay zero): ``x / max(‖x‖, eps)``."""
    return X / X.norm(dim=-1, keepdim=True).clamp_min(eps)
