"""The seam: the user's own data, labels, model and strategy in one CurationLoop."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from gapscope.helpers import components as C
from gapscope.helpers.data import Dataset, Pool
from gapscope.helpers.loop import CurationLoop, LoopConfig

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import user_components as U  # noqa: E402  (a user's module, also imported by grid kernels)


def _metrics(loop: CurationLoop) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "wall_time"} for m in loop.results().to_dict("records")]


# ------------------------------------------------------------------ the acceptance example
def test_the_readme_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from gapscope.helpers.models import SklearnEnsemble

    X, y = load_breast_cancer(return_X_y=True)
    labels = np.full(len(y), -1)
    labels[:30] = y[:30]  # 30 labels I already have
    pool = Pool.from_arrays(X, labels=labels)

    def most_uncertain(budget, ctx):  # my own strategy
        return ctx.unlabeled[np.argsort(-ctx.scores("predictive_entropy"))[:budget]]

    loop = CurationLoop(
        "runs/mine",
        LoopConfig(budget=10, rounds=3, seed=0),
        data=pool,
        model=SklearnEnsemble(LogisticRegression(max_iter=500), n_members=3),
        strategy=most_uncertain,
        oracle=y,
    )  # oracle only to simulate
    loop.run()

    res = loop.results()
    assert res["labels"].tolist() == [30, 40, 50, 60]
    # the 30 given labels are the training set of round 0, and stay in it
    assert loop.labeled_ids[:30] == list(range(30))
    assert loop.labeled_y[:30] == y[:30].tolist()
    assert loop.history[0]["round"] == 0 and len(loop.history) == 3
    # each batch is what the strategy asked for: the 10 most uncertain unlabeled items
    for rec in loop.history:
        assert len(rec["batch"]) == 10 and not set(rec["batch"]) & set(range(30))
    assert len(set(loop.labeled_ids)) == 60
    # no test split: evaluation is cross-validated on the labeled set, and says so
    assert res["evaluation"].str.contains("cross-validation").all()
    assert res["accuracy"].between(0.7, 1.0).all()
    assert "shifted" in res["notes"].iloc[0]
    assert "shifted_accuracy" not in res.columns
    # the given labels are in the store with their provenance
    ev = loop.store.events()
    assert (ev[ev["annotator"] == "given"]["item_id"].astype(int).sort_values().tolist()) == list(range(30))


def test_labels_already_in_the_store_are_used_from_round_0(tmp_path):
    from gapscope.helpers.models import SklearnEnsemble
    from gapscope.helpers.store import LabelStore

    ds = U.breast_cancer(random_state=0, n_labeled=0)
    store = LabelStore(run_dir=tmp_path / "store")
    store.set_schema([0, 1])
    ids = ds.pool.ids[:25]
    store.add_items([int(i) for i in ds.pool.ids], dataset="bc", source="real")
    store.add_annotator("alice")
    truth = ds.oracle.true_labels(ids)
    for i, lab in zip(ids, truth, strict=True):
        store.record(int(i), "label", annotator="alice", label=int(lab))
    loop = CurationLoop(
        tmp_path / "run",
        LoopConfig(budget=5, rounds=1, seed=0),
        data=ds,
        model=SklearnEnsemble(LogisticRegression(max_iter=500), n_members=2),
        strategy="entropy",
        store=store,
    )
    assert sorted(loop.labeled_ids) == sorted(int(i) for i in ids)
    loop.run()
    assert loop.results()["labels"].tolist() == [25, 30]
    assert loop.results()["evaluation"].iloc[0].startswith("test split")


@pytest.mark.slow
def test_a_torch_module_factory_drives_the_loop(tmp_path):
    from gapscope.helpers.models import TorchEnsemble

    ds = U.breast_cancer(random_state=0)
    cfg = LoopConfig(budget=10, rounds=2, seed=0)
    model = TorchEnsemble(U.make_net, n_members=2, epochs=20, min_steps=50)
    loop = CurationLoop(tmp_path / "a", cfg, data=ds, model=model, strategy=U.most_uncertain).run()
    res = loop.results()
    assert res["labels"].tolist() == [30, 40, 50]
    assert res["accuracy"].iloc[-1] > 0.85  # a linearly separable-ish problem: ~0.95
    # the model's own 16-d embedding reached the strategy context
    emb = np.load(loop.run_dir / "round_001" / "embed.npz")["embedding"]
    assert emb.shape == (len(ds.pool), 16)
    again = CurationLoop(tmp_path / "b", cfg, data=ds, model=model, strategy=U.most_uncertain).run()
    assert _metrics(again) == _metrics(loop)  # seeded: the same run twice


def test_a_frozen_encoder_with_a_light_head(tmp_path):
    from gapscope.helpers.models import FrozenEncoder

    ds = U.breast_cancer(random_state=1)
    W = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)
    calls = []

    def encoder(X):
        calls.append(len(X))
        return np.tanh(np.asarray(X) @ W)

    loop = CurationLoop(
        tmp_path / "run",
        LoopConfig(budget=10, rounds=2, seed=0, strategy="kcenter"),
        data=ds,
        model=FrozenEncoder(encoder, head="logistic", n_members=3),
    ).run()
    res = loop.results()
    assert res["labels"].tolist() == [30, 40, 50] and res["accuracy"].iloc[-1] > 0.8
    emb = np.load(loop.run_dir / "round_001" / "embed.npz")["embedding"]
    assert emb.shape == (len(ds.pool), 8)
    assert calls, "the user's encoder was used"


# ------------------------------------------------------------------ specs and resume
SPEC_CFG = {
    "data": "user_components:breast_cancer",
    "data_options": {"n_labeled": 20},
    "model": {
        "name": "sklearn",
        "options": {
            "estimator": {"name": "sklearn.linear_model:LogisticRegression", "options": {"max_iter": 300}},
            "n_members": 3,
            "bootstrap": True,
        },
    },
    "strategy": "user_components:most_uncertain",
    "budget": 6,
    "rounds": 3,
    "seed": 0,
}

_KILL_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[3])
from gapscope.helpers.loop import CurationLoop, LoopConfig
CurationLoop(sys.argv[1], LoopConfig(**json.loads(sys.argv[2]))).run()
"""

