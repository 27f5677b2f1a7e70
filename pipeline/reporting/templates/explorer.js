// The latent-space explorer: decodes latent points in the page, with the decoder's own weights.
// Reads EXPLORER_DATA (written by pipeline/reporting/explorer.py) and exposes window.explorer for tests.
"use strict";
(() => {
  const D = EXPLORER_DATA;
  const WIDTH = D.latentDim === 1 ? 620 : 540;
  const HEIGHT = D.latentDim === 1 ? 200 : 540;
  const MARGIN = { left: 52, right: 12, top: 12, bottom: 44 };

  // IEEE float16 bits -> number (subnormals included).
  function halfToNumber(bits) {
    const sign = bits & 0x8000 ? -1 : 1;
    const exponent = (bits >> 10) & 0x1f;
    const fraction = bits & 0x3ff;
    if (exponent === 0) return sign * fraction * 2 ** -24;
    if (exponent === 31) return fraction ? NaN : sign * Infinity;
    return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
  }

  function bytesOf(base64) {
    return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  }

  function float16Array(base64) {
    const bytes = bytesOf(base64);
    const view = new DataView(bytes.buffer);
    const values = new Float32Array(bytes.length / 2);
    for (let i = 0; i < values.length; i++) values[i] = halfToNumber(view.getUint16(2 * i, true));
    return values;
  }

  const [hiddenKernel, hiddenBias, outputKernel, outputBias] = D.weights.map(float16Array);
  const points = float16Array(D.points);
  const labels = bytesOf(D.labels);

  // Forward pass, as Keras' Dense layers: hidden = relu(x · K1 + b1), pixels = sigmoid(hidden · K2 + b2).
  // Kernels are row-major (inputs, units); sums run in float64.
  function decodeInput(input) {
    const hidden = Float64Array.from(hiddenBias);
    for (let i = 0; i < D.inputs; i++) {
      const x = input[i];
      if (x === 0) continue;
      const row = i * D.hidden;
      for (let j = 0; j < D.hidden; j++) hidden[j] += x * hiddenKernel[row + j];
    }
    const logits = Float64Array.from(outputBias);
    for (let j = 0; j < D.hidden; j++) {
      const h = hidden[j];
      if (!(h > 0)) continue; // relu
      const row = j * D.pixels;
      for (let k = 0; k < D.pixels; k++) logits[k] += h * outputKernel[row + k];
    }
    return Float32Array.from(logits, (v) => 1 / (1 + Math.exp(-v)));
  }

  // Decoder input: z, then (for a conditional decoder) the one-hot class.
  function decode(z, label) {
    const input = new Float64Array(D.inputs);
    input.set(z);
    if (D.conditional) input[D.latentDim + label] = 1;
    return decodeInput(input);
  }

  const picker = document.getElementById("label");
  const currentLabel = () => (picker ? Number(picker.value) : 0);

  // Plot transform, in CSS pixels from the canvas' top-left; equal scale on both axes for a 2-d plot.
  const inner = { width: WIDTH - MARGIN.left - MARGIN.right, height: HEIGHT - MARGIN.top - MARGIN.bottom };
  const [xView, yView] = D.view;
  const centre = [(xView[0] + xView[1]) / 2, (yView[0] + yView[1]) / 2];
  let xScale = inner.width / (xView[1] - xView[0]);
  let yScale = inner.height / (yView[1] - yView[0]);
  if (D.latentDim > 1) xScale = yScale = Math.min(xScale, yScale);
  const middle = [MARGIN.left + inner.width / 2, MARGIN.top + inner.height / 2];

  function toCanvas(a, b = centre[1]) {
    return [middle[0] + (a - centre[0]) * xScale, middle[1] - (b - centre[1]) * yScale];
  }

  // The full latent point under canvas position (x, y): plotted dims from the position, the others 0.
  function fromCanvas(x, y) {
    const z = new Float64Array(D.latentDim);
    z[D.dims[0]] = centre[0] + (x - middle[0]) / xScale;
    if (D.latentDim > 1) z[D.dims[1]] = centre[1] - (y - middle[1]) / yScale;
    return z;
  }

  function sizedContext(canvas) {
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(WIDTH * ratio);
    canvas.height = Math.round(HEIGHT * ratio);
    canvas.style.width = WIDTH + "px";
    canvas.style.height = HEIGHT + "px";
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    return context;
  }

  // Round tick values, about `count` of them, within [low, high].
  function ticks(low, high, count) {
    const raw = (high - low) / count;
    const power = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
    const values = [];
    for (let v = Math.ceil(low / step) * step; v <= high + 1e-9 * step; v += step) values.push(+v.toFixed(10));
    return values;
  }

  function drawAxes(context) {
    context.strokeStyle = "#ddd";
    context.fillStyle = "#333";
    context.font = "12px system-ui, sans-serif";
    context.lineWidth = 1;
    const [left, top] = [MARGIN.left, MARGIN.top];
    const [right, bottom] = [WIDTH - MARGIN.right, HEIGHT - MARGIN.bottom];
    const [xLow, xHigh] = [fromCanvas(left, 0)[D.dims[0]], fromCanvas(right, 0)[D.dims[0]]];
    context.textAlign = "center";
    for (const v of ticks(xLow, xHigh, 8)) {
      const x = toCanvas(v)[0];
      context.beginPath(); context.moveTo(x, top); context.lineTo(x, bottom); context.stroke();
      context.fillText(String(v), x, bottom + 15);
    }
    context.fillText(D.axisNames[0], (left + right) / 2, HEIGHT - 8);
    if (D.latentDim > 1) {
      const [yLow, yHigh] = [fromCanvas(0, bottom)[D.dims[1]], fromCanvas(0, top)[D.dims[1]]];
      context.textAlign = "right";
      for (const v of ticks(yLow, yHigh, 8)) {
        const y = toCanvas(0, v)[1];
        context.beginPath(); context.moveTo(left, y); context.lineTo(right, y); context.stroke();
        context.fillText(String(v), left - 6, y + 4);
      }
      context.save();
      context.translate(14, (top + bottom) / 2);
      context.rotate(-Math.PI / 2);
      context.textAlign = "center";
      context.fillText(D.axisNames[1], 0, 0);
      context.restore();
    }
    context.strokeStyle = "#888";
    context.strokeRect(left, top, right - left, bottom - top);
  }

  function drawGridSquare(context) {
    const [low, high] = D.gridRange;
    const [x0, y0] = D.latentDim > 1 ? toCanvas(low, high) : [toCanvas(low)[0], MARGIN.top + 4];
    const [x1, y1] = D.latentDim > 1 ? toCanvas(high, low) : [toCanvas(high)[0], HEIGHT - MARGIN.bottom - 4];
    context.save();
    context.setLineDash([6, 4]);
    context.strokeStyle = "#000";
    context.strokeRect(x0, y0, x1 - x0, y1 - y0);
    context.restore();
  }

  function drawPoints() {
    const context = sizedContext(document.getElementById("points"));
    context.fillStyle = "#fff";
    context.fillRect(0, 0, WIDTH, HEIGHT);
    drawAxes(context);
    context.globalAlpha = 0.6;
    for (let i = 0; i < D.count; i++) {
      const [x, y] = toCanvas(points[2 * i], points[2 * i + 1]);
      context.fillStyle = D.colours[labels[i]];
      context.beginPath();
      context.arc(x, y, 1.6, 0, 2 * Math.PI);
      context.fill();
    }
    context.globalAlpha = 1;
    drawGridSquare(context);
  }

  // Paint pixel means (ink dark on white, as the report's figures) and keep them on the canvas for tests.
  function paint(canvas, pixels, z) {
    canvas.width = canvas.height = D.side;
    const context = canvas.getContext("2d");
    const image = context.createImageData(D.side, D.side);
    for (let k = 0; k < D.pixels; k++) {
      const shade = Math.round(255 * (1 - pixels[k]));
      image.data.set([shade, shade, shade, 255], 4 * k);
    }
    context.putImageData(image, 0, 0);
    canvas.decoded = pixels;
    canvas.dataset.z = JSON.stringify(Array.from(z));
  }

  const overlay = document.getElementById("latent");
  const overlayContext = sizedContext(overlay);
  document.getElementById("plot").style.cssText = `width: ${WIDTH}px; height: ${HEIGHT}px`;
  const state = { pointer: null, picks: [] };
  const stripHelp = document.getElementById("strip-note").textContent;

  const plotted = (z) => (D.latentDim > 1 ? toCanvas(z[D.dims[0]], z[D.dims[1]]) : toCanvas(z[0]));

  function drawOverlay() {
    overlayContext.clearRect(0, 0, WIDTH, HEIGHT);
    overlayContext.lineWidth = 2;
    overlayContext.strokeStyle = "#000";
    if (state.picks.length === 2) {
      const [[x0, y0], [x1, y1]] = state.picks.map(plotted);
      overlayContext.beginPath(); overlayContext.moveTo(x0, y0); overlayContext.lineTo(x1, y1); overlayContext.stroke();
    }
    overlayContext.font = "bold 13px system-ui, sans-serif";
    state.picks.forEach((z, i) => {
      const [x, y] = plotted(z);
      overlayContext.beginPath(); overlayContext.arc(x, y, 5, 0, 2 * Math.PI); overlayContext.stroke();
      overlayContext.fillText("AB"[i], x + 7, y - 7);
    });
    if (state.pointer) {
      const [x, y] = plotted(state.pointer);
      overlayContext.strokeStyle = "#d00";
      overlayContext.beginPath(); overlayContext.arc(x, y, 7, 0, 2 * Math.PI); overlayContext.stroke();
    }
  }

  const format = (z) => "(" + Array.from(z, (v) => v.toFixed(3)).join(", ") + ")";

  function showPointer() {
    if (!state.pointer) return;
    paint(document.getElementById("decoded"), decode(state.pointer, currentLabel()), state.pointer);
    document.getElementById("readout").textContent = "z = " + format(state.pointer);
  }

  function showStrip() {
    const strip = document.getElementById("strip");
    strip.replaceChildren();
    const note = document.getElementById("strip-note");
    if (state.picks.length < 2) {
      note.textContent = state.picks.length ? "A = " + format(state.picks[0]) + ": click a second point." : stripHelp;
      return;
    }
    const [a, b] = state.picks;
    for (let k = 0; k < D.stripLength; k++) {
      const t = k / (D.stripLength - 1);
      const z = a.map((v, d) => v + t * (b[d] - v));
      const canvas = document.createElement("canvas");
      canvas.className = "digit";
      canvas.dataset.t = String(t);
      canvas.title = "t = " + t.toFixed(2) + ", z = " + format(z);
      paint(canvas, decode(z, currentLabel()), z);
      strip.append(canvas);
    }
    note.textContent =
      "From A = " + format(a) + " (left) to B = " + format(b) + " (right). Click again to start a new line.";
  }

  function latentAt(event) {
    const box = overlay.getBoundingClientRect();
    return fromCanvas(event.clientX - box.left, event.clientY - box.top);
  }

  overlay.addEventListener("pointermove", (event) => {
    state.pointer = latentAt(event);
    showPointer();
    drawOverlay();
  });
  // Picks on pointerdown: pointer events carry the fractional position that pointermove showed, click events
  // a rounded one, so the first image of the strip is the one seen under the pointer.
  overlay.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    state.pointer = latentAt(event);
    state.picks = state.picks.length === 2 ? [] : state.picks;
    state.picks.push(state.pointer);
    showPointer();
    showStrip();
    drawOverlay();
  });
  if (picker) picker.addEventListener("change", () => { showPointer(); showStrip(); });

  drawPoints();
  drawOverlay();
  document.body.dataset.ready = "true";
  window.explorer = { toCanvas, fromCanvas, decode, latentDim: D.latentDim, dims: D.dims };
})();
