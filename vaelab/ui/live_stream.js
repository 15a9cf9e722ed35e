// The browser's side of the live stream (vaelab/ui/live_stream.py): one component per live region, mounted once
// while a run trains. It subscribes to the run's frames over the app server's WebSocket route and draws them:
// the progress line as text, the loss curves with Plotly (a curve grows by its new points: extendTraces), image
// grids and code maps on canvases from the frames' raw pixels and numbers. A region off screen, or a tab in the
// background, keeps the newest frame and draws it when it is seen. When the run stops training (finished, paused,
// failed) the component asks the page to redraw itself once: the page's still pictures take over.
"use strict";
const send = (type, data) => window.parent.postMessage({isStreamlitMessage: true, type, ...data}, "*");
const CLASS_COLORS = __CLASS_COLORS__;
const TERM_COLORS = __TERM_COLORS__;
const PAD = 1, PAD_GREY = 128;
let args = null, socket = null, started = false, plotlyReady = null, askedRerun = false, frameHeight = 0;
const pending = new Map();  // view -> newest undrawn frame
const drawnAt = new Map();  // view -> step drawn
const stats = {frames: 0, ages: [], bytes: 0, step: null};
window.__vaelabStream = stats;  // read by benchmarks and browser tests

function loadPlotly() {
  if (plotlyReady) return plotlyReady;
  let host = null;
  try { host = window.parent.document && window.parent; } catch (error) { host = null; }
  const shared = host || {};
  if (!shared.__vaelabPlotly) {
    shared.__vaelabPlotly = fetch("plotly.min.js").then(r => {
      if (!r.ok) throw new Error("plotly.min.js: HTTP " + r.status);
      return r.text();
    });
    shared.__vaelabPlotly.catch(() => { shared.__vaelabPlotly = null; });
  }
  plotlyReady = shared.__vaelabPlotly.then(source => {
    const script = document.createElement("script");
    script.textContent = source;
    document.head.appendChild(script);
  });
  return plotlyReady;
}

__LOAD_FONT__
const fontReady = loadFont();

// -- frames: a 4-byte big-endian header length, the JSON header, the arrays' bytes (vaelab/live_frames.py)
function halfToFloat(h) {
  const s = (h & 0x8000) ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
  if (e === 0) return s * Math.pow(2, -14) * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * Math.pow(2, e - 15) * (1 + f / 1024);
}
function decode(buffer) {
  const view = new DataView(buffer);
  const length = view.getUint32(0, false);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, length)));
  const body = 4 + length, arrays = {};
  for (const spec of header.arrays) {
    const start = body + spec.offset, bytes = buffer.slice(start, start + spec.nbytes);
    let data;
    if (spec.dtype === "uint8") data = new Uint8Array(bytes);
    else if (spec.dtype === "float32") data = new Float32Array(bytes);
    else if (spec.dtype === "int64") data = Array.from(new BigInt64Array(bytes), Number);
    else if (spec.dtype === "float16") data = Float32Array.from(new Uint16Array(bytes), halfToFloat);
    arrays[spec.name] = {data, shape: spec.shape};
  }
  return {view: header.view, step: header.step, madeAt: header.made_at, meta: header.meta || {}, arrays};
}

