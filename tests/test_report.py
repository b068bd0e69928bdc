"""``make_report`` / ``gapscope report`` on fake run folders (no loop runs), and the report's
figure and table helpers.

The run folders are written in the format ``collect`` reads (``grid.json``, per run
``status.json`` and ``results.json``) with plausible numbers: learning curves that rise
towards a full-data accuracy, faster for the better strategies.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _browser import BROWSER_MARKS, CHROME_ARGS, CHROMIUM

from gapscope.helpers import cli
from gapscope.helpers import experiments as E
from gapscope.helpers import report as R

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: strategy -> label scale of its learning curve (smaller is faster)
SCALES = {"random": 20.0, "entropy": 12.0, "kcenter": 35.0}


def write_run_folder(
    out: Path,
    *,
    datasets=("blobs", "digits"),
    strategies=tuple(SCALES),
    seeds=(0, 1, 2),
    n_rounds: int = 4,
    failed: int = 0,
    name_dataset: bool = True,
    random_state: int = 0,
) -> Path:
    """A run folder as ``run_grid`` leaves it, without running anything."""
    rng = np.random.default_rng(random_state)
    runs = {}
    for d_i, d in enumerate(datasets):
        full = 0.9 - 0.05 * d_i
        for s in strategies:
            for seed in seeds:
                params = {"strategy": s, "seed": seed, "budget": 20, "rounds": n_rounds - 1}
                if name_dataset:
                    params["data"] = d
                rid = E.run_id_for(params)
                runs[rid] = params
                rdir = out / "runs" / rid
                rdir.mkdir(parents=True)
                rows = []
                for r in range(n_rounds):
                    labels = 20 * (r + 1)
                    acc = full - 0.5 * np.exp(-labels / SCALES.get(s, 25.0)) + rng.normal(0, 0.01)
                    row = {
                        "round": r,
                        "labels": labels,
                        "accuracy": float(acc),
                        "macro_f1": float(acc - 0.03),
                        "ece": float(0.2 * np.exp(-labels / 40) + abs(rng.normal(0, 0.005))),
                        "minority_recall": float(acc - 0.15 + rng.normal(0, 0.02)),
                        "shifted_accuracy": float(acc - 0.1),
                        "coverage": float(min(1.0, labels / 100)),
                    }
                    if s == "random":
                        row["full_accuracy"] = full
                    rows.append(row)
                (rdir / "results.json").write_text(json.dumps({"params": params, "rounds": rows}))
                (rdir / "status.json").write_text(json.dumps({"status": "ok", "wall_time": 1.0}))
    for i in range(failed):
        params = {"strategy": strategies[-1], "seed": 100 + i}
        rid = E.run_id_for(params)
        runs[rid] = params
        rdir = out / "runs" / rid
        rdir.mkdir(parents=True)
        status = {"status": "failed", "error": "RuntimeError: deliberate failure", "wall_time": 0.5}
        (rdir / "status.json").write_text(json.dumps(status))
    (out / "grid.json").write_text(json.dumps({"notebook": "experiment.ipynb", "runs": runs}))
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The report of 2 datasets x 3 strategies (random among them) x 3 seeds x 4 rounds."""
    out = write_run_folder(tmp_path_factory.mktemp("report") / "runs")
    html = E.make_report(out)
    return out, html


def _images(figures: Path):
    return sorted(p for p in figures.iterdir() if p.suffix in (".png", ".svg"))


def test_report_html_is_one_offline_file_with_figures_first(report):
    out, html = report
    assert html == out / "report.html" and html.stat().st_size > 0
    text = html.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*src=[\"']?https?:", text, re.I)
    assert not re.search(r"<link[^>]*href=[\"']?https?:", text, re.I)
    assert E._external_references(text) == []
    assert "<title>gapscope report: runs</title>" in text
    # no code, no prompts, no index column (pandas' blank index header or row headers)
    body = text.split("<body", 1)[1]
    assert "jp-CodeMirrorEditor" not in body and "from gapscope" not in body
    assert "In&nbsp;[" not in body and "jp-InputPrompt" not in body and "jp-OutputPrompt" not in body
    assert 'class="blank level0"' not in text and 'class="row_heading' not in text
    # headline, then claims, then the figures, then the tables
    order = [text.index(s) for s in ("Strategy comparison: runs", 'id="Claims"',
                                     'id="Learning-curves"', 'id="Tables"', 'id="Runs"')]  # fmt: skip
    assert order == sorted(order)
    assert "claims table unavailable" in text or "Verdict" in text
    # tidy numbers: "mean ± half-width" with 3 decimals, readable column names
    assert re.search(r"0\.\d{3} ± 0\.\d{3}", text)
    assert "Minority recall" in text and "Shifted accuracy" in text
    assert "0.912345" not in text and not re.search(r"\d\.\d{6}", body)
    # 2 datasets x 4 curve metrics + the forest plot, embedded as PNG data
    assert len(re.findall(r"<img [^>]*src=\"data:image/png;base64,", body)) == 9


