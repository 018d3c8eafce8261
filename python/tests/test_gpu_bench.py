"""The GPU benchmark's bookkeeping: a run on a lent machine must leave readable figures even when a step failed,
was skipped for time, or never started."""

import json

import torch
from torch import nn

from pwlu_tools import gpu_bench


def test_report_survives_errors_skips_and_missing_steps(tmp_path):
    report = {
        "date": "2026-12-01",
        "torch": torch.__version__,
        "torch_device": "cpu",
        "adapter": "test adapter",
        "models": {
            "measured": {
                "parity": {"max_abs_difference": 1e-6, "relative_to_max_logit": 1e-7, "same_top5": True},
                "batches": {
                    "1": {
                        "pwlu": {"median_ms": 2.0, "min_ms": 1.5, "images_per_second": 500.0, "gflop_per_second": 9.0},
                        "torch_original_fp32": {"median_ms": 1.0},
                    }
                },
                "versus": {"versus": {"ratio_median": 1.01, "ratio_lower_quartile": 1.0, "ratio_upper_quartile": 1.02}},
            },
            "failed": {
                "parity": {"error": "no adapter"},
                "batches": {
                    "64": {
                        "pwlu": {"error": "out of memory\n\nUsage: pwlu | more"},
                        "torch_original_fp32": {"error": "oom"},
                    }
                },
                "versus": {"skipped": "budget"},
            },
            "never started": {"skipped": "budget"},
            "broken": {"error": "RuntimeError: the exporter refused a node"},
        },
    }
    gpu_bench.write_report(tmp_path, report)
    table = (tmp_path / "gpu-bench.md").read_text()
    assert "| measured | 1 | 2.000 (1.500) | 500 | 9 | - | 1.000 |" in table
    assert "2.00x" in table
    assert "1.010x (middle half 1.000-1.020)" in table
    assert "out of memory" in table and "no adapter" in table and "budget" in table
    assert "Usage" not in table, "an error is one line in its cell"
    assert "| never started | budget |" in table
    assert "| broken | RuntimeError: the exporter refused a node |" in table
    assert all(line.count("|") in (0, 5, 11) for line in table.splitlines()), table
    assert json.loads((tmp_path / "gpu-bench.json").read_text())["adapter"] == "test adapter"


def test_torch_timing_on_the_cpu():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    timing = gpu_bench.time_torch(model, batch=2, device="cpu", runs=3, warmup=1)
    assert timing["runs"] == 3
    assert 0 < timing["min_ms"] <= timing["median_ms"]
    assert timing["images_per_second"] > 0