// -- regions
function regionOf(view) { return args.regions.find(r => r.view === view); }
function build() {
  const root = document.getElementById("root");
  root.style.gridTemplateColumns = args.columns.map(c => c + "fr").join(" ");
  for (const region of args.regions) {
    const cell = document.createElement("div");
    cell.className = "cell " + region.kind;
    cell.style.gridColumn = "span " + (region.span || 1);
    const body = document.createElement("div");
    body.className = "body";
    body.id = "view-" + region.view;
    cell.appendChild(body);
    if (region.kind !== "progress") {
      const caption = document.createElement("div");
      caption.className = "caption";
      caption.id = "caption-" + region.view;
      caption.textContent = region.waiting || "Waiting for the first frame…";
      cell.appendChild(caption);
    }
    root.appendChild(cell);
    if (region.kind === "progress") body.innerHTML = '<div class="text"></div><div class="bar"><div></div></div>';
  }
}
function onScreen(element) {
  if (document.hidden) return false;
  let frame = null, height = 0;
  try { frame = window.frameElement; height = window.parent.innerHeight; } catch (error) { return true; }
  if (!frame) return true;
  const box = frame.getBoundingClientRect(), inner = element.getBoundingClientRect();
  const top = box.top + inner.top, bottom = box.top + inner.bottom;
  return box.width > 0 && bottom > -200 && top < height + 200;
}
function receive(frame) {
  stats.frames += 1;
  if (frame.madeAt) stats.ages.push(Date.now() / 1000 - frame.madeAt);
  if (stats.ages.length > 5000) stats.ages.splice(0, 1000);
  if (frame.view === "progress") {
    stats.step = frame.step;  // the newest step, drawn or not (a region off screen waits to be seen)
    checkStatus(frame);
  }
  if (!regionOf(frame.view)) return;
  pending.set(frame.view, frame);
  drawPending();
}
let drawing = false;
function drawPending() {
  if (drawing) return;
  drawing = true;
  requestAnimationFrame(() => {
    drawing = false;
    for (const [view, frame] of pending) {
      const element = document.getElementById("view-" + view);
      if (drawnAt.has(view) && !onScreen(element)) continue;  // drawn when it comes on screen
      pending.delete(view);
      drawnAt.set(view, frame.step);
      draw(regionOf(view), frame, element);
    }
    fitHeight();
  });
}
function draw(region, frame, element) {
  if (region.kind === "progress") return drawProgress(frame, element);
  if (region.kind === "losses") return drawLosses(region, frame, element);
  if (region.kind === "images") return drawImages(region, frame, element);
  if (region.kind === "scatter") return drawScatter(region, frame, element);
  if (region.kind === "bars") return drawHistogram(region, frame, element);
}
function caption(region, text) {
  const element = document.getElementById("caption-" + region.view);
  if (element) element.textContent = text;
}
function fitHeight() {
  const height = Math.ceil(document.getElementById("root").getBoundingClientRect().height) + 4;
  if (Math.abs(height - frameHeight) > 2) {
    frameHeight = height;
    send("streamlit:setFrameHeight", {height});
  }
}

// -- the progress line; the end of training asks the page for one redraw
function drawProgress(frame, element) {
  element.querySelector(".text").textContent = frame.meta.text || "";
  element.querySelector(".bar div").style.width = (100 * (frame.meta.fraction || 0)).toFixed(1) + "%";
}
function checkStatus(frame) {
  if (askedRerun || frame.meta.version !== args.version || frame.meta.status === "running") return;
  askedRerun = true;
  send("streamlit:setComponentValue", {value: {status: frame.meta.status, step: frame.step}, dataType: "json"});
}

