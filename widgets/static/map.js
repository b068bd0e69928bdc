// gapscope LatentMap front end (anywidget ESM): a canvas scatter for 10^2 .. 10^6 points.
//
// The kernel sends the points as binary traits (xy float32 pairs, colours RGBA bytes, one
// flag byte per point) and owns the colouring, the legend and the selection's meaning; this
// module draws them into an ImageData (one pass over typed arrays: no per-point objects;
// at 10^6 points a pan or zoom moves the last raster and the new one is made in slices, so
// no frame waits for a full raster), draws the density contours the kernel computed over
// them, finds the hovered point through a grid index, and turns a box or lasso drag into a
// bitmask of the points inside (the same grid skips the cells wholly inside or outside the
// shape), sent as one custom message on mouse-up (custom messages are never merged by
// ipywidgets' throttle, so no selection is lost).

const FLAG_LABELED = 1, FLAG_SYNTHETIC = 2, FLAG_BATCH = 4;

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

// a binary trait as bytes: ipywidgets gives a DataView, others an ArrayBuffer, a typed
// array or (in some hosts) base64 text
function bytesOf(v) {
  if (!v) return new Uint8Array(0);
  if (v instanceof DataView) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (typeof v === "string") {
    const s = atob(v);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  if (Array.isArray(v)) return Uint8Array.from(v);
  return new Uint8Array(0);
}

function float32Of(v) {
  const b = bytesOf(v);
  if (b.byteOffset % 4 === 0) return new Float32Array(b.buffer, b.byteOffset, b.byteLength >> 2);
  return new Float32Array(b.slice().buffer);  // unaligned view: copy once
}

function b64(bytes) {
  let s = "";
  const step = 0x8000;
  for (let i = 0; i < bytes.length; i += step) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + step));
  }
  return btoa(s);
}

