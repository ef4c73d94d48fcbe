"""Commands that use a fitted model on raw inputs: ``classify`` (zero-shot) and ``search``.

Both need a model that records its frozen encoders (see :mod:`sotalign.aligned`).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from ..aligned import DEFAULT_TEMPLATES, AlignedModel
from ..embed import list_images, read_texts
from ..errors import ConfigError, InputError
from ..io import atomic_write, load_embedding_file
from .app import app
from .console import console
from .model import is_raw

__all__ = ["classify", "search"]

ModelOpt = Annotated[Path, typer.Option(help="A model folder written by `sotalign fit`.")]
DeviceOpt = Annotated[str, typer.Option(help="Where the encoders run: auto, cpu, cuda.")]


def _labels(labels: str | None, labels_file: Path | None) -> list[str]:
    if (labels is None) == (labels_file is None):
        raise ConfigError("give exactly one of --labels 'cat,dog,…' or --labels-file FILE")
    if labels_file is not None:
        names = read_texts(labels_file)
    else:
        assert labels is not None
        names = labels.split(",")
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise InputError("no labels given")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"label {dup[0]!r} is given twice")
    return names


def _write(out: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Rows as .json (with ``meta``) or .csv, atomically."""
    suffix = out.suffix.lower()
    if suffix == ".json":
        text = json.dumps({**meta, "results": rows}, indent=1, ensure_ascii=False)
    elif suffix == ".csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["rank"])
        writer.writeheader()
        writer.writerows(rows)
        text = buf.getvalue()
    else:
        raise ConfigError(f"--out {out}: write .json or .csv")
    with atomic_write(out, "w") as fh:
        fh.write(text)
    console.print(f"wrote {out}")


@app.command()
def classify(
    model: ModelOpt,
    images: Annotated[Path, typer.Option(help="Images: a folder or a .txt list of paths.")],
    labels: Annotated[str | None, typer.Option(help="Class names, comma-separated.")] = None,
    labels_file: Annotated[
        Path | None, typer.Option(help="Class names, one per line (.txt).")
    ] = None,
    template: Annotated[
        list[str] | None,
        typer.Option(help="Prompt with {} for the label (repeat for several; default: 3)."),
    ] = None,
    top_k: Annotated[int, typer.Option(help="Classes to report per image.")] = 1,
    truth: Annotated[
        Path | None,
        typer.Option(
            help="True label of each image, one per line in image order: prints accuracy."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write predictions (.json or .csv).")] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Zero-shot classification of images by label names (prompts from templates)."""
    names = _labels(labels, labels_file)
    templates = tuple(template) if template else DEFAULT_TEMPLATES
    paths = list_images(images)
    am = AlignedModel.load(model, device=device)
    result = am.classify([str(p) for p in paths], names, templates, top_k=top_k)
    k = result.indices.shape[1]
    rows = [
        {
            "path": str(p),
            **{f"label_{j + 1}": names[int(result.indices[i, j])] for j in range(k)},
            **{f"score_{j + 1}": round(float(result.scores[i, j]), 5) for j in range(k)},
        }
        for i, p in enumerate(paths)
    ]
    table = Table(title=f"zero-shot: {len(paths)} images, {len(names)} labels")
    for col in ("image", "prediction", "score"):
        table.add_column(col)
    for r in rows[:20]:
        table.add_row(Path(r["path"]).name, r["label_1"], f"{r['score_1']:.3f}")
    if len(rows) > 20:
        table.caption = f"first 20 of {len(rows)}; --out FILE writes all"
    console.print(table)
    meta: dict[str, Any] = {"labels": names, "templates": list(templates)}
    if truth is not None:
        true = [t.strip() for t in read_texts(truth)]
        if len(true) != len(paths):
            raise InputError(f"--truth {truth}: {len(true)} labels for {len(paths)} images")
        unknown = sorted(set(true) - set(names))
        if unknown:
            raise InputError(f"--truth {truth}: label {unknown[0]!r} is not among --labels")
        meta["accuracy_top1"] = result.accuracy(true, 1)
        line = f"top-1 accuracy {meta['accuracy_top1']:.1f} %"
        if k > 1:
            meta[f"accuracy_top{k}"] = result.accuracy(true, k)
            line += f", top-{k} {meta[f'accuracy_top{k}']:.1f} %"
        console.print(f"{line} ({len(paths)} images)")
    if out is not None:
        _write(out, rows, meta)


@app.command()
def search(
    model: ModelOpt,
    text: Annotated[str | None, typer.Option(help="A text query (ranks --images).")] = None,
    image: Annotated[Path | None, typer.Option(help="An image query (ranks --texts).")] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            help="Image gallery: a folder, a .txt list, or aligned rows (.npy from"
            " `sotalign encode`, with its .paths.txt)."
        ),
    ] = None,
    texts: Annotated[
        Path | None, typer.Option(help="Text gallery: .txt (one per line), .jsonl or .csv.")
    ] = None,
    k: Annotated[int, typer.Option(help="Results to return.")] = 10,
    out: Annotated[Path | None, typer.Option(help="Write the results (.json or .csv).")] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Rank a gallery by a query: a text against images, or an image against texts."""
    if (text is None) == (image is None):
        raise ConfigError("give exactly one query: --text 'a red car' or --image PATH")
    if (images is None) == (texts is None):
        raise ConfigError("give exactly one gallery: --images or --texts")
    if text is not None and not text.strip():
        raise InputError("--text is empty")
    if k < 1:
        raise ConfigError(f"--k must be at least 1, got {k}")
    am = AlignedModel.load(model, device=device)
    query: Any = text if text is not None else str(image)
    q = am.encode_text([text]) if text is not None else am.encode_image([str(image)])
    names: list[str]
    if images is not None:
        if is_raw(images):
            paths = list_images(images)
            gallery: Any = am.encode_image([str(p) for p in paths])
            names = [str(p) for p in paths]
        else:
            gallery = load_embedding_file(images, check=True)
            names = _row_names(images, len(gallery))
        kind = "path"
    else:
        assert texts is not None
        names = read_texts(texts)
        gallery = am.encode_text(names)
        kind = "text"
    if gallery.shape[1] != q.shape[1]:
        raise InputError(
            f"{images}: rows have {gallery.shape[1]} columns but the model's space has"
            f" {q.shape[1]}; give the output of `sotalign encode` with this model"
        )
    res = am.search(q, np.asarray(gallery), k=k)
    rows = [
        {"rank": r + 1, "index": int(i), kind: names[int(i)], "score": round(float(s), 5)}
        for r, (i, s) in enumerate(zip(res.indices[0], res.scores[0], strict=True))
    ]
    table = Table(title=f"query: {query}")
    for col in ("rank", kind, "score"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["rank"]), str(r[kind]), f"{r['score']:.3f}")
    console.print(table)
    if out is not None:
        _write(out, rows, {"query": query, "k": k})


def _row_names(rows_file: Path, n: int) -> list[str]:
    """The image path of each aligned row (``X.paths.txt`` beside ``X.npy``), else its index."""
    side = rows_file.with_name(rows_file.stem + ".paths.txt")
    if side.is_file():
        names = side.read_text(encoding="utf-8").splitlines()
        if len(names) == n:
            return names
    return [str(i) for i in range(n)]
