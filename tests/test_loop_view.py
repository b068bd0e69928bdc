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
    assert "still open" in view.bar.status and not view.busy
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


def test_synthetic_items_on_the_cards_are_validated_by_a_person(tmp_path):
    cfg = {**CFG, "rounds": 1, "synthesis": "active",
           "synthesis_options": {"n": 4, "generator": {"epochs": 5}}}
    loop = CurationLoop(tmp_path / "run", LoopConfig(**cfg))
    view = LoopView(loop, annotator="alice", show_map=False)
    truth = loop.dataset.oracle.true_labels
    _label_by_keys(view, lambda i: truth([i])[0])
    view.retrain(background=False)
    assert view.error is None, view.error
    lab = view.labeler
    real, synth = loop.batch, loop.synthetic_batch
    assert len(synth) == 4 and lab.item_ids == [str(i) for i in real + synth]
    assert "+ 4 synthetic" in lab.title
    cards = lab.items[len(real):]
    assert all(c["synthetic"] for c in cards) and not any(c["synthetic"] for c in lab.items[: len(real)])
    _X, intended = loop.synthetic_items(synth)
    assert [c["model_label"] for c in cards] == [loop.dataset.class_names[int(y)] for y in intended]
    assert all(lab.previews[str(i)]["src"].startswith("data:image/svg+xml") for i in synth)
    _label_by_keys(view, lambda i: truth([i])[0], upto=len(real))
    view.retrain()  # the synthetic items are open yet
    assert "still open" in view.bar.status
    for j, key in zip(range(len(real), len(real) + 4), ("a", "x", "a", " "), strict=True):
        lab.cursor = j
        lab.press(key)  # accept, reject, accept, skip
    assert lab.done == lab.total and loop.pending() == []
    view.retrain(background=False)
    assert view.error is None, view.error
    # the accepted synthetic items (and only those) are in the next round's training set
    assert loop.synthetic_ids == [synth[0], synth[2]]
    _X, _y, train_ids = loop.training_set()
    assert set(synth) & set(train_ids.tolist()) == {synth[0], synth[2]}
    assert loop.results()["synthetic"].tolist()[-1] == 2


def test_use_as_batch_puts_a_chosen_batch_on_the_cards_and_survives_a_restart(tmp_path):
    loop = CurationLoop(tmp_path / "run", LoopConfig(**{**CFG, "rounds": 1}))
    view = LoopView(loop, annotator="alice", show_map=False)
    truth = loop.dataset.oracle.true_labels
    _label_by_keys(view, lambda i: truth([i])[0])
    view.retrain(background=False)
    proposed = list(loop.batch)
    free = [str(i) for i in loop.dataset.pool.ids if int(i) not in set(loop.labeled_ids) | set(proposed)]
    chosen = free[:5]  # as a map selection gives them: str ids
    with pytest.raises(ValueError, match="ids: .*already labeled"):
        view.use_as_batch([str(loop.labeled_ids[0])], source="lasso")
    assert list(view.labeler.item_ids) == [str(i) for i in proposed]  # nothing changed
    view.use_as_batch(chosen, source="lasso")
    assert view.labeler.item_ids == chosen and view.labeler.title == "round 0 · lasso · 5 items"
    assert all(it["model_label"] is not None for it in view.labeler.items)
    assert loop.state["batch_info"]["source"] == "lasso"
    _label_by_keys(view, lambda i: truth([i])[0], upto=2)
    loop.store.close()
    again = LoopView(CurationLoop(tmp_path / "run"), annotator="alice", show_map=False)
    assert again.labeler.item_ids == chosen and again.labeler.done == 2
    assert again.labeler.title == "round 0 · lasso · 5 items"
