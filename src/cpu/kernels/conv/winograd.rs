//! 3x3 convolutions with stride 1 by Winograd's minimal filtering (Lavin and Gray, 2015), F(4x4, 3x3) and
//! F(2x2, 3x3): each 4x4 (2x2) block of output pixels comes from a 6x6 (4x4) block of input pixels in 36 (16)
//! multiplies per channel pair where the direct convolution takes 144 (36): 4x (2.25x) fewer, for a few
//! dozen additions per value.
//!
//! The input is cut into tiles (neighbours overlapping by two pixels); for a bounded number of tile rows at a
//! time:
//! 1. each tile's input is transformed (`V = Bᵀ d B`), as one matrix `[tiles][IC]` per position of the
//!    transformed tile (36 or 16);
//! 2. one product per position, `M[pos] = V[pos] · U[pos]`, by the weights transformed at plan time
//!    (`U = G g Gᵀ`, packed as the GEMM kernel's panels);
//! 3. each tile's outputs are transformed back (`Y = Aᵀ m A`) into the NHWC output, and the epilogue runs over
//!    the tile row's output rows while they are in cache.
//!
//! F(4x4, 3x3) serves the layers with enough tiles; F(2x2, 3x3), whose transformed weights are 1.8x the
//! direct ones rather than 4x, those with too few 4x4 tiles to pay for reading 4x the weights (a 7x7 output
//! at batch 1). Accuracy: the coefficients of F(4x4, 3x3) (up to 8 and 1/24) cost a few bits: on ResNet-like
//! layers the error is a few 1e-6 of the largest output where the direct sum's is a few 1e-7, well inside
//! the 1e-4 every kernel must meet (docs/cpu.md); those of F(2x2, 3x3) are 0, ±1 and ±1/2. What differs beyond
//! rounding: an infinite input can become NaN at the outputs of its tiles (the transforms subtract it from
//! itself), as in every Winograd engine; NaN stays NaN wherever a receptive field holds one.

use rayon::prelude::*;

use super::ConvKernel;
use crate::cpu::kernels::gemm::Panels;
use crate::cpu::kernels::simd::{mul_add, multiversion};
use crate::ops::Conv2d;
use crate::tensor::Shape;

/// Channels the transforms take at a time (one AVX-512 register, four SIMD128 ones).
const LANES: usize = 16;

/// Floats of transformed inputs and products held at a time (4 MiB), whatever the layer and batch.
const SCRATCH_FLOATS: usize = 1 << 20;

/// The transform: the side of its output tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Tile {
    /// F(2x2, 3x3).
    Two,
    /// F(4x4, 3x3).
    Four,
}

impl Tile {
    /// The transform for `conv` producing `output`, if any serves it: ungrouped, 3x3, stride 1, undilated,
    /// at least 16 channels in and out, and enough tiles. Each product reads its weights once for all the
    /// tiles, and F(4x4, 3x3)'s are 4x the direct convolution's, so with fewer than 8 of its tiles (a 7x7
    /// output at batch 1 has four) reading them costs more than the multiplies saved (measured 1.35-1.51 ms
    /// against 1.27 on ResNet-18's last stage; with 8, at batch 2, it was 1.6x faster); F(2x2, 3x3), with
    /// 1.8x the weights, takes those from 16 of its tiles (docs/cpu.md).
    pub(super) fn of(conv: &Conv2d, output: Shape) -> Option<Tile> {
        let shape = conv.groups == 1
            && conv.kernel == [3, 3]
            && conv.stride == [1, 1]
            && conv.dilation == [1, 1]
            && conv.in_channels >= 16
            && conv.out_channels >= 16;
        let tiles =
            |tile: Tile| output.n * output.h.div_ceil(tile.out()) * output.w.div_ceil(tile.out());
        if !shape {
            None
        } else if tiles(Tile::Four) >= 8 {
            Some(Tile::Four)
        } else if tiles(Tile::Two) >= 16 {
            Some(Tile::Two)
        } else {
            None
        }
    }

