"""LatentMap on the Python side: colours, legend, marks, selection messages, previews.

What the page draws and how a drag becomes a message is tested in Chromium by
test_map_canvas.py; here the messages are the ones map.js sends.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest

from gapscope.widgets import LatentMap, map_density
from gapscope.widgets._common import points_in_polygon
from gapscope.widgets.latent_map import FLAG_BATCH, FLAG_LABELED, FLAG_SYNTHETIC, continuous_rgba


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def lmap(rng):
    xy = rng.uniform(0, 10, size=(300, 2))
    return LatentMap(
        xy,
        [f"p{k}" for k in range(300)],
        uncertainty=rng.uniform(size=300),
        cluster=rng.integers(0, 4, 300),
        content=rng.uniform(size=(300, 8, 8)),
        kind="image",
    )


def select_msg(m, mask, kind="box", shape=(), t=None):
    """The message map.js sends on mouse-up: a little-endian bitmask of the points inside."""
    bits = np.packbits(np.asarray(mask, dtype=bool), bitorder="little").tobytes()
    content = {"type": "select", "kind": kind, "shape": [list(p) for p in shape], "bits": base64.b64encode(bits).decode()}
    if t is not None:
        content["t"] = t
    m._msg_callbacks(m, content, [])


def test_selection_messages_in_a_row_reach_python_exactly(lmap):
    got = []
    lmap.on_select(got.append)
    xy = lmap.xy
    for x0, x1 in [(0.5, 2.5), (3.0, 5.0), (6.0, 8.0)]:
        box = [(x0, 1), (x1, 1), (x1, 9), (x0, 9)]
        select_msg(lmap, points_in_polygon(xy, np.asarray(box)), shape=box)
        ref = [f"p{k}" for k in np.flatnonzero((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= 1) & (xy[:, 1] <= 9))]
        assert got[-1] == ref and len(ref) > 10
    assert len(got) == 3 and lmap.n_selections == 3 and lmap.last_selection_shape["kind"] == "box"
    select_msg(lmap, np.zeros(300, bool), kind="clear")  # double-click / Escape
    assert got[-1] == [] and lmap.selected_ids == []
    # hover traffic between selections changes nothing about them
    lmap._msg_callbacks(lmap, {"type": "hover", "index": 7}, [])
    assert lmap.hovered == "p7" and lmap.selected_ids == []


def test_select_latency_is_measured_from_the_page_clock(lmap):
    import time

    select_msg(lmap, np.ones(300, bool), t=time.time() * 1000.0 - 40.0)
    assert 39.0 <= lmap.last_select_ms < 5000


def test_programmatic_selection_is_sent_to_the_page(lmap):
    rev = lmap.selection_rev
    assert lmap.select(["p2", "p1", "p2"]) == ["p1", "p2"]
    bits = np.unpackbits(np.frombuffer(lmap.selection, np.uint8), bitorder="little")[:300]
    assert list(np.flatnonzero(bits)) == [1, 2] and lmap.selection_rev == rev + 1
    tri = np.array([[1, 1], [9, 1], [5, 9]])
    from matplotlib.path import Path

    ref = np.flatnonzero(Path(tri).contains_points(lmap.xy))
    assert lmap.select_polygon(tri) == [f"p{k}" for k in ref]


def test_colours_legend_and_marks_from_the_store(rng, tmp_path):
    from gapscope.helpers.store import LabelStore

    ids = [f"p{k}" for k in range(40)]
    xy = rng.normal(size=(40, 2))
    with LabelStore(run_dir=tmp_path) as s:
        s.set_schema(labels=[0, 1])
        s.add_items(ids[:35], dataset="d")
        s.add_items(ids[35:], dataset="d", source="synthetic")
        s.record("p3", "label", annotator="a", label=1)
        m = LatentMap(xy, ids, store=s, color_by="label")
        flags = np.frombuffer(m.flags, np.uint8)
        assert list(np.flatnonzero(flags & FLAG_LABELED)) == [3]
        assert list(np.flatnonzero(flags & FLAG_SYNTHETIC)) == [35, 36, 37, 38, 39]
        col = m.point_colors()
        assert tuple(col[0, :3]) == (0xCF, 0xCF, 0xCF) and tuple(col[3]) != tuple(col[0])
        assert m.legend["kind"] == "categorical"
        assert [r[0] for r in m.legend["items"]] == ["1", "unlabeled"] and m.legend["items"][1][2] == 39
        m.color_by = "source"
        assert tuple(m.point_colors()[36]) != tuple(m.point_colors()[0])
        s.record("p4", "label", annotator="a", label=0)
        m.refresh()
        assert (np.frombuffer(m.flags, np.uint8) & FLAG_LABELED).sum() == 2
        m.mark_batch(["p5", "p6"])
        assert list(np.flatnonzero(np.frombuffer(m.flags, np.uint8) & FLAG_BATCH)) == [5, 6]
        m.color_by = "density"
        np.testing.assert_allclose(m.color_values(), map_density(xy)[3])
        assert m.legend["kind"] == "continuous"
        with pytest.raises(ValueError, match="uncertainty"):
            m.color_by = "uncertainty"
        with pytest.raises(Exception, match="color_by"):
            m.color_by = "banana"
        assert m.color_by == "density" and "uncertainty" not in m.color_options


def test_continuous_colours_match_the_scale_stops():
    stops = ["#000000", "#ff0000", "#ffffff"]
    got = continuous_rgba(np.array([0.0, 0.25, 0.5, 1.0, 2.0, np.nan]), stops, 0.0, 1.0)
    np.testing.assert_array_equal(got[:5, :3], [[0, 0, 0], [128, 0, 0], [255, 0, 0], [255, 255, 255], [255, 255, 255]])
    assert tuple(got[5, :3]) == (0xCF, 0xCF, 0xCF) and (got[:, 3] == 255).all()


def test_update_in_place_keeps_the_widget_and_the_selection(lmap, rng):
    lmap.select(["p0", "p5"])
    model_id = lmap.model_id
    new = rng.normal(size=(300, 2))
    lmap.update(new, uncertainty=np.linspace(0, 1, 300), title="round 2")
    assert lmap.model_id == model_id and lmap.title == "round 2"
    np.testing.assert_array_equal(np.frombuffer(lmap.xy_bytes, np.float32).reshape(-1, 2), new.astype(np.float32))
    assert lmap.selected_ids == ["p0", "p5"]
    with pytest.raises(ValueError, match="xy: expected 300 rows"):
        lmap.update(new[:10])
    with pytest.raises(ValueError, match="banana"):
        lmap.update(banana=1)
    np.testing.assert_array_equal(lmap.xy, new)  # a refused update changed nothing


def test_hover_preview_is_the_image(lmap):
    from PIL import Image

    lmap._msg_callbacks(lmap, {"type": "hover", "index": 7}, [])
    info = lmap.hover_info
    assert info["id"] == "p7" and info["src"] == lmap.preview_uri("p7")
    assert any(line.startswith("uncertainty") for line in info["lines"])
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(info["src"].split(",")[1]))))
    np.testing.assert_allclose(shown[::8, ::8] / 255.0, lmap.content[7], atol=0.5 / 255 + 1e-12)
    lmap._msg_callbacks(lmap, {"type": "hover", "index": 10**6}, [])  # out of range: ignored
    assert lmap.hovered == "p7"


def test_previews_for_signals_and_text(rng):
    sig = rng.normal(size=(6, 40))
    m = LatentMap(rng.normal(size=(6, 2)), list("abcdef"), content=sig, kind="signal", contours=False)
    m.show_item("c")
    assert m.hover_info["src"].startswith("data:image/svg+xml;base64,")
    svg = base64.b64decode(m.hover_info["src"].split(",")[1]).decode()
    assert svg.count(",") == 40  # one polyline vertex per sample
    t = LatentMap(rng.normal(size=(3, 2)), ["x", "y", "z"], content=["a cat", "a dog", "?"], kind="text", contours=False)
    t.show_item("y")
    assert t.hover_info["text"] == "a dog" and t.preview_uri("y") is None


def test_bad_input(rng):
    with pytest.raises(ValueError, match="ids"):
        LatentMap(rng.normal(size=(5, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="xy"):
        LatentMap(rng.normal(size=(5, 3)), list("abcde"))
    with pytest.raises(ValueError, match="uncertainty"):
        LatentMap(rng.normal(size=(5, 2)), list("abcde"), uncertainty=[1, 2])
    with pytest.raises(ValueError, match="height"):
        LatentMap(rng.normal(size=(5, 2)), list("abcde"), height=10)
    m = LatentMap(rng.normal(size=(5, 2)), list("abcde"), contours=False)
    with pytest.raises(ValueError, match="not on the map"):
        m.select(["zz"])
    with pytest.raises(ValueError, match="not on the map"):
        m.mark_batch(["zz"])
    with pytest.raises(ValueError, match="finite"):
        m.show_proposal([[np.nan, 0]])
    assert m.select(["b", "d"]) == ["b", "d"]


def test_state_is_binary_not_json_lists(rng):
    """10^6 points must not travel as JSON numbers: the big traits are buffers."""
    from ipywidgets.widgets.widget import _remove_buffers

    m = LatentMap(rng.normal(size=(2000, 2)), range(2000))
    state, paths, buffers = _remove_buffers(m.get_state())
    names = {p[0] for p in paths}
    assert {"xy_bytes", "colors", "flags"} <= names
    assert sum(len(b) for b in buffers) >= 2000 * (8 + 4 + 1)
