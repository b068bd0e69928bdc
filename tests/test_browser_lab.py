"""Real browser: JupyterLab + Debian's Chromium driven by Playwright (no `playwright install`).

Opens notebooks/02_label_batches.ipynb, runs it, labels items by keyboard and by clicks,
box-selects on the LatentMap several times in a row (hovering points first), and checks what
reached Python: the label store's events and the selection file the notebook writes.
Screenshots go to test-artifacts/ (gitignored).

Run: ``pytest -s tests/test_browser_lab.py`` (skips without /usr/bin/chromium).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from _browser import (
    ARTIFACTS,
    BROWSER_MARKS,
    CHROME_ARGS,
    CHROMIUM,
    ROOT,
    jupyterlab,
    store_events,
    wait_for,
    wait_for_selection,
)

NOTEBOOK = ROOT / "notebooks" / "02_label_batches.ipynb"
pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    """An isolated JupyterLab on 127.0.0.1 with a token; yields (base_url, token, out, tmp)."""
    tmp = tmp_path_factory.mktemp("lab")
    out = tmp / "out"
    out.mkdir()
    env = {
        "GAPSCOPE_RUN_DIR": str(out / "run"),  # the kernel inherits these
        "GAPSCOPE_SELECTION_FILE": str(out / "selection.json"),
        "GAPSCOPE_INTERACTIVE": "1",
    }
    with jupyterlab(tmp, NOTEBOOK, env) as (base, token):
        yield base, token, out, tmp


def _events(out: Path):
    return store_events(out / "run", "digits")


def _at_least(out: Path, n: int):
    ev = _events(out)
    return [ev] if len(ev) >= n else None


def test_label_and_select_in_jupyterlab(lab_server):
    from playwright.sync_api import sync_playwright

    base, token, out, tmp = lab_server
    ARTIFACTS.mkdir(exist_ok=True)
    sel_file = out / "selection.json"
    t0 = time.time()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1200})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.set_default_timeout(90_000)
        try:
            page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}&reset")
            # running before the kernel is up pops a "Select Kernel" dialog
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for()
            t_open = time.time()
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")

            cards = page.locator(".gl-card")
            wait_for(lambda: cards.count() == 24, 120, "24 labeler cards")
            plot = page.locator("canvas.gm-overlay").first
            plot.wait_for(state="visible")
            page.locator(".gs-make-batch").wait_for(state="visible")
            t_render = time.time()
            n_cells = page.evaluate("window.jupyterapp.shell.currentWidget.content.widgets.length")

            # ---- keyboard: the labeler has focus after a click on its header
            page.locator(".gl-progress").click()
            for k in ["a", "x", "2", "f", " ", "Backspace"]:
                page.keyboard.press(k)
            ev = wait_for(lambda: _at_least(out, 6), 30, "6 keyboard events in the store")[0]
            kinds = list(ev["kind"])
            assert kinds[:2] == ["accept", "reject"], kinds
            assert kinds[2] in ("accept", "correct") and kinds[3:6] == ["flag_bias", "skip", "undo"]
            # Backspace undoes the last action: the skip (the bias flag stays)
            assert int(ev["ref_event"].iloc[5]) == int(ev["event_id"].iloc[4])
            assert ev["cues"].iloc[0]["input"] == "key"
            assert len(ev["cues"].iloc[0]["exemplars_shown"]) == 3
            assert ev["cues"].iloc[0]["ms_on_item"] > 0
            # JupyterLab's own a / x shortcuts did not fire (no cell added or cut)
            assert (
                page.evaluate("window.jupyterapp.shell.currentWidget.content.widgets.length")
                == n_cells
            )
            page.locator(".gl-progress", has_text="3 / 24 done").wait_for()
            assert "gl-reject" in (cards.nth(1).get_attribute("class") or "")

            # ---- clicks: reject button, relabel menu, tag chip, then batch accept
            cards.nth(10).locator(".gl-b-reject").click()
            cards.nth(11).locator("select.gl-relabel").select_option("7")
            cards.nth(12).locator(".gl-chip", has_text="blurry").click()
            wait_for(lambda: _at_least(out, 9), 30, "3 click events")
            page.locator(".gl-accept-all").click()  # asks first ...
            page.locator(".gl-accept-all", has_text="Confirm").wait_for()
            assert len(_events(out)) == 9
            page.locator(".gl-accept-all").click()  # ... and the second click accepts
            ev = wait_for(lambda: _at_least(out, 10), 30, "accept-all events")[0]
            clicks = ev.iloc[6:9]
            assert list(clicks["kind"])[0] == "reject"
            assert list(clicks["kind"])[1] in ("correct", "accept")
            assert clicks["label"].iloc[1] == 7 and clicks["tags"].iloc[2] == ["blurry"]
            assert clicks["cues"].iloc[0]["input"] == "click"
            batch = ev.iloc[9:]
            assert set(batch["kind"]) == {"accept"} and len(batch) == 24 - 5
            page.locator(".gl-progress", has_text="24 / 24 done").wait_for()
            page.locator(".gl-root").screenshot(path=str(ARTIFACTS / "lab_labeler.png"))

            # ---- box select on the map, several drags in a row (hover stays on)
            plot.scroll_into_view_if_needed()
            page.wait_for_timeout(300)
            box = plot.bounding_box()

            def at(fx, fy):
                return box["x"] + box["width"] * fx, box["y"] + box["height"] * fy

            picks, seen = [], 0
            for k, (x0, x1) in enumerate([(0.05, 0.3), (0.35, 0.6), (0.65, 0.78)]):
                page.mouse.move(*at((x0 + x1) / 2, 0.5), steps=4)  # hover over points first
                page.mouse.move(*at(x0, 0.25), steps=4)
                page.mouse.down()
                page.mouse.move(*at(x1, 0.97), steps=10)
                page.mouse.up()
                got = wait_for_selection(sel_file, seen, k)
                seen = got["n_selections"]
                picks.append(got["ids"])
            # each drag replaces the selection: one message per drag, nothing in between
            assert got["sizes"] == [len(picks[0]), len(picks[1]), len(picks[2])], got
            assert all(len(p) > 0 for p in picks), [len(p) for p in picks]
            assert not (set(picks[0]) & set(picks[1])) and not (set(picks[1]) & set(picks[2]))
            page.wait_for_timeout(300)
            drawn = page.locator("canvas.gm-canvas").first.get_attribute("data-drawn")
            assert int(drawn) == int(page.locator("canvas.gm-canvas").first.get_attribute("data-n")) > 1000
            page.locator(".gm-root").first.screenshot(path=str(ARTIFACTS / "lab_map.png"))

            # ---- sampler: a slider change (debounced) redraws the proposal, the button
            #      turns it into the labeler's next batch
            page.locator(".gs-msg", has_text="24 pool items proposed").wait_for()
            count = page.locator("input.gs-count")
            count.focus()
            for _ in range(4):
                page.keyboard.press("ArrowLeft")
            page.locator(".gs-msg", has_text="20 pool items proposed").wait_for()
            page.locator(".gs-make-batch").click()
            wait_for(lambda: cards.count() == 20, 30, "the sampler's batch in the labeler")
            page.locator(".gl-progress", has_text="/ 20 done").wait_for()
            page.screenshot(path=str(ARTIFACTS / "lab_page.png"))
            t_done = time.time()
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "lab_failure.png"))
            raise
        finally:
            browser.close()
    assert not errors, errors
    print(
        f"\nopen+kernel {t_open - t0:.1f}s, run+render {t_render - t_open:.1f}s, "
        f"interactions {t_done - t_render:.1f}s; selections {[len(p) for p in picks]}"
    )