_SLOW_SCRIPT = """
import json, sys, time
sys.path.insert(0, sys.argv[3])
import user_components as U
from gapscope.helpers.loop import CurationLoop, LoopConfig

def slow(budget, ctx):          # the same strategy, slow enough to be killed mid-round
    time.sleep(0.3)
    return U.most_uncertain(budget, ctx)

U.most_uncertain_slow = slow
cfg = dict(json.loads(sys.argv[2]), strategy="user_components:most_uncertain_slow")
CurationLoop(sys.argv[1], LoopConfig(**cfg)).run()
"""


def test_specs_rebuild_the_components_in_a_new_process_after_sigkill(tmp_path):
    full = CurationLoop(tmp_path / "full", LoopConfig(**SPEC_CFG)).run()
    assert full.results()["labels"].tolist() == [20, 26, 32, 38]
    run_dir = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(HERE))
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, str(run_dir), json.dumps(SPEC_CFG), str(HERE)], env=env
    )
    state = run_dir / "state.json"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it inside round 1, mid-round
        try:
            st = json.loads(state.read_text())
            if st["round"] >= 1 and st["step"] >= 2:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not json.loads(state.read_text())["done"], "the run finished before it could be killed"
    resumed = CurationLoop(run_dir).run()  # a new process: config, specs and all from the folder
    assert _metrics(resumed) == _metrics(full)
    assert resumed.labeled_ids == full.labeled_ids and resumed.history == full.history


def test_an_object_component_must_be_given_again_to_resume(tmp_path):
    ds = U.breast_cancer(random_state=0)
    cfg = LoopConfig(budget=5, rounds=1, model=SPEC_CFG["model"])
    CurationLoop(tmp_path / "r", cfg, data=ds, strategy=U.most_uncertain).run(max_steps=3)
    with pytest.raises(ValueError, match="data: this run was made with a data object"):
        CurationLoop(tmp_path / "r")
    with pytest.raises(ValueError, match="strategy: this run was made with a strategy object"):
        CurationLoop(tmp_path / "r", data=ds)
    loop = CurationLoop(tmp_path / "r", data=ds, strategy=U.most_uncertain).run()
    assert loop.done and loop.results()["labels"].tolist() == [30, 35]


