// The demo page: pick a model, give it an image, see the top 5, the latency and the learned activations.
//
// Query parameters drive it without clicks (used by the end-to-end test, handy for links):
//   ?model=NAME      a bundled model (see models/index.json)
//   ?model-url=URL   any model file
//   ?image=URL       classify this image once the model is loaded
//   ?backend=B       auto (default), webgpu or cpu: where models run
import init, { Model, webgpuStatus } from "./pkg/pwlu_web.js";

const $ = (id) => document.getElementById(id);

// Everything a script (or a test) may want to read back; `window.pwluDemo` exposes it.
const demo = {
  model: null,
  modelLabel: null,
  firstMs: null,
  steadyMs: [],
  source: null,
  lastLogits: null,
  lastTop: null,
  error: null,
};
window.pwluDemo = demo;

const params = new URLSearchParams(location.search);
const backend = params.get("backend") ?? "auto";
let loadAbort = null;
let busy = false;
let webcamStream = null;

function setState(state) {
  document.body.dataset.state = state;
}

function showError(error) {
  const message = error && error.message ? error.message : String(error);
  demo.error = message;
  $("error").textContent = message;
  $("error").hidden = false;
  setState("error");
}

function clearError() {
  demo.error = null;
  $("error").hidden = true;
}

function formatBytes(n) {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(0)} KiB`;
  return `${n} B`;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

// ---- models -----------------------------------------------------------------------------------------------

async function loadModel(label, load) {
  if (loadAbort) loadAbort.abort();
  const abort = new AbortController();
  loadAbort = abort;
  clearError();
  setState("loading-model");
  stopWebcam();
  if (demo.model) {
    demo.model.dispose();
    demo.model = null;
  }
  $("again").disabled = true;
  $("model-status").textContent = `Loading ${label}…`;
  const progress = $("model-progress");
  progress.hidden = false;
  progress.removeAttribute("value");
  const started = performance.now();
  try {
    const model = await load(abort.signal, (loaded, total) => {
      if (total) {
        progress.max = total;
        progress.value = loaded;
      }
      $("model-status").textContent = `Loading ${label}… ${formatBytes(loaded)}${total ? ` of ${formatBytes(total)}` : ""}`;
    });
    if (abort.signal.aborted) {
      model.dispose();
      return;
    }
    demo.model = model;
    demo.modelLabel = label;
    demo.firstMs = null;
    demo.steadyMs = [];
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    $("model-status").textContent = `${label} is ready (loaded in ${seconds} s).`;
    showInfo(model.info);
    showCurves(model);
    $("top5").replaceChildren();
    $("latency").textContent = "";
    setState("ready");
    if (demo.source) await classify(demo.source);
  } catch (error) {
    if (abort.signal.aborted && error.kind === "abort") return;
    $("model-status").textContent = `${label} could not be loaded.`;
    showError(error);
  } finally {
    if (loadAbort === abort) {
      progress.hidden = true;
      loadAbort = null;
    }
  }
}

function loadFromUrl(label, url) {
  return loadModel(label, (signal, onProgress) => Model.fromUrl(url, { signal, onProgress, backend }));
}

function loadFromFile(file) {
  return loadModel(file.name, async () => Model.fromBytes(new Uint8Array(await file.arrayBuffer()), { backend }));
}

function showInfo(info) {
  const rows = [
    ["name", info.name],
    ["input", info.input.join(" × ")],
    ["classes", info.classes],
    ["parameters", info.parameters.toLocaleString("en")],
    ["layers", `${info.nodes} in the file, ${info.fusedNodes} after fusion`],
    ["preprocess", info.preprocess ?? "none (tensors only)"],
    ["PWLU sites", info.pwluSites],
    ["runs on", info.backend === "cpu" ? `${info.device}, in WebAssembly` : `${info.device} (WebGPU)`],
    ["because", info.reason],
  ];
  $("model-info").replaceChildren(
    ...rows.flatMap(([key, value]) => {
      const dt = document.createElement("dt");
      dt.textContent = key;
      const dd = document.createElement("dd");
      dd.textContent = String(value);
      return [dt, dd];
    }),
  );
}

// ---- images -----------------------------------------------------------------------------------------------

// Decoded as PyTorch's Pillow decodes: no colour management, straight alpha; EXIF orientation applied.
function bitmapFromBlob(blob) {
  return createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
}

async function useBlob(blob) {
  if (!blob.type.startsWith("image/") && blob.type !== "") {
    showError(new Error(`${blob.name ?? "this file"} is not an image (${blob.type})`));
    return;
  }
  stopWebcam();
  showPad(false);
  let bitmap;
  try {
    bitmap = await bitmapFromBlob(blob);
  } catch (error) {
    showError(new Error(`the browser cannot decode ${blob.name ?? "this image"}: ${error.message}`));
    return;
  }
  await classify(bitmap);
}

async function useUrl(url) {
  try {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`could not fetch ${url}: HTTP ${response.status}`);
    await useBlob(await response.blob());
  } catch (error) {
    showError(error);
  }
}

function drawPreview(source) {
  const canvas = $("preview");
  const width = source.naturalWidth ?? source.videoWidth ?? source.width;
  const height = source.naturalHeight ?? source.videoHeight ?? source.height;
  const scale = Math.min(1, 480 / Math.max(width, height));
  canvas.width = Math.max(1, Math.round(width * scale));
  canvas.height = Math.max(1, Math.round(height * scale));
  canvas.getContext("2d").drawImage(source, 0, 0, canvas.width, canvas.height);
}

async function classify(source, { preview = true } = {}) {
  demo.source = source;
  if (!demo.model || busy) return;
  busy = true;
  clearError();
  setState("classifying");
  try {
    if (preview) drawPreview(source);
    const started = performance.now();
    const logits = await demo.model.logits(source);
    const ms = performance.now() - started;
    if (demo.firstMs === null) demo.firstMs = ms;
    else demo.steadyMs.push(ms);
    demo.lastLogits = Array.from(logits);
    demo.lastTop = demo.model.topK(logits, 5);
    showTop(demo.lastTop);
    showLatency();
    $("again").disabled = false;
    setState("done");
  } catch (error) {
    showError(error);
  } finally {
    busy = false;
  }
}

function showTop(top) {
  $("top5").replaceChildren(
    ...top.map((c) => {
      const li = document.createElement("li");
      const label = document.createElement("div");
      label.className = "label";
      const name = document.createElement("span");
      name.textContent = c.label;
      const prob = document.createElement("span");
      prob.textContent = `${(c.prob * 100).toFixed(1)} %`;
      label.append(name, prob);
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = `${Math.max(0.5, c.prob * 100)}%`;
      li.append(label, bar);
      return li;
    }),
  );
}

function showLatency() {
  let text = `first run ${demo.firstMs.toFixed(0)} ms`;
  if (demo.steadyMs.length) {
    text += ` · steady state ${median(demo.steadyMs).toFixed(0)} ms (median of ${demo.steadyMs.length})`;
  }
  const info = demo.model.info;
  $("latency").textContent = `${text} · on ${info.backend === "cpu" ? info.device : `${info.device} (WebGPU)`}`;
}

async function runAgain() {
  $("again").disabled = true;
  for (let i = 0; i < 10 && demo.source; i++) await classify(demo.source, { preview: false });
  $("again").disabled = false;
}

// ---- webcam and drawing pad -------------------------------------------------------------------------------

async function startWebcam() {
  if (webcamStream) {
    stopWebcam();
    return;
  }
  if (!navigator.mediaDevices?.getUserMedia) {
    showError(new Error("this browser gives no camera access to pages (it needs https:// or localhost)"));
    return;
  }
  try {
    webcamStream = await navigator.mediaDevices.getUserMedia({ video: true });
  } catch (error) {
    showError(new Error(`the camera is not available: ${error.message}`));
    return;
  }
  showPad(false);
  const video = $("video");
  video.srcObject = webcamStream;
  video.hidden = false;
  $("preview").hidden = true;
  $("webcam").setAttribute("aria-pressed", "true");
  await video.play();
  const loop = async () => {
    if (!webcamStream) return;
    if (video.readyState >= 2) await classify(video, { preview: false });
    requestAnimationFrame(loop);
  };
  loop();
}

function stopWebcam() {
  if (!webcamStream) return;
  webcamStream.getTracks().forEach((t) => t.stop());
  webcamStream = null;
  $("video").hidden = true;
  $("preview").hidden = false;
  $("webcam").setAttribute("aria-pressed", "false");
}

function showPad(visible) {
  $("pad").hidden = !visible;
  $("pad-tools").hidden = !visible;
  $("preview").hidden = visible;
  $("draw").setAttribute("aria-pressed", String(visible));
}

function clearPad() {
  const pad = $("pad");
  const ctx = pad.getContext("2d");
  ctx.fillStyle = "white";
  ctx.fillRect(0, 0, pad.width, pad.height);
}

function setUpPad() {
  const pad = $("pad");
  const ctx = pad.getContext("2d");
  clearPad();
  let last = null;
  const point = (event) => {
    const rect = pad.getBoundingClientRect();
    return [((event.clientX - rect.left) / rect.width) * pad.width, ((event.clientY - rect.top) / rect.height) * pad.height];
  };
  pad.addEventListener("pointerdown", (event) => {
    pad.setPointerCapture(event.pointerId);
    last = point(event);
  });
  pad.addEventListener("pointermove", (event) => {
    if (!last) return;
    const next = point(event);
    ctx.strokeStyle = "black";
    ctx.lineWidth = pad.width / 12;
    ctx.lineCap = "round";
    ctx.beginPath();
    ctx.moveTo(...last);
    ctx.lineTo(...next);
    ctx.stroke();
    last = next;
  });
  const finish = () => {
    if (!last) return;
    last = null;
    classify(pad, { preview: false });
  };
  pad.addEventListener("pointerup", finish);
  pad.addEventListener("pointercancel", finish);
  $("pad-clear").addEventListener("click", clearPad);
  $("draw").addEventListener("click", () => {
    stopWebcam();
    showPad($("pad").hidden);
  });
}

// ---- learned activations ----------------------------------------------------------------------------------

function showCurves(model) {
  const curves = model.activationCurves(200);
  const select = $("site-select");
  select.replaceChildren(
    ...curves.map((c, i) => new Option(`${c.name} (N = ${c.intervals}, ${c.layerWise ? "layer-wise" : `${c.units} channels`})`, i)),
  );
  select.disabled = curves.length === 0;
  select.onchange = () => plotCurve(curves[select.value]);
  if (curves.length === 0) {
    $("curves-note").textContent = "This model has no PWLU activations.";
    plotCurve(null);
  } else {
    plotCurve(curves[0]);
  }
}

function plotCurve(curve) {
  const canvas = $("curves");
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 640;
  const height = Math.round(width * 0.56);
  canvas.width = width * dpr;
  canvas.height = height * dpr;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "white";
  ctx.fillRect(0, 0, width, height);
  if (!curve) return;
  const { x, y } = curve;
  const x0 = x[0];
  const x1 = x[x.length - 1];
  let y0 = Infinity;
  let y1 = -Infinity;
  for (const ys of y) for (const v of ys) if (Number.isFinite(v)) { y0 = Math.min(y0, v); y1 = Math.max(y1, v); }
  const pad = 0.05 * Math.max(y1 - y0, 1e-3);
  y0 -= pad;
  y1 += pad;
  const margin = 36;
  const sx = (v) => margin + ((v - x0) / (x1 - x0)) * (width - 2 * margin);
  const sy = (v) => height - margin - ((v - y0) / (y1 - y0)) * (height - 2 * margin);
  ctx.strokeStyle = "#cbd5e1";
  ctx.lineWidth = 1;
  ctx.beginPath();
  if (y0 <= 0 && y1 >= 0) { ctx.moveTo(sx(x0), sy(0)); ctx.lineTo(sx(x1), sy(0)); }
  if (x0 <= 0 && x1 >= 0) { ctx.moveTo(sx(0), sy(y0)); ctx.lineTo(sx(0), sy(y1)); }
  ctx.stroke();
  ctx.fillStyle = "#475569";
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillText(x0.toFixed(2), sx(x0), height - margin + 16);
  ctx.fillText(x1.toFixed(2), sx(x1) - 30, height - margin + 16);
  ctx.fillText(y1.toFixed(2), 2, sy(y1) + 4);
  ctx.fillText(y0.toFixed(2), 2, sy(y0));
  const alpha = Math.max(0.08, Math.min(1, 4 / y.length));
  ctx.strokeStyle = `rgba(47, 111, 222, ${alpha})`;
  ctx.lineWidth = 1.5;
  for (const ys of y) {
    ctx.beginPath();
    ys.forEach((v, i) => (i ? ctx.lineTo(sx(x[i]), sy(v)) : ctx.moveTo(sx(x[i]), sy(v))));
    ctx.stroke();
  }
  $("curves-note").textContent = `${curve.units} unit${curve.units === 1 ? "" : "s"} overlaid; x from ${x0.toFixed(2)} to ${x1.toFixed(2)}.`;
}

// ---- start ------------------------------------------------------------------------------------------------

function registerServiceWorker() {
  // The service worker keeps the page, the engine and every model used once available offline.
  if ("serviceWorker" in navigator && !params.has("no-offline")) {
    navigator.serviceWorker.register("sw.js").catch(() => {});
  }
}

function wireInputs(catalogue) {
  const select = $("model-select");
  select.replaceChildren(...catalogue.models.map((m) => new Option(`${m.title} (${formatBytes(m.bytes)})`, m.name)));
  select.disabled = catalogue.models.length === 0;
  select.addEventListener("change", () => {
    const m = catalogue.models.find((m) => m.name === select.value);
    if (m) loadFromUrl(m.title, m.file);
  });
  $("model-file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) loadFromFile(file);
  });
  $("samples").replaceChildren(
    ...catalogue.photos.map((p) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = p.replace(/^.*\//, "").replace(/\.\w+$/, "");
      button.addEventListener("click", () => useUrl(p));
      return button;
    }),
  );
  $("image-file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) useBlob(file);
  });
  const drop = $("drop");
  for (const type of ["dragenter", "dragover"]) {
    document.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  document.addEventListener("dragleave", () => drop.classList.remove("over"));
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = [...(event.dataTransfer?.files ?? [])].find((f) => f.type.startsWith("image/"));
    if (file) useBlob(file);
    else showError(new Error("drop an image file (PNG, JPEG, WebP, GIF, …)"));
  });
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files ?? [])].find((f) => f.type.startsWith("image/"));
    if (file) useBlob(file);
  });
  $("webcam").addEventListener("click", startWebcam);
  $("again").addEventListener("click", runAgain);
  setUpPad();
}

async function main() {
  registerServiceWorker();
  await init();
  const status = await webgpuStatus();
  if (!status.available && backend === "webgpu") {
    $("gpu").textContent = "WebGPU is not available.";
    showError(new Error(status.message));
    setState("no-webgpu");
    return;
  }
  $("gpu").textContent = status.available
    ? `WebGPU adapter: ${status.adapter}`
    : "This browser has no WebGPU: models run on the CPU, in WebAssembly.";
  let catalogue = { models: [], photos: [] };
  try {
    catalogue = await (await fetch("models/index.json")).json();
  } catch {
    $("model-status").textContent = "No bundled models (models/index.json is missing); open a file instead.";
  }
  wireInputs(catalogue);
  setState("ready");

  const wanted = params.get("model");
  const modelUrl = params.get("model-url");
  if (modelUrl) {
    await loadFromUrl(modelUrl, modelUrl);
  } else {
    const m = catalogue.models.find((m) => m.name === wanted) ?? catalogue.models[0];
    if (m) {
      $("model-select").value = m.name;
      await loadFromUrl(m.title, m.file);
    }
  }
  const image = params.get("image");
  if (image && demo.model) await useUrl(image);
}

main().catch(showError);
