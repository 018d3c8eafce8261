#!/usr/bin/env bash
# Installs what building and running pwlu needs on a fresh Debian machine without a GPU: Mesa's software
# Vulkan (lavapipe) and OpenGL/EGL (llvmpipe) drivers, Chromium for the browser tests, and the Rust components
# the checks use (web/build.sh adds wasm-bindgen-cli at the version Cargo.lock pins).
# Safe to run again: it installs only what is missing.
set -euo pipefail

packages=(mesa-vulkan-drivers libvulkan1 libegl1 libegl-mesa0 libgl1-mesa-dri fonts-dejavu-core)
# The desktop viewer's screenshot check: a virtual X server and a screen grabber.
packages+=(xvfb x11-utils imagemagick)
# The browser tests: headless Chromium (its WebGPU runs on SwiftShader) and ChromeDriver for wasm-bindgen-test.
packages+=(chromium chromium-driver)
# The PyTorch side needs a Python with venv.
python3 -m venv --help >/dev/null 2>&1 || packages+=(python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
  rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust from https://rustup.rs" >&2; exit 1; }
echo "setup: system packages and Rust components ready"
