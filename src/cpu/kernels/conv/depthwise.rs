//! The depthwise kernel: one filter per channel, summed in registers across the taps, then the epilogue over
//! each finished output row.

use super::ConvKernel;
use crate::cpu::kernels::activation::finish_rows_body;
use crate::cpu::kernels::simd::{mul_add, multiversion};

multiversion! {
    /// Output rows `first..` of a depthwise convolution (whole rows of `W * C` values in `out`), with the
    /// epilogue.
    pub(super) fn depthwise_rows(
        kernel: &ConvKernel,
        input: &[f32],
        first: usize,
        out: &mut [f32],
        residual: Option<&[f32]>,
    ) => depthwise_rows_body
}

#[inline(always)]
fn depthwise_rows_body<const FMA: bool>(
    kernel: &ConvKernel,
    input: &[f32],
    first: usize,
    out: &mut [f32],
    residual: Option<&[f32]>,
) {
    let conv = &kernel.conv;
    let (x, y) = (kernel.input, kernel.output);
    let c = y.c;
    let [kh, kw] = conv.kernel;
    let row_len = y.w * c;
    // (input offset, weight offset) of the taps that fall inside the image, for one output pixel.
    let mut taps: Vec<(usize, usize)> = Vec::with_capacity(kh * kw);
    for (r, out_row) in out.chunks_exact_mut(row_len).enumerate() {
        let row = first + r;
        let (n, oy) = (row / y.h, row % y.h);
        for ox in 0..y.w {
            taps.clear();
            for ky in 0..kh {
                let iy = (oy * conv.stride[0] + ky * conv.dilation[0]) as isize
                    - conv.padding.top as isize;
                if iy < 0 || iy >= x.h as isize {
                    continue;
                }
                for kx in 0..kw {
                    let ix = (ox * conv.stride[1] + kx * conv.dilation[1]) as isize
                        - conv.padding.left as isize;
                    if ix >= 0 && ix < x.w as isize {
                        let at = ((n * x.h + iy as usize) * x.w + ix as usize) * c;
                        taps.push((at, (ky * kw + kx) * c));
                    }
                }
            }
            let acc = &mut out_row[ox * c..][..c];
            // Channels in register-sized blocks: each block's sums stay in registers across the taps.
            let mut ch = 0;
            while ch + 64 <= c {
                depthwise_block::<64, FMA>(acc, ch, &taps, input, &kernel.weights);
                ch += 64;
            }
            while ch + 16 <= c {
                depthwise_block::<16, FMA>(acc, ch, &taps, input, &kernel.weights);
                ch += 16;
            }
            while ch < c {
                depthwise_block::<1, FMA>(acc, ch, &taps, input, &kernel.weights);
                ch += 1;
            }
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

/// Channels `ch..ch + L` of one output pixel: the sum over `taps` of input times weight.
#[inline(always)]
fn depthwise_block<const L: usize, const FMA: bool>(
    out: &mut [f32],
    ch: usize,
    taps: &[(usize, usize)],
    input: &[f32],
    weights: &[f32],
) {
    let mut acc = [0.0f32; L];
    for &(at, w) in taps {
        let (x, w) = (&input[at + ch..][..L], &weights[w + ch..][..L]);
        for l in 0..L {
            acc[l] = mul_add::<FMA>(x[l], w[l], acc[l]);
        }
    }
    out[ch..ch + L].copy_from_slice(&acc);
}
