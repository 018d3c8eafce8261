"""The comparison models for TensorFlow.js (scripts/compare.sh): an ONNX export of the comparison set rewritten
as the operation list TensorFlow's converter would give TF.js for the same network, over NHWC tensors:

- a convolution, its bias and a following ReLU or ReLU6 are one fused op (`tf.fused.conv2d`, or
  `tf.fused.depthwiseConv2d` when every channel is its own group), weights in TensorFlow's layouts (HWIO,
  HWC1); a zero `Pad` in front of a convolution becomes the convolution's padding ('same' where it is TF's
  SAME, as in EfficientNet-Lite0's TF-style stride-2 blocks);
- the classifier is a fused matmul with bias; the rest (add, mul, sigmoid, relu, max and global average
  pooling) are TF.js's ops of the same name.

The JSON lists the ops and where each weight sits in the `.bin` file (little-endian float32);
web/www/tfjs-graph.js runs it. TF.js cannot read ONNX, and TensorFlow itself is not installable here, so this
stands in for `tensorflowjs_converter`: the same kernels, one op per TF graph node.

    python -m pwlu_tools.tfjs models/compare/resnet18.onnx   # writes resnet18.tfjs.json and resnet18.tfjs.bin
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np


class UnsupportedGraph(ValueError):
    """The ONNX graph has something the TF.js op list cannot express."""


def convert(onnx_path: Path) -> tuple[dict, bytes]:
    """The op list and the weight bytes for the ONNX model at `onnx_path` (one image input, NCHW)."""
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    graph = proto.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*graph.input, *graph.value_info, *graph.output]
    }
    nodes = []
    for node in graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(attributes["value"])
        elif node.op_type == "Identity" and node.input[0] in constants:
            constants[node.output[0]] = constants[node.input[0]]
        else:
            nodes.append((node, attributes))
    readers = Counter(name for node, _ in nodes for name in node.input)
    readers.update(o.name for o in graph.output)
    producer_of = {node.output[0]: (node, attributes) for node, attributes in nodes}

    blob = bytearray()

    def weight(array: np.ndarray) -> dict:
        offset = len(blob) // 4
        blob.extend(np.ascontiguousarray(array, dtype="<f4").tobytes())
        return {"offset": offset, "shape": list(array.shape)}

    def activation_after(name: str) -> tuple[str | None, str]:
        """A ReLU or ReLU6 that alone reads `name`, fused as TF's converter fuses it."""
        if readers[name] != 1:
            return None, name
        for node, _ in nodes:
            if name not in node.input:
                continue
            if node.op_type == "Relu":
                return "relu", node.output[0]
            if node.op_type == "Clip" and _clip_bounds(node, constants) == (0.0, 6.0):
                return "relu6", node.output[0]
        return None, name

    ops = []
    fused = set()
    for node, attributes in nodes:
        kind, output = node.op_type, node.output[0]
        if output in fused:
            continue
        if kind == "Pad":
            if not _zero_pad_before_convolutions(node, constants, nodes):
                raise UnsupportedGraph(f"{node.name}: a Pad other than zeros around H and W before convolutions")
            continue
        if kind == "Conv":
            source = node.input[0]
            top, left, bottom, right = attributes.get("pads", [0, 0, 0, 0])
            if source in producer_of and producer_of[source][0].op_type == "Pad":
                pad_node = producer_of[source][0]
                pads = constants[pad_node.input[1]].tolist()  # N, C, H, W begins; then the ends
                top, left, bottom, right = top + pads[2], left + pads[3], bottom + pads[6], right + pads[7]
                source = pad_node.input[0]
            kernel = constants[node.input[1]]  # O, I / group, KH, KW
            group = attributes.get("group", 1)
            if group == 1:
                op, filter_ = "conv2d", kernel.transpose(2, 3, 1, 0)
            elif group == kernel.shape[0] == shapes[source][1] and kernel.shape[1] == 1:
                op, filter_ = "depthwiseConv2d", kernel.transpose(2, 3, 0, 1)
            else:
                raise UnsupportedGraph(f"{node.name}: grouped convolution with {group} groups")
            strides = attributes.get("strides", [1, 1])
            dilations = attributes.get("dilations", [1, 1])
            activation, output = activation_after(output)
            if activation:
                fused.add(output)
            ops.append({
                "op": op,
                "inputs": [source],
                "output": output,
                "filter": weight(filter_),
                "bias": weight(constants[node.input[2]]) if len(node.input) > 2 else None,
                "strides": strides,
                "dilations": dilations,
                "pad": _tf_padding(shapes[source][2:], kernel.shape[2:], strides, dilations,
                                   (top, bottom), (left, right)),
                "activation": activation,
            })
        elif kind in ("Add", "Mul"):
            ops.append({"op": kind.lower(), "inputs": list(node.input), "output": output})
        elif kind in ("Relu", "Sigmoid"):
            ops.append({"op": kind.lower(), "inputs": [node.input[0]], "output": output})
        elif kind == "Clip" and _clip_bounds(node, constants) == (0.0, 6.0):
            ops.append({"op": "relu6", "inputs": [node.input[0]], "output": output})
        elif kind == "MaxPool":
            kernel = attributes["kernel_shape"]
            strides = attributes.get("strides", [1, 1])
            top, left, bottom, right = attributes.get("pads", [0, 0, 0, 0])
            if attributes.get("ceil_mode", 0) or any(d != 1 for d in attributes.get("dilations", [1, 1])):
                raise UnsupportedGraph(f"{node.name}: max pooling with ceil_mode or dilation")
            pad = _tf_padding(shapes[node.input[0]][2:], kernel, strides, [1, 1], (top, bottom), (left, right))
            if isinstance(pad, list):
                raise UnsupportedGraph(f"{node.name}: asymmetric max-pooling padding")
            ops.append({"op": "maxPool", "inputs": [node.input[0]], "output": output, "kernel": kernel,
                        "strides": strides, "pad": pad})
        elif kind == "GlobalAveragePool":
            ops.append({"op": "globalAveragePool", "inputs": [node.input[0]], "output": output})
        elif kind == "Flatten" and all(d == 1 for d in shapes[node.input[0]][2:]):
            ops.append({"op": "flatten", "inputs": [node.input[0]], "output": output})
        elif kind == "Gemm" and node.input[1] in constants:
            if any(attributes.get(k, d) != d for k, d in [("alpha", 1.0), ("beta", 1.0), ("transA", 0), ("transB", 0)]):
                raise UnsupportedGraph(f"{node.name}: Gemm other than x W + b")
            ops.append({"op": "matMul", "inputs": [node.input[0]], "output": output,
                        "weight": weight(constants[node.input[1]]),
                        "bias": weight(constants[node.input[2]]) if len(node.input) > 2 else None})
        else:
            raise UnsupportedGraph(f"{node.name}: {kind} has no TF.js counterpart here")

    (image,) = [i for i in graph.input if i.name not in constants]
    n, c, h, w = shapes[image.name]
    spec = {
        "input": image.name,
        "input_shape": [n, h, w, c],
        "output": graph.output[0].name,
        "ops": ops,
    }
    return spec, bytes(blob)


