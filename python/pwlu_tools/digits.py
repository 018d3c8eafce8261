"""A small PWLU CNN trained on scikit-learn's handwritten digits (8 x 8, 1797 images) with the paper's
statistics-based realignment, then exported. Run by the zoo and by `examples/train_digits.py`.

Three variants: `digits` (uniform units, one per channel, N = 16), `digits_non_uniform` (the journal version's
learned breakpoints, one unit per channel, N = 6) and `digits_layer_wise` (uniform, one unit per layer)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pwlu_torch import export
from pwlu_torch import PWLU, NonUniformPWLU

#: Variant name -> (unit class, channel-wise, intervals, epochs).
VARIANTS = {
    "digits": (PWLU, True, 16, 60),
    "digits_non_uniform": (NonUniformPWLU, True, 6, 40),
    "digits_layer_wise": (PWLU, False, 16, 40),
}

UNITS = (PWLU, NonUniformPWLU)

#: Training normalises pixel values v = x / 16 in [0, 1] with these; the exported preprocessing does the same
#: for an image: grayscale, 8 x 8, inverted (digits in the data set are light ink on dark).
MEAN, STD = 0.3, 0.4
DIGITS_PREPROCESS = {
    "resize": [8, 8],
    "interpolation": "bilinear",
    "mean": [MEAN],
    "std": [STD],
    "channel_order": "gray",
    "invert": True,
}


class DigitsNet(nn.Module):
    """conv-bn-PWLU x3 with one max pool, global average pooling and a linear classifier."""

    def __init__(self, intervals: int = 16, unit: type = PWLU, channel_wise: bool = True) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            activation = unit(cout if channel_wise else None, intervals, realign=True)
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), activation]

        self.features = nn.Sequential(
            *block(1, 16), *block(16, 32), nn.MaxPool2d(2), *block(32, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.classifier = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def load_data(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0 - MEAN) / STD
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.25, random_state=seed, stratify=digits.target
    )
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return (
        as_tensor(x_train)[:, None],
        as_tensor(y_train).long(),
        as_tensor(x_test)[:, None],
        as_tensor(y_test).long(),
    )


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def relu_distance(model: nn.Module) -> float:
    """Mean |PWLU(x) - ReLU(x)| over each unit's own range, averaged over units: how far from ReLU the
    learned functions are (0 for a unit that is still ReLU)."""
    distances = []
    with torch.no_grad():
        for unit in (m for m in model.modules() if isinstance(m, UNITS)):
            t = torch.linspace(0.0, 1.0, 256)
            ends = unit.bounds if isinstance(unit, PWLU) else unit.breakpoints[:, [0, -1]]
            xs = ends[:, :1] + (ends[:, 1:] - ends[:, :1]) * t  # [C, 256]
            xs = xs[None, :, :, None]  # [1, C, 256, 1]
            distances.append(float((unit(xs) - torch.relu(xs)).abs().mean()))
    return float(np.mean(distances))


def train(
    variant: str = "digits", epochs_phase1: int = 5, seed: int = 0, log=print
) -> tuple[DigitsNet, dict]:
    unit_class, channel_wise, intervals, epochs = VARIANTS[variant]
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = load_data(seed)
    model = DigitsNet(intervals, unit_class, channel_wise)
    generator = torch.Generator().manual_seed(seed)
    units = [m for m in model.modules() if isinstance(m, UNITS)]
    unit_params = {id(p) for u in units for p in u.parameters()}
    other = [p for p in model.parameters() if id(p) not in unit_params]
    optimizer = torch.optim.Adam(
        [{"params": other}, {"params": [p for u in units for p in u.parameters()], "lr": 3e-3}], lr=3e-3
    )
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        if epoch == epochs_phase1:
            # Phase II: bounds from the statistics gathered while the units acted as ReLU.
            for unit in units:
                unit.realign_()
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            optimizer.zero_grad()
            loss = loss_fn(model(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
            # Learned breakpoints may cross; keep them (and their points) in order.
            for unit in units:
                if isinstance(unit, NonUniformPWLU):
                    unit.sort_()
        if (epoch + 1) % 10 == 0:
            log(f"epoch {epoch + 1}: loss {loss.item():.3f}, test accuracy {accuracy(model, x_test, y_test):.4f}")
    model.eval()
    report = {
        "test_accuracy": accuracy(model, x_test, y_test),
        "relu_distance": relu_distance(model),
        "test_images": len(x_test),
    }
    return model, report


def train_and_export(path: Path, variant: str = "digits", log=print) -> dict:
    """Trains `variant`, exports it to `path` and writes `NAME.parity.json` beside it: PyTorch's logits on the
    first held-out images, and the whole held-out split (inputs and labels), on which the engine's accuracy
    is measured by the Rust tests. Both come from the model just exported, whatever bits this CPU trained."""
    model, report = train(variant, log=log)
    export(
        model,
        str(path),
        torch.zeros(1, 1, 8, 8),
        preprocess=DIGITS_PREPROCESS,
        labels=[str(d) for d in range(10)],
        name=variant,
    )
    log(
        f"{variant}: test accuracy {report['test_accuracy']:.4f}, "
        f"mean |PWLU - ReLU| {report['relu_distance']:.4f}"
    )
    _, _, x_test, y_test = load_data()
    with torch.no_grad():
        logits = model(x_test[:8])
    entries = [
        {
            "tensor": x_test[i].flatten().tolist(),
            "logits": logits[i].tolist(),
            "top5": torch.topk(logits[i], 5).indices.tolist(),
        }
        for i in range(len(logits))
    ]
    reference = {
        "model": variant,
        "input_shape": [1, 1, 8, 8],
        "inputs": entries,
        "held_out": {"inputs": x_test.flatten(1).tolist(), "labels": y_test.tolist()},
        "pytorch_accuracy": report["test_accuracy"],
    }
    Path(path).with_suffix(".parity.json").write_text(json.dumps(reference) + "\n")
    return report