def test_report_writes_every_figure_as_png_and_svg(report):
    out, _ = report
    figures = out / "figures"
    names = {p.name for p in _images(figures)}
    for d in ("blobs", "digits"):
        for m in ("accuracy", "minority_recall", "ece", "shifted_accuracy"):
            assert {f"learning_curves_{d}_{m}.png", f"learning_curves_{d}_{m}.svg"} <= names
    assert {"forest_savings.png", "forest_savings.svg"} <= names
    for p in _images(figures):
        data = p.read_bytes()
        assert len(data) > 1000, p
        if p.suffix == ".png":
            assert data[:8] == PNG_MAGIC, p
        else:
            assert b"<svg" in data[:2000] and data.rstrip().endswith(b"</svg>"), p


def test_a_user_grid_without_random_dataset_or_second_seed_renders_with_notes(tmp_path, capsys):
    """No 'random' strategy (no full-data reference, no baseline), no dataset parameter,
    one seed, a failed run: ``gapscope report`` renders it and says why sections are missing."""
    out = write_run_folder(
        tmp_path / "mine",
        datasets=("x",),
        strategies=("entropy", "kcenter"),
        seeds=(0,),
        failed=1,
        name_dataset=False,
    )
    assert cli.main(["report", str(out), "--figures", str(tmp_path / "figs")]) == 0
    assert str(tmp_path / "figs") in capsys.readouterr().out
    text = (out / "report.html").read_text(encoding="utf-8")
    assert "no run reported full_accuracy" in text
    assert "random" in text and "gapscope-note" in text
    assert "deliberate failure" in text  # the failed run is listed under Runs
    last_round = text[text.index('id="Last-round"') : text.index('id="Labels-to-reach-the-target"')]
    assert ">Strategy<" in last_round and ">Dataset<" not in last_round  # the grid named none
    figs = {p.name for p in _images(tmp_path / "figs")}
    assert "learning_curves_all_accuracy.png" in figs and "forest_savings.png" not in figs
    assert not (out / "figures").exists()


def test_a_run_folder_where_every_run_failed_renders(tmp_path):
    out = write_run_folder(tmp_path / "bad", datasets=(), failed=2)
    text = E.make_report(out).read_text(encoding="utf-8")
    assert "No run completed" in text and "deliberate failure" in text


def test_a_run_folder_of_the_baseline_alone_renders(tmp_path):
    out = write_run_folder(tmp_path / "base", datasets=("a",), strategies=("random",), seeds=(0, 1))
    text = E.make_report(out).read_text(encoding="utf-8")
    assert "no strategy besides the baseline" in text
    assert (out / "figures" / "learning_curves_a_accuracy.png").exists()


def test_make_report_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="grid.json"):
        E.make_report(tmp_path)
    write_run_folder(tmp_path / "r", datasets=("a",), strategies=("random",), seeds=(0,))
    with pytest.raises(ValueError, match="target_fraction"):
        E.make_report(tmp_path / "r", target_fraction=1.5)


def _browser_test(fn):
    for mark in BROWSER_MARKS:  # browser, slow, skipped without Chromium
        fn = mark(fn)
    return fn


@_browser_test
def test_report_opens_offline_in_chromium_without_errors(report):
    from playwright.sync_api import sync_playwright

    _, html = report
    errors: list[str] = []
    network: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))

            def block(route):
                network.append(route.request.url)
                route.abort()

            page.route(re.compile(r"^https?://"), block)
            page.goto(html.as_uri(), wait_until="load")
            sizes = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])"
            )
        finally:
            browser.close()
    assert errors == [] and network == []
    assert len(sizes) == 9
    assert all(done and w > 0 and h > 0 for done, w, h in sizes), sizes


# ------------------------------------------------------------------- the helpers
def test_estimates_and_intervals_are_formatted_for_a_paper():
    assert R.format_estimate(0.91234, 0.01312) == "0.912 ± 0.013"
    assert R.format_estimate(0.91234, np.nan) == "0.912"
    assert R.format_estimate(np.nan, 0.1) == "–"
    assert R.format_estimate(120.4, 30.2, kind="count") == "120 ± 30"
    assert R.format_estimate(-0.123, 0.05, kind="percent") == "-12% ± 5%"
    assert R.format_interval(0.1234, 0.05, 0.2) == "0.123 [0.050, 0.200]"
    assert R.format_interval(0.1234, None, None) == "0.123"
    assert R.format_interval(None, 0.0, 1.0) == "–"


