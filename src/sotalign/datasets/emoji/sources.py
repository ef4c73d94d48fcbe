"""The raw inputs of the emoji build: the emoji font, emojibase-data, Debian packages.

Finding (or installing) the Noto Color Emoji font and rendering one emoji with it, fetching the
npm package ``emojibase-data``, and apt-get/dpkg helpers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from sotalign.errors import InputError

EMOJIBASE_VERSION = "17.0.0"
FONT_PATH = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
FONT_SIZE = 109  # the only size of the font's bitmap strike
CANVAS = 144  # rendered images are CANVAS × CANVAS, white background


def _run_quiet(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def _dpkg_version(package: str) -> str | None:
    if shutil.which("dpkg-query") is None:
        return None
    res = _run_quiet(["dpkg-query", "-W", "-f=${Version}", package])
    return res.stdout.strip() or None if res.returncode == 0 else None


def _apt_install(package: str, log: Any) -> bool:
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return False
    log(f"installing Debian package {package} (apt-get) …")
    res = _run_quiet(["apt-get", "install", "-y", "-q", package])
    if res.returncode != 0:
        _run_quiet(["apt-get", "update", "-q"])
        res = _run_quiet(["apt-get", "install", "-y", "-q", package])
    return res.returncode == 0


def find_font(font: Path | None, install: bool, log: Any) -> Path:
    """The Noto Color Emoji font: ``font``, the Debian path, or installed with apt-get."""
    path = font or FONT_PATH
    if not path.is_file() and font is None and install:
        _apt_install("fonts-noto-color-emoji", log)
    if not path.is_file():
        raise InputError(
            f"emoji font {path} not found: run 'apt-get install fonts-noto-color-emoji'"
            " (Debian/Ubuntu) or pass --font PATH/NotoColorEmoji.ttf"
        )
    return path


def find_emojibase(emojibase: Path | None, cache: Path, install: bool, log: Any) -> Path:
    """Folder of the npm package ``emojibase-data`` (with ``en/data.json``, ``meta/groups.json``).

    ``emojibase``, else ``cache/emojibase-data-<version>/package``, fetched with ``npm pack``.
    """
    if emojibase is not None:
        folder = emojibase
    else:
        folder = cache / f"emojibase-data-{EMOJIBASE_VERSION}" / "package"
        if not (folder / "en" / "data.json").is_file() and install:
            if shutil.which("npm") is None:
                raise InputError(
                    "npm is needed to fetch emojibase-data: install it (apt-get install npm) or"
                    f" run 'npm pack emojibase-data@{EMOJIBASE_VERSION}' elsewhere, untar it and"
                    " pass --emojibase DIR/package"
                )
            dest = folder.parent
            dest.mkdir(parents=True, exist_ok=True)
            log(f"fetching emojibase-data@{EMOJIBASE_VERSION} with npm pack …")
            res = _run_quiet(["npm", "pack", f"emojibase-data@{EMOJIBASE_VERSION}"], cwd=dest)
            tgz = dest / f"emojibase-data-{EMOJIBASE_VERSION}.tgz"
            if res.returncode != 0 or not tgz.is_file():
                raise InputError(
                    f"'npm pack emojibase-data@{EMOJIBASE_VERSION}' failed"
                    f" ({res.stderr.strip()[-200:]}); fetch it by hand and pass --emojibase DIR"
                )
            with tarfile.open(tgz) as tf:
                tf.extractall(dest, filter="data")
    for rel in ("en/data.json", "meta/groups.json", "package.json"):
        if not (folder / rel).is_file():
            raise InputError(
                f"emojibase-data: {folder / rel} not found; pass --emojibase pointing at the"
                f" unpacked npm package (npm pack emojibase-data@{EMOJIBASE_VERSION})"
            )
    return folder


def render_emoji(font: Any, text: str) -> Any:
    """The emoji as an RGB ``CANVAS × CANVAS`` image on white, or ``None`` if not one glyph.

    The font draws a supported emoji (sequences included) as a single bitmap of at most
    136 × 128 pixels; an unsupported sequence falls apart into several glyphs (wider) and an
    unsupported code point draws nothing.
    """
    from PIL import Image, ImageDraw

    layer = Image.new("RGBA", (4 * CANVAS, 2 * CANVAS), (0, 0, 0, 0))
    ImageDraw.Draw(layer).text((8, 8), text, font=font, embedded_color=True)
    bbox = layer.getchannel("A").getbbox()
    if bbox is None:
        return None
    w, h = bbox[2] - bbox[0], bbox[3] - bbox[1]
    if w > CANVAS or h > CANVAS:
        return None
    glyph = layer.crop(bbox)
    canvas = Image.new("RGBA", (CANVAS, CANVAS), (255, 255, 255, 255))
    canvas.alpha_composite(glyph, ((CANVAS - w) // 2, (CANVAS - h) // 2))
    return canvas.convert("RGB")
