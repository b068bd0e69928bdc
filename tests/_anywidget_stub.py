"""Render an anywidget's ESM in Chromium with a stub model (no Jupyter): the real front-end
code and the widget's real synced state, with messages collected for the test to replay.

The stub implements what anywidget gives a module: ``get``, ``set``, ``save_changes``,
``on``/``off`` ("change:<name>"), ``send``. Binary traits arrive as ``DataView`` as in
ipywidgets.
"""

from __future__ import annotations

import base64
import json
from typing import Any

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>{css}</style></head>
<body style="margin:8px;width:{width}px"><div id="host"></div>
<script>
window.__sent = [];
window.__state = {state};
for (const k of {binary}) {{
  const s = atob(window.__state[k]); const u = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
  window.__state[k] = new DataView(u.buffer);
}}
const handlers = {{}};
window.__model = {{
  get: (k) => window.__state[k],
  set: (k, v) => {{ window.__state[k] = v; (window.__pending = window.__pending || {{}})[k] = v; }},
  save_changes: () => {{
    const p = window.__pending || {{}}; window.__pending = {{}};
    window.__saved = Object.assign(window.__saved || {{}}, p);
    for (const k in p) for (const f of (handlers["change:" + k] || [])) f();
  }},
  on: (ev, f) => {{ (handlers[ev] = handlers[ev] || []).push(f); }},
  off: (ev, f) => {{ handlers[ev] = (handlers[ev] || []).filter((g) => g !== f); }},
  send: (content) => {{ window.__sent.push(JSON.parse(JSON.stringify(content))); }},
}};
window.__push = (changes) => {{  // the kernel's side of a state update
  for (const [k, v] of Object.entries(changes)) window.__state[k] = v;
  for (const k in changes) for (const f of (handlers["change:" + k] || [])) f();
}};
window.__pushBinary = (k, b64) => {{
  const s = atob(b64); const u = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
  window.__state[k] = new DataView(u.buffer);
}};
</script>
<script type="module">
const src = {esm};
const url = URL.createObjectURL(new Blob([src], {{type: "text/javascript"}}));
const mod = await import(url);
const t0 = performance.now();
mod.default.render({{ model: window.__model, el: document.getElementById("host") }});
window.__renderMs = performance.now() - t0;
window.__ready = true;
</script></body></html>"""


def widget_state(w: Any) -> tuple[dict, list[str]]:
    """The widget's synced state as JSON, binary traits as base64 (and their names)."""
    state, binary = {}, []
    for name, v in w.get_state().items():
        if isinstance(v, bytes | bytearray | memoryview):
            state[name] = base64.b64encode(bytes(v)).decode("ascii")
            binary.append(name)
        else:
            state[name] = v
    return state, binary


def mount(page: Any, w: Any, *, width: int = 900) -> None:
    """Open a page holding the anywidget ``w`` (its ``_esm`` and ``_css``) on a stub model."""
    state, binary = widget_state(w)
    esm, css = state.pop("_esm", w._esm), state.pop("_css", getattr(w, "_css", ""))
    html = _PAGE.format(
        css=css, width=width, state=json.dumps(state), binary=json.dumps(binary), esm=json.dumps(esm)
    )
    page.goto("about:blank")  # a fresh document: the page's globals start over
    page.set_content(html)
    page.wait_for_function("window.__ready === true")


def push(page: Any, w: Any, names: list[str]) -> None:
    """Send the current values of the traits ``names`` of ``w`` to the page (a kernel update)."""
    plain = {}
    for name in names:
        v = getattr(w, name)
        if isinstance(v, bytes | bytearray | memoryview):
            page.evaluate("([k, b]) => window.__pushBinary(k, b)", [name, base64.b64encode(bytes(v)).decode()])
            plain[name] = None
        else:
            plain[name] = v
    page.evaluate(
        "(ch) => { const c = {}; for (const k in ch) c[k] = ch[k] === null ? window.__state[k] : ch[k]; window.__push(c); }",
        plain,
    )


def replay(page: Any, w: Any, start: int = 0) -> int:
    """Deliver the page's messages from ``start`` on to ``w`` as the kernel would; returns the count."""
    sent = page.evaluate("window.__sent")
    for content in sent[start:]:
        for cb in w._msg_callbacks.callbacks:
            cb(w, content, [])
    return len(sent)
