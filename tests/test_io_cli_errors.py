"""The command line turns every bad-input case into one line on stderr, exit status 2, and
writes nothing.

The CLI runs in-process (``sotalign.cli.main`` with a patched ``sys.argv``) so torch is
imported once; one test runs the installed ``sotalign`` script in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import safetensors.numpy

from sotalign.errors import UnderdeterminedWarning

cli = pytest.importorskip("sotalign.cli")

from cli_helpers import run_cli  # noqa: E402

RNG = np.random.default_rng(0)
N_PAIRS, DX, DY = 30, 4, 3


def _f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A folder of good and bad embedding files (names say what is wrong)."""
    d = tmp_path_factory.mktemp("cli-data")
    np.save(d / "A.npy", _f32(N_PAIRS, DX))
    np.save(d / "B.npy", _f32(N_PAIRS, DY))
    np.save(d / "X.npy", _f32(50, DX))
    np.save(d / "Y.npy", _f32(60, DY))
    np.save(d / "B_29rows.npy", _f32(N_PAIRS - 1, DY))
    b = _f32(N_PAIRS, DY)
    b[5, 1] = np.nan
    np.save(d / "B_nan.npy", b)
    x = _f32(50, DX)
    x[17, 0] = np.inf
    np.save(d / "X_inf.npy", x)
    np.save(d / "X_wrongdim.npy", _f32(50, DX + 1))
    np.save(d / "A_1pair.npy", _f32(1, DX))
    np.save(d / "B_1pair.npy", _f32(1, DY))
    np.save(d / "A_3pairs.npy", _f32(3, DX))
    np.save(d / "B_3pairs.npy", _f32(3, DY))
    np.save(d / "A_int.npy", np.arange(N_PAIRS * DX).reshape(N_PAIRS, DX))
    np.save(d / "A_str.npy", np.array([["a"] * DX] * N_PAIRS))
    (d / "A_empty.npy").write_bytes(b"")
    np.save(d / "A_norows.npy", np.zeros((0, DX), np.float32))
    full = (d / "A.npy").read_bytes()
    (d / "A_truncated.npy").write_bytes(full[: len(full) // 2])
    safetensors.numpy.save_file({"embeddings": _f32(N_PAIRS, DX)}, str(d / "A_ok.safetensors"))
    raw = (d / "A_ok.safetensors").read_bytes()
    (d / "A_corrupt.safetensors").write_bytes(raw[:8] + b"\xff" * 20 + raw[28:])
    with h5py.File(d / "A_ok.h5", "w") as f:
        f["embeddings"] = _f32(N_PAIRS, DX)
    raw = (d / "A_ok.h5").read_bytes()
    (d / "A_truncated.h5").write_bytes(raw[: len(raw) - 100])
    with h5py.File(d / "A_nodataset.h5", "w") as f:
        f["ids"] = np.arange(N_PAIRS)
    with h5py.File(d / "A_int.h5", "w") as f:
        f["embeddings"] = np.ones((N_PAIRS, DX), np.int32)
    col = pa.FixedSizeListArray.from_arrays(pa.array(_f32(N_PAIRS, DX).ravel()), DX)
    pq.write_table(pa.table({"embeddings": col}), d / "A_ok.parquet")
    raw = (d / "A_ok.parquet").read_bytes()
    (d / "A_corrupt.parquet").write_bytes(raw[: len(raw) // 2] + raw[-8:])
    (d / "index_ok.txt").write_text("\n".join(str(i % N_PAIRS) for i in range(N_PAIRS)))
    (d / "index_out_of_range.txt").write_text("\n".join(str(i) for i in range(1, N_PAIRS + 1)))
    return d


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>")
        for p in sorted(folder.rglob("*"))
    }


def expect_cli_error(args: list[str], capsys, monkeypatch, cwd: Path, *fragments: str) -> str:
    """Exit 2, exactly one line on stderr starting 'error:', containing ``fragments``, and no
    file or folder added to or changed in ``cwd``."""
    before = snapshot(cwd)
    code, _, err = run_cli(args, capsys, monkeypatch, cwd)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, f"exit {code}; stderr: {err}"
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for frag in fragments:
        assert frag in lines[0], f"{frag!r} not in {lines[0]!r}"
    assert snapshot(cwd) == before, "a failed command wrote to disk"
    return lines[0]


@pytest.fixture
def work(tmp_path: Path, data: Path) -> Path:
    """A fresh working folder holding the data files (so 'nothing written' can be checked)."""
    for p in data.iterdir():
        os.link(p, tmp_path / p.name)
    return tmp_path


def fit_args(
    a: str = "A.npy",
    b: str = "B.npy",
    x: str | None = None,
    y: str | None = None,
    out: str = "model",
    *extra: str,
) -> list[str]:
    args = [
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
    ]
    if x:
        args += ["--unpaired-images", x]
    if y:
        args += ["--unpaired-texts", y]
    return args + list(extra)


ARRAY_CASES: dict[str, tuple[Callable[[], list[str]], tuple[str, ...]]] = {
    "row-mismatch": (
        lambda: fit_args(b="B_29rows.npy"),
        ("B_29rows.npy: 29 rows but A.npy has 30", "pair"),
    ),
    "nan-row": (lambda: fit_args(b="B_nan.npy"), ("B_nan.npy: row 5 holds NaN",)),
    "inf-row-unpaired": (
        lambda: fit_args(x="X_inf.npy", y="Y.npy"),
        ("X_inf.npy: row 17 holds Inf",),
    ),
    "pool-dimension": (
        lambda: fit_args(x="X_wrongdim.npy", y="Y.npy"),
        ("X_wrongdim.npy: 5 dimensions", "A.npy has 4"),
    ),
    "one-pool": (lambda: fit_args(x="X.npy"), ("X.npy: given without unpaired texts",)),
    "one-pair": (
        lambda: fit_args("A_1pair.npy", "B_1pair.npy"),
        ("A_1pair.npy", "at least 2 pairs"),
    ),
}


@pytest.mark.parametrize("case", list(ARRAY_CASES))
def test_fit_array_errors_name_the_file(case, work, capsys, monkeypatch):
    args, fragments = ARRAY_CASES[case]
    expect_cli_error(args(), capsys, monkeypatch, work, *fragments)


FILE_CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "missing": ("A_missing.npy", ("A_missing.npy", "no such file")),
    "empty-file": ("A_empty.npy", ("A_empty.npy", "empty")),
    "no-rows": ("A_norows.npy", ("A_norows.npy", "no data")),
    "integers": ("A_int.npy", ("A_int.npy", "integer")),
    "strings": ("A_str.npy", ("A_str.npy", "strings")),
    "truncated-npy": ("A_truncated.npy", ("A_truncated.npy", "truncated")),
    "corrupt-safetensors": ("A_corrupt.safetensors", ("A_corrupt.safetensors",)),
    "truncated-hdf5": ("A_truncated.h5", ("A_truncated.h5",)),
    "hdf5-without-dataset": ("A_nodataset.h5", ("A_nodataset.h5", "'embeddings'")),
    "corrupt-parquet": ("A_corrupt.parquet", ("A_corrupt.parquet",)),
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_fit_bad_files(case, work, capsys, monkeypatch):
    name, fragments = FILE_CASES[case]
    expect_cli_error(fit_args(a=name), capsys, monkeypatch, work, *fragments)


def test_messages_with_brackets_reach_the_terminal(work, capsys, monkeypatch):
    code, _, err = run_cli(fit_args(a="A_int.h5"), capsys, monkeypatch, work)
    assert code == 2 and "A_int.h5[embeddings]" in err, err


def test_unknown_method_and_config_key(work, capsys, monkeypatch):
    args = fit_args()
    args[args.index("cca")] = "sotalgn"
    expect_cli_error(args, capsys, monkeypatch, work, "unknown method", "did you mean 'sotalign'")
    expect_cli_error(
        [*fit_args(), "--set", "alhpa=1"],
        capsys,
        monkeypatch,
        work,
        "alhpa",
        "did you mean 'alpha'",
    )


def test_output_folder_exists_or_cannot_be_written(work, capsys, monkeypatch):
    (work / "model").mkdir()
    (work / "model" / "keep.txt").write_text("old run")
    expect_cli_error(fit_args(), capsys, monkeypatch, work, "model", "--overwrite")
    code, _, err = run_cli([*fit_args(), "--overwrite"], capsys, monkeypatch, work)
    assert code == 0, err
    assert (work / "model" / "config.json").is_file()
    assert (work / "model" / "keep.txt").read_text() == "old run"
    (work / "afile").write_text("x")
    expect_cli_error(fit_args(out="afile/model"), capsys, monkeypatch, work, "afile")


def test_more_dimensions_than_pairs_works_with_a_warning(work, capsys, monkeypatch):
    with pytest.warns(UnderdeterminedWarning, match="ridge"):
        code, _, err = run_cli(fit_args("A_3pairs.npy", "B_3pairs.npy"), capsys, monkeypatch, work)
    assert code == 0, err
    assert "Traceback" not in err
    assert (work / "model" / "config.json").is_file()


@pytest.fixture
def model(work, capsys, monkeypatch) -> Path:
    code, _, err = run_cli(fit_args(), capsys, monkeypatch, work)
    assert code == 0, err
    return work / "model"


def eval_args(
    model: str = "model", images: str = "A.npy", texts: str = "B.npy", index: str | None = None
) -> list[str]:
    args = ["eval", "--model", model, "--images", images, "--texts", texts, "--out", "metrics.json"]
    return args + (["--text-image-index", index] if index else [])


def test_eval_succeeds_and_writes_metrics(model, work, capsys, monkeypatch):
    code, _, err = run_cli(eval_args(index="index_ok.txt"), capsys, monkeypatch, work)
    assert code == 0, err
    metrics = json.loads((work / "metrics.json").read_text())
    assert 0.0 <= metrics["mean_R@1"] <= 100.0


def test_model_folder_from_another_format_version(model, work, capsys, monkeypatch):
    cfg = json.loads((model / "config.json").read_text())
    cfg["format_version"] = 999
    (model / "config.json").write_text(json.dumps(cfg))
    expect_cli_error(eval_args(), capsys, monkeypatch, work, "model", "version 999")


def test_model_with_corrupt_weights(model, work, capsys, monkeypatch):
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:50])
    expect_cli_error(eval_args(), capsys, monkeypatch, work, "model.safetensors")


def test_caption_index_out_of_range_names_the_file(model, work, capsys, monkeypatch):
    expect_cli_error(
        eval_args(index="index_out_of_range.txt"),
        capsys,
        monkeypatch,
        work,
        "index_out_of_range.txt",
        f"{N_PAIRS} images",
    )


def test_eval_refuses_nan_embeddings(model, work, capsys, monkeypatch):
    expect_cli_error(
        eval_args(texts="B_nan.npy"), capsys, monkeypatch, work, "B_nan.npy: row 5 holds NaN"
    )


def test_encode_refuses_nan_embeddings(model, work, capsys, monkeypatch):
    args = ["encode", "--model", "model", "--texts", "B_nan.npy", "--out", "z.npy"]
    expect_cli_error(args, capsys, monkeypatch, work, "B_nan.npy: row 5 holds NaN")


def test_encode_bad_input_writes_nothing(model, work, capsys, monkeypatch):
    args = ["encode", "--model", "model", "--images", "A_truncated.npy", "--out", "z.npy"]
    expect_cli_error(args, capsys, monkeypatch, work, "A_truncated.npy", "truncated")


def test_installed_script_exit_status_and_stderr(work):
    exe = shutil.which("sotalign", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the sotalign console script is not installed")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [exe, *fit_args(a="A_truncated.npy")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: A_truncated.npy"), proc.stderr
    assert proc.stdout == ""
