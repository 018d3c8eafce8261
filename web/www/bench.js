// The bench page: one model, one engine, N runs on a fixed synthetic input; the figures go to the page and to
// `window.benchResult` (scripts/compare.sh reads them there).
//
// Query parameters (all optional): model=NAME (models/index.json or models/compare/index.json),
// engine=pwlu|pwlu-cpu|ort-webgpu|ort-wasm|tfjs-webgpu, batch=B, runs=N, versus=NAME (pwlu only: a second model with the
// same input, run in alternation; see `timePair`), auto (start without a click).
import init, { Model, webgpuStatus } from "./pkg/pwlu_web.js";
import { loadTfjsGraph } from "./tfjs-graph.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

function setState(state) {
  document.body.dataset.state = state;
}

function status(text) {
  $("status").textContent = text;
}

function fail(error) {
  const message = error && error.message ? error.message : String(error);
  window.benchResult = { error: message };
  $("error").textContent = message;
  $("error").hidden = false;
  setState("error");
}

/** The input of `pwlu bench` and the comparison: sin(0.001 i), NCHW. */
function syntheticInput(length) {
  const data = new Float32Array(length);
  for (let i = 0; i < length; i++) data[i] = Math.sin(i * 0.001);
  return data;
}

async function modelList() {
  const lists = await Promise.all(
    ["models/index.json", "models/compare/index.json"].map((url) =>
      fetch(url).then((r) => (r.ok ? r.json() : { models: [] })).catch(() => ({ models: [] })),
    ),
  );
  return lists.flatMap((list) => list.models);
}

/** Milliseconds `f()` took to resolve, and what it resolved to. */
async function timed(f) {
  const start = performance.now();
  const output = await f();
  return [performance.now() - start, output];
}

/**
 * Times `run()` once (the first run) and then `runs` more times. `run` resolves to the outputs on the CPU; those
 * of the last run come back with the figures, so that the engines can be checked against each other.
 */
async function time(run, runs) {
  let [first, output] = await timed(run);
  const times = [];
  for (let i = 0; i < runs; i++) {
    let ms;
    [ms, output] = await timed(run);
    times.push(ms);
    status(`run ${i + 1} of ${runs}: ${ms.toFixed(1)} ms`);
  }
  times.sort((a, b) => a - b);
  const median = times[times.length >> 1];
  return { first, median, min: times[0], max: times[times.length - 1], logits: Array.from(output) };
}

/** The lower quartile, median and upper quartile of `values`. */
function quartiles(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q) => sorted[Math.round((sorted.length - 1) * q)];
  return [at(0.25), at(0.5), at(0.75)];
}

/**
 * Times `run` against `other` in alternation, as `pwlu bench --versus` does: each round times both, in turns
 * first, and gives one ratio run / other. The load of a shared machine drifts over seconds; a ratio taken within
 * a round cancels it, where two medians taken a minute apart do not.
 */
async function timePair(run, other, runs) {
  let [first, output] = await timed(run);
  const [otherFirst] = await timed(other);
  const times = [];
  const otherTimes = [];
  const ratios = [];
  for (let i = 0; i < runs; i++) {
    let ours, theirs;
    if (i % 2 === 0) {
      [ours, output] = await timed(run);
      [theirs] = await timed(other);
    } else {
      [theirs] = await timed(other);
      [ours, output] = await timed(run);
    }
    times.push(ours);
    otherTimes.push(theirs);
    ratios.push(ours / theirs);
    status(`round ${i + 1} of ${runs}: ${ours.toFixed(1)} ms against ${theirs.toFixed(1)} ms`);
  }
  const [, median] = quartiles(times);
  const [ratioLow, ratio, ratioHigh] = quartiles(ratios);
  return {
    first,
    median,
    min: Math.min(...times),
    max: Math.max(...times),
    logits: Array.from(output),
    versus: { first: otherFirst, median: quartiles(otherTimes)[1], ratio, ratioLow, ratioHigh, rounds: runs },
  };
}

