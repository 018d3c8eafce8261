//! The direct kernel: ungrouped convolutions over few input channels (an RGB stem), summed in registers.
//!
//! With three input channels an im2col row is short (27 floats for a 3x3 filter) and a GEMM spends more on
//! packing its operands than on multiplying them. Here each output pixel's sums stay in registers while
//! every (filter tap, input channel) pair adds one input value, broadcast, times a row of weights: on
//! AVX-512 four pixels and up to 64 output channels at a time, so that each weight vector loaded serves four
//! pixels. The pixels whose receptive field lies inside the image (all but a border a few pixels wide) read
//! the taps at fixed offsets; the border pixels list their in-image taps first.

#[cfg(target_arch = "x86_64")]
mod avx512;

use super::ConvKernel;
use crate::cpu::kernels::activation::finish_rows_body;
#[cfg(target_arch = "x86_64")]
use crate::cpu::kernels::simd::{isa, Isa};
use crate::cpu::kernels::simd::{mul_add, multiversion};
use crate::ops::Conv2d;

/// The most input channels the direct kernel takes: beyond, im2col rows are long enough for a GEMM to pay.
pub(super) const MAX_IN_CHANNELS: usize = 4;

/// Whether `conv` runs on the direct kernel: where the CPU has AVX-512, whose kernel (`avx512.rs`) keeps four
/// pixels' sums in registers. The portable sums, which LLVM leaves in memory, measured slower than im2col;
/// they serve a run limited to fewer instructions (`--simd`).
pub(super) fn serves(conv: &Conv2d) -> bool {
    #[cfg(target_arch = "x86_64")]
    let avx512 = crate::cpu::kernels::simd::detected() == Isa::Avx512;
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    avx512 && conv.groups == 1 && conv.in_channels <= MAX_IN_CHANNELS && !conv.is_depthwise()
}

multiversion! {
    /// Output rows `first..` of a direct convolution (whole rows of `W * OC` values in `out`), with the
    /// epilogue.
    pub(super) fn direct_rows(
        kernel: &ConvKernel,
        input: &[f32],
        first: usize,
        out: &mut [f32],
        residual: Option<&[f32]>,
    ) => direct_rows_body
}

#[inline(always)]
fn direct_rows_body<const FMA: bool>(
    kernel: &ConvKernel,
    input: &[f32],
    first: usize,
    out: &mut [f32],
    residual: Option<&[f32]>,
) {
    let conv = &kernel.conv;
    let (x, y) = (kernel.input, kernel.output);
    let (ic, oc) = (x.c, y.c);
    let [kh, kw] = conv.kernel;
    let [dy, dx] = conv.dilation;
    let [sy, sx] = conv.stride;
    let row_len = y.w * oc;
    let weights = kernel.rows();
    let interior = kernel.interior_columns();
    // (input offset, weight row) of every tap and input channel, for a pixel whose field is inside the image:
    // offsets from its field's first value.
    let mut taps: Vec<(usize, usize)> = Vec::with_capacity(kh * kw * ic);
    let mut border: Vec<(usize, usize)> = Vec::with_capacity(kh * kw * ic);
    let mut rows: Vec<usize> = Vec::with_capacity(kh);
    for (r, out_row) in out.chunks_exact_mut(row_len).enumerate() {
        let m = first + r;
        let (oy, n) = (m % y.h, m / y.h);
        let top = (oy * sy) as isize - conv.padding.top as isize;
        // The filter rows inside the image.
        rows.clear();
        rows.extend((0..kh).filter(|&ky| (0..x.h as isize).contains(&(top + (ky * dy) as isize))));
        taps.clear();
        for &ky in &rows {
            let iy = (top + (ky * dy) as isize) as usize;
            for kx in 0..kw {
                for c in 0..ic {
                    taps.push((((iy * x.w) + kx * dx) * ic + c, (ky * kw + kx) * ic + c));
                }
            }
        }
        let image = n * x.h * x.w * ic;
        if interior.1 > interior.0 {
            let ix = interior.0 * sx - conv.padding.left;
            let run = &mut out_row[interior.0 * oc..interior.1 * oc];
            let input = &input[image + ix * ic..];
            pixel_run::<FMA>(input, sx * ic, &taps, weights, oc, run);
        }
        for ox in (0..interior.0).chain(interior.1..y.w) {
            let left = (ox * sx) as isize - conv.padding.left as isize;
            border.clear();
            for &ky in &rows {
                let iy = (top + (ky * dy) as isize) as usize;
                for kx in 0..kw {
                    let column = left + (kx * dx) as isize;
                    if (0..x.w as isize).contains(&column) {
                        for c in 0..ic {
                            let at = (iy * x.w + column as usize) * ic + c;
                            border.push((at, (ky * kw + kx) * ic + c));
                        }
                    }
                }
            }
            let pixel = &mut out_row[ox * oc..(ox + 1) * oc];
            pixel_run::<FMA>(&input[image..], 0, &border, weights, oc, pixel);
        }
        let res = residual.map(|res| &res[r * row_len..][..row_len]);
        finish_rows_body::<FMA>(
            &kernel.activation,
            out_row,
            kernel.bias.as_deref(),
            res,
            kernel.residual,
        );
    }
}

