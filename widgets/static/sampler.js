// gapscope SamplerPanel front end (anywidget ESM): sliders are debounced (250 ms) and all
// settled values are sent together, so the kernel redraws the proposal once per pause.

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function render({ model, el: host }) {
  const root = el("div", "gs-sampler");
  const rows = el("div", "gs-rows");
  const msg = el("div", "gs-msg");
  const pending = {};
  let timer = null;

  function flush() {
    timer = null;
    for (const [k, v] of Object.entries(pending)) model.set(k, v);
    for (const k of Object.keys(pending)) delete pending[k];
    model.save_changes();
  }
  function queue(name, value) {
    pending[name] = value;
    if (timer) clearTimeout(timer);
    timer = setTimeout(flush, 250);
  }

  // log-scale slider for positive floats
  function logSlider(name, label, rangeName, digits) {
    const row = el("label", "gs-row");
    const txt = el("span", "gs-label", label);
    const input = el("input", "gs-" + name);
    input.type = "range"; input.min = "0"; input.max = "1000"; input.step = "1";
    const val = el("span", "gs-val");
    const toPos = (v) => {
      const [lo, hi] = model.get(rangeName);
      return Math.round(1000 * (Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)));
    };
    const fromPos = (p) => {
      const [lo, hi] = model.get(rangeName);
      return Math.exp(Math.log(lo) + (p / 1000) * (Math.log(hi) - Math.log(lo)));
    };
    const sync = () => { input.value = String(toPos(model.get(name))); val.textContent = model.get(name).toPrecision(digits); };
    input.addEventListener("input", () => {
      const v = fromPos(Number(input.value)); val.textContent = v.toPrecision(digits); queue(name, v);
    });
    model.on("change:" + name, sync); model.on("change:" + rangeName, sync);
    sync();
    row.append(txt, input, val);
    return row;
  }

  rows.append(logSlider("bandwidth", "bandwidth", "bandwidth_range", 3));
  rows.append(logSlider("eps", "eps", "eps_range", 2));
  // temperature: log slider over [0.05, 20]
  {
    const row = el("label", "gs-row");
    const input = el("input", "gs-temperature");
    input.type = "range"; input.min = "0"; input.max = "1000";
    const val = el("span", "gs-val");
    const lo = Math.log(0.05), hi = Math.log(20);
    const sync = () => {
      const t = model.get("temperature");
      input.value = String(Math.round(1000 * (Math.log(t) - lo) / (hi - lo)));
      val.textContent = t.toPrecision(3);
    };
    input.addEventListener("input", () => {
      const t = Math.exp(lo + (Number(input.value) / 1000) * (hi - lo));
      val.textContent = t.toPrecision(3); queue("temperature", t);
    });
    model.on("change:temperature", sync); sync();
    row.append(el("span", "gs-label", "temperature"), input, val);
    rows.append(row);
  }
  {
    const row = el("label", "gs-row");
    const input = el("input", "gs-count");
    input.type = "range"; input.min = "1"; input.step = "1";
    const val = el("span", "gs-val");
    const sync = () => {
      input.max = String(model.get("max_count"));
      input.value = String(model.get("count")); val.textContent = String(model.get("count"));
    };
    input.addEventListener("input", () => { val.textContent = input.value; queue("count", Number(input.value)); });
    model.on("change:count", sync); model.on("change:max_count", sync); sync();
    row.append(el("span", "gs-label", "count"), input, val);
    rows.append(row);
  }
  {
    const row = el("label", "gs-row");
    const sel = el("select", "gs-strategy");
    const sync = () => {
      sel.replaceChildren(...model.get("strategies").map((s) => new Option(s, s)));
      sel.value = model.get("strategy");
    };
    sel.addEventListener("change", () => queue("strategy", sel.value));
    model.on("change:strategy", sync); model.on("change:strategies", sync); sync();
    row.append(el("span", "gs-label", "strategy"), sel);
    rows.append(row);
  }
  const btn = el("button", "gs-make-batch", "Make batch");
  btn.addEventListener("click", () => { if (timer) { clearTimeout(timer); flush(); } model.send({ type: "make_batch" }); });
  const drawMsg = () => {
    msg.textContent = model.get("message");
    msg.className = "gs-msg" + (model.get("message_kind") === "error" ? " gs-error" : "");
  };
  model.on("change:message", drawMsg); model.on("change:message_kind", drawMsg); drawMsg();
  // keys on the sliders / menu belong to them: keep JupyterLab's command-mode shortcuts
  // (arrows collapse headings, 1-6 change cell types, ...) from seeing them
  root.addEventListener("keydown", (e) => e.stopPropagation());
  root.append(el("div", "gs-title", "Low-density sampler"), rows, btn, msg);
  host.appendChild(root);
}

export default { render };