def test_register_names_and_an_unknown_spec_lists_them(tmp_path):
    assert "farthest_first" in C.registered("strategy")  # registered by user_components
    assert {"entropy", "kcenter", "cluster_bandit"} <= set(C.registered("strategy"))
    assert {"ensemble", "sklearn", "torch", "frozen_encoder"} <= set(C.registered("model"))
    assert {"digits", "mixture"} <= set(C.registered("dataset"))
    ds = U.breast_cancer(random_state=0)
    loop = CurationLoop(
        tmp_path / "a",
        LoopConfig(budget=5, rounds=1, strategy="farthest_first", model=SPEC_CFG["model"]),
        data=ds,
    ).run()
    assert loop.history[-1]["info"]["strategy"] == "farthest_first"
    with pytest.raises(ValueError, match=r"strategy: expected a registered strategy name \[.*'entropy'"):
        CurationLoop(tmp_path / "b", LoopConfig(strategy="entropyy"))
    with pytest.raises(ValueError, match="model: cannot import module 'no_such_pkg.mod'"):
        CurationLoop(tmp_path / "c", LoopConfig(model="no_such_pkg.mod:Model"))
    with pytest.raises(ValueError, match="data: expected a spec"):
        CurationLoop(tmp_path / "d", LoopConfig(data={"nme": "digits"}))
    for d in ("b", "c", "d"):
        assert not (tmp_path / d).exists()


# ------------------------------------------------------------------ bad input
_BAD_FIELDS = [
    ("data", 3), ("data_options", "n=3"), ("model", 1.5), ("model_options", []),
    ("strategy", None), ("strategy_options", "x"), ("budget", 0), ("budget", 2.0), ("budget", True),
    ("rounds", -1), ("rounds", "3"), ("n_initial", -1), ("n_initial", 1.5), ("n_members", 0),
    ("labeler", "robot"), ("noise_rate", 1.0), ("noise_rate", "0.1"),
    ("annotator_reliabilities", "0.9"), ("annotator_reliabilities", [1.2]), ("annotator_reliabilities", []),
    ("q_min", 2), ("balance", 1), ("n_clusters", 0), ("density_dims", "8"),
    ("synthesis", "dream"), ("synthesis_options", None), ("stop_diversity_delta", "0.1"),
    ("stop_gain_delta", "0.01"), ("stop_patience", 0), ("cv_folds", 1), ("seed", "0"), ("seed", -1),
]


def test_every_config_field_is_checked():
    checked = {f for f, _ in _BAD_FIELDS}
    assert checked == {f.name for f in dataclasses.fields(LoopConfig)}, "a field without a bad-input case"


@pytest.mark.parametrize("field,value", _BAD_FIELDS)
def test_a_bad_field_is_named_at_construction_and_nothing_is_written(tmp_path, field, value):
    with pytest.raises((ValueError, TypeError), match=rf"^{field}(\[|:)"):
        CurationLoop(tmp_path / "r", LoopConfig(**{field: value}))
    assert not (tmp_path / "r").exists()


def test_unknown_config_keys_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['budgett'\]"):
        CurationLoop(tmp_path / "r", {"budgett": 3})


def test_budget_or_n_initial_larger_than_the_pool(tmp_path):
    ds = U.breast_cancer(random_state=0, n_labeled=0)
    n = len(ds.pool)
    with pytest.raises(ValueError, match=f"budget: expected at most the {n} unlabeled"):
        CurationLoop(tmp_path / "a", LoopConfig(budget=n + 1), data=ds)
    with pytest.raises(ValueError, match=f"n_initial: expected at most the {n} unlabeled"):
        CurationLoop(tmp_path / "b", LoopConfig(n_initial=n + 1), data=ds)
    with pytest.raises(ValueError, match="n_initial"):
        CurationLoop(tmp_path / "c", LoopConfig(n_initial=0), data=ds)
    with pytest.raises(ValueError, match="oracle: labeler='oracle'"):
        CurationLoop(tmp_path / "d", LoopConfig(), data=U.breast_cancer(random_state=0).pool)
    for d in "abcd":
        assert not (tmp_path / d).exists()


