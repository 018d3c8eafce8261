//! The depthwise kernel: one filter per channel, summed in registers across the taps, then the epilogue over
//! each finished output row.
//!
//! Output pixels whose whole receptive field lies inside the image (all but a border one or two pixels wide)
//! take the fast path: for undilated 3x3 and 5x5 filters the taps are fixed offsets from the pixel's corner,
//! unrolled at compile time, so that a block of channels is a handful of vector loads and fused multiply-adds
//! per tap with no bounds test. The border pixels and every other filter shape gather their in-image taps
//! first.

#[cfg(target_arch = "x86_64")]
mod avx512;

use super::ConvKernel;
use crate::cpu::kernels::activation::finish_rows_body;
#[cfg(target_arch = "x86_64")]
use crate::cpu::kernels::simd::{isa, Isa};
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
    let (stride_x, pad_left) = (conv.stride[1], conv.padding.left);
    let interior = kernel.interior_columns();
    let fast = conv.dilation[1] == 1 && matches!(kw, 3 | 5) && kw == kh;
    // With AVX-512, whole rows (borders too) by sliding windows (`avx512.rs`).
    #[cfg(target_arch = "x86_64")]
    let windows =
        fast && conv.dilation[0] == 1 && matches!(stride_x, 1 | 2) && isa() == Isa::Avx512;
    // (input offset, weight offset) of the taps that fall inside the image, for one output pixel.
    let mut taps: Vec<(usize, usize)> = Vec::with_capacity(kh * kw);
    // (input row, filter row) of the filter rows that fall inside the image, for one output row.
    let mut rows: Vec<(usize, usize)> = Vec::with_capacity(kh);
    let rows_here = out.len() / row_len.max(1);
    // The first row whose epilogue is still to run: it runs over whole tiles of 16 pixels where it can (a
    // PWLU's lookup takes 16 pixels at once, and a partial tile costs about as much as a whole one), but
    // over at most 128 KiB, which stay in cache.
    let mut unfinished = 0;
    for r in 0..rows_here {
        let pending = r - unfinished;
        if pending > 0 && (pending * y.w % 16 == 0 || (pending + 1) * row_len > 1 << 15) {
            let res = residual.map(|res| &res[unfinished * row_len..r * row_len]);
            let rows = &mut out[unfinished * row_len..r * row_len];
            finish_rows_body::<FMA>(
                &kernel.activation,
                rows,
                kernel.bias.as_deref(),
                res,
                kernel.residual,
            );
            unfinished = r;
        }
        let out_row = &mut out[r * row_len..][..row_len];
        let row = first + r;
        let (n, oy) = (row / y.h, row % y.h);
        let top = (oy * conv.stride[0]) as isize - conv.padding.top as isize;
        rows.clear();
        rows.extend((0..kh).filter_map(|ky| {
            let iy = top + (ky * conv.dilation[0]) as isize;
            (iy >= 0 && iy < x.h as isize).then(|| (n * x.h + iy as usize, ky))
        }));
        #[cfg(target_arch = "x86_64")]
        if windows {
            let weights = kernel.rows();
            let row_input = |i: usize| {
                rows.get(i).map(|&(input_row, ky)| {
                    (
                        &input[input_row * x.w * c..][..x.w * c],
                        &weights[ky * kw * c..][..kw * c],
                    )
                })
            };
            // Safety: AVX-512 was detected (`windows`), the stride is S, and each row holds its whole input row
            // and filter row.
            unsafe {
                match (kw, stride_x) {
                    (3, 1) => avx512::output_row::<3, 1>(
                        &std::array::from_fn(row_input),
                        x.w,
                        pad_left,
                        c,
                        out_row,
                    ),
                    (3, _) => avx512::output_row::<3, 2>(
                        &std::array::from_fn(row_input),
                        x.w,
                        pad_left,
                        c,
                        out_row,
                    ),
                    (_, 1) => avx512::output_row::<5, 1>(
                        &std::array::from_fn(row_input),
                        x.w,
                        pad_left,
                        c,
                        out_row,
                    ),
                    _ => avx512::output_row::<5, 2>(
                        &std::array::from_fn(row_input),
                        x.w,
                        pad_left,
                        c,
                        out_row,
                    ),
                }
            }
            continue;
        }
        let mut ox = 0;
        while ox < y.w {
            if fast && ox == interior.0 && interior.1 > interior.0 {
                let ix = interior.0 * stride_x - pad_left;
                let pixels = interior.1 - interior.0;
                let out_run = &mut out_row[interior.0 * c..interior.1 * c];
                match kw {
                    3 => interior_run::<3, FMA>(kernel, input, &rows, ix, pixels, out_run),
                    _ => interior_run::<5, FMA>(kernel, input, &rows, ix, pixels, out_run),
                }
                ox = interior.1;
                continue;
            }
            taps.clear();
            for &(input_row, ky) in &rows {
                for kx in 0..kw {
                    let ix = (ox * stride_x + kx * conv.dilation[1]) as isize - pad_left as isize;
                    if ix >= 0 && ix < x.w as isize {
                        taps.push(((input_row * x.w + ix as usize) * c, (ky * kw + kx) * c));
                    }
                }
            }
            let acc = &mut out_row[ox * c..][..c];
            // Channels in register-sized blocks: each block's sums stay in registers across the taps.
            let mut ch = 0;
            while ch + 64 <= c {
                gathered_block::<64, FMA>(acc, ch, &taps, input, kernel.rows());
                ch += 64;
            }
            while ch + 16 <= c {
                gathered_block::<16, FMA>(acc, ch, &taps, input, kernel.rows());
                ch += 16;
            }
            while ch < c {
                gathered_block::<1, FMA>(acc, ch, &taps, input, kernel.rows());
                ch += 1;
            }
            ox += 1;
        }
    }
    let res = residual.map(|res| &res[unfinished * row_len..]);
    finish_rows_body::<FMA>(
        &kernel.activation,
        &mut out[unfinished * row_len..],
        kernel.bias.as_deref(),
        res,
        kernel.residual,
    );
}

