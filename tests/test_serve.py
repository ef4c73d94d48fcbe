"""The search page: its API against the aligned embeddings, its refusals (bad queries, paths
outside the gallery), the command binding to loopback, and the page in a real browser."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from sotalign import AlignedModel
from sotalign.serve import SearchService, load_gallery, make_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def server(fitted, tmp_path_factory):
    cache = tmp_path_factory.mktemp("gallery-cache")
    gallery_dir = tmp_path_factory.mktemp("gallery")
    for p in (fitted / "samples").glob("*.png"):
        shutil.copy(p, gallery_dir / p.name)
    (gallery_dir / "notes.txt").write_text("not an image\n")  # in the folder, not in the gallery
    am = AlignedModel.load(fitted / "model", device="cpu", progress=False)
    gallery = load_gallery(am, gallery_dir, texts=fitted / "samples" / "captions.txt",
                           cache_dir=cache)  # fmt: skip
    srv = make_server(SearchService(am, gallery), port=0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    host, port = srv.server_address[:2]
    yield {"url": f"http://{host}:{port}", "am": am, "gallery": gallery, "cache": cache}
    srv.shutdown()
    srv.server_close()


def _get(url: str) -> tuple[int, dict | bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            body, status, ctype = r.read(), r.status, r.headers["Content-Type"]
    except urllib.error.HTTPError as e:
        body, status, ctype = e.read(), e.code, e.headers["Content-Type"]
    return status, (json.loads(body) if ctype == "application/json" else body), ctype


def test_search_answers_with_the_gallery_ranked_by_cosine(server):
    status, body, _ = _get(server["url"] + "/api/search?q=a%20red%20heart&k=3")
    assert status == 200 and body["query"] == "a red heart"
    g, am = server["gallery"], server["am"]
    scores = np.asarray(g.embeddings, np.float32) @ am.encode_text(["a red heart"])[0]
    want = np.argsort(-scores, kind="stable")[:3]
    assert [r["path"] for r in body["results"]] == [g.paths[i] for i in want]
    assert [r["score"] for r in body["results"]] == pytest.approx(scores[want], abs=1e-4)
    # the gallery rows are the aligned embeddings of the images, cached as float16
    direct = am.encode_image([str(g.root / p) for p in g.paths])
    np.testing.assert_allclose(np.asarray(g.embeddings, np.float32), direct, atol=2e-3)
    assert len(list(server["cache"].glob("images-*.npy"))) == 1


def test_neighbors_and_classify(server):
    g = server["gallery"]
    status, body, _ = _get(server["url"] + f"/api/neighbors?path={g.paths[1]}&k=2")
    assert status == 200 and len(body["results"]) == 2 and body["path"] == g.paths[1]
    assert all(r["text"] in g.texts for r in body["results"])
    status, body, _ = _get(
        server["url"] + f"/api/classify?labels=apple,car,heart&path={g.paths[0]}&path={g.paths[1]}"
    )
    assert status == 200 and [r["path"] for r in body["results"]] == g.paths[:2]
    ref = server["am"].classify(np.asarray(g.embeddings[:2], np.float32), ["apple", "car", "heart"])
    assert [r["label"] for r in body["results"]] == ref.predicted


@pytest.mark.parametrize(
    ("query", "message"),
    [("/api/search?q=", "empty query"), ("/api/search?q=%20%20", "empty query"),
     ("/api/search?q=dog&k=abc", "k must be a whole number"),
     ("/api/search?q=dog&k=0", "between 1 and"), ("/api/search?q=dog&k=100000", "between 1 and"),
     ("/api/classify?labels=&path=x", "give labels"),
     ("/api/neighbors?path=../../etc/passwd", "not an image of this gallery")],
)  # fmt: skip
def test_bad_queries_get_400_and_a_clear_message(server, query, message):
    status, body, ctype = _get(server["url"] + query)
    assert status == 400 and ctype == "application/json" and message in body["error"]


@pytest.mark.parametrize(
    "path",
    ["/image/../../../../etc/passwd", "/image/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
     "/image//etc/passwd", "/image/%2Fetc%2Fpasswd", "/image/notes.txt", "/image/", "/nothing"],
)  # fmt: skip
def test_only_the_gallerys_images_are_served(server, path):
    status, body, _ = _get(server["url"] + path)
    assert status == 404 and b"root:" not in json.dumps(body).encode()


def test_a_gallery_image_is_served(server):
    g = server["gallery"]
    status, body, ctype = _get(server["url"] + "/image/" + g.paths[0])
    assert status == 200 and ctype == "image/png"
    assert body == (g.root / g.paths[0]).read_bytes()


def test_the_command_binds_to_loopback_by_default(fitted, tmp_path):
    cmd = [sys.executable, "-m", "sotalign", "serve", "--model", str(fitted / "model"),
           "--images", str(fitted / "samples"), "--port", "0", "--cache", str(tmp_path),
           "--device", "cpu"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # "serving 8 images on http://127.0.0.1:PORT/ …"
        assert "serving 8 images on http://127.0.0.1:" in line, proc.stderr.read()
        url = line.split(" on ")[1].split()[0]
        status, body, _ = _get(url + "api/search?q=dog&k=2")
        assert status == 200 and len(body["results"]) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_page_in_a_real_browser(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    shot = Path(tmp_path) / "search-page.png"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(server["url"] + "/")
        page.fill("#q", "a red heart")
        page.press("#q", "Enter")
        page.wait_for_selector(".card img", timeout=30_000)
        cards = page.locator(".card")
        assert cards.count() == 8  # k = 24 asks for more than the 8 images
        loaded = "[...document.querySelectorAll('.card img')]"
        page.wait_for_function(f"{loaded}.every(i => i.complete && i.naturalWidth > 0)")
        assert "results for “a red heart”" in page.inner_text("#status")
        first = page.locator(".card .name").first.inner_text()
        _, body, _ = _get(server["url"] + "/api/search?q=a%20red%20heart&k=1")
        assert first == body["results"][0]["path"]
        cards.first.click()
        page.wait_for_selector("#side li")
        assert page.locator("#side li").count() == 8  # 8 captions, k = 8
        page.fill("#labels", "heart, apple, car")
        page.click("#classify")
        page.wait_for_function("document.querySelector('.card .label').textContent.length > 0")
        page.fill("#q", "")
        page.goto(server["url"] + "/api/search?q=")  # an error answer is JSON, not a page
        assert "empty query" in page.inner_text("body")
        page.goto(server["url"] + "/?q=a%20dog")  # a shared link runs its query
        page.wait_for_selector(".card img")
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
