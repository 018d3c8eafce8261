"""Export a traced PyTorch classifier to the pwlu model format (docs/format.md): one .safetensors file with the
weights under their state_dict names and the graph, input, preprocessing and labels in its metadata."""

from __future__ import annotations

import json
import operator
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from .convert import trace
from .pwlu import PWLU, NonUniformPWLU

__all__ = ["export", "ExportError", "FORMAT_VERSION", "build_graph"]

FORMAT_VERSION = 1


class ExportError(ValueError):
    """The model uses something the format cannot express; the message names the node, module and op."""


_ACTIVATION_MODULES = {
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.Sigmoid: "sigmoid",
    nn.SiLU: "silu",
    nn.Hardsigmoid: "hardsigmoid",
    nn.Hardswish: "hardswish",
}
_ACTIVATION_FUNCTIONS = {
    F.relu: "relu",
    torch.relu: "relu",
    F.relu6: "relu6",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    F.silu: "silu",
    F.hardsigmoid: "hardsigmoid",
    F.hardswish: "hardswish",
}
_ACTIVATION_METHODS = {"relu": "relu", "sigmoid": "sigmoid"}
_PASS_THROUGH_MODULES = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.AlphaDropout)


def _pair(v: Any) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(x) for x in v]


def _padding(top: int, left: int, bottom: int, right: int) -> dict[str, int]:
    return {"top": int(top), "left": int(left), "bottom": int(bottom), "right": int(right)}


