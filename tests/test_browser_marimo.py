"""Real browser: the marimo labeling notebook served by `marimo run`, driven by Playwright
with Debian's Chromium. The same anywidgets as in JupyterLab (through mo.ui.anywidget):
keys and clicks reach the label store, box selections on the FigureWidget reach Python.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from _browser import (
    ARTIFACTS,
    BROWSER_MARKS,
    CHROME_ARGS,
    CHROMIUM,
    ROOT,
    free_port,
    wait_for,
    wait_for_selection,
)

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def marimo_app(tmp_path_factory):
    out = tmp_path_factory.mktemp("mo")
    port = free_port()
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    log = open(out / "marimo.log", "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "marimo",
            "-y",
            "run",
            str(ROOT / "notebooks" / "label_batches_marimo.py"),
            "--headless",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-token",
            "--no-sandbox",
            "--",
            "--epochs",
            "3",
            "--simulate",
            "0",
            "--run_dir",
            str(out / "run"),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=out,
    )

    def up():
        assert proc.poll() is None, (out / "marimo.log").read_text()[-3000:]
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return True
        except OSError:
            return False

    try:
        wait_for(up, 60, "marimo server")
        yield f"http://127.0.0.1:{port}/", out
    finally:
        proc.terminate()  # our own process only
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


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

            # box selection on the LatentMap (FigureWidget inside mo.ui.anywidget)
            plot = page.locator(".js-plotly-plot .draglayer .xy .nsewdrag").first
            plot.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            box = plot.bounding_box()
            picks, seen = [], 0
            for k, (x0, x1) in enumerate([(0.1, 0.45), (0.55, 0.9)]):
                page.mouse.move(box["x"] + box["width"] * x0, box["y"] + box["height"] * 0.05)
                page.mouse.down()
                page.mouse.move(
                    box["x"] + box["width"] * x1, box["y"] + box["height"] * 0.95, steps=10
                )
                page.mouse.up()
                got = wait_for_selection(sel_file, seen, k)
                seen = got["n_selections"]
                picks.append(got["ids"])
            assert not set(picks[0]) & set(picks[1])
            page.wait_for_timeout(300)
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
