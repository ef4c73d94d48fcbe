"""A damaged model folder is refused, never trusted: manifest, schema and finiteness checks of
``SOTAlign.save`` / ``SOTAlign.load`` (and of the command line on top of them)."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch as st
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from sotalign import SOTAlign
from sotalign.cli import main
from sotalign.errors import InputError, SotalignError

CONFIG, WEIGHTS = "config.json", "model.safetensors"
D_X, D_Y = 12, 8


def _pairs(d_x: int, d_y: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(40, 4))
    A = z @ rng.normal(size=(4, d_x)) + 0.1 * rng.normal(size=(40, d_x))
    B = z @ rng.normal(size=(4, d_y)) + 0.1 * rng.normal(size=(40, d_y))
    return A.astype(np.float32), B.astype(np.float32)


A, B = _pairs(D_X, D_Y)


def _sail(d_x: int) -> SOTAlign:
    a, b = _pairs(d_x, D_Y, seed=d_x)
    kw = dict(steps=3, dim=6, progress=False, device="cpu", early_stopping=False, refit=False)
    return SOTAlign(method="sail", **kw).fit(a, b)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict[str, Path]:
    """Saved folders: ``cca`` (d_x = 12), ``cca_other`` (d_x = 10), ``sail`` (heads,
    d_x = 12) and ``sail_other`` (heads, d_x = 10)."""
    root = tmp_path_factory.mktemp("models")
    a10, b10 = _pairs(10, D_Y, seed=1)
    models = {
        "cca": SOTAlign(method="cca").fit(A, B),
        "cca_other": SOTAlign(method="cca").fit(a10, b10),
        "sail": _sail(D_X),
        "sail_other": _sail(10),
    }
    return {name: m.save(root / name) for name, m in models.items()}


@pytest.fixture
def folder(store, tmp_path) -> Path:
    """A fresh copy of the saved ``cca`` model to damage."""
    return Path(shutil.copytree(store["cca"], tmp_path / "model"))


def _copy(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst))


def _encodes(est: SOTAlign) -> tuple[np.ndarray, np.ndarray]:
    return est.encode_images(A), est.encode_texts(B)


def _read_cfg(folder: Path) -> dict:
    return json.loads((folder / CONFIG).read_text())


def _write_cfg(folder: Path, cfg: dict) -> None:
    (folder / CONFIG).write_text(json.dumps(cfg))


def _drop_manifest(folder: Path) -> Path:
    cfg = _read_cfg(folder)
    del cfg["manifest"]
    _write_cfg(folder, cfg)
    return folder


def _header_len(path: Path) -> int:
    return struct.unpack("<Q", path.read_bytes()[:8])[0]


def _flip(path: Path, pos: int, bit: int = 0) -> None:
    raw = bytearray(path.read_bytes())
    raw[pos] ^= 1 << bit
    path.write_bytes(bytes(raw))


def _refused(folder: Path, match: str) -> str:
    """Load must fail with a one-line InputError matching ``match``; returns the message."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a legacy folder's "no manifest"
        with pytest.raises(InputError, match=match) as exc:
            SOTAlign.load(folder)
    msg = str(exc.value)
    assert "\n" not in msg and "\r" not in msg, msg
    assert str(folder) in msg, msg  # names the file
    fixes = ("re-save", "re-fit", "restore", "re-train", "pass the folder", "release that wrote")
    assert any(f in msg for f in fixes), msg  # and the fix
    return msg


# ----------------------------------------------------------------------------- round trip


def test_save_writes_a_manifest_that_load_verifies(folder):
    cfg = _read_cfg(folder)
    man = cfg["manifest"]
    assert man["manifest_version"] == 1 and man["format_version"] == cfg["format_version"]
    assert set(man["config_sha256"]) == {"aligner", "d_x", "d_y"}
    # every tensor: sha256 of its bytes in the file, shape and dtype
    raw = (folder / WEIGHTS).read_bytes()
    n = _header_len(folder / WEIGHTS)
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    assert set(man["tensors"]) == set(header)
    for name, info in header.items():
        b, e = info["data_offsets"]
        entry = man["tensors"][name]
        assert entry["sha256"] == hashlib.sha256(raw[8 + n + b : 8 + n + e]).hexdigest()
        assert entry["shape"] == info["shape"] and entry["dtype"] == "float32"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = SOTAlign.load(folder)
    ref = SOTAlign.load(folder)
    for x, y in zip(_encodes(est), _encodes(ref), strict=True):
        assert np.array_equal(x, y)