function render({ model, el }) {
  const root = h("div", "gm-root");
  root.tabIndex = 0;
  const bar = h("div", "gm-bar");
  const title = h("span", "gm-title");
  const modes = {};
  for (const [m, label, tip] of [
    ["box", "Box", "drag a rectangle (shift adds)"],
    ["lasso", "Lasso", "draw around points (shift adds)"],
    ["pan", "Pan", "drag to move; the wheel zooms anywhere"],
  ]) {
    const b = h("button", "gm-btn gm-mode-" + m, label);
    b.title = tip;
    b.addEventListener("click", () => { mode = m; paintBar(); root.focus({ preventScroll: true }); });
    modes[m] = b;
  }
  const reset = h("button", "gm-btn gm-reset", "Reset view");
  const clear = h("button", "gm-btn gm-clear", "Clear selection");
  const colorLab = h("label", "gm-colorby", "colour by ");
  const colorSel = h("select", "gm-colorsel");
  colorLab.appendChild(colorSel);
  const count = h("span", "gm-count");
  bar.append(title, modes.box, modes.lasso, modes.pan, reset, clear, colorLab, count);
  const body = h("div", "gm-body");
  const stage = h("div", "gm-stage");
  const base = h("canvas", "gm-canvas");
  const over = h("canvas", "gm-overlay");
  const tip = h("div", "gm-tip");
  stage.append(base, over, tip);
  const side = h("div", "gm-side");
  const legend = h("div", "gm-legend");
  const preview = h("div", "gm-preview");
  side.append(legend, preview);
  body.append(stage, side);
  root.append(bar, body);
  el.appendChild(root);

  let mode = "box";
  let xy = new Float32Array(0), colors = new Uint8Array(0), flags = new Uint8Array(0);
  let n = 0;
  let selected = new Uint8Array(0);  // 0/1 per point
  let nSelected = 0;
  let shapes = [];  // outlines of the current selection, in data units
  let proposal = [];
  let bounds = [0, 1, 0, 1];  // data x0, x1, y0, y1 of the full view
  let view = null;  // current x0, x1, y0, y1
  let W = 300, H = 200, dpr = 1;
  let hoverIndex = -1;
  let densImg = null;
  let contourXY = new Float32Array(0);  // contour polylines, (x, y) pairs, NaN between lines
  // grid index for hover: points bucketed into G x G cells of the full bounds
  const G = 128;
  let cellStart = new Int32Array(G * G + 1), cellItems = new Int32Array(0);

  const now = () => performance.timeOrigin + performance.now();

  function paintBar() {
    for (const m in modes) modes[m].classList.toggle("gm-on", m === mode);
    stage.style.cursor = mode === "pan" ? "grab" : "crosshair";
  }

  function loadPoints() {
    xy = float32Of(model.get("xy_bytes"));
    n = xy.length >> 1;
    if (selected.length !== n) { selected = new Uint8Array(n); nSelected = 0; shapes = []; }
    packedDirty = true;
    rasterMs = Infinity; rasterRuns = 0;
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < n; i++) {
      const x = xy[2 * i], y = xy[2 * i + 1];
      if (x < x0) x0 = x; if (x > x1) x1 = x;
      if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
    if (!(x1 > x0)) { x0 -= 0.5; x1 += 0.5; }
    if (!(y1 > y0)) { y0 -= 0.5; y1 += 0.5; }
    const px = 0.04 * (x1 - x0), py = 0.04 * (y1 - y0);
    bounds = [x0 - px, x1 + px, y0 - py, y1 + py];
    view = bounds.slice();
    // counting sort of the points into the grid cells
    const cell = new Int32Array(n);
    const counts = new Int32Array(G * G + 1);
    for (let i = 0; i < n; i++) {
      const cx = Math.min(G - 1, Math.max(0, Math.floor((xy[2 * i] - bounds[0]) / (bounds[1] - bounds[0]) * G)));
      const cy = Math.min(G - 1, Math.max(0, Math.floor((xy[2 * i + 1] - bounds[2]) / (bounds[3] - bounds[2]) * G)));
      cell[i] = cy * G + cx;
      counts[cell[i] + 1]++;
    }
    for (let c = 0; c < G * G; c++) counts[c + 1] += counts[c];
    cellStart = counts.slice();
    cellItems = new Int32Array(n);
    const fill = counts.slice();
    for (let i = 0; i < n; i++) cellItems[fill[cell[i]]++] = i;
  }

  function loadColors() { colors = bytesOf(model.get("colors")).slice(); packedDirty = true; }
  function loadFlags() { flags = bytesOf(model.get("flags")).slice(); indexMarks(); }

  function loadSelection() {
    const bits = bytesOf(model.get("selection"));
    selected = new Uint8Array(n);
    nSelected = 0;
    for (let i = 0; i < n; i++) {
      if (bits[i >> 3] & (1 << (i & 7))) { selected[i] = 1; nSelected++; }
    }
    shapes = [];
    packedDirty = true;
  }

  function loadDensity() {
    const d = model.get("density") || {};
    const g = bytesOf(model.get("density_grid"));
    const gs = d.size || 0;
    if (!gs || g.length !== gs * gs) { densImg = null; return; }
    const c = document.createElement("canvas");
    c.width = gs; c.height = gs;
    const ctx = c.getContext("2d");
    const img = ctx.createImageData(gs, gs);
    for (let j = 0; j < gs; j++) {
      for (let i = 0; i < gs; i++) {
        const v = g[j * gs + i];  // row j = y index (bottom first), quantised levels 0..8
        const o = 4 * ((gs - 1 - j) * gs + i);  // canvas rows run top-down
        img.data[o] = 70; img.data[o + 1] = 95; img.data[o + 2] = 140;
        img.data[o + 3] = Math.round(v * 9);
      }
    }
    ctx.putImageData(img, 0, 0);
    densImg = { canvas: c, extent: d.extent };
  }

  function loadContours() { contourXY = float32Of(model.get("contours_xy")); }

  function drawContours(ctx) {  // over the points: a light halo under a dark line, seen on any colour
    const c = contourXY;
    if (c.length < 4) return;
    ctx.beginPath();
    let pen = false;
    for (let k = 0; k + 1 < c.length; k += 2) {
      const x = c[k], y = c[k + 1];
      if (x !== x) { pen = false; continue; }  // NaN: the next line starts
      const px = sx(x), py = sy(y);
      if (pen) ctx.lineTo(px, py); else { ctx.moveTo(px, py); pen = true; }
    }
    ctx.lineJoin = "round";
    ctx.strokeStyle = "rgba(255,255,255,0.7)"; ctx.lineWidth = 2.6; ctx.stroke();
    ctx.strokeStyle = "rgba(25,30,45,0.8)"; ctx.lineWidth = 1; ctx.stroke();
  }

  function sx(x) { return (x - view[0]) / (view[1] - view[0]) * W; }
  function sy(y) { return (1 - (y - view[2]) / (view[3] - view[2])) * H; }
  function dx(px) { return view[0] + px / W * (view[1] - view[0]); }
  function dy(py) { return view[2] + (1 - py / H) * (view[3] - view[2]); }

  function resize() {
    const want = model.get("width") || 0;
    const sideW = side.offsetWidth || 0;
    const avail = Math.max(240, (root.clientWidth || 600) - Math.max(sideW, 170) - 32);
    W = want > 0 ? want : Math.min(avail, 1400);
    H = model.get("height") || 420;
    dpr = window.devicePixelRatio || 1;
    let changed = false;
    for (const c of [base, over]) {  // setting a canvas' size clears it: only on a change
      const cw = Math.round(W * dpr), ch = Math.round(H * dpr);
      if (c.width !== cw || c.height !== ch) { c.width = cw; c.height = ch; changed = true; }
      c.style.width = W + "px"; c.style.height = H + "px";
    }
    stage.style.width = W + "px"; stage.style.height = H + "px";
    return changed;
  }

  let drawQueued = false;
  function requestDraw() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(() => { drawQueued = false; draw(); });
  }

  // the drawn colour of each point (ABGR as the canvas' bytes read on little-endian
  // machines), dimmed when a selection leaves it out; rebuilt when colours or the selection
  // change, not per frame
  let packed = new Uint32Array(0), packedDirty = true;
  let selList = [];  // the selected points while there are few enough to ring
  function repack() {
    if (packed.length !== n) packed = new Uint32Array(n);
    const hasC = colors.length >= 4 * n, anySel = nSelected > 0;
    for (let i = 0; i < n; i++) {
      const o = 4 * i;
      let R = hasC ? colors[o] : 31, Gc = hasC ? colors[o + 1] : 119, B = hasC ? colors[o + 2] : 180;
      if (anySel && !selected[i]) { R = (R + 3 * 235) >> 2; Gc = (Gc + 3 * 235) >> 2; B = (B + 3 * 235) >> 2; }
      packed[i] = ((255 << 24) | (B << 16) | (Gc << 8) | R) >>> 0;
    }
    selList = [];
    if (nSelected <= 500) for (let i = 0; i < n && selList.length < nSelected; i++) if (selected[i]) selList.push(i);
    packedDirty = false;
  }
  // indices of the points with each mark flag (rebuilt with the flags)
  let markIdx = {};
  function indexMarks() {
    markIdx = {};
    for (const bit of [FLAG_LABELED, FLAG_SYNTHETIC, FLAG_BATCH]) {
      let k = 0;
      for (let i = 0; i < n; i++) if (flags[i] & bit) k++;
      const idx = new Int32Array(k);
      k = 0;
      for (let i = 0; i < n; i++) if (flags[i] & bit) idx[k++] = i;
      markIdx[bit] = idx;
    }
  }

  // The points are rasterised into their own transparent layer (an ImageData we own, put
  // into an offscreen canvas), then composited over the white background and the density
  // shading: no read-back of the visible canvas. Where a full raster takes longer than
  // REPROJECT_MS (10^6 points), the frames of a pan or a wheel zoom move and scale the last
  // raster instead; once the pointer is released or rests SETTLE_MS, the new raster is made
  // in slices over a few frames (the moved one stays on screen meanwhile) and then shown.
  const REPROJECT_MS = 6, SETTLE_MS = 120, SLICE_MS = 6;
  const layer = document.createElement("canvas");
  let layerImg = null, layerView = null;  // the last raster and its view
  let backImg = null, back = null;  // the raster being made in slices: {view, next, drawn}
  // the fastest full raster since the points or the canvas size changed (the first ones run
  // before the JIT has warmed up)
  let rasterMs = Infinity, rasterRuns = 0, lastMove = -Infinity, settleTimer = null;

  function touch() { lastMove = performance.now(); }
  function interacting() {
    return (drag && drag.kind === "pan") || performance.now() - lastMove < SETTLE_MS;
  }
  function settleLater() {  // a redraw once the pan or the wheel pauses
    if (settleTimer) return;
    const tick = () => {
      const idle = performance.now() - lastMove;
      if (idle >= SETTLE_MS && !(drag && drag.kind === "pan")) { settleTimer = null; requestDraw(); }
      else settleTimer = setTimeout(tick, Math.max(10, SETTLE_MS - idle));
    };
    settleTimer = setTimeout(tick, SETTLE_MS);
  }

  function pointRadius() {  // in device pixels; 0 is one pixel (beyond 5 * 10^5 points on a 1x screen)
    if (n > 500000) return Math.floor(0.6 * dpr);
    return Math.max(1, Math.round((n > 200000 ? 1 : n > 20000 ? 1.5 : n > 2000 ? 2.5 : 3.5) * dpr));
  }

  // points i0 .. i1 - 1 at view v into px32 (bw x bh, ABGR); later points cover earlier ones
  function rasterRange(px32, bw, bh, v, i0, i1) {
    const r = pointRadius();
    // a disc of radius r: the half-width of each of its 2r + 1 rows
    const half = new Int32Array(2 * r + 1);
    for (let oy = -r; oy <= r; oy++) {
      let w = 0;
      while ((w + 1) * (w + 1) + oy * oy <= r * r + r) w++;
      half[oy + r] = w;
    }
    const kx = bw / (v[1] - v[0]), ky = bh / (v[3] - v[2]);
    const vx0 = v[0], vy1 = v[3];
    const inX = bw - r, inY = bh - r;
    const P = packed, X = xy;  // locals: the loop must not re-read closure slots
    let drawn = 0;
    for (let i = i0, j = 2 * i0; i < i1; i++, j += 2) {
      // floor(v + 0.5) is Math.round for these values, and 2-3x faster in V8's loops
      const cx = Math.floor((X[j] - vx0) * kx + 0.5);
      const cy = Math.floor((vy1 - X[j + 1]) * ky + 0.5);
      if (cx < -r || cy < -r || cx >= bw + r || cy >= bh + r) continue;
      drawn++;
      const c = P[i];
      if (cx >= r && cy >= r && cx < inX && cy < inY) {  // the whole disc is on the canvas
        let o = (cy - r) * bw + cx;
        if (r === 0) {
          px32[o] = c;
        } else if (r === 1) {  // 3 x 3, unrolled: the 10^5 .. 10^6 case
          px32[o - 1] = c; px32[o] = c; px32[o + 1] = c; o += bw;
          px32[o - 1] = c; px32[o] = c; px32[o + 1] = c; o += bw;
          px32[o - 1] = c; px32[o] = c; px32[o + 1] = c;
        } else {
          for (let q = 0; q <= 2 * r; q++, o += bw) {
            const w = half[q];
            for (let x = o - w; x <= o + w; x++) px32[x] = c;
          }
        }
      } else {  // at an edge: clip each pixel
        for (let q = 0; q <= 2 * r; q++) {
          const y = cy - r + q;
          if (y < 0 || y >= bh) continue;
          const w = half[q];
          for (let x = Math.max(0, cx - w); x <= Math.min(bw - 1, cx + w); x++) px32[y * bw + x] = c;
        }
      }
    }
    return drawn;
  }

  function sizeLayer(bw, bh) {
    if (layerImg && layerImg.width === bw && layerImg.height === bh) return;
    layer.width = bw; layer.height = bh;
    layerImg = new ImageData(bw, bh);
    backImg = new ImageData(bw, bh);
    layerView = null; back = null;
    rasterMs = Infinity; rasterRuns = 0;
  }

  function showRaster(img, v) {  // img becomes the layer (the old one is the next back buffer)
    ctx2d(layer).putImageData(img, 0, 0);
    if (img === backImg) { backImg = layerImg; layerImg = img; }
    layerView = v.slice();
  }

  function rasterise(bw, bh) {  // all points at the current view into the layer; the count drawn
    if (packedDirty) repack();
    sizeLayer(bw, bh);
    back = null;
    const px32 = new Uint32Array(layerImg.data.buffer);
    px32.fill(0);
    const t = performance.now();
    const k = rasterRange(px32, bw, bh, view, 0, n);
    showRaster(layerImg, view);
    timeRaster(t);
    return k;
  }

  // one slice of the raster for the current view into the back buffer; true once it is shown
  function rasterSlice(bw, bh) {
    if (!back || back.view.some((x, i) => x !== view[i])) {
      back = { view: view.slice(), next: 0, drawn: 0 };
      new Uint32Array(backImg.data.buffer).fill(0);
    }
    const step = Math.ceil(n / Math.max(1, Math.ceil(rasterMs / SLICE_MS)));
    const i1 = Math.min(n, back.next + step);
    back.drawn += rasterRange(new Uint32Array(backImg.data.buffer), bw, bh, back.view, back.next, i1);
    back.next = i1;
    if (i1 < n) return false;
    showRaster(backImg, back.view);
    drawn = back.drawn;
    back = null;
    return true;
  }

  function ctx2d(c) { return c.getContext("2d"); }

  // time the full raster; the first runs are slow (cold JIT), so raster again (same view,
  // same pixels) when the page is idle until a warm run has been timed
  const whenIdle = window.requestIdleCallback || ((f) => setTimeout(f, 200));
  function timeRaster(t1) {
    rasterMs = Math.min(rasterMs, performance.now() - t1);
    if (++rasterRuns < 3 && rasterMs > REPROJECT_MS) {
      whenIdle(() => {
        if (packedDirty || interacting() || back || !layerView || layerView.some((x, i) => x !== view[i])
            || layer.width !== base.width || layer.height !== base.height) return;
        rasterise(layer.width, layer.height);
      });
    }
  }

  function background(ctx) {  // white, and the density shading under the points
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, base.width, base.height);
    if (densImg && densImg.extent) {
      const [ex0, ex1, ey0, ey1] = densImg.extent;
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(densImg.canvas, sx(ex0) * dpr, sy(ey1) * dpr,
        (sx(ex1) - sx(ex0)) * dpr, (sy(ey0) - sy(ey1)) * dpr);
    }
  }

  function composeMoved(ctx, bw, bh) {  // the last raster, moved and scaled from its view to this one
    const kx = bw / (view[1] - view[0]), ky = bh / (view[3] - view[2]);
    const scx = (layerView[1] - layerView[0]) / (view[1] - view[0]);
    const scy = (layerView[3] - layerView[2]) / (view[3] - view[2]);
    ctx.imageSmoothingEnabled = scx < 1;
    ctx.drawImage(layer, (layerView[0] - view[0]) * kx, (view[3] - layerView[3]) * ky, bw * scx, bh * scy);
  }

  let drawn = 0, lastMoved = false;
  function draw() {
    const t0 = performance.now();
    const ctx = ctx2d(base);
    const bw = base.width, bh = base.height;
    const slow = rasterMs > REPROJECT_MS && rasterMs < Infinity && !packedDirty && layerView !== null
      && layer.width === bw && layer.height === bh;
    background(ctx);
    let frame = "full";
    if (!packedDirty && layerView !== null && layer.width === bw && layer.height === bh
        && layerView.every((x, i) => x === view[i])) {  // the raster is still right: show it
      frame = "same";
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(layer, 0, 0);
    } else if (slow && interacting()) {
      composeMoved(ctx, bw, bh);
      frame = "moved";
      settleLater();
    } else if (slow && layerView.some((x, i) => x !== view[i])) {
      frame = "slice";
      if (rasterSlice(bw, bh)) {
        ctx.imageSmoothingEnabled = false;
        ctx.drawImage(layer, 0, 0);
      } else {
        composeMoved(ctx, bw, bh);
        requestDraw();  // the next slice in the next frame
      }
    } else {
      drawn = rasterise(bw, bh);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(layer, 0, 0);
    }
    lastMoved = frame === "moved" || frame === "slice";
    const r = pointRadius();
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    drawContours(ctx);
    // marks: labeled (dark ring), synthetic (orange diamond), batch (blue square), selected (magenta ring)
    const rr = Math.max(3, r / dpr + 2.5);
    const marks = [
      [FLAG_LABELED, "#111", "ring"], [FLAG_SYNTHETIC, "#ff7f0e", "diamond"], [FLAG_BATCH, "#1f6feb", "square"],
    ];
    for (const [bit, color, kind] of marks) {
      ctx.strokeStyle = color; ctx.lineWidth = kind === "ring" ? 1.2 : 2;
      ctx.beginPath();
      let k = 0;
      const idx = markIdx[bit] || [];
      for (let j = 0; j < idx.length && k < 60000; j++) {
        const i = idx[j];
        const x = sx(xy[2 * i]), y = sy(xy[2 * i + 1]);
        if (x < -rr || y < -rr || x > W + rr || y > H + rr) continue;
        k++;
        if (kind === "ring") { ctx.moveTo(x + rr, y); ctx.arc(x, y, rr, 0, 2 * Math.PI); }
        else if (kind === "diamond") { const d = rr + 2; ctx.moveTo(x, y - d); ctx.lineTo(x + d, y); ctx.lineTo(x, y + d); ctx.lineTo(x - d, y); ctx.closePath(); }
        else { ctx.rect(x - rr - 1, y - rr - 1, 2 * rr + 2, 2 * rr + 2); }
      }
      ctx.stroke();
    }
    if (nSelected > 0 && nSelected <= 500) {  // more rings would hide the points: the rest is dimmed
      ctx.strokeStyle = "#e3007a"; ctx.lineWidth = 1.6;
      ctx.beginPath();
      for (const i of selList) {
        const x = sx(xy[2 * i]), y = sy(xy[2 * i + 1]);
        ctx.moveTo(x + rr + 1, y); ctx.arc(x, y, rr + 1, 0, 2 * Math.PI);
      }
      ctx.stroke();
    }
    if (proposal.length) {
      ctx.strokeStyle = "#d62728"; ctx.lineWidth = 2;
      ctx.beginPath();
      for (const [px, py] of proposal) {
        const x = sx(px), y = sy(py);
        ctx.moveTo(x - 4, y - 4); ctx.lineTo(x + 4, y + 4); ctx.moveTo(x + 4, y - 4); ctx.lineTo(x - 4, y + 4);
      }
      ctx.stroke();
    }
    base.dataset.drawn = String(drawn);  // points in the last full raster
    // full: all points rasterised; same: the last raster again; moved: the last raster moved;
    // slice: part of the next raster made (the last one moved meanwhile, or the new one shown)
    base.dataset.frame = frame;
    base.dataset.n = String(n);
    base.dataset.ms = (performance.now() - t0).toFixed(1);
    drawOverlay();
  }

  let drag = null;  // {kind, pts: [[px, py]...], start}
  function drawOverlay() {
    const ctx = over.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, over.width, over.height);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const outlines = shapes.map((sh) => sh.map(([x, y]) => [sx(x), sy(y)]));
    if (drag && drag.kind === "lasso") outlines.push(drag.pts);
    if (drag && drag.kind === "box" && drag.cur) {
      const [a, b] = [drag.start, drag.cur];
      outlines.push([a, [b[0], a[1]], b, [a[0], b[1]]]);
    }
    for (const outline of outlines) {
      if (outline.length < 2) continue;
      ctx.strokeStyle = "#e3007a"; ctx.setLineDash([5, 3]); ctx.lineWidth = 1.5;
      ctx.fillStyle = "rgba(227,0,122,0.06)";
      ctx.beginPath();
      ctx.moveTo(outline[0][0], outline[0][1]);
      for (const p of outline.slice(1)) ctx.lineTo(p[0], p[1]);
      ctx.closePath(); ctx.fill(); ctx.stroke(); ctx.setLineDash([]);
    }
    if (hoverIndex >= 0 && hoverIndex < n) {
      const x = sx(xy[2 * hoverIndex]), y = sy(xy[2 * hoverIndex + 1]);
      ctx.strokeStyle = "#000"; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.arc(x, y, 7, 0, 2 * Math.PI); ctx.stroke();
    }
  }

  function paintTitle() {
    title.textContent = model.get("title") || "";
    count.textContent = nSelected ? `${nSelected.toLocaleString()} of ${n.toLocaleString()} selected`
      : `${n.toLocaleString()} points`;
  }

  function paintColorBy() {
    const opts = model.get("color_options") || [];
    const cur = model.get("color_by");
    colorSel.replaceChildren(...opts.map((o) => { const e = h("option", null, o); e.value = o; return e; }));
    colorSel.value = cur;
  }

  function paintLegend() {
    const lg = model.get("legend") || {};
    legend.replaceChildren();
    if (lg.title) {
      const t = h("div", "gm-legend-title", lg.title);
      if (lg.scale === "log") t.appendChild(h("span", "gm-scale", " (log scale)"));
      legend.appendChild(t);
    }
    if (lg.kind === "categorical") {
      for (const [name, color, cnt] of lg.items || []) {
        const row = h("div", "gm-legend-row");
        const sw = h("span", "gm-swatch"); sw.style.background = color;
        row.append(sw, h("span", "gm-legend-name", String(name)), h("span", "gm-legend-count", cnt == null ? "" : Number(cnt).toLocaleString()));
        legend.appendChild(row);
      }
    } else if (lg.kind === "continuous") {
      const barEl = h("div", "gm-colorbar");
      barEl.style.background = `linear-gradient(to right, ${(lg.colors || []).join(",")})`;
      const ticks = h("div", "gm-ticks");
      ticks.append(h("span", null, lg.lo), h("span", null, lg.hi));
      legend.append(barEl, ticks);
    }
    const mass = (model.get("density") || {}).mass || [];
    if (mass.length) {
      const row = h("div", "gm-contour-key");
      const pct = mass.map((p) => Math.round(100 * p)).join(", ") + "%";
      row.title = `density contours: the lines around ${pct} of the points`;
      row.append(h("div", null, ""), h("div", "gm-contour-pct", "around " + pct + " of points"));
      row.firstChild.append(h("span", "gm-mk gm-mk-contour"), "density contours");
      legend.appendChild(row);
    }
    const marks = h("div", "gm-marks");
    marks.innerHTML = '<div><span class="gm-mk gm-mk-lab"></span> labeled</div><div><span class="gm-mk gm-mk-syn"></span> synthetic</div>'
      + '<div><span class="gm-mk gm-mk-batch"></span> batch</div><div><span class="gm-mk gm-mk-sel"></span> selected</div>';
    legend.appendChild(marks);
  }

  function paintPreview() {
    const p = model.get("hover_info") || {};
    preview.replaceChildren();
    if (p.id === undefined) { preview.appendChild(h("div", "gm-hint", "hover a point to preview it")); return; }
    if (p.src) { const img = h("img", "gm-thumb"); img.src = p.src; img.alt = String(p.id); preview.appendChild(img); }
    if (p.text) preview.appendChild(h("div", "gm-text", p.text));
    preview.appendChild(h("div", "gm-id", "item " + p.id));
    for (const line of p.lines || []) preview.appendChild(h("div", "gm-line", line));
  }

  // ------------------------------------------------------------------ hover
  function nearest(px, py, radiusPx) {
    const x = dx(px), y = dy(py);
    const rx = radiusPx / W * (view[1] - view[0]), ry = radiusPx / H * (view[3] - view[2]);
    const gx0 = Math.max(0, Math.floor((x - rx - bounds[0]) / (bounds[1] - bounds[0]) * G));
    const gx1 = Math.min(G - 1, Math.floor((x + rx - bounds[0]) / (bounds[1] - bounds[0]) * G));
    const gy0 = Math.max(0, Math.floor((y - ry - bounds[2]) / (bounds[3] - bounds[2]) * G));
    const gy1 = Math.min(G - 1, Math.floor((y + ry - bounds[2]) / (bounds[3] - bounds[2]) * G));
    let best = -1, bd = Infinity, scanned = 0;
    for (let cy = gy0; cy <= gy1 && scanned < 200000; cy++) {
      for (let cx = gx0; cx <= gx1; cx++) {
        const c = cy * G + cx;
        for (let k = cellStart[c]; k < cellStart[c + 1]; k++) {
          const i = cellItems[k];
          scanned++;
          const ddx = (sx(xy[2 * i]) - px), ddy = (sy(xy[2 * i + 1]) - py);
          const d = ddx * ddx + ddy * ddy;
          if (d < bd) { bd = d; best = i; }
        }
      }
    }
    return bd <= radiusPx * radiusPx ? best : -1;
  }

  let hoverTimer = null;
  function setHover(i, px, py) {
    if (i === hoverIndex) return;
    hoverIndex = i;
    drawOverlay();
    // a drag or leaving the plot cancels a hover not yet sent: it would queue in the kernel
    // ahead of the selection
    if (i < 0) { clearTimeout(hoverTimer); tip.style.display = "none"; return; }
    tip.style.display = "block";
    tip.style.left = Math.min(W - 80, px + 12) + "px";
    tip.style.top = Math.max(0, py - 24) + "px";
    tip.textContent = "#" + i;
    clearTimeout(hoverTimer);
    hoverTimer = setTimeout(() => model.send({ type: "hover", index: i, t: now() }), 60);
  }

  // ------------------------------------------------------------------ selection
  // Which points are inside poly (data units, even-odd rule): the 0/1 mask and its count.
  // The hover grid does most of the work: a cell no edge comes within a cell of lies wholly
  // inside or outside, so its points take its centre's answer; only the points of cells
  // near the outline are tested one by one (the same test, so the same answer as testing all).
  function pointsIn(poly) {
    const mask = new Uint8Array(n);
    const m = poly.length;
    const PX = new Float64Array(m), PY = new Float64Array(m);
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let k = 0; k < m; k++) {
      const x = poly[k][0], y = poly[k][1];
      PX[k] = x; PY[k] = y;
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
    const inside = (x, y) => {
      if (x < x0 || x > x1 || y < y0 || y > y1) return false;
      let c = false;
      for (let a = 0, b = m - 1; a < m; b = a++) {
        const ya = PY[a], yb = PY[b];
        if ((ya > y) !== (yb > y)) {
          const xa = PX[a], xb = PX[b];
          if (x < xa + (y - ya) * (xb - xa) / (yb - ya)) c = !c;
        }
      }
      return c;
    };
    // cells (in the hover grid over the full bounds) within one cell of an edge
    const cw = (bounds[1] - bounds[0]) / G, ch = (bounds[3] - bounds[2]) / G;
    const near = new Uint8Array(G * G);
    const mark = (cx, cy) => {
      for (let j = Math.max(0, cy - 1); j <= Math.min(G - 1, cy + 1); j++)
        for (let i = Math.max(0, cx - 1); i <= Math.min(G - 1, cx + 1); i++) near[j * G + i] = 1;
    };
    for (let a = 0, b = m - 1; a < m; b = a++) {
      const ua = (PX[a] - bounds[0]) / cw, va = (PY[a] - bounds[2]) / ch;
      const ub = (PX[b] - bounds[0]) / cw, vb = (PY[b] - bounds[2]) / ch;
      const vlo = Math.min(va, vb), vhi = Math.max(va, vb);
      for (let row = Math.max(-1, Math.floor(vlo)); row <= Math.min(G, Math.floor(vhi)); row++) {
        // the stretch of the edge inside this row of cells
        let ulo, uhi;
        if (vhi - vlo < 1e-12) { ulo = Math.min(ua, ub); uhi = Math.max(ua, ub); }
        else {
          const t0 = (Math.max(row, vlo) - va) / (vb - va), t1 = (Math.min(row + 1, vhi) - va) / (vb - va);
          const p = ua + t0 * (ub - ua), q = ua + t1 * (ub - ua);
          ulo = Math.min(p, q); uhi = Math.max(p, q);
        }
        for (let col = Math.max(-1, Math.floor(ulo)); col <= Math.min(G, Math.floor(uhi)); col++) mark(col, row);
      }
    }
    let cnt = 0;
    for (let cy = 0; cy < G; cy++) {
      const yc = bounds[2] + (cy + 0.5) * ch;
      for (let cx = 0; cx < G; cx++) {
        const c = cy * G + cx, k0 = cellStart[c], k1 = cellStart[c + 1];
        if (k0 === k1) continue;
        if (near[c]) {
          for (let k = k0; k < k1; k++) {
            const i = cellItems[k];
            if (inside(xy[2 * i], xy[2 * i + 1])) { mask[i] = 1; cnt++; }
          }
        } else if (inside(bounds[0] + (cx + 0.5) * cw, yc)) {
          for (let k = k0; k < k1; k++) mask[cellItems[k]] = 1;
          cnt += k1 - k0;
        }
      }
    }
    return [mask, cnt];
  }

  function finishSelection(kind, pts, additive) {
    let poly = pts.map(([px, py]) => [dx(px), dy(py)]);
    if (kind === "box") {
      const [a, b] = [poly[0], poly[poly.length - 1]];
      poly = [[a[0], a[1]], [b[0], a[1]], [b[0], b[1]], [a[0], b[1]]];
    }
    if (poly.length > 400) {  // a long lasso: keep every k-th vertex
      const k = Math.ceil(poly.length / 400);
      poly = poly.filter((_, j) => j % k === 0);
    }
    const [mask, cnt] = pointsIn(poly);
    const add = additive && nSelected > 0;
    const bits = new Uint8Array((n + 7) >> 3);
    let k = 0;
    for (let i = 0; i < n; i++) {
      if (add && selected[i]) mask[i] = 1;
      if (mask[i]) { bits[i >> 3] |= 1 << (i & 7); k++; }
    }
    selected = mask;
    packedDirty = true;
    nSelected = k;
    shapes = additive ? shapes.concat([poly]) : [poly];
    model.send({ type: "select", kind, additive: !!additive, shape: poly, bits: b64(bits), count: nSelected, inside: cnt, t: now() });
    paintTitle();
    requestDraw();
  }

  function clearSelection(send) {
    selected = new Uint8Array(n); nSelected = 0; shapes = []; packedDirty = true;
    if (send) model.send({ type: "select", kind: "clear", additive: false, shape: [], bits: "", count: 0, inside: 0, t: now() });
    paintTitle(); requestDraw();
  }

  function local(e) {
    const r = over.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  }

  over.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    over.setPointerCapture(e.pointerId);
    const p = local(e);
    const kind = mode === "pan" || e.altKey ? "pan" : mode;
    drag = { kind, pts: [p], start: p, view: view.slice(), additive: e.shiftKey };
    setHover(-1);
    e.preventDefault();
    root.focus({ preventScroll: true });  // focusing must not scroll the map under the pointer
  });
  over.addEventListener("pointermove", (e) => {
    const p = local(e);
    if (!drag) {
      setHover(nearest(p[0], p[1], 8), p[0], p[1]);
      return;
    }
    if (drag.kind === "pan") {
      const ddx = (p[0] - drag.start[0]) / W * (drag.view[1] - drag.view[0]);
      const ddy = (p[1] - drag.start[1]) / H * (drag.view[3] - drag.view[2]);
      view = [drag.view[0] - ddx, drag.view[1] - ddx, drag.view[2] + ddy, drag.view[3] + ddy];
      touch();
      requestDraw();
      return;
    }
    if (drag.kind === "box") drag.cur = p;
    else drag.pts.push(p);
    drawOverlay();
  });
  function endDrag(e) {
    if (!drag) return;
    const d = drag;
    drag = null;
    if (d.kind === "pan") { lastMove = -Infinity; if (lastMoved) requestDraw(); return; }
    const p = local(e);
    // how far the pointer went: a lasso closed where it began is a drag, not a click
    let moved = 0;
    for (const q of d.kind === "box" ? [p] : d.pts.concat([p])) {
      moved = Math.max(moved, Math.abs(q[0] - d.start[0]) + Math.abs(q[1] - d.start[1]));
    }
    if (moved < 3) { drawOverlay(); return; }  // a click, not a drag
    if (d.kind === "box") finishSelection("box", [d.start, p], d.additive);
    else if (d.pts.length >= 3) finishSelection("lasso", d.pts, d.additive);
  }
  over.addEventListener("pointerup", endDrag);
  over.addEventListener("pointercancel", () => { drag = null; drawOverlay(); });
  over.addEventListener("pointerleave", () => { if (!drag) setHover(-1); });
  over.addEventListener("dblclick", () => clearSelection(true));
  over.addEventListener("wheel", (e) => {
    e.preventDefault();
    const [px, py] = local(e);
    const f = Math.exp(Math.sign(e.deltaY) * 0.15);
    const x = dx(px), y = dy(py);
    view = [x - (x - view[0]) * f, x + (view[1] - x) * f, y - (y - view[2]) * f, y + (view[3] - y) * f];
    touch();
    requestDraw();
  }, { passive: false });
  root.addEventListener("keydown", (e) => {
    if (e.key === "Escape") { clearSelection(true); e.preventDefault(); }
  });
  reset.addEventListener("click", () => { view = bounds.slice(); requestDraw(); });
  clear.addEventListener("click", () => clearSelection(true));
  colorSel.addEventListener("change", () => { model.set("color_by", colorSel.value); model.save_changes(); });

  const handlers = {
    "change:xy_bytes": () => { loadPoints(); paintTitle(); requestDraw(); },
    "change:colors": () => { loadColors(); requestDraw(); },
    "change:flags": () => { loadFlags(); requestDraw(); },
    "change:selection_rev": () => { loadSelection(); paintTitle(); requestDraw(); },
    "change:proposal": () => { proposal = model.get("proposal") || []; requestDraw(); },
    "change:density_grid": () => { loadDensity(); requestDraw(); },
    "change:density": () => { loadDensity(); paintLegend(); requestDraw(); },
    "change:contours_xy": () => { loadContours(); requestDraw(); },
    "change:legend": paintLegend,
    "change:color_options": paintColorBy,
    "change:color_by": paintColorBy,
    "change:hover_info": paintPreview,
    "change:title": paintTitle,
    "change:width": () => { resize(); requestDraw(); },
    "change:height": () => { resize(); requestDraw(); },
  };
  for (const k in handlers) model.on(k, handlers[k]);

  loadPoints(); loadColors(); loadFlags(); loadSelection(); loadDensity(); loadContours();
  proposal = model.get("proposal") || [];
  paintBar(); paintTitle(); paintColorBy(); paintLegend(); paintPreview();
  resize(); draw();
  const ro = new ResizeObserver(() => {
    if ((model.get("width") || 0) > 0) return;
    if (resize()) requestDraw();
  });
  ro.observe(root);

  return () => {
    ro.disconnect();
    for (const k in handlers) model.off(k, handlers[k]);
  };
}

export default { render };
