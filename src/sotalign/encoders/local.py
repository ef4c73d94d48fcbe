"""Loading models from local files only: folders, the Hugging Face cache, ``name@file`` specs.

Importing this module sets ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` (unless already set):
nothing is ever downloaded.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sotalign.errors import ConfigError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _hf_source(name: str) -> tuple[str, bool]:
    """A local folder (``True``) or a model id looked up in the local cache only (``False``)."""
    p = Path(name).expanduser()
    if p.is_dir():
        return str(p), True
    if p.exists():
        raise ConfigError(f"hf:{name} is a file; pass the folder written by save_pretrained")
    if _looks_like_path(name):
        raise ConfigError(f"hf:{name}: no such folder; pass the folder written by save_pretrained")
    return name, False


def _looks_like_path(name: str) -> bool:
    """A name meant as a local path (``/x``, ``./x``, ``../x``, ``~/x``), not a hub model id."""
    return name.startswith(("/", "./", "../", "~", "\\")) or (len(name) > 1 and name[1] == ":")


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' weight-loading progress bars while a model loads."""
    try:
        from transformers.utils import logging as hf_logging
    except Exception:  # transformers absent or broken: nothing to silence
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _hf_load(loader: Callable[..., Any], name: str, what: str) -> Any:
    src, local = _hf_source(name)
    try:
        with _quiet_transformers():
            return loader(src, local_files_only=True)
    except Exception as exc:
        hint = (
            "check that the folder was written by save_pretrained"
            if local
            else "pass a local folder (save_pretrained / a git clone of the model) or "
            "pre-populate the Hugging Face cache; models are never downloaded"
        )
        raise ConfigError(
            f"hf:{name}: cannot load the {what} ({type(exc).__name__}: {str(exc)[:200]}); {hint}"
        ) from exc


def _weight_files_in(folder: str) -> list[Path]:
    p = Path(folder)
    if not p.is_dir():
        return []
    return sorted(
        f for f in p.rglob("*") if f.suffix in (".safetensors", ".bin", ".pt", ".pth", ".onnx")
    )


def _split_at(spec_rest: str) -> tuple[str, str | None]:
    """``name@file`` → (name, file); ``name`` → (name, None)."""
    name, sep, file = spec_rest.partition("@")
    return name, (file if sep else None)
