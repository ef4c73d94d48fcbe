"""End-to-end tests of ``sotalign bench`` on tiny synthetic embedding files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sotalign.bench import BenchData, load_bench_data, run_bench
from sotalign.cli.bench import bench_app, parse_grid, parse_method_sets
from sotalign.errors import ConfigError, InputError
from sotalign.synthetic import TwoView


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bench_data")
    tv = TwoView(d_x=24, d_y=20, latent=6, noise=0.2, seed=3)
    A, B = tv.pairs(120, seed=1)
    X, Y = tv.unpaired(200, 200, seed=2)
    TA, TB = tv.pairs(80, seed=4)
    # two captions per test image: the second block repeats the images' latents with new noise
    paths = {}
    for name, arr in (("pa", A), ("pb", B), ("ux", X), ("uy", Y), ("ta", TA), ("tb", TB)):
        paths[name] = d / f"{name}.npy"
        np.save(paths[name], arr.astype(np.float16))
    return paths


def _cli(files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "--out",
        str(out),
        "--pairs-images",
        str(files["pa"]),
        "--pairs-texts",
        str(files["pb"]),
        "--unpaired-images",
        str(files["ux"]),
        "--unpaired-texts",
        str(files["uy"]),
        "--test-images",
        str(files["ta"]),
        "--test-texts",
        str(files["tb"]),
        *extra,
    ]


def test_bench_cli_end_to_end(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "res"
    args = _cli(
        files,
        out,
        "--methods",
        "sotalign,sail",
        "--pairs",
        "20,60",
        "--seeds",
        "0,1,2",
        "--set",
        "steps=15",
        "--set",
        "dim=16",
        "--set",
        "batch_unpaired=64",
        "--method-set",
        "sotalign:alpha_grid=[0.1]",
        "--method-set",
        "sail:lr=0.001",
        "--unpaired-sizes",
        "50,200",
        "--sweep-methods",
        "sotalign",
        "--batch-sizes",
        "32",
        "--threads",
        "1",
    )
    res = CliRunner().invoke(bench_app, args)
    assert res.exit_code == 0, res.output
    data = json.loads((out / "results.json").read_text())
    runs = data["runs"]
    main = [r for r in runs if r["sweep"] == "pairs"]
    # 2 methods x 2 pair counts x 3 seeds, then 2 unpaired sizes x 3 seeds, 1 batch x 3 seeds
    assert len(main) == 12 and len(runs) == 12 + 6 + 3
    assert not any(r.get("error") for r in runs)
    assert {(r["method"], r["pairs"]) for r in main} == {
        (m, n) for m in ("sotalign", "sail") for n in (20, 60)
    }
    for r in runs:
        m = r["test"]
        for side in ("i2t", "t2i"):  # hits out of the 80 test queries, non-decreasing in k
            hits = [m[side][f"R@{k}"] * 80 / 100 for k in (1, 5, 10)]
            assert hits == sorted(hits) and hits == pytest.approx([round(h) for h in hits]), r
        if r["method"] == "sotalign":  # chance R@1 is 1.25% (80 test pairs)
            assert m["mean_R@1"] > 20.0, r
        assert m["mean_R@1"] == pytest.approx(0.5 * (m["i2t"]["R@1"] + m["t2i"]["R@1"]))
        assert r["fit_seconds"] > 0
        assert r["settings"]["seed"] == r["seed"]
    # per-method overrides reached the estimator; common settings reached all methods
    for r in main:
        assert r["settings"]["steps"] == 15 and r["settings"]["dim"] == 16
        if r["method"] == "sail":
            assert r["settings"]["lr"] == 0.001
            (sel,) = r["selection"]  # early stopping on the pairs' validation split
            assert sel["candidate"] == "sail" and sel["selected"]
        else:
            assert r["settings"]["alpha_grid"] == [0.1]
            cands = [c["candidate"] for c in r["selection"]]
            assert cands == ["teacher:cca", "alpha=0", "alpha=0.1"]
            assert sum(c["selected"] for c in r["selection"]) == 1
            assert r["selected"] in cands
            assert r["unpaired"] == 200
            # the fit's plan is recorded: steps per training as configured (no budget)
            assert r["plan"]["steps"] == r["plan"]["configured_steps"] == 15, r["plan"]
    # sweeps record what they varied
    assert sorted({r["unpaired"] for r in runs if r["sweep"] == "unpaired"}) == [50, 200]
    assert {r["settings"]["batch_unpaired"] for r in runs if r["sweep"] == "batch"} == {32}
    # same seed, same draw: the nested pair draws differ between seeds
    s0 = [r for r in main if r["method"] == "sail" and r["pairs"] == 20]
    assert len({r["seed"] for r in s0}) == 3

    # Markdown: mean ± std over seeds for every method x pairs cell, equal to the JSON
    md = (out / "results.md").read_text()
    assert "sotalign bench" in md and "--pairs 20,60" in md
    for method in ("sotalign", "sail"):
        for n in (20, 60):
            vals = [
                r["test"]["mean_R@1"] for r in main if r["method"] == method and r["pairs"] == n
            ]
            cell = f"{np.mean(vals):.1f} ± {np.std(vals, ddof=1):.1f}"
            row = next(line for line in md.splitlines() if line.startswith(f"| {method} |"))
            assert cell in row, (cell, row)
    assert "vs unpaired samples" in md and "vs unpaired batch size" in md
    assert "Diagnostics" in md

    # PNG plots exist and are real PNG images
    for name in ("pairs.png", "unpaired.png", "batch.png"):
        raw = (out / name).read_bytes()
        assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 2000
    assert data["plots"] == ["pairs.png", "unpaired.png", "batch.png"]

    diag = json.loads((out / "diagnostics.json").read_text())
    # the figures are those of the diagnostics on the input files; on this synthetic data the
    # encoders share neighbours far above chance (k/(n-1) = 10/119) and the unpaired pools are
    # drawn like the paired ones (no shift beyond the sampling floor)
    from sotalign.diagnostics import mutual_knn_alignment, pool_shift

    pa, pb, ux, uy = (np.load(files[k]) for k in ("pa", "pb", "ux", "uy"))
    knn = mutual_knn_alignment(pa, pb, k=10, n_samples=120, seed=0)
    assert diag["mutual_knn"] == {"k": 10, "n_pairs": 120, "value": pytest.approx(knn)}
    assert knn > 3 * 10 / 119
    for name, (u, p) in (("ssw_images", (ux, pa)), ("ssw_texts", (uy, pb))):
        assert diag[name] == pytest.approx(pool_shift(u, p, seed=0)), name
        assert diag[name]["ssw"] < 2 * diag[name]["floor"], diag[name]
    assert not list(out.glob("*.tmp*"))  # atomic writes leave no temporary files

    # --resume keeps every run and re-renders without refitting; the folder's time adds up
    # over its sessions and its first start is kept
    first = json.loads((out / "results.json").read_text())
    res2 = CliRunner().invoke(bench_app, [*args, "--resume"])
    assert res2.exit_code == 0, res2.output
    data2 = json.loads((out / "results.json").read_text())
    assert data2["elapsed_seconds"] > first["elapsed_seconds"]
    assert data2["environment"]["started_utc"] == first["environment"]["started_utc"]
    assert data2["environment"]["resumed_utc"] >= first["environment"]["started_utc"]
    assert [r["test"] for r in data2["runs"]] == [r["test"] for r in runs]
    assert [r["fit_seconds"] for r in data2["runs"]] == [r["fit_seconds"] for r in runs]
    # --render-only merges result folders without fitting anything
    merged = tmp_path / "merged"
    res3 = CliRunner().invoke(
        bench_app, ["--out", str(merged), *args[2:], "--render-only", "--include", str(out)]
    )
    assert res3.exit_code == 0, res3.output
    data3 = json.loads((merged / "results.json").read_text())
    assert sorted(r["fit_seconds"] for r in data3["runs"]) == sorted(r["fit_seconds"] for r in runs)
    assert (merged / "results.md").read_text().count("±") == md.count("±")
    total = sum(r["fit_seconds"] for r in runs)
    assert data3["fit_seconds_total"] == pytest.approx(total)
    assert f"the merged runs' fits took {total:.0f} s" in res3.output
    # a resumed run with another plan adds its runs and keeps the folder's earlier ones
    i = args.index("--pairs")
    other = [*args[:i], "--pairs", "40", *args[i + 2 :], "--methods", "cca", "--resume"]
    res_o = CliRunner().invoke(bench_app, other)
    assert res_o.exit_code == 0, res_o.output
    data_o = json.loads((out / "results.json").read_text())
    keys = {(r["sweep"], r["method"], r["pairs"], r["seed"]) for r in data_o["runs"]}
    assert {(r["sweep"], r["method"], r["pairs"], r["seed"]) for r in runs} <= keys
    assert {("pairs", "cca", 40, s) for s in (0, 1, 2)} <= keys
    kept = {_k(r): r["test"] for r in data_o["runs"]}
    assert all(kept[_k(r)] == r["test"] for r in runs)  # earlier runs kept, not refitted


def _paired_data(files: dict[str, Path]) -> BenchData:
    """The bench data of the ``files`` fixture's pairs and test split (no unpaired pools)."""
    return load_bench_data(
        pairs_images=files["pa"],
        pairs_texts=files["pb"],
        test_images=files["ta"],
        test_texts=files["tb"],
    )


