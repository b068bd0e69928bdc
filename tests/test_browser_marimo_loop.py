"""Real browser: the curation loop in marimo (`marimo run notebooks/curation_loop_marimo.py`),
driven by keyboard in headless Chromium.

By keyboard only: label the bootstrap batch (with a reject and an out-of-scope), press
``r``, wait for the next batch (new item ids, the model's label on the cards; the status
and the progress bar, set from the retrain thread, reach the page), check that the map drew
every point (its canvas says so and its pixels are read back in the page) and that its title
names the round, label the second batch, press ``r``, the dashboard shows two rounds; label
part of the third batch, stop the marimo server, start it again on the same run folder and
check that the page continues the same batch with the same done count and takes keys
again. Finally the label store must hold every action exactly once, in order, with the
annotator and the key cues. Screenshots of each widget go to test-artifacts/marimo_loop_*.png.

Run: ``pytest -s tests/test_browser_marimo_loop.py`` (skips without /usr/bin/chromium).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
from _browser import (
    ARTIFACTS,
    BROWSER_MARKS,
    CHROME_ARGS,
    CHROMIUM,
    ROOT,
    loop_truth,
    marimo_server,
    store_events,
    wait_for,
)

NOTEBOOK = ROOT / "notebooks" / "curation_loop_marimo.py"
PROJECT = "curation-demo"  # the notebook's default project (names the store's project)
ANNOTATOR = "tester"
N_INITIAL, BUDGET = 8, 6
ARGS = [
    "--n_initial", str(N_INITIAL), "--budget", str(BUDGET), "--rounds", "3",
    "--epochs", "3", "--annotator", ANNOTATOR,
]  # fmt: skip
pytestmark = BROWSER_MARKS


class Server:
    """``marimo run`` of the notebook on 127.0.0.1 (our own process; stop() ends only it)."""

    def __init__(self, run_dir: Path, log: Path):
        self.run_dir, self.log_path = run_dir, log
        self._ctx: contextlib.ExitStack | None = None

    def start(self) -> str:
        self._ctx = contextlib.ExitStack()
        args = [*ARGS, "--run_dir", str(self.run_dir)]
        return self._ctx.enter_context(marimo_server(NOTEBOOK, args, cwd=self.run_dir.parent, log_path=self.log_path))

    def stop(self) -> None:
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "run", tmp_path / "marimo.log")
    try:
        yield s
    finally:
        s.stop()


# ---------------------------------------------------------------- page helpers
# marimo renders each anywidget in a shadow root: Playwright's CSS locators pierce it, and
# element.evaluate gets the element itself (document.querySelector would not find it).
CARDS = """(cards) => cards.map((c) => ({id: c.dataset.itemId, index: Number(c.dataset.index),
    model: (c.querySelector('.gl-model') || {}).textContent || '', cls: c.className}))"""

CANVAS = """(c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let k = 0;
    for (let i = 0; i < d.length; i += 4)
      if (d[i + 3] > 0 && (d[i] < 235 || d[i + 1] < 235 || d[i + 2] < 235)) k++;
    return {painted: k, w: c.width, h: c.height, drawn: Number(c.dataset.drawn),
            n: Number(c.dataset.n)};
}"""

# markers drawn by the dashboard's accuracy trace (one per evaluated round)
DASH_POINTS = """(gd) => {
    if (!gd._fullData) return -1;
    const trace = [...gd.querySelectorAll('.scatterlayer .trace')].find((g) =>
        g.__data__ && g.__data__[0] && g.__data__[0].trace.name === 'accuracy');
    return trace ? trace.querySelectorAll('path.point').length : 0;
}"""


class Page:
    def __init__(self, page):
        self.page = page

    def root(self):
        return self.page.locator(".gl-root")

    def card_info(self) -> list[dict]:
        got = self.page.locator(".gl-card").evaluate_all(CARDS)
        for c in got:
            text = c["model"].removeprefix("model: ")
            c["model_label"] = None if text.startswith("—") else text.split(" ")[0]
        return got

    def ids(self) -> list[str]:
        return [c["id"] for c in self.card_info()]

    def progress(self) -> str:
        return self.page.locator(".gl-progress").inner_text()

    def wait_progress(self, text: str, timeout: float = 60) -> None:
        self.page.locator(".gl-progress", has_text=text).wait_for(timeout=timeout * 1000)

    def status(self) -> str:
        return self.page.locator(".glb-status").inner_text()

    def focus(self) -> None:
        """Click the Labeler's header: the Labeler takes the keyboard."""
        self.page.locator(".gl-progress").click()
        wait_for(
            lambda: self.root().evaluate("(r) => r.getRootNode().activeElement === r"),
            10,
            "the Labeler has focus",
        )

    def press(self, key: str, card: int, cls: str) -> None:
        """Press ``key``; wait until card ``card`` has class ``cls`` (the kernel stored it)."""
        self.page.keyboard.press(key)
        self.page.locator(f".gl-card[data-index='{card}'].{cls}").wait_for(timeout=60_000)

    def map_canvas(self) -> dict:
        return self.page.locator("canvas.gm-canvas").evaluate(CANVAS)

    def dashboard_points(self) -> int:
        gd = self.page.locator(".js-plotly-plot").filter(
            has=self.page.locator(".annotation-text", has_text="accuracy")
        )
        if not gd.count():
            return -1
        gd.last.scroll_into_view_if_needed()
        return gd.last.evaluate(DASH_POINTS)


