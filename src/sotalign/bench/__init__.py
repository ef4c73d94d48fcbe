"""Benchmark sweeps: methods × number of pairs × seeds, plus unpaired-pool and batch sweeps.

* :mod:`.data` — :class:`BenchData` and :func:`load_bench_data` (bundled benchmarks or files);
* :mod:`.run` — :func:`run_one` and :func:`run_bench` (resumable, results written after every
  run); grid points are selected with :func:`sotalign.methods.selection.select`;
* :mod:`.report` — aggregation over seeds, the Markdown report and the plots.

The command line is :mod:`sotalign.cli.bench`.
"""

from __future__ import annotations

from .data import BenchData, load_bench_data
from .report import aggregate, render_markdown, with_reference
from .run import diagnostics, run_bench, run_one

__all__ = [
    "BenchData",
    "aggregate",
    "diagnostics",
    "load_bench_data",
    "render_markdown",
    "run_bench",
    "run_one",
    "with_reference",
]
