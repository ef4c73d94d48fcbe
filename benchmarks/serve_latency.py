#!/usr/bin/env python
"""Query latency of ``sotalign serve`` on a 100k-image gallery, on CPU.

The model is a CCA teacher fitted on the bundled emoji embeddings (its encoders recorded:
EfficientNet-Lite0 / all-MiniLM-L6-v2); the gallery is 100,000 aligned rows in float16,
memory-mapped as ``sotalign encode`` writes them (random unit rows stand in for images: a
query's cost does not depend on what the rows are; the image files are never read by
``/api/search``). Each query is a new text (no cache hit): one MiniLM encoding, the teacher's
map and a streamed top-k over the rows. Median and 90th percentile of 40 queries after 5
warm-up queries, through HTTP on loopback; the two parts are also timed apart. Results in
``results/serve_latency.md``.

    python benchmarks/serve_latency.py [N_ROWS]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import torch

from sotalign import AlignedModel, SOTAlign
from sotalign.datasets import emoji
from sotalign.serve import SearchService, load_gallery, make_server

OUT = Path(__file__).parent / "results" / "serve_latency.md"
WORDS = ("red", "blue", "small", "happy", "old", "fast", "green", "round", "dark")
NOUNS = ("car", "dog", "heart", "flag", "apple", "ball", "face", "house", "tree")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    torch.set_num_threads(2)
    d = emoji.load_emoji()
    est = SOTAlign(method="cca").fit(
        d.pool_images, d.pool_texts, image_encoder="efficientnet-lite0",
        text_encoder="st:all-MiniLM-L6-v2",
    )  # fmt: skip
    am = AlignedModel(est, device="cpu", progress=False)
    dim = int(est.encode_texts(d.pool_texts[:1]).shape[1])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "gallery"
        root.mkdir()
        rng = np.random.default_rng(0)
        Z = rng.standard_normal((n, dim)).astype(np.float32)
        Z /= np.linalg.norm(Z, axis=1, keepdims=True)
        np.save(Path(tmp) / "rows.npy", Z.astype(np.float16))
        (Path(tmp) / "rows.paths.txt").write_text(
            "".join(f"{root}/img{i:06d}.png\n" for i in range(n))
        )
        gallery = load_gallery(am, root, embeddings=Path(tmp) / "rows.npy")
        service = SearchService(am, gallery)
        srv = make_server(service, port=0)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        host, port = srv.server_address[:2]
        url = f"http://{host}:{port}/api/search?"
        queries = [f"a {a} {b}" for a in WORDS for b in NOUNS]  # 81 distinct
        times, encode, rank = [], [], []
        for i, q in enumerate(queries[:45]):
            t0 = time.perf_counter()
            with urllib.request.urlopen(url + urllib.parse.urlencode({"q": q, "k": 24})) as r:
                body = json.loads(r.read())
            dt = time.perf_counter() - t0
            assert len(body["results"]) == 24
            t1 = time.perf_counter()
            qz = am.encode_text([q + " again"])
            t2 = time.perf_counter()
            am.search(qz, gallery.embeddings, k=24)
            t3 = time.perf_counter()
            if i >= 5:
                times.append(dt)
                encode.append(t2 - t1)
                rank.append(t3 - t2)
        srv.shutdown()
    ms = lambda xs: 1000 * statistics.median(xs)  # noqa: E731
    p90 = 1000 * float(np.percentile(times, 90))
    lines = [
        "# `sotalign serve`: query latency on CPU",
        "",
        f"Command: `python benchmarks/serve_latency.py {n}` — {n:,} gallery rows ({dim}-d, float16,"
        " memory-mapped), 40 distinct text queries after 5 warm-up ones, k = 24, HTTP on"
        " loopback, 2 CPU cores (shared with other jobs while measured).",
        "",
        "| part | median ms |",
        "|---|---|",
        f"| whole request (`GET /api/search`) | {ms(times):.1f} (p90 {p90:.1f}) |",
        f"| text encoding (MiniLM + map) | {ms(encode):.1f} |",
        f"| top-k over the rows | {ms(rank):.1f} |",
        "",
    ]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
