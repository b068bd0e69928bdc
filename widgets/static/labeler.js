// gapscope Labeler front end (anywidget ESM). The kernel owns every decision: this module
// renders the synced state and sends keys / clicks as custom messages, which (unlike trait
// changes) are never merged by ipywidgets' outgoing throttle, so fast key presses all arrive.

const KEYS = new Set(["a", "x", " ", "Backspace", "f", "o",
  "ArrowRight", "ArrowLeft", "ArrowUp", "ArrowDown"]);

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

function preview(previews, id, cls) {
  const p = previews[id];
  if (p && p.src) {
    const img = h("img", cls);
    img.src = p.src;
    img.alt = id;
    return img;
  }
  return h("div", cls + " gl-text", p && p.text ? p.text : id);
}

function render({ model, el }) {
  const root = h("div", "gl-root");
  root.tabIndex = 0;
  const head = h("div", "gl-head");
  const title = h("span", "gl-title");
  const progress = h("span", "gl-progress");
  const acceptAll = h("button", "gl-btn gl-accept-all", "Accept all");
  const undoBtn = h("button", "gl-btn gl-undo", "Undo");
  const help = h("span", "gl-help",
    "a accept · x reject · space skip · ⌫ undo · f bias · o out of scope · 1-9 label · arrows move");
  head.append(title, progress, acceptAll, undoBtn, help);
  const msg = h("div", "gl-msg");
  const grid = h("div", "gl-grid");
  root.append(head, msg, grid);
  el.appendChild(root);

  let seq = 0;
  const session = Math.random().toString(36).slice(2, 10);
  let since = performance.now();
  let lastCursor = model.get("cursor");

  function send(content) {
    seq += 1;
    content.uid = session + ":" + seq;
    content.ms = Math.round(performance.now() - since);
    model.send(content);
  }

  function action(name, index, extra) {
    send(Object.assign({ type: "action", action: name, index: index }, extra || {}));
    root.focus();
  }

  function draw() {
    const items = model.get("items") || [];
    const states = model.get("states") || [];
    const previews = model.get("previews") || {};
    const labels = model.get("label_names") || [];
    const tags = model.get("tag_names") || [];
    const cursor = model.get("cursor");
    title.textContent = model.get("title") || "Labeler";
    progress.textContent = `${model.get("done")} / ${model.get("total")} done`;
    const m = model.get("message") || "";
    msg.textContent = m;
    msg.className = "gl-msg" + (model.get("message_kind") === "error" ? " gl-error" : "");
    msg.style.display = m ? "" : "none";
    grid.replaceChildren();
    items.forEach((it, i) => {
      const st = states[i] || {};
      const card = h("div", "gl-card");
      card.dataset.index = String(i);
      card.dataset.itemId = it.id;
      if (i === cursor) card.classList.add("gl-current");
      if (st.action) card.classList.add("gl-" + st.action);
      if (st.done) card.classList.add("gl-done");
      card.addEventListener("click", (e) => {
        if (e.target.closest("button,select")) return;
        action("goto", i);
      });
      const top = h("div", "gl-top");
      top.append(preview(previews, it.id, "gl-thumb"));
      const info = h("div", "gl-info");
      info.append(h("div", "gl-id", it.id));
      const ml = it.model_label === null || it.model_label === undefined ? "—" : it.model_label;
      const conf = it.confidence === null || it.confidence === undefined
        ? "" : ` ${(100 * it.confidence).toFixed(0)}%`;
      info.append(h("div", "gl-model", `model: ${ml}${conf}`));
      const badge = h("div", "gl-state", st.action
        ? st.action + (st.label ? ": " + st.label : "") : "open");
      info.append(badge);
      const flags = [];
      if (st.bias) flags.push("⚑ bias");
      if (st.oos) flags.push("⊘ out of scope");
      if (st.tags && st.tags.length) flags.push("# " + st.tags.join(", "));
      if (flags.length) info.append(h("div", "gl-flags", flags.join("  ")));
      top.append(info);
      card.append(top);
      if (it.exemplars && it.exemplars.length) {
        const ex = h("div", "gl-exemplars");
        it.exemplars.forEach((e) => {
          const box = h("div", "gl-ex");
          box.title = e.id;
          box.append(preview(previews, e.id, "gl-ex-thumb"));
          box.append(h("div", "gl-ex-label", e.label === null || e.label === undefined ? "?" : e.label));
          ex.append(box);
        });
        card.append(ex);
      }
      const bar = h("div", "gl-actions");
      const btn = (text, cls, name, tip) => {
        const b = h("button", "gl-btn " + cls, text);
        b.title = tip;
        b.addEventListener("click", () => action(name, i));
        bar.append(b);
      };
      btn("✓", "gl-b-accept", "accept", "accept (a)");
      btn("✗", "gl-b-reject", "reject", "reject (x)");
      btn("skip", "gl-b-skip", "skip", "skip (space)");
      btn("⚑", "gl-b-bias", "flag_bias", "bias flag (f)");
      btn("⊘", "gl-b-oos", "flag_out_of_scope", "out of scope (o)");
      const sel = h("select", "gl-relabel");
      sel.append(new Option("label…", ""));
      labels.forEach((l, k) => sel.append(new Option(`${k + 1} ${l}`, l)));
      sel.addEventListener("change", () => {
        if (sel.value) action("relabel", i, { label: sel.value });
      });
      bar.append(sel);
      card.append(bar);
      if (tags.length) {
        const tg = h("div", "gl-tags");
        tags.forEach((t) => {
          const chip = h("button", "gl-chip" + (st.tags && st.tags.includes(t) ? " gl-on" : ""), t);
          chip.addEventListener("click", () => action("tag", i, { tag: t }));
          tg.append(chip);
        });
        card.append(tg);
      }
      grid.append(card);
    });
    const cur = grid.children[cursor];
    if (cursor !== lastCursor) {
      since = performance.now();
      lastCursor = cursor;
      if (cur && cur.scrollIntoView) cur.scrollIntoView({ block: "nearest" });
    }
  }

  root.addEventListener("keydown", (e) => {
    const tag = e.target && e.target.tagName;
    if (tag === "SELECT" || tag === "INPUT" || tag === "TEXTAREA") {
      e.stopPropagation(); // the menu's own keys; not JupyterLab shortcuts, not labeler keys
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const k = e.key;
    if (!(KEYS.has(k) || /^[0-9]$/.test(k))) return;
    e.preventDefault();
    e.stopPropagation(); // keep JupyterLab's command-mode shortcuts (a, x, 1, ...) out of it
    // no index: the kernel applies keys in order to its own cursor, so fast typing
    // ("a a a") walks through the items even before the browser sees the cursor move
    send({ type: "key", key: k });
  });
  acceptAll.addEventListener("click", () => action("accept_all", model.get("cursor")));
  undoBtn.addEventListener("click", () => action("undo", model.get("cursor")));

  for (const name of ["items", "states", "previews", "cursor", "done", "total", "message",
    "message_kind", "label_names", "tag_names", "title"]) {
    model.on("change:" + name, draw);
  }
  draw();
  return () => {
    for (const name of ["items", "states", "previews", "cursor", "done", "total", "message",
      "message_kind", "label_names", "tag_names", "title"]) {
      model.off("change:" + name, draw);
    }
  };
}

export default { render };
