//! The depthwise kernel's sliding window on AVX-512, for undilated 3x3 and 5x5 filters of stride 1 or 2.
//!
//! Up to eight neighbouring output pixels of a 16-channel block at once: their sums, a filter row's weights
//! and one input vector all in registers (at most 8 + 5 + 1 of the 32), so that each input vector loaded
//! serves every pixel whose window covers it, `(P - 1) * S + K` loads per filter row where one pixel at a
//! time takes `P * K`. Columns outside the image are skipped, not read: border pixels take the same path,
//! with no copy of the input between zeros.

use std::arch::x86_64::*;
use std::ops::Range;

/// One output row of a depthwise convolution without its epilogue: `out` is the row (`y_w * c` values),
/// `rows` each in-image filter row's input row (`x_w * c` values) and weights (`K * c` values, `[kx][c]`).
///
/// # Safety
/// The CPU has AVX-512F; `S` is the layer's horizontal stride; each of `rows` holds whole rows as above;
/// `out.len()` is a multiple of `c`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn output_row<const K: usize, const S: usize>(
    rows: &[Option<(&[f32], &[f32])>; K],
    x_w: usize,
    pad_left: usize,
    c: usize,
    out: &mut [f32],
) {
    let y_w = out.len() / c;
    let mut ox = 0;
    while ox < y_w {
        let pixels = (y_w - ox).min(8);
        // The window's first column (left of the image for the first pixels), and its columns inside the image.
        let start = (ox * S) as isize - pad_left as isize;
        let inside = (-start).max(0) as usize..(x_w as isize - start).max(0) as usize;
        let out = &mut out[ox * c..];
        macro_rules! pixels {
            ($($p:literal)*) => {
                match pixels {
                    $( $p => window::<$p, K, S>(rows, start, inside, c, out), )*
                    _ => window::<8, K, S>(rows, start, inside, c, out),
                }
            };
        }
        pixels!(1 2 3 4 5 6 7);
        ox += pixels;
    }
}

/// `P` output pixels over all channels, 16 at a time (the last block masked).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn window<const P: usize, const K: usize, const S: usize>(
    rows: &[Option<(&[f32], &[f32])>; K],
    start: isize,
    inside: Range<usize>,
    c: usize,
    out: &mut [f32],
) {
    debug_assert!(out.len() >= P * c);
    for ch in (0..c).step_by(16) {
        let lanes = ((1u32 << (c - ch).min(16)) - 1) as __mmask16;
        let mut sums = [_mm512_setzero_ps(); P];
        for (input, weights) in rows.iter().flatten() {
            let mut w = [_mm512_setzero_ps(); K];
            for (kx, w) in w.iter_mut().enumerate() {
                *w = _mm512_maskz_loadu_ps(lanes, weights.as_ptr().add(kx * c + ch));
            }
            for j in 0..(P - 1) * S + K {
                if !inside.contains(&j) {
                    continue;
                }
                // Column start + j is inside the image (`inside`).
                let column = (start + j as isize) as usize;
                let x = _mm512_maskz_loadu_ps(lanes, input.as_ptr().add(column * c + ch));
                for (p, sum) in sums.iter_mut().enumerate() {
                    // Pixel p's tap kx reads column p * S + kx of the window: the one-pixel path's order of
                    // additions (filter rows, then kx), so its bits.
                    if j >= p * S && j - p * S < K {
                        *sum = _mm512_fmadd_ps(x, w[j - p * S], *sum);
                    }
                }
            }
        }
        for (p, sum) in sums.iter().enumerate() {
            _mm512_mask_storeu_ps(out.as_mut_ptr().add(p * c + ch), lanes, *sum);
        }
    }
}
