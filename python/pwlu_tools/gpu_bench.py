"""The GPU benchmark: pwlu through Vulkan beside PyTorch CUDA eager, on the same machine, in one run.

    python -m pwlu_tools.gpu_bench --pwlu target/release/pwlu --out results [--device cuda]

`scripts/gpu-bench.sh` runs this on a machine with a GPU (and, with `local`, on this one: lavapipe and PyTorch
on the CPU, small, to check the script itself). For every model it

1. builds the zoo's PWLU version and the same weights with the original activations (as `pwlu_tools.zoo` and
   `pwlu_tools.compare` do) and exports both for pwlu;
2. checks parity: pwlu's logits (`pwlu run`) against PyTorch's on two photo crops, with the tolerance of
   tests/parity.rs, and the same top-5;
3. times PyTorch eager on the device at each batch size, original and PWLU, with CUDA events (cuDNN's TF32
   off, so that both sides compute in float32, and on, PyTorch's default);
4. times pwlu (`pwlu bench --json`) at each batch size, and the PWLU model against the original in alternation
   (`--versus`, the cost of PWLU);

and writes `gpu-bench.json` (everything) and `gpu-bench.md` (the tables) to `--out` after every step, so that
a run cut short still leaves what it measured. Steps that would start after `--budget-s` are recorded as
skipped, not run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pwlu_torch import export

DEFAULT_MODELS = ["efficientnet_lite0", "mobilenet_v2", "resnet18", "resnet50"]
#: Parity as tests/parity.rs checks it: max |pwlu - torch| <= this * max(1, max |torch|).
PARITY_TOLERANCE = 1e-3


class Budget:
    """Wall-clock seconds left for the whole run."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def labels_or_none() -> list[str] | None:
    try:
        from .zoo import imagenet_labels

        return imagenet_labels()
    except ImportError:
        return None


def build_pair(name: str) -> tuple[nn.Module, nn.Module, dict]:
    """(PWLU model, original model, preprocessing), both in eval mode on the CPU."""
    from .compare import build as build_original
    from .zoo import build_lite0, build_torchvision, photo_paths

    photos = photo_paths()
    original, preprocess = build_original(name, photos)
    pwlu_model, _ = build_lite0() if name == "efficientnet_lite0" else build_torchvision(name, photos)
    return pwlu_model.eval(), original.eval(), preprocess


def parity_input(preprocess: dict) -> np.ndarray:
    """The zoo's fixture photos, cropped and normalised as the model expects: [2, 3, H, W] float32."""
    from .zoo import FIXTURE_PHOTOS, crop, photo_paths, to_input

    photos = photo_paths()
    return torch.cat([to_input(crop(photos[p], preprocess), preprocess) for p in FIXTURE_PHOTOS]).numpy()


def tf32(enabled: bool) -> None:
    torch.backends.cudnn.allow_tf32 = enabled
    torch.backends.cuda.matmul.allow_tf32 = enabled


@torch.no_grad()
def time_torch(model: nn.Module, batch: int, device: str, runs: int, warmup: int = 5) -> dict:
    """Median and min milliseconds of `model` on a random batch, read back to the host like pwlu's runs."""
    x = torch.randn(batch, 3, 224, 224, device=device)
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(runs):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(x).cpu()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            model(x).cpu()
            times.append((time.perf_counter() - t0) * 1e3)
    median = statistics.median(times)
    return {"median_ms": median, "min_ms": min(times), "images_per_second": batch * 1e3 / median, "runs": runs}


