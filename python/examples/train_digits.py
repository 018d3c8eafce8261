"""Train a PWLU CNN on scikit-learn's digits with statistics-based realignment and export it.

    python examples/train_digits.py --out digits.safetensors
    cargo run --release --example classify -- digits.safetensors some-digit.png
"""

import argparse
from pathlib import Path

from pwlu_torch.digits import train_and_export

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--out", default="digits.safetensors")
args = parser.parse_args()
report = train_and_export(Path(args.out))
print(f"exported {args.out}: {report}")
