"""python/examples/ray_classify.py on a local Ray instance (2 CPUs) over a few hundred images made from the bundled
photos: its Parquet output equals `pwlu classify --json` on the same files, and both throughputs are printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "efficientnet_lite0.safetensors"
PWLU_CLI = REPO / "target" / "release" / "pwlu"
EXAMPLE = REPO / "python" / "examples" / "ray_classify.py"


def make_images(folder: Path, per_photo: int) -> int:
    """Crops and mirror images of every bundled photo, as JPEG."""
    count = 0
    for photo in sorted((REPO / "models" / "photos").iterdir()):
        image = Image.open(photo).convert("RGB")
        w, h = image.size
        for i in range(per_photo):
            view = image.crop((i * 3 % 41, i * 5 % 37, w - i * 7 % 43, h - i * 2 % 29))
            if i % 2:
                view = ImageOps.mirror(view)
            view.save(folder / f"{photo.stem}_{i:03d}.jpg", quality=90)
            count += 1
    return count


def test_ray_output_equals_the_cli(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    count = make_images(images, per_photo=30)
    assert count >= 200
    env = {**os.environ, "RAY_DEDUP_LOGS": "0"}

    started = time.perf_counter()
    cli = subprocess.run(
        [str(PWLU_CLI), "classify", "--json", "--top", "5", "--backend", "cpu", "--threads", "2", str(MODEL),
         str(images)],
        check=True, capture_output=True, text=True, env=env,
    )
    cli_seconds = time.perf_counter() - started
    expected = {Path(r["image"]).resolve(): r["top"] for r in json.loads(cli.stdout)}
    assert len(expected) == count

    out = tmp_path / "results.parquet"
    ray = subprocess.run(
        [sys.executable, str(EXAMPLE), str(images), "--model", str(MODEL), "--out", str(out), "--num-cpus", "2",
         "--actors", "1", "--threads", "2", "--batch", "16"],
        check=True, capture_output=True, text=True, env=env,
    )
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == count
    for row in rows:
        top = expected[Path(row["path"]).resolve()]
        assert row["top_indices"] == [c["index"] for c in top], row["path"]
        assert row["top_labels"] == [c["label"] for c in top]
        # A batch of 16 and batch 1 sum in another order: the same to float32 rounding.
        for got, want in zip(row["top_probs"], (c["prob"] for c in top)):
            assert abs(got - want) <= 1e-5, (row["path"], got, want)
    ray_line = ray.stdout.strip().splitlines()[-1]
    print(f"\n{count} images: pwlu classify (one process, 2 threads) {count / cli_seconds:.1f} images/s "
          f"including start-up; Ray: {ray_line}")
