"""Replace a model's activations by PWLU units: exactly for ReLU and ReLU6, by a least-squares fit otherwise."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from .pwlu import PWLU, NonUniformPWLU

__all__ = ["convert", "SiteReport", "PwluTracer", "trace"]


class PwluTracer(fx.Tracer):
    """An fx tracer that keeps PWLU units as leaves instead of tracing into their arithmetic."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (PWLU, NonUniformPWLU)) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module) -> fx.GraphModule:
    """Symbolically traces `model` (in eval mode) with PWLU units as leaves."""
    if isinstance(model, fx.GraphModule):
        return model
    model.eval()
    graph = PwluTracer().trace(model)
    return fx.GraphModule(model, graph, model.__class__.__name__)


_MODULE_KINDS = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.SiLU: "silu", nn.Hardswish: "hardswish", nn.GELU: "gelu"}
_FUNCTION_KINDS = {
    F.relu: "relu",
    torch.relu: "relu",
    F.relu6: "relu6",
    F.silu: "silu",
    F.hardswish: "hardswish",
    F.gelu: "gelu",
}
_METHOD_KINDS = {"relu": "relu"}

_REFERENCE = {
    "relu": torch.relu,
    "relu6": F.relu6,
    "silu": F.silu,
    "hardswish": F.hardswish,
    "gelu": F.gelu,
}


@dataclass
class SiteReport:
    """What `convert` did at one activation site."""

    site: str
    """Name of the new PWLU submodule."""
    kind: str
    """The activation it replaced."""
    channels: int
    exact: bool
    max_abs_error: float
    """Over the fitted range (0 when exact)."""
    rms_error: float
    range: tuple[float, float]


def _activation_kind(gm: fx.GraphModule, node: fx.Node) -> str | None:
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        for cls, kind in _MODULE_KINDS.items():
            if type(module) is cls:
                if kind == "gelu" and getattr(module, "approximate", "none") != "none":
                    return None
                return kind
    if node.op == "call_function":
        kind = _FUNCTION_KINDS.get(node.target)
        if kind == "gelu" and node.kwargs.get("approximate", "none") != "none":
            return None
        return kind
    if node.op == "call_method":
        return _METHOD_KINDS.get(node.target)
    return None


def _fit(unit: PWLU, kind: str, samples: int = 4097) -> tuple[float, float]:
    """Least-squares fit of the points to `kind` on each unit's range; tails follow the function's slope at
    the bounds. Returns (max abs error, rms error) over the fitted ranges."""
    f = _REFERENCE[kind]
    n = unit.intervals
    with torch.no_grad():
        u = torch.linspace(0.0, float(n), samples, dtype=torch.float64)  # normalised coordinate
        index = u.floor().clamp(max=n - 1).long()
        frac = u - index
        hat = torch.zeros(samples, n + 1, dtype=torch.float64)
        hat[torch.arange(samples), index] = 1 - frac
        hat[torch.arange(samples), index + 1] += frac
        bounds = unit.bounds.detach().double()
        left, width = bounds[:, 0], bounds[:, 1] - bounds[:, 0]
        xs = left[None, :] + u[:, None] / n * width[None, :]  # [S, C]
        target = f(xs)
        points = torch.linalg.lstsq(hat, target).solution  # [N + 1, C]
        unit.points.copy_(points.T.float())
        eps = 1e-3 * width
        k_left = (f(left + eps) - f(left)) / eps
        k_right = (f(bounds[:, 1]) - f(bounds[:, 1] - eps)) / eps
        unit.slopes.copy_(torch.stack([k_left, k_right], dim=1).float())
        error = (hat @ points - target).abs()
        return float(error.max()), float(error.pow(2).mean().sqrt())


def convert(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    intervals: int = 16,
    channel_wise: bool = True,
    fit_bound: float = 4.0,
    realign: bool = False,
) -> tuple[fx.GraphModule, list[SiteReport]]:
    """Replaces every ReLU, ReLU6, SiLU, Hardswish and (exact) GELU site of `model` by its own PWLU unit.

    Modules and functional calls both count, and a module called at several sites (torchvision's ResNet
    blocks call one ReLU twice) gets one unit per site. ReLU becomes an exact PWLU on [-fit_bound, fit_bound];
    ReLU6 an exact one with 16 intervals on [-2, 6] (both kinks on grid points); the others a least-squares fit
    on [-fit_bound, fit_bound], reported per site. With `realign=True` the units start in phase I of
    statistics-based realignment (ReLU while statistics are gathered; call `realign_()` on each afterwards).

    Returns the converted GraphModule and one report per site.
    """
    gm = trace(model)
    ShapeProp(gm).propagate(example_input)
    reports: list[SiteReport] = []
    for node in list(gm.graph.nodes):
        kind = _activation_kind(gm, node)
        if kind is None:
            continue
        shape = node.meta["tensor_meta"].shape
        channels = int(shape[1]) if len(shape) >= 2 else 1
        site = "pwlu_" + node.name
        if kind == "relu6":
            unit = PWLU(channels if channel_wise else None, intervals=16, bound=2.0, realign=realign)
            with torch.no_grad():
                unit.bounds.copy_(torch.tensor([[-2.0, 6.0]]).expand_as(unit.bounds))
                unit.points.copy_(unit.grid().clamp(0.0, 6.0))
                unit.slopes.zero_()
        else:
            unit = PWLU(channels if channel_wise else None, intervals=intervals, bound=fit_bound, realign=realign)
        exact = kind in ("relu", "relu6")
        max_err, rms = (0.0, 0.0) if exact else _fit(unit, kind)
        gm.add_submodule(site, unit)
        with gm.graph.inserting_after(node):
            replacement = gm.graph.call_module(site, (node.args[0],))
        node.replace_all_uses_with(replacement)
        gm.graph.erase_node(node)
        reports.append(SiteReport(site, kind, channels, exact, max_err, rms, tuple(unit.bounds[0].tolist())))
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    if any(not math.isfinite(r.max_abs_error) for r in reports):
        raise ValueError("a least-squares fit diverged")
    return gm, reports
