#!/usr/bin/env bash
# Builds the Python package `pwlu` (python/bindings: pyo3 and maturin, one abi3 wheel for CPython 3.9 and later)
# and installs it into the project's virtual environment, with the `pwlu` binary its tests compare it with.
#   bash scripts/python-bindings.sh        then: python/.venv/bin/python -c "import pwlu"
# The wheel stays in target/wheels for other environments (pip install target/wheels/pwlu-*.whl).
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x python/.venv/bin/python ] || python3 -m venv python/.venv
python/.venv/bin/python -c "import maturin" 2>/dev/null ||
  python/.venv/bin/pip install -q "$(grep "^maturin==" python/requirements.txt)"
version=$(awk -F'"' '/^version = / { print $2; exit }' python/bindings/Cargo.toml)
rm -f target/wheels/pwlu-"$version"-*.whl
python/.venv/bin/maturin build --release --locked --quiet -m python/bindings/Cargo.toml \
  --interpreter python/.venv/bin/python --out target/wheels
python/.venv/bin/pip install -q --force-reinstall --no-deps target/wheels/pwlu-"$version"-*.whl
cargo build --release --locked --bin pwlu
echo "installed $(ls target/wheels/pwlu-"$version"-*.whl) into python/.venv"
