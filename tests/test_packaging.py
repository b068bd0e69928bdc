"""Installed (not editable), gapscope is gapscope.helpers / gapscope.widgets and runs a grid anywhere."""

from __future__ import annotations

import json
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

GRID = """
grid:
  data: [mixture]
  data_options: [{n_pool: 200, n_val: 60, n_test: 150}]
  strategy: [entropy]
  budget: [5]
  rounds: [1]
  n_initial: [10]
  n_members: [2]
  model_options: [{epochs: 3, hidden: [16]}]
  seed: [0]
"""


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_runs_a_grid_from_another_folder(tmp_path):
    # 1. build the wheel from the repository (no editable install involved)
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(dist.glob("gapscope-*.whl"))
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("gapscope-")}
    assert tops == {"gapscope"}, f"only the gapscope package at the top of site-packages, got {tops}"
    for shipped in ("gapscope/notebooks/experiment.ipynb", "gapscope/notebooks/compare.ipynb",
                    "gapscope/notebooks/curation_loop_marimo.py",
                    "gapscope/notebooks/grids/default.yaml",
                    "gapscope/notebooks/grids/ablations/alpha.yaml",
                    "gapscope/widgets/static/labeler.js", "gapscope/widgets/static/labeler.css"):
        assert shipped in names, shipped
    # 2. a fresh venv that sees the dependencies (this venv's site-packages, without its
    #    editable finder: a path line in a .pth file does not run the .pth files it holds)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    deps = [p for p in site.getsitepackages() if p.endswith("site-packages")]
    sp = next((env_dir / "lib").glob("python3*/site-packages"))
    (sp / "deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    probe = subprocess.run(
        [str(py), "-c", "import gapscope.helpers.loop as L, gapscope.widgets, json; print(json.dumps(L.__file__))"],
        cwd=work, capture_output=True, text=True, check=True,
    )
    assert str(env_dir) in json.loads(probe.stdout), "the installed copy, not the repository"
    for name in ("helpers", "widgets"):
        r = subprocess.run([str(py), "-c", f"import {name}"], cwd=work, capture_output=True, text=True)
        assert r.returncode != 0 and "No module named" in r.stderr, f"import {name} must fail"
    # 3. `gapscope run` from another folder: the shipped notebooks are found as package data
    (work / "mine.yaml").write_text(GRID)
    import os

    # nbconvert's HTML templates are data files of this venv (share/jupyter), not modules
    env = dict(os.environ, JUPYTER_PATH=str(Path(sys.prefix) / "share" / "jupyter"))
    run = subprocess.run(
        [str(env_dir / "bin" / "gapscope"), "run", "--config", "mine.yaml", "--out", "out", "--workers", "1"],
        cwd=work, capture_output=True, text=True, timeout=900, env=env,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    statuses = list((work / "out" / "runs").glob("*/status.json"))
    assert len(statuses) == 1 and json.loads(statuses[0].read_text())["status"] == "ok"
    assert (work / "out" / "results.csv").exists() and (work / "out" / "report.html").exists()
