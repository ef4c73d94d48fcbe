"""Rendering IconifyJSON icons to 224-px PNGs on white with resvg (``sotalign[icons]``)."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sotalign.errors import InputError, MissingDependencyError
from sotalign.io import atomic_write

from .corpus import IconRecord
from .sources import _ID_RE, IconSet, read_set

RENDER_SIZE = 224
BACKGROUND = "#ffffff"
MIN_INK_PIXELS = 16  # pixels darker than 250 in some channel; fewer: a blank render
DEFAULT_BOX = {"left": 0.0, "top": 0.0, "width": 16.0, "height": 16.0}


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------
class RenderError(InputError):
    """An icon that cannot be rendered (bad SVG, or a blank image)."""


def _num(v: Any) -> str:
    f = float(v)
    return str(int(f)) if f.is_integer() else repr(f)


def icon_svg(
    icon: Mapping[str, Any],
    set_data: Mapping[str, Any],
    *,
    monochrome: bool,
    size: int = RENDER_SIZE,
) -> str:
    """A standalone SVG document of one IconifyJSON icon, ``size`` pixels square.

    The view box is the icon's ``left top width height`` (falling back to the set's, then to
    0 0 16 16); the icon is fitted and centred. Monochrome: ``currentColor`` becomes black.
    """
    if any(icon.get(k) for k in ("rotate", "hFlip", "vFlip")):
        raise RenderError("icon transformations (rotate/flip) are not supported")
    box = {k: icon.get(k, set_data.get(k, d)) for k, d in DEFAULT_BOX.items()}
    if float(box["width"]) <= 0 or float(box["height"]) <= 0:
        raise RenderError(f"empty view box {box}")
    body = str(icon.get("body", ""))
    if monochrome:
        body = re.sub("currentcolor", "#000000", body, flags=re.IGNORECASE)
    view = " ".join(_num(box[k]) for k in ("left", "top", "width", "height"))
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="{size}" height="{size}" viewBox="{view}" color="#000000">{body}</svg>'
    )


def _resvg() -> Any:
    try:
        import resvg_py
    except ImportError as exc:
        raise MissingDependencyError(
            "rendering icons needs resvg: pip install 'sotalign[icons]' (or resvg-py)"
        ) from exc
    return resvg_py


def render_svg(svg: str, size: int = RENDER_SIZE) -> Any:
    """Render an SVG document to a ``size × size`` RGB ``PIL.Image`` on white.

    Raises :class:`RenderError` if resvg refuses the SVG or the result is blank.
    """
    from PIL import Image

    resvg = _resvg()
    try:
        png = resvg.svg_to_bytes(svg_string=svg, background=BACKGROUND, skip_system_fonts=True)
        img = Image.open(io.BytesIO(bytes(png)))
        img.load()
    except Exception as exc:  # resvg raises ValueError; a corrupt PNG anything
        raise RenderError(f"render failed ({type(exc).__name__}: {exc})") from exc
    img = img.convert("RGB")  # opaque already: resvg fills the background
    if img.size != (size, size):
        raise RenderError(f"rendered {img.size[0]}x{img.size[1]} instead of {size}x{size}")
    ink = int((np.asarray(img).min(axis=2) < 250).sum())
    if ink < MIN_INK_PIXELS:
        raise RenderError(f"blank render ({ink} non-white pixels)")
    return img


def renderer_versions() -> dict[str, str]:
    """Versions of the renderer (resvg-py and the resvg it wraps)."""
    from importlib.metadata import version

    resvg = _resvg()
    return {
        "resvg-py": version("resvg-py"),
        "resvg": str(getattr(resvg, "__resvg_version__", "unknown")),
    }


def png_path(png_dir: Path, icon_id: str) -> Path:
    """Where the PNG of ``prefix:name`` lives: ``png_dir/prefix/name.png``."""
    prefix, _, name = icon_id.partition(":")
    if not (_ID_RE.fullmatch(prefix) and _ID_RE.fullmatch(name)):
        raise InputError(f"invalid icon id {icon_id!r}")
    return png_dir / prefix / f"{name}.png"


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="icon",
        disable=not enabled,
        file=sys.stderr,
        mininterval=5.0,
    )


def render_icons(
    root: Path,
    sets: Sequence[IconSet],
    records: Sequence[IconRecord],
    png_dir: Path,
    *,
    size: int = RENDER_SIZE,
    progress: bool = True,
) -> tuple[list[bool], list[tuple[str, str]], int]:
    """Render the PNG of every record that lacks one; returns (ok per record, failures, number
    rendered now). A set file is read only if one of its icons still needs rendering."""
    by_set: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_set.setdefault(r.prefix, []).append(i)
    info = {s.prefix: s for s in sets}
    ok = [False] * len(records)
    failed: list[tuple[str, str]] = []
    n_now = 0
    bar = _progress(len(records), "render", progress)
    for prefix, idx in by_set.items():
        todo = []
        for i in idx:
            if png_path(png_dir, records[i].id).is_file():
                ok[i] = True
            else:
                todo.append(i)
        bar.update(len(idx) - len(todo))
        if not todo:
            continue
        data = read_set(root, prefix)
        mono = not info[prefix].palette
        for i in todo:
            rec = records[i]
            try:
                img = render_svg(icon_svg(data["icons"][rec.name], data, monochrome=mono), size)
                with atomic_write(png_path(png_dir, rec.id)) as fh:
                    img.save(fh, format="PNG")
                ok[i] = True
                n_now += 1
            except RenderError as exc:
                failed.append((rec.id, str(exc)))
            bar.update(1)
    bar.close()
    return ok, failed, n_now
