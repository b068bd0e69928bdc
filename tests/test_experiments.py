"""run_grid / collect / report statistics, including the failure paths (broken notebooks)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from gapscope.helpers import experiments as E

TOY_SOURCE = """
import json, os, time
from pathlib import Path
if mode == "bad-param" and not isinstance(x, int):
    raise ValueError(f"x: expected an int, got {x!r}")
rows = []
for r in range(rounds):
    if mode == "crash" and r == 1:
        raise RuntimeError("deliberate failure in round 1")
    if mode == "flaky" and Path(flag).exists():
        raise RuntimeError("flaky: the flag file is present")
    rows.append({"round": r, "labels": 10 * (r + 1), "accuracy": 0.5 + 0.1 * r + 0.01 * seed})
if mode == "partial":
    rows = rows[:1]
Path(run_dir, "results.json").write_text(json.dumps({"rounds": rows}))
"""


def _toy_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        'mode = "ok"\nx = 1\nseed = 0\nrounds = 3\nflag = ""\ndataset = "toy"\nstrategy = "s"\nrun_dir = ""'
    )
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(TOY_SOURCE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def toy(tmp_path):
    return _toy_notebook(tmp_path / "toy.ipynb")


def test_expand_grid_product_and_list():
    g = E.expand_grid({"a": [1, 2], "b": "x"})
    assert g == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    g2 = E.expand_grid([{"a": [1]}, {"a": [2], "c": [3, 4]}])
    assert g2 == [{"a": 1}, {"a": 2, "c": 3}, {"a": 2, "c": 4}]
    with pytest.raises(ValueError, match=r"grid\['a'\]"):
        E.expand_grid({"a": []})
    with pytest.raises(TypeError, match="grid"):
        E.expand_grid(42)
    assert E.run_id_for({"dataset": "d", "strategy": "s", "seed": 1}) == E.run_id_for(
        {"seed": 1, "strategy": "s", "dataset": "d"}
    )


def test_run_grid_records_failures_and_goes_on(toy, tmp_path):
    out = tmp_path / "grid"
    grid = [
        {"mode": ["ok"], "seed": [0, 1]},
        {"mode": ["crash"], "seed": [2]},
        {"mode": ["bad-param"], "x": ["not-an-int"], "seed": [3]},
    ]
    statuses = E.run_grid(toy, grid, out_dir=out, workers=1, progress=False)
    by_mode = {s["params"]["mode"]: s for s in statuses if s["params"]["seed"] >= 2}
    assert [s["status"] for s in statuses if s["params"]["mode"] == "ok"] == ["ok", "ok"]
    crash = by_mode["crash"]
    assert crash["status"] == "failed"
    assert "deliberate failure in round 1" in crash["traceback"]
    assert "x: expected an int" in by_mode["bad-param"]["traceback"]
    # the executed notebook of a failed run is kept, with the error in it
    executed = out / "runs" / crash["run_id"] / "executed.ipynb"
    nb = nbformat.read(executed, as_version=4)
    assert nb.metadata.papermill.exception is True
    saved = json.loads((out / "runs" / crash["run_id"] / "status.json").read_text())
    assert saved["status"] == "failed" and saved["wall_time"] > 0


def test_resume_skips_finished_and_retries_failed(toy, tmp_path):
    out = tmp_path / "grid"
    flag = tmp_path / "flag"
    flag.write_text("on")
    grid = [{"mode": ["ok"], "seed": [0]}, {"mode": ["flaky"], "flag": [str(flag)], "seed": [1]}]
    first = E.run_grid(toy, grid, out_dir=out, progress=False)
    assert [s["status"] for s in first] == ["ok", "failed"]
    ok_dir = out / "runs" / first[0]["run_id"]
    mtime = (ok_dir / "executed.ipynb").stat().st_mtime_ns
    flag.unlink()
    second = E.run_grid(toy, grid, out_dir=out, progress=False)
    assert [s["status"] for s in second] == ["skipped", "ok"]
    assert (ok_dir / "executed.ipynb").stat().st_mtime_ns == mtime
    third = E.run_grid(toy, grid, out_dir=out, progress=False, resume=False)
    assert [s["status"] for s in third] == ["ok", "ok"]


def test_collect_reports_missing_failed_partial(toy, tmp_path):
    out = tmp_path / "grid"
    grid = [
        {"mode": ["ok"], "seed": [0, 1]},
        {"mode": ["partial"], "seed": [2]},
        {"mode": ["crash"], "seed": [3]},
    ]
    E.run_grid(toy, grid, out_dir=out, progress=False)
    # a run that is in the grid but never ran
    meta = json.loads((out / "grid.json").read_text())
    meta["runs"]["never-ran"] = {"mode": "ok", "seed": 9}
    for p in meta["runs"].values():
        p["rounds"] = 3  # the toy notebook's default, so a 1-round run reads as partial
    (out / "grid.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="not complete"):
        table = E.collect(out)
    states = table.groupby("run_id")["status"].first().value_counts().to_dict()
    assert states == {"ok": 2, "partial": 1, "failed": 1, "missing": 1}
    assert len(table.attrs["problems"]) == 3
    assert set(E.RESULT_COLUMNS) <= set(table.columns)
    with pytest.raises(ValueError, match="failed, missing or partial"):
        E.summarize(table, by=("mode",))
    s = E.summarize(table, by=("mode",), allow_partial=True)
    assert int(s["n_runs"].iloc[0]) == 2  # only the complete runs
    # mean of the two complete runs' last-round accuracy: 0.7 + 0.01*seed for seeds 0, 1
    assert s["accuracy_mean"].iloc[0] == pytest.approx(0.705)
    with pytest.raises(RuntimeError, match="not complete"):
        E.collect(out, strict=True)


def _table(rows):
    t = pd.DataFrame(rows)
    t["status"] = "ok"
    t["run_id"] = t["dataset"] + "-" + t["strategy"] + "-" + t["seed"].astype(str)
    return t


def test_labels_to_target_and_paired_savings():
    rows = []
    # random reaches 0.76 (=0.95*0.8) at 40 labels, fast at 20 labels, 'never' never reaches it
    for seed in range(3):
        for lab, acc_r, acc_f, acc_n in [(10, 0.5, 0.6, 0.4), (20, 0.6, 0.76 + 0.01 * seed, 0.5), (40, 0.76, 0.8, 0.55)]:
            rows.append({"dataset": "d", "strategy": "random", "seed": seed, "labels": lab, "round": lab,
                         "accuracy": acc_r, "full_accuracy": 0.8})
            rows.append({"dataset": "d", "strategy": "fast", "seed": seed, "labels": lab, "round": lab,
                         "accuracy": acc_f, "full_accuracy": np.nan})
            rows.append({"dataset": "d", "strategy": "never", "seed": seed, "labels": lab, "round": lab,
                         "accuracy": acc_n, "full_accuracy": np.nan})
    t = _table(rows)
    per = E.labels_to_target(t, target_fraction=0.95)
    assert per["target"].iloc[0] == pytest.approx(0.76)
    need = per.groupby("strategy")["labels_needed"].apply(list).to_dict()
    assert need["random"] == pytest.approx([40.0, 40.0, 40.0])
    # interpolated between (10, 0.6) and (20, 0.76 + 0.01 seed): 10 + 10 * 0.16 / (0.16 + 0.01 seed)
    fast = [10 + 10 * 0.16 / (0.16 + 0.01 * s) for s in range(3)]
    assert need["fast"] == pytest.approx(fast)
    assert all(math.isnan(v) for v in need["never"])
    sav = E.savings_vs_baseline(per, baseline="random").set_index("strategy")
    assert sav.loc["fast", "saving_labels"] == pytest.approx(40 - np.mean(fast))
    assert sav.loc["fast", "saving_frac"] == pytest.approx(np.mean([(40 - f) / 40 for f in fast]))
    assert sav.loc["fast", "n_pairs"] == 3 and sav.loc["never", "censored"] == 3
    au = E.aulc(t).set_index("strategy")
    # random: trapezoid over (10,.5),(20,.6),(40,.76) / 30
    expected = ((0.5 + 0.6) / 2 * 10 + (0.6 + 0.76) / 2 * 20) / 30
    assert au.loc["random", "aulc"] == pytest.approx(expected)
    lc = E.learning_curves(t).set_index(["strategy", "round"])
    vals = np.array([0.76, 0.77, 0.78])
    from scipy import stats

    half = stats.t.ppf(0.975, 2) * vals.std(ddof=1) / np.sqrt(3)
    assert lc.loc[("fast", 20), "mean"] == pytest.approx(vals.mean())
    assert lc.loc[("fast", 20), "ci95"] == pytest.approx(half)


def test_run_grid_bad_arguments(toy, tmp_path):
    with pytest.raises(ValueError, match="notebook"):
        E.run_grid(tmp_path / "nope.ipynb", {"a": [1]}, out_dir=tmp_path)
    with pytest.raises(ValueError, match="engine"):
        E.run_grid(toy, {"a": [1]}, out_dir=tmp_path, engine="spark")
    with pytest.raises(ValueError, match="workers"):
        E.run_grid(toy, {"a": [1]}, out_dir=tmp_path, workers=0)
    with pytest.raises(ValueError, match="grid.json"):
        E.collect(tmp_path / "empty")


@pytest.mark.slow
def test_local_processes_in_parallel(toy, tmp_path):
    statuses = E.run_grid(toy, {"mode": ["ok"], "seed": [0, 1, 2]}, out_dir=tmp_path / "g", workers=2, progress=False)
    assert [s["status"] for s in statuses] == ["ok", "ok", "ok"]


@pytest.mark.slow
def test_ray_engine_on_local_ray_equals_the_local_engine(toy, tmp_path):
    pytest.importorskip("ray")
    grid = [{"mode": ["ok"], "seed": [0, 1]}, {"mode": ["crash"], "seed": [2]}]
    statuses = E.run_grid(toy, grid, out_dir=tmp_path / "ray", workers=2, engine="ray", progress=False)
    assert sorted(s["status"] for s in statuses) == ["failed", "ok", "ok"]
    E.run_grid(toy, grid, out_dir=tmp_path / "local", workers=2, progress=False)
    tables = []
    for name in ("ray", "local"):
        with pytest.warns(UserWarning):  # the crashed run
            t = E.collect(tmp_path / name)
        t = t[t["status"] == "ok"].drop(columns=[c for c in t.columns if "time" in c])
        tables.append(t.sort_values(["run_id", "round"]).reset_index(drop=True))
    assert len(tables[0]) == 6 and (tables[0].groupby("run_id").size() == 3).all()
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_a_local_ray_that_fails_to_start_is_retried_then_explained(monkeypatch):
    """Ray's start-up can time out on a loaded machine: each failure is shut down and retried."""
    ray = pytest.importorskip("ray")
    calls = {"init": 0, "shutdown": 0}

    def flaky_init(**kw):
        calls["init"] += 1
        assert kw["_node_ip_address"] == "127.0.0.1" and kw["include_dashboard"] is False
        if calls["init"] < 3:
            raise RuntimeError("Timed out waiting for file metrics_agent_port")

    monkeypatch.setattr(ray, "init", flaky_init)
    monkeypatch.setattr(ray, "shutdown", lambda: calls.__setitem__("shutdown", calls["shutdown"] + 1))
    monkeypatch.setattr(E.time, "sleep", lambda s: None)
    with pytest.warns(RuntimeWarning, match=r"attempt [12] of 3") as rec:
        E._init_local_ray(2)
    assert calls == {"init": 3, "shutdown": 2} and len(rec) == 2
    calls.update(init=-10, shutdown=0)  # fails every time now
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="RAY_ADDRESS"):
        E._init_local_ray(2)
    assert calls["shutdown"] == 3


