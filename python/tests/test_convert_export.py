import json

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

from pwlu_torch import PWLU, ExportError, convert, export


class Block(nn.Module):
    """Reuses one ReLU module at two sites, like torchvision's ResNet blocks, and has a functional one."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.act6 = nn.ReLU6()
        self.silu = nn.SiLU()
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        y = self.relu(self.bn(self.conv1(x)))
        y = self.relu(self.conv2(y) + y)
        y = self.silu(self.act6(y)) + F.relu(y)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


def test_every_site_gets_its_own_unit_and_relus_convert_exactly():
    torch.manual_seed(0)
    model = Block().eval()
    x = torch.randn(2, 3, 9, 9)
    converted, reports = convert(model, x)
    kinds = sorted(r.kind for r in reports)
    assert kinds == ["relu", "relu", "relu", "relu6", "silu"]
    sites = [r.site for r in reports]
    assert len(set(sites)) == len(sites)
    units = [m for m in converted.modules() if isinstance(m, PWLU)]
    assert len(units) == 5
    silu = next(r for r in reports if r.kind == "silu")
    assert not silu.exact and 0 < silu.max_abs_error < 0.05 and silu.rms_error < silu.max_abs_error
    assert all(r.exact and r.max_abs_error == 0 for r in reports if r.kind != "silu")
    # Exact sites change nothing; the SiLU fit changes little.
    with torch.no_grad():
        assert torch.allclose(converted(x), model(x), atol=0.1)


def test_relu_only_model_converts_bit_exactly():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.ReLU6()).eval()
    x = torch.randn(1, 3, 8, 8) * 5
    converted, _ = convert(model, x)
    with torch.no_grad():
        assert torch.equal(converted(x), model(x))


def test_export_writes_graph_weights_and_metadata(tmp_path):
    torch.manual_seed(0)
    model, _ = convert(Block().eval(), torch.randn(1, 3, 9, 9))
    path = tmp_path / "block.safetensors"
    graph = export(model, str(path), torch.randn(1, 3, 9, 9), labels=list("abcde"), name="block",
                   preprocess={"resize": 9, "crop": 9, "mean": [0.5] * 3, "std": [0.5] * 3})
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        names = set(f.keys())
        assert meta["format"] == "pwlu" and meta["format_version"] == "1"
        assert json.loads(meta["graph"]) == graph
        assert json.loads(meta["labels"]) == list("abcde")
        ops = [n["op"] for n in graph["nodes"]]
        assert ops.count("pwlu") == 5 and "batch_norm" in ops and "global_avg_pool" in ops
        params = {t for n in graph["nodes"] for t in n.get("params", {}).values()}
        assert params == names, "every tensor is referenced and every reference exists"
        for n in graph["nodes"]:
            for t in n.get("params", {}).values():
                assert f.get_tensor(t).dtype == torch.float32


def test_export_refuses_what_the_format_cannot_express():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect")

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(ExportError, match="conv.*reflect"):
        export(Bad(), "/dev/null", torch.zeros(1, 3, 4, 4))

    class Odd(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, 1)

    with pytest.raises(ExportError, match="cumsum"):
        export(Odd(), "/dev/null", torch.zeros(1, 3, 4, 4))

    unit = PWLU(3, 4, realign=True)
    with pytest.raises(ExportError, match="phase I"):
        export(nn.Sequential(unit), "/dev/null", torch.zeros(1, 3, 4, 4))


def test_f16_export_keeps_pwlu_tables_in_f32(tmp_path):
    model, _ = convert(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval(), torch.zeros(1, 3, 5, 5))
    path = tmp_path / "half.safetensors"
    export(model, str(path), torch.zeros(1, 3, 5, 5), dtype=torch.float16)
    with safe_open(str(path), "pt") as f:
        dtypes = {k: f.get_tensor(k).dtype for k in f.keys()}
    assert dtypes["0.weight"] == torch.float16
    assert all(v == torch.float32 for k, v in dtypes.items() if k.startswith("pwlu_"))


@pytest.mark.parametrize("channel_wise", [True, False])
def test_export_writes_non_uniform_and_layer_wise_units(tmp_path, channel_wise):
    from pwlu_torch import NonUniformPWLU

    torch.manual_seed(2)
    channels = 4 if channel_wise else None
    non_uniform = NonUniformPWLU(channels, intervals=5)
    uniform = PWLU(channels, intervals=7)
    with torch.no_grad():
        # Learned breakpoints out of order: the file holds them sorted, the points following.
        non_uniform.breakpoints[:, [1, 2]] = non_uniform.breakpoints[:, [2, 1]].clone()
        non_uniform.points.add_(torch.randn_like(non_uniform.points))
        uniform.points.add_(torch.randn_like(uniform.points))
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), non_uniform, nn.Conv2d(4, 4, 1), uniform).eval()
    path = tmp_path / "units.safetensors"
    x = torch.randn(1, 3, 5, 5)
    graph = export(model, str(path), x)
    units = [n for n in graph["nodes"] if n["op"].startswith("pwlu")]
    assert [n["op"] for n in units] == ["pwlu_non_uniform", "pwlu"]
    granularity = "channel" if channel_wise else "layer"
    assert [n["attrs"] for n in units] == [
        {"intervals": 5, "granularity": granularity},
        {"intervals": 7, "granularity": granularity},
    ]
    rows = 4 if channel_wise else 1
    with safe_open(str(path), "pt") as f:
        breakpoints = f.get_tensor(units[0]["params"]["breakpoints"])
        points = f.get_tensor(units[0]["params"]["points"])
        assert breakpoints.shape == (rows, 6) and points.shape == (rows, 6)
        assert bool((breakpoints[:, 1:] > breakpoints[:, :-1]).all())
        # The sorted unit computes what the module computes.
        resorted = NonUniformPWLU(channels, intervals=5)
        with torch.no_grad():
            resorted.breakpoints.copy_(breakpoints)
            resorted.points.copy_(points)
            resorted.slopes.copy_(f.get_tensor(units[0]["params"]["slopes"]))
        probe = torch.randn(2, 4, 3, 3) * 3
        assert torch.allclose(resorted(probe), non_uniform(probe))
        assert f.get_tensor(units[1]["params"]["bounds"]).shape == (rows, 2)
