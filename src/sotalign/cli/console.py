"""Where the command line writes: the consoles and the tables every command prints."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["console", "err_console", "print_metrics", "print_selection"]

# Piped output (logs, CI) gets a wide console so tables are not folded at 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=160)
err_console = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=400)


def print_metrics(rows: dict[str, dict[str, Any]], extra: tuple[str, ...] = ()) -> None:
    """Print retrieval metrics (percent) as a table, one row per method."""
    table = Table()
    cols = ["I2T R@1", "I2T R@5", "I2T R@10", "T2I R@1", "T2I R@5", "T2I R@10", "mean R@1"]
    table.add_column("method")
    for c in (*cols, *extra):
        table.add_column(c, justify="right")
    for name, m in rows.items():
        vals = [m["i2t"][f"R@{k}"] for k in (1, 5, 10)] + [m["t2i"][f"R@{k}"] for k in (1, 5, 10)]
        vals += [m["mean_R@1"], *(m.get(c, float("nan")) for c in extra)]
        table.add_row(name, *(f"{v:.1f}" for v in vals))
    console.print(table)


def print_selection(
    rows: list[dict[str, Any]],
    title: str = "validation selection (held-out pairs; MRR breaks R@1 ties)",
) -> None:
    """Print a validation selection table (candidates, scores, best step, the selected one;
    a candidate successive halving stopped early says at which step)."""
    table = Table(title=title)
    for col in ("candidate", "val mean R@1", "val MRR", "best step", ""):
        table.add_column(col)
    for r in rows:
        score, mrr = r["val_mean_R@1"], r.get("val_MRR")
        table.add_row(
            str(r["candidate"]),
            "-" if score is None else f"{score:.1f}",
            "-" if mrr is None else f"{mrr:.1f}",
            "-" if r.get("best_step") is None else str(r["best_step"]),
            "selected"
            if r.get("selected")
            else (f"stopped at step {r['stopped_at']}" if r.get("stopped_at") else ""),
        )
    console.print(table)
