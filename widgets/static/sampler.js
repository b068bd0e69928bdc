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

  const ordinal = (p) => {
    const k = Math.round(p);
    const s = (k % 100 >= 10 && k % 100 <= 20) ? "th" : ({ 1: "st", 2: "nd", 3: "rd" })[k % 10] || "th";
    return k + s;
  };

  // log-scale slider for positive floats over the [lo, hi] held in trait rangeName
  function logSlider(name, label, rangeName, show, hint) {
    const row = el("label", "gs-row");
    row.title = hint;
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
    const sync = () => { input.value = String(toPos(model.get(name))); val.textContent = show(model.get(name)); };
    input.addEventListener("input", () => {
      const v = fromPos(Number(input.value)); val.textContent = show(v); queue(name, v);
    });
    model.on("change:" + name, sync); model.on("change:" + rangeName, sync);
    sync();
    row.append(txt, input, val);
    return row;
  }

  const dims = () => model.get("density_dims");
  rows.append(logSlider("bandwidth", "bandwidth", "bandwidth_range", (v) => v.toPrecision(2) + " sd",
    "KDE bandwidth in standard deviations of the density space (the first " + dims() +
    " principal components of the latents, each scaled to unit variance)"));
  // eps: a percentile of the pool's density, 0-100
  {
    const row = el("label", "gs-row");
    row.title = "eps of 1/(p + eps): the p-th percentile of the pool's density. Items sparser " +
      "than it are preferred about equally; higher eps flattens the preference.";
    const input = el("input", "gs-eps");
    input.type = "range"; input.min = "0"; input.max = "100"; input.step = "1";
    const val = el("span", "gs-val");
    const show = (q) => ordinal(q) + " pct";
    const sync = () => { input.value = String(model.get("eps_percentile")); val.textContent = show(model.get("eps_percentile")); };
    input.addEventListener("input", () => {
      const q = Number(input.value); val.textContent = show(q); queue("eps_percentile", q);
    });
    model.on("change:eps_percentile", sync); sync();
    row.append(el("span", "gs-label", "eps"), input, val);
    rows.append(row);
  }
  rows.append(logSlider("temperature", "temperature", "temperature_range", (v) => v.toPrecision(2),
    "below 1 sharpens the preference for low density, above 1 flattens it towards uniform"));
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
  const title = el("div", "gs-title", "Low-density sampler");
  const sub = el("div", "gs-sub");
  const drawSub = () => { sub.textContent = "density: KDE on " + dims() + " principal components (standardised)"; };
  model.on("change:density_dims", drawSub); drawSub();
  root.append(title, sub, rows, btn, msg);
  host.appendChild(root);
}

export default { render };
