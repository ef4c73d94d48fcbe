"""The demo: SOTAlign vs SAIL vs the CCA teacher on the bundled emoji data.

``sotalign demo`` (and ``make demo``) draws ``pairs`` image–caption pairs from the emoji pool,
uses the disjoint unpaired image and text pools, fits three aligners on the same data, and
reports test-split retrieval (R@1/5/10 both ways, mean R@1) and zero-shot group accuracy. It
writes ``results.json`` and ``results.png`` to ``out``. Hyper-parameters are chosen on a
validation split carved from the drawn pairs only; the test split is used once per model.

``--from-scratch`` first rebuilds the data: renders the emoji, embeds them with the frozen
encoders and then runs the same comparison on the fresh embeddings.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from ..datasets.emoji import build_emoji, default_root, draw_pairs, load_emoji
from ..estimator import SOTAlign
from ..eval import class_prototypes, retrieval_metrics, zero_shot_accuracy
from ..history import write_history
from ..io import atomic_write, write_json_atomic
from ..report import write_report
from .app import app
from .console import console, print_metrics

#: Example queries of the demo's report, over the sample PNGs shipped with the emoji data.
REPORT_QUERIES = ("a red heart", "a puppy", "a car", "a flag")

#: Settings of the demo's trained models (also recorded in results.json). SOTAlign starts its
#: heads at the CCA teacher (the better choice with few pairs and small pools, see the emoji
#: benchmark); SAIL has no teacher and uses the paper's LayerNorm + Linear heads at a higher lr.
DEMO_SETTINGS: dict[str, Any] = {
    "sotalign": {
        "steps": 300,
        "optimizer": "lion",
        "lr": 1e-4,
        "dim": 512,
        "head": "teacher",
        "batch_unpaired": 4096,
        "alpha_grid": (0.1, 0.01),
    },
    "sail": {"steps": 300, "optimizer": "lion", "lr": 1e-3, "dim": 512, "head": "linear"},
}


def evaluate(est: Any, data: Any) -> dict[str, Any]:
    """Test retrieval (percent) and zero-shot group accuracy of a fitted estimator."""
    zi = est.encode_images(data.test_images)
    zt = est.encode_texts(data.test_texts)
    m = retrieval_metrics(zi, zt, data.test_text_to_image)
    n_cls, n_tpl, d_y = data.group_prompts.shape
    prompts = est.encode_texts(data.group_prompts.reshape(n_cls * n_tpl, d_y))
    protos = class_prototypes(prompts, n_templates=n_tpl)
    m["zero-shot group"] = zero_shot_accuracy(zi, protos, data.test_groups)
    return m


def compare(
    data: Any,
    pairs: int,
    seed: int,
    progress: bool,
    settings: dict[str, Any] | None = None,
    fitted: dict[str, SOTAlign] | None = None,
) -> dict[str, Any]:
    """Fit SOTAlign, SAIL and the CCA teacher on ``pairs`` pairs; evaluate each on test.
    ``fitted``, when given, receives the fitted models by name."""
    s = {k: {**v, **(settings or {}).get(k, {})} for k, v in DEMO_SETTINGS.items()}
    drawn = draw_pairs(data, pairs, seed=seed)
    X, Y = data.unpaired_images, data.unpaired_texts
    models = {
        "SOTAlign": SOTAlign(seed=seed, progress=progress, **s["sotalign"]),
        "SAIL": SOTAlign(method="sail", seed=seed, progress=progress, **s["sail"]),
        "CCA teacher": SOTAlign(method="cca", seed=seed),
    }
    results: dict[str, Any] = {}
    encoders = (getattr(data, "manifest", None) or {}).get("encoders") or {}
    for name, est in models.items():
        t0 = time.perf_counter()
        est.fit(
            drawn.images,
            drawn.texts,
            X,
            Y,
            image_encoder=encoders.get("image"),
            text_encoder=encoders.get("text"),
        )
        if fitted is not None:
            fitted[name] = est
        m = evaluate(est, data)
        m["fit_seconds"] = time.perf_counter() - t0
        if est.selection_:
            m["selection"] = est.selection_
        results[name] = m
    return {
        "pairs": pairs,
        "seed": seed,
        "unpaired_images": len(X),
        "unpaired_texts": len(Y),
        "test_images": len(data.test_images),
        "test_texts": len(data.test_texts),
        "settings": s,
        "results": results,
    }


def plot(report: dict[str, Any], path: Path) -> None:
    """Bar chart of test mean R@1 and zero-shot accuracy per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["results"])
    r1 = [report["results"][n]["mean_R@1"] for n in names]
    zs = [report["results"][n]["zero-shot group"] for n in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(6.5, 3.8), dpi=120)
    b1 = ax.bar(x - 0.2, r1, 0.4, label="test mean R@1")
    b2 = ax.bar(x + 0.2, zs, 0.4, label="zero-shot group acc.")
    ax.bar_label(b1, fmt="%.1f", fontsize=8)
    ax.bar_label(b2, fmt="%.1f", fontsize=8)
    ax.set_xticks(x, names)
    ax.set_ylabel("percent")
    ax.set_title(
        f"Emoji, {report['pairs']} pairs + {report['unpaired_images']} unpaired images"
        f" / {report['unpaired_texts']} unpaired texts",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)


