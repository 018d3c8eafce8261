//! Max and average pooling, and the global average, on NHWC activations: every output pixel's channels at
//! once. The same windows, padding and divisors as `reference::pool`.

use rayon::prelude::*;

use super::rows_per_task;
use super::simd::multiversion;
use crate::ops::{Pool2d, PoolKind};
use crate::tensor::Shape;

/// `output = pool(input)` for NHWC `input` of shape `x` and `output` of shape `y`.
pub(crate) fn pool2d(pool: &Pool2d, x: Shape, y: Shape, input: &[f32], output: &mut [f32]) {
    let row_len = y.w * x.c;
    let rows = rows_per_task(y.n * y.h, row_len);
    output
        .par_chunks_mut(row_len * rows)
        .enumerate()
        .for_each(|(task, chunk)| pool_rows(pool, x, y, task * rows, input, chunk));
}

multiversion! {
    fn pool_rows(pool: &Pool2d, x: Shape, y: Shape, first_row: usize, input: &[f32], chunk: &mut [f32])
        => pool_rows_body
}

/// Output rows `first_row..` (of all images, `chunk` holding whole rows) of [`pool2d`].
#[inline(always)]
fn pool_rows_body<const FMA: bool>(
    pool: &Pool2d,
    x: Shape,
    y: Shape,
    first_row: usize,
    input: &[f32],
    chunk: &mut [f32],
) {
    let c = x.c;
    let row_len = y.w * c;
    let (pt, pl) = (pool.padding.top as isize, pool.padding.left as isize);
    // Where each input pixel of the window starts in `input`, for one output pixel.
    let mut taps: Vec<usize> = Vec::with_capacity(pool.kernel[0] * pool.kernel[1]);
    for (r, out_row) in chunk.chunks_mut(row_len).enumerate() {
        let row = first_row + r;
        let (n, oy) = (row / y.h, row % y.h);
        let y0 = (oy * pool.stride[0]) as isize - pt;
        for ox in 0..y.w {
            let out = &mut out_row[ox * c..][..c];
            let x0 = (ox * pool.stride[1]) as isize - pl;
            let at = |iy: isize, ix: isize| ((n * x.h + iy as usize) * x.w + ix as usize) * c;
            taps.clear();
            match pool.kind {
                PoolKind::Max => {
                    for ky in 0..pool.kernel[0] {
                        let iy = y0 + (ky * pool.dilation[0]) as isize;
                        if iy < 0 || iy >= x.h as isize {
                            continue;
                        }
                        for kx in 0..pool.kernel[1] {
                            let ix = x0 + (kx * pool.dilation[1]) as isize;
                            if ix >= 0 && ix < x.w as isize {
                                taps.push(at(iy, ix));
                            }
                        }
                    }
                    // NaN wins and stays, as in the reference; a select rather than a branch, so that
                    // the loop is vectorised.
                    reduce(out, input, &taps, f32::NEG_INFINITY, |m, v| {
                        if v > m || v.is_nan() {
                            v
                        } else {
                            m
                        }
                    });
                }
                PoolKind::Average { count_include_pad } => {
                    // PyTorch's divisor: the window clipped to the padded input, or without
                    // count_include_pad to the input itself.
                    let y1 =
                        (y0 + pool.kernel[0] as isize).min((x.h + pool.padding.bottom) as isize);
                    let x1 =
                        (x0 + pool.kernel[1] as isize).min((x.w + pool.padding.right) as isize);
                    let (cy0, cx0) = (y0.max(0), x0.max(0));
                    let (cy1, cx1) = (y1.min(x.h as isize), x1.min(x.w as isize));
                    let count = if count_include_pad {
                        (y1 - y0) * (x1 - x0)
                    } else {
                        (cy1 - cy0) * (cx1 - cx0)
                    };
                    for iy in cy0..cy1 {
                        taps.extend((cx0..cx1).map(|ix| at(iy, ix)));
                    }
                    reduce(out, input, &taps, 0.0, |s, v| s + v);
                    let scale = 1.0 / count as f32;
                    for s in out.iter_mut() {
                        *s *= scale;
                    }
                }
            }
        }
    }
}

/// `out[ch] = f(... f(f(init, input[taps[0] + ch]), input[taps[1] + ch]) ...)` for each channel `ch`, in
/// blocks of channels whose partial results stay in registers across the taps.
#[inline(always)]
fn reduce(out: &mut [f32], input: &[f32], taps: &[usize], init: f32, f: impl Fn(f32, f32) -> f32) {
    #[inline(always)]
    fn block<const L: usize>(
        out: &mut [f32],
        ch: usize,
        input: &[f32],
        taps: &[usize],
        init: f32,
        f: &impl Fn(f32, f32) -> f32,
    ) {
        let mut acc = [init; L];
        for &at in taps {
            for (a, &v) in acc.iter_mut().zip(&input[at + ch..at + ch + L]) {
                *a = f(*a, v);
            }
        }
        out[ch..ch + L].copy_from_slice(&acc);
    }
    let c = out.len();
    let mut ch = 0;
    while ch + 16 <= c {
        block::<16>(out, ch, input, taps, init, &f);
        ch += 16;
    }
    while ch + 4 <= c {
        block::<4>(out, ch, input, taps, init, &f);
        ch += 4;
    }
    while ch < c {
        block::<1>(out, ch, input, taps, init, &f);
        ch += 1;
    }
}

/// `[N, H, W, C] -> [N, C]`: the mean of each channel, summed in f64.
pub(crate) fn global_avg_pool(x: Shape, input: &[f32], output: &mut [f32]) {
    let plane = x.h * x.w;
    let c = x.c;
    output
        .par_chunks_mut(c)
        .enumerate()
        .for_each(|(n, out)| channel_means(&input[n * plane * c..][..plane * c], out));
}

multiversion! {
    fn channel_means(image: &[f32], out: &mut [f32]) => channel_means_body
}

/// The mean of each of `out.len()` channels over the pixels of one NHWC `image`.
#[inline(always)]
fn channel_means_body<const FMA: bool>(image: &[f32], out: &mut [f32]) {
    let c = out.len().max(1);
    let mut sums = vec![0.0f64; c];
    for pixel in image.chunks_exact(c) {
        for (s, &v) in sums.iter_mut().zip(pixel) {
            *s += f64::from(v);
        }
    }
    let pixels = (image.len() / c) as f64;
    for (o, s) in out.iter_mut().zip(sums) {
        *o = (s / pixels) as f32;
    }
}
