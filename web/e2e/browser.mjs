// What the page tests (demo.test.mjs) and the browser comparison (../compare/compare.mjs) share: a static file
// server for web/dist and headless Chromium with WebGPU. Node built-ins only: each caller passes its own
// playwright-core `chromium`, since the two have separate node_modules.
import fs from "node:fs/promises";
import http from "node:http";
import path from "node:path";

const MIME = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".safetensors": "application/octet-stream",
};

/**
 * Serves `root` on a free port of 127.0.0.1. `headers` go on every file served (e.g. the cross-origin isolation
 * that ONNX Runtime's threaded wasm needs).
 */
export function serve(root, headers = {}) {
  const server = http.createServer(async (request, response) => {
    const url = new URL(request.url, "http://localhost");
    let file = path.join(root, decodeURIComponent(url.pathname));
    if (!file.startsWith(root)) {
      response.writeHead(403).end();
      return;
    }
    if (url.pathname.endsWith("/")) file = path.join(file, "index.html");
    try {
      const body = await fs.readFile(file);
      response.writeHead(200, {
        "content-type": MIME[path.extname(file)] ?? "application/octet-stream",
        "content-length": body.length,
        ...headers,
      });
      response.end(body);
    } catch {
      response.writeHead(404, { "content-type": "text/plain" }).end("not found");
    }
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

/** Headless Chromium ($CHROMIUM, else /usr/bin/chromium) with WebGPU and without background traffic. */
export function launch(chromium) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--enable-unsafe-webgpu",
      "--no-sandbox",
      "--disable-gpu-sandbox",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-quic",
      "--no-first-run",
    ],
  });
}