/** pwlu on `backend` ("webgpu" or "cpu"). */
async function benchPwlu(entry, batch, runs, versusEntry, backend) {
  let start = performance.now();
  const model = await Model.fromUrl(entry.file, { backend });
  const load = performance.now() - start;
  let other = null;
  try {
    const [c, h, w] = model.info.input;
    const input = syntheticInput(batch * c * h * w);
    let figures;
    if (versusEntry) {
      other = await Model.fromUrl(versusEntry.file, { backend });
      const [oc, oh, ow] = other.info.input;
      if (oc !== c || oh !== h || ow !== w) {
        throw new Error(
          `versus needs models with the same input: ${entry.name} takes ${c}x${h}x${w}, ${versusEntry.name} takes ${oc}x${oh}x${ow}`,
        );
      }
      figures = await timePair(() => model.run(input, batch), () => other.run(input, batch), runs);
      figures.versus.model = versusEntry.name;
    } else {
      figures = await time(() => model.run(input, batch), runs);
    }
    const info = model.info;
    let layers = null;
    if (info.timestamps) {
      layers = await model.profile(input, batch);
    }
    return { ...figures, load, flops: info.flops * batch, adapter: info.device, backend: info.backend, layers };
  } finally {
    model.dispose();
    other?.dispose();
  }
}

async function benchOrt(entry, batch, runs, provider) {
  if (!entry.onnx) throw new Error(`${entry.name} has no ONNX export here (scripts/compare.sh makes them)`);
  let ort;
  try {
    ort = await import("./ort/ort.webgpu.min.mjs");
  } catch {
    throw new Error("ONNX Runtime Web is not on this page: scripts/compare.sh copies it into ort/");
  }
  ort.env.wasm.wasmPaths = new URL("./ort/", location.href).href;
  let start = performance.now();
  const session = await ort.InferenceSession.create(entry.onnx, { executionProviders: [provider] });
  const load = performance.now() - start;
  try {
    const [c, h, w] = entry.input ?? [3, 224, 224];
    const data = syntheticInput(batch * c * h * w);
    const feeds = { [session.inputNames[0]]: new ort.Tensor("float32", data, [batch, c, h, w]) };
    const figures = await time(async () => {
      const out = await session.run(feeds);
      // Reading the data makes the output come back to the CPU, as pwlu's run() does.
      return await out[session.outputNames[0]].getData();
    }, runs);
    return { ...figures, load, flops: entry.flops ? entry.flops * batch : null, adapter: null, layers: null };
  } finally {
    await session.release();
  }
}

/** TensorFlow.js 4.22 on its WebGPU backend, running the op list of `python -m pwlu_torch.tfjs`. */
async function benchTfjs(entry, batch, runs) {
  if (!entry.tfjs) throw new Error(`${entry.name} has no TF.js op list here (scripts/compare.sh makes them)`);
  let tf;
  try {
    // The import map in bench.html resolves the backend's import of "@tensorflow/tfjs-core" to ./tfjs/.
    tf = await import("@tensorflow/tfjs-core");
    await import("./tfjs/tf-backend-webgpu.fesm.min.js");
  } catch {
    throw new Error("TensorFlow.js is not on this page: scripts/compare.sh copies it into tfjs/");
  }
  if (!(await tf.setBackend("webgpu"))) throw new Error("TensorFlow.js found no WebGPU adapter");
  await tf.ready();
  let start = performance.now();
  const model = await loadTfjsGraph(tf, entry.tfjs);
  const load = performance.now() - start;
  try {
    const [c, h, w] = entry.input ?? [3, 224, 224];
    // The same input as the other engines, in TF.js's NHWC order.
    const nchw = syntheticInput(batch * c * h * w);
    const nhwc = new Float32Array(nchw.length);
    for (let n = 0; n < batch; n++) {
      for (let ch = 0; ch < c; ch++) {
        for (let p = 0; p < h * w; p++) nhwc[(n * h * w + p) * c + ch] = nchw[(n * c + ch) * h * w + p];
      }
    }
    const figures = await time(async () => {
      const input = tf.tensor(nhwc, [batch, h, w, c]);
      const output = model.predict(input);
      try {
        return await output.data();
      } finally {
        input.dispose();
        output.dispose();
      }
    }, runs);
    return { ...figures, load, flops: entry.flops ? entry.flops * batch : null, adapter: null, layers: null };
  } finally {
    model.dispose();
  }
}