def test_heads_model_round_trips(store):
    est = SOTAlign.load(store["sail"])
    assert est.aligner_.kind == "heads" and est.encode_images(A).shape == (40, 6)


# ----------------------------------------------------------------------------- weights


def _put_tensor(folder: Path, name: str, fn, fix_manifest: bool) -> None:
    """Rewrite one tensor of the weights file; optionally make the manifest agree with it (a
    manifest that was itself regenerated over bad weights)."""
    state = st.load_file(folder / WEIGHTS)
    state[name] = fn(state[name].clone())
    (folder / WEIGHTS).write_bytes(st.save(state, metadata={"format": "pt"}))
    if fix_manifest:
        cfg = _read_cfg(folder)
        t = state[name].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        cfg["manifest"]["tensors"][name]["sha256"] = hashlib.sha256(t).hexdigest()
        _write_cfg(folder, cfg)


def _nan_at_0(t: torch.Tensor) -> torch.Tensor:
    t.view(-1)[0] = float("nan")
    return t


def test_nan_weight_in_the_file_is_refused(folder):
    _put_tensor(folder, "w_x", _nan_at_0, fix_manifest=False)
    _refused(folder, r"model\.safetensors: tensor 'w_x' does not match the manifest")


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weight_is_refused_even_when_the_manifest_agrees(folder, legacy, value):
    def put(t: torch.Tensor) -> torch.Tensor:
        t.view(-1)[3] = value
        return t

    _put_tensor(folder, "mu_a", put, fix_manifest=not legacy)
    if legacy:
        _drop_manifest(folder)
    _refused(folder, r"model\.safetensors: tensor 'mu_a' holds 1 non-finite value")


def test_bit_flip_in_the_data_area_is_refused(folder):
    size = (folder / WEIGHTS).stat().st_size
    _flip(folder / WEIGHTS, size - 3, bit=2)  # inside the last tensor, a finite change
    msg = _refused(folder, r"model\.safetensors: tensor '\w+' does not match the manifest")
    assert "the file is damaged; re-save or re-fit the model" in msg


def test_bit_flip_in_the_header_is_refused(folder):
    path = folder / WEIGHTS
    n = _header_len(path)
    header = path.read_bytes()[8 : 8 + n]
    # a tensor's name: 'mu_a' -> 'mu_c' (the JSON stays valid, the tensor set changes)
    pos = 8 + header.index(b'"mu_a"') + 4
    _flip(path, pos, bit=1)
    _refused(folder, r"model\.safetensors: lacks tensor 'mu_a' of the manifest")


def test_bit_flip_in_the_header_length_is_refused(folder):
    _flip(folder / WEIGHTS, 2, bit=0)
    _refused(folder, r"model\.safetensors: .*re-create it|model\.safetensors: ")


# ----------------------------------------------------------------------------- config.json


def _edit(folder: Path, edit) -> Path:
    cfg = _read_cfg(folder)
    edit(cfg)
    _write_cfg(folder, cfg)
    return folder


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c["params"].update(method="evil"), r"unknown method 'evil'"),
        (lambda c: c["params"].update(dim="abc"), r"dim must be an integer >= 1, got 'abc'"),
        (lambda c: c["params"].update(alpha_grid="x"), r"alpha_grid must be a non-empty list"),
        (lambda c: c["params"].update(lr=[1]), r"lr must be"),
        (lambda c: c.update(params=[1, 2]), r"no 'params' mapping"),
        (lambda c: c.pop("params"), r"no 'params' mapping"),
        (lambda c: c.pop("format_version"), r"no format version recorded"),
        (lambda c: c.update(format_version=99), r"model format version 99"),
        (lambda c: c.pop("aligner"), r"'aligner'"),
        (lambda c: c.update(aligner=["cca"]), r"'aligner'"),
        (lambda c: c["aligner"].update(kind="evil"), r"'aligner'|json: unknown aligner kind"),
        (lambda c: c.pop("d_x"), r"'d_x'"),
        (lambda c: c.update(d_x="abc"), r"'d_x'"),
        (lambda c: c.update(d_y=True), r"'d_y'"),
        (lambda c: c.update(d_y=D_Y + 1), r"'d_y'|d_y=9"),
        (lambda c: c.update(n_unpaired=5), r"'n_unpaired' must be two integers"),
        (lambda c: c.update(n_pairs="many"), r"'n_pairs' must be an integer"),
        (lambda c: c.update(selection={"a": 1}), r"'selection' must be a list"),
        (lambda c: c.update(fit_seconds="x"), r"'fit_seconds' must be a number"),
    ],
)
def test_bad_config_is_refused_in_one_line(folder, legacy, edit, match):
    if legacy:
        _drop_manifest(folder)
    _refused(_edit(folder, edit), match)


