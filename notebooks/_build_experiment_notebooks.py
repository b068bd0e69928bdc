"""Writes notebooks/experiment.ipynb, compare.ipynb and 03_active_synthesis.ipynb (no outputs).

Run: ``python notebooks/_build_experiment_notebooks.py``. The notebooks are the source of
truth once written; this script only keeps their cells readable in review.
"""

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent


def nb(cells):
    book = nbf.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    book.metadata["language_info"] = {"name": "python"}
    out = []
    for kind, src, *tags in cells:
        c = nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src)
        if tags:
            c.metadata["tags"] = tags
        out.append(c)
    book.cells = out
    return book


EXPERIMENT = [
    ("md", """# Experiment: one curation-loop run

Parameterized with papermill (see the `parameters` cell: one parameter per `LoopConfig`
field, plus `modules`, `compute_reference` and `run_dir`). Runs the loop of
`gapscope.helpers.loop` and writes one record per round to `{run_dir}/results.json`.
`gapscope run` / `gapscope.helpers.experiments.run_grid` execute this notebook over a grid;
`compare.ipynb` reads the run folder. `data`, `model` and `strategy` are specs: a registered
name, `"package.module:factory"`, or `{"name": ..., "options": {...}}`; `modules` are
imported first (a module that calls `register_strategy` and friends).

The defaults are tiny so that the test suite can execute it in seconds."""),
    ("code", """# parameters
data = "mixture"
data_options = {}
model = "ensemble"
model_options = {}
strategy = "entropy"
strategy_options = {}
budget = 10
rounds = 2
n_initial = None
n_members = 3
labeler = "oracle"
noise_rate = 0.0
annotator_reliabilities = None
q_min = 0.5
balance = False
n_clusters = 10
density_dims = 8
synthesis = None
synthesis_options = {}
stop_diversity_delta = None
stop_gain_delta = None
stop_patience = 2
cv_folds = 5
seed = 0
# user modules to import before the run (they may register datasets, models, strategies)
modules = []
# full-data model accuracy: "auto" computes it only for strategy "random"
compute_reference = "auto"
# where results.json goes; empty means a fresh temporary folder
run_dir = ""
""", "parameters"),
    ("code", """import dataclasses, importlib, json, tempfile, time
from pathlib import Path

import numpy as np

from gapscope.helpers.loop import CurationLoop, LoopConfig

for _m in modules:
    importlib.import_module(_m)
run_dir = Path(run_dir or tempfile.mkdtemp(prefix="gapscope-exp-"))
run_dir.mkdir(parents=True, exist_ok=True)
t0 = time.perf_counter()
# every LoopConfig field comes from the parameters cell: nothing a grid sets is dropped
config = LoopConfig(**{f.name: globals()[f.name] for f in dataclasses.fields(LoopConfig)})
loop = CurationLoop(run_dir / "loop", config)   # resumes if the folder already holds this run
loop.run()
table = loop.results()
table"""),
    ("code", """# The full-data reference: the same model trained on every pool label (for "labels to reach
# 95% of the full-data model"). Computed once per (data, seed), in the random run, and only
# where the data have an oracle (true labels) and a test split.
reference = None
ds = loop.dataset
want = compute_reference is True or (compute_reference == "auto" and strategy == "random")
if want and ds.oracle is not None and ds.test is not None:
    from gapscope.helpers import metrics as M
    y_all = ds.oracle.true_labels(ds.pool.ids)
    full = loop.fit_model(ds.pool.X, y_all, seed=seed)
    p = loop.predict_proba(full, ds.test.X).mean(axis=0)
    reference = {"full_accuracy": M.accuracy(ds.test.labels, p.argmax(1)), "full_labels": int(len(y_all))}
reference"""),
    ("code", """# Invariants of the run (assertion cells: a broken run fails here, not silently in a report)
m = table
assert len(m) == rounds + 1 or loop.stop_reason != "budget spent", (len(m), rounds)
labeled = loop.labeled_ids
assert len(set(labeled)) == len(labeled), "an item was labeled twice"
assert m["labels"].iloc[-1] >= len(labeled), "every label the model used is counted"
if labeler == "oracle":
    assert (np.diff(m["labels"]) == budget).all(), "each round acquires exactly `budget` new labels"
for col in ("accuracy", "macro_f1", "ece", "coverage", "evenness"):
    if col in m:
        assert m[col].dropna().between(0, 1).all(), col
events = loop.store.events()
assert set(labeled) <= set(events["item_id"].astype(int)), "every label is in the store"
print(f"{len(m)} rounds, {m['labels'].iloc[-1]} labels, final accuracy {m['accuracy'].iloc[-1]:.3f}")"""),
    ("code", """rows = []
for r in table.to_dict("records"):
    r = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
    r.update(reference or {})
    rows.append(r)
results = {
    "params": {**dataclasses.asdict(config), "modules": modules},
    "expected_rounds": rounds + 1,
    "stop_reason": loop.stop_reason,
    "rounds": rows,
    "wall_time": time.perf_counter() - t0,
}
(run_dir / "results.json").write_text(json.dumps(results, indent=1, default=float))
print("results:", run_dir / "results.json")"""),
]

