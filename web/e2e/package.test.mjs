// The npm package as a web developer uses it: `npm install` of the tarball web/build.sh packs, an app that imports
// it (vite-app/), built with Vite, served, and opened in headless Chromium, where it classifies the coffee photo
// with EfficientNet-Lite0, on the default backend and with WebGPU taken away.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { build } from "vite";
import { launch, serve } from "./browser.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const app = path.join(here, "vite-app");
const SLOW = 10 * 60 * 1000;

let browser;
let server;
let base;

before(async () => {
  const dist = path.join(repo, "web/dist");
  const tarball = (await fs.readdir(dist)).find((f) => /^pwlu-web-.*\.tgz$/.test(f));
  assert.ok(tarball, "web/dist has no npm tarball: run web/build.sh first");
  // Into this folder's node_modules, where Vite resolves the app's imports; --no-save keeps the lock file as it is.
  execFileSync("npm", ["install", "--no-save", "--no-audit", "--no-fund", "--loglevel=error", path.join(dist, tarball)], {
    cwd: here,
    stdio: "inherit",
  });
  await fs.mkdir(path.join(app, "public"), { recursive: true });
  await fs.copyFile(path.join(repo, "models/efficientnet_lite0.safetensors"), path.join(app, "public/efficientnet_lite0.safetensors"));
  await fs.copyFile(path.join(repo, "models/photos/coffee.png"), path.join(app, "public/coffee.png"));
  await build({ root: app, logLevel: "warn", build: { outDir: path.join(app, "dist"), emptyOutDir: true } });
  server = await serve(path.join(app, "dist"));
  base = `http://127.0.0.1:${server.address().port}`;
  browser = await launch(chromium);
});

after(async () => {
  await browser?.close();
  server?.close();
});

async function classify(query, { withoutWebGpu = false } = {}) {
  const ctx = await browser.newContext();
  if (withoutWebGpu) {
    await ctx.addInitScript(() => Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined }));
  }
  const page = await ctx.newPage();
  const console = [];
  page.on("console", (m) => console.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => console.push(`pageerror: ${e.message}`));
  await page.goto(`${base}/${query}`);
  await page.waitForFunction(() => window.appResult, null, { timeout: SLOW, polling: 100 });
  const result = await page.evaluate(() => window.appResult);
  await ctx.close();
  assert.equal(result.error, undefined, `${result.error}\n${console.join("\n")}`);
  return result;
}

test("the built app loads the wasm from the bundle and classifies the coffee photo", { timeout: SLOW }, async () => {
  const files = await fs.readdir(path.join(app, "dist/assets"));
  assert.ok(files.some((f) => f.endsWith(".wasm")), `Vite emitted no wasm: ${files.join(", ")}`);
  const result = await classify("");
  assert.equal(result.top[0].label, "espresso");
  assert.equal(result.top.length, 5);
  process.stdout.write(`# npm package in a Vite app: ${result.top[0].label} on ${result.backend} (${result.reason})\n`);
});

test("the built app classifies on the CPU in a browser without WebGPU", { timeout: SLOW }, async () => {
  const result = await classify("", { withoutWebGpu: true });
  assert.equal(result.backend, "cpu");
  assert.equal(result.top[0].label, "espresso");
});

test("the built app runs on WebGPU when asked", { timeout: SLOW }, async () => {
  const result = await classify("?backend=webgpu");
  assert.equal(result.backend, "webgpu");
  assert.equal(result.top[0].label, "espresso");
});