def _events(run_dir: Path):
    return store_events(run_dir, PROJECT)


_truth = loop_truth


def _label_batch(P: Page, truth, names, keys, plan: dict, expected: list, *, upto=None) -> None:
    """Label the open cards by keys, in order (the first ``upto`` only): ``plan`` maps a card
    index to its key (default: the digit of the true label). Appends to ``expected`` the
    events the store must then hold: (item, kind, label, model label shown)."""
    for i, c in enumerate(P.card_info()[:upto]):
        if "gl-done" in c["cls"].split():
            continue
        item = int(c["id"])
        k = plan.get(i, keys[int(truth[item])])
        if k in ("x", "o"):
            kind, lab = {"x": "reject", "o": "flag_out_of_scope"}[k], None
        else:
            lab = keys.index(k)
            if c["model_label"] is None:
                kind = "label"
            else:
                kind = "accept" if names[lab] == c["model_label"] else "correct"
        P.press(k, i, "gl-" + kind)
        expected.append((item, kind, lab, c["model_label"]))


# records every state of the LoopBar and the Labeler's lock the page shows: (status, busy,
# progress, cards locked), from a MutationObserver (polling could miss a short retrain;
# setting progress.value sets its attribute, so it is seen too)
WATCH = """([bar, lab]) => {
    const log = (bar.__log = []);
    const rec = () => log.push([bar.querySelector('.glb-status').textContent, bar.dataset.busy,
        bar.querySelector('progress').value, lab.classList.contains('gl-locked')]);
    if (bar.__obs) bar.__obs.disconnect();
    bar.__obs = new MutationObserver(rec);
    const opts = {subtree: true, attributes: true, childList: true, characterData: true};
    bar.__obs.observe(bar, opts);
    bar.__obs.observe(lab, {attributes: true, attributeFilter: ['class']});
}"""


