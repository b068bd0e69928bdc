"""LoopView's map: drawn after the first retrain, updated in place after the next, and a
selection on it becomes the batch (saved in the loop's folder)."""

from __future__ import annotations

import base64

import numpy as np
import pytest

pytest.importorskip("ipywidgets")

from gapscope.helpers.loop import CurationLoop, LoopConfig  # noqa: E402
from gapscope.widgets.latent_map import FLAG_BATCH  # noqa: E402
from gapscope.widgets.loop_view import LoopView  # noqa: E402

CFG = {
    "data": "mixture",
    "data_options": {"n_pool": 300, "n_val": 80, "n_test": 200, "separation": 1.5},
    "budget": 8,
    "rounds": 3,
    "n_initial": 12,
    "n_members": 3,
    "labeler": "human",
    "model_options": {"epochs": 8, "hidden": [32], "patience": None},
}


def _resolve_all(view):
    """The true label's key on every card, as a person would press it."""
    lab, truth = view.labeler, view.loop.dataset.oracle.true_labels
    for j, item in enumerate(list(lab.item_ids)):
        lab.cursor = j
        k = lab.label_keys[int(truth([int(item)])[0])]
        lab._on_frontend_msg(lab, {"type": "key", "key": k, "uid": f"m{lab.round}:{j + 1}"}, [])


def _browser_select(m, idx):
    mask = np.zeros(m.n, dtype=bool)
    mask[idx] = True
    bits = base64.b64encode(np.packbits(mask, bitorder="little").tobytes()).decode()
    m._msg_callbacks(m, {"type": "select", "kind": "lasso", "shape": [], "bits": bits}, [])


def test_map_updates_in_place_and_a_selection_becomes_the_batch(tmp_path):
    loop = CurationLoop(tmp_path / "run", LoopConfig(**CFG))
    view = LoopView(loop, annotator="bob")
    assert view.map.color_by == "label" and "features" in view.map.title  # no model yet
    _resolve_all(view)
    view.retrain(background=False)
    assert view.error is None, view.error
    m = view.map
    assert m is not None and view.map_round == 0 and m.color_by == "uncertainty"
    flags = np.frombuffer(m.flags, np.uint8)
    batch_pos = set(np.flatnonzero(flags & FLAG_BATCH))
    assert batch_pos == set(loop.dataset.pool.index_of(loop.batch))
    xy0 = m.xy.copy()

    # a lasso on the map -> the button -> the batch on the cards, saved in the folder
    open_pos = [k for k in range(m.n) if int(m.ids[k]) not in set(loop.labeled_ids) | set(loop.batch)][:15]
    _browser_select(m, open_pos)
    assert view.bar.n_selected == 15
    view.bar._on_frontend_msg(view.bar, {"type": "use_selection"}, [])
    chosen = [int(m.ids[k]) for k in open_pos]
    assert sorted(loop.batch) == sorted(chosen) and sorted(int(i) for i in view.labeler.item_ids) == sorted(chosen)
    assert loop.state["batch_info"]["source"] == "lasso"
    assert set(np.flatnonzero(np.frombuffer(m.flags, np.uint8) & FLAG_BATCH)) == set(open_pos)
    again = CurationLoop(tmp_path / "run", LoopConfig(**CFG))
    assert sorted(again.batch) == sorted(chosen)

    # a selection of labeled items only is refused with a message; the batch stays
    labeled_pos = list(loop.dataset.pool.index_of(loop.labeled_ids[:3]))
    _browser_select(m, labeled_pos)
    view.bar._on_frontend_msg(view.bar, {"type": "use_selection"}, [])
    assert "none of the 3" in view.bar.status and view.bar.status_kind == "error"
    assert sorted(loop.batch) == sorted(chosen)
    # a lasso over labeled and open items takes the open ones and says so
    _browser_select(m, labeled_pos + open_pos[:4])
    view.bar._on_frontend_msg(view.bar, {"type": "use_selection"}, [])
    assert sorted(loop.batch) == sorted(chosen[:4]) and "3 already labeled" in view.bar.status

    # the next retrain moves the points in the same widget (no new map)
    _resolve_all(view)
    view.retrain(background=False)
    assert view.map is m and view.map_round == 1
    assert not np.allclose(m.xy, xy0)
    np.testing.assert_array_equal(np.frombuffer(m.xy_bytes, np.float32).reshape(-1, 2), m.xy.astype(np.float32))
