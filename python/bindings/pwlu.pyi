"""pwlu: image classifiers with Piecewise Linear Unit activations, run by pwlu's engine (a GPU through wgpu, or
its CPU backend) from Python."""

from __future__ import annotations

import os
from typing import Any, Iterable, Literal, Sequence, TypedDict, Union, overload

import numpy as np
import numpy.typing as npt

__version__: str

class PwluError(Exception):
    """A failure of the engine, with its message."""

    kind: Literal["model", "input", "adapter", "limit", "gpu", "cpu", "device-lost", "io"]

class Class:
    """One class of a classification."""

    @property
    def index(self) -> int: ...
    @property
    def label(self) -> str: ...
    @property
    def prob(self) -> float: ...

class ModelInfo(TypedDict):
    name: str
    input: list[int]
    classes: int
    parameters: int
    flops: int
    pwlu_sites: int
    preprocess: str | None
    backend: Literal["gpu", "cpu"]
    device: str
    reason: str

ImageInput = Union[str, os.PathLike[str], bytes, "npt.NDArray[np.uint8]", Any]
"""A file path, the bytes of an encoded image, a PIL image, or a uint8 array [height, width, 3]."""

class Model:
    """A model loaded on its device. Safe to share between threads: the engine runs without the GIL."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        backend: Literal["auto", "cpu", "vulkan", "metal", "dx12", "gl"] = "auto",
        adapter: int | None = None,
        threads: int | None = None,
        winograd: bool = True,
    ) -> None:
        """`threads`: the CPU backend's (default: every core). `winograd`: whether the CPU backend may compute
        3x3 convolutions of stride 1 by Winograd's method: faster, for up to 4x the memory of those layers'
        weights."""
    def run(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The outputs [N, classes] of x, float32 [N, C, H, W]; C-contiguous arrays are read in place."""
    @overload
    def classify(self, images: ImageInput, top: int = 5) -> list[Class]: ...
    @overload
    def classify(self, images: Sequence[ImageInput] | Iterable[ImageInput], top: int = 5) -> list[list[Class]]: ...
    @property
    def labels(self) -> list[str]: ...
    @property
    def info(self) -> ModelInfo: ...

class Preprocess:
    """A model file's preprocessing alone (no weights packed): for data pipelines that preprocess apart from
    where the model runs."""

    @staticmethod
    def of_model(path: str | os.PathLike[str]) -> Preprocess: ...
    def __call__(self, image: ImageInput) -> npt.NDArray[np.float32]:
        """The model's input [1, C, H, W] for one image."""

class Adapter(TypedDict):
    index: int
    name: str
    backend: str
    device_type: str
    pci_bus_id: str

class RunsOn(TypedDict):
    backend: Literal["gpu", "cpu"]
    device: str
    reason: str

class Devices(TypedDict):
    adapters: list[Adapter]
    models_run_on: RunsOn

def devices() -> Devices:
    """The GPU adapters of Vulkan, Metal and DX12 (what `auto` picks from; `adapter=` indexes this list), and where
    models run by default and why. OpenGL adapters are not listed: starting OpenGL loads the GL driver into the
    process (Mesa's llvmpipe on Linux without a GPU), whose LLVM crashes a later import of PyTorch's Triton.
    `Model(path, backend="gl")` still runs there."""
