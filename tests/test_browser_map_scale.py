"""Real browser: a LatentMap of 10^5 points in JupyterLab 4 (headless Chromium).

The notebook builds the map (five Gaussian blobs, coloured by cluster) and registers an
``on_select`` callback that writes what Python received (the selected ids, the shape the
page reported) to a file. The test checks, in the page, that the points are drawn: every
cluster's exact colour is on the canvas in many pixels, where that cluster's points are.
Then it drags a box and draws a lasso with the mouse, and checks that each selection
reaches Python equal to the points inside the shape:

* exactly the points inside the shape the page reported, computed on the Python side with
  ``points_in_polygon`` on the coordinates the page has (float32, as sent): no tolerance;
* and that shape is the one the mouse drew: its vertices lie within 1 px of the drawn box
  or polygon. Points further than 1 px from the drawn outline are all classified as the
  drawn shape says; only points within 1 px of it may differ (the page works in fractional
  pointer coordinates and thins the pointer's path, so the outline it reports can sit up to
  a pixel from the one computed here from the mouse positions).

A second, quick test checks the density contours drawn over the points (computed in the
kernel): each line encloses its share of the points.

Timings are not asserted here (``benchmarks/bench_map_lab.py`` measures them). A screenshot
goes to test-artifacts/map_scale_lab.png.

Run: ``pytest -s tests/test_browser_map_scale.py`` (skips without /usr/bin/chromium).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _browser import (
    ARTIFACTS,
    BROWSER_MARKS,
    CHROME_ARGS,
    CHROMIUM,
    jupyterlab,
    wait_for,
    write_notebook,
)

from gapscope.widgets._common import points_in_polygon

pytestmark = BROWSER_MARKS
N = 100_000

CELL = """\
import json, os
from pathlib import Path
import numpy as np
from gapscope.widgets import LatentMap

OUT = Path(os.environ["GAPSCOPE_MAP_SCALE_DIR"])

def _write(name, obj):
    tmp = OUT / (name + ".tmp")
    tmp.write_text(json.dumps(obj))
    tmp.replace(OUT / name)

n = int(os.environ["GAPSCOPE_MAP_SCALE_N"])
rng = np.random.default_rng(7)
centres = np.array([[-6.0, 4.0], [0.0, 5.0], [6.0, 3.0], [-3.0, -4.0], [4.0, -4.0]])
cluster = rng.integers(0, len(centres), size=n)
xy = centres[cluster] + rng.normal(size=(n, 2)) * rng.uniform(0.6, 1.6, size=(len(centres), 2))[cluster]
m = LatentMap(xy, range(n), cluster=cluster, color_by="cluster", title="scale test")
np.save(OUT / "xy.npy", m.xy)
colours = m.point_colors()
_write("map.json", {"n": n, "cluster": cluster.tolist(),
                    "colours": {str(k): colours[np.flatnonzero(cluster == k)[0], :3].tolist()
                                for k in range(len(centres))}})

def _on_select(ids):
    _write("selection.json", {"k": m.n_selections, "ids": [int(i) for i in ids],
                              "kind": m.last_selection_shape.get("kind"),
                              "shape": m.last_selection_shape.get("shape")})

m.on_select(_on_select)
m
"""

# per cluster colour: the canvas pixels with exactly that colour, and their mean position
PIXELS = """([colours]) => {
  const c = document.querySelector('canvas.gm-canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const out = colours.map(() => ({ count: 0, sx: 0, sy: 0 }));
  for (let p = 0, i = 0; i < d.length; i += 4, p++) {
    for (let k = 0; k < colours.length; k++) {
      const [r, g, b] = colours[k];
      if (d[i] === r && d[i + 1] === g && d[i + 2] === b) {
        out[k].count++; out[k].sx += p % c.width; out[k].sy += Math.floor(p / c.width);
      }
    }
  }
  return { w: c.width, h: c.height, cssW: c.clientWidth, cssH: c.clientHeight,
           drawn: Number(c.dataset.drawn), n: Number(c.dataset.n), per: out };
}"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lab")
    out = tmp / "out"
    out.mkdir()
    nb = write_notebook(tmp / "map_scale.ipynb", CELL)
    with jupyterlab(
        tmp, nb, {"GAPSCOPE_MAP_SCALE_DIR": str(out), "GAPSCOPE_MAP_SCALE_N": str(N)}
    ) as (base, token):
        yield base, token, out, nb.name


