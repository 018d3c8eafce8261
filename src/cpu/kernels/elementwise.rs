//! The element-wise kernels on NHWC activations: a standalone activation, inference batch norm, the residual
//! add and the channel-wise product (squeeze-and-excitation), each with its activation; and flattening to
//! PyTorch's `C * H * W` order.

use rayon::prelude::*;

use super::activation::RowActivation;
use super::rows_per_task;
use crate::ops::BinaryOp;
use crate::tensor::Shape;

/// Runs `f(pixel index, output pixel)` over every pixel of `output` (rows of `c` channels), then the
/// activation over each finished block of pixels while it is in cache, in parallel.
fn for_each_pixel(
    output: &mut [f32],
    c: usize,
    act: &RowActivation,
    f: impl Fn(usize, &mut [f32]) + Sync,
) {
    let rows = rows_per_task(output.len() / c.max(1), c);
    output
        .par_chunks_mut(c * rows)
        .enumerate()
        .for_each(|(task, chunk)| {
            for (r, pixel) in chunk.chunks_mut(c).enumerate() {
                f(task * rows + r, pixel);
            }
            act.apply_rows(chunk);
        });
}

/// `output = act(input * scale + shift)` per channel; with scale 1 and shift 0, the activation alone.
pub(crate) fn scale_shift(
    act: &RowActivation,
    scale_shift: Option<(&[f32], &[f32])>,
    c: usize,
    input: &[f32],
    output: &mut [f32],
) {
    for_each_pixel(output, c, act, |p, out| {
        let x = &input[p * c..][..c];
        match scale_shift {
            Some((scale, shift)) => {
                for (((o, &x), &s), &t) in out.iter_mut().zip(x).zip(scale).zip(shift) {
                    *o = x * s + t;
                }
            }
            None => out.copy_from_slice(x),
        }
    });
}

/// `output = act(a + b)` or `act(a * b[n, c])`, `a` of shape `x`.
pub(crate) fn binary(
    op: BinaryOp,
    act: &RowActivation,
    x: Shape,
    a: &[f32],
    b: &[f32],
    output: &mut [f32],
) {
    let c = x.c;
    let plane = x.h * x.w;
    for_each_pixel(output, c, act, |p, out| {
        let a = &a[p * c..][..c];
        let b = match op {
            BinaryOp::Add => &b[p * c..][..c],
            BinaryOp::MulChannels => &b[(p / plane) * c..][..c],
        };
        for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
            *o = match op {
                BinaryOp::Add => a + b,
                BinaryOp::MulChannels => a * b,
            };
        }
    });
}

/// `[N, H, W, C] -> [N, C * H * W]` in PyTorch's order (`c * H * W + h * W + w`).
pub(crate) fn flatten(x: Shape, input: &[f32], output: &mut [f32]) {
    let plane = x.h * x.w;
    let features = x.c * plane;
    output
        .par_chunks_mut(features)
        .enumerate()
        .for_each(|(n, out)| {
            let image = &input[n * features..][..features];
            for (p, pixel) in image.chunks(x.c).enumerate() {
                for (ch, &v) in pixel.iter().enumerate() {
                    out[ch * plane + p] = v;
                }
            }
        });
}
