"""The training history of a fitted model, written beside it: ``history.json`` and ``loss.png``.

``history.json`` holds one record per training step of the final training (loss and its terms,
learning rate, KLOT's Sinkhorn iterations and marginal errors when the divergence ran, the
validation mean R@1 and MRR at the steps where they were computed) and the selection table of
the candidates. ``loss.png`` plots the loss terms and the validation scores against the step.
A model without training (a teacher alone, a training-free baseline) gets only the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .io import atomic_write, write_json_atomic

__all__ = ["HISTORY_FILE", "PLOT_FILE", "plot_history", "write_history"]

HISTORY_FILE = "history.json"
PLOT_FILE = "loss.png"

_TERMS = ("loss", "sup", "div")
_VAL = ("val_mean_R@1", "val_MRR")


def write_history(
    folder: str | Path,
    history: Sequence[dict[str, Any]],
    selection: Sequence[dict[str, Any]] = (),
    *,
    plot: bool = True,
    training: dict[str, Any] | None = None,
) -> list[Path]:
    """Write ``history.json`` (and, with ``plot`` and a non-empty history, ``loss.png``) into
    ``folder`` atomically; return the paths written. ``training``: facts about the run (e.g.
    the world size and back-end of a sharded fit), stored under ``"training"``."""
    folder = Path(folder)
    paths = [folder / HISTORY_FILE]
    record: dict[str, Any] = {"steps": list(history), "selection": list(selection)}
    if training is not None:
        record["training"] = dict(training)
    write_json_atomic(paths[0], record)
    if plot and history:
        paths.append(plot_history(history, folder / PLOT_FILE))
    return paths


def plot_history(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Loss terms (log scale) and validation scores against the training step, as a PNG."""
    import matplotlib  # heavy: imported only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    steps = [h["step"] for h in history]
    has_val = any(k in h for h in history for k in _VAL)
    fig, axes = plt.subplots(1, 2 if has_val else 1, figsize=(10 if has_val else 5.5, 3.8))
    ax = axes[0] if has_val else axes
    for key in _TERMS:
        pts = [(s, h[key]) for s, h in zip(steps, history, strict=True) if key in h]
        if pts and all(v > 0 for _, v in pts):
            ax.plot(*zip(*pts, strict=True), label=key, linewidth=1.5 if key == "loss" else 1.0)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title("training loss and its terms")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if has_val:
        for key in _VAL:
            pts = [(s, h[key]) for s, h in zip(steps, history, strict=True) if key in h]
            if pts:
                axes[1].plot(*zip(*pts, strict=True), marker="o", label=key)
        axes[1].set_xlabel("step")
        axes[1].set_ylabel("percent")
        axes[1].set_title("validation (held-out pairs)")
        axes[1].grid(alpha=0.3)
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
    return path
