"""One self-contained HTML report on a fitted model: ``sotalign report``.

Everything the model folder knows, in one file that opens anywhere (plots and thumbnails are
embedded as data URIs; no script, no external resource):

- the model: method, data sizes, encoders, the fit's plan and time, its hyper-parameters;
- the validation selection (and the teacher's ridge search);
- the training curves of ``history.json``: the loss and its terms, validation scores, KLOT's
  Sinkhorn iterations and marginal errors (:mod:`sotalign.history` records them per step);
- retrieval metrics given with it: a ``sotalign eval --out`` or demo ``results.json``, and/or a
  ``sotalign bench`` folder (its tables and plot);
- example queries with their top images, when a gallery folder is given and the model
  records its encoders (:class:`sotalign.AlignedModel`).
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .aligned import AlignedModel
from .embed import list_images
from .errors import InputError
from .estimator import SOTAlign
from .history import HISTORY_FILE
from .io import atomic_write

__all__ = ["build_report", "write_report"]

_TERMS = ("loss", "sup", "div")
_VAL = ("val_mean_R@1", "val_MRR")

_CSS = """
body{font:15px/1.5 system-ui,sans-serif;color:#1d2330;max-width:1100px;margin:24px auto;
padding:0 20px}h1{font-size:22px}h2{font-size:18px;margin-top:32px;
border-bottom:1px solid #e4e7ec;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:14px}
td,th{border:1px solid #e4e7ec;padding:4px 8px;text-align:left}th{background:#f7f8fa}
tr.selected td{font-weight:600;background:#eef4ff}
.muted{color:#667085}.grid{display:flex;gap:10px;flex-wrap:wrap}
figure{margin:0;text-align:center;font-size:12px;width:110px}figure img{width:96px;height:96px;
object-fit:contain;border:1px solid #e4e7ec;border-radius:6px;background:#fff}
img.plot{max-width:100%}code{background:#f2f4f7;padding:1px 4px;border-radius:4px}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e-3 or abs(v) >= 1e4 else f"{v:.2f}"
    if v is None:
        return "–"
    return str(v)


def _table(rows: Sequence[dict[str, Any]], cols: Sequence[str] | None = None) -> str:
    if not rows:
        return "<p class=muted>none</p>"
    cols = list(cols or dict.fromkeys(k for r in rows for k in r if k != "selected"))
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join(
        f"<tr{' class=selected' if r.get('selected') else ''}>"
        + "".join(f"<td>{_e(_fmt(r.get(c)))}</td>" for c in cols)
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _curves(steps: list[dict[str, Any]]) -> str:
    """The training curves as one embedded PNG (empty when there was no training)."""
    if not steps:
        return "<p class=muted>no training (a closed-form or training-free model)</p>"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [h["step"] for h in steps]
    solver = sorted({k for h in steps for k in h if re.search(r"iter|marginal", k)})
    panels = [("loss and its terms (log)", _TERMS, True)]
    if any(k in h for h in steps for k in _VAL):
        panels.append(("validation (held-out pairs, %)", _VAL, False))
    iters = [k for k in solver if "iter" in k]
    margs = [k for k in solver if "marginal" in k]
    if iters:
        panels.append(("Sinkhorn iterations", tuple(iters), False))
    if margs:
        panels.append(("Sinkhorn marginal error (log)", tuple(margs), True))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    axes = [axes] if len(panels) == 1 else list(axes)
    for ax, (title, keys, log) in zip(axes, panels, strict=True):
        for key in keys:
            pts = [(s, h[key]) for s, h in zip(x, steps, strict=True) if key in h]
            if not pts or (log and not all(v > 0 for _, v in pts)):
                continue
            ax.plot(*zip(*pts, strict=True), label=key, marker="o" if key in _VAL else None)
        if log:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return f'<img class=plot alt="training curves" src="{_png(fig)}">'


def _metrics_section(metrics: Path | None, bench: Path | None) -> str:
    parts: list[str] = []
    if metrics is not None:
        try:
            m = json.loads(Path(metrics).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"--metrics {metrics}: cannot read JSON ({exc})") from exc
        if isinstance(m, dict) and isinstance(m.get("results"), dict):  # the demo's results.json
            rows = [
                {"method": name, **{k: v for k, v in r.items() if isinstance(v, int | float)}}
                for name, r in m["results"].items()
            ]
        else:  # sotalign eval --out: one model's metrics
            rows = [{k: v for k, v in m.items() if isinstance(v, int | float)}]
        parts.append(f"<p class=muted>from {_e(metrics)}</p>" + _table(rows))
    if bench is not None:
        md = Path(bench) / "results.md"
        if not md.is_file():
            raise InputError(f"--bench {bench}: no results.md (a `sotalign bench` output folder)")
        parts.append(f"<p class=muted>from {_e(md)}</p>" + _markdown_tables(md.read_text()))
        plot = Path(bench) / "pairs.png"
        if plot.is_file():
            data = base64.b64encode(plot.read_bytes()).decode()
            parts.append(f'<img class=plot alt="bench plot" src="data:image/png;base64,{data}">')
    return "".join(parts) or "<p class=muted>none given (--metrics, --bench)</p>"


def _markdown_tables(md: str) -> str:
    """The headings and pipe tables of a markdown file as HTML (the bench's results.md)."""
    out, rows = [], []

    def flush() -> None:
        if rows:
            head, *body = rows
            out.append(
                "<table><tr>"
                + "".join(f"<th>{_e(c)}</th>" for c in head)
                + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in body)
                + "</table>"
            )
            rows.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip().replace("**", "") for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
            continue
        flush()
        if line.startswith("#"):
            out.append(f"<h3>{_e(line.lstrip('#').strip())}</h3>")
    flush()
    return "".join(out)


def _thumb(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((96, 96))
        buf = io.BytesIO()
        im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _examples(model: SOTAlign, images: Path, queries: Sequence[str], k: int, device: str) -> str:
    am = AlignedModel(model, device=device, progress=False)
    files = list_images(images)
    Z = am.encode_image([str(f) for f in files])
    blocks = []
    for q in queries:
        res = am.search(q, Z, k=k)
        figs = "".join(
            f'<figure><img alt="{_e(files[int(i)].name)}" src="{_thumb(files[int(i)])}">'
            f"<figcaption>{_e(files[int(i)].name)}<br>{float(s):.3f}</figcaption></figure>"
            for i, s in zip(res.indices[0], res.scores[0], strict=True)
        )
        blocks.append(f"<h3>“{_e(q)}”</h3><div class=grid>{figs}</div>")
    return f"<p class=muted>top {k} of {len(files)} images in {_e(images)}</p>" + "".join(blocks)


def build_report(
    folder: str | Path,
    *,
    metrics: str | Path | None = None,
    bench: str | Path | None = None,
    images: str | Path | None = None,
    queries: Sequence[str] = (),
    k: int = 5,
    device: str = "auto",
) -> str:
    """The report of the model folder ``folder`` as one HTML string (module docstring)."""
    folder = Path(folder)
    model = SOTAlign.load(folder)
    cfg = json.loads((folder / "config.json").read_text())
    hist_file = folder / HISTORY_FILE
    hist = json.loads(hist_file.read_text()) if hist_file.is_file() else {}
    training = hist.get("training") or {}
    params = cfg.get("params", {})
    enc = model.encoders_ if hasattr(model, "encoders_") else {}
    facts = [
        {"": "method", "value": params.get("method")},
        {"": "pairs", "value": cfg.get("n_pairs")},
        {"": "unpaired images / texts", "value": " / ".join(map(str, cfg.get("n_unpaired", [])))},
        {"": "input widths (images, texts)", "value": f"{cfg.get('d_x')}, {cfg.get('d_y')}"},
        {"": "image encoder", "value": (enc.get("image") or {}).get("spec", "not recorded")},
        {"": "text encoder", "value": (enc.get("text") or {}).get("spec", "not recorded")},
        {"": "fit time (s)", "value": cfg.get("fit_seconds")},
        {"": "sotalign", "value": cfg.get("library_version")},
    ]
    plan = training.get("plan")
    if plan:
        facts.append({"": "plan", "value": _plan_line(plan)})
    sections = [
        f"<h1>sotalign model report — {_e(folder.name)}</h1>",
        _table(facts, ["", "value"]),
        "<h2>Validation selection</h2>",
        _table(hist.get("selection") or cfg.get("selection") or []),
    ]
    if training.get("teacher_search"):
        sections += ["<h3>Teacher ridge search</h3>", _table(training["teacher_search"])]
    sections += ["<h2>Training curves</h2>", _curves(hist.get("steps") or [])]
    sections += [
        "<h2>Retrieval metrics</h2>",
        _metrics_section(Path(metrics) if metrics else None, Path(bench) if bench else None),
    ]
    if images is not None:
        qs = [q for q in queries if q.strip()] or ["a photo"]
        sections += ["<h2>Example queries</h2>", _examples(model, Path(images), qs, k, device)]
    shown = {k: v for k, v in params.items() if v is not None and k != "method_params"}
    sections += [
        "<h2>Hyper-parameters</h2>",
        _table([{"name": k, "value": v} for k, v in sorted(shown.items())], ["name", "value"]),
    ]
    body = "\n".join(sections)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>sotalign report — {_e(folder.name)}</title><style>{_CSS}</style></head>"
        f"<body>{body}</body></html>"
    )


def _plan_line(plan: dict[str, Any]) -> str:
    what = f"{plan.get('candidates')} candidates, {plan.get('steps')} steps each"
    if plan.get("rung"):
        what += f" (best {plan.get('kept')} continued after step {plan.get('rung')})"
    return f"{what}; {plan.get('total_steps', '?')} steps planned on {plan.get('device')}"


def write_report(out: str | Path, folder: str | Path, **kwargs: Any) -> Path:
    """Write :func:`build_report` to ``out`` atomically; returns ``out``."""
    out = Path(out)
    text = build_report(folder, **kwargs)
    with atomic_write(out, "w") as fh:
        fh.write(text)
    return out
