// gapscope LoopBar (anywidget ESM): the LoopView's controls -- Retrain, a progress bar, the
// status line and "use the map's selection as the batch". Plain HTML, so it looks the same
// in JupyterLab and marimo; clicks go to the kernel as custom messages.

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

function render({ model, el }) {
  const root = h("div", "glb-root");
  const retrain = h("button", "glb-btn glb-retrain", "Retrain (r)");
  const bar = h("progress", "glb-progress");
  bar.max = 1;
  const status = h("span", "glb-status");
  const use = h("button", "glb-btn glb-use", "");
  root.append(retrain, bar, status, use);
  el.appendChild(root);

  function paint() {
    const busy = !!model.get("busy");
    retrain.disabled = busy;
    retrain.classList.toggle("glb-busy", busy);
    bar.value = model.get("progress") || 0;
    const s = model.get("status") || "";
    status.textContent = s;
    status.className = "glb-status" + (model.get("status_kind") === "error" ? " glb-error" : "");
    const n = model.get("n_selected") || 0;
    use.disabled = busy || n === 0;
    use.textContent = n ? `Use ${n} selected as the batch` : "Select on the map to choose a batch";
    root.dataset.busy = busy ? "1" : "0";
  }
  retrain.addEventListener("click", () => model.send({ type: "retrain" }));
  use.addEventListener("click", () => model.send({ type: "use_selection" }));
  const names = ["busy", "progress", "status", "status_kind", "n_selected"];
  for (const k of names) model.on("change:" + k, paint);
  paint();
  return () => { for (const k of names) model.off("change:" + k, paint); };
}

export default { render };