// -- loss curves: Plotly, extended in place while the thinning stride stays
let lossDrawn = null;  // {version, stride, panelsKey, counts: {trace index: points}}
function lossTraces(frame) {
  const traces = [], index = [];
  frame.meta.panels.forEach((panel, p) => {
    for (const term of panel) {
      const color = TERM_COLORS[frame.meta.terms.indexOf(term) % TERM_COLORS.length];
      for (const kind of ["train", "test"]) {
        const ys = frame.arrays[kind + "." + term];
        if (!ys) continue;
        const style = kind === "train" ? {mode: "lines", line: {color, width: 2}}
          : {mode: "lines+markers", line: {color, dash: "dash"}, marker: {size: 6}};
        traces.push({type: "scatter", x: Array.from(frame.arrays[kind + "_epoch"].data),
          y: Array.from(ys.data, v => (Number.isFinite(v) ? v : null)), name: kind + " · " + term,
          legendgroup: term, xaxis: "x", yaxis: p ? "y" + (p + 1) : "y", ...style,
          hovertemplate: kind + " " + term + "<br>epoch %{x:.2f}<br>%{y:.4g}<extra></extra>"});
        index.push(kind);
      }
    }
  });
  return {traces, index};
}
function lossLayout(frame, height) {
  const panels = frame.meta.panels, weights = panels.map((_, i) => (i ? 1 : 2));
  const total = weights.reduce((a, b) => a + b, 0), gap = panels.length > 1 ? 0.06 : 0;
  const layout = {height, margin: {l: 60, r: 20, t: 40, b: 50}, uirevision: "loss-curves",
    legend: {orientation: "h", yanchor: "bottom", y: 1.02, x: 0}, template: args.template,
    font: {family: args.font}, xaxis: {title: {text: "epoch"}, anchor: panels.length > 1 ? "y" + panels.length : "y"}};
  let top = 1;
  panels.forEach((panel, i) => {
    const size = (1 - gap * (panels.length - 1)) * weights[i] / total;
    const name = i ? "yaxis" + (i + 1) : "yaxis";
    layout[name] = {domain: [Math.max(0, top - size), top], title: {text: i ? panel.join(" + ") : "loss per image"},
      type: args.log_y ? "log" : "linear", anchor: "x"};
    top -= size + gap;
  });
  return layout;
}
function drawLosses(region, frame, element) {
  Promise.all([loadPlotly(), fontReady]).then(() => {
    const key = [frame.meta.version, frame.meta.stride, JSON.stringify(frame.meta.panels), args.log_y].join("|");
    const {traces, index} = lossTraces(frame);
    const counts = traces.map(t => t.x.length);
    if (lossDrawn && lossDrawn.key === key && counts.every((n, i) => n >= lossDrawn.counts[i])) {
      const grow = counts.map((n, i) => i).filter(i => counts[i] > lossDrawn.counts[i]);
      if (grow.length) {
        Plotly.extendTraces(element, {x: grow.map(i => traces[i].x.slice(lossDrawn.counts[i])),
          y: grow.map(i => traces[i].y.slice(lossDrawn.counts[i]))}, grow);
      }
    } else {
      const height = region.height || 380;
      element.style.height = height + "px";
      const filename = args.name + " loss curves";
      Plotly.react(element, traces, lossLayout(frame, height), {responsive: true, displaylogo: false,
        toImageButtonOptions: {filename}, modeBarButtonsToAdd: [{name: "svg", title: "Download plot as SVG",
          icon: Plotly.Icons.disk, click: gd => Plotly.downloadImage(gd, {format: "svg", filename})}]});
    }
    lossDrawn = {key, counts, index};
    caption(region, (region.title ? region.title + " · " : "") + "step " + frame.step.toLocaleString("en-US"));
  });
}

// -- image grids: (R, n, H, W) rows of images or (n, H, W) tiles, grey lines between them, as the page draws them
function drawImages(region, frame, element) {
  const name = Object.keys(frame.arrays)[0], {data, shape} = frame.arrays[name];
  let rows, cols, h, w;
  if (shape.length === 4) { [rows, cols, h, w] = shape; }
  else { const n = shape[0]; [h, w] = shape.slice(1); cols = Math.min(n, region.ncols || n); rows = Math.ceil(n / cols); }
  const width = cols * (w + PAD) + PAD, height = rows * (h + PAD) + PAD;
  const pixels = new ImageData(width, height);
  pixels.data.fill(PAD_GREY);
  const n = shape.length === 4 ? rows * cols : shape[0];
  for (let k = 0; k < n; k++) {
    const r = Math.floor(k / cols), c = k % cols, top = PAD + r * (h + PAD), left = PAD + c * (w + PAD);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const v = data[k * h * w + y * w + x], at = 4 * ((top + y) * width + left + x);
        pixels.data[at] = pixels.data[at + 1] = pixels.data[at + 2] = v;
      }
    }
  }
  for (let at = 3; at < pixels.data.length; at += 4) pixels.data[at] = 255;
  let canvas = element.querySelector("canvas");
  if (!canvas) { canvas = document.createElement("canvas"); element.appendChild(canvas); }
  const scale = region.scale || Math.max(1, Math.round(84 / h));
  const small = new OffscreenCanvas(width, height);
  small.getContext("2d").putImageData(pixels, 0, 0);
  canvas.width = width * scale; canvas.height = height * scale;
  canvas.style.maxWidth = "100%";
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.drawImage(small, 0, 0, canvas.width, canvas.height);
  caption(region, (region.title ? region.title + " · " : "") + "step " + frame.step.toLocaleString("en-US"));
}