def test_ray_address_comes_from_the_argument_or_the_environment(monkeypatch):
    ray = pytest.importorskip("ray")
    seen = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.append(kw.get("address")))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert E._connect_ray("ray://head:10001") is True
    monkeypatch.setenv("RAY_ADDRESS", "ray://other:10001")
    assert E._connect_ray(None) is True
    assert seen == ["ray://head:10001", "ray://other:10001"]
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    assert E._connect_ray("ray://head:10001") is False  # the caller's session is used
    assert len(seen) == 2


def test_cli_grid_config_errors(tmp_path):
    with pytest.raises(ValueError, match="config"):
        E.load_grid_config(tmp_path / "missing.yaml")
    p = tmp_path / "g.yaml"
    p.write_text("notebook: experiment.ipynb\n")
    with pytest.raises(ValueError, match="no 'grid'"):
        E.load_grid_config(p)
    default = E.load_grid_config(Path(E.NOTEBOOK_DIR) / "grids" / "default.yaml")
    combos = E.expand_grid(default["grid"])
    assert len({c["seed"] for c in combos}) >= 5, "the default grid has at least 5 seeds"
    assert {c["data"] for c in combos} == {"mixture", "digits", "digits-lt"}
    baselines = {"random", "entropy", "kcenter", "typiclust", "badge"}
    ours = {"umc_uncertainty", "cluster_bandit", "low_density", "active_synthesis", "counter_bias_synthesis"}
    assert baselines | ours <= {c["strategy"] for c in combos}
    # every strategy runs with every seed of its dataset (pairs by seed)
    by = {}
    for c in combos:
        by.setdefault((c["data"], c["strategy"]), set()).add(c["seed"])
    assert len({frozenset(v) for v in by.values()}) == 1
    # every claim of the claims table can be answered on some dataset of the default grid
    from gapscope.helpers.claims import CLAIMS

    for claim in CLAIMS:
        assert any(
            (d, claim.strategy) in by and (claim.baseline is None or (d, claim.baseline) in by)
            for d in {c["data"] for c in combos}
        ), claim.key
    # every key of every shipped grid is a parameter of its notebook
    for path in sorted((Path(E.NOTEBOOK_DIR) / "grids").glob("*.yaml")):
        cfg = E.load_grid_config(path)
        E.check_grid_keys(cfg["notebook"], E.expand_grid(cfg["grid"]))
        assert os.path.exists(cfg["notebook"]), path
    p.write_text("grid: {seed: [0]}\nworkerz: 2\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['workerz'\]"):
        E.load_grid_config(p)