def _k(r):
    return (
        r["sweep"],
        r["method"],
        r["pairs"],
        r["seed"],
        r.get("unpaired_size"),
        r.get("batch_unpaired"),
    )


def test_grid_selection_on_pairs_only(files: dict[str, Path], tmp_path: Path) -> None:
    data = _paired_data(files)
    res = run_bench(
        data,
        tmp_path / "g",
        methods=["asif"],
        pairs=[60],
        seeds=[0, 1, 2],
        grids=parse_grid(["asif:method_params.k=5|30"]),
        log=lambda s: None,
    )
    for r in res["runs"]:
        assert [g["candidate"] for g in r["grid"]] == [
            {"method_params.k": 5},
            {"method_params.k": 30},
        ]
        best = max(r["grid"], key=lambda g: (g["val_mean_R@1"], g["val_MRR"]))
        assert best["selected"] and sum(g["selected"] for g in r["grid"]) == 1
        assert r["settings"]["method_params"] == {"k": best["candidate"]["method_params.k"]}


def test_test_index_and_errors(files: dict[str, Path], tmp_path: Path) -> None:
    idx = tmp_path / "idx.txt"
    idx.write_text("\n".join(str(i) for i in range(79)) + "\n")
    with pytest.raises(InputError, match=r"idx\.txt"):
        load_bench_data(
            pairs_images=files["pa"],
            pairs_texts=files["pb"],
            test_images=files["ta"],
            test_texts=files["tb"],
            test_index=idx,
        )
    with pytest.raises(ConfigError, match="--dataset"):
        load_bench_data()
    with pytest.raises(ConfigError, match=r"did you mean 'emoji'"):
        load_bench_data("emojj")
    with pytest.raises(ConfigError, match="METHOD:key=value"):
        parse_method_sets(["steps=3"])
    with pytest.raises(ConfigError, match="unknown config key 'stpes'"):
        parse_method_sets(["sail:stpes=3"])
    with pytest.raises(ConfigError, match="grid key"):
        parse_grid(["asif:k=1|2"])
    data = _paired_data(files)
    with pytest.raises(ConfigError, match=r"unknown method 'sial'.*sail"):
        run_bench(data, tmp_path / "e", methods=["sial"], log=lambda s: None)
    # a pair count the pool cannot give is refused before the first fit, not after the others
    logged: list[str] = []
    with pytest.raises(InputError, match=r"500 outside 1\.\.120"):
        run_bench(
            data, tmp_path / "e2", methods=["cca"], pairs=[20, 500], seeds=[0], log=logged.append
        )
    assert not any(line.startswith("[") for line in logged), logged
    # user error through the CLI: exit status != 0 and a message naming the option
    res = CliRunner().invoke(bench_app, ["--out", str(tmp_path / "c"), "--pairs", "x"])
    assert res.exit_code != 0
    assert re.search("--dataset|--pairs", str(res.exception) + res.output)


