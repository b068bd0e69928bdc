import marimo

__generated_with = "0.25.2"
app = marimo.App(width="full")


@app.cell
def _():
    import json
    import os
    import time
    from pathlib import Path

    import marimo as mo

    return Path, json, mo, os, time


@app.cell
def _(mo):
    mo.md(
        """
        # The curation loop, driven by a person (marimo)

        The marimo twin of `02_curation_loop.ipynb`: one `CurationLoop(labeler="human")` and
        its **LoopView**, whose parts are anywidgets shown through `mo.ui.anywidget`: the
        controls (Retrain, progress, status), the **Labeler** with the loop's batch, the
        **map** (2-D PCA of this round's model embedding) and the **dashboard**.

        Click the Labeler's header, give every card a decision (digits label, `a` accept
        the model's label, `x` reject, `o` out of scope, space skip, backspace undo), then
        press `r`: the loop trains in the background and the next batch appears.

        Every action goes to the label store (`labels.sqlite` in the run folder) at once.
        The run folder is persistent (`runs/<project>` beside this notebook,
        `$GAPSCOPE_RUN_DIR` or `--run_dir`): start it again and the page shows the same
        batch with what is done.

        `marimo run notebooks/curation_loop_marimo.py -- --budget 6` serves it;
        `python notebooks/curation_loop_marimo.py --run_dir DIR --simulate oracle` runs it
        as a script, resolving every batch through the Labeler with the data's oracle.
        """
    )
    return


@app.cell
def _(Path, json, mo, os):
    args = mo.cli_args()

    def arg(name, default):
        return args[name] if name in args else default

    def json_arg(name, default):
        v = arg(name, None)
        if v is None:
            return default
        try:
            return json.loads(v) if isinstance(v, str) else v
        except json.JSONDecodeError as exc:
            raise ValueError(f"--{name}: expected a JSON object, got {v!r}") from exc

    # the parameters of 02_curation_loop.ipynb, with the same defaults
    project = str(arg("project", "curation-demo"))  # names the run folder and the store's project
    data = str(arg("data", arg("dataset", "mixture")))  # "mixture" (4 classes, vectors) or "digits"
    data_options = json_arg(
        "data_options",
        {"n_pool": 400, "n_val": 80, "n_test": 200, "separation": 1.5} if data == "mixture" else {},
    )
    strategy = str(arg("strategy", "entropy"))
    budget = int(arg("budget", 10))  # items per round
    rounds = int(arg("rounds", 3))  # acquisition rounds after the bootstrap batch
    n_initial = int(arg("n_initial", 12))  # the random bootstrap batch
    n_members = int(arg("n_members", 3))
    n_clusters = int(arg("n_clusters", 4))
    model_options = json_arg("model_options", {"epochs": 8, "hidden": [32], "patience": None})
    if "epochs" in args:
        model_options["epochs"] = int(args["epochs"])
    if "hidden" in args:
        model_options["hidden"] = [int(h) for h in str(args["hidden"]).split(",")]
    annotator = str(arg("annotator", "me"))
    seed = int(arg("seed", 0))
    _nb_dir = mo.notebook_dir() or Path.cwd()
    run_dir = Path(
        arg("run_dir", "") or os.environ.get("GAPSCOPE_RUN_DIR") or _nb_dir / "runs" / project
    )
    # None: a person labels; "oracle": resolve every batch through the Labeler (scripts, CI)
    simulate = arg("simulate", None) or None
    if simulate not in (None, "oracle"):
        raise ValueError(f"simulate: expected None or 'oracle', got {simulate!r}")
    return (
        annotator,
        budget,
        data,
        data_options,
        model_options,
        n_clusters,
        n_initial,
        n_members,
        project,
        rounds,
        run_dir,
        seed,
        simulate,
        strategy,
    )


@app.cell
def _(
    budget,
    data,
    data_options,
    mo,
    model_options,
    n_clusters,
    n_initial,
    n_members,
    project,
    rounds,
    run_dir,
    seed,
    strategy,
):
    from gapscope.helpers.loop import CurationLoop, LoopConfig
    from gapscope.helpers.store import LabelStore

    resumed = (run_dir / "state.json").exists()
    config = (
        None
        if resumed
        else LoopConfig(
            data=data,
            data_options=data_options,
            strategy=strategy,
            budget=budget,
            rounds=rounds,
            n_initial=n_initial,
            n_members=n_members,
            n_clusters=n_clusters,
            model_options=model_options,
            labeler="human",
            seed=seed,
        )
    )
    store = LabelStore(run_dir=run_dir, project=project)  # the store the Labeler writes to
    loop = CurationLoop(run_dir, config, store=store)
    mo.md(
        f"{'resumed' if resumed else 'new run'} in `{run_dir.resolve()}` · {loop.dataset} · "
        f"round {loop.round}, next step `{loop.next_step}`"
    )
    return loop, store


