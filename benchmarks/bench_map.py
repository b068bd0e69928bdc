"""LatentMap's canvas engine against plotly's Scattergl (the map's previous engine, and what a
plotly user would pick) in the same headless Chromium, at 10^4, 10^5 and 10^6 points.

Measured in the page, both with the points already decoded in memory:
* first draw: from the render call to the end of the first frame;
* box select: from mouse-up to the selection being ready to leave the page (plotly:
  the ``plotly_selected`` event; ours: the message handed to the widget model), plus, for
  ours, the kernel's decode of that message (numpy, measured here).

The two engines run interleaved, ``--repeat`` times each, and medians are printed with
the ratio plotly / ours and the load average. Run: ``python benchmarks/bench_map.py``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from _anywidget_stub import mount, replay  # noqa: E402
from _browser import CHROME_ARGS, CHROMIUM  # noqa: E402

PLOTLY_PAGE = """<!doctype html><html><head><meta charset="utf-8"></head><body style="margin:8px">
<div id="plot"></div><script>{plotly}</script><script>
function dec(b) {{ const s = atob(b); const u = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i); return new Float32Array(u.buffer); }}
window.__x = dec("{x}"); window.__y = dec("{y}");
window.__draw = () => new Promise((resolve) => {{
  const t0 = performance.now();
  Plotly.newPlot("plot", [{{type: "scattergl", mode: "markers", x: window.__x, y: window.__y,
    marker: {{size: 4}}}}], {{width: 720, height: 420, dragmode: "select",
    margin: {{l: 30, r: 10, t: 10, b: 30}}}}).then(() => requestAnimationFrame(() =>
    requestAnimationFrame(() => resolve(performance.now() - t0))));
}});
</script></body></html>"""


def _points(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.r_[rng.normal(size=(n // 2, 2)), rng.normal(size=(n - n // 2, 2)) * 0.5 + 3]


def _drag(page, box) -> None:
    # on the window, in the capture phase: plotly moves the drag onto a cover element
    page.evaluate(
        "() => { window.__up = 0; const f = () => { window.__up = window.__up || performance.now(); };"
        " for (const ev of ['pointerup', 'mouseup']) window.addEventListener(ev, f, { once: true, capture: true }); }"
    )
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.6, steps=6)
    page.mouse.up()


def bench_plotly(page, xy: np.ndarray, plotly_js: str) -> tuple[float, float]:
    b64 = [base64.b64encode(np.ascontiguousarray(xy[:, j], dtype=np.float32).tobytes()).decode() for j in (0, 1)]
    page.goto("about:blank")
    page.set_content(PLOTLY_PAGE.format(plotly=plotly_js, x=b64[0], y=b64[1]))
    draw = page.evaluate("window.__draw()")
    page.evaluate(
        "() => document.getElementById('plot').on('plotly_selected', (e) => {"
        " if (e && e.points) window.__sel = [performance.now(), e.points.length]; })"
    )
    box = page.locator(".nsewdrag").first.bounding_box()
    _drag(page, box)
    h = page.wait_for_function("() => window.__sel && window.__up ? window.__sel[0] - window.__up : null", timeout=120_000, polling=5)
    return float(draw), float(h.json_value())


def bench_ours(page, xy: np.ndarray) -> tuple[float, float, float]:
    from gapscope.widgets import LatentMap

    m = LatentMap(xy, range(len(xy)), color_by="density", contours=True)
    mount(page, m, width=900)
    draw = float(page.evaluate("window.__renderMs"))
    page.evaluate(
        "() => { const f = window.__model.send; window.__model.send = (c) => {"
        " if (c.type === 'select') window.__selT = performance.now(); f(c); }; }"
    )
    box = page.locator("canvas.gm-overlay").bounding_box()
    _drag(page, box)
    h = page.wait_for_function("() => window.__selT && window.__up ? window.__selT - window.__up : null", timeout=60_000, polling=5)
    t = time.perf_counter()
    replay(page, m)
    decode = (time.perf_counter() - t) * 1000.0
    assert m.selected_ids, "the box selected nothing"
    return draw, float(h.json_value()), decode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--plotly-max", type=int, default=1_000_000, help="largest n tried with plotly")
    args = ap.parse_args()
    import plotly
    from playwright.sync_api import sync_playwright

    plotly_js = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text()
    sizes = [int(s) for s in args.sizes.split(",")]
    res: dict = {}
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} ({os.cpu_count()} cores)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        for n in sizes:
            xy = _points(n)
            r = res.setdefault(n, {"ours_draw": [], "ours_sel": [], "ours_decode": [], "plotly_draw": [], "plotly_sel": []})
            for _ in range(args.repeat):  # interleaved
                d, s, dec = bench_ours(page, xy)
                r["ours_draw"].append(d), r["ours_sel"].append(s), r["ours_decode"].append(dec)
                if n <= args.plotly_max:
                    d, s = bench_plotly(page, xy, plotly_js)
                    r["plotly_draw"].append(d), r["plotly_sel"].append(s)
        browser.close()
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'n':>9} | {'first draw ms: ours':>20} {'plotly':>9} {'ratio':>7} | {'box select ms: ours':>20} {'(+decode)':>9} {'plotly':>9} {'ratio':>7}")
    out = {}
    for n, r in res.items():
        med = {k: statistics.median(v) if v else float("nan") for k, v in r.items()}
        ours_sel = med["ours_sel"] + med["ours_decode"]
        print(
            f"{n:>9} | {med['ours_draw']:>20.0f} {med['plotly_draw']:>9.0f} {med['plotly_draw'] / med['ours_draw']:>6.1f}x |"
            f" {med['ours_sel']:>20.0f} {med['ours_decode']:>9.1f} {med['plotly_sel']:>9.0f} {med['plotly_sel'] / ours_sel:>6.1f}x"
        )
        out[n] = med
    print(json.dumps({"medians_ms": out, "repeat": args.repeat}))


if __name__ == "__main__":
    main()
