"""LoopView: label a batch by keyboard, retrain in the background, the next batch and round appear."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ipywidgets")

from gapscope.helpers.loop import CurationLoop, LoopConfig  # noqa: E402
from gapscope.widgets.loop_view import LoopView, ensemble_agreement  # noqa: E402

CFG = {
    "data": "mixture",
    "data_options": {"n_pool": 300, "n_val": 80, "n_test": 200, "separation": 1.5},
    "budget": 8,
    "rounds": 2,
    "n_initial": 12,
    "n_members": 3,
    "n_clusters": 4,
    "labeler": "human",
    "model_options": {"epochs": 8, "hidden": [32], "patience": None},
}


def test_ensemble_agreement_against_counting_votes():
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(4), size=(5, 30))
    lab, agree = ensemble_agreement(P)
    np.testing.assert_array_equal(lab, P.mean(0).argmax(1))
    votes = P.argmax(2)
    np.testing.assert_allclose(agree, [(votes[:, j] == lab[j]).sum() / 5 for j in range(30)])
    lab1, p1 = ensemble_agreement(P[:1])
    np.testing.assert_allclose(p1, P[0, np.arange(30), lab1])
    with pytest.raises(ValueError, match="probs"):
        ensemble_agreement(P[0])


def _label_by_keys(view, truth_of, *, special=(), upto=None):
    """Press one key per item, as a person would: the key of the true label, or a special."""
    lab = view.labeler
    for j, item in enumerate(list(lab.item_ids)[:upto]):
        k = special[j] if j < len(special) else lab.label_keys[int(truth_of(int(item)))]
        lab.cursor = j
        lab._on_frontend_msg(lab, {"type": "key", "key": k, "uid": f"t{view.labeler.round}:{j + 1}"}, [])


def test_two_cycles_by_keyboard_then_a_restart_continues(tmp_path):
    loop = CurationLoop(tmp_path / "run", LoopConfig(**CFG))
    view = LoopView(loop, annotator="alice")
    truth = loop.dataset.oracle.true_labels
    first = list(view.labeler.item_ids)
    assert len(first) == 12 and view.labeler.items[0]["model_label"] is None  # bootstrap: no model
    # refusing to retrain while items are open
    view.retrain()
    assert "still open" in view.status.value and not view.busy
    _label_by_keys(view, lambda i: truth([i])[0], special=("x", "o", " "))  # reject, out of scope, skip
    view.retrain()
    assert view.wait(300) and view.error is None, view.error
    assert loop.round == 0 and loop.next_step == "label"
    assert len(loop.labeled_ids) == 9  # 12 - reject - out of scope - skip
    assert set(loop.state["excluded_ids"]) == {int(first[0]), int(first[1])}
    # the next batch is on the cards, with model labels, agreement and exemplars
    second = list(view.labeler.item_ids)
    assert len(second) == 8 and not set(second) & set(first[:2])
    assert view.labeler.confidence_name == "agreement"
    confs = [it["confidence"] for it in view.labeler.items]
    assert set(np.round(np.asarray(confs) * 3).astype(int)) <= {1, 2, 3}
    assert all(len(it["exemplars"]) == 3 for it in view.labeler.items)
    assert view.map is not None and len(view.dashboard.rounds) == 1
    map_before = np.asarray(view.map.xy).copy()
    # keys still answer while a retrain runs in the background
    _label_by_keys(view, lambda i: truth([i])[0])
    view.retrain()
    view.labeler.press("ArrowLeft")
    assert view.wait(300) and view.error is None, view.error
    assert loop.round == 1 and len(view.dashboard.rounds) == 2
    assert not np.allclose(np.asarray(view.map.xy), map_before)  # the map took the new embedding
    third = list(view.labeler.item_ids)
    # half the batch, then a "kernel restart": a new loop and view on the same folder
    _label_by_keys(view, lambda i: truth([i])[0], upto=4)
    n_events = len(loop.store.events())
    loop.store.close()
    again = LoopView(CurationLoop(tmp_path / "run"), annotator="alice")
    assert list(again.labeler.item_ids) == third and again.labeler.done == 4
    assert again.labeler.cursor == 4  # the first open item
    _label_by_keys(again, lambda i: truth([i])[0])
    again.retrain()
    assert again.wait(300) and again.error is None, again.error
    assert again.loop.done and again.loop.results()["labels"].tolist() == [9, 17, 25]
    ev = again.loop.store.events()
    assert len(ev) >= n_events + 4
    human = ev[ev["annotator"] == "alice"]
    assert human["key"].is_unique and human["key"].notna().all()
    assert human["cues"].map(lambda c: c["widget"]).eq("gapscope.widgets.Labeler").all()
