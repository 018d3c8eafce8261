"""Checking an exported file against the PyTorch module it came from, through pwlu's own engine (the `pwlu`
Python package, python/bindings): one call runs both on the same input and reports how far apart they are."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class CheckResult:
    """How the engine's outputs compare with PyTorch's."""

    max_abs_difference: float
    """The largest |engine - PyTorch| over every output."""
    scale: float
    """The largest |PyTorch output|, to read the difference against."""
    backend: str
    """Where the engine ran ("gpu" or "cpu") and on what."""
    device: str

    @property
    def relative(self) -> float:
        """The difference relative to the scale (at least 1)."""
        return self.max_abs_difference / max(1.0, self.scale)


def check(
    module: nn.Module,
    path: str,
    example_input: torch.Tensor | np.ndarray,
    *,
    backend: str = "auto",
    threads: int | None = None,
) -> CheckResult:
    """Runs `module` (in eval mode, without gradients) and the file at `path` (as `export` wrote it) through
    pwlu's engine on `example_input` ([N, C, H, W]); returns the largest difference of their outputs.

    `backend` and `threads` are `pwlu.Model`'s: "auto", "cpu" or a graphics API.
    """
    import pwlu  # the bindings: scripts/python-bindings.sh builds and installs them

    x = example_input.detach().cpu().float().numpy() if isinstance(example_input, torch.Tensor) else example_input
    x = np.ascontiguousarray(x, dtype=np.float32)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).float().numpy()
    finally:
        module.train(was_training)
    model = pwlu.Model(path, backend=backend, threads=threads)
    got = model.run(x).reshape(expected.shape)
    info: dict[str, Any] = model.info
    return CheckResult(
        max_abs_difference=float(np.abs(got - expected).max()),
        scale=float(np.abs(expected).max()),
        backend=info["backend"],
        device=info["device"],
    )
