"""The curation loop: steps, resume after a kill, labelers, stopping criteria, integration."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from gapscope.helpers.loop import STEPS, CurationLoop, LoopConfig, WaitingForLabels

SMALL = {
    "data": "mixture",
    "data_options": {"n_pool": 300, "n_val": 80, "n_test": 200, "separation": 1.5},
    "budget": 8,
    "rounds": 2,
    "n_initial": 12,
    "n_members": 2,
    "n_clusters": 4,
    "model_options": {"epochs": 8, "hidden": [32], "patience": None},
}


def small(**kw) -> LoopConfig:
    return LoopConfig(**{**SMALL, **kw})


def _metrics(loop: CurationLoop) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "wall_time"} for m in loop.state["metrics"]]


def test_steps_run_in_order_and_labels_grow(tmp_path):
    loop = CurationLoop(tmp_path / "run", small(strategy="entropy"))
    assert loop.next_step == "select" and loop.round == -1  # the bootstrap batch
    loop.run()
    assert loop.done and loop.stop_reason == "budget spent"
    res = loop.results()
    assert res["labels"].tolist() == [12, 20, 28]
    assert res["round"].tolist() == [0, 1, 2]
    # every step of every full round ran, in the documented order
    log = [(s["round"], s["step"]) for s in loop.step_log]
    assert [s for r, s in log if r == 0] == list(STEPS)
    assert [s for r, s in log if r == 2] == ["train", "evaluate"]
    # labels came from the store, one event per labeled item
    ev = loop.store.events()
    assert len(ev) == 28 and set(ev["kind"]) == {"label"}
    assert sorted(ev["item_id"].astype(int)) == sorted(loop.labeled_ids)
    true = loop.dataset.oracle.true_labels(loop.labeled_ids)
    np.testing.assert_array_equal(true, loop.labeled_y)  # a noise-free oracle


def test_resume_in_process_equals_uninterrupted(tmp_path):
    full = CurationLoop(tmp_path / "a", small(strategy="cluster_bandit")).run()
    part = CurationLoop(tmp_path / "b", small(strategy="cluster_bandit"))
    part.run(max_steps=9)  # stops in round 0, after 'select' of... somewhere mid-round
    assert not part.done
    del part
    resumed = CurationLoop(tmp_path / "b")  # a new "kernel": config from the run folder
    resumed.run()
    assert _metrics(resumed) == _metrics(full)
    assert resumed.labeled_ids == full.labeled_ids
    assert resumed.bandit_history == full.bandit_history and resumed.bandit_history
    assert resumed.state["strategy_state"] == full.state["strategy_state"]


_KILL_SCRIPT = """
import sys
from gapscope.helpers.loop import CurationLoop, LoopConfig
cfg = LoopConfig(**__import__("json").loads(sys.argv[2]))
CurationLoop(sys.argv[1], cfg).run()
"""


@pytest.mark.slow
def test_resume_after_sigkill_equals_uninterrupted(tmp_path):
    cfg = {**SMALL, "strategy": "uncertainty_diversity"}
    full = CurationLoop(tmp_path / "a", LoopConfig(**cfg)).run()
    run_dir = tmp_path / "b"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(run_dir), json.dumps(cfg)])
    state = run_dir / "state.json"
    deadline = time.time() + 120
    # kill it once it is inside round 1 (after at least one full round)
    while time.time() < deadline:
        try:
            if json.loads(state.read_text())["round"] >= 1:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(state.read_text())
    assert not killed_at["done"], "the writer finished before it could be killed"
    resumed = CurationLoop(run_dir).run()
    assert _metrics(resumed) == _metrics(full)
    assert resumed.labeled_ids == full.labeled_ids


def test_new_run_needs_config_and_a_resumed_one_must_match(tmp_path):
    with pytest.raises(ValueError, match="config"):
        CurationLoop(tmp_path / "x")
    CurationLoop(tmp_path / "y", small())
    with pytest.raises(ValueError, match="different config"):
        CurationLoop(tmp_path / "y", small(budget=9))


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("data", "imagenet", "data"),
        ("strategy", "magic", "strategy"),
        ("budget", 0, "budget"),
        ("labeler", "robot", "labeler"),
        ("noise_rate", 1.5, "noise_rate"),
        ("synthesis", "dream", "synthesis"),
    ],
)
def test_bad_config(tmp_path, field, value, match):
    with pytest.raises(ValueError, match=match):
        CurationLoop(tmp_path / "r", small(**{field: value}))
    assert not (tmp_path / "r" / "state.json").exists()


def test_human_labeler_waits_for_the_store(tmp_path):
    loop = CurationLoop(tmp_path / "run", small(labeler="human", rounds=1))
    loop.step()  # bootstrap select
    batch = list(loop.batch)
    assert len(batch) == 12
    with pytest.raises(WaitingForLabels) as exc:
        loop.step()
    assert sorted(exc.value.pending) == sorted(batch)
    assert loop.next_step == "label"  # nothing moved on
    # a person labels half of the batch in the widget...
    loop.store.add_annotator("alice")
    truth = loop.dataset.oracle.true_labels(batch)
    for item, lab in list(zip(batch, truth, strict=True))[:6]:
        loop.store.record(int(item), "label", annotator="alice", label=int(lab))
    with pytest.raises(WaitingForLabels) as exc:
        loop.step()
    assert len(exc.value.pending) == 6
    for item, lab in list(zip(batch, truth, strict=True))[6:]:
        loop.store.record(int(item), "label", annotator="alice", label=int(lab))
    loop.step()  # label
    loop.step()  # integrate
    assert loop.labeled_ids == batch
    np.testing.assert_array_equal(loop.labeled_y, truth)


def test_noisy_annotators_and_consensus(tmp_path):
    loop = CurationLoop(tmp_path / "run", small(annotator_reliabilities=[1.0, 0.9, 0.2], rounds=0, n_initial=60))
    loop.run()
    ev = loop.store.events()
    assert len(ev) == 3 * 60 and ev["annotator"].nunique() == 3
    true = loop.dataset.oracle.true_labels(loop.labeled_ids)
    got = np.asarray(loop.labeled_y)
    # weighted majority of (perfect, 90%, 20%) annotators: right wherever two agree with truth
    assert (got == true).mean() >= 0.9
    per_annot = ev.groupby("annotator").apply(
        lambda g: (g.sort_values("item_id")["label"].astype(int).to_numpy()
                   == loop.dataset.oracle.true_labels(g.sort_values("item_id")["item_id"].astype(int)))
        .mean(), include_groups=False)
    assert per_annot["annotator-0"] == 1.0 and per_annot["annotator-2"] < 0.5


def test_stopping_criteria(tmp_path):
    # diminishing returns: any gain below 1.0 counts, so it stops after `stop_patience` rounds
    loop = CurationLoop(tmp_path / "a", small(rounds=6, stop_gain_delta=1.0, stop_patience=1)).run()
    assert loop.stop_reason.startswith("diminishing returns")
    assert len(loop.results()) == 2
    loop = CurationLoop(tmp_path / "b", small(rounds=6, stop_diversity_delta=10.0, stop_patience=2)).run()
    assert loop.stop_reason.startswith("diversity converged")
    assert len(loop.results()) == 3


def test_balanced_training_runs_and_changes_the_model(tmp_path):
    a = CurationLoop(tmp_path / "a", small(rounds=0, n_initial=40)).run()
    b = CurationLoop(tmp_path / "b", small(rounds=0, n_initial=40, balance=True)).run()
    assert a.labeled_ids == b.labeled_ids
    pa = a.model().predict_proba(a.dataset.test.X)
    pb = b.model().predict_proba(b.dataset.test.X)
    assert not np.allclose(pa, pb)


@pytest.mark.parametrize("strategy", ["active_synthesis", "low_density_synthesis"])
def test_synthetic_items_join_only_once_validated(tmp_path, strategy):
    loop = CurationLoop(tmp_path / "run", small(strategy=strategy, rounds=1, synthesis_options={"n": 10}))
    loop.run()
    items = loop.store.items()
    synth = items[items["source"] == "synthetic"]
    assert len(synth) == 10, "every generated item enters the store as source=synthetic"
    prov = synth["provenance"].iloc[0]
    prov = json.loads(prov) if isinstance(prov, str) else prov
    assert {"generator", "method", "z", "condition"} <= set(prov)
    ev = loop.store.events(item_ids=synth["item_id"].tolist())
    assert set(ev["kind"]) <= {"accept", "reject"} and len(ev) == 10
    accepted = set(int(i) for i in loop.store.accepted(loop.config.q_min))
    joined = set(loop.synthetic_ids)
    assert joined == accepted & set(synth["item_id"].astype(int))
    X, y, ids = loop.training_set()
    assert len(X) == len(loop.labeled_ids) + len(joined)
    assert loop.results()["synthetic"].iloc[-1] == len(joined)


def _resolve(loop, ids, kind="label", annotator="alice"):
    """What the Labeler writes for ``ids`` in the round being labeled."""
    truth = loop.dataset.oracle.true_labels(ids)
    for item, lab in zip(ids, truth, strict=True):
        kw = {"label": int(lab)} if kind == "label" else {}
        loop.store.record(int(item), kind, annotator=annotator, round=loop.round + 1, **kw)


def test_a_skip_resolves_an_item_for_its_round_only_and_set_batch(tmp_path):
    loop = CurationLoop(tmp_path / "run", small(labeler="human", rounds=1))
    loop.store.add_annotator("alice")
    loop.step()  # bootstrap select
    boot = list(loop.batch)
    _resolve(loop, boot[:9])
    _resolve(loop, boot[9:11], "skip")
    _resolve(loop, boot[11:], "reject")
    assert loop.pending() == []  # skips of this round resolve their items now
    loop.run_round()  # label, integrate
    assert loop.history[-1]["skipped"] == boot[9:11] and loop.history[-1]["dropped"] == boot[11:]
    while loop.next_step != "label":
        loop.step()
    proposed = list(loop.batch)
    # the strategy proposed its batch; a person picks another one with a lasso
    before = (tmp_path / "run" / "state.json").read_text()
    for bad, match in (
        ([boot[0]], "already labeled"),
        ([boot[11]], "excluded"),
        ([10**9], "not in the pool"),
        ([boot[9], boot[9]], "duplicates"),
        ([], "empty"),
        (["7"], "integer"),
    ):
        with pytest.raises(ValueError, match=f"ids: .*{match}"):
            loop.set_batch(bad, source="lasso")
    with pytest.raises(ValueError, match="source"):
        loop.set_batch(boot[9:11], source="")
    assert (tmp_path / "run" / "state.json").read_text() == before  # nothing changed
    free = [int(i) for i in loop.dataset.pool.ids if int(i) not in set(boot) | set(proposed)]
    chosen = boot[9:11] + free[:3]
    loop.set_batch(np.asarray(chosen), source="lasso")
    # skips of round 0 do not resolve the two items now that they are back in round 1
    assert loop.pending() == chosen
    # a kernel restart: a fresh loop on the folder has the chosen batch
    again = CurationLoop(tmp_path / "run")
    assert again.batch == chosen and again.pending() == chosen
    info = again.state["batch_info"]
    assert info["source"] == "lasso" and info["replaced"]["batch"] == proposed
    _resolve(again, chosen[:1], "skip")
    _resolve(again, chosen[1:])
    assert again.pending() == []
    again.step()  # label
    again.step()  # integrate
    rec = again.history[-1]
    assert rec["skipped"] == chosen[:1] and rec["labeled"] == chosen[1:]
    assert rec["info"]["strategy"] == "lasso"
    assert set(chosen[1:]) <= set(again.labeled_ids) and not set(proposed) & set(again.labeled_ids)
    with pytest.raises(ValueError, match="waits for labels"):
        again.set_batch(free[3:5], source="lasso")  # the next step is train, not label