def _view(xy32: np.ndarray) -> list[float]:
    """The page's full view (x0, x1, y0, y1): the points' float32 bounds plus 4% each side."""
    x0, y0 = xy32.min(axis=0)
    x1, y1 = xy32.max(axis=0)
    px, py = 0.04 * (x1 - x0), 0.04 * (y1 - y0)
    return [x0 - px, x1 + px, y0 - py, y1 + py]


def _to_data(pts_px, view, W, H) -> np.ndarray:
    p = np.asarray(pts_px, dtype=np.float64)
    return np.c_[
        view[0] + p[:, 0] / W * (view[1] - view[0]),
        view[2] + (1 - p[:, 1] / H) * (view[3] - view[2]),
    ]


def _dist_to_outline(xy: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Distance of each point to the closed polyline ``poly`` (same units)."""
    a, b = poly, np.roll(poly, -1, axis=0)
    best = np.full(len(xy), np.inf)
    for (ax, ay), (bx, by) in zip(a, b, strict=True):
        ex, ey = bx - ax, by - ay
        t = np.clip(
            ((xy[:, 0] - ax) * ex + (xy[:, 1] - ay) * ey) / max(ex * ex + ey * ey, 1e-300), 0, 1
        )
        best = np.minimum(best, np.hypot(xy[:, 0] - ax - t * ex, xy[:, 1] - ay - t * ey))
    return best


def _check(sel: dict, kind: str, drawn_px: list, xy32: np.ndarray, view, W, H) -> set[int]:
    """The selection that reached Python is the set of points inside the drawn shape."""
    assert sel["kind"] == kind, sel["kind"]
    got = set(sel["ids"])
    # 1. exactly the points inside the shape the page reported (Python's own test, float32 xy)
    shape = np.asarray(sel["shape"], dtype=np.float64)
    inside = set(np.flatnonzero(points_in_polygon(xy32, shape)).tolist())
    assert got == inside, (len(got), len(inside), len(got ^ inside))
    # 2. that shape is the drawn one: each reported vertex within 1 px of the drawn outline
    drawn = _to_data(drawn_px, view, W, H)
    if kind == "box":
        (ax, ay), (bx, by) = drawn
        drawn = np.array([[ax, ay], [bx, ay], [bx, by], [ax, by]])
    unit = np.array([(view[1] - view[0]) / W, (view[3] - view[2]) / H])  # data units per px
    off = _dist_to_outline(shape / unit, drawn / unit)
    assert off.max() <= 1.0, off.max()
    # 3. so every point more than 1 px from the drawn outline is classified as the drawn shape says
    ref = points_in_polygon(xy32, drawn)
    far = _dist_to_outline(xy32 / unit, drawn / unit) > 1.0
    mine = np.zeros(len(xy32), bool)
    mine[list(got)] = True
    assert (mine[far] == ref[far]).all(), int((mine[far] != ref[far]).sum())
    assert 1000 < len(got) < len(xy32)
    return got


def test_map_of_1e5_points_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    base, token, out, nb_name = lab
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.set_default_timeout(90_000)
        try:
            page.goto(f"{base}/lab/tree/{nb_name}?token={token}&reset")
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for()
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            meta = wait_for(
                lambda: (out / "map.json").exists() and json.loads((out / "map.json").read_text()),
                120,
                "the map built in the kernel",
            )
            overlay = page.locator("canvas.gm-overlay")
            overlay.wait_for(state="visible")
            wait_for(
                lambda: page.evaluate(
                    "(n) => { const c = document.querySelector('canvas.gm-canvas');"
                    " return !!c && Number(c.dataset.n) === n && Number(c.dataset.drawn) === n; }",
                    N,
                ),
                60,
                f"{N} points drawn in the page",
            )
            # the whole plot in the viewport: the drags must not leave it
            overlay.evaluate("(e) => e.scrollIntoView({ block: 'center' })")
            page.wait_for_timeout(300)
            xy32 = np.load(out / "xy.npy").astype(np.float32).astype(np.float64)
            cluster = np.asarray(meta["cluster"])
            colours = [meta["colours"][str(k)] for k in range(cluster.max() + 1)]

            # ---- the points are drawn: each cluster's colour in many pixels, where its points are
            px = page.evaluate(PIXELS, [colours])
            assert px["n"] == N and px["drawn"] == N
            view = _view(xy32)
            W, H = px["cssW"], px["cssH"]
            scale = px["w"] / W  # device pixels per CSS pixel
            for k, c in enumerate(px["per"]):
                assert c["count"] > 2000, (k, c["count"])
                pts = _to_canvas(xy32[cluster == k], view, px["w"], px["h"])
                centre = np.array([c["sx"], c["sy"]]) / c["count"]
                # overlapping blobs hide some of each other's pixels: the painted centre is near, not on
                assert np.linalg.norm(centre - pts.mean(axis=0)) < 25 * scale, (
                    k,
                    centre,
                    pts.mean(axis=0),
                )
            assert sum(c["count"] for c in px["per"]) > 30_000

            bb = overlay.bounding_box()
            assert bb["y"] >= 0 and bb["y"] + bb["height"] <= 1000, bb  # all of it on screen

            def drag(points, settle=0):
                page.mouse.move(bb["x"] + points[0][0], bb["y"] + points[0][1])
                page.mouse.down()
                for x, y in points[1:]:
                    page.mouse.move(bb["x"] + x, bb["y"] + y, steps=10)
                    if settle:
                        page.wait_for_timeout(settle)  # the corner gets its own pointermove
                page.mouse.up()

            def selection(k):
                def ready():
                    f = out / "selection.json"
                    d = json.loads(f.read_text()) if f.exists() else None
                    return d if d and d["k"] >= k else None

                return wait_for(ready, 30, f"selection {k} in Python")

            # ---- a box drag (the default mode)
            box_px = [(0.12 * W, 0.1 * H), (0.55 * W, 0.55 * H)]
            drag(box_px)
            got_box = _check(selection(1), "box", box_px, xy32, view, W, H)

            # ---- a lasso (from the toolbar) around the lower blobs
            page.locator(".gm-mode-lasso").click()
            lasso_px = [
                (0.25 * W, 0.55 * H),
                (0.6 * W, 0.5 * H),
                (0.9 * W, 0.7 * H),
                (0.7 * W, 0.95 * H),
                (0.3 * W, 0.9 * H),
            ]
            drag([*lasso_px, lasso_px[0]], settle=40)
            got_lasso = _check(selection(2), "lasso", lasso_px, xy32, view, W, H)
            assert page.locator(".gm-count").inner_text().startswith(f"{len(got_lasso):,} of {N:,}")
            assert got_box != got_lasso
            page.locator(".gm-root").screenshot(path=str(ARTIFACTS / "map_scale_lab.png"))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "map_scale_lab_failure.png"))
            raise
        finally:
            browser.close()
    assert not errors, errors


def _to_canvas(xy: np.ndarray, view, w: int, h: int) -> np.ndarray:
    """Canvas pixel (device) positions of ``xy`` in the page's full view."""
    return np.c_[
        (xy[:, 0] - view[0]) / (view[1] - view[0]) * w,
        (view[3] - xy[:, 1]) / (view[3] - view[2]) * h,
    ]


def test_contour_lines_enclose_their_share_of_the_points():
    """The contours the map draws (computed in the kernel): for one Gaussian blob each line is
    closed and encloses its fraction of the points (checked with ``points_in_polygon``, 2%)."""
    from gapscope.widgets import map_density
    from gapscope.widgets.latent_map import CONTOUR_MASS, contour_lines

    pytest.importorskip("contourpy")
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(40_000, 2)) * [2.0, 0.5] + [3.0, -1.0]
    gx, gy, z, at = map_density(xy)
    lines = contour_lines(gx, gy, z, at)
    polys = np.split(lines, np.flatnonzero(np.isnan(lines[:, 0])))
    polys = [p[~np.isnan(p[:, 0])].astype(np.float64) for p in polys]
    assert len(polys) == len(CONTOUR_MASS)  # one closed line per level for a single blob
    for poly in polys:
        np.testing.assert_allclose(poly[0], poly[-1], atol=1e-5)
    shares = sorted(points_in_polygon(xy, p).mean() for p in polys)
    np.testing.assert_allclose(shares, CONTOUR_MASS, atol=0.02)
