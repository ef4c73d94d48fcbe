"""One writer per output folder (`sotalign fit` locks OUT/.lock), the messages about
interrupted fits and --resume, and warnings printed as one line by the command line.

The CLI runs in-process (``sotalign.cli.main`` with a patched ``sys.argv``, as in
``test_io_cli_errors.py``); a second process holds the lock where the test needs a live holder
that is not this process, and the warning test runs ``python -m sotalign`` as a user does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from sotalign.errors import UnderdeterminedWarning
from sotalign.estimator import SOTAlign
from sotalign.io import FolderLockedError, lock_output_dir, prepare_output_dir

cli = pytest.importorskip("sotalign.cli")

from cli_helpers import run_cli  # noqa: E402

RNG = np.random.default_rng(0)
HOST = socket.gethostname()
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A folder of small embedding files: 30 pairs, and 3 pairs of 4 and 3 dimensions."""
    np.save(tmp_path / "A.npy", RNG.standard_normal((30, 4)).astype(np.float32))
    np.save(tmp_path / "B.npy", RNG.standard_normal((30, 3)).astype(np.float32))
    np.save(tmp_path / "B_29rows.npy", RNG.standard_normal((29, 3)).astype(np.float32))
    np.save(tmp_path / "A_3pairs.npy", RNG.standard_normal((3, 4)).astype(np.float32))
    np.save(tmp_path / "B_3pairs.npy", RNG.standard_normal((3, 3)).astype(np.float32))
    return tmp_path


def fit_args(*extra: str, a: str = "A.npy", b: str = "B.npy", out: str = "model") -> list[str]:
    return [
        "fit",
        "--paired-images",
        a,
        "--paired-texts",
        b,
        "--out",
        out,
        "--method",
        "cca",
        "--quiet",
        *extra,
    ]


def lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def assert_saved_and_unlocked(model: Path) -> None:
    assert (model / "config.json").is_file() and (model / "model.safetensors").is_file()
    assert not (model / ".lock").exists(), "the lock was left behind"
    assert not [p.name for p in model.iterdir() if p.name.startswith(".lock")]


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


class Holder:
    """Another process holding ``folder``'s lock until it is stopped or killed."""

    CODE = (
        "import sys\n"
        "from sotalign.io import lock_output_dir\n"
        "with lock_output_dir(sys.argv[1]):\n"
        "    print('ready', flush=True)\n"
        "    sys.stdin.read()\n"
    )

    def __init__(self, folder: Path) -> None:
        env = {**os.environ, "PYTHONPATH": SRC}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.CODE, str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)


# ------------------------------------------------------------------------------ the lock


def test_a_held_lock_refuses_a_second_fit(work, capsys, monkeypatch):
    model = work / "model"
    with lock_output_dir(model):  # a live writer: this process
        code, out, err = run_cli(fit_args(), capsys, monkeypatch, work)
        assert code == 2, err
        assert lines(err) == [
            f"error: model is being written by another sotalign fit (pid {os.getpid()} on"
            f" {HOST}); wait for it or choose another --out"
        ]
        assert "saved" not in out
        assert [p.name for p in model.iterdir()] == [".lock"]  # the refused fit wrote nothing
        assert json.loads((model / ".lock").read_text())["pid"] == os.getpid()
    assert not model.exists()  # the holder created the folder and removed it, still empty
    code, _, err = run_cli(fit_args(), capsys, monkeypatch, work)
    assert code == 0, err
    assert_saved_and_unlocked(model)


def test_a_lock_held_by_another_process_then_killed(work, capsys, monkeypatch):
    """A live holder in another process is named; after SIGKILL its lock is stale, and the
    next fit reclaims it with one line on stderr."""
    model = work / "model"
    holder = Holder(model)
    try:
        code, _, err = run_cli(fit_args(), capsys, monkeypatch, work)
        assert code == 2, err
        assert len(lines(err)) == 1, err
        assert f"(pid {holder.proc.pid} on {HOST})" in err and "another sotalign fit" in err
    finally:
        holder.kill()
    assert (model / ".lock").is_file()  # SIGKILL ran no clean-up: the lock file stays
    code, out, err = run_cli(fit_args(), capsys, monkeypatch, work)
    assert code == 0, err
    assert lines(err) == [
        f"note: model: removed a stale lock left by a run that is no longer running"
        f" (pid {holder.proc.pid} on {HOST})"
    ]
    assert "saved" in out
    assert_saved_and_unlocked(model)


def test_a_stale_lock_of_a_dead_pid_is_reclaimed(work, capsys, monkeypatch):
    model = work / "model"
    model.mkdir()
    pid = dead_pid()
    (model / ".lock").write_text(json.dumps({"pid": pid, "host": HOST}))
    code, out, err = run_cli(fit_args(), capsys, monkeypatch, work)
    assert code == 0, err
    assert len(lines(err)) == 1 and "stale lock" in err and f"pid {pid} on {HOST}" in err, err
    assert "saved" in out
    assert_saved_and_unlocked(model)


