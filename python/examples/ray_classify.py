"""Classifies a folder (or glob) of images with Ray Data and pwlu, and writes path, top-k indices, labels and
probabilities to Parquet.

    python python/examples/ray_classify.py PHOTOS_DIR_OR_GLOB --model models/efficientnet_lite0.safetensors \\
        --out results.parquet [--batch 16] [--actors 2] [--gpus-per-actor 1] [--address auto]

Images are read as bytes, decoded and preprocessed (the model file's own preprocessing, `pwlu.Preprocess`) in
CPU tasks; `map_batches` runs an actor class that loads the model once per actor and classifies whole batches.
On a node with GPUs, give each actor one (`--gpus-per-actor 1`): Ray names it by CUDA index, which Vulkan does
not follow, so the actor finds the same card among wgpu's adapters by its PCI bus id (`nvidia-smi`). Elsewhere
actors run on the CPU backend with `--threads` each. docs/scale.md says how to run it on a cluster.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import time
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def image_paths(pattern: str) -> list[str]:
    """Every image file under a folder, or every file a glob matches, sorted."""
    if os.path.isdir(pattern):
        found = [str(p) for p in Path(pattern).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    else:
        found = glob.glob(pattern, recursive=True)
    return sorted(os.path.abspath(p) for p in found)


def assigned_adapter() -> int | None:
    """The wgpu adapter of the GPU Ray assigned to this actor, matched by PCI bus id; None without one."""
    import ray

    import pwlu

    gpu_ids = ray.get_gpu_ids()
    if not gpu_ids:
        return None
    listing = subprocess.run(
        ["nvidia-smi", "--query-gpu=index,pci.bus_id", "--format=csv,noheader"],
        check=True,
        capture_output=True,
        text=True,
        # nvidia-smi numbers every card, whatever CUDA_VISIBLE_DEVICES says; Ray's ids are those numbers.
        env={k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"},
    ).stdout
    bus_of = {}
    for line in listing.splitlines():
        index, bus = (field.strip() for field in line.split(","))
        # nvidia-smi writes 00000000:3B:00.0, wgpu 0000:3b:00.0.
        bus_of[int(index)] = bus.lower()[-12:]
    wanted = bus_of[int(gpu_ids[0])]
    for adapter in pwlu.devices()["adapters"]:
        if adapter["backend"] == "Vulkan" and adapter["pci_bus_id"].lower().endswith(wanted):
            return adapter["index"]
    raise RuntimeError(f"no Vulkan adapter has PCI bus id {wanted} (GPU {gpu_ids[0]} of this node)")


def preprocess(row: dict, model_path: str) -> dict:
    """One image's bytes to the model's input, in a CPU task."""
    import pwlu

    global _PREPROCESS
    try:
        prep = _PREPROCESS
    except NameError:
        prep = _PREPROCESS = pwlu.Preprocess.of_model(model_path)
    return {"path": row["path"], "input": prep(row["bytes"])[0]}


class Classifier:
    """Loads the model once per actor; classifies a batch of preprocessed images per call."""

    def __init__(self, model_path: str, top: int, threads: int | None):
        import pwlu

        adapter = assigned_adapter()
        self.model = pwlu.Model(model_path, backend="vulkan" if adapter is not None else "cpu", adapter=adapter,
                                threads=threads)
        self.labels = np.array(self.model.labels, dtype=object)
        self.top = top

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        logits = self.model.run(np.ascontiguousarray(np.stack(batch["input"]), dtype=np.float32))
        # As the engine's top_k: softmax in float64, the largest first.
        shifted = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
        probs = shifted / shifted.sum(axis=1, keepdims=True)
        order = np.argsort(-logits, axis=1, kind="stable")[:, : self.top]
        return {
            "path": batch["path"],
            "top_indices": order.astype(np.int64),
            "top_labels": self.labels[order],
            "top_probs": np.take_along_axis(probs, order, axis=1).astype(np.float32),
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", help="a folder of images, or a glob")
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True, help="a Parquet file (or folder, for a cluster's many writers)")
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--actors", type=int, default=1, help="model replicas")
    parser.add_argument("--threads", type=int, default=None, help="CPU backend threads per actor (default: all cores)")
    parser.add_argument("--cpus-per-actor", type=float, default=1,
                        help="CPUs Ray reserves per actor; leave some for the decoding tasks")
    parser.add_argument("--gpus-per-actor", type=float, default=0)
    parser.add_argument("--address", default=None, help="a running Ray cluster (auto), else a local instance")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local instance")
    args = parser.parse_args(argv)

    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    paths = image_paths(args.images)
    if not paths:
        raise SystemExit(f"no images in {args.images}")
    ray.init(address=args.address, num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    started = time.perf_counter()
    model = os.path.abspath(args.model)
    dataset = (
        ray.data.read_binary_files(paths, include_paths=True)
        .map(preprocess, fn_kwargs={"model_path": model})
        .map_batches(
            Classifier,
            fn_constructor_kwargs={"model_path": model, "top": args.top, "threads": args.threads},
            batch_size=args.batch,
            concurrency=args.actors,
            num_gpus=args.gpus_per_actor,
            num_cpus=args.cpus_per_actor,
        )
    )
    rows = dataset.take_all()
    seconds = time.perf_counter() - started
    rows.sort(key=lambda r: r["path"])
    table = pa.table(
        {
            "path": [r["path"] for r in rows],
            "top_indices": [list(map(int, r["top_indices"])) for r in rows],
            "top_labels": [list(map(str, r["top_labels"])) for r in rows],
            "top_probs": [list(map(float, r["top_probs"])) for r in rows],
        }
    )
    pq.write_table(table, args.out)
    print(f"classified {len(rows)} images in {seconds:.2f} s ({len(rows) / seconds:.1f} images/s) -> {args.out}")
    ray.shutdown()


if __name__ == "__main__":
    main()
