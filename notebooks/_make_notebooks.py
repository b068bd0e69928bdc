"""Writes notebooks/01_explore_gaps.ipynb and 02_label_batches.ipynb (no outputs).

Run: ``python notebooks/_make_notebooks.py``. The notebooks are the source of truth once
written; this script keeps their cells readable in review.
"""

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent


def nb(cells):
    book = nbf.v4.new_notebook()
    book.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    book.metadata["language_info"] = {"name": "python"}
    out = []
    for kind, src, *tags in cells:
        c = nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src)
        if tags:
            c.metadata["tags"] = tags
        out.append(c)
    book.cells = out
    return book


COMMON_MODEL = """ds = load_dataset(dataset, random_state=seed)
pool = ds.pool
# the labeled seed set is the validation split; the pool is unlabeled
ens = Ensemble("mlp", n_members=n_members, epochs=epochs, lr=lr, hidden=(64,), random_state=seed)
ens.fit(ds.val.X, ds.val.labels)
probs, emb = ens.predict_proba_and_embed(pool.X)
P = probs.mean(0)                          # (n, C) mean member probabilities
Z = emb.mean(0)                            # (n, k) fused embedding
model_label = P.argmax(1)
confidence = P.max(1)
U = ensemble_uncertainty(probs)            # U(x) = a * mean entropy + (1 - a) * variance
Z_seed = ens.fused_embedding(ds.val.X)
if map_method == "pca":
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed).fit(Z)
    xy, project = pca.transform(Z), pca.transform
elif map_method == "umap":
    from gapscope.helpers.clustering import umap_map

    xy, project = umap_map(Z, random_state=seed), None
else:
    raise ValueError(f"map_method: expected 'pca' or 'umap', got {map_method!r}")
print(ds, f"| map {map_method} {xy.shape} | mean U {U.mean():.3f}")"""


EXPLORE = [
    (
        "md",
        """# 01 · Explore the gaps of a dataset

Train a small ensemble on the labeled seed set, embed the unlabeled pool, and look at its
2-D map: where is the model uncertain, where is the pool sparse, which clusters does the
model get wrong? The **LatentMap** colours the map (density, uncertainty, cluster, error,
label, source) with KDE contours; box or lasso a region to select its items. The
**SamplerPanel** proposes low-density points (p(z) ∝ 1/(p(z)+eps)) and draws them on the map.

Parameterized for papermill; the defaults are small enough for CI. Outputs go to
`out_dir` (default: a temp dir), never into the repository.""",
    ),
    (
        "code",
        """# parameters
dataset = "digits"
seed = 0
n_members = 3
epochs = 8
lr = 1e-2
map_method = "pca"   # "pca" (fast) or "umap" (~20 s of numba JIT in a fresh kernel)
n_clusters = 8
tau = 0.25           # a cluster is a gap when its error rate is above tau
out_dir = ""         # "" -> $GAPSCOPE_OUT or a temp dir""",
        "parameters",
    ),
    (
        "code",
        """import json
import os
import tempfile
from pathlib import Path

import numpy as np

from gapscope.helpers.clustering import kmeans
from gapscope.helpers.data import load_dataset
from gapscope.helpers.metrics import gap_regions, summarize_dataset
from gapscope.helpers.models import Ensemble
from gapscope.helpers.scoring import ensemble_uncertainty
from gapscope.widgets import LatentMap, SamplerPanel, map_density

out_dir = Path(out_dir or os.environ.get("GAPSCOPE_OUT") or tempfile.mkdtemp(prefix="gapscope-"))
out_dir.mkdir(parents=True, exist_ok=True)""",
    ),
    ("code", COMMON_MODEL),
    (
        "md",
        """## Clusters and performance gaps
k-means on the fused embedding; the error of each cluster uses the simulation oracle's
labels (this is an analysis notebook: strategies never see the oracle).""",
    ),
    (
        "code",
        """clusters, _centers = kmeans(Z, n_clusters, random_state=seed)
errors = (model_label != ds.oracle.true_labels(pool.ids)).astype(float)
gaps = gap_regions(errors, clusters, tau=tau)
summary = summarize_dataset(Z, clusters, errors=errors, tau=tau, random_state=seed)
for c, info in gaps.as_dict()["per_cluster"].items():
    flag = "  <- gap" if c in gaps.gap_clusters else ""
    print(f"cluster {c}: {info['size']:4d} items, error {info['error_rate']:.2f}{flag}")
print("entropy", round(summary["entropy"], 3), "evenness", round(summary["evenness"], 3))""",
    ),
    (
        "code",
        """lmap = LatentMap(xy, pool.ids, uncertainty=U, error=errors, cluster=clusters,
                 content=pool.X, kind=ds.kind, color_by="uncertainty",
                 title=f"{dataset} pool: {map_method} map of the fused embedding")
selected = []
lmap.on_select(lambda ids: selected.append(ids))
lmap""",
    ),
    ("md", "Switch the colouring with `lmap.color_by = 'density' | 'cluster' | 'error' | ...`."),
    (
        "code",
        """sampler = SamplerPanel(Z, pool.ids, latent_map=lmap, project=project, count=20,
                       random_state=seed)
sampler""",
    ),
    ("md", "## Checks (the claims this notebook makes)"),
    (
        "code",
        """# the density colouring is the KDE of the map itself
lmap.color_by = "density"
np.testing.assert_allclose(lmap.figure.data[lmap._i_points].marker.color, map_density(xy)[3])
# a selection made on the map reaches Python as item ids
picked = lmap.select(pool.ids[:7])
assert selected[-1] == picked and len(picked) == 7
# the sampler proposes pool items of lower density than the pool at large
prop = sampler.proposal
kde = sampler._kde(sampler.bandwidth)
assert np.median(prop["log_density"]) < np.median(np.asarray(kde.score_samples(Z)))
assert lmap.proposal_xy().shape == (20, 2)
# gap clusters really are worse than tau
assert all(gaps.error_rates[list(gaps.clusters).index(c)] > tau for c in gaps.gap_clusters)
lmap.color_by = "cluster"
result = {"dataset": dataset, "map_method": map_method, "n_pool": int(len(pool)),
          "gap_clusters": [int(c) for c in gaps.gap_clusters],
          "mean_uncertainty": float(U.mean()), "proposal": list(prop["ids"])}
(out_dir / "explore_gaps.json").write_text(json.dumps(result, indent=1))
print(json.dumps({k: result[k] for k in ("gap_clusters", "mean_uncertainty")}))""",
    ),
]


