"""Real browser: the marimo labeling notebook served by `marimo run`, driven by Playwright
with Debian's Chromium. The same anywidgets as in JupyterLab (through mo.ui.anywidget):
keys and clicks reach the label store; the LatentMap's canvas draws every pool point (its
pixels are read back in the page) and box selections dragged on it reach Python (a new drag
replaces the selection, shift adds). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from _browser import (
    ARTIFACTS,
    BROWSER_MARKS,
    CHROME_ARGS,
    CHROMIUM,
    ROOT,
    marimo_server,
    wait_for,
    wait_for_selection,
)

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def marimo_app(tmp_path_factory):
    out = tmp_path_factory.mktemp("mo")
    args = ["--epochs", "3", "--simulate", "0", "--run_dir", str(out / "run")]
    notebook = ROOT / "notebooks" / "label_batches_marimo.py"
    with marimo_server(notebook, args, cwd=out, log_path=out / "marimo.log") as url:
        yield url, out


CANVAS = """(c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let k = 0;
    for (let i = 0; i < d.length; i += 4)
      if (d[i + 3] > 0 && (d[i] < 235 || d[i + 1] < 235 || d[i + 2] < 235)) k++;
    return {painted: k, drawn: Number(c.dataset.drawn), n: Number(c.dataset.n)};
}"""


def _pool_size() -> int:
    from gapscope.helpers.data import load_dataset

    return len(load_dataset("digits", random_state=0).pool)


def _at_least(out: Path, n: int):
    from gapscope.helpers.store import LabelStore

    if not (out / "run" / "labels.sqlite").exists():
        return None
    with LabelStore(run_dir=out / "run", project="digits") as s:
        ev = s.events()
    return [ev] if len(ev) >= n else None


def test_label_and_select_in_marimo(marimo_app):
    from playwright.sync_api import sync_playwright

    url, out = marimo_app
    ARTIFACTS.mkdir(exist_ok=True)
    sel_file = out / "run" / "selection.json"
    t0 = time.time()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.set_default_timeout(90_000)
        try:
            page.goto(url)
            cards = page.locator(".gl-card")
            wait_for(lambda: cards.count() == 24, 120, "24 labeler cards")
            t_render = time.time()

            # keyboard through mo.ui.anywidget
            page.locator(".gl-progress").click()
            page.keyboard.press("a")
            page.keyboard.press("x")
            ev = wait_for(lambda: _at_least(out, 2), 30, "2 keyboard events")[0]
            assert list(ev["kind"]) == ["accept", "reject"]
            assert list(ev["item_id"]) == [
                int(cards.nth(0).get_attribute("data-item-id")),
                int(cards.nth(1).get_attribute("data-item-id")),
            ]
            # a click on a card button
            cards.nth(5).locator(".gl-b-reject").click()
            ev = wait_for(lambda: _at_least(out, 3), 30, "click event")[0]
            assert ev["kind"].iloc[2] == "reject" and ev["cues"].iloc[2]["input"] == "click"
            page.locator(".gl-progress", has_text="3 / 24 done").wait_for()
            page.locator(".gl-root").screenshot(path=str(ARTIFACTS / "marimo_labeler.png"))

            # the LatentMap (canvas engine inside mo.ui.anywidget) drew every pool point
            canvas = page.locator("canvas.gm-canvas")
            canvas.scroll_into_view_if_needed()
            n_pool = _pool_size()
            drawn = wait_for(
                lambda: (m := canvas.evaluate(CANVAS))["drawn"] == n_pool and m["painted"] and m,
                30,
                f"the map drew {n_pool} points",
            )
            assert drawn["n"] == n_pool and drawn["painted"] > 2000, drawn
            page.locator(".gm-root").screenshot(path=str(ARTIFACTS / "marimo_map.png"))

            # box selections on the map's overlay: each drag replaces the selection, shift
            # adds to it; each reaches Python as one message on mouse-up
            box = page.locator("canvas.gm-overlay").bounding_box()
            picks, seen = [], 0
            for k, (x0, x1, shift) in enumerate(
                [(0.1, 0.45, False), (0.55, 0.9, False), (0.1, 0.3, True)]
            ):
                if shift:
                    page.keyboard.down("Shift")
                page.mouse.move(box["x"] + box["width"] * x0, box["y"] + box["height"] * 0.05)
                page.mouse.down()
                page.mouse.move(
                    box["x"] + box["width"] * x1, box["y"] + box["height"] * 0.95, steps=10
                )
                page.mouse.up()
                if shift:
                    page.keyboard.up("Shift")
                got = wait_for_selection(sel_file, seen, k)
                assert got["n_selections"] == seen + 1, got  # one message per drag
                seen = got["n_selections"]
                picks.append(got["ids"])
                # the page counts the same selection that Python got
                page.locator(
                    ".gm-count", has_text=f"{len(got['ids']):,} of {n_pool:,} selected"
                ).wait_for()
            assert not set(picks[0]) & set(picks[1])  # the second box replaced the first
            assert set(picks[1]) < set(picks[2])  # shift added to it
            assert set(picks[2]) - set(picks[1]) <= set(picks[0])  # a box inside the first one
            page.wait_for_timeout(300)
            assert json.loads(sel_file.read_text())["n_selections"] == 3  # nothing more came
            page.screenshot(path=str(ARTIFACTS / "marimo_page.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "marimo_failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    print(
        f"\nrender {t_render - t0:.1f}s, total {time.time() - t0:.1f}s, "
        f"selections {[len(p) for p in picks]}"
    )
