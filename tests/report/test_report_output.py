"""The report of real Parquet results: files, fitted numbers, partial inputs, skipped sections."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalegrid import analysis, store
from scalegrid.cli import main
from scalegrid.errors import UserError
from scalegrid.report import write_report
from scalegrid.storage import layout
from synthetic_results import SIZES, WEIGHT_DECAYS, PaperLaw, write_paper_grid, write_reuse_grid

PNG = b"\x89PNG\r\n\x1a\n"
SECTIONS = ["summary", "params", "epochs", "epoch_signals", "hyperparameters", "search", "ensembles", "data", "distillation", "reuse", "curves",
            "downstream"]


# ---------------------------------------------------------------------------------------------
# The full report of the paper grid


def test_writes_html_markdown_figures_and_fits(paper_report):
    out = paper_report.out
    assert paper_report.index == out / "index.html"
    fits = paper_report.fits
    assert list(fits["sections"]) == SECTIONS
    assert {k: v["status"] for k, v in fits["sections"].items()} == {k: "ok" for k in SECTIONS}
    figures = [f for s in fits["sections"].values() for f in s["figures"]]
    assert len(figures) >= 10
    for rel in figures:
        png = out / rel
        assert png.read_bytes()[:8] == PNG, rel
        svg = png.with_suffix(".svg")
        root = ET.parse(svg).getroot()  # well-formed SVG
        assert root.tag.endswith("svg"), svg


def test_every_figure_is_drawn_and_no_part_fails(paper_report):
    """The paper grid has every input: each figure a report can draw is there, and no part of a
    section was left out for an error (a note "could not be made")."""
    from scalegrid.report.build import FIGURE_NAMES

    sections = paper_report.fits["sections"]
    drawn = [Path(f).stem for s in sections.values() for f in s["figures"]]
    assert sorted(drawn) == sorted(FIGURE_NAMES)
    assert not [n for s in sections.values() for n in s["notes"] if "could not be made" in n]


def test_downstream_accuracy_that_falls_with_the_loss_keeps_the_ordering(paper_report):
    """The synthetic accuracies fall with the loss, far beyond their 0.005 standard errors: the
    section's verdict is that the ordering by loss holds, and the summary says so."""
    downstream = paper_report.fits["sections"]["downstream"]
    (ordering,) = downstream["fits"]["loss_ordering"]
    assert ordering["verdict"] == "holds" and ordering["discordant"] == 0 and ordering["kendall_tau"] == 1.0
    assert {r["stage"] for r in downstream["fits"]["table"]} == {"train", "ensemble", "distill"}
    assert "ordering by loss holds" in paper_report.markdown.split("## 2.")[0]


def test_partial_results_are_marked(paper_report):
    fits = paper_report.fits
    assert fits["partial"] is True
    assert fits["partial_reasons"] == ["2 trials FAILED (a re-run of the sweep retries them)"]
    assert "Partial results" in paper_report.html and "2 trials FAILED" in paper_report.html
    assert "**Partial results.**" in paper_report.markdown
    by_status = fits["sections"]["summary"]["fits"]["trials_by_status"]
    assert by_status["train"] == {"COMPLETED": 1200 + 8, "FAILED": 2}  # 8 adaptive runs
    assert by_status["ensemble"] == {"COMPLETED": 64} and by_status["distill"] == {"COMPLETED": 4}


def test_the_search_certifies_the_laws_optima_and_their_trend_in_size(paper_report):
    """The walks over the paper grid (from its low corner) end where the law puts each optimum:
    weight decay growing and epochs falling with size; the section fits their trend."""
    law: PaperLaw = paper_report.written.law
    section = paper_report.fits["sections"]["search"]
    cells = section["fits"]["search_cells"]
    assert len(cells) == 16
    for c in cells:
        assert (c["epochs"], c["weight_decay"], c["lr"]) == (law.epochs_opt(c["params"]), law.wd_opt(c["params"]), law.lr_opt)
        at_top = law.wd_opt(c["params"]) == max(WEIGHT_DECAYS)  # 1.4B: its optimum is the ladder's last value
        assert (c["outcome"], c["edge_axes"]) == (("edge", ["weight_decay+"]) if at_top else ("certified", []))
        assert c["trials"] < 5 * 5 * 3  # fewer than the grid's points per cell
    assert all(r["exponent"] > 0 for r in section["fits"]["search_optimal_weight_decay_scaling"])
    assert all(r["exponent"] < 0 for r in section["fits"]["search_optimal_epochs_scaling"])
    assert "Search: 12 of 16 cells certified, 4 at a ladder's end" in paper_report.markdown