def test_an_unknown_grid_key_fails_before_any_run(toy, tmp_path):
    out = tmp_path / "grid"
    with pytest.raises(ValueError, match=r"grid: unknown parameter\(s\) \['budgett'\] for toy.ipynb"):
        E.run_grid(toy, {"mode": ["ok"], "budgett": [3]}, out_dir=out, progress=False)
    assert not out.exists() or not any((out / "runs").iterdir())
    with pytest.raises(ValueError, match="run_dir"):
        E.run_grid(toy, {"run_dir": ["x"]}, out_dir=out, progress=False)


def test_experiment_notebook_takes_every_loop_config_field():
    import dataclasses

    from gapscope.helpers.loop import LoopConfig

    params = set(E.notebook_parameters(Path(E.NOTEBOOK_DIR) / "experiment.ipynb"))
    fields = {f.name for f in dataclasses.fields(LoopConfig)}
    assert fields <= params, f"not forwarded: {sorted(fields - params)}"
    assert params - fields == {"modules", "compute_reference", "run_dir"}


USER_GRID = """
pythonpath: [{tests}]
grid:
  data: ["user_components:breast_cancer"]
  data_options: [{{n_labeled: 20}}]
  model:
    - {{name: sklearn, options: {{estimator: {{name: "sklearn.linear_model:LogisticRegression", options: {{max_iter: 300}}}}, n_members: 2}}}}
  strategy: ["user_components:most_uncertain", farthest_first, random]
  modules: [[user_components]]
  budget: [5]
  rounds: [2]
  seed: [0]
"""


