"""LatentMap's front end in Chromium (real map.js, real synced state, a stub model: no Jupyter).

What a person sees and does: the points drawn on the canvas (pixels counted, not only the
Python side), a legend per colouring, a box and a lasso drag whose selection reaches Python
equal to the points inside the drawn shape, the colour-by dropdown, an in-place update with
a new embedding, and a million points drawn and selected. Screenshots go to test-artifacts/.
The map inside JupyterLab and marimo is covered by test_browser_loop.py and
test_browser_marimo.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from _anywidget_stub import mount, push, replay
from _browser import ARTIFACTS, BROWSER_MARKS, CHROME_ARGS, CHROMIUM

from gapscope.widgets import LatentMap
from gapscope.widgets._common import points_in_polygon

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        pg = browser.new_page(viewport={"width": 1100, "height": 800})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.errors = errors
        yield pg
        browser.close()
        assert not errors, errors


def _two_blobs(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.r_[rng.normal(size=(n // 2, 2)), rng.normal(size=(n - n // 2, 2)) * 0.5 + 3]


def _painted(page, rgb, tol=2):
    """How many canvas pixels have colour ``rgb`` (the canvas read back in the page)."""
    return page.evaluate(
        """([r, g, b, tol]) => {
          const c = document.querySelector('canvas.gm-canvas');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let k = 0;
          for (let i = 0; i < d.length; i += 4)
            if (Math.abs(d[i] - r) <= tol && Math.abs(d[i + 1] - g) <= tol && Math.abs(d[i + 2] - b) <= tol) k++;
          return k;
        }""",
        [*rgb, tol],
    )


def _drag(page, pts):
    bb = page.locator("canvas.gm-overlay").bounding_box()
    page.mouse.move(bb["x"] + pts[0][0], bb["y"] + pts[0][1])
    page.mouse.down()
    for x, y in pts[1:]:
        page.mouse.move(bb["x"] + x, bb["y"] + y, steps=3)
    page.mouse.up()


def _check_selection(m):
    """The ids Python got are exactly the points inside the shape the page reported."""
    shape = np.asarray(m.last_selection_shape["shape"], dtype=np.float64)
    inside = set(np.flatnonzero(points_in_polygon(m.xy, shape)))
    got = {int(i) for i in m.selected_ids}
    # the page tests float32 coordinates: a point within float32 rounding of an edge may differ
    assert len(got ^ inside) <= max(1, len(inside) // 1000), (len(got), len(inside))
    return got


def test_draws_selects_recolours_and_updates_in_place(page):
    n = 10_000
    xy = _two_blobs(n)
    cluster = (xy[:, 0] > 1.5).astype(int)
    m = LatentMap(xy, range(n), cluster=cluster, color_by="cluster", title="two blobs")
    mount(page, m)
    page.wait_for_timeout(200)
    canvas = page.locator("canvas.gm-canvas")
    assert canvas.get_attribute("data-drawn") == str(n)
    # both cluster colours are on the canvas, in many pixels each
    c0, c1 = (tuple(int(v) for v in m.point_colors()[np.flatnonzero(cluster == k)[0], :3]) for k in (0, 1))
    assert _painted(page, c0) > 500 and _painted(page, c1) > 500
    rows = page.locator(".gm-legend-row")
    assert rows.count() == 2 and "4" in rows.nth(0).inner_text()
    page.locator(".gm-root").screenshot(path=str(ARTIFACTS / "map_two_blobs.png"))

    # a box drag: the points inside the box reach Python, outside ones are dimmed on the canvas
    got_box = []
    m.on_select(got_box.append)
    _drag(page, [(60, 60), (300, 300)])
    page.wait_for_timeout(200)
    replay(page, m)
    box = _check_selection(m)
    assert 100 < len(box) < n and len(got_box) == 1
    assert page.locator(".gm-count").inner_text().startswith(f"{len(box):,} of")

    # a lasso (toolbar), then shift adds a second lasso to it
    page.locator(".gm-mode-lasso").click()
    tri = [(420, 60), (620, 80), (600, 300), (430, 280)]
    _drag(page, tri)
    page.wait_for_timeout(200)
    k = replay(page, m, 1)
    lasso = _check_selection(m)
    assert lasso and not (lasso & box)
    page.keyboard.down("Shift")
    _drag(page, [(60, 60), (300, 60), (300, 300), (60, 300)])
    page.keyboard.up("Shift")
    page.wait_for_timeout(200)
    k = replay(page, m, k)
    both = {int(i) for i in m.selected_ids}
    assert lasso <= both and len(both - lasso) > 0.9 * len(box)
    page.locator(".gm-root").screenshot(path=str(ARTIFACTS / "map_lasso.png"))
    page.keyboard.press("Escape")
    k = replay(page, m, k)
    assert m.selected_ids == [] and got_box[-1] == []

    # the colour-by dropdown changes Python's colouring; the new colours reach the canvas
    page.locator("select.gm-colorsel").select_option("density")
    saved = page.evaluate("window.__saved")
    m.color_by = saved["color_by"]
    push(page, m, ["colors", "legend"])
    page.wait_for_timeout(150)
    assert page.locator(".gm-colorbar").count() == 1 and page.locator(".gm-legend-row").count() == 0

    # in place: a new embedding for the same items moves the points (no new widget)
    before = page.evaluate("document.querySelector('canvas.gm-canvas').toDataURL()")
    m.update(xy @ np.array([[0.0, 1.0], [-1.0, 0.0]]), title="rotated")
    push(page, m, ["xy_bytes", "density_grid", "density", "colors", "flags", "title"])
    page.wait_for_timeout(200)
    after = page.evaluate("document.querySelector('canvas.gm-canvas').toDataURL()")
    assert after != before and canvas.get_attribute("data-drawn") == str(n)
    assert page.locator(".gm-title").inner_text() == "rotated"

    # a programmatic selection is drawn in the page
    m.select([str(i) for i in range(5)])
    push(page, m, ["selection", "selection_rev"])
    assert page.locator(".gm-count").inner_text().startswith("5 of")


def test_hover_preview_is_beside_the_plot(page):
    rng = np.random.default_rng(1)
    xy = rng.normal(size=(300, 2))
    imgs = rng.random(size=(300, 8, 8))
    m = LatentMap(xy, [f"i{k}" for k in range(300)], content=imgs, kind="image", uncertainty=rng.random(300))
    mount(page, m)
    bb = page.locator("canvas.gm-overlay").bounding_box()
    # the page's own transform puts item 0 here
    px = page.evaluate(
        """() => { const c = document.querySelector('canvas.gm-canvas'); return [c.width, c.height]; }"""
    )
    assert px[0] > 200
    k0 = int(np.argmin(np.abs(xy - xy.mean(0)).sum(1)))  # a central point: not at an edge
    lo, hi = xy.min(0), xy.max(0)
    pad = 0.04 * (hi - lo)
    fx = (xy[k0, 0] - lo[0] + pad[0]) / (hi[0] - lo[0] + 2 * pad[0])
    fy = 1 - (xy[k0, 1] - lo[1] + pad[1]) / (hi[1] - lo[1] + 2 * pad[1])
    page.mouse.move(bb["x"] + fx * bb["width"], bb["y"] + fy * bb["height"])
    page.wait_for_timeout(250)
    replay(page, m)
    assert m.hovered is not None
    hv = int(m.hovered[1:])
    assert np.linalg.norm(xy[hv] - xy[k0]) < 0.2  # the point under the cursor, or one touching it
    push(page, m, ["hover_info"])
    thumb = page.locator(".gm-preview img.gm-thumb")
    assert thumb.count() == 1
    tb, sb = thumb.bounding_box(), page.locator(".gm-stage").bounding_box()
    assert tb["x"] >= sb["x"] + sb["width"] or tb["y"] >= sb["y"] + sb["height"]  # not over the plot
    assert "uncertainty" in page.locator(".gm-preview").inner_text()


def test_a_million_points_drawn_and_box_selected(page):
    n = 1_000_000
    xy = _two_blobs(n, seed=2)
    m = LatentMap(xy, range(n), color_by="density", contours=False)
    mount(page, m)
    canvas = page.locator("canvas.gm-canvas")
    assert canvas.get_attribute("data-drawn") == str(n)
    _drag(page, [(80, 80), (260, 260)])
    page.wait_for_timeout(300)
    replay(page, m)
    sel = _check_selection(m)
    assert len(sel) > 1000
    page.locator(".gm-root").screenshot(path=str(ARTIFACTS / "map_million.png"))