// -- a canvas as wide as its region and ``height`` px high, sharp on any screen: [its 2-D context, its width]
function plotCanvas(element, height, fallbackWidth) {
  let canvas = element.querySelector("canvas");
  if (!canvas) { canvas = document.createElement("canvas"); element.appendChild(canvas); }
  const ratio = window.devicePixelRatio || 1, width = element.clientWidth || fallbackWidth;
  canvas.width = width * ratio; canvas.height = height * ratio;
  canvas.style.width = width + "px"; canvas.style.height = height + "px";
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  return [ctx, width];
}

// -- a code map: 2-D codes coloured by digit on a canvas, axes fitted to the points
function drawScatter(region, frame, element) {
  const {data, shape} = frame.arrays.codes, labels = frame.arrays.labels.data, n = shape[0], d = shape[1];
  const size = region.height || 360, margin = 36;
  const [ctx, width] = plotCanvas(element, size, size);
  const xs = [], ys = [];
  for (let i = 0; i < n; i++) { xs.push(data[i * d]); ys.push(d > 1 ? data[i * d + 1] : 0); }
  const finite = v => Number.isFinite(v);
  const lo = a => Math.min(...a.filter(finite)), hi = a => Math.max(...a.filter(finite));
  let [x0, x1, y0, y1] = [lo(xs), hi(xs), lo(ys), hi(ys)];
  if (!(x1 > x0)) { x0 -= 1; x1 += 1; }
  if (!(y1 > y0)) { y0 -= 1; y1 += 1; }
  const px = v => margin + (v - x0) / (x1 - x0) * (width - 2 * margin);
  const py = v => size - margin - (v - y0) / (y1 - y0) * (size - 2 * margin);
  ctx.strokeStyle = "#ccc"; ctx.strokeRect(margin, margin, width - 2 * margin, size - 2 * margin);
  ctx.fillStyle = "#444"; ctx.font = "12px " + args.font;
  ctx.fillText(x0.toFixed(1), margin, size - margin + 14); ctx.fillText(x1.toFixed(1), width - margin - 20, size - margin + 14);
  ctx.fillText(y0.toFixed(1), 2, size - margin); ctx.fillText(y1.toFixed(1), 2, margin + 10);
  ctx.fillText(region.axes ? region.axes[0] : "z₁", width / 2, size - 6);
  ctx.fillText(region.axes ? region.axes[1] : "z₂", 2, margin - 8);
  for (let i = 0; i < n; i++) {
    if (!finite(xs[i]) || !finite(ys[i])) continue;
    ctx.fillStyle = CLASS_COLORS[labels[i] % CLASS_COLORS.length];
    ctx.beginPath(); ctx.arc(px(xs[i]), py(ys[i]), 2.5, 0, 2 * Math.PI); ctx.fill();
  }
  let x = margin;
  for (let k = 0; k < 10; k++) {
    ctx.fillStyle = CLASS_COLORS[k]; ctx.fillRect(x, 8, 10, 10);
    ctx.fillStyle = "#444"; ctx.fillText(String(k), x + 13, 17); x += 30;
  }
  caption(region, (region.title ? region.title + " · " : "") + n.toLocaleString("en-US") + " test images · step "
    + frame.step.toLocaleString("en-US"));
}

