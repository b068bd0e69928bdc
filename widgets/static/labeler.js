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
    if (p.title) img.title = p.title;  // e.g. the values of a short vector drawn as bars
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
  const help = h("span", "gl-help");
  head.append(title, progress, acceptAll, undoBtn, help);
  const msg = h("div", "gl-msg");
  const grid = h("div", "gl-grid");
  root.append(head, msg, grid);
  el.appendChild(root);

  let seq = 0;
  const session = Math.random().toString(36).slice(2, 10);
  // one clock for every message: the kernel takes ms_on_item as the difference of two of
  // these timestamps, so the kernel's latency never enters the measured time
  const now = () => performance.timeOrigin + performance.now();

  function send(content) {
    seq += 1;
    content.uid = session + ":" + seq;
    content.t = now();
    model.send(content);
  }

  function action(name, index, extra) {
    send(Object.assign({ type: "action", action: name, index: index }, extra || {}));
    root.focus();
  }

  // The cards are built once per batch; a key press patches only the cards whose state
  // changed and the two whose cursor mark moved (a 200-item batch stays fast).
  let cards = [];
  let drawn = [];        // per card: the JSON of the state it shows
  let shownCursor = -1;

  // "Accept all" asks first: the kernel arms it on a first click (accept_all_confirm) and
  // acts on a second one within its seconds; the button shows the question meanwhile
  let confirmUntil = 0;
  let confirmTimer = null;
  function armed() {
    const c = model.get("accept_all_confirm") || {};
    return c.text && now() < confirmUntil ? c.text : "";
  }
  function onConfirm() {
    const c = model.get("accept_all_confirm") || {};
    confirmUntil = c.text ? now() + 1000 * (c.seconds || 4) : 0;
    if (confirmTimer) clearTimeout(confirmTimer);
    confirmTimer = c.text ? setTimeout(header, 1000 * (c.seconds || 4) + 20) : null;
    header();
  }

  function header() {
    title.textContent = model.get("title") || "Labeler";
    const ask = armed();
    acceptAll.textContent = ask || "Accept all";
    acceptAll.classList.toggle("gl-confirm", !!ask);
    progress.textContent = `${model.get("done")} / ${model.get("total")} done`;
    const m = model.get("message") || "";
    msg.textContent = m;
    msg.className = "gl-msg" + (model.get("message_kind") === "error" ? " gl-error" : "");
    msg.style.display = m ? "" : "none";
    const locked = !!model.get("locked");  // the batch takes no decisions now: dim it
    root.classList.toggle("gl-locked", locked);
    grid.style.opacity = locked ? "0.55" : "";
    const keys = model.get("label_keys") || [];
    const span = keys.filter((k) => k).join("");
    help.textContent = "a accept · x reject · space skip · ⌫ undo · f bias · o out of scope · "
      + (span ? `${keys.filter((k) => k)[0]}-${keys.filter((k) => k).slice(-1)[0]} label · ` : "")
      + "arrows move";
  }

  // what the badge says for each action (the store's kind names are not for people)
  const SHOWN = { flag_out_of_scope: "⊘ out of scope", skip: "skipped", reject: "rejected" };

  function paintState(card, st) {
    card.className = "gl-card" + (st.action ? " gl-" + st.action : "") + (st.done ? " gl-done" : "")
      + (card._synthetic ? " gl-synthetic" : "");
    const shown = SHOWN[st.action] || st.action;
    card._badge.textContent = st.action ? shown + (st.label ? ": " + st.label : "") : "open";
    const flags = [];
    if (st.bias) flags.push("⚑ bias");
    if (st.oos && st.action !== "flag_out_of_scope") flags.push("⊘ out of scope");
    if (st.tags && st.tags.length) flags.push("# " + st.tags.join(", "));
    card._flags.textContent = flags.join("  ");
    card._flags.style.display = flags.length ? "" : "none";
    card._chips.forEach((chip, t) => {
      chip.className = "gl-chip" + (st.tags && st.tags.includes(t) ? " gl-on" : "");
    });
  }

  function build() {
    const items = model.get("items") || [];
    const previews = model.get("previews") || {};
    const labels = model.get("label_names") || [];
    const keys = model.get("label_keys") || [];
    const tags = model.get("tag_names") || [];
    cards = items.map((it, i) => {
      const card = h("div", "gl-card");
      card.dataset.index = String(i);
      card.dataset.itemId = it.id;
      card._synthetic = !!it.synthetic;
      card.addEventListener("click", (e) => {
        if (e.target.closest("button,select")) return;
        action("goto", i);
      });
      const top = h("div", "gl-top");
      top.append(preview(previews, it.id, "gl-thumb"));
      const info = h("div", "gl-info");
      const idRow = h("div", "gl-id", it.id);
      if (it.synthetic) {  // a generated item: validate it (accept if it is what it claims)
        const b = h("span", "gl-synth-badge", "synthetic");
        b.title = "generated by the loop's generator: accept (a) if it looks like its label, reject (x) if not";
        idRow.append(" ", b);
      }
      info.append(idRow);
      const ml = it.model_label === null || it.model_label === undefined ? "—" : it.model_label;
      const cname = model.get("confidence_name") || "";
      const conf = it.confidence === null || it.confidence === undefined
        ? "" : ` ${(100 * it.confidence).toFixed(0)}%${cname ? " " + cname : ""}`;
      info.append(h("div", "gl-model", `${it.synthetic ? "generated as" : "model"}: ${ml}${conf}`));
      card._badge = h("div", "gl-state", "open");
      info.append(card._badge);
      card._flags = h("div", "gl-flags");
      info.append(card._flags);
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
      labels.forEach((l, k) => sel.append(new Option(keys[k] && keys[k] !== l ? `${keys[k]}  ${l}` : l, l)));
      sel.addEventListener("change", () => {
        if (sel.value) action("relabel", i, { label: sel.value });
      });
      bar.append(sel);
      card.append(bar);
      card._chips = new Map();
      if (tags.length) {
        const tg = h("div", "gl-tags");
        tags.forEach((t) => {
          const chip = h("button", "gl-chip", t);
          chip.addEventListener("click", () => action("tag", i, { tag: t }));
          card._chips.set(t, chip);
          tg.append(chip);
        });
        card.append(tg);
      }
      return card;
    });
    grid.replaceChildren(...cards);
    drawn = cards.map(() => null);
    shownCursor = -1;
    patch();
    if (items.length) send({ type: "shown", first: items[0].id });
  }

  function patch() {
    header();
    const states = model.get("states") || [];
    cards.forEach((card, i) => {
      const st = states[i] || {};
      const key = JSON.stringify(st);
      if (drawn[i] !== key) {
        paintState(card, st);
        drawn[i] = key;
        if (i === shownCursor) card.classList.add("gl-current");
      }
    });
    const cursor = model.get("cursor");
    if (cursor !== shownCursor) {
      if (cards[shownCursor]) cards[shownCursor].classList.remove("gl-current");
      const cur = cards[cursor];
      if (cur) {
        cur.classList.add("gl-current");
        if (cur.scrollIntoView) cur.scrollIntoView({ block: "nearest" });
      }
      shownCursor = cursor;
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
    if (!(KEYS.has(k) || /^[0-9]$/.test(k) || (model.get("extra_keys") || []).includes(k))) return;
    e.preventDefault();
    e.stopPropagation(); // keep JupyterLab's command-mode shortcuts (a, x, 1, ...) out of it
    // no index: the kernel applies keys in order to its own cursor, so fast typing
    // ("a a a") walks through the items even before the browser sees the cursor move
    const guess = predict(k);
    const move = predictMove(k);
    send({ type: "key", key: k });
    if (guess) showPending(guess.i, guess.kind);
    if (move !== null) showCursor(move);
  });

  // A decision shows on its card at once when nothing else is in flight (so the card under
  // the shown cursor is the one the kernel will decide): marked "saving" until the kernel
  // acknowledges the message; then the card is repainted from the kernel's state, which
  // also undoes the guess if the kernel refused the key.
  const DECISION = { a: "accept", x: "reject", o: "flag_out_of_scope", " ": "skip" };
  function ackedSeq() {
    const a = model.get("acked") || "";
    const cut = a.lastIndexOf(":");
    return a.slice(0, cut) === session ? Number(a.slice(cut + 1)) : 0;
  }
  function predict(k) {
    if (model.get("locked") || ackedSeq() !== seq) return null;
    const i = model.get("cursor");
    const items = model.get("items") || [];
    const it = items[i];
    const st = (model.get("states") || [])[i] || {};
    if (!it || !cards[i] || st.done || i !== shownCursor) return null;
    const ml = it.model_label === null || it.model_label === undefined ? null : String(it.model_label);
    if (k === "a") return ml === null ? null : { i, kind: "accept" };
    if (DECISION[k]) return { i, kind: DECISION[k] };
    if (/^[0-9]$/.test(k)) {
      const j = (model.get("label_keys") || []).indexOf(k);
      if (j < 0) return null;
      const name = String((model.get("label_names") || [])[j]);
      if (ml === null) return it.synthetic ? null : { i, kind: "label" };
      if (name === ml) return { i, kind: "accept" };
      return it.synthetic ? null : { i, kind: "correct" };
    }
    return null;
  }
  // arrows move the cursor mark at once (the kernel moves its cursor the same way: one
  // step, clamped); the kernel's cursor wins on the next patch
  const MOVES = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 };
  function predictMove(k) {
    if (!MOVES[k] || ackedSeq() !== seq || shownCursor !== model.get("cursor")) return null;
    const j = Math.max(0, Math.min(cards.length - 1, shownCursor + MOVES[k]));
    return j === shownCursor ? null : j;
  }
  function showCursor(j) {
    if (cards[shownCursor]) cards[shownCursor].classList.remove("gl-current");
    cards[j].classList.add("gl-current");
    if (cards[j].scrollIntoView) cards[j].scrollIntoView({ block: "nearest" });
    shownCursor = j;
  }
  let pendingTimer = null;
  function showPending(i, kind) {
    const card = cards[i];
    card.className = "gl-card gl-" + kind + " gl-done gl-pending" + (card._synthetic ? " gl-synthetic" : "")
      + (i === shownCursor ? " gl-current" : "");
    card._badge.textContent = "saving…";
    drawn[i] = null;  // repainted from the kernel's state on the next patch
    clearTimeout(pendingTimer);
    pendingTimer = setTimeout(patch, 3000);  // no answer: show what the kernel last said
  }
  acceptAll.addEventListener("click", () => action("accept_all", model.get("cursor")));
  undoBtn.addEventListener("click", () => action("undo", model.get("cursor")));

  const rebuildOn = ["items", "previews", "label_names", "label_keys", "tag_names", "confidence_name"];
  const patchOn = ["states", "cursor", "done", "total", "message", "message_kind", "title", "locked", "acked"];
  for (const name of rebuildOn) model.on("change:" + name, build);
  for (const name of patchOn) model.on("change:" + name, patch);
  model.on("change:accept_all_confirm", onConfirm);
  build();
  onConfirm();
  return () => {
    for (const name of rebuildOn) model.off("change:" + name, build);
    for (const name of patchOn) model.off("change:" + name, patch);
    model.off("change:accept_all_confirm", onConfirm);
    if (confirmTimer) clearTimeout(confirmTimer);
  };
}

export default { render };