def _retrain(P: Page, before: list[str], what: str) -> float:
    """Press r; the updates the retrain thread makes while it runs (status, busy, progress,
    the cards' lock) reach the page, and so does the next batch it puts on the cards."""
    bar = P.page.locator(".glb-root")
    P.page.evaluate(WATCH, [bar.element_handle(), P.root().element_handle()])
    t = time.time()
    P.page.keyboard.press("r")
    wait_for(lambda: P.ids() and not set(P.ids()) & set(before), 240, f"{what}: the next batch")
    wait_for(lambda: "ready" in P.status(), 30, f"{what}: the status says the batch is ready")
    P.page.locator(".glb-root[data-busy='0']").wait_for(timeout=30_000)
    took = time.time() - t
    assert P.page.locator("progress.glb-progress").evaluate("(b) => b.value") == 1.0
    seen = bar.evaluate("(b) => b.__log")
    running = [s for s in seen if s[0].startswith("running") and s[1] == "1"]
    assert running, f"{what}: the page never showed the retrain running: {seen[:8]}"
    assert any(0 < s[2] < 1 for s in running), f"{what}: no progress between 0 and 1: {running}"
    # the cards take no decision while the loop trains on their batch, and do again after
    assert any(s[3] for s in running), f"{what}: the cards were not locked while it ran"
    assert "gl-locked" not in (P.root().get_attribute("class") or "")
    return took


def _wait_map(P: Page, n: int, title: str, what: str) -> dict:
    """The map's title says ``title``; its canvas drew all ``n`` points (painted pixels)."""
    P.page.locator(".gm-title", has_text=title).wait_for(timeout=60_000)
    P.page.locator("canvas.gm-canvas").scroll_into_view_if_needed()

    def drawn():
        m = P.map_canvas()
        return m if m["drawn"] == n and m["n"] == n and m["painted"] > 0 else None

    return wait_for(drawn, 60, f"{what}: the map drew {n} points")