function show(result) {
  const cells = [
    result.engine,
    result.model,
    result.batch,
    result.load.toFixed(0),
    result.first.toFixed(0),
    result.median.toFixed(1),
    result.min.toFixed(1),
    result.max.toFixed(1),
    ((1000 * result.batch) / result.median).toFixed(2),
    result.flops ? (result.flops / result.median / 1e6).toFixed(2) : "",
  ];
  const row = document.createElement("tr");
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = String(text);
    row.append(td);
  }
  $("results").tBodies[0].append(row);
  const v = result.versus;
  $("versus-note").textContent = v
    ? `${result.model} / ${v.model} per round: ${v.ratio.toFixed(3)}x (middle half ${v.ratioLow.toFixed(3)}-` +
      `${v.ratioHigh.toFixed(3)}) over ${v.rounds} alternated rounds; ${v.model}: median ${v.median.toFixed(1)} ms.`
    : "";
  const body = $("layers").tBodies[0];
  body.replaceChildren();
  if (!result.layers) {
    $("layers-note").textContent =
      result.engine === "pwlu" ? "This adapter has no timestamp queries: no per-layer times." : "";
    return;
  }
  const total = result.layers.reduce((sum, l) => sum + l.ms, 0);
  $("layers-note").textContent =
    result.backend === "cpu"
      ? `The clock around each layer on the CPU: ${total.toFixed(1)} ms in all.`
      : `GPU timestamps, one submission: ${total.toFixed(1)} ms in all.`;
  for (const l of [...result.layers].sort((a, b) => b.ms - a.ms)) {
    const row = document.createElement("tr");
    for (const text of [l.ms.toFixed(2), `${((100 * l.ms) / total).toFixed(1)} %`, l.kernel, l.node]) {
      const td = document.createElement("td");
      td.textContent = text;
      row.append(td);
    }
    body.append(row);
  }
}

async function start(models) {
  const entry = models.find((m) => m.name === $("model").value);
  if (!entry) {
    fail(`unknown model '${params.get("model") ?? $("model").value}'`);
    return;
  }
  const engine = $("engine").value;
  const batch = Math.max(1, Number($("batch").value) | 0);
  const runs = Math.max(1, Number($("runs").value) | 0);
  const versusName = $("versus").value;
  const versusEntry = versusName ? models.find((m) => m.name === versusName) : null;
  if (versusName && !versusEntry) {
    fail(`unknown model '${versusName}' to run versus`);
    return;
  }
  if (versusEntry && !engine.startsWith("pwlu")) {
    fail("versus runs two pwlu models in alternation: choose the pwlu engine");
    return;
  }
  $("error").hidden = true;
  $("start").disabled = true;
  setState("running");
  status(`loading ${entry.name} on ${engine}…`);
  try {
    let figures;
    if (engine === "pwlu") figures = await benchPwlu(entry, batch, runs, versusEntry, "webgpu");
    else if (engine === "pwlu-cpu") figures = await benchPwlu(entry, batch, runs, versusEntry, "cpu");
    else if (engine === "tfjs-webgpu") figures = await benchTfjs(entry, batch, runs);
    else figures = await benchOrt(entry, batch, runs, engine === "ort-webgpu" ? "webgpu" : "wasm");
    const result = { engine, model: entry.name, batch, runs, ...figures };
    window.benchResult = result;
    show(result);
    status(`done: median ${figures.median.toFixed(1)} ms`);
    setState("done");
  } catch (error) {
    fail(error);
  } finally {
    $("start").disabled = false;
  }
}

async function main() {
  await init();
  const gpu = await webgpuStatus();
  $("gpu").textContent = gpu.available ? `WebGPU adapter: ${gpu.adapter}` : gpu.message;
  const models = await modelList();
  if (models.length === 0) {
    fail("no models: run scripts/zoo.sh (and scripts/compare.sh for the comparison set), then web/build.sh");
    return;
  }
  for (const m of models) {
    $("model").add(new Option(m.title ?? m.name, m.name));
    $("versus").add(new Option(m.title ?? m.name, m.name));
  }
  for (const key of ["model", "engine", "batch", "runs", "versus"]) {
    if (!params.has(key)) continue;
    const value = params.get(key);
    // A select silently keeps its old value for an unknown one; `start` reports it instead.
    if (key === "versus" && ![...$("versus").options].some((o) => o.value === value)) {
      $("versus").add(new Option(value, value));
    }
    $(key).value = value;
  }
  $("setup").addEventListener("submit", (event) => {
    event.preventDefault();
    start(models);
  });
  setState("ready");
  if (params.has("auto")) await start(models);
}

main().catch(fail);
