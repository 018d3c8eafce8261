"""Replace a model's activations by PWLU units: exactly for ReLU and ReLU6, by a least-squares fit otherwise."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from .pwlu import PWLU, NonUniformPWLU

__all__ = ["convert", "SiteReport", "PwluTracer", "trace", "summarize", "TraceFailure"]


class PwluTracer(fx.Tracer):
    """An fx tracer that keeps PWLU units as leaves instead of tracing into their arithmetic."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (PWLU, NonUniformPWLU)) or super().is_leaf_module(m, qualname)


class TraceFailure(ValueError):
    """The model's forward cannot become a static graph: it branches on the values in a tensor."""


class _ConcreteProxy(fx.Proxy):
    """A proxy that answers shape questions with the example's shape, so that Python code computing padding or
    reshapes from `x.shape` runs on plain ints (and the graph records the results as constants)."""

    def _concrete(self) -> torch.Tensor:
        return self.node.meta["concrete"]

    @property
    def shape(self) -> torch.Size:
        return self._concrete().shape

    @property
    def ndim(self) -> int:
        return self._concrete().dim()

    def size(self, dim: int | None = None):
        value = self._concrete()
        return value.size() if dim is None else value.size(dim)

    def dim(self) -> int:
        return self._concrete().dim()

    def numel(self) -> int:
        return self._concrete().numel()


class _ConcreteTracer(PwluTracer):
    """Traces `model` while running it on `example`: every node also computes its real value, and proxies answer
    `shape`, `size()` and `dim()` with real numbers. What depends on the input's shape is specialised to the
    example's; what depends on the values in a tensor still fails (no static graph can hold it)."""

    def __init__(self, example: torch.Tensor) -> None:
        super().__init__()
        self.example = example
        # While a node's real value is computed, the tracer's patches of Module.__call__ and __getattr__ must
        # run modules plainly instead of recording them.
        self._computing = False

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ConcreteProxy(node, self)

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        if self._computing:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def call_module(self, m, forward, args, kwargs):
        if self._computing:
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, *rest, **more):
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, *rest, **more)
        node = proxy.node
        concrete = lambda v: fx.node.map_arg(v, self._concrete)  # noqa: E731
        cargs, ckwargs = concrete(node.args), concrete(node.kwargs)
        self._computing = True
        try:
            value = self._compute(kind, target, cargs, ckwargs)
        finally:
            self._computing = False
        node.meta["concrete"] = value
        return proxy

    @torch.no_grad()
    def _compute(self, kind, target, cargs, ckwargs):
        if kind == "placeholder":
            return self.example
        if kind == "get_attr":
            return self._attribute(target)
        if kind == "call_module":
            return self.root.get_submodule(target)(*cargs, **ckwargs)
        if kind == "call_function":
            return target(*cargs, **ckwargs)
        if kind == "call_method":
            return getattr(cargs[0], target)(*cargs[1:], **ckwargs)
        return None

    def _attribute(self, target: str):
        value = self.root
        for part in str(target).split("."):
            value = getattr(value, part)
        return value

    def _concrete(self, node: fx.Node):
        # Constants the tracer adds itself (tensors passed as arguments) are get_attr nodes without a proxy.
        if "concrete" not in node.meta and node.op == "get_attr":
            node.meta["concrete"] = self._attribute(node.target)
        return node.meta["concrete"]


def trace(model: nn.Module, example: torch.Tensor | None = None) -> fx.GraphModule:
    """Traces `model` (in eval mode) with PWLU units as leaves.

    Symbolic tracing first, which keeps the graph free of any input size. Where the forward computes with the
    input's shape (TensorFlow "SAME" padding from `x.shape`, Python `if`s on sizes) symbolic tracing fails, and
    with an `example` the model is traced again on it, its shapes specialised to the example's: the exported
    graph is fixed to that input size (as every exported classifier is) and the returned module runs at that
    size only. A forward that branches on the values in a tensor raises `TraceFailure`.
    """
    if isinstance(model, fx.GraphModule):
        return model
    model.eval()
    try:
        graph = PwluTracer().trace(model)
    except Exception as symbolic_error:  # fx raises TraceError, TypeError or others from user code
        if example is None:
            raise
        try:
            graph = _ConcreteTracer(example).trace(model)
        except fx.proxy.TraceError as e:
            raise TraceFailure(
                f"{type(model).__name__}.forward branches on the values in a tensor (data-dependent control "
                f"flow), which no static graph can express: {e}"
            ) from symbolic_error
        for node in graph.nodes:
            node.meta.pop("concrete", None)
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

_LAYOUT_PRESERVING_MODULES = (nn.Linear, nn.LayerNorm, nn.Dropout, nn.Identity, PWLU, NonUniformPWLU, *_MODULE_KINDS)
_LAYOUT_PRESERVING_FUNCTIONS = (F.layer_norm, F.linear, F.dropout, *_FUNCTION_KINDS)


def permute_dims(node: fx.Node) -> tuple[int, ...] | None:
    """The dims of a `permute` node (function or method), else None."""
    if node.op == "call_function" and node.target is torch.permute:
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dims")
    elif node.op == "call_method" and node.target == "permute":
        dims = node.args[1] if len(node.args) == 2 and isinstance(node.args[1], (list, tuple)) else node.args[1:]
    else:
        return None
    return tuple(int(d) for d in dims)


def _channels_last(gm: fx.GraphModule, node: fx.Node) -> bool:
    """Whether `node`'s value is an NCHW tensor permuted to NHWC (ConvNeXt's MLP between its two `permute`s),
    following layers that keep the layout."""
    for _ in range(256):
        dims = permute_dims(node)
        if dims is not None:
            return dims == (0, 2, 3, 1)
        keeps = (node.op == "call_module" and isinstance(gm.get_submodule(node.target), _LAYOUT_PRESERVING_MODULES)) or (
            node.op == "call_function" and node.target in _LAYOUT_PRESERVING_FUNCTIONS
        )
        if not keeps or not node.args or not isinstance(node.args[0], fx.Node):
            return False
        node = node.args[0]
    return False


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
    gm = trace(model, example_input)
    ShapeProp(gm).propagate(example_input)
    reports: list[SiteReport] = []
    for node in list(gm.graph.nodes):
        kind = _activation_kind(gm, node)
        if kind is None:
            continue
        shape = node.meta["tensor_meta"].shape
        # A channels-last site gets its unit between two permutes, so that the unit's channels are the
        # tensor's channels (PWLU units index dim 1).
        channels_last = len(shape) == 4 and _channels_last(gm, node.args[0])
        channels = int(shape[-1] if channels_last else shape[1]) if len(shape) >= 2 else 1
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
        if channels_last:
            with gm.graph.inserting_before(node):
                first = gm.graph.call_function(torch.permute, (node.args[0], (0, 3, 1, 2)))
                applied = gm.graph.call_module(site, (first,))
                replacement = gm.graph.call_function(torch.permute, (applied, (0, 2, 3, 1)))
        else:
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


def summarize(reports: list[SiteReport]) -> str:
    """One line per activation kind: how many sites became PWLU, and how exactly (`convert`'s reports)."""
    lines = []
    for kind in sorted({r.kind for r in reports}):
        sites = [r for r in reports if r.kind == kind]
        if all(r.exact for r in sites):
            how = "exact"
        else:
            worst = max(r.max_abs_error for r in sites)
            rms = max(r.rms_error for r in sites)
            how = f"fitted, max |error| {worst:.2g}, rms {rms:.2g} over the fitted range"
        lines.append(f"{kind}: {len(sites)} site(s), {how}")
    return "\n".join(lines) if lines else "no activation sites"