def test_curation_loop_by_keyboard_in_marimo(server, tmp_path):
    from playwright.sync_api import sync_playwright

    from gapscope.widgets.labeler import label_keys

    run_dir = server.run_dir
    ARTIFACTS.mkdir(exist_ok=True)
    timings: dict[str, float] = {}
    expected: list[tuple] = []
    t0 = time.time()
    url = server.start()
    timings["server up"] = time.time() - t0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1800})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.set_default_timeout(120_000)
        P = Page(page)
        try:
            t = time.time()
            page.goto(url)
            wait_for(lambda: page.locator(".gl-card").count() == N_INITIAL, 180, "bootstrap cards")
            P.wait_progress(f"0 / {N_INITIAL} done")
            timings["page -> cards"] = time.time() - t
            truth, ds = _truth(run_dir)
            n_pool = len(ds.pool)
            names = [str(n) for n in ds.class_names]
            keys = label_keys(names)
            # the map exists from the start (the pool's features before the first model)
            _wait_map(P, n_pool, "before the first model", "bootstrap")

            # ---- the bootstrap batch: random items, no model yet
            first = P.ids()
            assert all(c["model_label"] is None for c in P.card_info())
            P.focus()
            _label_batch(P, truth, names, keys, {0: "x", 1: "o"}, expected)
            P.wait_progress(f"{N_INITIAL} / {N_INITIAL} done")
            P.root().screenshot(path=str(ARTIFACTS / "marimo_loop_labeler_bootstrap.png"))
            n1 = len(expected)

            # ---- r: the retrain runs in a mo.Thread; its updates reach the page
            timings["r -> next batch (1)"] = _retrain(P, first, "retrain 1")
            second = P.ids()
            info = P.card_info()
            assert len(second) == BUDGET and all(c["model_label"] in names for c in info), info
            assert "agreement" in page.locator(".gl-model").first.inner_text()
            m0 = _wait_map(P, n_pool, "round 0", "round 0")
            assert m0["painted"] > 1000, m0
            assert "model embedding (PCA), round 0" in page.locator(".gm-title").inner_text()
            page.locator(".gm-root").screenshot(path=str(ARTIFACTS / "marimo_loop_map_round0.png"))
            wait_for(lambda: P.dashboard_points() == 1, 60, "1 round on the dashboard")
            page.locator(".glb-root").screenshot(path=str(ARTIFACTS / "marimo_loop_bar.png"))

            # ---- the second batch
            P.focus()
            _label_batch(P, truth, names, keys, {}, expected)
            P.wait_progress(f"{BUDGET} / {BUDGET} done")
            P.root().screenshot(path=str(ARTIFACTS / "marimo_loop_labeler_round0.png"))
            n2 = len(expected)
            timings["r -> next batch (2)"] = _retrain(P, second, "retrain 2")
            third = P.ids()
            assert len(third) == BUDGET and not set(third) & set(second)
            m1 = _wait_map(P, n_pool, "round 1", "round 1")
            assert m1["painted"] > 1000, m1
            wait_for(lambda: P.dashboard_points() == 2, 60, "2 rounds on the dashboard")
            page.locator(".js-plotly-plot").filter(
                has=page.locator(".annotation-text", has_text="accuracy")
            ).last.screenshot(path=str(ARTIFACTS / "marimo_loop_dashboard.png"))
            page.screenshot(path=str(ARTIFACTS / "marimo_loop_page.png"), full_page=True)

            # ---- 3 cards of the third batch, then stop the server and start it again
            P.focus()
            _label_batch(P, truth, names, keys, {}, expected, upto=3)
            P.wait_progress(f"3 / {BUDGET} done")
            n3 = len(expected)
            wait_for(lambda: len(_events(run_dir)) == n3, 30, "the store has every action")
            server.stop()
            t = time.time()
            url = server.start()
            page.goto(url)
            wait_for(lambda: P.ids() == third, 180, "the same batch after the restart")
            P.wait_progress(f"3 / {BUDGET} done")
            timings["restart -> cards"] = time.time() - t
            states = [c["cls"].split() for c in P.card_info()]
            assert all("gl-done" in s for s in states[:3]), states
            assert not any("gl-done" in s for s in states[3:]), states
            assert "gl-current" in states[3], states  # the first open card
            assert len(_events(run_dir)) == n3  # the restart wrote nothing
            _wait_map(P, n_pool, "round 1", "after the restart")
            wait_for(lambda: P.dashboard_points() == 2, 60, "2 rounds after the restart")
            P.focus()
            _label_batch(P, truth, names, keys, {}, expected)
            P.wait_progress(f"{BUDGET} / {BUDGET} done")
            P.root().screenshot(path=str(ARTIFACTS / "marimo_loop_labeler_after_restart.png"))
            page.screenshot(path=str(ARTIFACTS / "marimo_loop_page_end.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "marimo_loop_failure.png"), full_page=True)
            print("\npage errors:", errors)
            print((tmp_path / "marimo.log").read_text()[-4000:])
            raise
        finally:
            browser.close()
    assert not errors, errors

    # ---- the store: every action exactly once, in order, with its provenance
    ev = _events(run_dir)
    assert (ev["annotator"] == ANNOTATOR).all(), ev["annotator"].unique()
    got = [
        (int(r.item_id), r.kind, None if r.label is None or r.label != r.label else int(r.label))
        for r in ev.itertuples()
    ]
    assert got == [e[:3] for e in expected], (got, expected)
    assert ev["key"].notna().all() and ev["key"].is_unique  # the browser's message uid
    assert ev["event_id"].is_monotonic_increasing
    sessions = []
    for r, (_item, _kind, _lab, shown) in zip(ev.itertuples(), expected, strict=True):
        c = r.cues
        assert c["widget"] == "gapscope.widgets.Labeler" and c["input"] == "key", c
        assert c["model_label_shown"] == shown, (c, shown)
        assert (c["confidence_shown"] is None) == (shown is None), c
        sessions.append(c["session"])
    rounds = ev["round"].tolist()
    assert set(rounds[:n1]) == {0} and set(rounds[n1:n2]) == {1} and set(rounds[n2:]) == {2}, rounds
    # one Labeler session per page load: before and after the restart
    assert len(set(sessions[:n3])) == 1 and len(set(sessions[n3:])) == 1
    assert sessions[0] != sessions[-1]
    print(f"\ntotal {time.time() - t0:.1f} s")
    for k, v in timings.items():
        print(f"  {k}: {v:.1f} s")