def test_tables_have_readable_columns_only_with_data(tmp_path):
    out = write_run_folder(tmp_path / "r", datasets=("a",), seeds=(0, 1))
    t = R.prepare_table(E.collect(out))
    tables = E.report_tables(t)
    final = R.final_table(tables["final"], baseline="random")
    assert list(final.columns[:4]) == ["Dataset", "Strategy", "Runs", "Labels"]
    assert final["Strategy"].iloc[0] == "random"  # the baseline first
    assert "AUROC" not in final.columns and "Coverage" in final.columns  # no data: no column
    assert all(re.fullmatch(r"0\.\d{3} ± 0\.\d{3}", v) for v in final["Accuracy"])
    sav = R.savings_table(tables["savings"])
    assert set(sav["Strategy"]) == {"entropy", "kcenter"}
    assert sav.columns.tolist() == ["Dataset", "Strategy", "Labels saved",
                                    "Share of the baseline's labels saved", "Pairs", "Censored pairs"]  # fmt: skip
    html = R.style_table(final, caption="c").to_html()
    assert "row_heading" not in html and "blank" not in html
    assert R.labels_to_target_table(pd.DataFrame({"note": ["why"]})).empty


def test_prepare_table_names_unnamed_groups(tmp_path):
    out = write_run_folder(tmp_path / "r", datasets=("a",), strategies=("entropy",), seeds=(0,),
                           name_dataset=False)  # fmt: skip
    t = R.prepare_table(E.collect(out))
    assert set(t["dataset"]) == {R.NO_DATASET}
    assert not E.learning_curves(t).empty
    assert "Dataset" not in R.final_table(E.report_tables(t)["final"]).columns


def test_forest_plot_notes_censored_pairs(tmp_path):
    savings = pd.DataFrame(
        {
            "dataset": ["a", "a", "b"],
            "strategy": ["entropy", "kcenter", "entropy"],
            "saving_labels": [20.0, np.nan, 10.0],
            "ci95": [5.0, np.nan, np.nan],
            "saving_frac": [0.3, np.nan, 0.1],
            "frac_ci95": [0.1, np.nan, np.nan],
            "n_pairs": [3, 0, 1],
            "censored": [0, 3, 0],
        }
    )
    fig = R.savings_forest_figure(savings, baseline="random")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["a · entropy", "a · kcenter  (3 of 3 pairs censored)", "b · entropy"]
    assert any("all pairs censored" in t.get_text() for t in fig.axes[0].texts)
    paths = R.save_figure(fig, tmp_path, "forest_savings")
    assert paths["png"].read_bytes()[:8] == PNG_MAGIC
    assert b"<dc:date>" not in paths["svg"].read_bytes()  # re-rendering gives the same file
    R.clear_figures(tmp_path)
    assert not list(tmp_path.glob("forest_savings.*"))


def test_claims_are_shown_with_interval_and_coloured_verdicts():
    claims = pd.DataFrame(
        {
            "claim": ["entropy saves labels", "kcenter saves labels", "bald helps", "x"],
            "source": ["paper A", "paper B", "", ""],
            "measure": ["labels saved"] * 4,
            "comparison": ["entropy vs random", "kcenter vs random", "bald vs random", ""],
            "dataset": ["a", "a", "a", "a"],
            "value": [120.0, -0.05, 0.01, np.nan],
            "ci_low": [80.0, -0.1, -0.2, np.nan],
            "ci_high": [160.0, -0.01, 0.3, np.nan],
            "n": [5, 5, 2, 0],
            "verdict": ["supported", "not supported", "inconclusive", "no runs"],
            "note": ["", "", "wide interval", ""],
        }
    )
    shown = R.claims_display(claims)
    assert shown.columns.tolist() == ["Claim", "Source", "Measure", "Comparison", "Dataset",
                                      "Estimate [95% CI]", "n", "Verdict", "Note"]  # fmt: skip
    assert shown["Estimate [95% CI]"].tolist() == [
        "120 [80.0, 160]", "-0.050 [-0.100, -0.010]", "0.010 [-0.200, 0.300]", "–"
    ]  # fmt: skip
    html = R.style_claims(shown).to_html()
    for bg, _fg in (R.VERDICT_COLORS["supported"], R.VERDICT_COLORS["not supported"],
                    R.VERDICT_COLORS["inconclusive"]):  # fmt: skip
        assert f"background-color: {bg}" in html
    assert "row_heading" not in html
    with pytest.raises(ValueError, match="verdict"):
        R.claims_display(pd.DataFrame({"claim": ["c"]}))
