// Runs the bench page (web/dist/bench.html) in headless Chromium for every model and engine, side by side in
// one session, and prints the figures and the ratios, together with the native figures scripts/compare.sh
// measured (a JSON-lines file). Usage: node compare.mjs NATIVE.jsonl OUT.json --models a,b --engines x,y --runs N
import fs from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { launch, serve } from "../e2e/browser.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(here, "../dist");
const TIMEOUT = 20 * 60 * 1000;

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}

const [nativeFile, outFile] = process.argv.slice(2).filter((a, i, all) => !a.startsWith("--") && !all[i - 1]?.startsWith("--"));
const models = option("models", "efficientnet_lite0,mobilenet_v2,resnet18").split(",").filter(Boolean);
const engines = option("engines", "pwlu,pwlu-cpu,ort-webgpu,ort-wasm,tfjs-webgpu").split(",").filter(Boolean);
const runs = Number(option("runs", "5"));

// Each comparison model has its original activations (models/compare/); the zoo's PWLU Lite0 runs once more
// on pwlu, in alternation with the same weights with ReLU6, to give the cost of PWLU in the browser.
const jobs = models.flatMap((model) => engines.map((engine) => ({ model, page: `compare/${model}`, engine, runs })));
if (models.includes("efficientnet_lite0") && engines.includes("pwlu")) {
  jobs.push({
    model: "efficientnet_lite0 (PWLU)",
    page: "efficientnet_lite0",
    engine: "pwlu",
    versus: "compare/efficientnet_lite0",
    runs: runs * 4,
  });
}
// Cross-origin isolation, so that ONNX Runtime's wasm gets threads.
const isolation = { "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp" };
const server = jobs.length ? await serve(dist, isolation) : null;
const base = server ? `http://127.0.0.1:${server.address().port}` : "";
const browser = jobs.length ? await launch(chromium) : null;
const version = browser?.version() ?? "";
const browserResults = [];
try {
  for (const { model, page: name, engine, versus, runs } of jobs) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const pair = versus ? `&versus=${encodeURIComponent(versus)}` : "";
    await page.goto(`${base}/bench.html?model=${encodeURIComponent(name)}&engine=${engine}&runs=${runs}${pair}&auto`);
    await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state), null, {
      timeout: TIMEOUT,
      polling: 250,
    });
    const result = (await page.evaluate(() => window.benchResult)) ?? { error: "the page gave no result" };
    const adapter = await page.evaluate(() => document.getElementById("gpu").textContent);
    await context.close();
    delete result?.layers;
    browserResults.push({ ...result, model, engine, adapter });
    const line = result.error
      ? `error: ${result.error}`
      : `first ${result.first.toFixed(0)} ms, median ${result.median.toFixed(1)} ms`;
    console.log(`# browser ${model} ${engine}: ${line}`);
  }
} finally {
  await browser?.close();
  server?.close();
}

const native = nativeFile
  ? (await fs.readFile(nativeFile, "utf8")).split("\n").filter(Boolean).map((l) => JSON.parse(l))
  : [];
await fs.writeFile(outFile ?? "compare.json", JSON.stringify({ date: new Date().toISOString(), chromium: version, browser: browserResults, native }, null, 2));

const fmt = (v, digits = 0) => (v == null || Number.isNaN(v) ? "-" : v.toFixed(digits));
const ratio = (a, b) => (a && b ? `${(a / b).toFixed(2)}x` : "-");
console.log(`\n## In the browser: headless Chromium ${version}, ${browserResults[0]?.adapter ?? ""}`);
// Every engine runs the same weights on the same input: their logits must agree, or the figures compare
// different work.
const largestDifference = (a, b) =>
  a?.length && a.length === b?.length ? Math.max(...a.map((v, i) => Math.abs(v - b[i]))) : null;