def test_fitted_asymptotes_recover_the_synthetic_laws(paper_report):
    law: PaperLaw = paper_report.written.law
    sections = paper_report.fits["sections"]
    single = {r["unique_tokens"]: r for r in sections["params"]["fits"]["power_laws"]}
    assert sorted(single) == [200_000_000, 400_000_000, 800_000_000, 1_600_000_000]
    for d, row in single.items():
        assert row["C"] == pytest.approx(law.asymptote(d), abs=0.03), d
        assert row["C_lo"] <= row["C"] <= row["C_hi"]
    joint = {r["unique_tokens"]: r["C"] for r in sections["ensembles"]["fits"]["joint_laws"]}
    assert joint[200_000_000] == pytest.approx(law.asymptote(200e6) - law.G, abs=0.1)
    assert all(joint[d] < single[d]["C"] for d in joint)  # ensembles reach a lower asymptote
    retention = [r["retention"] for r in sections["distillation"]["fits"]["retention"]]
    assert len(retention) == 4 and all(abs(r - law.retention) < 0.03 for r in retention)
    multiplier = sections["data"]["fits"]["data_efficiency"]["ensemble (joint asymptote)"][0]
    assert multiplier["unique_tokens"] == 200_000_000 and 1.2 < multiplier["multiplier"] < 1.8  # true: 1.46x
    best = {(r["params"], r["unique_tokens"]): r for r in sections["params"]["fits"]["best_runs"]}
    for n in SIZES:
        assert best[(int(n), 200_000_000)]["epochs"] == law.epochs_opt(n)
        assert best[(int(n), 200_000_000)]["weight_decay"] == law.wd_opt(n)


def test_numbers_are_the_analysis_librarys(paper_report):
    """Recomputing with scalegrid.analysis on the store gives fits.json's numbers exactly."""
    runs = store.load_runs(paper_report.results)
    fits = paper_report.fits["sections"]
    expected = analysis.param_scaling(analysis.best_runs(runs), bootstrap=1000, seed=0)
    got = pd.DataFrame(fits["params"]["fits"]["power_laws"])
    for col in ("A", "B", "C", "C_lo", "C_hi", "B_lo", "B_hi"):
        np.testing.assert_allclose(got[col], expected[col], rtol=1e-12, err_msg=col)
    retention = analysis.distillation(runs)
    np.testing.assert_allclose(
        pd.DataFrame(fits["distillation"]["fits"]["retention"])["retention"], retention["retention"], rtol=1e-12)
    cert = analysis.local_optimality(runs)
    assert [r["certified"] for r in fits["hyperparameters"]["fits"]["local_optimality"]] == list(cert["certified"])


def test_markdown_links_figures_and_states_numbers(paper_report):
    md, out = paper_report.markdown, paper_report.out
    for title in ("Summary", "Loss against parameters per token budget", "Ensembles", "Distillation",
                  "Multi-epoch reuse", "Learning curves", "Data scaling and data efficiency"):
        assert re.search(rf"^## \d+\. {re.escape(title)}", md, re.M), title
    links = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md)
    assert len(links) >= 10 and all((out / link).is_file() for link in links)
    c = paper_report.fits["sections"]["params"]["fits"]["power_laws"][0]
    assert f"{c['C']:.4g} [{c['C_lo']:.4g}, {c['C_hi']:.4g}]" in md  # the asymptote with its interval
    assert "Single-model asymptote at 200M tokens" in md