@pytest.mark.slow
def test_a_grid_of_user_specs_runs_in_two_kernels_and_resumes(tmp_path):
    cfg_path = tmp_path / "mine.yaml"
    cfg_path.write_text(USER_GRID.format(tests=json.dumps(str(Path(__file__).parent))))
    cfg = E.load_grid_config(cfg_path)
    out = tmp_path / "out"
    statuses = E.run_grid(
        cfg["notebook"], cfg["grid"], out_dir=out, workers=2, progress=False, pythonpath=cfg["pythonpath"]
    )
    assert [s["status"] for s in statuses] == ["ok"] * 3, [s.get("error") for s in statuses]
    table = E.collect(out, strict=True)
    assert set(table["strategy"]) == {"user_components:most_uncertain", "farthest_first", "random"}
    assert set(table["dataset"]) == {"user_components:breast_cancer"}
    assert table.groupby("run_id")["labels"].apply(list).tolist() == [[20, 25, 30]] * 3
    # the kernels built the components from the specs: the user's strategy picked the batches
    rid = [s["run_id"] for s in statuses if "most_uncertain" in s["run_id"]][0]
    state = json.loads((out / "runs" / rid / "loop" / "state.json").read_text())
    assert state["history"][0]["info"]["strategy"] == "most_uncertain"
    again = E.run_grid(cfg["notebook"], cfg["grid"], out_dir=out, workers=2, progress=False,
                       pythonpath=cfg["pythonpath"])
    assert [s["status"] for s in again] == ["skipped"] * 3
    tables = E.report_tables(table)
    assert set(tables["final"]["strategy"]) == set(table["strategy"])


