"""Python-side widget tests (anywidget style): set traits or send the exact messages the
browser sends, then check the label store, the callbacks and the synced state.

What these cannot see (rendering, plotly.js geometry, key focus, message timing) is
covered by tests/test_browser_lab.py and tests/test_browser_marimo.py.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gapscope.widgets import (
    KEYMAP,
    Labeler,
    LabelerError,
    LatentMap,
    LoopDashboard,
    SamplerPanel,
    item_preview,
    map_density,
    nearest_exemplars,
    selection_mask,
)
from gapscope.widgets._common import parse_svg_path, png_bytes, points_in_polygon


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture
def store(tmp_path):
    from gapscope.helpers.store import LabelStore

    s = LabelStore(run_dir=tmp_path)
    s.set_schema(labels=[0, 1, 2], tags=["blurry", "ambiguous"])
    s.add_items([f"it{k}" for k in range(12)], dataset="toy")
    yield s
    if not s.closed:
        s.close()


@pytest.fixture
def images(rng):
    return {f"it{k}": rng.uniform(size=(8, 8)) for k in range(12)}


def make_labeler(store, images, n=6, **kw):
    ids = [f"it{k}" for k in range(n)]
    kw.setdefault("model_labels", [k % 3 for k in range(n)])
    kw.setdefault("confidence", np.linspace(0.4, 0.9, n))
    kw.setdefault("exemplars", [["it9", "it10", "it11"]] * n)
    return Labeler(store, ids, content=images, kind="image", annotator="ann", **kw)


def key(lab, k, ms=120):
    """Exactly what labeler.js sends for a key press."""
    lab._on_frontend_msg(lab, {"type": "key", "key": k, "index": lab.cursor, "ms": ms}, [])


def click(lab, action, index, **extra):
    """Exactly what labeler.js sends for a click on a card button."""
    lab._on_frontend_msg(
        lab, {"type": "action", "action": action, "index": index, "ms": 300, **extra}, []
    )


def rows(store):
    ev = store.events()
    return list(zip(ev["item_id"], ev["kind"], ev["label"], strict=True))


# ----------------------------------------------------------------------------- _common
def test_map_density_matches_exact_kde(rng):
    # reference: exact Gaussian KDE in float64 with the same standardisation and bandwidth
    xy = np.concatenate(
        [rng.normal(size=(200, 2)) * [3.0, 0.5], rng.normal(size=(100, 2)) + [8.0, 2.0]]
    )
    gx, gy, z, at = map_density(xy, bandwidth=0.3, grid_size=256)
    mu, sd = xy.mean(0), xy.std(0)
    u = (xy - mu) / sd
    d2 = ((u[:, None, :] - u[None, :, :]) ** 2).sum(-1)
    exact = np.exp(-d2 / (2 * 0.3**2)).sum(1) / (len(u) * 2 * np.pi * 0.3**2) / (sd[0] * sd[1])
    # FFTKDE bins onto the grid (linear binning) and we interpolate back: 3% relative
    np.testing.assert_allclose(at, exact, rtol=0.03)
    # the grid density integrates to 1 in map units (1e-3)
    area = (gx[1] - gx[0]) * (gy[1] - gy[0])
    assert abs(z.sum() * area - 1.0) < 1e-3
    assert z.shape == (256, 256)


@pytest.mark.parametrize("bad", [np.zeros((1, 2)), np.zeros((5, 3)), np.full((4, 2), np.nan)])
def test_map_density_rejects_bad_maps(bad):
    with pytest.raises(ValueError, match="xy"):
        map_density(bad)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-5, 5), st.floats(-5, 5)), min_size=3, max_size=8),
    st.integers(0, 10_000),
)
def test_points_in_polygon_matches_matplotlib(verts, seed):
    from matplotlib.path import Path

    poly = np.asarray(verts, dtype=np.float64)
    pts = np.random.default_rng(seed).uniform(-6, 6, size=(200, 2))
    ref = Path(poly).contains_points(pts)
    got = points_in_polygon(pts, poly)
    # points within 1e-9 of an edge may go either way; everything else must agree
    assert (got == ref).mean() >= 0.99


def test_parse_plotly_lasso_path():
    p = parse_svg_path("M1.5,2L3e-1,-4.25L5,6Z")
    np.testing.assert_array_equal(p, [[1.5, 2.0], [0.3, -4.25], [5.0, 6.0]])
    with pytest.raises(ValueError, match="path"):
        parse_svg_path("M1,2L3,4Z")


def test_selection_mask_union_of_rect_and_lasso(rng):
    xy = rng.uniform(0, 10, size=(500, 2))
    sels = [
        {"type": "rect", "x0": 6, "x1": 2, "y0": 1, "y1": 3, "xref": "x", "yref": "y"},
        {"type": "path", "path": "M7,7L9,7L9,9L7,9Z", "xref": "x", "yref": "y"},
    ]
    ref = ((xy[:, 0] >= 2) & (xy[:, 0] <= 6) & (xy[:, 1] >= 1) & (xy[:, 1] <= 3)) | (
        (xy[:, 0] > 7) & (xy[:, 0] < 9) & (xy[:, 1] > 7) & (xy[:, 1] < 9)
    )
    np.testing.assert_array_equal(selection_mask(xy, sels), ref)
    assert not selection_mask(xy, []).any()


def test_png_thumbnail_decodes_to_the_image(rng):
    from PIL import Image

    img = rng.uniform(size=(8, 8))
    dec = np.asarray(Image.open(io.BytesIO(png_bytes(img))), dtype=np.float64)
    np.testing.assert_allclose(dec / 255.0, img, atol=0.5 / 255 + 1e-12)
    assert item_preview(img, "image")["src"].startswith("data:image/png;base64,")
    assert item_preview(np.sin(np.arange(40)), "signal")["src"].startswith("data:image/svg+xml")
    assert item_preview("a cat", "text") == {"text": "a cat"}
    with pytest.raises(ValueError, match="kind"):
        item_preview(img, "audio")


def test_nearest_exemplars_match_brute_force(rng):
    Zr, Zq = rng.normal(size=(30, 4)), rng.normal(size=(5, 4))
    ids = [f"r{k}" for k in range(30)]
    got = nearest_exemplars(Zq, Zr, ids, k=3)
    d = ((Zq[:, None] - Zr[None]) ** 2).sum(-1)
    assert got == [[ids[j] for j in np.argsort(row)[:3]] for row in d]
    assert nearest_exemplars(Zq, Zr[:2], ids[:2], k=3)[0].__len__() == 2
    with pytest.raises(ValueError, match="Z_ref"):
        nearest_exemplars(Zq, Zr, ids[:3])


# ----------------------------------------------------------------------------- Labeler
def test_labeler_keyboard_writes_every_action_with_cues(store, images):
    lab = make_labeler(store, images)
    assert (lab.done, lab.total, lab.cursor) == (0, 6, 0)
    assert lab.label_names == ["0", "1", "2"] and lab.tag_names == ["blurry", "ambiguous"]
    key(lab, "a")  # it0 accept model label 0
    key(lab, "x")  # it1 reject
    key(lab, "0")  # it2: model says 2, annotator says 0 -> correct (key 0 is label "0")
    key(lab, "f")  # it3 bias flag (cursor stays)
    key(lab, " ")  # it3 skip -> cursor moves on
    assert rows(store) == [
        ("it0", "accept", 0),
        ("it1", "reject", None),
        ("it2", "correct", 0),
        ("it3", "flag_bias", None),
        ("it3", "skip", None),
    ]
    assert (lab.done, lab.cursor) == (4, 4)  # a skip finishes the item for this round
    assert [s["action"] for s in lab.states[:4]] == ["accept", "reject", "correct", "skip"]
    assert lab.states[3]["bias"] is True and lab.states[3]["done"] is True
    cues = store.events()["cues"].iloc[2]
    assert cues["widget"] == "gapscope.widgets.Labeler" and cues["widget_version"] == "0.1.0"
    assert cues["confidence_shown"] == pytest.approx(0.6)
    assert cues["model_label_shown"] == "2" and cues["exemplars_shown"] == ["it9", "it10", "it11"]
    assert cues["ms_on_item"] == 120 and cues["input"] == "key"
    # arrows move the cursor without writing
    key(lab, "ArrowLeft")
    key(lab, "ArrowLeft")
    assert lab.cursor == 2 and len(store.events()) == 5
    key(lab, "ArrowRight")
    assert lab.cursor == 3
    assert set(KEYMAP) >= {"a", "x", " ", "Backspace", "f", "ArrowLeft", "ArrowRight"}


def test_digit_keys_pick_the_label_named_by_the_digit_or_the_nth_option():
    from gapscope.widgets.labeler import label_keys

    assert label_keys([str(d) for d in range(10)]) == [str(d) for d in range(10)]
    assert label_keys(["3", "1", "7"]) == ["3", "1", "7"]
    assert label_keys(["cat", "dog"]) == ["1", "2"]
    names = [f"c{k}" for k in range(11)]
    assert label_keys(names) == [str(k) for k in range(1, 10)] + ["", ""]


def test_digit_keys_on_ten_digit_labels_reach_every_label(tmp_path, images):
    from gapscope.helpers.store import LabelStore

    with LabelStore(run_dir=tmp_path / "ten") as s:
        s.set_schema(list(range(10)))
        ids = [f"d{k}" for k in range(10)]
        s.add_items(ids, dataset="t")
        lab = Labeler(s, ids, content={i: images["it0"] for i in ids}, kind="image", annotator="ann")
        assert lab.label_keys == [str(d) for d in range(10)]
        for d in (4, 9, 0):  # the reported defect: key 4 gave label 3, 9 unreachable, 0 an error
            key(lab, str(d))
        assert [int(v) for v in s.events()["label"]] == [4, 9, 0]


def test_ms_on_item_is_the_browser_time_between_actions(store, images):
    lab = make_labeler(store, images)
    send = lambda c: lab._on_frontend_msg(lab, c, [])  # noqa: E731
    send({"type": "shown", "first": "it0", "t": 1_000.0, "uid": "v:1"})
    send({"type": "key", "key": "a", "t": 1_250.0, "uid": "v:2"})    # 250 ms on it0
    send({"type": "key", "key": "f", "t": 1_300.0, "uid": "v:3"})    # it1 current since 1250
    send({"type": "key", "key": "x", "t": 1_700.0, "uid": "v:4"})    # 400 ms since the flag
    # a burst: messages applied late by the kernel still measure browser time
    send({"type": "key", "key": "a", "t": 1_710.0, "uid": "v:5"})
    ms = [c["ms_on_item"] for c in store.events()["cues"]]
    assert ms == [250.0, 50.0, 400.0, 10.0]


def test_labeler_undo_cancels_the_last_action(store, images):
    lab = make_labeler(store, images)
    key(lab, "a")
    key(lab, "1")  # it1: model 1, picked "1" -> accept
    key(lab, "Backspace")
    ev = store.events()
    assert list(ev["kind"]) == ["accept", "accept", "undo"]
    assert int(ev["ref_event"].iloc[2]) == int(ev["event_id"].iloc[1])
    assert lab.states[1]["done"] is False and lab.cursor == 1 and lab.done == 1
    assert store.current_labels()["item_id"].tolist() == ["it0"]
    key(lab, "Backspace")
    assert lab.done == 0
    key(lab, "Backspace")  # nothing left: message, no write
    assert "nothing to undo" in lab.message and lab.message_kind == "error"
    assert len(store.events()) == 4


def test_labeler_clicks_tags_flags_and_batch_accept(store, images):
    lab = make_labeler(store, images)
    click(lab, "reject", 4)
    click(lab, "tag", 4, tag="blurry")
    click(lab, "tag", 4, tag="ambiguous")
    click(lab, "tag", 4, tag="blurry")  # toggles off
    click(lab, "relabel", 5, label="1")
    click(lab, "flag_out_of_scope", 0)
    assert lab.states[4]["tags"] == ["ambiguous"] and lab.states[4]["action"] == "reject"
    assert lab.states[5]["action"] == "label" or lab.states[5]["action"] == "correct"
    assert lab.states[0]["oos"] is True and lab.states[0]["done"] is True
    assert store.events()["cues"].iloc[0]["input"] == "click"
    before = len(store.events())
    click(lab, "accept_all", 0)  # it1, it2, it3 are open: the first click only asks
    assert len(store.events()) == before and lab.accept_all_confirm["n"] == 3
    click(lab, "accept_all", 0)
    ev = store.events().iloc[before:]
    assert list(ev["item_id"]) == ["it1", "it2", "it3"] and set(ev["kind"]) == {"accept"}
    assert list(ev["label"]) == [1, 2, 0]
    assert all(c["batch_action"] for c in ev["cues"])
    assert lab.done == lab.total == 6
    click(lab, "goto", 2)
    assert lab.cursor == 2


def test_accept_all_asks_first_and_one_undo_reverts_all_of_it(store, images, tmp_path):
    from gapscope.helpers.store import LabelStore

    lab = make_labeler(store, images)
    key(lab, "x")  # it0 rejected; it1..it5 open
    click(lab, "accept_all", 1)
    assert len(store.events()) == 1 and lab.done == 1
    assert lab.accept_all_confirm["text"] == "Confirm accept 5?" and "click again" in lab.message
    key(lab, "ArrowRight")  # any other action cancels the question
    assert lab.accept_all_confirm == {}
    click(lab, "accept_all", 1)
    lab.confirm_seconds = 0.0  # the question has timed out: the next click asks again
    lab._armed = (0.0, lab._armed[1])
    click(lab, "accept_all", 1)
    assert len(store.events()) == 1 and lab.accept_all_confirm["n"] == 5
    lab.confirm_seconds = 4.0
    click(lab, "accept_all", 1)
    click(lab, "accept_all", 1)  # confirmed
    ev = store.events()
    assert list(ev["kind"]) == ["reject"] + ["accept"] * 5 and lab.done == 6
    assert lab.accept_all_confirm == {}
    key(lab, "Backspace")  # one undo: the whole accept-all, not its last item
    assert lab.done == 1 and [s["done"] for s in lab.states] == [True] + [False] * 5
    assert store.current_labels().empty
    assert "5 items" in lab.message and lab.cursor == 1
    key(lab, "Backspace")  # then the reject
    assert lab.done == 0
    # after a restart, undo still takes an accept-all as one action
    lab.accept_all()  # from Python: at once
    store.close()
    store2 = LabelStore(run_dir=tmp_path)
    lab2 = make_labeler(store2, images)
    assert lab2.done == 6
    key(lab2, "Backspace")
    assert lab2.done == 0
    store2.close()


def test_skip_finishes_an_item_for_its_round_only(store, images):
    lab = make_labeler(store, images, round=1)
    key(lab, " ")
    assert lab.done == 1 and lab.states[0]["action"] == "skip" and lab.cursor == 1
    key(lab, "Backspace")  # a skip can be undone like any decision
    assert lab.done == 0 and lab.states[0]["action"] is None
    key(lab, " ")
    # the same item shown again in a later round is open again
    lab2 = make_labeler(store, images, round=2)
    assert lab2.done == 0 and lab2.states[0]["done"] is False and lab2.cursor == 0
    click(lab2, "tag", 0, tag="blurry")  # a skip in this round stays a skip after a tag
    key(lab2, " ")
    click(lab2, "tag", 0, tag="ambiguous")
    assert lab2.states[0]["done"] is True and lab2.done == 1


def test_synthetic_items_are_marked_and_validated_by_accept_or_reject(tmp_path, rng):
    from gapscope.helpers.store import LabelStore

    with LabelStore(run_dir=tmp_path) as s:
        s.set_schema(labels=[0, 1, 2])
        s.add_items([1, 2], dataset="toy")
        s.add_items([10, 11, 12], dataset="toy", source="synthetic")
        vec = {str(k): rng.normal(size=4) for k in (1, 2, 10, 11, 12)}
        lab = Labeler(
            s, [1, 10, 11, 12], content=vec, kind="vector", model_labels=[0, 2, 1, 1], annotator="v"
        )
        assert [it["synthetic"] for it in lab.items] == [False, True, True, True]
        key(lab, "a")  # the real item
        key(lab, "a")  # synthetic 10: accepted as the label it was generated as
        with pytest.raises(LabelerError, match="synthetic item keeps the label"):
            lab.relabel("0")  # synthetic 11 is generated as 1
        key(lab, "1")  # the same label: an accept
        key(lab, "x")  # synthetic 12: rejected
        assert rows(s) == [(1, "accept", 0), (10, "accept", 2), (11, "accept", 1), (12, "reject", None)]
        assert s.accepted(0.5) == [1, 10, 11]
        # a 4-d vector is drawn as bars with its values as the tooltip, not as a sparkline
        svg = base64.b64decode(lab.previews["10"]["src"].split(",")[1]).decode()
        assert svg.count("<rect") == 4 and "polyline" not in svg
        assert lab.previews["10"]["title"] == " ".join(f"{v:.3g}" for v in vec["10"])
        long = Labeler(s, [1], content={"1": rng.normal(size=40)}, kind="vector", annotator="v")
        assert "polyline" in base64.b64decode(long.previews["1"]["src"].split(",")[1]).decode()


def test_labeler_reopened_after_restart_shows_progress_and_continues(store, images, tmp_path):
    from gapscope.helpers.store import LabelStore

    lab = make_labeler(store, images)
    key(lab, "a")
    key(lab, "x")
    key(lab, "0")  # it2: model 2, annotator 0 -> correct
    store.close()
    # a "kernel restart": new store object on the same file, new widget on the same batch
    store2 = LabelStore(run_dir=tmp_path)
    lab2 = make_labeler(store2, images)
    assert lab2.done == 3 and lab2.cursor == 3
    assert [s["action"] for s in lab2.states[:3]] == ["accept", "reject", "correct"]
    assert lab2.states[2]["label"] == "0" and lab2.states[0]["label"] == "0"
    key(lab2, "Backspace")  # undo reaches the event of the old session
    assert lab2.states[2]["done"] is False and lab2.cursor == 2
    key(lab2, "a")
    assert lab2.done == 3
    store2.close()


def test_labeler_bad_input_is_visible_and_writes_nothing(store, images):
    lab = make_labeler(store, images)
    # unknown label key: labels 0, 1, 2, key 7
    with pytest.raises(LabelerError, match="no label for key 7"):
        lab.press("7")
    assert lab.message_kind == "error" and "no label for key 7" in lab.message
    key(lab, "7")  # from the browser: shown, not raised
    key(lab, "q")
    assert "not a Labeler key" in lab.message and len(store.events()) == 0
    with pytest.raises(ValueError, match="expected one of"):
        lab.relabel("zebra")
    with pytest.raises(ValueError, match="tag"):
        lab.toggle_tag("nope")
    # a batch with items the store does not hold: old batch stays, message, error
    old = lab.item_ids
    with pytest.raises(ValueError, match="not in the label store"):
        lab.set_batch(["it0", "ghost1", "ghost2"])
    assert lab.item_ids == old and "ghost1" in lab.message
    with pytest.raises(ValueError, match="not in the label store"):
        Labeler(store, ["ghost"], annotator="ann")
    with pytest.raises(ValueError, match="model_labels"):
        lab.set_batch(["it0"], model_labels=[7])
    with pytest.raises(ValueError, match="confidence"):
        lab.set_batch(["it0"], confidence=[1.5])
    assert len(store.events()) == 0
    # batch accept with an item lacking a model label: refused as a whole
    lab.set_batch(["it0", "it1"], model_labels=None)
    with pytest.raises(ValueError, match="no model label"):
        lab.accept_all()
    assert len(store.events()) == 0
    # closed store: message + error, nothing half-written
    lab.set_batch(["it0", "it1"], model_labels=[0, 1])
    store.close()
    with pytest.raises(ValueError, match="closed"):
        lab.accept_all()
    assert "closed" in lab.message and lab.message_kind == "error"
    key(lab, "a")
    assert "closed" in lab.message
    assert lab.done == 0 and not any(s["done"] for s in lab.states)


def test_labeler_int_ids_and_string_labels(tmp_path, rng):
    from gapscope.helpers.store import LabelStore

    with LabelStore(run_dir=tmp_path) as s:
        s.set_schema(labels=["cat", "dog"])
        s.add_items([10, 11, 12], dataset="pets")
        sig = {str(k): np.sin(np.arange(40) / (k - 8)) for k in (10, 11, 12)}
        lab = Labeler(
            s,
            [10, 11, 12],
            content=sig,
            kind="signal",
            model_labels=[1, "cat", "dog"],
            label_names=["Cat", "Dog"],
            annotator="a",
        )
        assert [it["model_label"] for it in lab.items] == ["Dog", "Cat", "Dog"]
        key(lab, "a")
        key(lab, "1")
        ev = s.events()
        assert list(ev["item_id"]) == [10, 11] and list(ev["label"]) == ["dog", "cat"]
        assert lab.previews["10"]["src"].startswith("data:image/svg+xml")


def test_labeler_state_serializes(store, images):
    from ipywidgets.widgets.widget import _remove_buffers

    lab = make_labeler(store, images, n=6)
    state, _paths, _buffers = _remove_buffers(lab.get_state())
    text = json.dumps(state)
    assert "data:image/png;base64" in text and len(state["items"]) == 6
    assert "export default" in state["_esm"] and ".gl-card" in state["_css"]


def test_labeler_on_action_callback(store, images):
    lab = make_labeler(store, images)
    got = []
    lab.on_action(got.append)
    key(lab, "a")
    lab.accept_all()
    assert [g["action"] for g in got] == ["accept", "accept_all"]
    assert got[0]["item_ids"] == ["it0"] and len(got[1]["item_ids"]) == 5


# ----------------------------------------------------------------------------- SamplerPanel
def _loo_log_density_reference(Z, dims, h):
    """Leave-one-out Gaussian KDE of the pool in standardised PCA coordinates, by numpy."""
    from scipy.special import logsumexp

    Zc = Z - Z.mean(0)
    _u, _s, vt = np.linalg.svd(Zc, full_matrices=False)
    R = Zc @ vt[:dims].T
    scale = R.std(0)
    Rs = R / scale
    d2 = ((Rs[:, None, :] - Rs[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    n = len(Z)
    return (
        logsumexp(-d2 / (2 * h * h), axis=1)
        - np.log(n - 1)
        - 0.5 * dims * np.log(2 * np.pi * h * h)
        - np.log(scale).sum()
    )


def _gumbel_reference(log_p, eps, temperature, n, seed):
    lw = -np.logaddexp(log_p, np.log(eps)) / temperature
    keys = lw + np.random.default_rng(seed).gumbel(size=len(lw))
    return list(np.argsort(-keys, kind="stable")[:n])


def test_sampler_proposal_follows_controls(rng, monkeypatch):
    Z = np.concatenate([rng.normal(size=(150, 3)), rng.normal(size=(10, 3)) + 5])
    ids = [f"z{k}" for k in range(160)]
    m = LatentMap(Z[:, :2], ids, contours=False)
    sp = SamplerPanel(Z, ids, latent_map=m, count=8, temperature=1.0, random_state=3)
    assert sp.density_dims == 3  # min(density_dims=8, d)
    # the density is an exact leave-one-out KDE in standardised PCA units (numpy reference)
    ref_lp = _loo_log_density_reference(Z, 3, sp.bandwidth)
    np.testing.assert_allclose(sp.pool_log_density, ref_lp, rtol=0, atol=1e-8)
    # eps is the eps_percentile-th percentile of the pool density
    assert sp.eps_percentile == 5.0
    np.testing.assert_allclose(np.log(sp.eps), np.percentile(ref_lp, 5.0), atol=1e-8)
    # the proposal is weighted sampling without replacement, w = (1/(p + eps))^(1/T)
    ref = _gumbel_reference(ref_lp, sp.eps, 1.0, 8, 3)
    assert sp.proposal["ids"] == [ids[k] for k in ref]
    np.testing.assert_allclose(m.proposal_xy(), Z[ref, :2])
    np.testing.assert_allclose(sp.proposal["log_density"], ref_lp[ref], atol=1e-8)
    pct = 100 * (ref_lp[None, :] <= ref_lp[ref][:, None]).mean(1)
    np.testing.assert_allclose(sp.proposal["density_percentile"], pct)
    assert sp.proposal_percentile == pytest.approx(np.median(pct))
    # a browser change set (debounced in JS) arrives as one update: one recompute
    import gapscope.helpers.density as hd

    calls = []
    real = hd._gumbel_top_n
    monkeypatch.setattr(hd, "_gumbel_top_n", lambda *a: calls.append(1) or real(*a))
    sp.set_state({"count": 12, "temperature": 0.1})  # = one comm update from the browser
    assert calls == [1]  # one recompute for two changes
    assert sp.n_proposed == 12 and m.proposal_xy().shape == (12, 2)
    assert sp.proposal["ids"] == [ids[k] for k in _gumbel_reference(ref_lp, sp.eps, 0.1, 12, 3)]
    # at low temperature the far cluster (the sparse region, 10 of 160 points) dominates the
    # proposal; a uniform draw holds 0.75 of them on average
    assert sum(int(i[1:]) >= 150 for i in sp.proposal["ids"]) >= 6


def _jaccard(a, b):
    return len(set(a) & set(b)) / len(set(a) | set(b))


@pytest.mark.parametrize("density_dims", [2, 8])
def test_sampler_controls_move_the_proposal_on_digits(density_dims):
    """On a real pool (1259 digits, 64 pixels) every control moves the proposal across its
    range, and what the panel shows are percentiles of the pool's density."""
    from gapscope.helpers.data import load_dataset

    pool = load_dataset("digits", random_state=0).pool
    X = pool.flat_X()
    sp = SamplerPanel(X, pool.ids, count=24, density_dims=density_dims, random_state=0)
    assert sp.density_dims == density_dims
    # the pool's densities differ: > 1 nat between its 5th and 95th percentile (in the
    # 64-d pixel space a KDE spreads ~0.01 nat; measured here: 1.5 (2 dims), 3.2 (8 dims))
    lo, hi = np.percentile(sp.pool_log_density, [5, 95])
    assert hi - lo > 1.0
    # the default proposal is sparse: its median item is denser than at most 25% of the pool
    assert sp.proposal_percentile <= 25
    sweeps = {
        "bandwidth": np.geomspace(*sp.bandwidth_range, 9),
        "eps_percentile": np.linspace(0, 100, 9),
        "temperature": np.geomspace(*sp.temperature_range, 9),
        "count": np.linspace(1, sp.max_count, 9).round().astype(int),
    }
    defaults = {name: getattr(sp, name) for name in sweeps}
    for name, values in sweeps.items():
        sets, shown = [], []
        for v in values:
            setattr(sp, name, type(defaults[name])(v))
            assert sp.message_kind == "", sp.message
            sets.append(frozenset(sp.proposal["ids"]))
            pct = sp.proposal["density_percentile"]
            assert ((0 <= pct) & (pct <= 100)).all() and 0 <= sp.proposal_percentile <= 100
            assert "percentile of pool" in sp.message and "e+" not in sp.message
            shown.append(sp.proposal_percentile)
        setattr(sp, name, defaults[name])
        # measured: 7-9 distinct sets of 9, Jaccard between the extremes 0.0-0.3
        assert len(set(sets)) >= 5, (name, len(set(sets)))
        assert _jaccard(sets[0], sets[-1]) < 0.5, (name, _jaccard(sets[0], sets[-1]))
        if name in ("eps_percentile", "temperature"):
            # flattening the weights raises the proposal's density (measured: 2 -> 33+)
            assert shown[-1] - shown[0] >= 10, (name, shown)
    assert 0 < sp.eps_percentile <= 100 and 0 < sp.eps


