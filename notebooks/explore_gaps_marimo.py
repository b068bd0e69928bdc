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
        # Explore the gaps (marimo)

        The marimo twin of `01_explore_gaps.ipynb`: a small ensemble, the pool's 2-D map
        (**LatentMap** through `mo.ui.anywidget`) coloured by a marimo dropdown, k-means
        clusters with their error rate (gap regions), and the low-density **SamplerPanel**.

        `python notebooks/explore_gaps_marimo.py --epochs 3 --out DIR` runs it as a script;
        `marimo export html notebooks/explore_gaps_marimo.py -o x.html -- --out DIR` too.
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
    map_method = str(arg("map_method", "pca"))
    n_clusters = int(arg("n_clusters", 8))
    tau = float(arg("tau", 0.25))
    out_dir = Path(arg("out", "") or os.environ.get("GAPSCOPE_OUT") or tempfile.mkdtemp(prefix="gapscope-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    return dataset, epochs, lr, map_method, n_clusters, n_members, out_dir, seed, tau


@app.cell
def _(dataset, epochs, lr, map_method, n_members, seed):
    from gapscope.helpers.data import load_dataset
    from gapscope.helpers.models import Ensemble
    from gapscope.helpers.scoring import ensemble_uncertainty

    ds = load_dataset(dataset, random_state=seed)
    pool = ds.pool
    _ens = Ensemble("mlp", n_members=n_members, epochs=epochs, lr=lr, hidden=(64,), random_state=seed)
    _ens.fit(ds.val.X, ds.val.labels)
    _probs, _emb = _ens.predict_proba_and_embed(pool.X)
    Z = _emb.mean(0)
    model_label = _probs.mean(0).argmax(1)
    U = ensemble_uncertainty(_probs)
    if map_method == "pca":
        from sklearn.decomposition import PCA

        _pca = PCA(n_components=2, random_state=seed).fit(Z)
        xy, project = _pca.transform(Z), _pca.transform
    elif map_method == "umap":
        from gapscope.helpers.clustering import umap_map

        xy, project = umap_map(Z, random_state=seed), None
    else:
        raise ValueError(f"map_method: expected 'pca' or 'umap', got {map_method!r}")
    return U, Z, ds, model_label, pool, project, xy


@app.cell
def _(Z, ds, mo, model_label, n_clusters, pool, seed, tau):
    from gapscope.helpers.clustering import kmeans
    from gapscope.helpers.metrics import gap_regions

    clusters, _centers = kmeans(Z, n_clusters, random_state=seed)
    errors = (model_label != ds.oracle.true_labels(pool.ids)).astype(float)
    gaps = gap_regions(errors, clusters, tau=tau)
    _rows = [
        {"cluster": c, "size": v["size"], "error rate": round(v["error_rate"], 3),
         "gap": c in gaps.gap_clusters}
        for c, v in gaps.as_dict()["per_cluster"].items()
    ]
    mo.ui.table(_rows, selection=None, label="clusters (error from the simulation oracle)")
    return clusters, errors, gaps


@app.cell
def _(U, clusters, ds, errors, mo, pool, xy):
    from gapscope.widgets import COLOR_BY, LatentMap

    lmap = LatentMap(xy, pool.ids, uncertainty=U, error=errors, cluster=clusters,
                     content=pool.X, kind=ds.kind, color_by="uncertainty",
                     title="pool map of the fused embedding")
    color = mo.ui.dropdown([c for c in COLOR_BY if c not in ("label", "source")],
                           value="uncertainty", label="colour by")
    return color, lmap


@app.cell
def _(color, lmap, mo):
    lmap.color_by = color.value          # re-runs when the dropdown changes
    mo.vstack([color, mo.ui.anywidget(lmap)])
    return


@app.cell
def _(Z, lmap, mo, pool, project, seed):
    from gapscope.widgets import SamplerPanel

    sampler = SamplerPanel(Z, pool.ids, latent_map=lmap, project=project, count=20,
                           random_state=seed)
    mo.ui.anywidget(sampler)
    return (sampler,)


@app.cell
def _(U, Z, dataset, gaps, json, lmap, map_method, np, out_dir, pool, sampler, tau, xy):
    from gapscope.widgets import map_density

    # checks: the notebook's claims
    np.testing.assert_allclose(lmap.color_values() if lmap.color_by == "density" else lmap._values["density"], map_density(xy)[3])
    _picked = lmap.select(pool.ids[:7])
    assert lmap.selected_ids == _picked and len(_picked) == 7
    _kde = sampler._kde(sampler.bandwidth)
    assert np.median(sampler.proposal["log_density"]) < np.median(np.asarray(_kde.score_samples(Z)))
    assert all(gaps.error_rates[list(gaps.clusters).index(c)] > tau for c in gaps.gap_clusters)
    result = {"dataset": dataset, "map_method": map_method, "n_pool": int(len(pool)),
              "gap_clusters": [int(c) for c in gaps.gap_clusters],
              "mean_uncertainty": float(U.mean()), "proposal": list(sampler.proposal["ids"])}
    (out_dir / "explore_gaps_marimo.json").write_text(json.dumps(result))
    return


if __name__ == "__main__":
    app.run()
