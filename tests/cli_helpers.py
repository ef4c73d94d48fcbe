"""Running the ``sotalign`` command line in-process from tests (shared by the CLI tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import sotalign.cli as cli


def run_cli(args: list[str], capsys, monkeypatch, cwd: Path) -> tuple[int, str, str]:
    """``sotalign ARGS`` in ``cwd`` through ``cli.main``; returns (exit code, stdout, stderr)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["sotalign", *args])
    capsys.readouterr()
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err
