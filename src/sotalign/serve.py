"""A local search page over an image gallery: ``sotalign serve``.

The gallery's images are embedded once into the aligned space (``z = normalize(g(f_img(x)))``,
:class:`sotalign.AlignedModel`), saved as a ``.npy`` file and memory-mapped, so a query costs one
text encoding and one streamed matrix–vector product over the rows (:func:`_top_k`): sub-second
on CPU for 100k images. The HTTP server (standard library, threads) answers

``GET /``                              the page (one self-contained HTML file)
``GET /api/search?q=TEXT&k=K``         ``{"results": [{"path": …, "score": …}, …]}``, best first
``GET /api/neighbors?path=P&k=K``      the captions nearest an image (with ``--texts``)
``GET /api/classify?labels=a,b&path=P`` zero-shot label scores of gallery images (``path`` repeats)
``GET /image/P``                       a gallery image

``P`` is a path relative to the gallery folder; only the files of the gallery are served (a
path is looked up in the gallery's list, never joined blindly to the folder), so nothing else
on the machine can be read through the server. Bad requests get status 400 and
``{"error": "…"}``. The server binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from .aligned import DEFAULT_TEMPLATES, AlignedModel
from .embed import list_images, read_texts
from .errors import InputError
from .io import atomic_write, load_embedding_file

__all__ = ["MAX_K", "Gallery", "default_cache_dir", "load_gallery", "make_server"]

MAX_K = 500
"""Most results one request may ask for."""


def default_cache_dir() -> Path:
    """Where gallery embeddings are cached: ``$SOTALIGN_CACHE/galleries`` (default
    ``~/.cache/sotalign/galleries``)."""
    base = os.environ.get("SOTALIGN_CACHE") or Path.home() / ".cache" / "sotalign"
    return Path(base) / "galleries"


@dataclass
class Gallery:
    """Images under ``root`` (``paths``, relative, sorted) and their aligned rows
    (``embeddings``, memory-mapped); optionally captions and their aligned rows."""

    root: Path
    paths: list[str]
    embeddings: np.ndarray
    texts: list[str] | None = None
    text_embeddings: np.ndarray | None = None

    def __post_init__(self) -> None:
        self._index = {p: i for i, p in enumerate(self.paths)}

    def index_of(self, rel: str) -> int | None:
        """Row of a gallery path, or None if the path is not one of the gallery's images."""
        return self._index.get(rel)


def _rows_file(
    am: AlignedModel, items: list[str], kind: str, cache_dir: Path, stamp: list[Any]
) -> Path:
    """The cache file of the aligned rows of ``items``: named by a digest of the model's
    weights manifest and the items (with their sizes and times), so any change re-encodes."""
    h = hashlib.sha256()
    h.update(json.dumps(am.specs).encode())
    h.update(json.dumps(am.model.aligner_.get_config(), sort_keys=True, default=str).encode())
    for k, v in sorted(am.model.aligner_.state_dict().items()):
        h.update(k.encode())
        h.update(v.numpy().tobytes())
    h.update(json.dumps([kind, items, stamp]).encode())
    return cache_dir / f"{kind}-{h.hexdigest()[:24]}.npy"


def _cached_rows(path: Path, encode: Any) -> np.ndarray:
    if not path.is_file():
        Z = np.asarray(encode(), np.float16)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb") as fh:
            np.save(fh, Z)
    return np.load(path, mmap_mode="r")


