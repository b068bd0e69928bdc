"""The marimo notebooks run as plain scripts with CLI args and export to HTML.

A cell that raises makes the script (and the export) exit non-zero, so these runs are
real checks of the notebooks' assertion cells. Outputs go to tmp_path; the export runs
on a copy so marimo's ``__marimo__/session`` folder never lands in the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NB = ROOT / "notebooks"
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
ENV.pop("GAPSCOPE_INTERACTIVE", None)

pytestmark = [pytest.mark.notebook]


def run(cmd, **kw):
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300, **kw)


@pytest.mark.slow
def test_label_batches_runs_as_script(tmp_path):
    p = run(
        [
            sys.executable,
            str(NB / "label_batches_marimo.py"),
            "--epochs",
            "3",
            "--run_dir",
            str(tmp_path),
            "--simulate",
            "1",
        ]
    )
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((tmp_path / "marimo_label_batches.json").read_text())
    assert res["kinds"][:2] == ["accept", "reject"] and res["kinds"][-1] == "undo"
    assert res["n_events"] == 6 and res["total"] == 24
    # the store is a real SQLite file in the run folder, readable after the run
    from gapscope.helpers.store import LabelStore

    with LabelStore(run_dir=tmp_path, project="digits") as s:
        ev = s.events()
    assert list(ev["kind"]) == res["kinds"]
    assert ev["cues"].iloc[0]["widget"] == "gapscope.widgets.Labeler"


@pytest.mark.slow
def test_curation_loop_runs_as_script(tmp_path):
    # the loop's batches resolved through the Labeler (simulate=oracle), retrained to the end
    run_dir = tmp_path / "run"
    args = ["--n_initial", "8", "--budget", "6", "--rounds", "1", "--epochs", "3"]
    p = run(
        [sys.executable, str(NB / "curation_loop_marimo.py"), *args, "--run_dir", str(run_dir),
         "--simulate", "oracle", "--annotator", "ci"]
    )  # fmt: skip
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    res = json.loads((run_dir / "marimo_curation_loop.json").read_text())
    assert res["done"] and res["stop_reason"] == "budget spent", res
    assert res["simulated_rounds"] == 2 and res["n_events"] == 8 + 6 and res["n_labeled"] == 14
    assert res["map_round"] == 1 and res["dashboard_rounds"] == 2
    from gapscope.helpers.store import LabelStore

    with LabelStore(run_dir=run_dir, project="curation-demo") as s:
        ev = s.events()
    kinds = list(ev["kind"])
    assert len(kinds) == 14 and set(kinds[:8]) == {"label"}  # no model label before round 0
    assert set(kinds[8:]) <= {"accept", "correct"}  # then the oracle's label vs the model's
    assert (ev["annotator"] == "ci").all() and ev["item_id"].is_unique
    assert ev["cues"].iloc[0]["widget"] == "gapscope.widgets.Labeler"


@pytest.mark.slow
def test_curation_loop_resumes_its_run_folder(tmp_path):
    # without simulate the script shows the bootstrap batch and ends; run again, it resumes
    run_dir = tmp_path / "run"
    cmd = [sys.executable, str(NB / "curation_loop_marimo.py"), "--n_initial", "8",
           "--run_dir", str(run_dir)]  # fmt: skip
    for _ in range(2):
        p = run(cmd)
        assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
        res = json.loads((run_dir / "marimo_curation_loop.json").read_text())
        assert res["round"] == -1 and not res["done"], res
        assert res["labeler_total"] == 8 and res["labeler_done"] == 0 and res["n_events"] == 0


@pytest.mark.slow
def test_explore_gaps_exports_to_html(tmp_path):
    nb = tmp_path / "explore_gaps_marimo.py"
    shutil.copy(NB / "explore_gaps_marimo.py", nb)
    html = tmp_path / "explore.html"
    p = run(
        [
            sys.executable,
            "-m",
            "marimo",
            "-y",
            "export",
            "html",
            str(nb),
            "-o",
            str(html),
            "-f",
            "--",
            "--epochs",
            "3",
            "--out",
            str(tmp_path),
        ]
    )
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert html.stat().st_size > 100_000
    text = html.read_text(encoding="utf-8", errors="replace")
    assert "Explore the gaps" in text
    res = json.loads((tmp_path / "explore_gaps_marimo.json").read_text())
    assert res["n_pool"] > 1000 and len(res["proposal"]) == 20


def test_a_failing_cell_fails_the_curation_loop_script(tmp_path):
    p = run(
        [sys.executable, str(NB / "curation_loop_marimo.py"), "--simulate", "nope",
         "--run_dir", str(tmp_path / "run")]
    )  # fmt: skip
    assert p.returncode != 0
    assert "simulate" in (p.stdout + p.stderr)
    assert not (tmp_path / "run").exists()


def test_a_failing_cell_fails_the_script(tmp_path):
    # an unknown dataset raises in the data cell: the script must not pass silently
    p = run(
        [
            sys.executable,
            str(NB / "label_batches_marimo.py"),
            "--dataset",
            "nope",
            "--run_dir",
            str(tmp_path),
        ]
    )
    assert p.returncode != 0
    assert "dataset" in (p.stdout + p.stderr)
    assert not (tmp_path / "marimo_label_batches.json").exists()