def test_unknown_aligner_kind_without_manifest_names_the_kinds(folder):
    _edit(_drop_manifest(folder), lambda c: c["aligner"].update(kind="ccb"))
    _refused(folder, r"config\.json: unknown aligner kind 'ccb' \(did you mean 'cca'\?\)")


def test_width_that_does_not_fit_the_weights_is_refused(folder):
    _edit(_drop_manifest(folder), lambda c: c.update(d_x=D_X + 1))
    _refused(folder, r"the weights do not fit the 'cca' aligner of config\.json with d_x=13")


@pytest.mark.parametrize("bad", ["{", "[]", "null", "", "\x00\xff", "[" * 100_000])
def test_unreadable_config_is_refused(folder, bad):
    (folder / CONFIG).write_bytes(bad.encode("latin-1"))
    _refused(folder, r"config\.json: ")


def test_damaged_manifest_is_refused(folder):
    for edit, match in [
        (lambda c: c.update(manifest=None), r"the manifest is damaged \('manifest' is NoneType"),
        (lambda c: c["manifest"].update(tensors=[]), r"'tensors' is not a mapping"),
        (lambda c: c["manifest"]["tensors"]["w_x"].update(shape="12"), r"tensor 'w_x' needs"),
        (lambda c: c["manifest"].update(manifest_version=7), r"manifest version 7"),
        (lambda c: c["manifest"]["tensors"]["w_x"].update(dtype="float16"), r"says float16"),
        (lambda c: c["manifest"]["tensors"].pop("w_x"), r"unknown tensor 'w_x'"),
        (lambda c: c["aligner"].update(reg=0.5), r"'aligner' does not match the manifest"),
    ]:
        fresh = _copy(folder, folder.parent / f"m{id(edit)}")
        _refused(_edit(fresh, edit), match)


# ----------------------------------------------------------------------------- other models


@pytest.mark.parametrize("kind", ["cca", "sail"])
@pytest.mark.parametrize("legacy", [False, True])
def test_weights_of_another_model_are_refused(store, tmp_path, kind, legacy):
    folder = _copy(store[kind], tmp_path / "m")
    shutil.copy(store[f"{kind}_other"] / WEIGHTS, folder / WEIGHTS)
    if legacy:  # no manifest: the shapes themselves give it away (a torch size mismatch)
        _drop_manifest(folder)
        msg = _refused(folder, r"model\.safetensors: the weights do not fit the '\w+' aligner")
        assert "different models" in msg
    else:
        _refused(folder, r"model\.safetensors: tensor '.+' is float32 \(\d+.*\) but the manifest")


def test_heads_config_of_another_shape_is_refused_without_manifest(store, tmp_path):
    folder = _drop_manifest(_copy(store["sail"], tmp_path / "m"))
    _edit(folder, lambda c: c["aligner"].update(dim=7))
    msg = _refused(folder, r"the weights do not fit the 'heads' aligner .*size mismatch")
    assert "Traceback" not in msg


# ----------------------------------------------------------------------------- save


def test_save_refuses_non_finite_weights_and_writes_nothing(store, tmp_path):
    est = SOTAlign.load(store["cca"])
    est.aligner_.w_y_ = est.aligner_.w_y_.clone()
    est.aligner_.w_y_[1, 2] = float("nan")
    target = tmp_path / "new"
    with pytest.raises(InputError, match=r"new/model\.safetensors: tensor 'w_y' holds 1 non"):
        est.save(target)
    assert not target.exists()
    # over an existing model with overwrite=True: the old files stay as they were
    old = _copy(store["cca"], tmp_path / "old")
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    with pytest.raises(InputError, match="refusing to save them; re-fit the model"):
        est.save(old, overwrite=True)
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before


def test_save_refuses_parameters_that_load_would_refuse(store, tmp_path):
    est = SOTAlign.load(store["cca"]).set_params(dim="abc")
    with pytest.raises(SotalignError, match="dim must be an integer"):
        est.save(tmp_path / "new")
    assert not (tmp_path / "new").exists()


# ----------------------------------------------------------------------------- old folders