def test_sampler_make_batch_button_and_synthetic(rng):
    Z = rng.normal(size=(100, 2))
    ids = [f"z{k}" for k in range(100)]
    m = LatentMap(Z, ids, contours=False)
    sp = SamplerPanel(Z, ids, latent_map=m, project=lambda z: z, count=5)
    got = []
    sp.on_batch(got.append)
    sp._on_frontend_msg(sp, {"type": "make_batch"}, [])  # the button's message
    assert len(got) == 1 and len(got[0]["ids"]) == 5 and sp.batches_made == 1
    sp.strategy = "synthetic"
    assert sp.proposal["ids"] is None and sp.proposal["Z"].shape == (5, 2)
    np.testing.assert_allclose(m.proposal_xy(), sp.proposal["Z"])
    assert sp.message.startswith("5 new latents proposed; proposal median density: ")
    assert (
        (0 <= sp.proposal["density_percentile"]) & (sp.proposal["density_percentile"] <= 100)
    ).all()
    sp.count = 500  # more than the pool: visible error
    assert sp.message_kind == "error" and "count" in sp.message
    sp.count = 5
    sp.eps_percentile = 120.0
    assert sp.message_kind == "error" and "eps_percentile" in sp.message
    with pytest.raises(ValueError, match="strategy"):
        SamplerPanel(Z, ids, strategy="magic")
    with pytest.raises(ValueError, match="project"):
        SamplerPanel(Z, ids, latent_map=m, strategy="synthetic")
    with pytest.raises(TypeError, match="eps_percentile"):
        SamplerPanel(Z, ids, eps=1e-3)
    with pytest.raises(ValueError, match="density_dims"):
        SamplerPanel(Z, ids, density_dims=0)
    with pytest.raises(ValueError, match="identical"):
        SamplerPanel(np.ones((10, 3)), range(10))