// Engines split their start-up differently between loading and the first run (pwlu compiles every kernel while
// loading; ONNX Runtime and TF.js compile at the first run), so the sum is compared too.
console.log(
  "| model | engine | load ms | first run ms | median ms (min-max) | pwlu / this, median | pwlu / this, first run | pwlu / this, load + first run | pwlu on the CPU / this, median | max abs logit difference from pwlu |",
);
console.log("|---|---|---|---|---|---|---|---|---|---|");
for (const r of browserResults) {
  const ours = browserResults.find((o) => o.model === r.model && o.engine === "pwlu");
  const oursOnCpu = browserResults.find((o) => o.model === r.model && o.engine === "pwlu-cpu");
  const versusCpu = r.engine === "pwlu-cpu" || r.error || oursOnCpu?.error ? "" : ratio(oursOnCpu?.median, r.median);
  const cell = r.error ? `failed: ${r.error}` : `${fmt(r.median, 1)} (${fmt(r.min, 1)}-${fmt(r.max, 1)})`;
  const versus = r.engine === "pwlu" || r.error || ours?.error ? "" : ratio(ours?.median, r.median);
  const versusFirst = r.engine === "pwlu" || r.error || ours?.error ? "" : ratio(ours?.first, r.first);
  const startUp = (x) => (x?.load ?? NaN) + (x?.first ?? NaN);
  const versusStartUp = r.engine === "pwlu" || r.error || ours?.error ? "" : ratio(startUp(ours), startUp(r));
  const difference = r.engine === "pwlu" ? null : largestDifference(r.logits, ours?.logits);
  const agreement = difference == null ? "" : difference.toExponential(1);
  console.log(
    `| ${r.model} | ${r.engine} | ${fmt(r.load)} | ${fmt(r.first)} | ${cell} | ${versus} | ${versusFirst} | ${versusStartUp} | ${versusCpu} | ${agreement} |`,
  );
}
// The cost of PWLU: the per-round ratio of two models timed in alternation (`versus`).
const pairLine = (v) =>
  `${v.ratio.toFixed(3)}x (middle half ${v.ratioLow.toFixed(3)}-${v.ratioHigh.toFixed(3)}) over ${v.rounds} alternated rounds`;
const pwluRow = browserResults.find((r) => r.model === "efficientnet_lite0 (PWLU)" && r.versus);
if (pwluRow) {
  console.log(`\nPWLU / ReLU6 on EfficientNet-Lite0 (same weights), browser: ${pairLine(pwluRow.versus)}`);
}
if (native.length) {
  console.log("\n## Natively");
  console.log("| model | engine | first run ms | median ms (min-max) | pwlu on Vulkan / this | pwlu on the CPU / this |");
  console.log("|---|---|---|---|---|---|");
  for (const r of native.filter((r) => !r.versus)) {
    const ours = (engine) => native.find((o) => o.model === r.model && o.engine === engine);
    const cell = r.error ? `failed: ${r.error}` : `${fmt(r.median_ms, 1)} (${fmt(r.min_ms, 1)}-${fmt(r.max_ms, 1)})`;
    const versus = (engine) => (r.engine === engine || r.error ? "" : ratio(ours(engine)?.median_ms, r.median_ms));
    console.log(
      `| ${r.model} | ${r.engine} | ${fmt(r.first_run_ms)} | ${cell} | ${versus("pwlu (Vulkan)")} | ${versus("pwlu (CPU backend)")} |`,
    );
  }
  for (const [engine, where] of [
    ["pwlu, PWLU versus ReLU6", "Vulkan"],
    ["pwlu (CPU backend), PWLU versus ReLU6", "CPU backend"],
  ]) {
    const pair = native.find((r) => r.engine === engine && r.versus)?.versus;
    if (pair) {
      const v = { ratio: pair.ratio_median, ratioLow: pair.ratio_lower_quartile, ratioHigh: pair.ratio_upper_quartile, rounds: pair.rounds };
      console.log(`\nPWLU / ReLU6 on EfficientNet-Lite0 (same weights), natively on the ${where}: ${pairLine(v)}`);
    }
  }
}
