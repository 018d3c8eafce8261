#!/usr/bin/env bash
# Side-by-side speed comparison, all in one session on this machine (docs/performance.md keeps the figures):
#   natively:   pwlu on Vulkan and on its CPU backend (2 threads) against ONNX Runtime's CPU engine (PyPI
#               onnxruntime, 2 threads), tract 0.23.6 (crates.io, 2 threads) and wonnx 0.5.1 (crates.io), same
#               ONNX/safetensors pair; pwlu's
#               EfficientNet-Lite0 with PWLU against the same weights with ReLU6 (in alternation), on both;
#   in Chromium: pwlu's bench page against ONNX Runtime Web 1.30 (npm), WebGPU and wasm execution providers,
#                and TensorFlow.js 4.22 (npm), WebGPU backend.
# Each model is exported from one PyTorch module to both formats (python -m pwlu_tools.compare); TF.js runs the
# ONNX export rewritten as its own op list (python -m pwlu_tools.tfjs).
# Benchmarks, not tests: nothing here fails on a slow figure.
#
#   bash scripts/compare.sh [--runs N] [--models a,b,c] [--engines pwlu,pwlu-cpu,ort-wasm,...] [--native-only | --browser-only]
# Needs what .ci/run installs (scripts/setup.sh) and the zoo's efficientnet_lite0 (scripts/zoo.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=5
models=efficientnet_lite0,mobilenet_v2,resnet18,efficientnet_b0
native=1
browser=1
engines=pwlu,pwlu-cpu,ort-webgpu,ort-wasm,tfjs-webgpu
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --engines) engines=$2; shift 2 ;;
    --native-only) browser=0; shift ;;
    --browser-only) native=0; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
IFS=, read -ra names <<< "$models"

# The model pairs.
if [ ! -x python/.venv/bin/python ]; then
  bash scripts/zoo.sh --models efficientnet_lite0
fi
for package in onnx onnxruntime; do
  python/.venv/bin/python -c "import $package" 2>/dev/null ||
    python/.venv/bin/pip install -q "$(grep "^$package==" python/requirements.txt)"
done
missing=()
for name in "${names[@]}"; do
  [ -f "models/compare/$name.onnx" ] && [ -f "models/compare/$name.safetensors" ] || missing+=("$name")
done
if [ ${#missing[@]} -gt 0 ]; then
  (IFS=,; python/.venv/bin/python -m pwlu_tools.compare --out models/compare --models "${missing[*]}")
fi
for name in "${names[@]}"; do
  if [ ! -f "models/compare/$name.tfjs.json" ] || [ "models/compare/$name.onnx" -nt "models/compare/$name.tfjs.json" ]; then
    python/.venv/bin/python -m pwlu_tools.tfjs "models/compare/$name.onnx"
  fi
done
cargo build --release --locked --bin pwlu
pwlu=target/release/pwlu

results=$(mktemp -d)
native_file=$results/native.jsonl
: > "$native_file"
record() { # model engine json
  python3 -c 'import json, sys; d = json.loads(sys.argv[3]); d.update(model=sys.argv[1], engine=sys.argv[2]); print(json.dumps(d))' \
    "$1" "$2" "$3" >> "$native_file"
}
if [ $native = 1 ]; then
  (cd bench/wonnx && cargo build --release --quiet)
  (cd bench/tract && cargo build --release --quiet)
  for name in "${names[@]}"; do
    echo "# native $name"
    record "$name" "pwlu (Vulkan)" \
      "$($pwlu --backend vulkan bench "models/compare/$name.safetensors" --runs "$runs" --json 2>/dev/null)"
    record "$name" "pwlu (CPU backend)" \
      "$($pwlu --backend cpu bench "models/compare/$name.safetensors" --threads 2 --runs "$runs" --json 2>/dev/null)"
    record "$name" "ONNX Runtime CPU" \
      "$(python/.venv/bin/python -m pwlu_tools.ort_bench "models/compare/$name.onnx" --threads 2 --runs "$runs" || true)"
    record "$name" "tract 0.23.6 (2 threads)" \
      "$(bench/tract/target/release/tract-bench "models/compare/$name.onnx" "$runs" 2 2>/dev/null || true)"
    record "$name" "wonnx 0.5.1" "$(bench/wonnx/target/release/wonnx-bench "models/compare/$name.onnx" "$runs" 2>/dev/null || true)"
  done
  if [ -f models/efficientnet_lite0.safetensors ]; then
    echo "# native efficientnet_lite0 PWLU against ReLU6, in alternation"
    record efficientnet_lite0 "pwlu, PWLU versus ReLU6" \
      "$($pwlu --backend vulkan bench models/efficientnet_lite0.safetensors \
        --versus models/compare/efficientnet_lite0.safetensors --runs $((runs * 6)) --json 2>/dev/null)"
    record efficientnet_lite0 "pwlu (CPU backend), PWLU versus ReLU6" \
      "$($pwlu --backend cpu bench models/efficientnet_lite0.safetensors --threads 2 \
        --versus models/compare/efficientnet_lite0.safetensors --runs $((runs * 6)) --json 2>/dev/null)"
  fi
fi

browser_models=()
if [ $browser = 1 ]; then
  bash web/build.sh
  (cd web/compare && npm ci --no-audit --no-fund --loglevel=error)
  mkdir -p web/dist/ort web/dist/tfjs web/dist/models/compare
  # The entry module and every wasm build it may pick (asyncify for WebGPU, plain or JSEP for wasm).
  cp web/compare/node_modules/onnxruntime-web/dist/ort.webgpu.min.mjs \
    web/compare/node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded*.{mjs,wasm} web/dist/ort/
  cp web/compare/node_modules/@tensorflow/tfjs-core/dist/tf-core.fesm.min.js \
    web/compare/node_modules/@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.fesm.min.js web/dist/tfjs/
  entries=()
  for name in "${names[@]}"; do
    for file in "$name.safetensors" "$name.onnx" "$name.tfjs.json" "$name.tfjs.bin"; do
      ln -f "models/compare/$file" web/dist/models/compare/ 2>/dev/null || cp "models/compare/$file" web/dist/models/compare/
    done
    info=$($pwlu info "models/compare/$name.safetensors" --json 2>/dev/null)
    flops=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["flops"])' "$info")
    entries+=("{\"name\": \"compare/$name\", \"title\": \"$name (comparison set, original activations)\", \"file\": \"models/compare/$name.safetensors\", \"onnx\": \"models/compare/$name.onnx\", \"tfjs\": \"models/compare/$name.tfjs.json\", \"flops\": $flops, \"input\": [3, 224, 224]}")
  done
  (IFS=,; printf '{"models": [%s]}\n' "${entries[*]}") > web/dist/models/compare/index.json
  browser_models=("${names[@]}")
fi

(IFS=,; cd web/compare && node compare.mjs "$native_file" "$results/compare.json" \
  --models "${browser_models[*]:-}" --runs "$runs" --engines "$([ $browser = 1 ] && echo "$engines")")
echo "figures: $results/compare.json"
