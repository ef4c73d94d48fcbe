"""Model folders: ``config.json`` + ``model.safetensors``, with a manifest that lets a load
check that the weights are the ones that were saved.

Layout of a folder written by :meth:`sotalign.SOTAlign.save`::

    config.json          format_version, params, aligner, d_x, d_y, … and "manifest"
    model.safetensors    the aligner's tensors

The manifest lives in ``config.json`` under the key ``"manifest"`` (one file, so the
configuration and the record of its weights are replaced together by one atomic rename)::

    "manifest": {
      "manifest_version": 1,
      "format_version": 1,                       # equal to config.json's format_version
      "weights_file": "model.safetensors",
      "config_sha256": {"aligner": "…", "d_x": "…", "d_y": "…"},
      "tensors": {"w_x": {"sha256": "…", "shape": [64, 16], "dtype": "float32"}, …}
    }

``tensors`` holds, for every tensor of the weights file, the sha256 of its raw bytes (C order,
little-endian, as stored), its shape and its dtype (torch's name). ``config_sha256`` holds the
sha256 of the canonical JSON (sorted keys, no spaces) of the configuration keys that decide
what the model computes, so an edited aligner configuration or input width is caught as well.

:func:`write_model_folder` refuses non-finite weights before anything is written, then writes
the weights and the configuration (with its manifest), each atomically. :func:`read_model_folder`
reads a folder back and checks, before anything is built from it: the JSON, the format version,
the manifest's structure, the weights file against the manifest (tensor set, dtype, shape,
sha256) and every weight for NaN/inf. A folder written before manifests existed (no
``"manifest"`` key) still loads, with a one-line :class:`UserWarning` that it cannot be
verified; its weights are still checked for NaN/inf. Every failure is an
:class:`~sotalign.errors.InputError` with one line naming the file and the fix. The meaning of
the configuration (method, parameters, aligner kind, widths against the weights) is checked by
the estimator, which knows the registries.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch as st
import torch

from ..errors import InputError
from .atomic import _json_default, atomic_write, write_json_atomic
from .files import PathLike, is_int, reason
from .safetensors import load_safetensors
from .validate import check_format_version

__all__ = [
    "CONFIG_FILE",
    "MANIFEST_KEY",
    "MANIFEST_VERSION",
    "OPTIONAL_CONFIG_KEYS",
    "VERIFIED_CONFIG_KEYS",
    "WEIGHTS_FILE",
    "check_finite_weights",
    "config_digest",
    "model_manifest",
    "read_model_folder",
    "tensor_digest",
    "write_model_folder",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MANIFEST_KEY = "manifest"
MANIFEST_VERSION = 1
#: Keys of ``config.json`` whose values the manifest pins (what the model computes).
VERIFIED_CONFIG_KEYS = ("aligner", "d_x", "d_y")
#: Keys pinned when the folder has them (newer folders): the frozen encoders of the inputs.
OPTIONAL_CONFIG_KEYS = ("encoders",)

_DAMAGED = "the file is damaged; re-save or re-fit the model"


# ----------------------------------------------------------------------------- digests


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 (hex) of a tensor's raw bytes in C order (as safetensors stores them)."""
    flat = t.detach().cpu().contiguous().reshape(-1)
    return hashlib.sha256(flat.view(torch.uint8).numpy().tobytes()).hexdigest()


