"""Train a PWLU CNN on scikit-learn's digits with statistics-based realignment and export it.

    python examples/train_digits.py --out digits.safetensors [--variant digits_non_uniform]
    cargo run --release --example classify -- digits.safetensors some-digit.png
"""

import argparse
from pathlib import Path

from pwlu_tools.digits import VARIANTS, train_and_export

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--out", default="digits.safetensors")
parser.add_argument("--variant", default="digits", choices=sorted(VARIANTS), help="which units the network has")
args = parser.parse_args()
report = train_and_export(Path(args.out), args.variant)
print(f"exported {args.out}: {report}")