def run_demo(
    pairs: int = 100,
    out: str | Path = "out/demo",
    seed: int = 0,
    from_scratch: bool = False,
    progress: bool = True,
    root: str | Path | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the comparison, print the table, write ``results.json`` and ``results.png``."""
    out = Path(out)
    t0 = time.perf_counter()
    if from_scratch:
        root = out / "emoji-data"
        console.print(f"building the emoji data from scratch into {root} …")
        build_emoji(root, cache=out / "emoji-cache")
    data = load_emoji(root)
    console.print(
        f"emoji: {pairs} pairs drawn from a pool of {len(data.pool_images)}, "
        f"{len(data.unpaired_images)} unpaired images, {len(data.unpaired_texts)} unpaired "
        f"texts; test: {len(data.test_images)} images / {len(data.test_texts)} captions"
    )
    fitted: dict[str, SOTAlign] = {}
    report = compare(data, pairs, seed, progress, settings, fitted)
    print_metrics(report["results"], extra=("zero-shot group",))
    sel = report["results"]["SOTAlign"].get("selection")
    if sel:
        chosen = next(c for c in sel if c["selected"])
        console.print(
            "SOTAlign validation selection: "
            + ", ".join(
                f"{c['candidate']}={c['val_mean_R@1']:.1f}"
                + (f" (MRR {c['val_MRR']:.1f})" if c.get("val_MRR") is not None else "")
                for c in sel
            )
            + f" → {chosen['candidate']}"
        )
    out.mkdir(parents=True, exist_ok=True)
    model = out / "model"
    est = fitted["SOTAlign"]
    est.save(model, overwrite=True)
    write_history(model, est.train_history_, est.selection_, training={"plan": est.plan_})
    report["model"] = str(model)
    report["total_seconds"] = time.perf_counter() - t0
    write_json_atomic(out / "results.json", report)
    plot(report, out / "results.png")
    html = out / "report.html"
    samples = Path(data.root or default_root()) / "samples"
    write_report(
        html,
        model,
        metrics=out / "results.json",
        images=samples if est.encoders_.get("image") and samples.is_dir() else None,
        queries=REPORT_QUERIES,
        k=4,
        device="cpu",
    )
    console.print(
        f"wrote {out / 'results.json'}, {out / 'results.png'}, the SOTAlign model in {model}"
        f" and the report {html} ({time.perf_counter() - t0:.0f} s)"
    )
    return report


@app.command("demo")
def demo_command(
    pairs: Annotated[int, typer.Option(help="Number of pairs drawn from the pool.")] = 100,
    out: Annotated[Path, typer.Option(help="Folder for results JSON and plot.")] = Path("out/demo"),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    from_scratch: Annotated[
        bool, typer.Option(help="Render, embed, fit and evaluate from raw data.")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Fit SOTAlign, SAIL and the CCA teacher on the bundled emoji data and compare them."""
    run_demo(pairs=pairs, out=out, seed=seed, from_scratch=from_scratch, progress=not quiet)