@app.cell
def _(annotator, loop, mo):
    from gapscope.widgets import LoopView

    view = LoopView(loop, annotator=annotator)
    # each part is an anywidget; the ui elements are globals so marimo keeps them synced
    bar_ui = mo.ui.anywidget(view.parts["bar"])
    labeler_ui = mo.ui.anywidget(view.parts["labeler"])
    map_ui = mo.ui.anywidget(view.parts["map"])
    dashboard_ui = mo.ui.anywidget(view.parts["dashboard"])
    mo.vstack(
        [
            bar_ui,
            labeler_ui,
            mo.hstack([map_ui, dashboard_ui], align="start", widths=[3, 2], wrap=True),
        ],
        gap=0.5,
    )
    return (view,)


@app.cell
def _(loop, simulate, time, view):
    def resolve_batch(v):
        # every open card of the batch gets the oracle's label, through the Labeler's own
        # actions (the store gets the events a person's keys would write)
        lab = v.labeler
        truth = dict(
            zip(v.loop.batch, v.loop.dataset.oracle.true_labels(v.loop.batch), strict=True)
        )
        for j, item in enumerate(lab.items):
            if not lab.states[j]["done"]:
                lab.relabel(lab.label_names[int(truth[int(item["id"])])], index=j)

    _t0 = time.perf_counter()
    simulated_rounds = 0
    while simulate == "oracle" and not loop.done:
        resolve_batch(view)
        print(f"{view.labeler.title}: resolved {view.labeler.done}/{view.labeler.total}")
        view.retrain(background=False)
        assert view.error is None, view.error
        simulated_rounds += 1
    if simulate == "oracle":
        print(f"{loop.stop_reason} after {time.perf_counter() - _t0:.1f} s")
    return (simulated_rounds,)


@app.cell
def _(loop, mo, simulated_rounds):
    simulated_rounds  # noqa: B018 - after the simulated rounds
    _res = loop.results()  # one row per evaluated round (none before the first model)
    _cols = ["round", "labels", "accuracy", "macro_f1", "ece", "d_score"]
    _res[[c for c in _cols if c in _res.columns]] if len(_res) else mo.md("no evaluated round yet")
    return


@app.cell
def _(json, loop, run_dir, simulated_rounds, store, view):
    # checks (what this notebook claims): the store holds the pool; the loop's batch is on
    # the cards, with the done count the store has; after the bootstrap the cards show the
    # model's label
    simulated_rounds  # noqa: B018 - after the simulated rounds
    view.wait(600)  # a retrain still running ends first
    pool_ids = [int(i) for i in loop.dataset.pool.ids]
    assert set(pool_ids) <= set(store.items()["item_id"].astype(int))
    assert view.error is None, view.error
    _lab = view.labeler
    if loop.done:
        print(f"run finished: {loop.stop_reason}")
    else:
        assert loop.next_step == "label"
        assert _lab.item_ids == [str(i) for i in loop.batch] and _lab.total == len(loop.batch)
        assert _lab.done == len(loop.batch) - len(loop.pending())
        if loop.round >= 0:  # a model exists: its label and agreement are on every card
            assert all(it["model_label"] is not None for it in _lab.items)
            assert view.map is not None and len(view.dashboard.rounds) == loop.round + 1
    summary = {
        "round": loop.round,
        "done": loop.done,
        "stop_reason": loop.stop_reason,
        "labeler_done": _lab.done,
        "labeler_total": _lab.total,
        "n_events": int(len(store.events())),
        "n_labeled": len(loop.labeled_ids),
        "map_round": view.map_round,
        "dashboard_rounds": len(view.dashboard.rounds),
        "simulated_rounds": simulated_rounds,
    }
    (run_dir / "marimo_curation_loop.json").write_text(json.dumps(summary))
    print(
        f"round {loop.round}: {_lab.done} / {_lab.total} done; {summary['n_events']} events; "
        f"{summary['n_labeled']} labeled"
    )
    return


if __name__ == "__main__":
    app.run()
