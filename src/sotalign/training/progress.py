"""One progress bar for a whole fit.

A fit with model selection trains several candidates and then refits the winner; each
training is a :class:`~.trainer.Trainer` run. Inside :func:`fit_progress` every trainer
advances the one shared bar (total: every planned step of every training) instead of starting
its own, and the selection names the stage (``candidate 2/4: alpha=1``, ``refit: alpha=1``),
so the user sees one bar with one estimate of the time left.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from tqdm.auto import tqdm

from ..parallel import is_writer

__all__ = ["FitProgress", "current_progress", "fit_progress"]


class FitProgress:
    """A bar over ``total`` training steps; :meth:`stage` names what is running."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.bar = tqdm(
            total=max(int(total), 0),
            disable=not (enabled and is_writer()),  # under torchrun, rank 0 shows the bar
            desc="fit",
            unit="step",
            dynamic_ncols=True,
            leave=False,
        )

    @property
    def enabled(self) -> bool:
        return not self.bar.disable

    @property
    def done(self) -> int:
        return int(self.bar.n)

    def stage(self, label: str) -> None:
        """Name the running training (shown before the bar)."""
        self.bar.set_description_str(label)  # shown at once: a stage change is rare

    def advance(self, steps: int = 1, postfix: str | None = None) -> None:
        if postfix is not None:
            self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.update(steps)

    def skip(self, steps: int) -> None:
        """Remove ``steps`` planned steps that will not run (an early stop, a shorter refit)."""
        if steps > 0:
            self.bar.total = max(int(self.bar.total) - steps, self.done)
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


_CURRENT: ContextVar[FitProgress | None] = ContextVar("sotalign_fit_progress", default=None)


def current_progress() -> FitProgress | None:
    """The shared bar of the fit in progress, if any."""
    return _CURRENT.get()


@contextmanager
def fit_progress(total: int, enabled: bool = True) -> Iterator[FitProgress]:
    """Within the block, trainers advance one shared bar of ``total`` steps."""
    progress = FitProgress(total, enabled)
    token = _CURRENT.set(progress)
    try:
        yield progress
    finally:
        _CURRENT.reset(token)
        progress.close()
