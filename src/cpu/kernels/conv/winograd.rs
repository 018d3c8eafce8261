//! 3x3 convolutions with stride 1 by Winograd's minimal filtering, F(4x4, 3x3) (Lavin and Gray, 2015): each
//! 4x4 block of output pixels comes from a 6x6 block of input pixels in 36 multiplies per channel pair where
//! the direct convolution takes 144, so the products shrink 4x for a few dozen additions per value.
//!
//! The input is cut into tiles (6x6 input pixels, 4x4 output pixels, neighbours overlapping by two); for a
//! bounded number of tile rows at a time:
//! 1. each tile's input is transformed (`V = Bᵀ d B`), as 36 matrices `[tiles][IC]`, one per position of the
//!    transformed tile;
//! 2. 36 products, `M[pos] = V[pos] · U[pos]`, by the weights transformed at plan time (`U = G g Gᵀ`, packed
//!    as the GEMM kernel's panels);
//! 3. each tile's outputs are transformed back (`Y = Aᵀ m A`) into the NHWC output, and the epilogue runs over
//!    the tile row's output rows while they are in cache.
//!
//! Accuracy: the transforms' coefficients (up to 8 and 1/24) cost a few bits: on ResNet-like layers the error
//! is a few 1e-6 of the largest output where the direct sum's is a few 1e-7, well inside the 1e-4 every
//! kernel must meet (docs/cpu.md). What differs beyond rounding: an infinite input can become NaN at the
//! outputs of its tiles (the transforms subtract it from itself), as in every Winograd engine; NaN stays NaN
//! wherever a receptive field holds one.

use rayon::prelude::*;

use super::ConvKernel;
use crate::cpu::kernels::gemm::Panels;
use crate::cpu::kernels::simd::{mul_add, multiversion};
use crate::ops::Conv2d;
use crate::tensor::Shape;

/// Output pixels a tile has in each direction.
const OUT: usize = 4;

/// Input pixels a tile reads in each direction.
const IN: usize = OUT + 2;

/// Positions of a transformed tile (6 x 6).
pub(super) const POSITIONS: usize = IN * IN;

/// Channels the transforms take at a time (one AVX-512 register, four SIMD128 ones).
const LANES: usize = 16;

/// Floats of transformed inputs and products held at a time (4 MiB), whatever the layer and batch.
const SCRATCH_FLOATS: usize = 1 << 20;

/// Tiles a layer needs at least: each product reads its weights, 4x the direct convolution's, once for all
/// the tiles, so with fewer (a 7x7 output at batch 1 has four) reading them costs more than the multiplies
/// saved; with 8 (batch 2) Winograd's method measured 1.6x faster on ResNet-18's last stage (docs/cpu.md).
const MIN_TILES: usize = 8;

/// Whether Winograd's method computes `conv` producing `output`: ungrouped, 3x3, stride 1, undilated, and
/// wide enough in channels and pixels that the products it saves outweigh its transforms.
pub(super) fn serves(conv: &Conv2d, output: Shape) -> bool {
    conv.groups == 1
        && conv.kernel == [3, 3]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.in_channels >= 16
        && conv.out_channels >= 16
        && output.n * output.h.div_ceil(OUT) * output.w.div_ceil(OUT) >= MIN_TILES
}

