#!/usr/bin/env bash
# Runs the desktop viewer under Xvfb (no display needed) and saves a screenshot of it.
#   bash scripts/viewer-screenshot.sh MODEL IMAGE OUT.png
# Needs xvfb, x11-utils and imagemagick (apt-get install -y xvfb x11-utils imagemagick), and Pillow
# (python/.venv from scripts/zoo.sh, or PYTHON=...) to check that the top-1 bar shows the engine's probability.
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1 image=$2 out=$3
display=:$((90 + RANDOM % 100))

Xvfb "$display" -screen 0 1280x900x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
viewer=""
cleanup() {
  [ -n "$viewer" ] && kill "$viewer" 2>/dev/null || true
  kill "$xvfb" 2>/dev/null || true
}
trap cleanup EXIT
export DISPLAY=$display
# llvmpipe renders the window's OpenGL; the model runs on whatever `auto` picks (lavapipe here).
export LIBGL_ALWAYS_SOFTWARE=1 XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
chmod 700 "$XDG_RUNTIME_DIR"
cargo build --release --features viewer --example viewer --quiet
target/release/examples/viewer "$model" "$image" &
viewer=$!

# Wait for the window, then for a few frames.
for _ in $(seq 1 120); do
  if xwininfo -root -tree 2>/dev/null | grep -q '"pwlu: '; then
    break
  fi
  kill -0 "$viewer" 2>/dev/null || { echo "viewer exited early" >&2; exit 1; }
  sleep 0.5
done
xwininfo -root -tree | grep -q '"pwlu: ' || { echo "no viewer window appeared" >&2; exit 1; }
sleep 4
import -window root "$out"
colours=$(convert "$out" -format %k info:)
echo "screenshot: $out ($colours colours)"
[ "$colours" -gt 100 ] || { echo "the screenshot looks blank" >&2; exit 1; }
python=${PYTHON:-python/.venv/bin/python}
expected=$(cargo run --release --quiet -- classify --json --top 1 "$model" "$image" |
  "$python" -c 'import json, sys; print(json.load(sys.stdin)[0]["top"][0]["prob"])')
"$python" scripts/check_viewer_screenshot.py "$out" "$expected"
