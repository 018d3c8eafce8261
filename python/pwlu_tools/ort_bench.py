"""ONNX Runtime's CPU engine on one model, timed as `pwlu bench` times pwlu: the same synthetic input
(sin(0.001 i), NCHW), one untimed first run, then the median of N. Prints one JSON line (scripts/compare.sh).

    python -m pwlu_tools.ort_bench models/compare/resnet18.onnx --runs 20 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (the machine's cores)")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args(argv)

    import onnxruntime as ort

    start = time.perf_counter()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - start) * 1e3

    first = session.get_inputs()[0]
    shape = [args.batch, *first.shape[1:]]
    x = np.sin(0.001 * np.arange(int(np.prod(shape)), dtype=np.float32)).reshape(shape)
    start = time.perf_counter()
    session.run(None, {first.name: x})
    first_run_ms = (time.perf_counter() - start) * 1e3
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        session.run(None, {first.name: x})
        times.append((time.perf_counter() - start) * 1e3)
    print(
        json.dumps(
            {
                "engine_version": ort.__version__,
                "threads": args.threads,
                "batch": args.batch,
                "runs": args.runs,
                "load_ms": load_ms,
                "first_run_ms": first_run_ms,
                "median_ms": statistics.median(times),
                "min_ms": min(times),
                "max_ms": max(times),
            }
        )
    )


if __name__ == "__main__":
    main()
