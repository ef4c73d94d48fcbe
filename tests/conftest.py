"""Shared fixtures: small synthetic two-view problems and single-threaded torch."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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


# -- a model fitted from raw emoji PNGs and captions (tests of the aligned model, serve) -------

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "emoji" / "samples"
EMOJI = ROOT / "data" / "emoji"
FIT_ARGS = ["--set", "steps=6", "--set", "alpha=0.1", "--set", "dim=32",
            "--set", "batch_unpaired=128", "--set", "sinkhorn_iters=10",
            "--set", "early_stopping=false", "--quiet"]  # fmt: skip


@pytest.fixture(scope="session")
def fitted(tmp_path_factory):
    """Embed the sample PNGs and captions with `sotalign embed`, fit on them (the bundled
    emoji embeddings, made by the same encoders, as unpaired pools)."""
    work = tmp_path_factory.mktemp("aligned")
    shutil.copytree(SAMPLES, work / "samples")
    mp = pytest.MonkeyPatch()
    from cli_helpers import run_cli

    cap = _Capture()
    try:
        embed_images = ["embed", "images", "--input", "samples", "--out", "img.npy",
                        "--encoder", "efficientnet-lite0", "--dtype", "float32"]  # fmt: skip
        embed_texts = ["embed", "texts", "--input", "samples/captions.txt", "--out", "txt.npy",
                       "--encoder", "st:all-MiniLM-L6-v2", "--dtype", "float32"]  # fmt: skip
        fit = ["fit", "--paired-images", "img.npy", "--paired-texts", "txt.npy",
               "--unpaired-images", str(EMOJI / "images.npy"),
               "--unpaired-texts", str(EMOJI / "texts.npy"), "--out", "model"]  # fmt: skip
        for args in (embed_images, embed_texts, [*fit, *FIT_ARGS]):
            code, _, err = run_cli(args, cap, mp, work)
            assert code == 0, err
    finally:
        mp.undo()
    return work


class _Capture:  # capsys for a module-scoped fixture: the CLI prints to rich's console
    def readouterr(self):
        return "", ""
