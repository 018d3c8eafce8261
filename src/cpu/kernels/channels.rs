//! The channel ops on NHWC activations: a concatenation's copies, channel selection, layer normalisation over
//! each pixel's channels, and adaptive average pooling. The same results as `reference::channels`.

use rayon::prelude::*;

use super::rows_per_task;
use crate::ops::{adaptive_window, LayerNorm};
use crate::tensor::Shape;

/// Writes each pixel of `input` (`x`) into channels `offset..offset + x.c` of the same pixel of `output`, whose
/// pixels have `out_channels`.
pub(crate) fn copy_channels(
    x: Shape,
    offset: usize,
    out_channels: usize,
    input: &[f32],
    output: &mut [f32],
) {
    let pixels = x.n * x.h * x.w;
    let rows = rows_per_task(pixels, x.c);
    output[..pixels * out_channels]
        .par_chunks_mut(out_channels * rows)
        .zip(input[..pixels * x.c].par_chunks(x.c * rows))
        .for_each(|(out, inp)| {
            for (o, i) in out
                .chunks_exact_mut(out_channels)
                .zip(inp.chunks_exact(x.c))
            {
                o[offset..offset + x.c].copy_from_slice(i);
            }
        });
}

/// `output[p][c] = input[p][indices[c]]` for every pixel `p`.
pub(crate) fn select_channels(x: Shape, indices: &[usize], input: &[f32], output: &mut [f32]) {
    let pixels = x.n * x.h * x.w;
    let out_c = indices.len();
    let rows = rows_per_task(pixels, out_c);
    output[..pixels * out_c]
        .par_chunks_mut(out_c * rows)
        .zip(input[..pixels * x.c].par_chunks(x.c * rows))
        .for_each(|(out, inp)| {
            for (o, i) in out.chunks_exact_mut(out_c).zip(inp.chunks_exact(x.c)) {
                for (v, &c) in o.iter_mut().zip(indices) {
                    *v = i[c];
                }
            }
        });
}

/// Layer normalisation of each pixel's channels: two passes (mean, then the variance about it) in f32, the
/// order that keeps the variance accurate when the mean is large.
pub(crate) fn layer_norm(norm: &LayerNorm, x: Shape, input: &[f32], output: &mut [f32]) {
    let c = x.c;
    let pixels = x.n * x.h * x.w;
    let rows = rows_per_task(pixels, c);
    output[..pixels * c]
        .par_chunks_mut(c * rows)
        .zip(input[..pixels * c].par_chunks(c * rows))
        .for_each(|(out, inp)| {
            for (o, i) in out.chunks_exact_mut(c).zip(inp.chunks_exact(c)) {
                let mean = i.iter().sum::<f32>() / c as f32;
                let var = i.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / c as f32;
                let inv = 1.0 / (var + norm.eps).sqrt();
                for (((o, &v), &w), &b) in o.iter_mut().zip(i).zip(&*norm.weight).zip(&*norm.bias) {
                    *o = (v - mean) * inv * w + b;
                }
            }
        });
}

/// Average pooling of NHWC `input` (`x`) to `output` (`y`) over PyTorch's adaptive windows.
pub(crate) fn adaptive_avg_pool(x: Shape, y: Shape, input: &[f32], output: &mut [f32]) {
    let c = x.c;
    let row_len = y.w * c;
    let rows = rows_per_task(y.n * y.h, row_len);
    output[..y.n * y.h * row_len]
        .par_chunks_mut(row_len * rows)
        .enumerate()
        .for_each(|(task, chunk)| {
            for (r, out_row) in chunk.chunks_mut(row_len).enumerate() {
                let row = task * rows + r;
                let (n, oy) = (row / y.h, row % y.h);
                let (y0, y1) = adaptive_window(oy, x.h, y.h);
                for (ox, out) in out_row.chunks_exact_mut(c).enumerate() {
                    let (x0, x1) = adaptive_window(ox, x.w, y.w);
                    out.fill(0.0);
                    for iy in y0..y1 {
                        for ix in x0..x1 {
                            let at = ((n * x.h + iy) * x.w + ix) * c;
                            for (s, &v) in out.iter_mut().zip(&input[at..at + c]) {
                                *s += v;
                            }
                        }
                    }
                    let scale = 1.0 / ((y1 - y0) * (x1 - x0)) as f32;
                    out.iter_mut().for_each(|s| *s *= scale);
                }
            }
        });
}
