#!/usr/bin/env python
"""The README's picture of the search page (``docs/search-page.png``).

Renders the emoji of the bundled test split (Debian ``fonts-noto-color-emoji``) into a gallery
folder, serves it with the demo's model (``make demo`` writes ``out/demo/model``) and the test
captions, types a query into the page in Debian's Chromium (driven by Playwright), clicks the
first result and classifies the shown images, then saves the screenshot.

    python scripts/screenshot_search_page.py [--model out/demo/model] [--query TEXT]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
from pathlib import Path

from PIL import ImageFont, features

from sotalign import AlignedModel
from sotalign.datasets.emoji import FONT_SIZE, default_root
from sotalign.datasets.emoji.sources import render_emoji
from sotalign.serve import SearchService, load_gallery, make_server

FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="out/demo/model")
    ap.add_argument("--query", default="the flag of a country")
    ap.add_argument("--labels", default="food, animal, face, vehicle, flag, sport")
    ap.add_argument("--out", default="docs/search-page.png")
    args = ap.parse_args()
    meta = json.loads((default_root() / "metadata.json").read_text())
    layout = ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC
    font = ImageFont.truetype(str(FONT), FONT_SIZE, layout_engine=layout)
    with tempfile.TemporaryDirectory() as tmp:
        gallery_dir = Path(tmp) / "emoji"
        gallery_dir.mkdir()
        captions = []
        for i in meta["splits"]["test"]:
            item = meta["items"][i]
            img = render_emoji(font, item["emoji"])
            if img is not None:
                name = item["label"].replace(" ", "-").replace("/", "-")
                img.save(gallery_dir / f"{name}.png")
                captions.append(item["caption"])
        (Path(tmp) / "captions.txt").write_text("\n".join(captions) + "\n")
        am = AlignedModel.load(args.model, device="cpu")
        gallery = load_gallery(
            am, gallery_dir, texts=Path(tmp) / "captions.txt", cache_dir=Path(tmp) / "cache"
        )
        srv = make_server(SearchService(am, gallery), port=0)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        host, port = srv.server_address[:2]
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"))
            page = browser.new_page(viewport={"width": 1280, "height": 760})
            page.goto(f"http://{host}:{port}/")
            page.fill("#q", args.query)
            page.press("#q", "Enter")
            page.wait_for_selector(".card img")
            page.wait_for_function(
                "[...document.querySelectorAll('.card img')].every(i => i.complete)"
            )
            page.locator(".card").first.click()
            page.wait_for_selector("#side li")
            page.fill("#labels", args.labels)
            page.click("#classify")
            page.wait_for_function("document.querySelector('.card .label').textContent")
            page.screenshot(path=args.out)
            browser.close()
        srv.shutdown()
    print(f"wrote {args.out} ({len(gallery.paths)} images)")


if __name__ == "__main__":
    main()
