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

from .convert import permute_dims, trace
from .pwlu import PWLU, NonUniformPWLU

__all__ = ["export", "ExportError", "FORMAT_VERSION", "build_graph"]

FORMAT_VERSION = 2
"""The newest version this exporter writes. A file gets the lowest version that expresses its graph, so that
models without the version-2 ops still load in engines that read version 1 only."""

_VERSION_2_OPS = {"concat", "channel_shuffle", "slice_channels", "adaptive_avg_pool2d", "layer_norm"}
_NCHW, _NHWC = "nchw", "nhwc"


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
_ACTIVATION_METHODS = {"relu": "relu", "sigmoid": "sigmoid", "relu_": "relu", "sigmoid_": "sigmoid"}
_ADD = (operator.add, operator.iadd, torch.add)
_MUL = (operator.mul, operator.imul, torch.mul)
_CONCAT = (torch.cat, torch.concat, torch.concatenate)
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
        self.version = 1
        # Per fx node: the layout of a 4-D tensor the exporter keeps as a view of an NCHW value (channels-last
        # between ConvNeXt's permutes), values that are not tensors of the format yet (a channel split's
        # pieces, the 5-D view of a channel shuffle), and tensors the graph reads as constants (get_attr).
        self.layout: dict[str, str] = {}
        self.pending: dict[str, tuple] = {}
        self.constants: dict[str, tuple[str, torch.Tensor]] = {}

    def fail(self, node: fx.Node, what: str) -> ExportError:
        where = f"module '{node.target}' ({type(self.gm.get_submodule(node.target)).__name__})" if node.op == "call_module" else f"{node.op} {getattr(node.target, '__name__', node.target)}"
        return ExportError(f"cannot export node '{node.name}', {where}: {what}")

    def operand(self, arg: Any, node: fx.Node) -> tuple[str, str]:
        """The emitted value an fx operand stands for, and its layout."""
        if not isinstance(arg, fx.Node):
            raise self.fail(node, f"operand {arg!r} is not a tensor computed by the graph")
        if arg.name in self.constants:
            raise self.fail(node, f"a constant tensor ('{arg.target}') as an operand (only as a per-channel scale)")
        if arg.name in self.pending:
            raise self.fail(node, f"'{arg.name}' ({self.pending[arg.name][0]}) as an operand")
        return self.alias.get(arg.name, arg.name), self.layout.get(arg.name, _NCHW)

    def value(self, arg: Any, node: fx.Node) -> str:
        """The emitted NCHW value an fx operand stands for."""
        name, layout = self.operand(arg, node)
        if layout != _NCHW:
            raise self.fail(node, "a channels-last tensor here (only linear layers, layer norms and element-wise "
                            "ops may run between permute(0, 2, 3, 1) and permute(0, 3, 1, 2))")
        return name

    def carry(self, node: fx.Node, arg: Any) -> None:
        """`node` is `arg` under another name (dropout, contiguous, identity)."""
        if isinstance(arg, fx.Node) and arg.name in self.pending:
            self.pending[node.name] = self.pending[arg.name]
            return
        name, layout = self.operand(arg, node)
        self.alias[node.name] = name
        self.layout[node.name] = layout

    def tensor(self, name: str, t: torch.Tensor) -> str:
        # PWLU tables are always f32: their index math must not lose precision.
        dtype = torch.float32 if name.endswith((".points", ".bounds", ".slopes", ".breakpoints")) else self.dtype
        self.tensors[name] = t.detach().to(dtype).contiguous().clone()
        return name

    def emit(self, node: fx.Node, op: str, inputs: list[str], params=None, attrs=None, layout: str = _NCHW) -> None:
        shape = node.meta.get("tensor_meta")
        entry = {"name": node.name, "op": op, "inputs": inputs}
        if params:
            entry["params"] = params
        if attrs:
            entry["attrs"] = attrs
        if shape is not None:
            dims = [int(d) for d in shape.shape]
            entry["shape"] = [dims[0], dims[3], dims[1], dims[2]] if layout == _NHWC else dims
        self.nodes.append(entry)
        self.layout[node.name] = layout
        if op in _VERSION_2_OPS:
            self.version = 2

    def shape_of(self, arg: fx.Node) -> list[int]:
        return [int(d) for d in arg.meta["tensor_meta"].shape]

    def activation(self, node: fx.Node, kind: str, attrs=None) -> None:
        x, layout = self.operand(node.args[0], node)
        self.emit(node, "activation", [x], attrs={"kind": kind, **(attrs or {})}, layout=layout)

    def module(self, node: fx.Node) -> None:
        m = self.gm.get_submodule(node.target)
        name = node.target
        if isinstance(m, _PASS_THROUGH_MODULES):
            self.carry(node, node.args[0])
            return
        x, layout = self.operand(node.args[0], node)
        if isinstance(m, nn.Linear):
            params = {}
            if layout == _NHWC:
                # A linear layer over the channels of a channels-last tensor is a 1x1 convolution.
                params["weight"] = self.tensor(f"{name}.weight", m.weight.reshape(m.out_features, m.in_features, 1, 1))
                if m.bias is not None:
                    params["bias"] = self.tensor(f"{name}.bias", m.bias)
                attrs = {
                    "in_channels": m.in_features,
                    "out_channels": m.out_features,
                    "kernel": [1, 1],
                    "stride": [1, 1],
                    "dilation": [1, 1],
                    "padding": _padding(0, 0, 0, 0),
                    "groups": 1,
                }
                self.emit(node, "conv2d", [x], params, attrs, layout=_NHWC)
                return
            params["weight"] = self.tensor(f"{name}.weight", m.weight)
            if m.bias is not None:
                params["bias"] = self.tensor(f"{name}.bias", m.bias)
            attrs = {"in_features": m.in_features, "out_features": m.out_features}
            self.emit(node, "linear", [x], params, attrs)
            return
        if isinstance(m, nn.LayerNorm):
            weight = m.weight if m.elementwise_affine else None
            bias = m.bias if m.elementwise_affine else None
            self.layer_norm(node, x, layout, list(m.normalized_shape), weight, bias, m.eps, name)
            return
        if isinstance(m, (PWLU, NonUniformPWLU)):
            self.pwlu(node, m, x, layout)
            return
        if type(m) in _ACTIVATION_MODULES:
            self.activation(node, _ACTIVATION_MODULES[type(m)])
            return
        if isinstance(m, nn.LeakyReLU):
            self.activation(node, "leaky_relu", {"negative_slope": float(m.negative_slope)})
            return
        if isinstance(m, nn.GELU):
            self.activation(node, "gelu" if m.approximate == "none" else "gelu_tanh")
            return
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
        elif isinstance(m, nn.MaxPool2d):
            if m.return_indices:
                raise self.fail(node, "return_indices=True")
            self.max_pool(node, x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
        elif isinstance(m, nn.AvgPool2d):
            self.avg_pool(node, x, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                          m.divisor_override)
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            self.adaptive_avg_pool(node, x, m.output_size)
        elif isinstance(m, nn.Flatten):
            self.flatten(node, x, m.start_dim, m.end_dim)
        elif isinstance(m, (nn.ZeroPad2d, nn.ConstantPad2d)):
            if float(getattr(m, "value", 0.0)) != 0.0:
                raise self.fail(node, "padding with a non-zero value")
            self.pad(node, x, m.padding)
        else:
            raise self.fail(node, "unsupported module")

    def pwlu(self, node: fx.Node, m: nn.Module, x: str, layout: str) -> None:
        name = node.target
        if m.phase != "learn":
            raise self.fail(node, "PWLU still in realignment phase I (call realign_() first)")
        if layout == _NHWC and m.channel_wise:
            raise self.fail(node, "a channel-wise PWLU on a channels-last tensor (its units would index the "
                            "height; pwlu_torch.convert puts such units between permutes)")
        attrs = {"intervals": m.intervals, "granularity": "channel" if m.channel_wise else "layer"}
        if isinstance(m, PWLU):
            params = {
                "points": self.tensor(f"{name}.points", m.points),
                "bounds": self.tensor(f"{name}.bounds", m.bounds),
                "slopes": self.tensor(f"{name}.slopes", m.slopes),
            }
            self.emit(node, "pwlu", [x], params, attrs, layout=layout)
            return
        breakpoints, order = torch.sort(m.breakpoints.detach(), dim=1)
        if not bool((breakpoints[:, 1:] > breakpoints[:, :-1]).all()):
            raise self.fail(node, "breakpoints are not strictly increasing")
        params = {
            "breakpoints": self.tensor(f"{name}.breakpoints", breakpoints),
            "points": self.tensor(f"{name}.points", torch.gather(m.points.detach(), 1, order)),
            "slopes": self.tensor(f"{name}.slopes", m.slopes),
        }
        self.emit(node, "pwlu_non_uniform", [x], params, attrs, layout=layout)

    def layer_norm(self, node, x, layout, normalized_shape, weight, bias, eps, name) -> None:
        shape = self.shape_of(node.args[0])
        channels = shape[-1] if layout == _NHWC else None
        if layout != _NHWC or normalized_shape != [channels]:
            raise self.fail(node, f"layer norm over {normalized_shape} of a {layout} tensor {shape} (only over the "
                            "channels: channels-last after permute(0, 2, 3, 1))")
        weight = torch.ones(channels) if weight is None else weight
        bias = torch.zeros(channels) if bias is None else bias
        params = {"weight": self.tensor(f"{name}.weight", weight), "bias": self.tensor(f"{name}.bias", bias)}
        self.emit(node, "layer_norm", [x], params, {"eps": float(eps)}, layout=_NHWC)

    def max_pool(self, node, x, kernel, stride, padding, dilation, ceil_mode) -> None:
        ph, pw = _pair(padding)
        attrs = {
            "kernel": _pair(kernel),
            "stride": _pair(stride if stride not in (None, []) else kernel),
            "padding": _padding(ph, pw, ph, pw),
            "dilation": _pair(dilation),
            "ceil_mode": bool(ceil_mode),
        }
        self.emit(node, "max_pool2d", [x], attrs=attrs)

    def avg_pool(self, node, x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override) -> None:
        if divisor_override is not None:
            raise self.fail(node, "divisor_override")
        ph, pw = _pair(padding)
        attrs = {
            "kernel": _pair(kernel),
            "stride": _pair(stride if stride not in (None, []) else kernel),
            "padding": _padding(ph, pw, ph, pw),
            "ceil_mode": bool(ceil_mode),
            "count_include_pad": bool(count_include_pad),
        }
        self.emit(node, "avg_pool2d", [x], attrs=attrs)

    def adaptive_avg_pool(self, node: fx.Node, x: str, output_size: Any) -> None:
        h, w = self.shape_of(node.args[0])[2:]
        sizes = [output_size, output_size] if isinstance(output_size, int) else list(output_size)
        out = [int(s) if s is not None else full for s, full in zip(sizes, (h, w))]
        if out == [1, 1]:
            self.emit(node, "global_avg_pool", [x])
        elif out == [h, w]:
            self.alias[node.name] = x
        else:
            self.emit(node, "adaptive_avg_pool2d", [x], attrs={"output_size": out})

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
        if op == "mul":
            for tensor, scale in ((a, b), (b, a)):
                if isinstance(scale, fx.Node) and scale.name in self.constants:
                    self.scale(node, tensor, *self.constants[scale.name])
                    return
        if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)):
            raise self.fail(node, f"{op} with a constant operand")
        (xa, la), (xb, lb) = self.operand(a, node), self.operand(b, node)
        sa, sb = self.shape_of(a), self.shape_of(b)
        if op == "add":
            if sa != sb or la != lb:
                raise self.fail(node, f"add of shapes {sa} and {sb} (no broadcasting)")
            self.emit(node, "add", [xa, xb], layout=la)
            return
        if la != _NCHW or lb != _NCHW:
            raise self.fail(node, "mul of channels-last tensors")
        # Multiplication: squeeze-and-excitation's [N, C, H, W] * [N, C, 1, 1], in either order.
        if len(sb) == 4 and sb[2:] == [1, 1] and sb[:2] == sa[:2]:
            self.emit(node, "mul", [xa, xb])
        elif len(sa) == 4 and sa[2:] == [1, 1] and sa[:2] == sb[:2]:
            self.emit(node, "mul", [xb, xa])
        else:
            raise self.fail(node, f"mul of shapes {sa} and {sb} (only channel-broadcast [N, C, 1, 1])")

    def scale(self, node: fx.Node, arg: Any, name: str, scale: torch.Tensor) -> None:
        """`x * s` with a constant per-channel `s` (ConvNeXt's layer scale): a batch norm with mean 0, variance
        1 and eps 0, which computes exactly `x * s` and which the engine folds into the convolution before it."""
        x, layout = self.operand(arg, node)
        shape = self.shape_of(arg)
        channels = shape[-1] if layout == _NHWC else shape[1]
        per_channel = [channels] if layout == _NHWC else [channels, 1, 1]
        if len(shape) != 4 or list(scale.shape[-len(per_channel):]) != per_channel or scale.numel() != channels:
            raise self.fail(node, f"mul by a constant of shape {list(scale.shape)} on {shape} (only one value per "
                            "channel)")
        params = {
            "weight": self.tensor(name, scale.reshape(channels)),
            "bias": self.tensor(f"{node.name}.zeros", torch.zeros(channels)),
            "running_mean": self.tensor(f"{node.name}.zeros", torch.zeros(channels)),
            "running_var": self.tensor(f"{node.name}.ones", torch.ones(channels)),
        }
        self.emit(node, "batch_norm", [x], params, {"eps": 0.0}, layout=layout)

    def concat(self, node: fx.Node) -> None:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        rank = len(self.shape_of(tensors[0]))
        if dim % rank != 1 or rank not in (2, 4):
            raise self.fail(node, f"concatenation along dim {dim} of rank-{rank} tensors (only along the channels)")
        self.emit(node, "concat", [self.value(t, node) for t in tensors])

    def split(self, node: fx.Node, dim: int) -> None:
        """`chunk` or `split` along the channels: its pieces become slices when read (`getitem`)."""
        x = self.value(node.args[0], node)
        if dim % len(self.shape_of(node.args[0])) != 1:
            raise self.fail(node, f"split along dim {dim} (only along the channels)")
        bounds, start = [], 0
        for meta in node.meta["tensor_meta"]:
            end = start + int(meta.shape[1])
            bounds.append((start, end))
            start = end
        self.pending[node.name] = ("split", x, bounds)

    def getitem(self, node: fx.Node) -> None:
        source, index = node.args
        pending = self.pending.get(getattr(source, "name", None))
        if pending is not None and pending[0] == "split" and isinstance(index, int):
            x, bounds = pending[1], pending[2]
            start, end = bounds[index]
            total = bounds[-1][1]
            if (start, end) == (0, total):
                self.alias[node.name] = x
            else:
                self.emit(node, "slice_channels", [x], attrs={"start": start, "end": end})
            return
        # x[:, a:b] (or with trailing full slices): a slice of the channels.
        if isinstance(index, tuple) and len(index) >= 2 and index[0] == slice(None):
            channel = index[1]
            rest_full = all(i == slice(None) or i is Ellipsis for i in index[2:])
            if isinstance(channel, slice) and channel.step in (None, 1) and rest_full:
                x = self.value(source, node)
                c = self.shape_of(source)[1]
                start, end, _ = channel.indices(c)
                if end > start:
                    self.emit(node, "slice_channels", [x], attrs={"start": start, "end": end})
                    return
        raise self.fail(node, f"indexing with {index!r} (only channel splits and x[:, a:b])")

    def reshape(self, node: fx.Node) -> None:
        """view/reshape/flatten patterns with a meaning in the format: flatten(1), and ShuffleNet's channel
        shuffle (view to [N, g, C/g, H, W], transpose(1, 2), view back to [N, C, H, W])."""
        source = node.args[0]
        out = [int(d) for d in node.meta["tensor_meta"].shape]
        pending = self.pending.get(getattr(source, "name", None))
        if pending is not None and pending[0] == "grouped" and len(out) == 4:
            _, x, groups, transposed, shape = pending
            if out == shape:
                if transposed:
                    self.emit(node, "channel_shuffle", [x], attrs={"groups": groups})
                else:
                    self.alias[node.name] = x
                return
        shape = self.shape_of(source)
        x = self.value(source, node)
        if len(shape) == 4 and len(out) == 5 and out[0] == shape[0] and out[1] * out[2] == shape[1] \
                and out[3:] == shape[2:]:
            self.pending[node.name] = ("grouped", x, out[1], False, shape)
        elif len(shape) == 4 and len(out) == 2 and out == [shape[0], shape[1] * shape[2] * shape[3]]:
            self.emit(node, "flatten", [x])
        elif out == shape:
            self.alias[node.name] = x
        else:
            raise self.fail(node, f"reshape of {shape} to {out} (only flatten(1) and channel shuffles)")

    def transpose(self, node: fx.Node, dims: tuple[int, int]) -> None:
        source = node.args[0]
        pending = self.pending.get(getattr(source, "name", None))
        if pending is not None and pending[0] == "grouped" and sorted(d % 5 for d in dims) == [1, 2]:
            _, x, groups, transposed, shape = pending
            self.pending[node.name] = ("grouped", x, groups, not transposed, shape)
            return
        raise self.fail(node, f"transpose{dims} (only the channel shuffle's transpose(1, 2))")

    def permute(self, node: fx.Node, dims: tuple[int, ...]) -> None:
        x, layout = self.operand(node.args[0], node)
        if dims == (0, 2, 3, 1) and layout == _NCHW:
            self.layout[node.name] = _NHWC
        elif dims == (0, 3, 1, 2) and layout == _NHWC:
            self.layout[node.name] = _NCHW
        else:
            raise self.fail(node, f"permute{dims} of a {layout} tensor (only NCHW to channels-last and back)")
        self.alias[node.name] = x

    def mean(self, node: fx.Node, dims: Any, keepdim: bool) -> None:
        x = self.value(node.args[0], node)
        if dims is None:
            raise self.fail(node, "mean over every dimension (only over height and width)")
        dims = sorted(int(d) % 4 for d in ([dims] if isinstance(dims, int) else dims))
        if dims != [2, 3] or len(self.shape_of(node.args[0])) != 4:
            raise self.fail(node, f"mean over {dims} (only over height and width)")
        if keepdim:
            self.emit(node, "global_avg_pool", [x])
            return
        # Mean without keepdim: the pooling, then a flatten of [N, C, 1, 1] (no data moves).
        pooled = {"name": f"{node.name}_pool", "op": "global_avg_pool", "inputs": [x]}
        shape = node.meta.get("tensor_meta")
        if shape is not None:
            pooled["shape"] = [int(shape.shape[0]), int(shape.shape[1]), 1, 1]
        self.nodes.append(pooled)
        self.emit(node, "flatten", [pooled["name"]])

    @staticmethod
    def arg(node: fx.Node, index: int, name: str, default: Any) -> Any:
        return node.args[index] if len(node.args) > index else node.kwargs.get(name, default)

    def function(self, node: fx.Node) -> None:
        target = node.target
        arg = lambda i, name, default=None: self.arg(node, i, name, default)  # noqa: E731
        if target in _ADD:
            if node.kwargs.get("alpha", 1) != 1:
                raise self.fail(node, "add with alpha")
            self.binary(node, "add")
        elif target in _MUL:
            self.binary(node, "mul")
        elif target in _CONCAT:
            self.concat(node)
        elif target in _ACTIVATION_FUNCTIONS:
            self.activation(node, _ACTIVATION_FUNCTIONS[target])
        elif target is F.leaky_relu:
            self.activation(node, "leaky_relu", {"negative_slope": float(arg(1, "negative_slope", 0.01))})
        elif target is F.gelu:
            approximate = node.kwargs.get("approximate", "none")
            self.activation(node, "gelu" if approximate == "none" else "gelu_tanh")
        elif target is torch.flatten:
            self.flatten_call(node, arg(1, "start_dim", 0), arg(2, "end_dim", -1))
        elif target is F.adaptive_avg_pool2d:
            self.adaptive_avg_pool(node, self.value(node.args[0], node), arg(1, "output_size"))
        elif target is F.max_pool2d:
            if arg(6, "return_indices", False):
                raise self.fail(node, "return_indices=True")
            self.max_pool(node, self.value(node.args[0], node), arg(1, "kernel_size"), arg(2, "stride"),
                          arg(3, "padding", 0), arg(4, "dilation", 1), arg(5, "ceil_mode", False))
        elif target is F.avg_pool2d:
            self.avg_pool(node, self.value(node.args[0], node), arg(1, "kernel_size"), arg(2, "stride"),
                          arg(3, "padding", 0), arg(4, "ceil_mode", False), arg(5, "count_include_pad", True),
                          arg(6, "divisor_override"))
        elif target is torch.mean:
            self.mean(node, arg(1, "dim"), arg(2, "keepdim", False))
        elif target is torch.permute:
            self.permute(node, permute_dims(node))
        elif target is torch.transpose:
            self.transpose(node, (arg(1, "dim0"), arg(2, "dim1")))
        elif target in (torch.chunk, torch.split):
            self.split(node, arg(2, "dim", 0))
        elif target is operator.getitem:
            self.getitem(node)
        elif target is F.layer_norm:
            x, layout = self.operand(node.args[0], node)
            weight, bias = arg(2, "weight"), arg(3, "bias")
            tensors = []
            for t in (weight, bias):
                if t is None:
                    tensors.append(None)
                elif isinstance(t, fx.Node) and t.name in self.constants:
                    tensors.append(self.constants[t.name][1])
                else:
                    raise self.fail(node, "layer norm whose weight is computed by the graph")
            self.layer_norm(node, x, layout, [int(d) for d in arg(1, "normalized_shape")], tensors[0],
                            tensors[1], arg(4, "eps", 1e-5), node.name)
        elif target is F.pad:
            mode = arg(2, "mode", "constant")
            value = arg(3, "value", 0.0)
            if mode != "constant" or (value or 0.0) != 0.0:
                raise self.fail(node, f"pad mode {mode} value {value} (only zero padding)")
            self.pad(node, self.value(node.args[0], node), node.args[1])
        elif target is F.dropout or getattr(target, "__name__", "") == "stochastic_depth":
            # Identity at inference; torchvision's stochastic_depth(input, p, mode, training) says so itself.
            if arg(3, "training", False):
                raise self.fail(node, "traced in training mode")
            self.carry(node, node.args[0])
        else:
            raise self.fail(node, "unsupported function")

    def flatten_call(self, node: fx.Node, start: int, end: int) -> None:
        pending = self.pending.get(getattr(node.args[0], "name", None))
        if pending is not None:
            self.reshape(node)
        else:
            self.flatten(node, self.value(node.args[0], node), start, end)

    def method(self, node: fx.Node) -> None:
        target = node.target
        arg = lambda i, name, default=None: self.arg(node, i, name, default)  # noqa: E731
        if target in _ACTIVATION_METHODS:
            self.activation(node, _ACTIVATION_METHODS[target])
        elif target == "flatten":
            self.flatten_call(node, arg(1, "start_dim", 0), arg(2, "end_dim", -1))
        elif target in ("contiguous", "clone"):
            self.carry(node, node.args[0])
        elif target in ("view", "reshape"):
            self.reshape(node)
        elif target == "permute":
            self.permute(node, permute_dims(node))
        elif target == "transpose":
            self.transpose(node, (arg(1, "dim0"), arg(2, "dim1")))
        elif target == "mean":
            self.mean(node, arg(1, "dim"), arg(2, "keepdim", False))
        elif target in ("chunk", "split"):
            self.split(node, arg(2, "dim", 0))
        elif target in ("add", "add_", "__iadd__"):
            self.binary(node, "add")
        elif target in ("mul", "mul_"):
            self.binary(node, "mul")
        else:
            raise self.fail(node, f"unsupported method .{target}()")

    def build(self) -> None:
        for node in self.gm.graph.nodes:
            if node.op in ("call_module", "call_function", "call_method") and "tensor_meta" not in node.meta:
                # Arithmetic on sizes (x.size(), c // groups): plain numbers, already folded into the shapes
                # the tensor nodes record. A tensor operand that is really missing fails where it is read.
                continue
            if node.op == "placeholder":
                if self.inputs:
                    raise self.fail(node, "a second input (classifiers have one)")
                self.inputs.append({"name": node.name, "shape": [int(d) for d in node.meta["tensor_meta"].shape]})
            elif node.op == "get_attr":
                value = self.gm
                for part in str(node.target).split("."):
                    value = getattr(value, part)
                if not isinstance(value, torch.Tensor):
                    raise self.fail(node, "a constant that is not a tensor")
                self.constants[node.name] = (str(node.target), value.detach())
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
                raise self.fail(node, "unsupported graph node")


def build_graph(model: nn.Module, example_input: torch.Tensor, dtype: torch.dtype = torch.float32):
    """Traces `model` and returns (graph dict, tensors by name, format version) without writing a file."""
    gm = trace(model, example_input)
    gm.eval()
    ShapeProp(gm).propagate(example_input)
    builder = _Builder(gm, dtype)
    builder.build()
    graph = {"inputs": builder.inputs, "outputs": builder.outputs, "nodes": builder.nodes}
    return graph, builder.tensors, builder.version


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
    graph, tensors, version = build_graph(model, example_input, dtype)
    metadata = {
        "format": "pwlu",
        "format_version": str(version),
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
