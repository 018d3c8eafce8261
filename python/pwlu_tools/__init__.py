"""pwlu_tools: the project's own tooling around the pwlu_torch library: the model zoo (`zoo`, `digits`, `lite0`),
the exports for the peers the engine is measured against (`compare`, `tfjs`) and the GPU benchmark
(`gpu_bench`). Run them as `python -m pwlu_tools.NAME`; applications need only `pwlu_torch`."""
