"""Every CNN classifier family in torchvision, as a user brings it: seeded random weights, batch-norm statistics
re-estimated on inputs, every activation converted to PWLU, exported, run by the engine (the `pwlu` package, on
the CPU backend; a few on the GPU backend too) and compared with PyTorch: within 1e-3 of the largest logit and
the same top-5. Small inputs (64 x 64, Inception v3 its minimum 75 x 75) keep it fast. Vision transformers,
Swin and MaxViT are not CNNs of this engine's kind and are not here (docs/format.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.models as tvm
from safetensors import safe_open
from torch import nn

from pwlu_torch import ExportError, TraceFailure, convert, export, summarize

pwlu = pytest.importorskip("pwlu", reason="the pwlu bindings: bash scripts/python-bindings.sh", exc_type=ImportError)

FAMILIES = [
    "alexnet",
    "vgg11_bn",
    "resnet18",
    "resnext50_32x4d",
    "wide_resnet50_2",
    "densenet121",
    "squeezenet1_1",
    "googlenet",
    "inception_v3",
    "shufflenet_v2_x1_0",
    "mnasnet1_0",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "efficientnet_b1",
    "efficientnet_v2_s",
    "regnet_x_400mf",
    "regnet_y_400mf",
    "convnext_tiny",
]
# The families whose new ops (concat, shuffle, slices, layer norm, adaptive pooling) the GPU backend runs too.
ON_THE_GPU = {"alexnet", "squeezenet1_1", "shufflenet_v2_x1_0", "convnext_tiny", "googlenet"}


def reestimate_batch_norm(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Replaces the running statistics by those of `batches`, so that activations stay in range."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    model.train()
    with torch.no_grad():
        for batch in batches:
            model(batch)
    model.eval()


def compare(model: nn.Module, path: str, x: torch.Tensor, backend: str) -> None:
    with torch.no_grad():
        expected = model(x).numpy()
    got = pwlu.Model(path, backend=backend).run(x.numpy()).reshape(expected.shape)
    scale = np.abs(expected).max(axis=1, keepdims=True)
    worst = float((np.abs(got - expected) / scale).max())
    assert worst <= 1e-3, f"{backend}: largest difference {worst:.2e} of the largest logit"
    for g, e in zip(got, expected):
        assert list(np.argsort(-g)[:5]) == list(np.argsort(-e)[:5]), f"{backend}: top-5 differs"


@pytest.mark.parametrize("name", FAMILIES)
def test_torchvision_classifier_exports_and_matches(name, tmp_path):
    torch.manual_seed(0)
    size = 75 if name == "inception_v3" else 64
    # Inception v3's auxiliary head needs 299 x 299 in training mode (which re-estimating batch norm uses).
    extra = {"aux_logits": False, "init_weights": True} if name == "inception_v3" else {}
    model = getattr(tvm, name)(weights=None, num_classes=100, **extra)
    reestimate_batch_norm(model, [torch.randn(8, 3, size, size) for _ in range(2)])
    example = torch.randn(2, 3, size, size)
    converted, reports = convert(model, example[:1])
    assert reports, "every family has activations to convert"
    assert "site(s)" in summarize(reports)
    path = str(tmp_path / f"{name}.safetensors")
    graph = export(converted, path, example[:1], name=name)
    # The lowest format version that expresses the graph: engines that read version 1 only still load the rest.
    new_ops = {n["op"] for n in graph["nodes"]} & {"concat", "channel_shuffle", "slice_channels", "layer_norm",
                                                   "adaptive_avg_pool2d"}
    with safe_open(path, "pt") as f:
        assert f.metadata()["format_version"] == ("2" if new_ops else "1")
    compare(converted, path, example, "cpu")
    if name in ON_THE_GPU:
        compare(converted, path, example, "vulkan")


class SamePadding(nn.Module):
    """A TensorFlow port's convolution: padding computed in forward from the input's shape, as "SAME" does."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride)
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        pad_h = max((math.ceil(ih / self.stride) - 1) * self.stride + self.kernel - ih, 0)
        pad_w = max((math.ceil(iw / self.stride) - 1) * self.stride + self.kernel - iw, 0)
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return self.conv(x)


class TensorFlowPort(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = SamePadding(3, 8, 3, 2)
        self.act = nn.ReLU6()
        self.block = SamePadding(8, 16, 5, 2)
        self.head = nn.Linear(16, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.block(self.act(self.stem(x))))
        return self.head(x.mean((2, 3)))


def test_shape_dependent_padding_is_traced_on_the_example(tmp_path):
    torch.manual_seed(0)
    model = TensorFlowPort().eval()
    example = torch.randn(1, 3, 23, 18)  # odd sizes: asymmetric padding on both axes
    with pytest.raises(Exception):
        torch.fx.symbolic_trace(model)  # what stopped such models before
    converted, reports = convert(model, example)
    assert sorted(r.kind for r in reports) == ["relu", "relu6"]
    path = str(tmp_path / "tf_port.safetensors")
    graph = export(converted, path, example)
    assert [n["op"] for n in graph["nodes"]].count("pad") == 2
    compare(converted, path, torch.cat([example, -example]), "cpu")


class ValueBranch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) if x.sum() > 0 else x


def test_data_dependent_control_flow_is_refused_by_name():
    with pytest.raises(TraceFailure, match="branches on the values"):
        convert(ValueBranch(), torch.randn(1, 3, 4, 4))


class Unsupported(nn.Module):
    def __init__(self, tail) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.tail = tail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.conv(x))


@pytest.mark.parametrize(
    "tail, message",
    [
        (lambda y: torch.cat([y, y], dim=2).flatten(1), r"node 'cat'.*along dim 2"),
        (lambda y: y.mean().reshape(1, 1), r"node 'mean'.*mean over every dimension"),
        (lambda y: y.permute(0, 2, 1, 3).flatten(1), r"node 'permute'.*permute\(0, 2, 1, 3\)"),
        (lambda y: y[:, :, 1:].flatten(1), r"node 'getitem'.*indexing"),
    ],
)
def test_an_op_the_format_cannot_express_names_node_and_op(tmp_path, tail, message):
    with pytest.raises(ExportError, match=message):
        export(Unsupported(tail).eval(), str(tmp_path / "x.safetensors"), torch.randn(1, 3, 4, 4))
