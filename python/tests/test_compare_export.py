"""The comparison set's ONNX export: the same function as the PyTorch module, in the static form wonnx reads."""

import numpy as np
import onnx
import torch
from onnx.reference import ReferenceEvaluator
from torch import nn

from pwlu_tools.compare import export_onnx


def test_onnx_export_computes_what_the_module_computes(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.ZeroPad2d((0, 1, 0, 1)),
        nn.Conv2d(3, 8, 3, stride=2),
        nn.BatchNorm2d(8),
        nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    ).eval()
    path = tmp_path / "small.onnx"
    export_onnx(model, path, 16)
    proto = onnx.load(str(path))
    gemms = [n for n in proto.graph.node if n.op_type == "Gemm"]
    assert gemms, "the Linear layer is a Gemm"
    for node in gemms:
        assert all(a.i == 0 for a in node.attribute if a.name == "transB")
    # The padding's constant subgraph is folded: one Pad with static pads and no constant_value input.
    assert [n.op_type for n in proto.graph.node if n.op_type in ("Concat", "Reshape", "ConstantOfShape")] == []
    assert [len(n.input) for n in proto.graph.node if n.op_type == "Pad"] == [2]
    # Every intermediate shape is known (wonnx needs them).
    assert len(proto.graph.value_info) >= len(proto.graph.node) - 1
    x = torch.randn(1, 3, 16, 16)
    (got,) = ReferenceEvaluator(proto).run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
