//! References for the channel ops: concatenation, selection, layer normalisation over channels, and adaptive
//! average pooling (whose windows are computed here as PyTorch computes them).

use crate::error::{Error, Result};
use crate::ops::{adaptive_window, ChannelSelection, LayerNorm};
use crate::tensor::{Shape, Tensor};

/// The inputs one after the other along the channels.
pub fn concat(inputs: &[&Tensor]) -> Result<Tensor> {
    let first = inputs
        .first()
        .ok_or_else(|| Error::invalid_op("concat", "no input"))?
        .shape();
    let mut channels = 0;
    for t in inputs {
        let s = t.shape();
        if (s.n, s.h, s.w) != (first.n, first.h, first.w) {
            return Err(Error::invalid_op(
                "concat",
                format!("{s} and {first} differ in more than their channels"),
            ));
        }
        channels += s.c;
    }
    let out_shape = Shape::new(first.n, channels, first.h, first.w);
    let plane = first.h * first.w;
    let mut data = Vec::with_capacity(out_shape.len());
    for n in 0..first.n {
        for t in inputs {
            let per_image = t.shape().c * plane;
            data.extend_from_slice(&t.data()[n * per_image..][..per_image]);
        }
    }
    Tensor::from_shape(out_shape, data)
}

/// `output[:, c] = input[:, indices[c]]`.
pub fn select_channels(selection: &ChannelSelection, input: &Tensor) -> Result<Tensor> {
    let x = input.shape();
    selection.check(x.c)?;
    let out_shape = Shape::new(x.n, selection.output_channels(), x.h, x.w);
    let plane = x.h * x.w;
    let mut data = Vec::with_capacity(out_shape.len());
    for n in 0..x.n {
        for &c in selection.indices.iter() {
            data.extend_from_slice(&input.data()[(n * x.c + c) * plane..][..plane]);
        }
    }
    Tensor::from_shape(out_shape, data)
}

/// Layer normalisation over the channels of each pixel, in f64 with the biased variance.
pub fn layer_norm(norm: &LayerNorm, input: &Tensor) -> Result<Tensor> {
    let x = input.shape();
    if x.c != norm.channels() {
        return Err(Error::invalid_op(
            "layer_norm",
            format!("{} channels, input has {}", norm.channels(), x.c),
        ));
    }
    let mut out = Tensor::zeros(x);
    for n in 0..x.n {
        for y in 0..x.h {
            for xx in 0..x.w {
                let at = |c| x.index(n, c, y, xx);
                let values: Vec<f64> = (0..x.c).map(|c| f64::from(input.data()[at(c)])).collect();
                let mean = values.iter().sum::<f64>() / x.c as f64;
                let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.c as f64;
                let inv = 1.0 / (var + f64::from(norm.eps)).sqrt();
                for (c, v) in values.iter().enumerate() {
                    out.data_mut()[at(c)] = ((v - mean) * inv * f64::from(norm.weight[c])
                        + f64::from(norm.bias[c]))
                        as f32;
                }
            }
        }
    }
    Ok(out)
}

/// Average pooling to `[OH, OW]` over PyTorch's adaptive windows.
pub fn adaptive_avg_pool2d(output_size: [usize; 2], input: &Tensor) -> Result<Tensor> {
    let x = input.shape();
    let [oh, ow] = output_size;
    if oh == 0 || ow == 0 || x.h == 0 || x.w == 0 {
        return Err(Error::invalid_op(
            "adaptive_avg_pool2d",
            format!("cannot pool {x} to {oh} x {ow}"),
        ));
    }
    let out_shape = Shape::new(x.n, x.c, oh, ow);
    let mut out = Tensor::zeros(out_shape);
    for n in 0..x.n {
        for c in 0..x.c {
            for oy in 0..oh {
                let (y0, y1) = adaptive_window(oy, x.h, oh);
                for ox in 0..ow {
                    let (x0, x1) = adaptive_window(ox, x.w, ow);
                    let mut sum = 0.0f64;
                    for y in y0..y1 {
                        for xx in x0..x1 {
                            sum += f64::from(input.data()[x.index(n, c, y, xx)]);
                        }
                    }
                    out.data_mut()[out_shape.index(n, c, oy, ox)] =
                        (sum / ((y1 - y0) * (x1 - x0)) as f64) as f32;
                }
            }
        }
    }
    Ok(out)
}
