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
        (row,) = [line for line in printed.splitlines() if f" {name} " in line]
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