def test_sampler_synthetic_latents_live_in_z_and_are_sparse(rng):
    # 16-d latents, 3 dims of density: new latents come back in Z's 16 dims, inside the
    # span of the principal components, and sparser than most of the pool
    Z = rng.normal(size=(400, 16)) * np.r_[3.0, 2.0, 1.5, np.full(13, 0.1)]
    sp = SamplerPanel(
        Z,
        range(400),
        project=lambda z: z[:, :2],
        count=30,
        density_dims=3,
        strategy="synthetic",
        random_state=1,
    )
    Zp = sp.proposal["Z"]
    assert Zp.shape == (30, 16) and sp.proposal["xy"].shape == (30, 2)
    pca = sp._pca
    np.testing.assert_allclose(pca.inverse_transform(pca.transform(Zp)), Zp, atol=1e-9)
    assert sp.proposal_percentile <= 25
    ordinals = {
        1: "1st",
        2: "2nd",
        3: "3rd",
        4: "4th",
        11: "11th",
        12: "12th",
        13: "13th",
        21: "21st",
        22: "22nd",
        100: "100th",
        0: "0th",
    }
    from gapscope.widgets.sampler import ordinal

    assert {k: ordinal(k) for k in ordinals} == ordinals
# ----------------------------------------------------------------------------- LoopDashboard
def test_dashboard_updates_when_a_round_ends():
    import pandas as pd

    hist = [
        {
            "round": 0,
            "accuracy": 0.6,
            "ece": 0.12,
            "minority_recall": 0.2,
            "cluster_entropy": 1.1,
            "arm_pulls": [3, 1, 0],
            "arm_rewards": [0.1, 0.5, 0.0],
            "n_labeled": 40,
        }
    ]
    dash = LoopDashboard(hist)
    assert dash.series("accuracy") == [0.6] and dash.series("ece") == [0.12]
    dash.add_round(
        {
            "round": 1,
            "accuracy": 0.7,
            "ece": 0.08,
            "minority_recall": 0.4,
            "cluster_entropy": 1.3,
            "arm_pulls": {"0": 1, "1": 2, "2": 1},
            "arm_rewards": {"0": 0.2, "1": 0.3, "2": 0.4},
            "n_labeled": 80,
        }
    )
    assert dash.rounds == [0, 1] and dash.series("minority_recall") == [0.2, 0.4]
    pulls = dash.figure.data[dash._traces["arm_pulls"]]
    assert list(pulls.x) == ["0", "1", "2"] and list(pulls.y) == [4.0, 3.0, 1.0]
    assert list(dash.figure.data[dash._traces["arm_rewards"]].y) == [0.2, 0.3, 0.4]
    assert dash.figure.data[dash._traces["macro_f1"]].visible is False
    dash.update(pd.DataFrame(hist))
    assert dash.rounds == [0]
    with pytest.raises(TypeError, match="history"):
        dash.update({"round": 0})
    with pytest.raises(TypeError, match="accuracy"):
        dash.add_round({"round": 2, "accuracy": "high"})
    assert dash.rounds == [0]  # nothing half-applied