COMPARE = [
    ("md", """# Compare strategies over a run folder

Reads a folder made by `gapscope run` (or `gapscope.helpers.experiments.run_grid`) and draws the
report: learning curves with 95% intervals over seeds, labels needed to reach 95% of the
full-data model with the paired saving against random, area under the learning curve,
ECE, minority-class recall, coverage/evenness over rounds and robustness on the shifted
split. `gapscope report` executes this notebook and exports it to HTML."""),
    ("code", """# parameters
# a run folder; empty means a tiny demo grid made here
out_dir = ""
# the target is this share of the full-data model's accuracy
target_fraction = 0.95
baseline = "random"
""", "parameters"),
    ("code", """import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from gapscope.helpers import experiments as E

pio.renderers.default = "notebook"   # plotly.js inline: the exported HTML works offline
if not out_dir:
    out_dir = tempfile.mkdtemp(prefix="gapscope-compare-")
    nb_path = Path(E.NOTEBOOK_DIR) / "experiment.ipynb"
    E.run_grid(nb_path, {"data": ["mixture"], "strategy": ["random", "entropy"], "seed": [0, 1],
                         "rounds": [2], "budget": [10]}, out_dir=out_dir, workers=1, progress=False)
table = E.collect(out_dir)
problems = table.attrs.get("problems", [])
print(f"{table['run_id'].nunique()} runs, {len(problems)} incomplete")
for p in problems:
    print("  !", p)"""),
    ("md", "## Summary at the last round (mean ± 95% interval over seeds; complete runs only)"),
    ("code", """summary = E.report_tables(table, target_fraction=target_fraction, baseline=baseline)
summary["final"]"""),
    ("md", "## Labels needed to reach the target, and the saving against the baseline (paired by seed)"),
    ("code", """summary["labels_to_target"]"""),
    ("code", """summary["savings"]"""),
    ("md", "## Learning curves"),
    ("code", """def curve_figure(metric, title):
    curves = E.learning_curves(table, metric=metric)
    datasets = sorted(curves["dataset"].unique())
    fig = make_subplots(rows=1, cols=len(datasets), subplot_titles=datasets)
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
    strategies = sorted(curves["strategy"].unique())
    for j, d in enumerate(datasets, start=1):
        for i, s in enumerate(strategies):
            c = curves[(curves["dataset"] == d) & (curves["strategy"] == s)].sort_values("labels")
            if c.empty:
                continue
            color = palette[i % len(palette)]
            x = c["labels"].to_numpy(); m = c["mean"].to_numpy(); h = np.nan_to_num(c["ci95"].to_numpy())
            fig.add_trace(go.Scatter(x=np.r_[x, x[::-1]], y=np.r_[m + h, (m - h)[::-1]], fill="toself",
                                     line=dict(width=0), fillcolor=color, opacity=0.15, showlegend=False,
                                     hoverinfo="skip"), row=1, col=j)
            fig.add_trace(go.Scatter(x=x, y=m, name=s, line=dict(color=color), legendgroup=s,
                                     showlegend=(j == 1)), row=1, col=j)
    fig.update_layout(title=title, height=380, xaxis_title="labels")
    return fig

curve_figure("accuracy", "Test accuracy (95% interval over seeds)").show()"""),
    ("code", """curve_figure("ece", "Expected calibration error").show()
curve_figure("minority_recall", "Minority-class recall").show()
curve_figure("shifted_accuracy", "Accuracy on the shifted split (robustness)").show()"""),
    ("code", """curve_figure("coverage", "Coverage of the pool by the labeled set").show()
curve_figure("evenness", "Evenness of the labeled set over clusters").show()"""),
    ("md", "## Area under the learning curve"),
    ("code", """summary["aulc"]"""),
]

SYNTHESIS = [
    ("md", """# Active synthesis: generate where the data is thin, filter, validate, integrate

Trains a conditional VAE on the pool, samples low-density latents and active-synthesis
prototypes, filters them (uncertainty, label consistency), validates them with the
Oracle proxy, and compares real-only with real + synthetic training."""),
    ("code", """# parameters
dataset = "mixture"
n_labeled = 60
n_synthetic = 60
seed = 0
run_dir = \"\"""", "parameters"),
    ("code", """import tempfile
from pathlib import Path

import numpy as np

from gapscope.helpers.loop import CurationLoop, LoopConfig

run_dir = Path(run_dir or tempfile.mkdtemp(prefix="gapscope-synth-"))
common = dict(data=dataset, budget=n_labeled // 3, rounds=2, n_initial=n_labeled // 3, seed=seed,
              model_options={"epochs": 30}, synthesis_options={"n": n_synthetic // 2})
results = {}
for name in ("entropy", "low_density_synthesis", "active_synthesis"):
    loop = CurationLoop(run_dir / name, LoopConfig(strategy=name, **common)).run()
    results[name] = loop.results()
    last = loop.results().iloc[-1]
    print(name, last["accuracy"], "synthetic accepted:", last["synthetic"])"""),
    ("code", """import pandas as pd
final = pd.DataFrame({k: v.iloc[-1] for k, v in results.items()}).T
final[["labels", "synthetic", "accuracy", "macro_f1", "auroc", "ece", "shifted_accuracy", "subgroup_gap", "mia_auc"]]"""),
    ("code", """# every synthetic item that joined the training set was validated (accepted) first
for name in ("low_density_synthesis", "active_synthesis"):
    loop = CurationLoop(run_dir / name)
    accepted = set(int(i) for i in loop.store.accepted(loop.config.q_min))
    assert set(loop.synthetic_ids) <= accepted
    items = loop.store.items()
    assert (items[items["item_id"].astype("int64").isin(loop.synthetic_ids)]["source"] == "synthetic").all()
print("ok: synthetic items joined only after validation")"""),
]


def main():
    nbf.write(nb(EXPERIMENT), HERE / "experiment.ipynb")
    nbf.write(nb(COMPARE), HERE / "compare.ipynb")
    nbf.write(nb(SYNTHESIS), HERE / "03_active_synthesis.ipynb")


if __name__ == "__main__":
    main()
