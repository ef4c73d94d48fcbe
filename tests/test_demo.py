"""The demo pipeline on the committed emoji embeddings, with tiny settings."""

import json

import pytest


def test_demo_writes_table_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from sotalign.demo import run_demo

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
    printed = capsys.readouterr().out
    for name in ("SOTAlign", "SAIL", "CCA teacher"):
        assert name in printed and name in report["results"]
        m = report["results"][name]
        assert 0 <= m["mean_R@1"] <= 100 and 0 <= m["zero-shot group"] <= 100
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["pairs"] == 60 and saved["results"]["CCA teacher"]["mean_R@1"] > 0.25
    png = (tmp_path / "results.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    sel = report["results"]["SOTAlign"]["selection"]
    assert [c["candidate"] for c in sel] == ["teacher:cca", "alpha=0", "alpha=0.1"]