def test_sweeps_show_the_main_run_as_their_reference_point():
    from sotalign.bench.report import aggregate, with_reference

    def run(sweep, method, pairs, seed, unpaired, score, batch=1024):
        return {
            "sweep": sweep,
            "method": method,
            "pairs": pairs,
            "seed": seed,
            "unpaired": unpaired,
            "batch_unpaired": batch,
            "test": {"mean_R@1": score},
        }

    runs = [run("pairs", "sotalign", 200, s, 50_000, 40.0 + s) for s in range(3)]
    runs += [run("pairs", "sotalign", 1000, s, 50_000, 60.0) for s in range(3)]
    runs += [run("pairs", "sail", 200, s, 0, 20.0) for s in range(3)]
    runs += [run("unpaired", "sotalign", 200, s, 5000, 30.0 + s) for s in range(3)]
    runs += [run("batch", "sotalign", 200, 0, 50_000, 35.0, batch=512)]
    agg = aggregate(
        with_reference(runs, "unpaired", "unpaired"),
        "unpaired",
        "unpaired",
        lambda r: r["test"]["mean_R@1"],
    )
    assert list(agg) == ["sotalign"]  # SAIL was not swept; 1,000 pairs are not the sweep's
    assert agg["sotalign"][5000] == pytest.approx((31.0, 1.0, 3))
    assert agg["sotalign"][50_000] == pytest.approx((41.0, 1.0, 3))
    b = aggregate(
        with_reference(runs, "batch", "batch_unpaired"),
        "batch",
        "batch_unpaired",
        lambda r: r["test"]["mean_R@1"],
    )
    assert b["sotalign"][512] == (35.0, 0.0, 1)
    assert b["sotalign"][1024] == (40.0, 0.0, 1)  # only the swept seed's reference run