class _Builder:
    def __init__(self, gm: fx.GraphModule, dtype: torch.dtype) -> None:
        self.gm = gm
        self.dtype = dtype
        self.nodes: list[dict[str, Any]] = []
        self.tensors: dict[str, torch.Tensor] = {}
        self.alias: dict[str, str] = {}
        self.inputs: list[dict[str, Any]] = []
        self.outputs: list[str] = []

    def fail(self, node: fx.Node, what: str) -> ExportError:
        where = f"module '{node.target}' ({type(self.gm.get_submodule(node.target)).__name__})" if node.op == "call_module" else f"{node.op} {getattr(node.target, '__name__', node.target)}"
        return ExportError(f"cannot export node '{node.name}', {where}: {what}")

    def value(self, arg: Any, node: fx.Node) -> str:
        if not isinstance(arg, fx.Node):
            raise self.fail(node, f"operand {arg!r} is not a tensor computed by the graph")
        return self.alias.get(arg.name, arg.name)

    def tensor(self, name: str, t: torch.Tensor) -> str:
        # PWLU tables are always f32: their index math must not lose precision.
        dtype = torch.float32 if name.endswith((".points", ".bounds", ".slopes", ".breakpoints")) else self.dtype
        self.tensors[name] = t.detach().to(dtype).contiguous().clone()
        return name

    def emit(self, node: fx.Node, op: str, inputs: list[str], params=None, attrs=None) -> None:
        shape = node.meta.get("tensor_meta")
        entry = {"name": node.name, "op": op, "inputs": inputs}
        if params:
            entry["params"] = params
        if attrs:
            entry["attrs"] = attrs
        if shape is not None:
            entry["shape"] = [int(d) for d in shape.shape]
        self.nodes.append(entry)

    def shape_of(self, arg: fx.Node) -> list[int]:
        return [int(d) for d in arg.meta["tensor_meta"].shape]

    def activation(self, node: fx.Node, kind: str, attrs=None) -> None:
        self.emit(node, "activation", [self.value(node.args[0], node)], attrs={"kind": kind, **(attrs or {})})

    def module(self, node: fx.Node) -> None:
        m = self.gm.get_submodule(node.target)
        name = node.target
        x = self.value(node.args[0], node)
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros":
                raise self.fail(node, f"padding_mode '{m.padding_mode}' (only zero padding is supported)")
            if isinstance(m.padding, str):
                raise self.fail(node, f"padding='{m.padding}' (use explicit padding)")
            ph, pw = _pair(m.padding)
            params = {"weight": self.tensor(f"{name}.weight", m.weight)}
            if m.bias is not None:
                params["bias"] = self.tensor(f"{name}.bias", m.bias)
            attrs = {
                "in_channels": m.in_channels,
                "out_channels": m.out_channels,
                "kernel": _pair(m.kernel_size),
                "stride": _pair(m.stride),
                "dilation": _pair(m.dilation),
                "padding": _padding(ph, pw, ph, pw),
                "groups": m.groups,
            }
            self.emit(node, "conv2d", [x], params, attrs)
        elif isinstance(m, nn.BatchNorm2d):
            if not m.track_running_stats or m.running_mean is None:
                raise self.fail(node, "batch norm without running statistics")
            c = m.num_features
            weight = m.weight if m.affine else torch.ones(c)
            bias = m.bias if m.affine else torch.zeros(c)
            params = {
                "weight": self.tensor(f"{name}.weight", weight),
                "bias": self.tensor(f"{name}.bias", bias),
                "running_mean": self.tensor(f"{name}.running_mean", m.running_mean),
                "running_var": self.tensor(f"{name}.running_var", m.running_var),
            }
            self.emit(node, "batch_norm", [x], params, {"eps": float(m.eps)})
        elif isinstance(m, nn.Linear):
            params = {"weight": self.tensor(f"{name}.weight", m.weight)}
            if m.bias is not None:
                params["bias"] = self.tensor(f"{name}.bias", m.bias)
            attrs = {"in_features": m.in_features, "out_features": m.out_features}
            self.emit(node, "linear", [x], params, attrs)
        elif isinstance(m, PWLU):
            if m.phase != "learn":
                raise self.fail(node, "PWLU still in realignment phase I (call realign_() first)")
            params = {
                "points": self.tensor(f"{name}.points", m.points),
                "bounds": self.tensor(f"{name}.bounds", m.bounds),
                "slopes": self.tensor(f"{name}.slopes", m.slopes),
            }
            attrs = {"intervals": m.intervals, "granularity": "channel" if m.channel_wise else "layer"}
            self.emit(node, "pwlu", [x], params, attrs)
        elif isinstance(m, NonUniformPWLU):
            if m.phase != "learn":
                raise self.fail(node, "non-uniform PWLU still in realignment phase I (call realign_() first)")
            breakpoints, order = torch.sort(m.breakpoints.detach(), dim=1)
            if not bool((breakpoints[:, 1:] > breakpoints[:, :-1]).all()):
                raise self.fail(node, "breakpoints are not strictly increasing")
            params = {
                "breakpoints": self.tensor(f"{name}.breakpoints", breakpoints),
                "points": self.tensor(f"{name}.points", torch.gather(m.points.detach(), 1, order)),
                "slopes": self.tensor(f"{name}.slopes", m.slopes),
            }
            attrs = {"intervals": m.intervals, "granularity": "channel" if m.channel_wise else "layer"}
            self.emit(node, "pwlu_non_uniform", [x], params, attrs)
        elif type(m) in _ACTIVATION_MODULES:
            self.activation(node, _ACTIVATION_MODULES[type(m)])
        elif isinstance(m, nn.LeakyReLU):
            self.activation(node, "leaky_relu", {"negative_slope": float(m.negative_slope)})
        elif isinstance(m, nn.GELU):
            self.activation(node, "gelu" if m.approximate == "none" else "gelu_tanh")
        elif isinstance(m, nn.MaxPool2d):
            if m.return_indices:
                raise self.fail(node, "return_indices=True")
            ph, pw = _pair(m.padding)
            attrs = {
                "kernel": _pair(m.kernel_size),
                "stride": _pair(m.stride if m.stride is not None else m.kernel_size),
                "padding": _padding(ph, pw, ph, pw),
                "dilation": _pair(m.dilation),
                "ceil_mode": bool(m.ceil_mode),
            }
            self.emit(node, "max_pool2d", [x], attrs=attrs)
        elif isinstance(m, nn.AvgPool2d):
            if m.divisor_override is not None:
                raise self.fail(node, "divisor_override")
            ph, pw = _pair(m.padding)
            attrs = {
                "kernel": _pair(m.kernel_size),
                "stride": _pair(m.stride if m.stride is not None else m.kernel_size),
                "padding": _padding(ph, pw, ph, pw),
                "ceil_mode": bool(m.ceil_mode),
                "count_include_pad": bool(m.count_include_pad),
            }
            self.emit(node, "avg_pool2d", [x], attrs=attrs)
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            self.adaptive_avg_pool(node, x, m.output_size)
        elif isinstance(m, nn.Flatten):
            self.flatten(node, x, m.start_dim, m.end_dim)
        elif isinstance(m, (nn.ZeroPad2d, nn.ConstantPad2d)):
            if float(getattr(m, "value", 0.0)) != 0.0:
                raise self.fail(node, "padding with a non-zero value")
            self.pad(node, x, m.padding)
        elif isinstance(m, _PASS_THROUGH_MODULES):
            self.alias[node.name] = x
        else:
            raise self.fail(node, "unsupported module")

    def adaptive_avg_pool(self, node: fx.Node, x: str, output_size: Any) -> None:
        if _pair(output_size if output_size is not None else 1) != [1, 1]:
            raise self.fail(node, f"adaptive average pooling to {output_size} (only to 1x1)")
        self.emit(node, "global_avg_pool", [x])

    def flatten(self, node: fx.Node, x: str, start: int, end: int) -> None:
        rank = len(self.shape_of(node.args[0]))
        if start != 1 or end not in (-1, rank - 1):
            raise self.fail(node, f"flatten({start}, {end}) (only flatten(1))")
        self.emit(node, "flatten", [x])

    def pad(self, node: fx.Node, x: str, pads: Any) -> None:
        pads = [int(p) for p in ([pads] * 4 if isinstance(pads, int) else pads)]
        if len(pads) != 4 or min(pads) < 0:
            raise self.fail(node, f"padding {pads} (only non-negative padding of the last two dims)")
        left, right, top, bottom = pads
        self.emit(node, "pad", [x], attrs={"padding": _padding(top, left, bottom, right)})

    def binary(self, node: fx.Node, op: str) -> None:
        a, b = node.args[0], node.args[1]
        if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)):
            raise self.fail(node, f"{op} with a constant operand")
        sa, sb = self.shape_of(a), self.shape_of(b)
        if op == "add":
            if sa != sb:
                raise self.fail(node, f"add of shapes {sa} and {sb} (no broadcasting)")
            self.emit(node, "add", [self.value(a, node), self.value(b, node)])
            return
        # Multiplication: squeeze-and-excitation's [N, C, H, W] * [N, C, 1, 1], in either order.
        if len(sb) == 4 and sb[2:] == [1, 1] and sb[:2] == sa[:2]:
            self.emit(node, "mul", [self.value(a, node), self.value(b, node)])
        elif len(sa) == 4 and sa[2:] == [1, 1] and sa[:2] == sb[:2]:
            self.emit(node, "mul", [self.value(b, node), self.value(a, node)])
        else:
            raise self.fail(node, f"mul of shapes {sa} and {sb} (only channel-broadcast [N, C, 1, 1])")

    def function(self, node: fx.Node) -> None:
        target = node.target
        if target in (operator.add, torch.add):
            if node.kwargs.get("alpha", 1) != 1:
                raise self.fail(node, "add with alpha")
            self.binary(node, "add")
        elif target in (operator.mul, torch.mul):
            self.binary(node, "mul")
        elif target in _ACTIVATION_FUNCTIONS:
            self.activation(node, _ACTIVATION_FUNCTIONS[target])
        elif target is F.leaky_relu:
            slope = node.args[1] if len(node.args) > 1 else node.kwargs.get("negative_slope", 0.01)
            self.activation(node, "leaky_relu", {"negative_slope": float(slope)})
        elif target is F.gelu:
            approximate = node.kwargs.get("approximate", "none")
            self.activation(node, "gelu" if approximate == "none" else "gelu_tanh")
        elif target is torch.flatten:
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            self.flatten(node, self.value(node.args[0], node), start, end)
        elif target is F.adaptive_avg_pool2d:
            size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
            self.adaptive_avg_pool(node, self.value(node.args[0], node), size)
        elif target is F.pad:
            mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
            value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else 0.0)
            if mode != "constant" or (value or 0.0) != 0.0:
                raise self.fail(node, f"pad mode {mode} value {value} (only zero padding)")
            self.pad(node, self.value(node.args[0], node), node.args[1])
        elif target is F.dropout or getattr(target, "__name__", "") == "stochastic_depth":
            # Identity at inference; torchvision's stochastic_depth(input, p, mode, training) says so itself.
            training = node.kwargs.get("training", node.args[3] if len(node.args) > 3 else False)
            if training:
                raise self.fail(node, "traced in training mode")
            self.alias[node.name] = self.value(node.args[0], node)
        else:
            raise self.fail(node, "unsupported function")

    def method(self, node: fx.Node) -> None:
        x = self.value(node.args[0], node)
        if node.target in _ACTIVATION_METHODS:
            self.activation(node, _ACTIVATION_METHODS[node.target])
        elif node.target == "flatten":
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            self.flatten(node, x, start, end)
        elif node.target == "contiguous":
            self.alias[node.name] = x
        else:
            raise self.fail(node, f"unsupported method .{node.target}()")

    def build(self) -> None:
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                if self.inputs:
                    raise self.fail(node, "a second input (classifiers have one)")
                self.inputs.append({"name": node.name, "shape": [int(d) for d in node.meta["tensor_meta"].shape]})
            elif node.op == "call_module":
                self.module(node)
            elif node.op == "call_function":
                self.function(node)
            elif node.op == "call_method":
                self.method(node)
            elif node.op == "output":
                result = node.args[0]
                if not isinstance(result, fx.Node):
                    raise self.fail(node, "the model must return one tensor")
                self.outputs.append(self.value(result, node))
            else:
                raise self.fail(node, "unsupported graph node (get_attr: tensors must belong to modules)")