def config_digest(value: Any) -> str:
    """sha256 (hex) of the canonical JSON of ``value`` (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def model_manifest(
    state: Mapping[str, torch.Tensor], config: Mapping[str, Any], format_version: int
) -> dict[str, Any]:
    """The manifest of ``state`` (the tensors to be written) and of ``config``'s
    :data:`VERIFIED_CONFIG_KEYS` (as they read back from JSON)."""
    keys = VERIFIED_CONFIG_KEYS + tuple(k for k in OPTIONAL_CONFIG_KEYS if k in config)
    pinned = {k: config.get(k) for k in keys}
    plain = json.loads(json.dumps(pinned, default=_json_default))
    return {
        "manifest_version": MANIFEST_VERSION,
        "format_version": format_version,
        "weights_file": WEIGHTS_FILE,
        "config_sha256": {k: config_digest(plain[k]) for k in keys},
        "tensors": {
            name: {
                "sha256": tensor_digest(t),
                "shape": list(t.shape),
                "dtype": _dtype_name(t),
            }
            for name, t in sorted(state.items())
        },
    }


# ----------------------------------------------------------------------------- checks


def check_finite_weights(state: Mapping[str, torch.Tensor], where: PathLike, fix: str) -> None:
    """InputError naming the first tensor of ``state`` that holds NaN or ±inf."""
    for name, t in state.items():
        if not (t.is_floating_point() or t.is_complex()) or t.numel() == 0:
            continue
        x = t if t.dtype in (torch.float16, torch.float32, torch.float64) else t.float()
        n_bad = int((~torch.isfinite(x)).sum())
        if n_bad:
            raise InputError(
                f"{where}: tensor '{name}' holds {n_bad} non-finite value(s) (NaN or inf): {fix}"
            )


def _check_manifest(manifest: Any, cfg_path: Path, format_version: int) -> dict[str, Any]:
    """The manifest's structure; returns it, or raises a one-line InputError."""

    def bad(what: str) -> InputError:
        return InputError(f"{cfg_path}: the manifest is damaged ({what}): {_DAMAGED}")

    if not isinstance(manifest, dict):
        raise bad(f"'{MANIFEST_KEY}' is {type(manifest).__name__}, not a mapping")
    version = manifest.get("manifest_version")
    if not is_int(version) or isinstance(version, bool):
        raise bad(f"manifest_version is {version!r}")
    if version != MANIFEST_VERSION:
        raise InputError(
            f"{cfg_path}: manifest version {version}, but this sotalign reads version"
            f" {MANIFEST_VERSION}; load the model with the sotalign release that wrote it"
        )
    if str(manifest.get("format_version")) != str(format_version):
        raise bad(f"its format_version {manifest.get('format_version')!r} is not {format_version}")
    if manifest.get("weights_file") != WEIGHTS_FILE:
        raise bad(f"weights_file is {manifest.get('weights_file')!r}, not '{WEIGHTS_FILE}'")
    digests = manifest.get("config_sha256")
    if not isinstance(digests, dict) or not all(
        isinstance(digests.get(k), str) for k in VERIFIED_CONFIG_KEYS
    ):
        raise bad("config_sha256 must map " + ", ".join(VERIFIED_CONFIG_KEYS) + " to digests")
    tensors = manifest.get("tensors")
    if not isinstance(tensors, dict):
        raise bad("'tensors' is not a mapping")
    for name, entry in tensors.items():
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("dtype"), str)
            and isinstance(entry.get("shape"), list)
            and all(is_int(s) and not isinstance(s, bool) and s >= 0 for s in entry["shape"])
        )
        if not ok:
            raise bad(f"entry of tensor {name!r} needs sha256, shape and dtype")
    return manifest


def _verify_config(cfg: dict[str, Any], manifest: dict[str, Any], cfg_path: Path) -> None:
    digests = manifest["config_sha256"]
    for key in OPTIONAL_CONFIG_KEYS:
        if key in cfg and key not in digests:
            raise InputError(
                f"{cfg_path}: '{key}' is not pinned by the manifest: it was added by hand or the"
                " file is damaged; remove it, or re-save or re-fit the model"
            )
    for key in VERIFIED_CONFIG_KEYS + tuple(k for k in OPTIONAL_CONFIG_KEYS if k in digests):
        if config_digest(cfg.get(key)) != manifest["config_sha256"][key]:
            raise InputError(
                f"{cfg_path}: '{key}' does not match the manifest (sha256"
                f" {manifest['config_sha256'][key][:12]}…): the file was edited or is damaged;"
                " restore it, or re-save or re-fit the model"
            )