/// Channels `ch..ch + L` of one output pixel: the sum over `taps` of input times weight.
#[inline(always)]
fn gathered_block<const L: usize, const FMA: bool>(
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

/// `pixels` neighbouring output pixels of one row whose undilated `K x K` receptive fields lie inside the
/// image, the first one's starting at input column `ix`; `rows` are the (input row, filter row) pairs inside
/// the image. Four pixels at a time, each block of channels across them: four independent chains of
/// multiply-adds hide their latency, and each weight vector loaded serves four of them.
#[inline(always)]
fn interior_run<const K: usize, const FMA: bool>(
    kernel: &ConvKernel,
    input: &[f32],
    rows: &[(usize, usize)],
    ix: usize,
    pixels: usize,
    out: &mut [f32],
) {
    let (x, c) = (kernel.input, kernel.output.c);
    let step = kernel.conv.stride[1] * c;
    // The run's input, per filter row: K * C floats for the first pixel, then `step` more for each next one;
    // and the filter row's K * C weights.
    let span = (pixels - 1) * step + K * c;
    let taps: [Option<(&[f32], &[f32])>; K] = std::array::from_fn(|i| {
        rows.get(i).map(|&(row, ky)| {
            let start = (row * x.w + ix) * c;
            (
                &input[start..start + span],
                &kernel.rows()[ky * K * c..(ky + 1) * K * c],
            )
        })
    });
    let mut p = 0;
    while p < pixels {
        let out = &mut out[p * c..];
        let at = p * step;
        if p + 4 <= pixels {
            channel_blocks::<4, K, FMA>(&taps, at, step, c, out);
            p += 4;
        } else {
            channel_blocks::<1, K, FMA>(&taps, at, step, c, out);
            p += 1;
        }
    }
}

/// [`pixel_sums`] of `P` pixels over all `c` channels, in blocks of 16, 4 and 1.
#[inline(always)]
fn channel_blocks<const P: usize, const K: usize, const FMA: bool>(
    taps: &[Option<(&[f32], &[f32])>; K],
    at: usize,
    step: usize,
    c: usize,
    out: &mut [f32],
) {
    let mut ch = 0;
    while ch + 16 <= c {
        pixel_sums::<P, 16, K, FMA>(taps, at + ch, step, ch, c, out);
        ch += 16;
    }
    while ch + 4 <= c {
        pixel_sums::<P, 4, K, FMA>(taps, at + ch, step, ch, c, out);
        ch += 4;
    }
    while ch < c {
        pixel_sums::<P, 1, K, FMA>(taps, at + ch, step, ch, c, out);
        ch += 1;
    }
}

/// The sums of `P` (1 or 4) neighbouring pixels over channels `ch..ch + L`, the first pixel's taps starting
/// at `at` in each filter row's input, the next ones `step` further each, into `out`'s first `P` pixels.
#[inline(always)]
fn pixel_sums<const P: usize, const L: usize, const K: usize, const FMA: bool>(
    inputs: &[Option<(&[f32], &[f32])>; K],
    at: usize,
    step: usize,
    ch: usize,
    c: usize,
    out: &mut [f32],
) {
    // Four named accumulators rather than an array of them: LLVM keeps these in vector registers.
    let (mut acc0, mut acc1, mut acc2, mut acc3) =
        ([0.0f32; L], [0.0f32; L], [0.0f32; L], [0.0f32; L]);
    for (row_input, row_weights) in inputs.iter().flatten() {
        for kx in 0..K {
            // Safety: kx * C + ch + L <= K * C = row_weights.len() since ch + L <= C; and for each pixel i < P,
            // at + i * step + kx * C + L <= span = row_input.len() (the caller's run covers them).
            let ws = unsafe { row_weights.get_unchecked(kx * c + ch..kx * c + ch + L) };
            let x = |i: usize| unsafe {
                let from = at + i * step + kx * c;
                row_input.get_unchecked(from..from + L)
            };
            let x0 = x(0);
            for l in 0..L {
                acc0[l] = mul_add::<FMA>(x0[l], ws[l], acc0[l]);
            }
            if P == 4 {
                let (x1, x2, x3) = (x(1), x(2), x(3));
                for l in 0..L {
                    acc1[l] = mul_add::<FMA>(x1[l], ws[l], acc1[l]);
                    acc2[l] = mul_add::<FMA>(x2[l], ws[l], acc2[l]);
                    acc3[l] = mul_add::<FMA>(x3[l], ws[l], acc3[l]);
                }
            }
        }
    }
    out[ch..ch + L].copy_from_slice(&acc0);
    if P == 4 {
        out[c + ch..][..L].copy_from_slice(&acc1);
        out[2 * c + ch..][..L].copy_from_slice(&acc2);
        out[3 * c + ch..][..L].copy_from_slice(&acc3);
    }
}