@pytest.mark.slow
def test_score_pool_on_ray_data_equals_local():
    pytest.importorskip("ray")
    from gapscope.helpers.models import Ensemble
    from gapscope.helpers.scoring import score_pool

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    ens = Ensemble("mlp", 3, n_classes=3, hidden=(16,), epochs=3, device="cpu", random_state=0).fit(X, y)
    names = ("predictive_entropy", "mutual_information")
    local = score_pool(ens, X, scores=names)
    remote = E.score_pool_ray(ens, X, scores=names, batch_size=64, concurrency=2)
    for n in names:
        assert remote[n].shape == (300,)
        np.testing.assert_allclose(remote[n], local[n], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_score_pool_on_ray_data_reads_pool_files(tmp_path):
    """A Parquet pool is read by the Ray workers, an Arrow one chunk by chunk: same scores."""
    ray = pytest.importorskip("ray")
    from gapscope.helpers.models import Ensemble
    from gapscope.helpers.scale import write_pool_file
    from gapscope.helpers.scoring import score_pool

    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    ens = Ensemble("mlp", 2, n_classes=2, hidden=(8,), epochs=2, device="cpu", random_state=0).fit(X, y)
    local = score_pool(ens, X, scores=("ensemble_uncertainty",))["ensemble_uncertainty"]
    pq = write_pool_file(tmp_path / "p.parquet", X, format="parquet", batch_rows=128)
    arrow = write_pool_file(tmp_path / "p.arrow", X, batch_rows=128)
    E._init_local_ray(2)
    try:
        for src in (str(pq.path), arrow):
            got = E.score_pool_ray(ens, src, scores=("ensemble_uncertainty",), batch_size=100)
            np.testing.assert_allclose(got["ensemble_uncertainty"], local, rtol=1e-5, atol=1e-6)
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_concurrent_runs_get_one_blas_thread_each(tmp_path):
    """Two kernels with 2 OpenMP threads each on 2 cores spin: runs took 3-4x longer."""
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell('run_dir = ""\nseed = 0')
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(
        "import os, json, pathlib, torch\n"
        "pathlib.Path(run_dir, 'results.json').write_text(json.dumps("
        "{'omp': os.environ.get('OMP_NUM_THREADS'), 'torch': torch.get_num_threads()}))")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "threads.ipynb"
    nbformat.write(nb, path)
    E.run_grid(path, {"seed": [0, 1]}, out_dir=tmp_path / "g", workers=2, threads=1, progress=False)
    for res in (tmp_path / "g" / "runs").glob("*/results.json"):
        assert json.loads(res.read_text()) == {"omp": "1", "torch": 1}


def test_collect_names_the_variants_of_an_ablation_grid(toy, tmp_path):
    """A grid that varies more than data/strategy/seed keeps its variants apart in every table."""
    out = tmp_path / "abl"
    E.run_grid(
        toy, {"mode": ["ok"], "dataset": ["toy"], "strategy": ["s"], "x": [1, 2], "seed": [0, 1], "rounds": [2]},
        out_dir=out, workers=2, progress=False,
    )
    t = E.collect(out)
    assert sorted(t["strategy"].unique()) == ["s [x=1]", "s [x=2]"]
    assert set(t["strategy_name"]) == {"s"}
    lc = E.learning_curves(t)
    assert set(lc["strategy"]) == {"s [x=1]", "s [x=2]"} and (lc["n_runs"] == 2).all()
    # nested options are named by their leaf
    from gapscope.helpers.experiments import _flat

    assert _flat({"score_options": {"alpha": 0.1}}, "strategy_options") == {
        "strategy_options.score_options.alpha": 0.1
    }