def test_render_only_takes_included_runs_over_a_stale_merge(tmp_path):
    from sotalign.bench import BenchData

    rng = np.random.default_rng(0)
    A = rng.normal(size=(60, 8)).astype(np.float32)
    data = BenchData("toy", A, A + 0.1, None, None, A[:20], A[:20] + 0.1)

    def folder(name, score):
        d = tmp_path / name
        d.mkdir()
        run = {
            "sweep": "pairs",
            "method": "cca",
            "pairs": 20,
            "seed": 0,
            "unpaired": 0,
            "test": {"mean_R@1": score, "i2t": {"R@1": score}, "t2i": {"R@1": score}},
            "fit_seconds": 0.1,
            "selection": [],
            "selected": None,
            "grid": [],
        }
        (d / "results.json").write_text(json.dumps({"runs": [run]}))
        return d

    merged = folder("merged", 1.0)  # an earlier merge, now stale
    stale = json.loads((merged / "results.json").read_text())
    stale["elapsed_seconds"] = 1000.0  # a merge's time is its own, not added to the last's
    (merged / "results.json").write_text(json.dumps(stale))
    old, new = folder("old", 2.0), folder("new", 3.0)
    res = run_bench(
        data,
        merged,
        methods=["cca"],
        pairs=[20],
        seeds=[0],
        include=[old, new],
        render_only=True,
        resume=True,
        log=lambda s: None,
    )  # as the CLI does
    assert [r["test"]["mean_R@1"] for r in res["runs"]] == [3.0]  # the last include wins
    assert res["elapsed_seconds"] < 1000.0
    assert res["fit_seconds_total"] == pytest.approx(0.1)  # the merged run's fit


def test_caption_groups_are_scored_and_reported(files: dict[str, Path], tmp_path: Path) -> None:
    """Test pairs sharing a caption: each run also records grouped retrieval, equal to the
    metric applied to the fitted model's embeddings, and the report shows its table."""
    from sotalign.bench.report import render_markdown
    from sotalign.eval import grouped_retrieval_metrics, retrieval_metrics

    data = _paired_data(files)
    groups = np.arange(80) // 4  # 20 groups of 4 pairs
    data.test_groups = groups
    data.info["test_caption_groups"] = 20
    res = run_bench(
        data, tmp_path / "grp", methods=["cca"], pairs=[60], seeds=[0], log=lambda s: None
    )
    (run,) = res["runs"]
    from sotalign import SOTAlign

    A, B = data.draw(60, 0)
    est = SOTAlign(method="cca", seed=0, progress=False).fit(A, B)
    zi, zt = est.encode_images(data.test_images), est.encode_texts(data.test_texts)
    want = grouped_retrieval_metrics(zi, zt, groups)
    assert run["test_grouped"]["mean_R@1"] == pytest.approx(want["mean_R@1"])
    assert run["test"]["mean_R@1"] == pytest.approx(retrieval_metrics(zi, zt)["mean_R@1"])
    # four candidates per group: grouped recall is at least the per-pair recall, here above it
    assert run["test_grouped"]["mean_R@1"] > run["test"]["mean_R@1"]
    md = render_markdown(res)
    assert "whole group counted as hits" in md and "20 distinct captions" in md
    # the grouped table holds the grouped figure, not the per-pair one
    sec = md.split("whole group counted as hits", 1)[1].split("##", 1)[0]
    assert f"{run['test_grouped']['mean_R@1']:.1f}" in sec


def test_report_shows_steps_a_budget_lowered(files: dict[str, Path], tmp_path: Path) -> None:
    """A run whose budget planned fewer steps than configured is listed with its steps; runs
    trained as configured are not."""
    from sotalign.bench.report import render_markdown

    data = _paired_data(files)
    res = run_bench(
        data, tmp_path / "b", methods=["cca"], pairs=[60], seeds=[0, 1], log=lambda s: None
    )
    assert "Steps lowered" not in render_markdown(res)  # closed form: no plan
    for run, steps in zip(res["runs"], (14, 300), strict=True):
        run["plan"] = {"steps": steps, "configured_steps": 300, "budget_s": 600.0}
    md = render_markdown(res)
    section = md.split("## Steps lowered by the time budget", 1)[1].split("##", 1)[0]
    assert "| cca | 60 | 14 of 300 (seed 0) |" in section and "seed 1" not in section
