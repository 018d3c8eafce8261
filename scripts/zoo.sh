#!/usr/bin/env bash
# Creates python/.venv with PyTorch (CPU is enough; about 3 GB with its CUDA libraries) and the pwlu_torch
# package, then exports the model zoo to models/. Pass zoo options through, e.g. --models efficientnet_lite0.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x python/.venv/bin/python ]; then
  python3 -m venv python/.venv
fi
if ! python/.venv/bin/python -c "import torch, pwlu_torch, pwlu_tools, onnx" 2>/dev/null; then
  python/.venv/bin/pip install -q --upgrade pip
  python/.venv/bin/pip install -q -r python/requirements.txt
  python/.venv/bin/pip install -q -e python
fi
python/.venv/bin/python -m pwlu_tools.zoo --out models "$@"
