"""Models for the side-by-side speed comparison (scripts/compare.sh): each with its original activations
(ReLU / ReLU6), exported twice from the same PyTorch module, to pwlu's safetensors and to ONNX, so that every
engine runs the same weights.

    python -m pwlu_tools.compare --out models/compare

- EfficientNet-Lite0 with its real ImageNet weights (ReLU6).
- torchvision's mobilenet_v2, resnet18, efficientnet_b0 and resnet50, seeded random weights with batch-norm
  statistics estimated on the bundled photos, as in the zoo, but without the PWLU conversion: the peers have
  no PWLU operator.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from pwlu_torch import export
from .zoo import IMAGENET_PREPROCESS, calibration_batches, imagenet_labels, photo_paths, recalibrate_batch_norm

COMPARE_MODELS = ["efficientnet_lite0", "mobilenet_v2", "resnet18", "efficientnet_b0", "resnet50"]


def build(name: str, photos: dict[str, str]) -> tuple[nn.Module, dict]:
    if name == "efficientnet_lite0":
        from .lite0 import LITE0_PREPROCESS, load_lite0

        return load_lite0().eval(), LITE0_PREPROCESS
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    recalibrate_batch_norm(model, calibration_batches(list(photos.values()), IMAGENET_PREPROCESS))
    return model, IMAGENET_PREPROCESS


def export_onnx(model: nn.Module, path: Path, size: int) -> None:
    """ONNX with static shapes and every intermediate shape inferred (wonnx needs them)."""
    import onnx

    example = torch.zeros(1, 3, size, size)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        opset_version=13,
        do_constant_folding=True,
        dynamo=False,
    )
    proto = onnx.load(str(path))
    _fold_constants(proto)
    _untranspose_gemm_weights(proto)
    onnx.save(onnx.shape_inference.infer_shapes(proto), str(path))


def _fold_constants(proto) -> None:
    """Evaluates every node whose inputs are all constants (the exporter leaves ZeroPad2d's pads as a
    Concat/Reshape/Transpose chain, which wonnx cannot read as static shapes) and keeps its outputs as
    initializers."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = proto.graph
    known = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    kept = []
    for node in graph.node:
        if all(name in known for name in node.input if name):
            single = helper.make_graph(
                [node],
                "fold",
                [],
                [helper.make_tensor_value_info(name, 0, None) for name in node.output],
                [numpy_helper.from_array(known[name], name) for name in node.input if name],
            )
            model = helper.make_model(single, opset_imports=proto.opset_import)
            for name, value in zip(node.output, ReferenceEvaluator(model).run(None, {})):
                known[name] = value
                graph.initializer.append(numpy_helper.from_array(value, name))
        else:
            kept.append(node)
    for node in kept:
        # A zero constant_value is Pad's default; wonnx refuses the input even then.
        if node.op_type == "Pad" and len(node.input) == 3 and node.input[2] in known:
            if not known[node.input[2]].any():
                del node.input[2]
    del graph.node[:]
    graph.node.extend(kept)
    # Constants nobody reads any more.
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    initializers = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def _untranspose_gemm_weights(proto) -> None:
    """PyTorch writes Linear as Gemm(transB=1) over an [out, in] weight; wonnx 0.5 only takes B as [in, out].
    Transposing the initializer and clearing transB is the same product, and every engine accepts it."""
    from onnx import helper, numpy_helper

    initializers = {t.name: t for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type != "Gemm" or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attributes.get("transB", 0) != 1:
            continue
        tensor = initializers[node.input[1]]
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).T.copy(), tensor.name))
        for attribute in node.attribute:
            if attribute.name == "transB":
                attribute.i = 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="models/compare")
    parser.add_argument("--models", default=",".join(COMPARE_MODELS), help=f"comma list from {COMPARE_MODELS}")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photos = photo_paths()
    labels = imagenet_labels()
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name not in COMPARE_MODELS:
            raise SystemExit(f"unknown model '{name}' (choose from {COMPARE_MODELS})")
        start = time.time()
        model, preprocess = build(name, photos)
        size = preprocess["crop"]
        export(model, str(out / f"{name}.safetensors"), torch.zeros(1, 3, size, size), preprocess=preprocess,
               labels=labels, name=name)
        export_onnx(model, out / f"{name}.onnx", size)
        print(f"{name}: safetensors and ONNX in {time.time() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