def _bad_strategy(kind):
    def strat(budget, ctx):
        if kind == "labeled":
            return np.r_[ctx.labeled[:1], ctx.unlabeled[: budget - 1]]
        if kind == "duplicate":
            return np.r_[ctx.unlabeled[:1], ctx.unlabeled[: budget - 1]]
        if kind == "out_of_range":
            return np.r_[ctx.unlabeled[: budget - 1], [ctx.n_pool]]
        if kind == "float":
            return ctx.unlabeled[:budget].astype(float)
        if kind == "short":
            return ctx.unlabeled[: budget - 1]
        raise AssertionError(kind)

    strat.__name__ = f"bad_{kind}"
    return strat


@pytest.mark.parametrize(
    "kind,match",
    [
        ("labeled", "already labeled"),
        ("duplicate", "expected unique positions"),
        ("out_of_range", "out-of-range"),
        ("float", "expected integer pool positions"),
        ("short", r"expected 5 positions \(the budget\)"),
    ],
)
def test_a_strategy_returning_bad_indices_is_named(tmp_path, kind, match):
    ds = U.breast_cancer(random_state=0)
    loop = CurationLoop(
        tmp_path / "r", LoopConfig(budget=5, rounds=1, model=SPEC_CFG["model"]), data=ds,
        strategy=_bad_strategy(kind),
    )
    with pytest.raises((ValueError, TypeError), match=rf"strategy bad_{kind}: .*{match}"):
        loop.run()
    assert loop.next_step == "select" and loop.batch == []  # nothing was taken
    assert len(loop.labeled_ids) == 30


def test_a_score_the_model_cannot_provide(tmp_path):
    from gapscope.helpers.models import SklearnEnsemble

    ds = U.breast_cancer(random_state=0)
    single = SklearnEnsemble(LogisticRegression(max_iter=300), n_members=1)
    loop = CurationLoop(tmp_path / "a", LoopConfig(budget=5, rounds=1, strategy="bald"), data=ds, model=single)
    with pytest.raises(ValueError, match=r"score: 'mutual_information' needs a model of >= 2 members"):
        loop.run()
    # scores that need one member work with M = 1
    ok = CurationLoop(tmp_path / "b", LoopConfig(budget=5, rounds=1, strategy="entropy"), data=ds, model=single)
    assert ok.run().results()["labels"].tolist() == [30, 35]


def test_the_ensemble_early_stops_on_the_labeled_set_and_the_val_split_is_never_trained_on(tmp_path):
    loop = CurationLoop(
        tmp_path / "r",
        LoopConfig(data="mixture", data_options={"n_pool": 300, "n_val": 80, "n_test": 200},
                   budget=30, rounds=1, n_initial=60, model_options={"epochs": 5, "hidden": [16]}),
    ).run()
    m = loop.model()
    # 20% of the 90 labels held out for early stopping, and counted in `labels`
    assert m.n_validation_ == 18
    assert loop.results()["labels"].tolist() == [60, 90]


def test_dataset_from_pool_checks_its_parts():
    pool = Pool.from_arrays(np.zeros((4, 2)), labels=[0, -1, 1, -1])
    ds = Dataset.from_pool(pool)
    assert ds.n_classes == 2 and ds.test is None and ds.oracle is None
    with pytest.raises(ValueError, match="test: expected a non-empty Pool with every item labeled"):
        Dataset.from_pool(pool, test=Pool.from_arrays(np.zeros((2, 2)), labels=[0, -1], ids=[9, 10]))
    with pytest.raises(ValueError, match="test: expected ids disjoint from the pool"):
        Dataset.from_pool(pool, test=Pool.from_arrays(np.zeros((2, 2)), labels=[0, 1]))
    with pytest.raises(ValueError, match="oracle: expected 4 true labels"):
        Dataset.from_pool(pool, oracle=[0, 1])
    with pytest.raises(ValueError, match="n_classes"):
        Dataset.from_pool(Pool.from_arrays(np.zeros((2, 2))))


def test_the_readme_block_is_the_tested_example(tmp_path, monkeypatch):
    """The README's ten-line path, executed exactly as it is written there."""
    import re

    text = (HERE.parent / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "load_breast_cancer" in b]
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), ns)
    res = ns["loop"].results()
    assert res["labels"].tolist() == [30, 40, 50, 60] and ns["loop"].done