// -- a histogram of the units' mean activations, the target rho as a line where the model has one
const BINS = 25;
function drawHistogram(region, frame, element) {
  const means = Array.from(frame.arrays.means.data).filter(Number.isFinite);
  const rho = frame.arrays.rho ? frame.arrays.rho.data[0] : null;
  const top = Math.max(1e-6, ...means, rho || 0), counts = new Array(BINS).fill(0);
  for (const m of means) counts[Math.min(BINS - 1, Math.floor(m / top * BINS))] += 1;
  const height = region.height || 260, margin = 36;
  const [ctx, width] = plotCanvas(element, height, 400);
  const most = Math.max(1, ...counts), plotW = width - 2 * margin, plotH = height - 2 * margin;
  ctx.fillStyle = TERM_COLORS[0];
  counts.forEach((c, i) => {
    const h = c / most * plotH;
    ctx.fillRect(margin + i * plotW / BINS + 1, height - margin - h, plotW / BINS - 2, h);
  });
  ctx.strokeStyle = "#ccc"; ctx.strokeRect(margin, margin, plotW, plotH);
  ctx.fillStyle = "#444"; ctx.font = "12px " + args.font;
  ctx.fillText("0", margin, height - margin + 14);
  ctx.fillText(top.toPrecision(2), width - margin - 24, height - margin + 14);
  ctx.fillText("ρ̂ⱼ", width / 2, height - 6);
  ctx.fillText(String(most), 4, margin + 10);
  ctx.fillText("units", 4, margin - 8);
  if (rho !== null) {
    const x = margin + rho / top * plotW;
    ctx.strokeStyle = TERM_COLORS[1]; ctx.setLineDash([5, 4]); ctx.beginPath();
    ctx.moveTo(x, margin); ctx.lineTo(x, height - margin); ctx.stroke(); ctx.setLineDash([]);
    ctx.fillStyle = TERM_COLORS[1]; ctx.fillText("ρ = " + rho.toPrecision(2), x + 4, margin + 12);
  }
  caption(region, (region.title ? region.title + " · " : "") + means.length + " units · step "
    + frame.step.toLocaleString("en-US"));
}

// -- the subscription
let retries = 0;
function connect() {
  const views = args.regions.map(r => r.view).concat(["progress"]).join(",");
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + args.path
    + "?token=" + encodeURIComponent(args.token) + "&views=" + encodeURIComponent(views);
  socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  socket.onmessage = event => { stats.bytes += event.data.byteLength; retries = 0; receive(decode(event.data)); };
  socket.onclose = event => {
    if (askedRerun) return;  // the run has stopped: the page is being drawn again
    if (event.code === 4403) {  // a token the server does not know: it restarted, or forgot the run
      // the page, drawn again, says what happened (its session is new). Streamlit drops a rerun asked for before
      // its own connection is back, so ask every 2 s: the page drawn again removes this component, and its timer
      askedRerun = true;
      let attempt = 0;
      const ask = () => send("streamlit:setComponentValue",
        {value: {status: "unknown", attempt: ++attempt}, dataType: "json"});
      ask();
      setInterval(ask, 2000);
      return;
    }
    retries += 1;
    if (retries < 20) setTimeout(connect, Math.min(5000, 250 * retries));
  };
}
function start(newArgs) {
  args = newArgs;
  if (started) return;
  started = true;
  build();
  fitHeight();
  if (args.regions.some(r => r.kind === "losses")) loadPlotly();
  connect();
  try {
    window.parent.document.addEventListener("scroll", drawPending, {capture: true, passive: true});
  } catch (error) { /* another origin */ }
  document.addEventListener("visibilitychange", drawPending);
}
window.addEventListener("message", event => {
  if (event.data && event.data.type === "streamlit:render") start(event.data.args);
});
send("streamlit:componentReady", {apiVersion: 1});