def _clip_bounds(node, constants) -> tuple[float, float] | None:
    names = list(node.input[1:3])
    if len(names) != 2 or not all(name in constants for name in names):
        return None
    return float(constants[names[0]]), float(constants[names[1]])


def _zero_pad_before_convolutions(node, constants, nodes) -> bool:
    """A constant zero `Pad` of H and W read only by convolutions, which take it as their own padding."""
    if node.input[1] not in constants or (len(node.input) > 2 and node.input[2] and constants[node.input[2]].any()):
        return False
    pads = constants[node.input[1]].tolist()
    if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0:
        return False
    readers = [other for other, _ in nodes if node.output[0] in other.input]
    return bool(readers) and all(r.op_type == "Conv" and r.input[0] == node.output[0] for r in readers)


def _tf_padding(size, kernel, strides, dilations, vertical, horizontal):
    """TF.js's `pad` argument: 'same' where the padding is TensorFlow's SAME, a number where it is the same on
    every side, else explicit [[0, 0], [top, bottom], [left, right], [0, 0]]."""
    same = []
    for extent, k, s, d in zip(size, kernel, strides, dilations):
        out = -(-extent // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - extent, 0)
        same.append((total // 2, total - total // 2))
    if [tuple(vertical), tuple(horizontal)] == same:
        return "same"
    if len({*vertical, *horizontal}) == 1:
        return vertical[0]
    return [[0, 0], list(vertical), list(horizontal), [0, 0]]


def write(onnx_path: Path) -> tuple[Path, Path]:
    spec, blob = convert(onnx_path)
    stem = onnx_path.with_suffix("")
    json_path, bin_path = Path(f"{stem}.tfjs.json"), Path(f"{stem}.tfjs.bin")
    spec["weights"] = bin_path.name
    json_path.write_text(json.dumps(spec))
    bin_path.write_bytes(blob)
    return json_path, bin_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("onnx", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in args.onnx:
        try:
            json_path, _ = write(path)
        except (UnsupportedGraph, OSError) as error:
            raise SystemExit(f"{path}: {error}") from error
        print(f"{path} -> {json_path}", flush=True)


if __name__ == "__main__":
    main()
