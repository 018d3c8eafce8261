//! The direct kernel's sums on AVX-512: `P` output pixels by up to 64 output channels in registers (at most
//! 4 x 4 of the 32, with four of weights), each weight vector loaded serving the `P` pixels, each input value
//! broadcast from memory.

use std::arch::x86_64::*;

/// The sums over `taps` of output pixels `0..P` (pixel `p` reads `input` at `p * step` plus a tap's offset)
/// for all `oc` channels of each, into `out` (whole pixels of `oc` values): 64 channels at a time, then 32,
/// then 16, the last block masked.
///
/// # Safety
/// The CPU has AVX-512F; for every tap `(at, row)`, `input[at + p * step]` exists for `p < P` and
/// `weights[row * oc..(row + 1) * oc]` does; `out` holds `P * oc` values.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn pixel_sums<const P: usize>(
    input: &[f32],
    step: usize,
    taps: &[(usize, usize)],
    weights: &[f32],
    oc: usize,
    out: &mut [f32],
) {
    debug_assert!(out.len() >= P * oc);
    debug_assert!(taps
        .iter()
        .all(|&(at, row)| at + (P - 1) * step < input.len() && (row + 1) * oc <= weights.len()));
    let mut ch = 0;
    while ch + 64 <= oc {
        block::<P, 4>(input, step, taps, weights, oc, ch, 0xFFFF, out);
        ch += 64;
    }
    if ch + 32 <= oc {
        block::<P, 2>(input, step, taps, weights, oc, ch, 0xFFFF, out);
        ch += 32;
    }
    while ch < oc {
        let lanes = ((1u32 << (oc - ch).min(16)) - 1) as __mmask16;
        block::<P, 1>(input, step, taps, weights, oc, ch, lanes, out);
        ch += 16;
    }
}

/// Channels `ch..ch + 16 * B` of `P` pixels, the lanes of `lanes` in the last vector.
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn block<const P: usize, const B: usize>(
    input: &[f32],
    step: usize,
    taps: &[(usize, usize)],
    weights: &[f32],
    oc: usize,
    ch: usize,
    lanes: __mmask16,
    out: &mut [f32],
) {
    let mask = |b: usize| if b + 1 == B { lanes } else { 0xFFFF };
    let (input, weights) = (input.as_ptr(), weights.as_ptr());
    let mut sums = [[_mm512_setzero_ps(); B]; P];
    for &(at, row) in taps {
        let row = weights.add(row * oc + ch);
        let w: [__m512; B] =
            std::array::from_fn(|b| _mm512_maskz_loadu_ps(mask(b), row.add(16 * b)));
        for (p, sums) in sums.iter_mut().enumerate() {
            let x = _mm512_set1_ps(*input.add(at + p * step));
            for (sum, w) in sums.iter_mut().zip(&w) {
                *sum = _mm512_fmadd_ps(x, *w, *sum);
            }
        }
    }
    for (p, sums) in sums.iter().enumerate() {
        for (b, sum) in sums.iter().enumerate() {
            _mm512_mask_storeu_ps(out.as_mut_ptr().add(p * oc + ch + 16 * b), mask(b), *sum);
        }
    }
}
