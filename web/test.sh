#!/usr/bin/env bash
# The browser tests, in headless Chromium, on its WebGPU adapter and on the CPU backend in wasm:
#   1. wasm-bindgen-test: the JavaScript API (web/tests/api.rs) on both backends, including its failures;
#   2. end to end: the demo page served from web/dist classifies the coffee photo with EfficientNet-Lite0 and
#      must match the native engine's logits, once with WebGPU and once with WebGPU taken away
#      (web/e2e/demo.test.mjs);
#   3. the npm package: the tarball web/build.sh packs, installed into an app built with Vite, classifies the
#      photo on each backend (web/e2e/package.test.mjs).
# Needs chromium and chromium-driver (scripts/setup.sh installs them) and models/ (scripts/zoo.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

export CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-300}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}

bash web/build.sh
# wasm-bindgen-test-runner reads web/webdriver.json (Chromium's WebGPU flags) from the working directory.
(cd web && cargo test --locked --target wasm32-unknown-unknown -p pwlu-web)

cargo build --release --locked --bin pwlu
(cd web/e2e && npm ci --no-audit --no-fund --loglevel=error && npm test)
