// The demo page in headless Chromium, served from web/dist as a user would serve it: once on its WebGPU adapter
// (SwiftShader on machines without a GPU) and once with WebGPU taken away, on the CPU backend in wasm. Build it
// first with web/build.sh; web/test.sh does both.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { launch, serve } from "./browser.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const dist = path.join(repo, "web/dist");
// SwiftShader runs EfficientNet-Lite0 in seconds, but the first run compiles every pipeline on the CPU.
const SLOW = 10 * 60 * 1000;

let browser;
let server;
let otherOrigin;
let base;

before(async () => {
  await fs.access(path.join(dist, "pkg/pwlu_web_bg.wasm")).catch(() => {
    throw new Error("web/dist is missing: run web/build.sh first");
  });
  server = await serve(dist);
  otherOrigin = await serve(dist); // same files, another port: a cross-origin server without CORS headers
  base = `http://127.0.0.1:${server.address().port}`;
  browser = await launch(chromium);
});

after(async () => {
  await browser?.close();
  server?.close();
  otherOrigin?.close();
});

/** Opens the page with `query` in a fresh profile and waits until it settles in one of `states`. */
async function open(query, states, { context } = {}) {
  const ctx = context ?? (await browser.newContext());
  const page = await ctx.newPage();
  const console = [];
  page.on("console", (m) => console.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => console.push(`pageerror: ${e.message}`));
  await page.goto(`${base}/${query}`);
  try {
    await page.waitForFunction(
      (wanted) => wanted.includes(document.body.dataset.state),
      states,
      { timeout: SLOW, polling: 100 },
    );
  } catch (error) {
    const state = await page.evaluate(() => document.body.dataset.state).catch(() => "?");
    throw new Error(`the page stayed in state ${state}: ${error.message}\n${console.join("\n")}`);
  }
  return { page, ctx, console };
}

function nativeLogits(model, photo) {
  const out = execFileSync(
    "cargo",
    ["run", "--release", "--quiet", "--", "classify", "--json", "--logits", model, photo],
    { cwd: repo, env: { XDG_RUNTIME_DIR: "/tmp", ...process.env }, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 1 << 26 },
  );
  return JSON.parse(out)[0].logits;
}

/** Chromium without `navigator.gpu`, as in a browser that has no WebGPU. */
async function contextWithoutWebGpu() {
  const ctx = await browser.newContext();
  await ctx.addInitScript(() => {
    Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined });
  });
  return ctx;
}

/**
 * Opens the demo with `query`, checks that it classifies the coffee photo as espresso with the native engine's
 * logits, and times ten more runs; returns what the page shows.
 */
async function classifiesTheCoffeePhoto(query, { context } = {}) {
  const native = nativeLogits("models/efficientnet_lite0.safetensors", "models/photos/coffee.png");
  const { page, ctx, console } = await open(
    `?model=efficientnet_lite0&image=models/photos/coffee.png&no-offline${query}`,
    ["done", "error", "no-webgpu"],
    { context },
  );
  const demo = await page.evaluate(() => ({
    state: document.body.dataset.state,
    error: window.pwluDemo.error,
    logits: window.pwluDemo.lastLogits,
    top: window.pwluDemo.lastTop,
    firstMs: window.pwluDemo.firstMs,
    info: window.pwluDemo.model?.info,
    shown: document.getElementById("top5").innerText,
    latency: document.getElementById("latency").innerText,
    status: document.getElementById("gpu").innerText,
    details: document.getElementById("model-info").innerText,
    sites: document.getElementById("site-select").options.length,
  }));
  assert.equal(demo.state, "done", `${demo.error}\n${console.join("\n")}`);
  assert.equal(demo.top[0].label, "espresso");
  assert.match(demo.shown, /espresso/);
  assert.match(demo.latency, /first run \d+ ms/);
  assert.ok(demo.sites > 0, "the learned activations are listed");
  assert.equal(demo.logits.length, native.length);
  const scale = Math.max(1, ...native.map(Math.abs));
  const worst = Math.max(...native.map((v, i) => Math.abs(v - demo.logits[i])));
  // The parity tolerance of tests/parity.rs.
  assert.ok(worst <= 1e-3 * scale, `browser and native logits differ by ${worst} (scale ${scale})`);
  process.stdout.write(
    `# ${demo.info.backend} (${demo.info.device}): browser vs native max |diff| ${worst.toExponential(2)}, ` +
      `first run ${demo.firstMs.toFixed(0)} ms\n`,
  );

  // Steady state: the same image again, on the same model.
  await page.click("#again");
  await page.waitForFunction(() => window.pwluDemo.steadyMs.length >= 10, null, { timeout: SLOW });
  const steady = await page.evaluate(() => document.getElementById("latency").innerText);
  assert.match(steady, /steady state \d+ ms \(median of 10\)/);
  process.stdout.write(`# ${steady}\n`);
  await ctx.close();
  return demo;
}

