import marimo

__generated_with = "0.25.2"
app = marimo.App(width="full")


@app.cell
def _():
    import json
    import os
    import tempfile
    from pathlib import Path

    import marimo as mo
    import numpy as np

    return Path, json, mo, np, os, tempfile


@app.cell
def _(mo):
    mo.md(
        """
        # Label batches (marimo)

        The marimo twin of `02_label_batches.ipynb`: the anywidget-based **Labeler**,
        **LatentMap** (its own canvas: drag a box or a lasso to select, shift adds) and
        **SamplerPanel** through `mo.ui.anywidget`. Every action goes to the label store
        at once.

        `python notebooks/label_batches_marimo.py --epochs 3 --run_dir DIR --simulate 1`
        runs it as a script; `marimo run ... -- --simulate 0` serves it for labeling.
        Keys (click the labeler first): a accept, x reject, space skip, backspace undo,
        f bias flag, o out of scope, 1-9 label, arrows move.
        """
    )
    return


@app.cell
def _(Path, mo, os, tempfile):
    args = mo.cli_args()

    def arg(name, default):
        return args[name] if name in args else default

    dataset = str(arg("dataset", "digits"))
    seed = int(arg("seed", 0))
    n_members = int(arg("n_members", 3))
    epochs = int(arg("epochs", 8))
    lr = float(arg("lr", 1e-2))
    batch_size = int(arg("batch_size", 24))
    map_method = str(arg("map_method", "pca"))
    annotator = str(arg("annotator", "me"))
    run_dir = Path(
        arg("run_dir", "") or os.environ.get("GAPSCOPE_RUN_DIR") or tempfile.mkdtemp(prefix="gapscope-")
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    selection_file = Path(arg("selection_file", "") or run_dir / "selection.json")
    simulate = bool(int(arg("simulate", 0 if os.environ.get("GAPSCOPE_INTERACTIVE") == "1" else 1)))
    return (
        annotator,
        batch_size,
        dataset,
        epochs,
        lr,
        map_method,
        n_members,
        run_dir,
        seed,
        selection_file,
        simulate,
    )


@app.cell
def _(dataset, epochs, lr, map_method, n_members, seed):
    from gapscope.helpers.data import load_dataset
    from gapscope.helpers.models import Ensemble
    from gapscope.helpers.scoring import ensemble_uncertainty

    ds = load_dataset(dataset, random_state=seed)
    pool = ds.pool
    ens = Ensemble("mlp", n_members=n_members, epochs=epochs, lr=lr, hidden=(64,), random_state=seed)
    ens.fit(ds.val.X, ds.val.labels)
    _probs, _emb = ens.predict_proba_and_embed(pool.X)
    P = _probs.mean(0)
    Z = _emb.mean(0)
    model_label = P.argmax(1)
    confidence = P.max(1)
    U = ensemble_uncertainty(_probs)
    Z_seed = ens.fused_embedding(ds.val.X)
    if map_method == "pca":
        from sklearn.decomposition import PCA

        _pca = PCA(n_components=2, random_state=seed).fit(Z)
        xy, project = _pca.transform(Z), _pca.transform
    elif map_method == "umap":
        from gapscope.helpers.clustering import umap_map

        xy, project = umap_map(Z, random_state=seed), None
    else:
        raise ValueError(f"map_method: expected 'pca' or 'umap', got {map_method!r}")
    return U, Z, Z_seed, confidence, ds, ens, model_label, pool, project, xy


@app.cell
def _(Z, Z_seed, confidence, dataset, ds, model_label, np, pool, run_dir):
    from gapscope.helpers.store import LabelStore
    from gapscope.widgets import nearest_exemplars

    store = LabelStore(run_dir=run_dir, project=dataset)
    store.set_schema(labels=list(range(ds.n_classes)), tags=["blurry", "ambiguous", "atypical"])
    store.add_items(pool.ids, dataset=dataset)
    content = {str(i): x for i, x in zip(pool.ids, pool.X, strict=True)}
    content.update({str(i): x for i, x in zip(ds.val.ids, ds.val.X, strict=True)})
    _seed_label = dict(zip(ds.val.ids.tolist(), ds.val.labels.tolist(), strict=True))

    def batch_for(ids):
        idx = pool.index_of(np.asarray(ids, dtype=np.int64))
        ex = nearest_exemplars(Z[idx], Z_seed, ds.val.ids, k=3)
        return {
            "model_labels": model_label[idx].tolist(),
            "confidence": confidence[idx],
            "exemplars": ex,
            "exemplar_labels": [[_seed_label[e] for e in row] for row in ex],
        }

    return batch_for, content, store


@app.cell
def _(U, ds, json, mo, pool, selection_file, store, xy):
    from gapscope.widgets import LatentMap

    lmap = LatentMap(xy, pool.ids, uncertainty=U, store=store, content=pool.X, kind=ds.kind,
                     color_by="uncertainty", title="pool map (box / lasso to select)")
    selections = []

    def _save(ids):
        selections.append(ids)
        _tmp = selection_file.with_suffix(".tmp")
        _tmp.write_text(json.dumps({"n_selections": len(selections), "ids": ids,
                                    "sizes": [len(s) for s in selections]}))
        _tmp.replace(selection_file)

    lmap.on_select(_save)
    map_view = mo.ui.anywidget(lmap)
    map_view  # noqa: B018 - marimo shows a cell's last expression
    return lmap, selections


@app.cell
def _(U, annotator, batch_for, batch_size, content, dataset, ds, lmap, mo, np, pool, store):
    from gapscope.widgets import Labeler

    batch_ids = pool.ids[np.argsort(-U, kind="stable")[:batch_size]]
    lab = Labeler(store, batch_ids, content=content, kind=ds.kind, label_names=ds.class_names,
                  annotator=annotator, title=f"{dataset}: {batch_size} most uncertain",
                  **batch_for(batch_ids))
    lab.on_action(lambda info: lmap.refresh())
    labeler_view = mo.ui.anywidget(lab)
    labeler_view  # noqa: B018 - marimo shows a cell's last expression
    return batch_ids, lab


@app.cell
def _(Z, batch_for, batch_size, dataset, lab, lmap, mo, pool, project, seed):
    from gapscope.widgets import SamplerPanel

    sampler = SamplerPanel(Z, pool.ids, latent_map=lmap, project=project, count=batch_size,
                           random_state=seed)

    def _to_labeler(proposal):
        if proposal["ids"] is None:
            raise ValueError("synthetic proposals need decoding before labeling")
        lab.title = f"{dataset}: {len(proposal['ids'])} from the sampler"
        lab.set_batch(proposal["ids"], **batch_for(proposal["ids"]))

    sampler.on_batch(_to_labeler)
    sampler_view = mo.ui.anywidget(sampler)
    sampler_view  # noqa: B018 - marimo shows a cell's last expression
    return (sampler,)


@app.cell
def _(ds, ens, mo):
    from gapscope.helpers.metrics import evaluate
    from gapscope.widgets import LoopDashboard

    _m = evaluate(ens.predict_proba(ds.test.X).mean(0), ds.test.labels)
    dash = LoopDashboard([{"round": 0, "accuracy": _m["accuracy"], "ece": _m["ece"],
                           "macro_f1": _m["macro_f1"], "n_labeled": len(ds.val)}])
    dashboard_view = mo.ui.anywidget(dash.figure)
    dashboard_view  # noqa: B018 - marimo shows a cell's last expression
    return


@app.cell
def _(annotator, batch_ids, json, lab, lmap, run_dir, sampler, selection_file, simulate, store):
    if simulate:
        _n0 = len(store.events(annotator=annotator))
        for _k in ["a", "x", "2", "f", " ", "Backspace"]:
            lab.press(_k)
        _ev = store.events(annotator=annotator).iloc[_n0:]
        _kinds = list(_ev["kind"])
        assert _kinds[0] == "accept" and _kinds[1] == "reject" and _kinds[-1] == "undo", _kinds
        assert _ev["cues"].iloc[0]["widget"] == "gapscope.widgets.Labeler"
        _picked = lmap.select(batch_ids[:5])
        assert json.loads(selection_file.read_text())["ids"] == _picked
        sampler.make_batch()
        assert lab.item_ids == [str(i) for i in sampler.proposal["ids"]]
        (run_dir / "marimo_label_batches.json").write_text(json.dumps(
            {"kinds": _kinds, "done": lab.done, "total": lab.total,
             "n_events": int(len(store.events()))}))
    return


if __name__ == "__main__":
    app.run()