def test_html_is_self_contained(paper_report):
    page = paper_report.html
    assert "<script" not in page and "<link" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing from the network
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    n_figures = sum(len(s["figures"]) for s in paper_report.fits["sections"].values())
    assert len(images) == n_figures == page.count("<img ")
    assert all(base64.b64decode(data)[:8] == PNG for data in images)


# ---------------------------------------------------------------------------------------------
# Where the numbers come from; what happens when they cannot be had


def test_report_shows_what_the_analysis_returns(small_results, monkeypatch):
    """The report renders analysis results; it fits nothing itself (a planted asymptote shows up)."""
    from scalegrid.analysis import recipes
    from scalegrid.report.sections import shared_fits  # the module that imports the recipe the report calls

    def planted(best, **kwargs):
        budgets = sorted(best["unique_tokens"].unique())
        return pd.DataFrame({"unique_tokens": budgets, "A": 100.0, "B": 0.3, "C": 1.2345, "C_lo": 1.1111,
                             "C_hi": 1.3333, "n_points": 3, "converged": True, "objective": 0.0})

    monkeypatch.setattr(recipes, "param_scaling", planted)
    monkeypatch.setattr(analysis, "param_scaling", planted)
    monkeypatch.setattr(shared_fits, "param_scaling", planted)
    out = write_report(small_results, workers=0, bootstrap=0).parent
    fits = json.loads((out / "fits.json").read_text())
    assert {r["C"] for r in fits["sections"]["params"]["fits"]["power_laws"]} == {1.2345}
    assert "1.234 [1.111, 1.333]" in (out / "report.md").read_text()


def test_a_missing_analysis_function_fails_at_import():
    """The report imports its analysis functions by name: one that is gone is an ImportError when
    the report loads (the library is part of the package), not a section quietly skipped."""
    code = "import scalegrid.analysis.recipes as recipes; del recipes.distillation; import scalegrid.report.build"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "ImportError: cannot import name 'distillation'" in proc.stderr


def test_sections_without_inputs_are_skipped_with_reasons(tmp_path):
    """Two sizes at one budget, no ensembles, students or curves, a sweep still running."""
    results = tmp_path / "results"
    write_paper_grid(results, sizes=(150e6, 300e6), budgets=(200e6,), epochs=(1, 2), weight_decays=(0.8,),
                     lrs=(3e-3,), members=(), distill=False, downstream=False, curves=0, sweep="quickstart")
    spec = {  # the resolved spec `scalegrid run` records beside the results: a 12-point grid
        "name": "quickstart", "trainer": "linreg", "model": {"dims": 64}, "lr": 0.05, "epochs": [1, 2, 4, 8],
        "data": {"source": "gaussian", "unique_tokens": [128, 256, 512]}, "train": {"batch_size": 8},
    }
    (results / "sweeps").mkdir()
    (results / "sweeps" / "quickstart-0.json").write_text(json.dumps({"created_at": "2025-01-01", "spec": spec}))
    out = write_report(results, workers=0).parent
    fits = json.loads((out / "fits.json").read_text())
    reasons = {k: v.get("reason") for k, v in fits["sections"].items()}
    params = fits["sections"]["params"]  # two sizes: the points are drawn, the law is not fitted
    assert params["status"] == "ok" and params["fits"]["power_laws"] == [] and len(params["figures"]) == 1
    assert params["notes"][0].startswith("Power laws not fitted: no token budget has best runs at 4 or more model sizes")
    assert reasons["ensembles"] == "no ensemble runs (stage `ensemble`, `members` = K) in the store"
    assert reasons["distillation"] == "no distillation runs (stage `distill`) in the store"
    assert reasons["curves"] == "no learning curves in the store (RESULTS/curves)"
    assert reasons["downstream"].startswith("no downstream evaluations (RESULTS/evals/)")
    assert reasons["data"].startswith("no recipe has asymptotes per token budget")
    assert reasons["hyperparameters"] == "the grid has one weight decay and one learning rate; nothing to compare"
    assert reasons["summary"] is None and reasons["epochs"] is None  # what the rows do support is there
    # the sweep's grid has 12 points, the store 4 of them: the report says so
    assert fits["partial_reasons"] == ["sweep quickstart: 8 trials of its grid have no result yet"]
    md = (out / "report.md").read_text()
    assert reasons["search"].startswith("no search in this results directory")
    assert reasons["epoch_signals"] == "no per-epoch diagnostics, memorisation or adaptive runs in the store"
    assert md.count("*Skipped: ") == 9
    assert "sweep quickstart: 8 trials of its grid have no result yet" in md


