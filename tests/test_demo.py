"""The demo pipeline on the committed emoji embeddings, with tiny settings."""

import json

import pytest


def test_demo_writes_table_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from sotalign.cli.demo import run_demo

    report = run_demo(
        pairs=60,
        out=tmp_path,
        seed=0,
        progress=False,
        settings={
            "sotalign": {"steps": 8, "dim": 64, "alpha_grid": (0.1,)},
            "sail": {"steps": 8, "dim": 64},
        },
    )
    import re

    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["pairs"] == 60 and saved["test_images"] == saved["test_texts"] == 400
    for name in ("SOTAlign", "SAIL", "CCA teacher"):
        m = saved["results"][name]
        assert m == report["results"][name]
        # the printed table row shows the saved figures
        (row,) = [ln for ln in printed.splitlines() if f" {name} " in ln and "│" in ln]
        want = [m[side][f"R@{k}"] for side in ("i2t", "t2i") for k in (1, 5, 10)]
        want += [m["mean_R@1"], m["zero-shot group"]]
        assert re.findall(r"\d+\.\d", row) == [f"{v:.1f}" for v in want], row
        # above chance by a margin: R@1 chance is 0.25% (400 test images); 78 of the 400 test
        # images are in the largest of the 9 groups (19.5%)
        assert m["mean_R@1"] > 1.0 and m["t2i"]["R@10"] > 5.0, (name, m)
        assert m["zero-shot group"] > 25.0, (name, m)
    png = (tmp_path / "results.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    sel = report["results"]["SOTAlign"]["selection"]
    assert [c["candidate"] for c in sel] == ["teacher:cca", "alpha=0", "alpha=0.1"]


def test_demo_saves_the_model_and_a_self_contained_report(tmp_path):
    pytest.importorskip("matplotlib")
    import re

    from sotalign import AlignedModel
    from sotalign.cli.demo import REPORT_QUERIES, run_demo

    run_demo(pairs=60, out=tmp_path, seed=0, progress=False,
             settings={"sotalign": {"steps": 6, "dim": 32, "alpha_grid": (0.1,)},
                       "sail": {"steps": 6, "dim": 32}})  # fmt: skip
    am = AlignedModel.load(tmp_path / "model", device="cpu")
    assert am.specs == {"image": "efficientnet-lite0", "text": "st:all-MiniLM-L6-v2"}
    page = (tmp_path / "report.html").read_text()
    assert "Validation selection" in page and "Training curves" in page
    saved = json.loads((tmp_path / "results.json").read_text())
    mean = saved["results"]["SOTAlign"]["mean_R@1"]
    assert f"{mean:.2f}" in page  # the demo's metrics are in the report
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)  # one file
    assert not re.search(r"(href|src)=\"?(https?:|//)", page)
    for q in REPORT_QUERIES:
        assert f"“{q}”" in page
    # the first example's top image is the model's own top image for that query
    from sotalign.datasets.emoji import default_root

    samples = sorted((default_root() / "samples").glob("*.png"))
    top = am.search(REPORT_QUERIES[0], [str(p) for p in samples], k=1).indices[0][0]
    block = page.split(f"“{REPORT_QUERIES[0]}”")[1]
    assert re.search(r'alt="([^"]+)"', block).group(1) == samples[top].name
