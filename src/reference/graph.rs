//! The whole graph on the references: node by node, in NCHW, with nothing fused or planned.

use crate::error::{Error, Result};
use crate::graph::{Graph, Op, Value};
use crate::ops::Padding;
use crate::reference;
use crate::tensor::{Shape, Tensor};

impl Graph {
    /// Evaluates the graph with the CPU references: slow, exact, and independent of the GPU path.
    pub fn run_reference(&self, input: &Tensor) -> Result<Tensor> {
        let shape = input.shape();
        if shape.with_batch(1) != self.input {
            return Err(Error::invalid_op(
                "graph input",
                format!(
                    "expected [N, {}, {}, {}], got {shape}",
                    self.input.c, self.input.h, self.input.w
                ),
            ));
        }
        let mut values: Vec<Tensor> = Vec::with_capacity(self.nodes.len());
        let get = |values: &Vec<Tensor>, v: Value| -> Tensor {
            match v {
                Value::Input => input.clone(),
                Value::Node(i) => values[i].clone(),
            }
        };
        for node in &self.nodes {
            let a = get(&values, node.inputs[0]);
            let out = match &node.op {
                Op::Conv(layer) => {
                    let residual = node.inputs.get(1).map(|&v| get(&values, v));
                    reference::conv2d(layer, &a, residual.as_ref())?
                }
                Op::BatchNorm(bn, act) => reference::batch_norm(bn, act, &a)?,
                Op::Activation(act) => reference::activation(act, &a)?,
                Op::Binary(op, act) => {
                    reference::binary(*op, act, &a, &get(&values, node.inputs[1]))?
                }
                Op::Pool(pool) => reference::pool2d(pool, &a)?,
                Op::GlobalAvgPool => reference::global_avg_pool(&a),
                Op::Flatten => {
                    let s = a.shape();
                    a.reshape(vec![s.n, s.c * s.h * s.w, 1, 1])?
                }
                Op::Linear(linear) => {
                    let s = a.shape();
                    reference::linear(linear, &a.reshape(vec![s.n, s.c])?)?.reshape(vec![
                        s.n,
                        linear.out_features,
                        1,
                        1,
                    ])?
                }
                Op::Pad(p) => pad(&a, *p)?,
                Op::AdaptiveAvgPool(size) => reference::adaptive_avg_pool2d(*size, &a)?,
                Op::Concat => {
                    let inputs: Vec<Tensor> =
                        node.inputs.iter().map(|&v| get(&values, v)).collect();
                    reference::concat(&inputs.iter().collect::<Vec<_>>())?
                }
                Op::SelectChannels(selection) => reference::select_channels(selection, &a)?,
                Op::LayerNorm(norm) => reference::layer_norm(norm, &a)?,
            };
            values.push(out);
        }
        let out = get(&values, self.output);
        let s = out.shape();
        if s.h * s.w == 1 {
            return out.reshape(vec![s.n, s.c]);
        }
        Ok(out)
    }
}

fn pad(x: &Tensor, p: Padding) -> Result<Tensor> {
    let s = x.shape();
    let out_shape = Shape::new(s.n, s.c, s.h + p.top + p.bottom, s.w + p.left + p.right);
    let mut out = Tensor::zeros(out_shape);
    for n in 0..s.n {
        for c in 0..s.c {
            for y in 0..s.h {
                for xx in 0..s.w {
                    out.data_mut()[out_shape.index(n, c, y + p.top, xx + p.left)] =
                        x.data()[s.index(n, c, y, xx)];
                }
            }
        }
    }
    Ok(out)
}