@pytest.mark.parametrize("content", ["empty", "unrelated parquet", "unreadable runs"])
def test_a_directory_without_runs_is_refused_not_an_empty_report(content, tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    if content == "unrelated parquet":
        pd.DataFrame({"x": [1, 2]}).to_parquet(results / "table.parquet")
    if content == "unreadable runs":
        (results / "runs").mkdir()
        (results / "runs" / "0123456789abcdef.parquet").write_bytes(b"PAR1 truncated")
    assert main(["report", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scalegrid: error: ") and "\n" not in err and "to report" in err, err
    if content == "unreadable runs":
        assert "0123456789abcdef.parquet" in err
    assert not (results / "report").exists()


def test_unreadable_run_files_are_reported_not_fatal(small_results):
    (small_results / "runs" / "ffffffffffffffff.parquet").write_bytes(b"PAR1 not really parquet")
    out = write_report(small_results, workers=0, bootstrap=0).parent
    fits = json.loads((out / "fits.json").read_text())
    assert fits["partial_reasons"] == ["1 result files are unreadable and were skipped (ffffffffffffffff.parquet)"]
    assert fits["sections"]["params"]["status"] == "ok"
    assert (small_results / "runs" / "ffffffffffffffff.parquet").exists()  # never deleted


def test_not_a_results_directory_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(UserError, match="not a results directory"):
        write_report(tmp_path / "missing")
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    assert main(["report", str(afile)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scalegrid: error: ") and "\n" not in err and "not a results directory" in err


def test_cli_writes_where_asked_and_reruns_cleanly(small_results, tmp_path, capsys):
    out = tmp_path / "elsewhere"
    assert main(["report", str(small_results), "-o", str(out), "--bootstrap", "0", "--workers", "0"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "index.html")
    assert (out / "figures" / "params_scaling.svg").is_file()
    data = json.loads((out / "fits.json").read_text())["sections"]["data"]  # one recipe: its law, no multiplier
    assert data["status"] == "ok" and "data_law" in data["fits"]["recipes"]["single model"]
    assert data["fits"]["data_efficiency"] == {}
    assert any("the multiplier needs two recipes" in note for note in data["notes"])
    (out / "figures" / "keep.txt").write_text("mine")
    assert main(["report", str(small_results), "-o", str(out), "--bootstrap", "0", "--workers", "0"]) == 0
    assert (out / "figures" / "keep.txt").read_text() == "mine"  # only the report's own files are replaced


def test_parallel_fits_equal_serial_fits(tmp_path):
    from scalegrid.report.inputs import load_inputs
    from scalegrid.report.parallel import Workers
    from scalegrid.report.sections.common import Context
    from scalegrid.report.sections.shared_fits import ensemble_fits

    results = tmp_path / "results"
    write_paper_grid(results, sizes=(150e6, 300e6, 600e6), budgets=(200e6, 400e6, 800e6), epochs=(1, 4),
                     weight_decays=(0.8,), lrs=(3e-3,), members=(2, 3, 4), distill=False, curves=0)
    inputs = load_inputs(results)
    frames = []
    for n in (0, 2):  # in this process; two other processes
        pool = Workers(n)
        try:
            frames.append(ensemble_fits(Context(inputs=inputs, out_dir=tmp_path, bootstrap=100, workers=pool))[0])
        finally:
            pool.close()
    assert len(frames[0]) == 9
    pd.testing.assert_frame_equal(frames[0], frames[1])


def test_reuse_section_recovers_r_star_per_n_and_draws_e_against_k(tmp_path):
    """Muennighoff's law with R* = 20 ln N: the section's E(K, N) is that law's, its R* per N is
    20 ln N (not one number), and K* grows with N."""
    from synthetic_results import ReuseLaw

    results = tmp_path / "results"
    write_reuse_grid(results, noise=0.0)
    out = write_report(results, workers=0, bootstrap=0).parent
    section = json.loads((out / "fits.json").read_text())["sections"]["reuse"]
    assert section["status"] == "ok" and section["fits"]["one_pass"]["kind"] == "fitted"
    law = ReuseLaw()
    table = pd.DataFrame(section["fits"]["effective_reuse"])
    want = [law.effective(n, k) / n for n, k in zip(table["unique_tokens"], table["epochs"])]
    np.testing.assert_allclose(table["effective_reuse"], want, rtol=1e-6)
    r_star = pd.DataFrame(section["fits"]["r_star"])
    np.testing.assert_allclose(r_star["r_star"], [law.r_star(n) for n in r_star["unique_tokens"]], rtol=1e-4)
    k_star = pd.DataFrame(section["fits"]["k_star"])
    assert k_star[k_star["eps"] == 0.1]["k_star"].is_monotonic_increasing
    log_law = next(f for f in section["fits"]["k_star_laws"] if f["eps"] == 0.1 and f["law"] == "K* = A ln N + B")
    assert log_law["params"]["A"] > 0  # larger datasets can be repeated more
    assert section["figures"] == ["figures/reuse.png"] and (out / "figures" / "reuse.png").is_file()
    assert "Effective reuse E(K, N)" in (out / "report.md").read_text()


def test_a_skipped_section_keeps_what_it_found(tmp_path):
    """One model size: no law in parameters, but fits.json still has the best runs that say so."""
    results = tmp_path / "results"
    write_reuse_grid(results)
    out = write_report(results, workers=0, bootstrap=0).parent
    sections = json.loads((out / "fits.json").read_text())["sections"]
    params = sections["params"]
    assert params["status"] == "skipped" and params["reason"].startswith("every run has one model size")
    assert len({r["params"] for r in params["fits"]["best_runs"]}) == 1 and params["figures"] == []
    data = sections["data"]
    assert data["status"] == "skipped" and data["notes"][0].startswith("Single-model recipe: skipped: ")


def test_a_group_the_analysis_refuses_costs_only_itself(small_results):
    """A nonsense loss at one token budget: that budget's law is left out with the analysis's reason."""
    from synthetic_results import base_row

    store.write_run(layout(small_results), base_row(
        trial_id="badbadbadbadbad0", model="llama-150m", params=150_000_000, params_nonembed=1, unique_tokens=800_000_000,
        epochs=2, tokens_seen=1, lr=3e-3, weight_decay=0.8, val_loss=-0.5, best_val_loss=-0.5, train_loss=0.1,
        flops=1.0, wall_s=1.0))
    out = write_report(small_results, workers=0, bootstrap=0).parent
    params = json.loads((out / "fits.json").read_text())["sections"]["params"]
    assert params["status"] == "ok"
    assert [r["unique_tokens"] for r in params["fits"]["power_laws"]] == [200_000_000, 400_000_000, 1_600_000_000]
    assert any("val_loss" in note and "<= 0" in note for note in params["notes"]), params["notes"]


def test_workers_run_only_the_listed_analysis_functions():
    from scalegrid.report.parallel import WORKER_FUNCTIONS, Workers

    assert sorted(WORKER_FUNCTIONS) == ["ensemble_scaling"]
    for n in (0, 1):  # refused before anything runs, here or in a worker
        with pytest.raises(ValueError, match="run only ensemble_scaling, not 'param_scaling'"):
            Workers(n).submit("param_scaling", pd.DataFrame())
