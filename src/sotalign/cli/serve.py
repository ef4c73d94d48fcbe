"""``sotalign serve``: a local search page over an image gallery (:mod:`sotalign.serve`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..aligned import AlignedModel
from ..serve import SearchService, load_gallery, make_server
from .app import app
from .console import console

__all__ = ["serve"]


@app.command()
def serve(
    model: Annotated[Path, typer.Option(help="A model folder that records its encoders.")],
    images: Annotated[Path, typer.Option(help="The gallery: a folder of images.")],
    texts: Annotated[
        Path | None, typer.Option(help="Captions for image → text (.txt, .jsonl, .csv).")
    ] = None,
    embeddings: Annotated[
        Path | None,
        typer.Option(
            help="Aligned rows of the gallery from `sotalign encode --images` (default: encoded"
            " now and cached)."
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind (only this machine by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one).")] = 8000,
    cache: Annotated[Path | None, typer.Option(help="Folder for the cached gallery rows.")] = None,
    device: Annotated[str, typer.Option(help="Where the encoders run: auto, cpu, cuda.")] = "auto",
) -> None:
    """Start a local web page: type a query and see the top images; click an image and see its
    nearest captions; classify the shown images by label names. Also answers
    GET /api/search?q=TEXT&k=K with JSON."""
    am = AlignedModel.load(model, device=device)
    gallery = load_gallery(am, images, embeddings=embeddings, texts=texts, cache_dir=cache)
    server = make_server(SearchService(am, gallery), host, port)
    bound = server.server_address
    url = f"http://{bound[0]}:{bound[1]}/"
    console.print(f"serving {len(gallery.paths)} images on {url} (Ctrl-C stops)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning[/yellow]: bound to {host}: other machines can reach it")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
