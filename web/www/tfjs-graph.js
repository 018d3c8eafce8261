// Runs a comparison model on TensorFlow.js: the op list `python -m pwlu_torch.tfjs` writes from the model's ONNX
// export (NHWC, convolution + bias + ReLU/ReLU6 fused as TensorFlow's converter fuses them), one TF.js op per
// entry, each intermediate tensor disposed after its last reader, as TF.js's graph executor does.

/** Loads `NAME.tfjs.json` and its weights; `tf` is the TF.js core module with a backend already set. */
export async function loadTfjsGraph(tf, url) {
  const specResponse = await fetch(url);
  if (!specResponse.ok) throw new Error(`${url}: HTTP ${specResponse.status} (scripts/compare.sh writes it)`);
  const spec = await specResponse.json();
  const weightsUrl = new URL(spec.weights, new URL(url, location.href)).href;
  const weightsResponse = await fetch(weightsUrl);
  if (!weightsResponse.ok) throw new Error(`${weightsUrl}: HTTP ${weightsResponse.status}`);
  const blob = new Float32Array(await weightsResponse.arrayBuffer());

  const held = [];
  const tensor = (ref) => {
    if (!ref) return undefined;
    const size = ref.shape.reduce((a, b) => a * b, 1);
    const t = tf.tensor(blob.subarray(ref.offset, ref.offset + size), ref.shape);
    held.push(t);
    return t;
  };
  const ops = spec.ops.map((op) => ({ ...op, filter: tensor(op.filter), weight: tensor(op.weight), bias: tensor(op.bias) }));
  const readers = new Map();
  for (const op of ops) for (const name of op.inputs) readers.set(name, (readers.get(name) ?? 0) + 1);

  function apply(op, [x, y]) {
    switch (op.op) {
      case "conv2d":
      case "depthwiseConv2d":
        return tf.fused[op.op]({
          x,
          filter: op.filter,
          strides: op.strides,
          pad: op.pad,
          dilations: op.dilations,
          bias: op.bias,
          activation: op.activation ?? "linear",
        });
      case "matMul":
        return tf.fused.matMul({ a: x, b: op.weight, bias: op.bias });
      case "maxPool":
        return tf.maxPool(x, op.kernel, op.strides, op.pad);
      case "globalAveragePool":
        return tf.mean(x, [1, 2], true);
      case "flatten":
        return tf.reshape(x, [x.shape[0], -1]);
      case "add":
      case "mul":
        return tf[op.op](x, y);
      case "relu":
      case "relu6":
      case "sigmoid":
        return tf[op.op](x);
      default:
        throw new Error(`${url}: unknown op '${op.op}'`);
    }
  }

  return {
    /** NHWC, batch 1. */
    inputShape: spec.input_shape,
    /** The logits tensor for an NHWC input tensor; the caller disposes both. */
    predict(input) {
      const values = new Map([[spec.input, input]]);
      const left = new Map(readers);
      for (const op of ops) {
        values.set(op.output, apply(op, op.inputs.map((name) => values.get(name))));
        for (const name of op.inputs) {
          left.set(name, left.get(name) - 1);
          if (left.get(name) === 0 && name !== spec.input && name !== spec.output) {
            values.get(name).dispose();
            values.delete(name);
          }
        }
      }
      return values.get(spec.output);
    },
    dispose() {
      for (const t of held) t.dispose();
    },
  };
}
