"""Shared fixtures: small synthetic two-view problems and single-threaded torch."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One thread: the tests use small tensors, and subprocess tests run beside the main process.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def two_view():
    from sotalign.synthetic import TwoView

    return TwoView(d_x=64, d_y=48, latent=16, noise=0.3, seed=0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Every device this machine has (cpu, and cuda when present), as POT does for back-ends."""
    return torch.device(request.param)
