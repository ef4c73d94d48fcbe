"""The command line end to end on small files (subprocesses, as a user runs it)."""

import json
import subprocess
import sys

import numpy as np
import pytest


def run(*args, cwd, ok=True):
    proc = subprocess.run(
        [sys.executable, "-m", "sotalign", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def files(tmp_path_factory, two_view):
    d = tmp_path_factory.mktemp("cli")
    A, B = two_view.pairs(60, 1)
    X, Y = two_view.unpaired(400, 300, 2)
    # two captions per test image: two noisy views of the same latent
    Ti, Tt1 = two_view.pairs(50, 3)
    rng = np.random.default_rng(4)
    Tt = np.concatenate([Tt1, Tt1 + 0.1 * rng.normal(size=Tt1.shape).astype(np.float32)])
    idx = np.concatenate([np.arange(50), np.arange(50)])
    for name, arr in dict(A=A, B=B, X=X, Y=Y, Ti=Ti).items():
        np.save(d / f"{name}.npy", arr.astype(np.float16))
    np.save(d / "Tt.npy", Tt)
    np.savetxt(d / "idx.txt", idx, fmt="%d")
    return d


def test_fit_eval_encode_end_to_end(files):
    d = files
    run(
        "fit",
        "--paired-images",
        "A.npy",
        "--paired-texts",
        "B.npy",
        "--unpaired-images",
        "X.npy",
        "--unpaired-texts",
        "Y.npy",
        "--out",
        "m",
        "--set",
        "steps=20",
        "--set",
        "dim=32",
        "--set",
        "alpha=0.1",
        "--set",
        "batch_unpaired=128",
        "--set",
        "sinkhorn_iters=30",
        "--quiet",
        cwd=d,
    )
    assert (d / "m" / "config.json").is_file() and (d / "m" / "model.safetensors").is_file()
    cfg = json.loads((d / "m" / "config.json").read_text())
    assert cfg["params"]["steps"] == 20 and cfg["aligner"]["kind"] == "heads"
    proc = run(
        "eval",
        "--model",
        "m",
        "--images",
        "Ti.npy",
        "--texts",
        "Tt.npy",
        "--text-image-index",
        "idx.txt",
        "--out",
        "metrics.json",
        cwd=d,
    )
    assert "mean R@1" in proc.stdout
    metrics = json.loads((d / "metrics.json").read_text())
    assert set(metrics) == {"i2t", "t2i", "mean_R@1"}
    assert set(metrics["i2t"]) == {"R@1", "R@5", "R@10"}
    run("encode", "--model", "m", "--images", "Ti.npy", "--out", "zi.npy", cwd=d)
    z = np.load(d / "zi.npy")
    assert z.shape == (50, 32)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    # the printed and saved figures are those of the saved model's own encodings
    import re

    from sotalign.eval import retrieval_metrics

    run("encode", "--model", "m", "--texts", "Tt.npy", "--out", "zt.npy", cwd=d)
    again = retrieval_metrics(z, np.load(d / "zt.npy"), np.loadtxt(d / "idx.txt", dtype=int))
    assert metrics["mean_R@1"] == pytest.approx(again["mean_R@1"], abs=1e-6)
    for side in ("i2t", "t2i"):
        assert metrics[side] == pytest.approx(again[side], abs=1e-6), side
    (row,) = [line for line in proc.stdout.splitlines() if cfg["params"]["method"] in line]
    want = [again[side][f"R@{k}"] for side in ("i2t", "t2i") for k in (1, 5, 10)]
    assert re.findall(r"\d+\.\d", row) == [f"{v:.1f}" for v in [*want, again["mean_R@1"]]]


def test_teacher_method_and_errors(files):
    d = files
    run(
        "fit",
        "--paired-images",
        "A.npy",
        "--paired-texts",
        "B.npy",
        "--method",
        "cca",
        "--out",
        "cca",
        cwd=d,
    )
    again = run(
        "fit",
        "--paired-images",
        "A.npy",
        "--paired-texts",
        "B.npy",
        "--method",
        "cca",
        "--out",
        "cca",
        cwd=d,
        ok=False,
    )
    assert again.returncode == 2 and "--overwrite" in again.stderr
    bad = run(
        "fit",
        "--paired-images",
        "A.npy",
        "--paired-texts",
        "B.npy",
        "--method",
        "sotalgn",
        "--out",
        "x",
        cwd=d,
        ok=False,
    )
    assert bad.returncode == 2
    assert "did you mean 'sotalign'" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert not (d / "x").exists()
    key = run(
        "fit",
        "--paired-images",
        "A.npy",
        "--paired-texts",
        "B.npy",
        "--set",
        "alhpa=1",
        "--out",
        "y",
        cwd=d,
        ok=False,
    )
    assert key.returncode == 2 and "did you mean 'alpha'" in key.stderr
    listing = run("methods", cwd=d)
    for m in ("sotalign", "sail", "cca", "procrustes", "contrastive"):
        assert m in listing.stdout


def test_fit_prints_the_validation_selection(files):
    proc = run(
        "fit",
        "--paired-images",
        "A.npy",
        "--paired-texts",
        "B.npy",
        "--unpaired-images",
        "X.npy",
        "--unpaired-texts",
        "Y.npy",
        "--out",
        "sel",
        "--set",
        "steps=10",
        "--set",
        "dim=16",
        "--set",
        "alpha_grid=[0.1]",
        "--set",
        "batch_unpaired=32",
        cwd=files,
    )
    out = proc.stdout
    assert "val MRR" in out and "selected" in out
    for cand in ("teacher:cca", "alpha=0", "alpha=0.1"):
        assert cand in out
    saved = json.loads((files / "sel" / "config.json").read_text())
    assert sum(c["selected"] for c in saved["selection"]) == 1
    assert all(c["val_MRR"] >= c["val_mean_R@1"] for c in saved["selection"])  # MRR ≥ R@1
    for c in saved["selection"]:  # each candidate's row shows its MRR
        row = next(line for line in out.splitlines() if f" {c['candidate']} " in line)
        assert f"{c['val_MRR']:.1f}" in row, row


def test_encode_and_eval_outputs_fail_in_one_line(tmp_path, capsys, monkeypatch):
    from cli_helpers import run_cli

    rng = np.random.default_rng(0)
    np.save(tmp_path / "A.npy", rng.standard_normal((30, 6)).astype(np.float32))
    np.save(tmp_path / "B.npy", rng.standard_normal((30, 5)).astype(np.float32))

    def run(*args):
        code, _, err = run_cli(list(args), capsys, monkeypatch, tmp_path)
        return code, err

    m = str(tmp_path / "m")
    assert run(
        "fit",
        "--paired-images",
        str(tmp_path / "A.npy"),
        "--paired-texts",
        str(tmp_path / "B.npy"),
        "--out",
        m,
        "--method",
        "cca",
        "--quiet",
    )[0] in (0, None)
    code, err = run(
        "encode",
        "--model",
        m,
        "--texts",
        str(tmp_path / "B.npy"),
        "--out",
        str(tmp_path / "enc.txt"),
    )
    assert code == 2 and "give a name ending in .npy" in err and err.count("\n") == 1
    assert not (tmp_path / "enc.txt").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where a folder should be: no write can succeed below it
    code, err = run(
        "eval",
        "--model",
        m,
        "--images",
        str(tmp_path / "A.npy"),
        "--texts",
        str(tmp_path / "B.npy"),
        "--out",
        str(blocker / "metrics.json"),
    )
    assert code == 2 and "cannot write here" in err and "Traceback" not in err
    code, err = run(
        "encode", "--model", m, "--texts", str(tmp_path / "B.npy"), "--out", str(blocker / "z.npy")
    )
    assert code == 2 and "cannot write here" in err
