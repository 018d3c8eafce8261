//! CPU reference of the element-wise and reshaping kernels: `elementwise_unary.wgsl`,
//! `elementwise_binary.wgsl`, `flatten.wgsl`, `softmax.wgsl`.

use super::activation::ActivationFn;
use crate::error::{Error, Result};
use crate::ops::{Activation, BatchNorm, BinaryOp, Linear};
use crate::tensor::{Shape, Tensor};

/// `activation(x)` element-wise.
pub fn activation(act: &Activation, input: &Tensor) -> Result<Tensor> {
    act.check_channels(input.shape().c)?;
    let mut out = input.clone();
    ActivationFn::new(act).apply(&mut out);
    Ok(out)
}

/// Batch norm in inference form, straight from its definition, followed by `act`.
pub fn batch_norm(bn: &BatchNorm, act: &Activation, input: &Tensor) -> Result<Tensor> {
    let x = input.shape();
    if bn.channels() != x.c {
        return Err(Error::invalid_op(
            "batch_norm",
            format!("{} channels, input has {}", bn.channels(), x.c),
        ));
    }
    bn.scale_shift()?;
    act.check_channels(x.c)?;
    let f = ActivationFn::new(act);
    let plane = x.h * x.w;
    let data = input
        .data()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / plane) % x.c;
            let normalised = (f64::from(v) - f64::from(bn.mean[c]))
                / (f64::from(bn.var[c]) + f64::from(bn.eps)).sqrt()
                * f64::from(bn.gamma[c])
                + f64::from(bn.beta[c]);
            f.eval(normalised as f32, c)
        })
        .collect();
    Tensor::from_shape(x, data)
}

/// `act(a op b)`; see [`BinaryOp`] for the shapes.
pub fn binary(op: BinaryOp, act: &Activation, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let x = a.shape();
    let expected_b = match op {
        BinaryOp::Add => x,
        BinaryOp::MulChannels => Shape::new(x.n, x.c, 1, 1),
    };
    if b.shape() != expected_b {
        return Err(Error::invalid_op(
            "binary",
            format!(
                "{op:?} of {x} needs a second operand of {expected_b}, got {}",
                b.shape()
            ),
        ));
    }
    act.check_channels(x.c)?;
    let f = ActivationFn::new(act);
    let plane = x.h * x.w;
    let data = a
        .data()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / plane) % x.c;
            let y = match op {
                BinaryOp::Add => v + b.data()[i],
                BinaryOp::MulChannels => v * b.data()[i / plane],
            };
            f.eval(y, c)
        })
        .collect();
    Tensor::from_shape(x, data)
}

/// `[N, C, H, W] -> [N, C * H * W]`, PyTorch's `flatten(1)`.
pub fn flatten(input: &Tensor) -> Result<Tensor> {
    let x = input.shape();
    input.clone().reshape(vec![x.n, x.c * x.h * x.w])
}

/// `x W^T + b`, then the activation; input `[N, in]` (or `[N, in, 1, 1]`).
pub fn linear(layer: &Linear, input: &Tensor) -> Result<Tensor> {
    let x = input.shape();
    if x.c * x.h * x.w != layer.in_features || x.h * x.w != 1 {
        return Err(Error::invalid_op(
            "linear",
            format!("input {x} does not have {} features", layer.in_features),
        ));
    }
    if layer.weight.len() != layer.in_features * layer.out_features {
        return Err(Error::invalid_op("linear", "weight is not [out, in]"));
    }
    layer.activation.check_channels(layer.out_features)?;
    let f = ActivationFn::new(&layer.activation);
    let mut data = Vec::with_capacity(x.n * layer.out_features);
    for row in input.data().chunks(layer.in_features) {
        for o in 0..layer.out_features {
            let w = &layer.weight[o * layer.in_features..][..layer.in_features];
            let dot: f64 = w
                .iter()
                .zip(row)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            let b = layer.bias.as_ref().map_or(0.0, |b| f64::from(b[o]));
            data.push(f.eval((dot + b) as f32, o));
        }
    }
    Tensor::new(vec![x.n, layer.out_features], data)
}

/// Softmax over the channel dimension (dim 1), in f64.
pub fn softmax(input: &Tensor) -> Result<Tensor> {
    let x = input.shape();
    let plane = x.h * x.w;
    let mut out = input.clone();
    for n in 0..x.n {
        for p in 0..plane {
            let idx = |c: usize| (n * x.c + c) * plane + p;
            let max = (0..x.c)
                .map(|c| f64::from(input.data()[idx(c)]))
                .fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = (0..x.c)
                .map(|c| (f64::from(input.data()[idx(c)]) - max).exp())
                .sum();
            for c in 0..x.c {
                out.data_mut()[idx(c)] =
                    ((f64::from(input.data()[idx(c)]) - max).exp() / sum) as f32;
            }
        }
    }
    Ok(out)
}