def build_graph(model: nn.Module, example_input: torch.Tensor, dtype: torch.dtype = torch.float32):
    """Traces `model` and returns (graph dict, tensors by name) without writing a file."""
    gm = trace(model)
    gm.eval()
    ShapeProp(gm).propagate(example_input)
    builder = _Builder(gm, dtype)
    builder.build()
    graph = {"inputs": builder.inputs, "outputs": builder.outputs, "nodes": builder.nodes}
    return graph, builder.tensors


def export(
    model: nn.Module,
    path: str,
    example_input: torch.Tensor,
    *,
    preprocess: dict[str, Any] | None = None,
    labels: list[str] | None = None,
    name: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, Any]:
    """Writes `model` to `path` in the pwlu format and returns the graph it wrote.

    `preprocess` describes the input pipeline, e.g. `{"resize": 256, "crop": 224, "interpolation":
    "bilinear", "mean": [...], "std": [...], "channel_order": "rgb"}` (see docs/format.md); `labels` names the
    classes; `dtype` is torch.float32 or torch.float16 for the weights (PWLU tables stay f32).
    Raises ExportError naming the node and op when the model uses something the format cannot express.
    """
    if dtype not in (torch.float32, torch.float16):
        raise ValueError(f"weights are stored as float32 or float16, not {dtype}")
    graph, tensors = build_graph(model, example_input, dtype)
    metadata = {
        "format": "pwlu",
        "format_version": str(FORMAT_VERSION),
        "graph": json.dumps(graph, separators=(",", ":")),
    }
    if preprocess is not None:
        metadata["preprocess"] = json.dumps(preprocess)
    if labels is not None:
        metadata["labels"] = json.dumps(list(labels))
    if name is not None:
        metadata["name"] = name
    save_file(tensors, path, metadata=metadata)
    return graph