LABEL = [
    (
        "md",
        """# 02 · Label batches

A keyboard-first **Labeler** over the most uncertain pool items, beside the **LatentMap**
(box / lasso to select) and the **SamplerPanel** (its *Make batch* button sends the
proposal to the labeler). Every action is written at once to the label store
(`labels.sqlite` in `run_dir`) with its provenance cues; re-run this notebook on the same
`run_dir` after a kernel restart and the labeler shows what is done and continues.

Keys (click the labeler first): `a` accept · `x` reject · space skip · backspace undo ·
`f` bias flag · `o` out of scope · `1`–`9` label · arrows move.

Parameterized for papermill; the defaults are small enough for CI. With
`GAPSCOPE_INTERACTIVE=1` the simulated labeling cell is skipped (the browser test labels
by hand).""",
    ),
    (
        "code",
        """# parameters
dataset = "digits"
seed = 0
n_members = 3
epochs = 8
lr = 1e-2
batch_size = 24
map_method = "pca"      # "pca" (fast) or "umap" (~20 s of numba JIT in a fresh kernel)
annotator = "me"
run_dir = ""            # "" -> $GAPSCOPE_RUN_DIR or a temp dir (never the repository)
selection_file = ""     # "" -> $GAPSCOPE_SELECTION_FILE or <run_dir>/selection.json
simulate = None         # None -> True unless $GAPSCOPE_INTERACTIVE=1""",
        "parameters",
    ),
    (
        "code",
        """import json
import os
import tempfile
from pathlib import Path

import numpy as np

from gapscope.helpers.data import load_dataset
from gapscope.helpers.metrics import evaluate
from gapscope.helpers.models import Ensemble
from gapscope.helpers.scoring import ensemble_uncertainty
from gapscope.helpers.store import LabelStore
from gapscope.widgets import Labeler, LatentMap, LoopDashboard, SamplerPanel, nearest_exemplars

run_dir = Path(run_dir or os.environ.get("GAPSCOPE_RUN_DIR") or tempfile.mkdtemp(prefix="gapscope-"))
run_dir.mkdir(parents=True, exist_ok=True)
selection_file = Path(selection_file or os.environ.get("GAPSCOPE_SELECTION_FILE")
                      or run_dir / "selection.json")
if simulate is None:
    simulate = os.environ.get("GAPSCOPE_INTERACTIVE") != "1\"""",
    ),
    ("code", COMMON_MODEL),
    (
        "code",
        """store = LabelStore(run_dir=run_dir, project=dataset)
store.set_schema(labels=list(range(ds.n_classes)), tags=["blurry", "ambiguous", "atypical"])
store.add_items(pool.ids, dataset=dataset)      # idempotent: known items are kept as they are
content = {str(i): x for i, x in zip(pool.ids, pool.X, strict=True)}
content.update({str(i): x for i, x in zip(ds.val.ids, ds.val.X, strict=True)})
seed_label = dict(zip(ds.val.ids.tolist(), ds.val.labels.tolist(), strict=True))


def batch_for(ids):
    \"\"\"Model label, confidence and 3 nearest labeled exemplars for pool items `ids`.\"\"\"
    idx = pool.index_of(np.asarray(ids, dtype=np.int64))
    ex = nearest_exemplars(Z[idx], Z_seed, ds.val.ids, k=3)
    return {"model_labels": model_label[idx].tolist(), "confidence": confidence[idx],
            "exemplars": ex, "exemplar_labels": [[seed_label[e] for e in row] for row in ex]}

print(store)""",
    ),
    (
        "code",
        """lmap = LatentMap(xy, pool.ids, uncertainty=U, store=store, content=pool.X, kind=ds.kind,
                 color_by="uncertainty", title="pool map (box / lasso to select)")
selections = []


def save_selection(ids):
    selections.append(ids)
    tmp = selection_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"n_selections": len(selections), "ids": ids,
                               "sizes": [len(s) for s in selections]}))
    tmp.replace(selection_file)                 # atomic: readers never see half a file


lmap.on_select(save_selection)
lmap""",
    ),
    (
        "code",
        """batch_ids = pool.ids[np.argsort(-U, kind="stable")[:batch_size]]   # most uncertain first
lab = Labeler(store, batch_ids, content=content, kind=ds.kind, label_names=ds.class_names,
              annotator=annotator, title=f"{dataset}: {batch_size} most uncertain",
              **batch_for(batch_ids))
lab.on_action(lambda info: lmap.refresh())     # labeled items get their ring on the map
lab""",
    ),
    (
        "code",
        """sampler = SamplerPanel(Z, pool.ids, latent_map=lmap, project=project, count=batch_size,
                       random_state=seed)


def to_labeler(proposal):
    if proposal["ids"] is None:
        raise ValueError("synthetic proposals need decoding before labeling")
    lab.set_batch(proposal["ids"], **batch_for(proposal["ids"]))


sampler.on_batch(to_labeler)
sampler""",
    ),
    (
        "code",
        """m = evaluate(ens.predict_proba(ds.test.X).mean(0), ds.test.labels)
dash = LoopDashboard([{"round": 0, "accuracy": m["accuracy"], "ece": m["ece"],
                       "macro_f1": m["macro_f1"], "n_labeled": len(ds.val)}])
dash""",
    ),
    ("md", "## Simulated labeling (skipped in interactive runs) and checks"),
    (
        "code",
        """if simulate:
    n0 = len(store.events(annotator=annotator))
    start = lab.cursor
    for key in ["a", "x", "2", "f", " ", "Backspace"]:    # the browser sends exactly these
        lab.press(key)
    ev = store.events(annotator=annotator).iloc[n0:]
    kinds = list(ev["kind"])
    assert kinds[0] == "accept" and kinds[1] == "reject" and kinds[-1] == "undo", kinds
    assert kinds[2] in ("accept", "correct") and kinds[3] == "flag_bias"
    cues = ev["cues"].iloc[0]
    assert cues["widget"] == "gapscope.widgets.Labeler" and len(cues["exemplars_shown"]) == 3
    assert lab.done >= 3
    picked = lmap.select(batch_ids[:5])                  # as a box drag would
    assert json.loads(selection_file.read_text())["ids"] == picked
    sampler.make_batch()                                 # the button: proposal -> labeler
    assert lab.item_ids == [str(i) for i in sampler.proposal["ids"]]
print(f"{lab.done} / {lab.total} done; {len(store.events())} events in {run_dir}")""",
    ),
]


if __name__ == "__main__":
    nbf.write(nb(EXPLORE), HERE / "01_explore_gaps.ipynb")
    nbf.write(nb(LABEL), HERE / "02_label_batches.ipynb")
    print("written 01_explore_gaps.ipynb, 02_label_batches.ipynb")
