//! The element-wise kernels on NHWC activations: a standalone activation, inference batch norm, the residual
//! add and the channel-wise product (squeeze-and-excitation), each with its activation; and flattening to
//! PyTorch's `C * H * W` order.

use rayon::prelude::*;

use super::activation::{finish_rows_body, RowActivation};
use super::rows_per_task;
use super::simd::multiversion;
use crate::ops::{BinaryOp, ResidualAdd};
use crate::tensor::Shape;

/// Pixels per tile: the values are computed and the activation applied while the tile is in the L1 cache, and a
/// PWLU's lookup takes 16 pixels at once.
const TILE_PIXELS: usize = 16;

/// Splits `output` (pixels of `c` channels) into tasks of whole tiles and runs `task(first pixel, pixels)` on
/// each, in parallel. Each task calls one kernel compiled for the instruction set (a closure handed to rayon is
/// compiled for the baseline).
fn by_tasks(output: &mut [f32], c: usize, task: impl Fn(usize, &mut [f32]) + Sync) {
    let c = c.max(1);
    let rows = rows_per_task(output.len() / c, c).next_multiple_of(TILE_PIXELS);
    output
        .par_chunks_mut(c * rows)
        .enumerate()
        .for_each(|(t, chunk)| task(t * rows, chunk));
}

/// `output = act(input * scale + shift)` per channel; with scale 1 and shift 0, the activation alone.
pub(crate) fn scale_shift(
    act: &RowActivation,
    scale_shift: Option<(&[f32], &[f32])>,
    c: usize,
    input: &[f32],
    output: &mut [f32],
) {
    by_tasks(output, c, |first, out| {
        scale_shift_rows(act, scale_shift, c, &input[first * c..][..out.len()], out)
    });
}

multiversion! {
    fn scale_shift_rows(
        act: &RowActivation,
        scale_shift: Option<(&[f32], &[f32])>,
        c: usize,
        input: &[f32],
        output: &mut [f32],
    ) => scale_shift_rows_body
}

#[inline(always)]
fn scale_shift_rows_body<const FMA: bool>(
    act: &RowActivation,
    scale_shift: Option<(&[f32], &[f32])>,
    c: usize,
    input: &[f32],
    output: &mut [f32],
) {
    let c = c.max(1);
    each_tile::<FMA>(act, c, output, input, |_, tile, x| match scale_shift {
        Some((scale, shift)) => {
            for (out, x) in tile.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                for (((o, &x), &s), &t) in out.iter_mut().zip(x).zip(scale).zip(shift) {
                    *o = x * s + t;
                }
            }
        }
        None => tile.copy_from_slice(x),
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
    by_tasks(output, c, |first, out| {
        let a = &a[first * c..][..out.len()];
        match op {
            BinaryOp::Add => add_rows(act, c, a, &b[first * c..][..out.len()], out),
            BinaryOp::MulChannels => {
                mul_channels_rows(act, x.h * x.w, c, first, a, b, out);
            }
        }
    });
}

multiversion! {
    fn add_rows(act: &RowActivation, c: usize, a: &[f32], b: &[f32], output: &mut [f32]) => add_rows_body
}

#[inline(always)]
fn add_rows_body<const FMA: bool>(
    act: &RowActivation,
    c: usize,
    a: &[f32],
    b: &[f32],
    output: &mut [f32],
) {
    let c = c.max(1);
    each_tile::<FMA>(act, c, output, a, |first, out, a| {
        for ((o, &a), &b) in out.iter_mut().zip(a).zip(&b[first * c..]) {
            *o = a + b;
        }
    });
}

multiversion! {
    /// Pixels `first..` of `a * b[n, c]`: `b` holds one value per image and channel, an image `plane` pixels.
    fn mul_channels_rows(
        act: &RowActivation,
        plane: usize,
        c: usize,
        first: usize,
        a: &[f32],
        b: &[f32],
        output: &mut [f32],
    ) => mul_channels_rows_body
}

#[inline(always)]
fn mul_channels_rows_body<const FMA: bool>(
    act: &RowActivation,
    plane: usize,
    c: usize,
    first: usize,
    a: &[f32],
    b: &[f32],
    output: &mut [f32],
) {
    let c = c.max(1);
    each_tile::<FMA>(act, c, output, a, |tile_first, tile, a| {
        for (p, (out, a)) in tile.chunks_exact_mut(c).zip(a.chunks_exact(c)).enumerate() {
            let image = (first + tile_first + p) / plane.max(1);
            let b = &b[image * c..][..c];
            for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                *o = a * b;
            }
        }
    });
}

/// `compute(first pixel, output tile, input tile)` over tiles of `TILE_PIXELS` pixels of `c` channels (the first
/// pixel counted from the start of `output`), each followed by the activation while it is in cache (nothing for
/// the identity).
#[inline(always)]
fn each_tile<const FMA: bool>(
    act: &RowActivation,
    c: usize,
    output: &mut [f32],
    input: &[f32],
    mut compute: impl FnMut(usize, &mut [f32], &[f32]),
) {
    let values = c * TILE_PIXELS;
    for (t, (tile, x)) in output
        .chunks_mut(values)
        .zip(input.chunks(values))
        .enumerate()
    {
        compute(t * TILE_PIXELS, tile, x);
        if !act.is_identity() {
            finish_rows_body::<FMA>(act, tile, None, None, ResidualAdd::None);
        }
    }
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