def test_dashboard_ticks_are_whole_rounds_and_empty_panels_say_why():
    dash = LoopDashboard()
    assert set(dash.empty_panels().values()) == {"no rounds yet"} and len(dash.empty_panels()) == 6
    dash.update([{"round": 0, "accuracy": 0.5, "labels": 12}, {"round": 1, "accuracy": 0.6, "labels": 20}])
    lay = dash.figure.layout
    for ax in (lay.xaxis, lay.xaxis2, lay.xaxis3, lay.xaxis6):  # the per-round panels
        assert (ax.tickmode, ax.tick0, ax.dtick, ax.tickformat) == ("linear", 0, 1, "d")
    assert lay.xaxis4.type == lay.xaxis5.type == "category"  # arms, not numbers
    empty = dash.empty_panels()
    assert empty == {
        "calibration": "not measured in this run",
        "diversity": "not measured in this run",
        "arm_pulls": "no bandit in this strategy",
        "arm_rewards": "no bandit in this strategy",
    }
    assert lay.xaxis4.showticklabels is False and lay.xaxis.showticklabels is True
    # many rounds: still whole numbers, at most 8 ticks
    dash.update([{"round": r, "accuracy": 0.5, "ece": 0.1, "d_score": 1.0} for r in range(30)],
                bandit_history=[{"round": 29, "pulls": [3, 4], "means": [0.2, 0.1]}])
    assert lay.xaxis.dtick == 4 and float(lay.xaxis.dtick).is_integer()
    assert dash.empty_panels() == {"labels": "not measured in this run"}
    assert lay.xaxis4.showticklabels is True