    /// Output pixels a tile has in each direction.
    const fn out(self) -> usize {
        match self {
            Tile::Two => 2,
            Tile::Four => 4,
        }
    }

    /// Input pixels a tile reads in each direction.
    const fn input(self) -> usize {
        self.out() + 2
    }

    /// Positions of a transformed tile, and so products per tile row.
    pub(super) const fn positions(self) -> usize {
        self.input() * self.input()
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Tile::Two => "cpu conv 3x3 (winograd f(2x2,3x3) + prepacked gemm)",
            Tile::Four => "cpu conv 3x3 (winograd f(4x4,3x3) + prepacked gemm)",
        }
    }

    /// `G`, which transforms a 3-tap filter into the tile's `input()` positions.
    fn g(self) -> &'static [[f64; 3]] {
        match self {
            Tile::Two => &[
                [1.0, 0.0, 0.0],
                [0.5, 0.5, 0.5],
                [0.5, -0.5, 0.5],
                [0.0, 0.0, 1.0],
            ],
            Tile::Four => &[
                [1.0 / 4.0, 0.0, 0.0],
                [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
                [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
                [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
                [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
                [0.0, 0.0, 1.0],
            ],
        }
    }
}

/// `weight` (`[OC][IC][3][3]`) transformed (`U = G g Gᵀ`, in f64 and rounded once) and packed as one set of
/// panels of `[IC][OC]` per position, on the current pool's threads.
pub(super) fn pack(tile: Tile, conv: &Conv2d, weight: &[f32]) -> Box<[Panels]> {
    let (g, n) = (tile.g(), tile.input());
    let (ic, oc) = (conv.in_channels, conv.out_channels);
    let mut transformed = vec![0.0f32; tile.positions() * ic * oc];
    // One task per row of the transformed tile: its positions are one contiguous run.
    transformed
        .par_chunks_mut(n * ic * oc)
        .enumerate()
        .for_each(|(r, positions)| {
            // Output channels innermost, so that each position's writes run along a row of its matrix.
            for i in 0..ic {
                for o in 0..oc {
                    let w = &weight[(o * ic + i) * 9..][..9];
                    // Row r of G w.
                    let gw: [f64; 3] = std::array::from_fn(|c| {
                        (0..3).map(|k| g[r][k] * f64::from(w[k * 3 + c])).sum()
                    });
                    for (c, g) in g.iter().enumerate() {
                        let u: f64 = (0..3).map(|k| gw[k] * g[k]).sum();
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

/// Tile rows one round takes: as many as fit `budget` floats, at least one.
fn tile_rows_per_round(tile: Tile, kernel: &ConvKernel, budget: usize) -> usize {
    let y = kernel.output;
    let tile_row = tile.positions() * y.w.div_ceil(tile.out()) * (kernel.conv.in_channels + y.c);
    let tile_rows = y.n * y.h.div_ceil(tile.out());
    (budget / tile_row.max(1)).clamp(1, tile_rows.max(1))
}

/// Floats of scratch one run needs: rounds of as many tile rows as [`SCRATCH_FLOATS`] holds.
pub(super) fn scratch_floats(tile: Tile, kernel: &ConvKernel) -> usize {
    let y = kernel.output;
    let tiles = tile_rows_per_round(tile, kernel, SCRATCH_FLOATS) * y.w.div_ceil(tile.out());
    tile.positions() * tiles * (kernel.conv.in_channels + y.c)
}

/// `output = epilogue(conv(input))` for a layer that [`Tile::of`] gives `tile`, with `panels` from [`pack`],
/// in rounds of as many tile rows as `scratch` holds (at least one).
pub(super) fn run(
    tile: Tile,
    kernel: &ConvKernel,
    panels: &[Panels],
    input: &[f32],
    residual: Option<&[f32]>,
    output: &mut [f32],
    scratch: &mut [f32],
) {
    let (y, ic, oc) = (kernel.output, kernel.conv.in_channels, kernel.output.c);
    let (out, positions) = (tile.out(), tile.positions());
    let tiles_x = y.w.div_ceil(out);
    let tiles_y = y.h.div_ceil(out);
    let tile_rows = y.n * tiles_y;
    let per_round = tile_rows_per_round(tile, kernel, scratch.len());
    let mut output = output;
    let mut first_row = 0;
    for first in (0..tile_rows).step_by(per_round) {
        let rows = per_round.min(tile_rows - first);
        let tiles = rows * tiles_x;
        let (v, rest) = scratch.split_at_mut(positions * tiles * ic);
        let m = &mut rest[..positions * tiles * oc];

        // Each tile row's runs of transformed inputs, one per position.
        let mut parts: Vec<Vec<&mut [f32]>> =
            (0..rows).map(|_| Vec::with_capacity(positions)).collect();
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
                transform_input(tile, kernel, input, first + r, &mut parts);
            });

        // The products side by side: one fork and join per round rather than one per product.
        panels
            .par_iter()
            .zip(v.par_chunks_exact(tiles * ic))
            .zip(m.par_chunks_exact_mut(tiles * oc))
            .for_each(|((panel, v), m)| panel.multiply(v, m));

        // Each tile row's output rows (a tile's height, or fewer at the bottom of an image).
        let mut outs = Vec::with_capacity(rows);
        let mut rest = std::mem::take(&mut output);
        let mut row = first_row;
        for tile_row in first..first + rows {
            let height = (y.h - tile_row % tiles_y * out).min(out);
            let (rows_out, tail) = rest.split_at_mut(height * y.w * oc);
            outs.push((tile_row - first, row, rows_out));
            rest = tail;
            row += height;
        }
        output = rest;
        first_row = row;
        let m = &*m;
        outs.into_par_iter().for_each(|(r, row, rows_out)| {
            transform_output(tile, kernel, m, tiles, r, rows_out);
            let res = residual.map(|res| &res[row * y.w * oc..][..rows_out.len()]);
            kernel
                .activation
                .finish_rows(rows_out, kernel.bias.as_deref(), res, kernel.residual);
        });
    }
}

multiversion! {
    /// Tile row `tile_row` (counted over the batch) of the input transformed into `parts`, one run of
    /// `[tiles_x][IC]` per position.
    fn transform_input(
        tile: Tile,
        kernel: &ConvKernel,
        input: &[f32],
        tile_row: usize,
        parts: &mut [&mut [f32]],
    ) => transform_input_body
}

#[inline(always)]
fn transform_input_body<const FMA: bool>(
    tile: Tile,
    kernel: &ConvKernel,
    input: &[f32],
    tile_row: usize,
    parts: &mut [&mut [f32]],
) {
    match tile {
        Tile::Two => input_tiles::<4, 2>(kernel, input, tile_row, parts, input_1d_two),
        Tile::Four => input_tiles::<6, 4>(kernel, input, tile_row, parts, input_1d_four::<FMA>),
    }
}

/// [`transform_input`] for tiles of `N x N` inputs and `R x R` outputs, by the 1-D transform `b`.
#[inline(always)]
fn input_tiles<const N: usize, const R: usize>(
    kernel: &ConvKernel,
    input: &[f32],
    tile_row: usize,
    parts: &mut [&mut [f32]],
    b: impl Fn([f32; N]) -> [f32; N] + Copy,
) {
    let (x, y, conv) = (kernel.input, kernel.output, &kernel.conv);
    let ic = x.c;
    let tiles_y = y.h.div_ceil(R);
    let (n, ty) = (tile_row / tiles_y, tile_row % tiles_y);
    let top = (R * ty) as isize - conv.padding.top as isize;
    for tx in 0..y.w.div_ceil(R) {
        let left = (R * tx) as isize - conv.padding.left as isize;
        // The input's pixel offset at (top + i, left + j), or None on padding.
        let offsets: [[Option<usize>; N]; N] = std::array::from_fn(|i| {
            std::array::from_fn(|j| {
                let (iy, ix) = (top + i as isize, left + j as isize);
                (iy >= 0 && iy < x.h as isize && ix >= 0 && ix < x.w as isize)
                    .then(|| ((n * x.h + iy as usize) * x.w + ix as usize) * ic)
            })
        });
        let mut c = 0;
        while c < ic {
            let lanes = LANES.min(ic - c);
            let mut d = [[[0.0f32; LANES]; N]; N];
            for (d, offsets) in d.iter_mut().zip(&offsets) {
                for (values, offset) in d.iter_mut().zip(offsets) {
                    if let Some(offset) = offset {
                        copy(values, &input[offset + c..], lanes);
                    }
                }
            }
            let v = separable(&d, b);
            for (part, values) in parts.iter_mut().zip(v.iter().flatten()) {
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

/// `T x Tᵀ` on an `N x N` tile, lane by lane, for a 1-D transform `T` of `N` values into `R`: down each
/// column, then along each of the `R` rows.
#[inline(always)]
fn separable<const N: usize, const R: usize>(
    x: &[[[f32; LANES]; N]; N],
    transform: impl Fn([f32; N]) -> [f32; R],
) -> [[[f32; LANES]; R]; R] {
    let mut columns = [[[0.0f32; LANES]; N]; R];
    for j in 0..N {
        for l in 0..LANES {
            let column = std::array::from_fn(|i| x[i][j][l]);
            for (i, value) in transform(column).into_iter().enumerate() {
                columns[i][j][l] = value;
            }
        }
    }
    let mut out = [[[0.0f32; LANES]; R]; R];
    for (out, columns) in out.iter_mut().zip(&columns) {
        for l in 0..LANES {
            let row = std::array::from_fn(|j| columns[j][l]);
            for (j, value) in transform(row).into_iter().enumerate() {
                out[j][l] = value;
            }
        }
    }
    out
}

/// `Bᵀ d` for one column of four: Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1].
#[inline(always)]
fn input_1d_two([d0, d1, d2, d3]: [f32; 4]) -> [f32; 4] {
    [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
}

/// `Bᵀ d` for one column of six: Bᵀ = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0;
/// 0 2 -1 -2 1 0; 0 4 0 -5 0 1], with its common terms shared.
#[inline(always)]
fn input_1d_four<const FMA: bool>([d0, d1, d2, d3, d4, d5]: [f32; 6]) -> [f32; 6] {
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
    /// The output rows of tile row `r` of this round (`out`, up to a tile's height of rows of `[OW][OC]`) from
    /// the products `m` (one run of `[tiles][OC]` per position).
    fn transform_output(tile: Tile, kernel: &ConvKernel, m: &[f32], tiles: usize, r: usize, out: &mut [f32])
        => transform_output_body
}

#[inline(always)]
fn transform_output_body<const FMA: bool>(
    tile: Tile,
    kernel: &ConvKernel,
    m: &[f32],
    tiles: usize,
    r: usize,
    out: &mut [f32],
) {
    match tile {
        Tile::Two => output_tiles::<4, 2>(kernel, m, tiles, r, out, output_1d_two),
        Tile::Four => output_tiles::<6, 4>(kernel, m, tiles, r, out, output_1d_four::<FMA>),
    }
}

/// [`transform_output`] for tiles of `N x N` products and `R x R` outputs, by the 1-D transform `a`.
#[inline(always)]
fn output_tiles<const N: usize, const R: usize>(
    kernel: &ConvKernel,
    m: &[f32],
    tiles: usize,
    r: usize,
    out: &mut [f32],
    a: impl Fn([f32; N]) -> [f32; R] + Copy,
) {
    let y = kernel.output;
    let oc = y.c;
    let tiles_x = y.w.div_ceil(R);
    let height = out.len() / (y.w * oc);
    for tx in 0..tiles_x {
        let width = (y.w - R * tx).min(R);
        let tile = r * tiles_x + tx;
        let mut c = 0;
        while c < oc {
            let lanes = LANES.min(oc - c);
            let mut products = [[[0.0f32; LANES]; N]; N];
            for (p, values) in products.iter_mut().flatten().enumerate() {
                copy(values, &m[(p * tiles + tile) * oc + c..], lanes);
            }
            let outputs = separable(&products, a);
            for (i, outputs) in outputs.iter().enumerate().take(height) {
                for (j, values) in outputs.iter().enumerate().take(width) {
                    let at = (i * y.w + R * tx + j) * oc + c;
                    copy(&mut out[at..], values, lanes);
                }
            }
            c += lanes;
        }
    }
}

/// `Aᵀ m` for one column of four: Aᵀ = [1 1 1 0; 0 1 -1 -1].
#[inline(always)]
fn output_1d_two([m0, m1, m2, m3]: [f32; 4]) -> [f32; 2] {
    [m0 + m1 + m2, m1 - m2 - m3]
}

/// `Aᵀ m` for one column of six: Aᵀ = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1], with its
/// common terms shared.
#[inline(always)]
fn output_1d_four<const FMA: bool>([m0, m1, m2, m3, m4, m5]: [f32; 6]) -> [f32; 4] {
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

    /// Runs `conv` on an `x`-shaped input in rounds of one tile row, which start and end inside images and
    /// across them, with `tile`, and checks it against the reference.
    fn check_rounds(conv: Conv2d, x: Shape, tile: Tile) {
        // Cannot fail: the tests' fixed shapes fit their filters, and the tensors below are built from those
        // shapes.
        let [oh, ow] = conv.output_size([x.h, x.w]).expect("fits");
        let y = Shape::new(x.n, conv.out_channels, oh, ow);
        assert_eq!(Tile::of(&conv, y), Some(tile));
        let layer = Conv2dLayer::new(
            conv,
            values(conv.weight_len(), 1),
            Some(values(conv.out_channels, 2).into()),
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
        assert_eq!(choice.method, ConvMethod::Winograd(tile));
        let weights = Arc::new(ConvWeights::pack(&conv, &layer.weight, choice));
        let kernel = ConvKernel::new(&layer, choice, Arc::clone(&weights), x, y);
        let ConvWeights::Winograd(panels) = &*weights else {
            panic!("Winograd's weights");
        };
        let tile_row = tile.positions() * ow.div_ceil(tile.out()) * (x.c + y.c);
        let mut scratch = vec![0.0; tile_row];
        let mut output = vec![f32::NAN; y.len()];
        let (input, residual) = (nchw_to_nhwc(&input), nchw_to_nhwc(&residual));
        let residual = Some(&residual[..]);
        run(
            tile,
            &kernel,
            panels,
            &input,
            residual,
            &mut output,
            &mut scratch,
        );
        let expected = nchw_to_nhwc(&expected);
        for (i, (&got, &want)) in output.iter().zip(&expected).enumerate() {
            let tolerance = crate::conformance::TOLERANCE * want.abs().max(1.0);
            assert!(
                (got - want).abs() <= tolerance,
                "{tile:?} {i}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn rounds_of_one_tile_row_agree_with_the_reference() {
        let padding = Padding {
            top: 0,
            left: 2,
            bottom: 1,
            right: 0,
        };
        let conv = Conv2d {
            padding,
            ..Conv2d::new(17, 21, [3, 3])
        };
        check_rounds(conv, Shape::new(3, 17, 10, 9), Tile::Four);
        // A 7x7 output at batch 1: four 4x4 tiles, too few; sixteen 2x2 ones.
        let conv = Conv2d {
            padding: Padding {
                bottom: 2,
                ..padding
            },
            ..Conv2d::new(33, 18, [3, 3])
        };
        check_rounds(conv, Shape::new(1, 33, 7, 7), Tile::Two);
    }
}