def load_gallery(
    am: AlignedModel,
    root: str | Path,
    *,
    embeddings: str | Path | None = None,
    texts: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> Gallery:
    """The images under ``root`` with their aligned rows: ``embeddings`` (a ``sotalign
    encode`` output, its ``.paths.txt`` naming the rows) or, by default, encoded now and cached
    in ``cache_dir`` (:func:`default_cache_dir`); ``texts``: captions for image → text."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise InputError(f"--images {root}: not a folder")
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    if embeddings is not None:
        emb_path = Path(embeddings)
        Z = load_embedding_file(emb_path, check=True)
        side = emb_path.with_name(emb_path.stem + ".paths.txt")
        if not side.is_file():
            raise InputError(
                f"{emb_path}: needs {side.name} beside it (written by sotalign encode)"
            )
        rel = []
        for line in side.read_text(encoding="utf-8").splitlines():
            p = Path(line).expanduser()
            p = p.resolve() if p.is_absolute() else (side.parent / p).resolve()
            if not p.is_relative_to(root):
                raise InputError(f"{side}: {line} is not under the gallery folder {root}")
            rel.append(p.relative_to(root).as_posix())
        if len(rel) != len(Z):
            raise InputError(f"{side}: {len(rel)} paths for {len(Z)} rows of {emb_path}")
        paths = rel
    else:
        files = list_images(root)
        paths = [f.relative_to(root).as_posix() for f in files]
        stamp = [[f.stat().st_size, f.stat().st_mtime_ns] for f in files]
        out = _rows_file(am, paths, "images", cache, stamp)
        Z = _cached_rows(out, lambda: am.encode_image([str(f) for f in files]))
    if Z.shape[1] != _model_dim(am):
        raise InputError(
            f"the gallery rows have {Z.shape[1]} columns but the model's space has"
            f" {_model_dim(am)}; encode the gallery with this model"
        )
    caps, T = None, None
    if texts is not None:
        caps = read_texts(texts)
        T = _cached_rows(
            _rows_file(am, caps, "texts", cache, []), lambda: am.encode_text(caps or [])
        )
    return Gallery(root, paths, Z, caps, T)


def _model_dim(am: AlignedModel) -> int:
    probe = np.zeros((1, am.model.d_y_), np.float32)
    probe[0, 0] = 1.0
    return int(np.asarray(am.model.encode_texts(probe)).shape[1])


class _BadRequest(Exception):
    pass


def _int(q: dict[str, list[str]], name: str, default: int, hi: int) -> int:
    raw = q.get(name, [str(default)])[0]
    try:
        v = int(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be a whole number, got {raw!r}") from None
    if not 1 <= v <= hi:
        raise _BadRequest(f"{name} must be between 1 and {hi}, got {v}")
    return v


class SearchService:
    """The answers of the API, independent of HTTP (tested directly and through the server)."""

    def __init__(self, am: AlignedModel, gallery: Gallery) -> None:
        self.am, self.gallery = am, gallery
        self._lock = threading.Lock()  # the encoders are not re-entrant
        self._encode_query = lru_cache(maxsize=256)(self._encode_query_uncached)

    def _encode_query_uncached(self, text: str) -> np.ndarray:
        with self._lock:
            return self.am.encode_text([text])

    def search(self, q: dict[str, list[str]]) -> dict[str, Any]:
        text = (q.get("q") or [""])[0].strip()
        if not text:
            raise _BadRequest("empty query: give ?q=TEXT")
        if len(text) > 1000:
            raise _BadRequest("query too long (at most 1000 characters)")
        k = _int(q, "k", 24, MAX_K)
        res = self.am.search(self._encode_query(text), self.gallery.embeddings, k=k)
        return {
            "query": text,
            "results": [
                {"path": self.gallery.paths[int(i)], "score": round(float(s), 5)}
                for i, s in zip(res.indices[0], res.scores[0], strict=True)
            ],
        }

    def _row(self, rel: str) -> int:
        i = self.gallery.index_of(rel)
        if i is None:
            raise _BadRequest(f"{rel!r} is not an image of this gallery")
        return i

    def neighbors(self, q: dict[str, list[str]]) -> dict[str, Any]:
        g = self.gallery
        if g.texts is None or g.text_embeddings is None:
            raise _BadRequest("no captions loaded: start the server with --texts FILE")
        i = self._row((q.get("path") or [""])[0])
        k = _int(q, "k", 5, MAX_K)
        res = self.am.search(np.asarray(g.embeddings[i : i + 1], np.float32), g.text_embeddings, k)
        return {
            "path": g.paths[i],
            "results": [
                {"text": g.texts[int(j)], "score": round(float(s), 5)}
                for j, s in zip(res.indices[0], res.scores[0], strict=True)
            ],
        }

    def classify(self, q: dict[str, list[str]]) -> dict[str, Any]:
        labels = [x.strip() for x in (q.get("labels") or [""])[0].split(",") if x.strip()]
        if not labels:
            raise _BadRequest("give labels=cat,dog,…")
        if len(labels) > 200:
            raise _BadRequest("at most 200 labels")
        rows = [self._row(p) for p in q.get("path", [])][:MAX_K]
        with self._lock:
            protos = self._prototypes(tuple(labels))
        Z = np.asarray(self.gallery.embeddings[sorted(set(rows))], np.float32) if rows else None
        out = []
        if Z is not None:
            order = {r: n for n, r in enumerate(sorted(set(rows)))}
            S = Z @ protos.T
            for r in rows:
                s = S[order[r]]
                best = int(s.argmax())
                out.append(
                    {"path": self.gallery.paths[r], "label": labels[best], "score": float(s[best])}
                )
        return {"labels": labels, "results": out}

    @lru_cache(maxsize=32)  # noqa: B019 - one service per server, labels sets are few
    def _prototypes(self, labels: tuple[str, ...]) -> np.ndarray:
        return self.am.class_prototypes(list(labels), DEFAULT_TEMPLATES)


def _page() -> bytes:
    return resources.files("sotalign").joinpath("static/search.html").read_bytes()


def make_server(
    service: SearchService, host: str = "127.0.0.1", port: int = 8000
) -> ThreadingHTTPServer:
    """An HTTP server for ``service`` (not started: call ``serve_forever``); port 0 picks a
    free one (``server.server_address``)."""
    page = _page()

    class Handler(BaseHTTPRequestHandler):
        server_version = "sotalign"

        def log_message(self, format: str, *args: Any) -> None:  # quiet by default
            return

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: Any) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            q = parse_qs(url.query, keep_blank_values=True)
            try:
                if url.path in ("/", "/index.html"):
                    self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
                elif url.path == "/api/search":
                    self._json(HTTPStatus.OK, service.search(q))
                elif url.path == "/api/neighbors":
                    self._json(HTTPStatus.OK, service.neighbors(q))
                elif url.path == "/api/classify":
                    self._json(HTTPStatus.OK, service.classify(q))
                elif url.path.startswith("/image/"):
                    self._image(unquote(url.path[len("/image/") :]))
                else:
                    self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {url.path}"})
            except _BadRequest as exc:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})

        def _image(self, rel: str) -> None:
            i = service.gallery.index_of(rel)  # only the gallery's own files
            if i is None:
                self._json(HTTPStatus.NOT_FOUND, {"error": "not an image of this gallery"})
                return
            path = service.gallery.root / service.gallery.paths[i]
            try:
                body = path.read_bytes()
            except OSError:
                self._json(HTTPStatus.NOT_FOUND, {"error": "the image cannot be read"})
                return
            ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            self._send(HTTPStatus.OK, body, ctype)

    return ThreadingHTTPServer((host, port), Handler)