def test_labeler_applies_browser_messages_in_sequence_order(store, images):
    # custom messages can overtake each other; labeler.js numbers them per view
    lab = make_labeler(store, images)
    msgs = [
        {"type": "key", "key": k, "uid": f"view1:{n}"}
        for n, k in enumerate(["a", "x", "1"], start=1)
    ]
    for m in (msgs[0], msgs[2], msgs[1], msgs[1]):  # 3 before 2, then 2 twice
        lab._on_frontend_msg(lab, m, [])
    assert rows(store) == [("it0", "accept", 0), ("it1", "reject", None), ("it2", "correct", 1)]
    assert list(store.events()["key"]) == ["view1:1", "view1:2", "view1:3"]


def test_labeler_acknowledges_each_applied_message_even_a_refused_one(store, images):
    # the page shows a decision at once and repaints from the kernel's state once its
    # message is acknowledged: held (out-of-order) messages are not acknowledged early
    lab = make_labeler(store, images)
    lab._on_frontend_msg(lab, {"type": "key", "key": "x", "uid": "v:2"}, [])
    assert lab.acked == "" and len(store.events()) == 0  # 1 has not come yet
    lab._on_frontend_msg(lab, {"type": "key", "key": "a", "uid": "v:1"}, [])
    assert lab.acked == "v:2" and len(store.events()) == 2
    lab._on_frontend_msg(lab, {"type": "key", "key": "7", "uid": "v:3"}, [])  # no label for 7
    assert lab.acked == "v:3" and lab.message_kind == "error" and len(store.events()) == 2