def test_the_lock_is_released_when_the_fit_fails(work, capsys, monkeypatch):
    # bad input into a new folder: exit 2, and no folder, no lock is left
    code, _, err = run_cli(fit_args(b="B_29rows.npy"), capsys, monkeypatch, work)
    assert code == 2 and "B_29rows.npy" in err, err
    assert not (work / "model").exists()
    # bad input into an existing folder: its files stay, the lock goes
    (work / "model").mkdir()
    (work / "model" / "keep.txt").write_text("old")
    code, _, err = run_cli(fit_args("--overwrite", b="B_29rows.npy"), capsys, monkeypatch, work)
    assert code == 2, err
    assert sorted(p.name for p in (work / "model").iterdir()) == ["keep.txt"]
    # the next fit is not refused
    code, _, err = run_cli(fit_args("--overwrite"), capsys, monkeypatch, work)
    assert code == 0, err
    assert_saved_and_unlocked(work / "model")


def test_the_lock_is_released_on_ctrl_c(work, capsys, monkeypatch):
    def interrupted(self, *args, **kwargs):
        assert (work / "model" / ".lock").is_file()  # held during the fit
        raise KeyboardInterrupt

    monkeypatch.setattr(SOTAlign, "fit", interrupted)
    code, _, err = run_cli(fit_args(), capsys, monkeypatch, work)
    assert code == 130, err
    assert not (work / "model").exists()


def test_the_lock_file_does_not_make_the_folder_non_empty(tmp_path):
    folder = tmp_path / "m"
    with lock_output_dir(folder) as lock:
        assert lock.stale is None
        assert prepare_output_dir(folder, create=False) == folder  # .lock is not "content"
        with pytest.raises(FolderLockedError, match=f"pid {os.getpid()}"), lock_output_dir(folder):
            pass
        assert (folder / ".lock").is_file()  # the refused attempt left the holder's lock
        est = SOTAlign(method="cca").fit(RNG.standard_normal((30, 4)), RNG.standard_normal((30, 3)))
        est.save(folder, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]


# ------------------------------------------------------------------ interrupted fits, --resume


@pytest.mark.parametrize("marker", ["step-000000200/state.json", "selection.json"])
def test_an_interrupted_fit_suggests_resume(work, capsys, monkeypatch, marker):
    ckpt = work / "model" / "checkpoints" / marker
    ckpt.parent.mkdir(parents=True)
    ckpt.write_text("{}")
    code, _, err = run_cli(fit_args(), capsys, monkeypatch, work)
    assert code == 2, err
    assert lines(err) == [
        "error: model holds checkpoints of an interrupted fit: pass --resume to continue it,"
        " or --overwrite to start again"
    ]
    assert not (work / "model" / ".lock").exists()
    assert not (work / "model" / "config.json").exists()


def test_a_finished_fit_with_checkpoints_is_not_called_interrupted(work, capsys, monkeypatch):
    """A finished fit saves its model after its last checkpoint: the folder is just not empty."""
    ckpt = work / "model" / "checkpoints" / "step-000000200"
    ckpt.mkdir(parents=True)
    (ckpt / "state.json").write_text("{}")
    os.utime(ckpt, ns=(10**18, 10**18))
    os.utime(ckpt.parent, ns=(10**18, 10**18))
    (work / "model" / "config.json").write_text("{}")
    code, _, err = run_cli(fit_args(), capsys, monkeypatch, work)
    assert code == 2 and "interrupted" not in err and "not empty" in err, err
    # ... unless the lock of a run that died is still there
    (work / "model" / ".lock").write_text(json.dumps({"pid": dead_pid(), "host": HOST}))
    code, _, err = run_cli(fit_args(), capsys, monkeypatch, work)
    assert code == 2 and "interrupted fit: pass --resume" in err, err
    assert not (work / "model" / ".lock").exists()  # reclaimed, then released


def test_resume_with_nothing_to_resume_says_so_and_fits(work, capsys, monkeypatch):
    code, out, err = run_cli(fit_args("--resume"), capsys, monkeypatch, work)
    assert code == 0, err
    assert lines(err) == [
        f"note: nothing to resume in {Path('model') / 'checkpoints'} (no checkpoints);"
        " starting a fresh fit"
    ]
    assert "saved" in out
    assert_saved_and_unlocked(work / "model")


# ------------------------------------------------------------------------------ warnings


def test_warnings_print_as_one_line_without_a_path(work):
    proc = subprocess.run(
        [sys.executable, "-m", "sotalign", *fit_args(a="A_3pairs.npy", b="B_3pairs.npy")],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert proc.returncode == 0, proc.stderr
    err = lines(proc.stderr)
    assert len(err) == 1, proc.stderr
    assert err[0].startswith("warning: A_3pairs.npy: 4 dimensions but only 3 pairs"), err
    assert ".py:" not in proc.stderr and "UnderdeterminedWarning" not in proc.stderr
    assert "warn(" not in proc.stderr  # no echoed source line


def test_the_warning_format_is_the_cli_s_only(work, capsys, monkeypatch):
    """main() restores the library user's format, and warnings stay recordable under it."""

    def users_format(*args, **kwargs):
        return "the user's format\n"

    monkeypatch.setattr(warnings, "formatwarning", users_format)
    with pytest.warns(UnderdeterminedWarning, match="ridge"):
        code, _, err = run_cli(
            fit_args(a="A_3pairs.npy", b="B_3pairs.npy"), capsys, monkeypatch, work
        )
    assert code == 0, err
    assert warnings.formatwarning is users_format
    line = cli._format_warning(UserWarning("two\nlines"), UserWarning, "/x/y.py", 3, "src")
    assert line == "warning: two lines\n"