def run_pwlu(pwlu: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([pwlu, "--backend", "vulkan", *args], capture_output=True, text=True, timeout=timeout)


def pwlu_json(pwlu: str, args: list[str], timeout: float) -> dict:
    try:
        done = run_pwlu(pwlu, [*args, "--json"], timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"error": done.stderr.strip() or f"exit status {done.returncode}"}
    return json.loads(done.stdout)


def check_parity(pwlu: str, model_file: Path, model: nn.Module, x: np.ndarray, work: Path, timeout: float) -> dict:
    inp, out = work / "parity_in.npy", work / "parity_out.npy"
    np.save(inp, x)
    done = run_pwlu(pwlu, ["run", str(model_file), "--input", str(inp), "--output", str(out)], timeout)
    if done.returncode != 0:
        return {"error": done.stderr.strip()}
    ours = np.load(out).reshape(x.shape[0], -1).astype(np.float64)
    with torch.no_grad():
        theirs = model(torch.from_numpy(x)).double().numpy()
    scale = max(1.0, float(np.abs(theirs).max()))
    worst = float(np.abs(ours - theirs).max())
    top5 = [list(np.argsort(-row)[:5]) for row in ours] == [list(np.argsort(-row)[:5]) for row in theirs]
    return {
        "max_abs_difference": worst,
        "relative_to_max_logit": worst / scale,
        "within_tolerance": worst <= PARITY_TOLERANCE * scale,
        "same_top5": bool(top5),
    }


def cell(entry: dict, key: str, form: str = "{:.3f}") -> str:
    """A figure for a table cell, or the first line of why there is none."""
    if key in entry:
        return form.format(entry[key])
    return str(entry.get("error", entry.get("skipped", "-"))).strip().splitlines()[0].replace("|", "/")


def write_report(out: Path, report: dict) -> None:
    (out / "gpu-bench.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [
        f"# GPU benchmark, {report['date']}{', ' + report['label'] if report.get('label') else ''}",
        "",
        f"Adapter: {report.get('adapter', '?')}. PyTorch {report['torch']} on {report['torch_device']}.",
        "",
        "| model | batch | pwlu median ms (min) | pwlu images/s | pwlu GFLOP/s | pwlu, inputs staged, median ms | "
        "PyTorch fp32 median ms | PyTorch TF32 median ms | PyTorch PWLU fp32 median ms | pwlu / PyTorch fp32 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, model in report["models"].items():
        for batch, row in model.get("batches", {}).items():
            ours = row.get("pwlu", {})
            fp32 = row.get("torch_original_fp32", {})
            both = "median_ms" in ours and "median_ms" in fp32
            ratio = f"{ours['median_ms'] / fp32['median_ms']:.2f}x" if both else "-"
            lines.append(
                f"| {name} | {batch} | {cell(ours, 'median_ms')} ({cell(ours, 'min_ms')}) | "
                f"{cell(ours, 'images_per_second', '{:.0f}')} | {cell(ours, 'gflop_per_second', '{:.0f}')} | "
                f"{cell(row.get('pwlu_staged', {}), 'median_ms')} | "
                f"{cell(fp32, 'median_ms')} | {cell(row.get('torch_original_tf32', {}), 'median_ms')} | "
                f"{cell(row.get('torch_pwlu_fp32', {}), 'median_ms')} | {ratio} |"
            )
    lines += ["", "| model | parity (max abs difference, relative) | same top-5 | PWLU / original on pwlu |",
              "|---|---|---|---|"]
    for name, model in report["models"].items():
        parity = model.get("parity", model)  # a model that failed or never started says why in its entry
        versus = model.get("versus", {})
        parity_cell = (
            f"{parity['max_abs_difference']:.2e} ({parity['relative_to_max_logit']:.2e})"
            if "max_abs_difference" in parity
            else cell(parity, "max_abs_difference")
        )
        ratio = versus.get("versus", {}) or {}
        versus_cell = (
            f"{ratio['ratio_median']:.3f}x "
            f"(middle half {ratio['ratio_lower_quartile']:.3f}-{ratio['ratio_upper_quartile']:.3f})"
            if "ratio_median" in ratio
            else cell(versus, "versus")
        )
        lines.append(f"| {name} | {parity_cell} | {parity.get('same_top5', '-')} | {versus_cell} |")
    (out / "gpu-bench.md").write_text("\n".join(lines) + "\n")


def measure_model(name: str, entry: dict, args, budget: Budget, labels, out: Path, report: dict) -> None:
    """Builds, checks and times one model, filling `entry` and rewriting the report after each step."""
    device = args.device
    batches = [int(b) for b in args.batches.split(",") if b]
    models_dir = out / "models"
    start = time.monotonic()
    pwlu_model, original, preprocess = build_pair(name)
    example = torch.zeros(1, 3, preprocess["crop"], preprocess["crop"])
    pwlu_file, original_file = models_dir / f"{name}.safetensors", models_dir / f"{name}.original.safetensors"
    export(pwlu_model, str(pwlu_file), example, preprocess=preprocess, labels=labels, name=name)
    export(
        original, str(original_file), example, preprocess=preprocess, labels=labels, name=f"{name} (original)"
    )
    entry["build_s"] = time.monotonic() - start
    entry["parity"] = check_parity(args.pwlu, pwlu_file, pwlu_model, parity_input(preprocess), out, 120)
    print(f"{name}: built in {entry['build_s']:.1f} s; parity {entry['parity']}", flush=True)
    write_report(out, report)

    entry["batches"] = {}
    gpu_models = {"original": original.to(device), "pwlu": pwlu_model.to(device)}
    for batch in batches:
        row: dict = {}
        entry["batches"][str(batch)] = row
        if budget.left() < 20:
            row["skipped"] = "budget"
            continue
        # Large batches take long enough per run that a third of the runs gives a steady median.
        runs = args.runs if batch == 1 else min(args.runs, max(5, args.runs // 3))
        for variant, model in gpu_models.items():
            for precision in ["fp32", "tf32"] if device == "cuda" else ["fp32"]:
                if variant == "pwlu" and precision == "tf32":
                    continue
                if device == "cuda":
                    tf32(precision == "tf32")
                key = f"torch_{variant}_{precision}"
                try:
                    row[key] = time_torch(model, batch, device, runs)
                except RuntimeError as e:  # out of memory, an unsupported op on this device
                    row[key] = {"error": str(e).splitlines()[0]}
        if device == "cuda":
            tf32(False)
        bench = ["bench", str(pwlu_file), "--batch", str(batch), "--runs", str(runs)]
        if name in args.layers.split(","):
            bench.append("--layers")
        row["pwlu"] = pwlu_json(args.pwlu, bench, max(60.0, budget.left()))
        if name in args.stage_ab.split(",") and budget.left() > 20:
            staged = ["--input-stage", "always", *bench]
            row["pwlu_staged"] = pwlu_json(args.pwlu, staged, max(60.0, budget.left()))
        report["adapter"] = row["pwlu"].get("adapter", report.get("adapter"))
        summary = {k: v for k, v in row["pwlu"].items() if k in ("median_ms", "images_per_second", "error")}
        print(f"{name} batch {batch}: pwlu {summary}, torch fp32 {row.get('torch_original_fp32')}", flush=True)
        write_report(out, report)
    if budget.left() > 20:
        versus = ["bench", str(pwlu_file), "--versus", str(original_file), "--runs", str(args.runs)]
        entry["versus"] = pwlu_json(args.pwlu, versus, max(60.0, budget.left()))
    else:
        entry["versus"] = {"skipped": "budget"}
    for model in gpu_models.values():
        model.cpu()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pwlu", required=True, help="the pwlu binary")
    parser.add_argument("--out", required=True, help="folder for gpu-bench.json, gpu-bench.md and the models")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per measurement")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no step after this many seconds")
    parser.add_argument("--layers", default="resnet50", help="models whose per-layer GPU times to record")
    parser.add_argument("--label", default="", help="what is measured (the commit), kept in the report")
    parser.add_argument(
        "--stage-ab",
        default="resnet50,mobilenet_v2",
        help="models also timed with their inputs read through the input stage (--input-stage always)",
    )
    args = parser.parse_args(argv)
    from .zoo import TORCHVISION_MODELS

    known = ["efficientnet_lite0", *TORCHVISION_MODELS]
    names = [m for m in args.models.split(",") if m]
    if unknown := [m for m in names if m not in known]:
        parser.error(f"unknown models {unknown} (choose from {known})")
    budget = Budget(args.budget_s)
    out = Path(args.out)
    (out / "models").mkdir(parents=True, exist_ok=True)
    device = args.device
    report: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "label": args.label,
        "host": platform.node(),
        "torch": torch.__version__,
        "torch_device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "devices": pwlu_json(args.pwlu, ["devices"], 60),
        "models": {},
    }
    labels = labels_or_none()
    for name in names:
        entry: dict = {}
        report["models"][name] = entry
        if budget.left() < 30:
            entry["skipped"] = "budget"
            continue
        try:
            measure_model(name, entry, args, budget, labels, out, report)
        except Exception as e:  # one model's failure must not cost the others' figures
            entry["error"] = f"{type(e).__name__}: {e}"
            print(f"{name}: {entry['error']}", flush=True)
        write_report(out, report)
    print((out / "gpu-bench.md").read_text(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