def test_dashboard_reads_the_loop_shapes():
    # helpers.loop: results() rows with d_score / labels / synthetic, and a bandit history of
    # cumulative pulls and mean rewards (None for an arm never pulled)
    rows_ = [
        {
            "round": 0,
            "accuracy": 0.5,
            "ece": 0.2,
            "d_score": 1.0,
            "labels": 20,
            "synthetic": 0,
            "per_class_recall": [0.5, 0.5],
        },
        {
            "round": 1,
            "accuracy": 0.6,
            "ece": 0.1,
            "d_score": 1.2,
            "labels": 40,
            "synthetic": 5,
            "per_class_recall": [0.6, 0.6],
        },
    ]
    bandit = [
        {"round": 0, "pulls": [2, 0], "means": [0.3, None]},
        {"round": 1, "pulls": [3, 4], "means": [0.25, 0.5]},
    ]
    dash = LoopDashboard()
    dash.update(rows_, bandit_history=bandit)
    assert dash.series("d_score") == [1.0, 1.2] and dash.series("labels") == [20.0, 40.0]
    assert list(dash.figure.data[dash._traces["arm_pulls"]].y) == [3.0, 4.0]
    assert list(dash.figure.data[dash._traces["arm_rewards"]].y) == [0.25, 0.5]
    with pytest.raises(TypeError, match="bandit_history"):
        dash.update(rows_, bandit_history=[{"round": 0}])
    assert dash.series("d_score") == [1.0, 1.2]

    class FakeLoop:
        bandit_history = bandit[:1]

        def results(self):
            import pandas as pd

            return pd.DataFrame(rows_[:1])

    dash.update_from_loop(FakeLoop())
    assert dash.rounds == [0] and list(dash.figure.data[dash._traces["arm_pulls"]].y) == [2.0, 0.0]
    assert np.isnan(dash.figure.data[dash._traces["arm_rewards"]].y[1])