test("classifies the coffee photo as espresso on WebGPU, with the native engine's logits", { timeout: SLOW }, async () => {
  const demo = await classifiesTheCoffeePhoto("&backend=webgpu");
  assert.equal(demo.info.backend, "webgpu");
  assert.match(demo.details, /\(WebGPU\)/);
});

for (const backend of ["webgpu", "cpu"]) {
  test(`ShuffleNet v2 (concat, channel shuffle, slices) runs in the page on ${backend} with the native engine's logits`, { timeout: SLOW }, async () => {
    const model = "models/shufflenet_v2_x1_0.safetensors";
    const native = nativeLogits(model, "models/photos/coffee.png");
    const { page, ctx, console } = await open(
      `?model-url=${model}&image=models/photos/coffee.png&no-offline&backend=${backend}`,
      ["done", "error"],
    );
    const demo = await page.evaluate(() => ({
      state: document.body.dataset.state,
      error: window.pwluDemo.error,
      logits: window.pwluDemo.lastLogits,
      info: window.pwluDemo.model?.info,
    }));
    await ctx.close();
    assert.equal(demo.state, "done", `${demo.error}\n${console.join("\n")}`);
    assert.equal(demo.info.backend, backend);
    const scale = Math.max(1, ...native.map(Math.abs));
    const worst = Math.max(...native.map((v, i) => Math.abs(v - demo.logits[i])));
    assert.ok(worst <= 1e-3 * scale, `browser and native logits differ by ${worst} (scale ${scale})`);
    process.stdout.write(`# ShuffleNet v2 on ${backend}: browser vs native max |diff| ${worst.toExponential(2)}\n`);
  });
}

test("without WebGPU the page classifies on the CPU, with the native engine's logits", { timeout: SLOW }, async () => {
  const demo = await classifiesTheCoffeePhoto("", { context: await contextWithoutWebGpu() });
  assert.equal(demo.info.backend, "cpu");
  assert.equal(demo.info.adapter, null);
  assert.match(demo.info.reason, /no WebGPU/);
  assert.match(demo.status, /no WebGPU: models run on the CPU/);
  assert.match(demo.details, /CPU \(1 thread, SIMD128\), in WebAssembly/);
  assert.match(demo.latency, /on CPU/);
});

test("on a software WebGPU adapter, auto runs on the CPU and says why", { timeout: SLOW }, async () => {
  const { page, ctx } = await open("?model=digits&no-offline", ["ready", "error"]);
  const info = await page.evaluate(() => window.pwluDemo.model?.info);
  const adapter = await page.evaluate(() => document.getElementById("gpu").innerText);
  if (/swiftshader/i.test(adapter)) {
    assert.equal(info.backend, "cpu", info.reason);
    assert.match(info.reason, /software fallback/);
  } else {
    assert.ok(["webgpu", "cpu"].includes(info.backend));
  }
  process.stdout.write(`# auto: ${info.backend}, because ${info.reason}\n`);
  await ctx.close();
});

test("the bench page times a bundled model and lists its layers", { timeout: SLOW }, async () => {
  const { page, ctx, console } = await open("bench.html?model=digits&engine=pwlu&runs=3&auto", ["done", "error"]);
  const result = await page.evaluate(() => window.benchResult);
  assert.equal(await page.evaluate(() => document.body.dataset.state), "done", `${result?.error}\n${console.join("\n")}`);
  assert.equal(result.model, "digits");
  assert.equal(result.runs, 3);
  assert.ok(result.first > 0 && result.min > 0 && result.min <= result.median && result.median <= result.max);
  assert.ok(result.flops > 0);
  const rows = await page.evaluate(() => document.querySelectorAll("#results tbody tr").length);
  assert.equal(rows, 1);
  const layerRows = await page.evaluate(() => document.querySelectorAll("#layers tbody tr").length);
  if (result.layers) {
    assert.equal(layerRows, result.layers.length);
    assert.ok(result.layers.every((l) => l.ms >= 0 && l.kernel.endsWith(".wgsl")));
  } else {
    assert.equal(layerRows, 0);
    assert.match(await page.evaluate(() => document.getElementById("layers-note").textContent), /no timestamp queries/);
  }
  process.stdout.write(`# bench page, digits: median ${result.median.toFixed(1)} ms, layers ${result.layers ? "timed" : "not timed (no timestamp queries)"}\n`);
  // pwlu on the CPU: every layer timed by the clock, with the CPU kernels' names.
  await page.goto(page.url().replace("engine=pwlu", "engine=pwlu-cpu"));
  await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state), null, { timeout: SLOW });
  const cpu = await page.evaluate(() => window.benchResult);
  assert.equal(cpu.backend, "cpu", cpu.error);
  assert.ok(cpu.median > 0 && cpu.layers.length > 0);
  assert.ok(cpu.layers.every((l) => l.ms >= 0 && l.kernel.startsWith("cpu ")));
  assert.match(await page.evaluate(() => document.getElementById("layers-note").textContent), /clock around each layer/);
  // ONNX Runtime is only there when scripts/compare.sh put it there: the page says so instead of failing silently.
  await page.goto(page.url().replace("engine=pwlu", "engine=ort-wasm"));
  await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state), null, { timeout: SLOW });
  assert.match(await page.evaluate(() => document.getElementById("error").textContent), /ONNX|onnx/);
  await ctx.close();
});