/// The sums of the output pixels of `out` (whole pixels of `oc` values), pixel `p` reading `input` at
/// `p * step` plus each tap's offset: on AVX-512 four pixels at a time, then one.
#[inline(always)]
fn pixel_run<const FMA: bool>(
    input: &[f32],
    step: usize,
    taps: &[(usize, usize)],
    weights: &[f32],
    oc: usize,
    out: &mut [f32],
) {
    let pixels = out.len() / oc;
    #[cfg(target_arch = "x86_64")]
    let avx512 = isa() == Isa::Avx512;
    let mut p = 0;
    while p < pixels {
        let (input, out) = (&input[p * step..], &mut out[p * oc..]);
        #[cfg(target_arch = "x86_64")]
        if avx512 {
            // Safety: AVX-512 was detected; the taps' offsets were made for these pixels, their weight rows
            // are the filter's, and `out` holds the pixels.
            unsafe {
                if p + 4 <= pixels {
                    avx512::pixel_sums::<4>(input, step, taps, weights, oc, out);
                    p += 4;
                } else {
                    avx512::pixel_sums::<1>(input, step, taps, weights, oc, out);
                    p += 1;
                }
            }
            continue;
        }
        let mut ch = 0;
        while ch + 16 <= oc {
            pixel_sums::<16, FMA>(input, taps, weights, oc, ch, out);
            ch += 16;
        }
        while ch < oc {
            pixel_sums::<1, FMA>(input, taps, weights, oc, ch, out);
            ch += 1;
        }
        p += 1;
    }
}

/// Channels `ch..ch + L` of one output pixel: over the taps, input value times weight row.
#[inline(always)]
fn pixel_sums<const L: usize, const FMA: bool>(
    input: &[f32],
    taps: &[(usize, usize)],
    weights: &[f32],
    oc: usize,
    ch: usize,
    out: &mut [f32],
) {
    let mut acc = [0.0f32; L];
    for &(at, row) in taps {
        let (x, w) = (input[at], &weights[row * oc + ch..][..L]);
        for l in 0..L {
            acc[l] = mul_add::<FMA>(x, w[l], acc[l]);
        }
    }
    out[ch..ch + L].copy_from_slice(&acc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_ungrouped_layers_of_few_input_channels_where_its_kernel_runs() {
        #[cfg(target_arch = "x86_64")]
        let avx512 = crate::cpu::kernels::simd::detected() == Isa::Avx512;
        #[cfg(not(target_arch = "x86_64"))]
        let avx512 = false;
        assert_eq!(serves(&Conv2d::new(3, 32, [3, 3])), avx512);
        assert_eq!(serves(&Conv2d::new(4, 64, [7, 7])), avx512);
        assert!(!serves(&Conv2d::new(5, 32, [3, 3])));
        let grouped = Conv2d {
            groups: 2,
            ..Conv2d::new(4, 8, [3, 3])
        };
        assert!(!serves(&grouped));
        let depthwise = Conv2d {
            groups: 3,
            ..Conv2d::new(3, 3, [3, 3])
        };
        assert!(!serves(&depthwise));
    }
}
