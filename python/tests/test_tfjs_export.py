"""The TF.js op list (pwlu_tools.tfjs) computes what the PyTorch module computes, read with TensorFlow's
conventions: NHWC tensors, HWIO and HWC1 filters, TF's SAME padding."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pwlu_tools.compare import export_onnx
from pwlu_tools.tfjs import UnsupportedGraph, convert


class Block(nn.Module):
    """Inverted residual with squeeze-and-excitation: depthwise, sigmoid gate, residual add."""

    def __init__(self, channels):
        super().__init__()
        self.depthwise = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels), nn.BatchNorm2d(channels), nn.ReLU())
        self.squeeze = nn.Conv2d(channels, channels, 1)
        self.project = nn.Conv2d(channels, channels, 1, dilation=1)

    def forward(self, x):
        y = self.depthwise(x)
        gate = torch.sigmoid(self.squeeze(F.adaptive_avg_pool2d(y, 1)))
        return x + self.project(y * gate)


def small_model():
    return nn.Sequential(
        nn.ZeroPad2d((0, 1, 0, 1)),  # TF's SAME for a stride-2 3x3 on an even size
        nn.Conv2d(3, 8, 3, stride=2),
        nn.BatchNorm2d(8),
        nn.ReLU6(),
        Block(8),
        nn.Conv2d(8, 12, 3, padding=2, dilation=2),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(12, 5),
    ).eval()


def run_spec(spec, blob, x):
    """An interpreter of the op list with TensorFlow's semantics, written against torch's NCHW ops."""
    weights = np.frombuffer(blob, "<f4")

    def tensor(ref):
        if ref is None:
            return None
        size = math.prod(ref["shape"])
        return torch.from_numpy(weights[ref["offset"]:ref["offset"] + size].reshape(ref["shape"]).copy())

    def padded(x, pad, kernel, strides, dilations):
        if pad == "same":
            sides = []
            for extent, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
                total = max((math.ceil(extent / s) - 1) * s + (k - 1) * d + 1 - extent, 0)
                sides.append((total // 2, total - total // 2))
            (top, bottom), (left, right) = sides
        elif isinstance(pad, int):
            top = bottom = left = right = pad
        else:
            (top, bottom), (left, right) = pad[1], pad[2]
        return F.pad(x, (left, right, top, bottom))

    values = {spec["input"]: x.permute(0, 2, 3, 1)}
    for op in spec["ops"]:
        args = [values[name] for name in op["inputs"]]
        kind = op["op"]
        if kind in ("conv2d", "depthwiseConv2d"):
            filter_ = tensor(op["filter"])
            if kind == "conv2d":
                weight, groups = filter_.permute(3, 2, 0, 1), 1
            else:
                weight, groups = filter_.permute(2, 3, 0, 1), filter_.shape[2]
            nchw = padded(args[0].permute(0, 3, 1, 2), op["pad"], weight.shape[2:], op["strides"], op["dilations"])
            y = F.conv2d(nchw, weight, tensor(op["bias"]), op["strides"], 0, op["dilations"], groups)
            y = {None: y, "relu": F.relu(y), "relu6": F.relu6(y)}[op["activation"]]
            out = y.permute(0, 2, 3, 1)
        elif kind == "maxPool":
            nchw = args[0].permute(0, 3, 1, 2)
            if op["pad"] == "same" or isinstance(op["pad"], list):
                nchw = padded(nchw, op["pad"], op["kernel"], op["strides"], [1, 1])
                pad = 0
            else:
                pad = op["pad"]
            out = F.max_pool2d(nchw, op["kernel"], op["strides"], pad).permute(0, 2, 3, 1)
        elif kind == "globalAveragePool":
            out = args[0].mean(dim=(1, 2), keepdim=True)
        elif kind == "flatten":
            out = args[0].reshape(args[0].shape[0], -1)
        elif kind == "matMul":
            out = args[0] @ tensor(op["weight"]) + tensor(op["bias"])
        else:
            out = {"add": torch.add, "mul": torch.mul}.get(kind, None)
            out = out(*args) if out else {"relu": F.relu, "relu6": F.relu6, "sigmoid": torch.sigmoid}[kind](args[0])
        values[op["output"]] = out
    return values[spec["output"]]


def test_tfjs_op_list_computes_what_the_module_computes(tmp_path):
    torch.manual_seed(0)
    model = small_model()
    path = tmp_path / "small.onnx"
    export_onnx(model, path, 16)
    spec, blob = convert(path)
    kinds = [op["op"] for op in spec["ops"]]
    # Convolution, bias and activation are one op, and the zero Pad is the stem's own padding.
    assert kinds[0] == "conv2d" and spec["ops"][0]["activation"] == "relu6" and spec["ops"][0]["pad"] == "same"
    assert "depthwiseConv2d" in kinds and "relu6" not in kinds
    assert spec["input_shape"] == [1, 16, 16, 3]
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        np.testing.assert_allclose(run_spec(spec, blob, x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_tfjs_export_refuses_what_it_cannot_express(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.Conv2d(6, 6, 3, groups=2)).eval()
    path = tmp_path / "grouped.onnx"
    export_onnx(model, path, 8)
    with pytest.raises(UnsupportedGraph, match="grouped"):
        convert(path)