test("the bench page runs two models in alternation and gives the per-round ratio", { timeout: SLOW }, async () => {
  const { page, ctx, console } = await open("bench.html?model=digits&engine=pwlu&runs=4&versus=digits&auto", ["done", "error"]);
  const result = await page.evaluate(() => window.benchResult);
  assert.equal(await page.evaluate(() => document.body.dataset.state), "done", `${result?.error}\n${console.join("\n")}`);
  const v = result.versus;
  assert.equal(v.model, "digits");
  assert.equal(v.rounds, 4);
  assert.ok(v.first > 0 && v.median > 0);
  assert.ok(0 < v.ratioLow && v.ratioLow <= v.ratio && v.ratio <= v.ratioHigh);
  assert.match(await page.evaluate(() => document.getElementById("versus-note").textContent), /digits \/ digits per round: [\d.]+x/);
  // Only pwlu models run in alternation, and an unknown one is named.
  for (const [query, message] of [
    ["engine=ort-wasm", /choose the pwlu engine/],
    ["versus=nonexistent", /unknown model 'nonexistent'/],
  ]) {
    const [key] = query.split("=");
    const url = new URL(page.url());
    url.searchParams.set(key, query.split("=")[1]);
    await page.goto(url.href);
    await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state), null, { timeout: SLOW });
    assert.match(await page.evaluate(() => document.getElementById("error").textContent), message);
  }
  await ctx.close();
});

test("a missing model file is reported in the page", { timeout: SLOW }, async () => {
  const { page, ctx } = await open("?model-url=models/missing.safetensors&no-offline", ["error"]);
  const message = await page.locator("#error").innerText();
  assert.match(message, /HTTP 404/);
  assert.match(message, /missing\.safetensors/);
  await ctx.close();
});

test("a file that is not a model is reported in the page", { timeout: SLOW }, async () => {
  const { page, ctx } = await open("?model-url=style.css&no-offline", ["error"]);
  const message = await page.locator("#error").innerText();
  assert.match(message, /style\.css: invalid model/);
  await ctx.close();
});

test("a cross-origin model without CORS is reported in the page", { timeout: SLOW }, async () => {
  const url = `http://127.0.0.1:${otherOrigin.address().port}/models/digits.safetensors`;
  const { page, ctx } = await open(`?model-url=${encodeURIComponent(url)}&no-offline`, ["error"]);
  const message = await page.locator("#error").innerText();
  assert.match(message, /could not fetch/);
  assert.match(message, /CORS/);
  await ctx.close();
});

test("asked for WebGPU where there is none, the page says so and how to get it", { timeout: SLOW }, async () => {
  const ctx = await contextWithoutWebGpu();
  const { page } = await open("?backend=webgpu&no-offline", ["no-webgpu"], { context: ctx });
  const message = await page.locator("#error").innerText();
  assert.match(message, /WebGPU is not available/);
  assert.match(message, /--enable-unsafe-webgpu/);
  await ctx.close();
});

test("the page and a model it used once work offline", { timeout: SLOW }, async () => {
  const ctx = await browser.newContext();
  const { page } = await open("?model=digits", ["ready", "done"], { context: ctx });
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: SLOW });
  // Now that the service worker controls the page, one more load passes everything through its cache.
  await page.reload();
  await page.waitForFunction(() => document.body.dataset.state === "ready" && window.pwluDemo.model, null, {
    timeout: SLOW,
  });
  await ctx.setOffline(true);
  await page.reload();
  await page.waitForFunction(
    () => ["ready", "error"].includes(document.body.dataset.state) && (window.pwluDemo.model || window.pwluDemo.error),
    null,
    { timeout: SLOW },
  );
  const status = await page.evaluate(() => ({
    error: window.pwluDemo.error,
    text: document.getElementById("model-status").innerText,
  }));
  assert.equal(status.error, null);
  assert.match(status.text, /Digits .* is ready/);
  await ctx.close();
});