def test_folder_without_manifest_loads_with_a_warning(store, tmp_path):
    folder = _drop_manifest(_copy(store["sail"], tmp_path / "old"))
    with pytest.warns(UserWarning, match=r"has no manifest .* cannot be verified") as rec:
        est = SOTAlign.load(folder)
    assert len(rec) == 1 and "\n" not in str(rec[0].message)
    ref = SOTAlign.load(store["sail"])
    for x, y in zip(_encodes(est), _encodes(ref), strict=True):
        assert np.array_equal(x, y)
    # re-saving adds the manifest
    est.save(tmp_path / "resaved")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SOTAlign.load(tmp_path / "resaved")


# ----------------------------------------------------------------------------- command line


def test_cli_encode_on_a_damaged_model_exits_2_with_one_line(folder, tmp_path):
    _flip(folder / WEIGHTS, (folder / WEIGHTS).stat().st_size - 1, bit=6)
    np.save(tmp_path / "A.npy", A)
    out = tmp_path / "Z.npy"
    proc = subprocess.run(
        [sys.executable, "-m", "sotalign", "encode", "--model", str(folder),
         "--images", str(tmp_path / "A.npy"), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "does not match the manifest" in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()


def test_cli_eval_on_a_damaged_model_exits_2_with_one_line(folder, tmp_path, monkeypatch, capsys):
    _edit(folder, lambda c: c["params"].update(dim="abc"))
    np.save(tmp_path / "A.npy", A)
    np.save(tmp_path / "B.npy", B)
    argv = ["sotalign", "eval", "--model", str(folder), "--images", str(tmp_path / "A.npy"),
            "--texts", str(tmp_path / "B.npy")]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "dim must be an integer" in err[0]


# ----------------------------------------------------------------------------- properties

_LEAVES = (
    hs.none()
    | hs.booleans()
    | hs.integers(-3, 20)
    | hs.integers()
    | hs.floats(allow_nan=True, allow_infinity=True)
    | hs.text(max_size=6)
    | hs.sampled_from(["cca", "heads", "sail", "evil", "auto", "1", "float32", "abc"])
)
_JSON = hs.recursive(
    _LEAVES,
    lambda inner: (
        hs.lists(inner, max_size=3) | hs.dictionaries(hs.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=5,
)


def _paths(obj, prefix=()):
    """Every key path (dict keys and list indices) of a JSON value."""
    out = []
    items = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    )
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_paths(v, (*prefix, k)))
    return out


def _load_or_refuse(folder: Path, ref: tuple[np.ndarray, np.ndarray]) -> None:
    """Either a one-line SotalignError, or a model that encodes exactly like the original."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing may load quietly with a warning
            est = SOTAlign.load(folder)
    except SotalignError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    for x, y in zip(_encodes(est), ref, strict=True):
        assert np.array_equal(x, y)


_SETTINGS = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


@pytest.mark.parametrize("kind", ["cca", "sail"])
@_SETTINGS
@given(data=hs.data())
def test_random_config_corruption_never_crashes(store, kind, data):
    src = store[kind]
    ref = _encodes(SOTAlign.load(src))
    cfg = _read_cfg(src)
    path = data.draw(hs.sampled_from(_paths(cfg)))
    value = data.draw(_JSON)
    bad = copy.deepcopy(cfg)
    node = bad
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    with tempfile.TemporaryDirectory() as tmp:
        folder = _copy(src, Path(tmp) / "m")
        (folder / CONFIG).write_text(json.dumps(bad))
        _load_or_refuse(folder, ref)


@pytest.mark.parametrize("kind", ["cca", "sail"])
@_SETTINGS
@given(data=hs.data())
def test_random_weight_file_corruption_never_crashes(store, kind, data):
    src = store[kind]
    ref = _encodes(SOTAlign.load(src))
    raw = bytearray((src / WEIGHTS).read_bytes())
    head = 8 + _header_len(src / WEIGHTS)
    flips = data.draw(
        hs.lists(
            hs.tuples(hs.integers(0, head - 1) | hs.integers(0, len(raw) - 1), hs.integers(0, 7)),
            max_size=4,
        )
    )
    for pos, bit in flips:
        raw[pos] ^= 1 << bit
    cut = data.draw(hs.none() | hs.integers(0, len(raw)))
    if cut is not None:
        raw = raw[:cut]
    with tempfile.TemporaryDirectory() as tmp:
        folder = _copy(src, Path(tmp) / "m")
        (folder / WEIGHTS).write_bytes(bytes(raw))
        _load_or_refuse(folder, ref)