/// `weight` (`[OC][IC][3][3]`) transformed (`U = G g Gᵀ`, in f64 and rounded once) and packed as 36 panels of
/// `[IC][OC]`, one per position, on the current pool's threads.
pub(super) fn pack(conv: &Conv2d, weight: &[f32]) -> Box<[Panels]> {
    const G: [[f64; 3]; IN] = [
        [1.0 / 4.0, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        [0.0, 0.0, 1.0],
    ];
    let (ic, oc) = (conv.in_channels, conv.out_channels);
    let mut transformed = vec![0.0f32; POSITIONS * ic * oc];
    // One task per row of the transformed tile: its six positions are one contiguous run.
    transformed
        .par_chunks_mut(IN * ic * oc)
        .enumerate()
        .for_each(|(r, positions)| {
            // Output channels innermost, so that each position's writes run along a row of its matrix.
            for i in 0..ic {
                for o in 0..oc {
                    let g = &weight[(o * ic + i) * 9..][..9];
                    // Row r of G g.
                    let gg: [f64; 3] = std::array::from_fn(|c| {
                        (0..3).map(|k| G[r][k] * f64::from(g[k * 3 + c])).sum()
                    });
                    for c in 0..IN {
                        let u: f64 = (0..3).map(|k| gg[k] * G[c][k]).sum();
                        positions[(c * ic + i) * oc + o] = u as f32;
                    }
                }
            }
        });
    transformed
        .par_chunks_exact(ic * oc)
        .map(|u| Panels::new(ic, oc, u))
        .collect()
}

/// Tile rows (of `ceil(OW / 4)` tiles) one round takes: as many as fit `budget` floats, at least one.
fn tile_rows_per_round(kernel: &ConvKernel, budget: usize) -> usize {
    let y = kernel.output;
    let tile_row = POSITIONS * y.w.div_ceil(OUT) * (kernel.conv.in_channels + y.c);
    let tile_rows = y.n * y.h.div_ceil(OUT);
    (budget / tile_row.max(1)).clamp(1, tile_rows.max(1))
}

/// Floats of scratch one run needs: rounds of as many tile rows as [`SCRATCH_FLOATS`] holds.
pub(super) fn scratch_floats(kernel: &ConvKernel) -> usize {
    let y = kernel.output;
    let tiles = tile_rows_per_round(kernel, SCRATCH_FLOATS) * y.w.div_ceil(OUT);
    POSITIONS * tiles * (kernel.conv.in_channels + y.c)
}

/// `output = epilogue(conv(input))` for a layer that [`serves`] covers, with `panels` from [`pack`], in rounds
/// of as many tile rows as `scratch` holds (at least one).
pub(super) fn run(
    kernel: &ConvKernel,
    panels: &[Panels],
    input: &[f32],
    residual: Option<&[f32]>,
    output: &mut [f32],
    scratch: &mut [f32],
) {
    let (y, ic, oc) = (kernel.output, kernel.conv.in_channels, kernel.output.c);
    let tiles_x = y.w.div_ceil(OUT);
    let tile_rows = y.n * y.h.div_ceil(OUT);
    let per_round = tile_rows_per_round(kernel, scratch.len());
    let mut output = output;
    let mut first_row = 0;
    for first in (0..tile_rows).step_by(per_round) {
        let rows = per_round.min(tile_rows - first);
        let tiles = rows * tiles_x;
        let (v, rest) = scratch.split_at_mut(POSITIONS * tiles * ic);
        let m = &mut rest[..POSITIONS * tiles * oc];

        // Each tile row's 36 runs of transformed inputs, one per position.
        let mut parts: Vec<Vec<&mut [f32]>> =
            (0..rows).map(|_| Vec::with_capacity(POSITIONS)).collect();
        for position in v.chunks_exact_mut(tiles * ic) {
            for (row, part) in parts
                .iter_mut()
                .zip(position.chunks_exact_mut(tiles_x * ic))
            {
                row.push(part);
            }
        }
        parts
            .into_par_iter()
            .enumerate()
            .for_each(|(r, mut parts)| {
                transform_input(kernel, input, first + r, &mut parts);
            });

        // The 36 products side by side: one fork and join per round rather than one per product.
        panels
            .par_iter()
            .zip(v.par_chunks_exact(tiles * ic))
            .zip(m.par_chunks_exact_mut(tiles * oc))
            .for_each(|((panel, v), m)| panel.multiply(v, m));

        // Each tile row's output rows (four, or fewer at the bottom of an image).
        let mut outs = Vec::with_capacity(rows);
        let mut rest = std::mem::take(&mut output);
        let mut row = first_row;
        for tile_row in first..first + rows {
            let top = tile_row % y.h.div_ceil(OUT) * OUT;
            let height = (y.h - top).min(OUT);
            let (out, tail) = rest.split_at_mut(height * y.w * oc);
            outs.push((tile_row - first, row, out));
            rest = tail;
            row += height;
        }
        output = rest;
        first_row = row;
        let m = &*m;
        outs.into_par_iter().for_each(|(r, row, out)| {
            transform_output(kernel, m, tiles, r, out);
            let res = residual.map(|res| &res[row * y.w * oc..][..out.len()]);
            kernel
                .activation
                .finish_rows(out, kernel.bias.as_deref(), res, kernel.residual);
        });
    }
}

multiversion! {
    /// Tile row `tile_row` (counted over the batch) of the input transformed into `parts`, one run of
    /// `[tiles_x][IC]` per position.
    fn transform_input(
        kernel: &ConvKernel,
        input: &[f32],
        tile_row: usize,
        parts: &mut [&mut [f32]],
    ) => transform_input_body
}

#[inline(always)]
fn transform_input_body<const FMA: bool>(
    kernel: &ConvKernel,
    input: &[f32],
    tile_row: usize,
    parts: &mut [&mut [f32]],
) {
    let (x, y, conv) = (kernel.input, kernel.output, &kernel.conv);
    let ic = x.c;
    let tiles_y = y.h.div_ceil(OUT);
    let (n, ty) = (tile_row / tiles_y, tile_row % tiles_y);
    let top = (OUT * ty) as isize - conv.padding.top as isize;
    // The input's pixel offset at (top + i, left + j), or None on padding.
    let at = |i: usize, left: isize, j: usize| {
        let (iy, ix) = (top + i as isize, left + j as isize);
        (iy >= 0 && iy < x.h as isize && ix >= 0 && ix < x.w as isize)
            .then(|| ((n * x.h + iy as usize) * x.w + ix as usize) * ic)
    };
    for tx in 0..y.w.div_ceil(OUT) {
        let left = (OUT * tx) as isize - conv.padding.left as isize;
        let mut offsets = [None; POSITIONS];
        for (p, offset) in offsets.iter_mut().enumerate() {
            *offset = at(p / IN, left, p % IN);
        }
        let mut c = 0;
        while c < ic {
            let lanes = LANES.min(ic - c);
            let mut d = [[0.0f32; LANES]; POSITIONS];
            for (values, offset) in d.iter_mut().zip(offsets) {
                if let Some(offset) = offset {
                    copy(&mut values[..], &input[offset + c..], lanes);
                }
            }
            let v = separable(&d, input_1d::<FMA>);
            for (part, values) in parts.iter_mut().zip(&v) {
                copy(&mut part[tx * ic + c..], values, lanes);
            }
            c += lanes;
        }
    }
}

/// `dst[..lanes] = src[..lanes]`, as vector moves when `lanes` is a whole block.
#[inline(always)]
fn copy(dst: &mut [f32], src: &[f32], lanes: usize) {
    if lanes == LANES {
        dst[..LANES].copy_from_slice(&src[..LANES]);
    } else {
        dst[..lanes].copy_from_slice(&src[..lanes]);
    }
}

/// `T x Tᵀ` on a 6x6 tile (row-major), lane by lane, for a 1-D transform `T` of six values into `R`: down
/// each column, then along each of the `R` rows; the `R x R` results at a row stride of six.
#[inline(always)]
fn separable<const R: usize>(
    x: &[[f32; LANES]; POSITIONS],
    transform: impl Fn([f32; IN]) -> [f32; R],
) -> [[f32; LANES]; POSITIONS] {
    let mut columns = [[0.0f32; LANES]; POSITIONS];
    for j in 0..IN {
        for l in 0..LANES {
            let column = std::array::from_fn(|i| x[i * IN + j][l]);
            for (i, value) in transform(column).into_iter().enumerate() {
                columns[i * IN + j][l] = value;
            }
        }
    }
    let mut out = [[0.0f32; LANES]; POSITIONS];
    for i in 0..R {
        for l in 0..LANES {
            let row = std::array::from_fn(|j| columns[i * IN + j][l]);
            for (j, value) in transform(row).into_iter().enumerate() {
                out[i * IN + j][l] = value;
            }
        }
    }
    out
}

/// `Bᵀ d` for one column of six: Bᵀ = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0;
/// 0 2 -1 -2 1 0; 0 4 0 -5 0 1], with its common terms shared.
#[inline(always)]
fn input_1d<const FMA: bool>([d0, d1, d2, d3, d4, d5]: [f32; IN]) -> [f32; IN] {
    let a = mul_add::<FMA>(-4.0, d2, d4);
    let b = mul_add::<FMA>(-4.0, d1, d3);
    let c = d4 - d2;
    let e = 2.0 * (d3 - d1);
    [
        mul_add::<FMA>(-5.0, d2, mul_add::<FMA>(4.0, d0, d4)),
        a + b,
        a - b,
        c + e,
        c - e,
        mul_add::<FMA>(-5.0, d3, mul_add::<FMA>(4.0, d1, d5)),
    ]
}

multiversion! {
    /// The output rows of tile row `r` of this round (`out`, one or two rows of `[OW][OC]`) from the products
    /// `m` (36 runs of `[tiles][OC]`).
    fn transform_output(kernel: &ConvKernel, m: &[f32], tiles: usize, r: usize, out: &mut [f32])
        => transform_output_body
}

#[inline(always)]
fn transform_output_body<const FMA: bool>(
    kernel: &ConvKernel,
    m: &[f32],
    tiles: usize,
    r: usize,
    out: &mut [f32],
) {
    let y = kernel.output;
    let oc = y.c;
    let tiles_x = y.w.div_ceil(OUT);
    let height = out.len() / (y.w * oc);
    for tx in 0..tiles_x {
        let width = (y.w - OUT * tx).min(OUT);
        let tile = r * tiles_x + tx;
        let mut c = 0;
        while c < oc {
            let lanes = LANES.min(oc - c);
            let mut products = [[0.0f32; LANES]; POSITIONS];
            for (p, values) in products.iter_mut().enumerate() {
                copy(values, &m[(p * tiles + tile) * oc + c..], lanes);
            }
            let outputs = separable(&products, output_1d::<FMA>);
            for i in 0..height {
                for j in 0..width {
                    let at = (i * y.w + OUT * tx + j) * oc + c;
                    copy(&mut out[at..], &outputs[i * IN + j], lanes);
                }
            }
            c += lanes;
        }
    }
}

/// `Aᵀ m` for one column of six: Aᵀ = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1], with its
/// common terms shared.
#[inline(always)]
fn output_1d<const FMA: bool>([m0, m1, m2, m3, m4, m5]: [f32; IN]) -> [f32; OUT] {
    let (p, q) = (m1 + m2, m1 - m2);
    let (r, s) = (m3 + m4, m3 - m4);
    [
        m0 + p + r,
        mul_add::<FMA>(2.0, s, q),
        mul_add::<FMA>(4.0, r, p),
        mul_add::<FMA>(8.0, s, q) + m5,
    ]
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cpu::kernels::conv::{ConvChoice, ConvMethod, ConvWeights};
    use crate::cpu::kernels::gemm::tests::values;
    use crate::ops::{Activation, Conv2dLayer, Epilogue, Padding, ResidualAdd};
    use crate::tensor::Tensor;

    fn nchw_to_nhwc(x: &Tensor) -> Vec<f32> {
        let s = x.shape();
        let mut out = vec![0.0; s.len()];
        for n in 0..s.n {
            for c in 0..s.c {
                for p in 0..s.h * s.w {
                    out[(n * s.h * s.w + p) * s.c + c] = x.data()[(n * s.c + c) * s.h * s.w + p];
                }
            }
        }
        out
    }

    #[test]
    fn rounds_of_one_tile_row_agree_with_the_reference() {
        let conv = Conv2d {
            padding: Padding {
                top: 0,
                left: 2,
                bottom: 1,
                right: 0,
            },
            ..Conv2d::new(17, 21, [3, 3])
        };
        let x = Shape::new(3, 17, 10, 9);
        let [oh, ow] = conv.output_size([x.h, x.w]).expect("fits");
        let y = Shape::new(x.n, 21, oh, ow);
        assert!(serves(&conv, y));
        let layer = Conv2dLayer::new(
            conv,
            values(conv.weight_len(), 1),
            Some(values(21, 2).into()),
            Epilogue {
                activation: Activation::Relu,
                residual: ResidualAdd::BeforeActivation,
            },
        )
        .expect("layer");
        let input = Tensor::new([x.n, x.c, x.h, x.w], values(x.len(), 3)).expect("input");
        let residual = Tensor::new([y.n, y.c, y.h, y.w], values(y.len(), 4)).expect("residual");
        let expected =
            crate::reference::conv::conv2d(&layer, &input, Some(&residual)).expect("reference");

        let choice = ConvChoice::of(&conv, y, 2, true);
        assert_eq!(choice.method, ConvMethod::Winograd);
        let weights = Arc::new(ConvWeights::pack(&conv, &layer.weight, choice));
        let kernel = ConvKernel::new(&layer, choice, Arc::clone(&weights), x, y);
        let ConvWeights::Winograd(panels) = &*weights else {
            panic!("Winograd's weights");
        };
        // One tile row a round: rounds start and end inside images and across them.
        let mut scratch = vec![0.0; POSITIONS * ow.div_ceil(OUT) * (17 + 21)];
        let mut output = vec![f32::NAN; y.len()];
        let (input, residual) = (nchw_to_nhwc(&input), nchw_to_nhwc(&residual));
        run(
            &kernel,
            panels,
            &input,
            Some(&residual),
            &mut output,
            &mut scratch,
        );
        let expected = nchw_to_nhwc(&expected);
        for (i, (&got, &want)) in output.iter().zip(&expected).enumerate() {
            let tolerance = crate::conformance::TOLERANCE * want.abs().max(1.0);
            assert!((got - want).abs() <= tolerance, "{i}: {got} vs {want}");
        }
    }
}