def _verify_tensors(
    state: Mapping[str, torch.Tensor], manifest: dict[str, Any], weights: Path
) -> None:
    expected: dict[str, dict[str, Any]] = manifest["tensors"]
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        what = f"lacks tensor {missing[0]!r}" if missing else f"holds unknown tensor {extra[0]!r}"
        raise InputError(
            f"{weights}: {what} of the manifest: the file is damaged or comes from another"
            " model; re-save or re-fit the model"
        )
    for name, t in state.items():  # shapes first: they tell a swapped file from a damaged one
        entry = expected[name]
        if _dtype_name(t) != entry["dtype"] or list(t.shape) != entry["shape"]:
            raise InputError(
                f"{weights}: tensor '{name}' is {_dtype_name(t)} {tuple(t.shape)} but the manifest"
                f" says {entry['dtype']} {tuple(entry['shape'])}: the file is damaged or comes"
                " from another model; re-save or re-fit the model"
            )
    for name, t in state.items():
        entry = expected[name]
        if tensor_digest(t) != entry["sha256"]:
            raise InputError(
                f"{weights}: tensor '{name}' does not match the manifest (sha256"
                f" {entry['sha256'][:12]}…): {_DAMAGED}"
            )


# ----------------------------------------------------------------------------- read / write


def read_model_folder(
    path: PathLike, format_version: int
) -> tuple[dict[str, Any], dict[str, torch.Tensor], bool]:
    """Read and verify a model folder: ``(config, tensors, verified)``.

    ``verified`` is False for a folder without a manifest (written before manifests existed;
    a :class:`UserWarning` says so). Raises a one-line InputError for anything damaged."""
    path = Path(path)
    cfg_path = path / CONFIG_FILE
    weights = path / WEIGHTS_FILE
    if not cfg_path.is_file():
        raise InputError(f"{path}: not a sotalign model folder (no {CONFIG_FILE})")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(f"{cfg_path}: unreadable JSON ({reason(exc)}): {_DAMAGED}") from exc
    if not isinstance(cfg, dict) or not isinstance(cfg.get("params"), dict):
        raise InputError(
            f"{cfg_path}: not a sotalign model config (no 'params' mapping): {_DAMAGED}"
        )
    check_format_version(cfg.get("format_version"), format_version, path)
    manifest = None
    if MANIFEST_KEY in cfg:
        manifest = _check_manifest(cfg[MANIFEST_KEY], cfg_path, format_version)
        _verify_config(cfg, manifest, cfg_path)
    else:
        warnings.warn(
            f"{path}: this model folder has no manifest (saved by an older sotalign), so its"
            " weights cannot be verified; re-save it to add one",
            UserWarning,
            stacklevel=3,
        )
    if not weights.is_file():
        raise InputError(
            f"{path}: not a complete sotalign model folder (no {WEIGHTS_FILE}); pass the folder"
            " written by `sotalign fit`, or re-fit the model"
        )
    try:
        state, _ = load_safetensors(weights)
    except InputError as exc:  # the reader's fix is "re-create it": for a model, say how
        msg = str(exc).removesuffix(": re-create it").removesuffix("; re-create it")
        raise InputError(f"{msg}: re-save or re-fit the model") from exc
    if manifest is not None:
        _verify_tensors(state, manifest, weights)
    check_finite_weights(state, weights, _DAMAGED)
    return cfg, state, manifest is not None


def write_model_folder(
    path: PathLike,
    config: dict[str, Any],
    state: Mapping[str, torch.Tensor],
    format_version: int,
) -> Path:
    """Write ``state`` to ``model.safetensors`` and ``config`` plus its manifest to
    ``config.json``, each atomically, weights first (a crash between the two leaves a folder
    whose manifest no longer matches its weights, which a load refuses). Non-finite weights are
    refused before anything is written. ``path`` must exist."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    check_finite_weights(state, path / WEIGHTS_FILE, "refusing to save them; re-fit the model")
    # the configuration as it will read back (numpy scalars, tuples and paths made plain), so
    # that the manifest's digests are those a load computes
    plain = json.loads(json.dumps(config, default=_json_default))
    plain[MANIFEST_KEY] = model_manifest(state, plain, format_version)
    data = st.save(state, metadata={"format": "pt"})
    with atomic_write(path / WEIGHTS_FILE, "wb") as fh:
        fh.write(data)
    write_json_atomic(path / CONFIG_FILE, plain)
    return path
