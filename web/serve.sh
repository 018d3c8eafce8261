#!/usr/bin/env bash
# Serves the demo built by web/build.sh on http://localhost:PORT (default 8080). WebGPU needs a secure
# context, which localhost is.
set -euo pipefail
cd "$(dirname "$0")/dist"
port=${1:-8080}
echo "serving the pwlu demo on http://localhost:$port (Ctrl+C stops)"
exec python3 -m http.server "$port" --bind 127.0.0.1
