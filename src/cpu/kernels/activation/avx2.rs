//! The uniform PWLU without gathers, on AVX2: the AVX-512 path's method (`avx512.rs`) with 8-lane registers.
//!
//! A tile of 8 pixels by 8 channels is transposed in registers so that each register holds one channel's 8
//! pixels. `vpermps` picks from 8 entries, so a unit's segments (up to 32) are up to four registers of slopes
//! and four of intercepts: each is permuted by the segment index and bits 3 and 4 of the index choose among
//! them (`vblendvps` on the index shifted into the sign bit). Where no value of a group is infinite or NaN
//! (nearly always), only the interior segments are permuted and the tails are blended in. On the Intel Xeon
//! (Sapphire Rapids) with AVX-512 kept off, 0.65-0.66 ns per value against 1.11 for the gathers (`lookup_cost`
//! in `tests.rs`); the values are theirs bit for bit, but for the sign of a zero from a flat segment. Loads and stores are masked only
//! for a partial group of channels: AMD's masked stores are slow.

use std::arch::x86_64::*;
use std::ops::Range;

use super::UniformPwlu;

/// The PWLU on `channels` of the pixels of `tile` (at most 16 pixels of `stride` values each), 8 pixels by 8
/// channels at a time, the last channel group masked.
///
/// # Safety
/// The CPU has AVX2 and FMA; `planar` is `pwlu`'s `Segments::Planar` table (at most 32 segments a unit);
/// `tile` holds whole pixels; `channels` is a non-empty range inside `0..stride`; `bias`, added first, holds
/// `stride` values.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn apply_tile(
    pwlu: &UniformPwlu,
    planar: &[f32],
    tile: &mut [f32],
    stride: usize,
    channels: Range<usize>,
    bias: Option<&[f32]>,
) {
    let pixels = tile.len() / stride;
    debug_assert!(!channels.is_empty() && channels.end <= stride);
    let lookup = Lookup::new(pwlu, planar);
    if pwlu.shared {
        return shared(&lookup, tile, stride, channels, bias);
    }
    let last_channel = channels.end - 1;
    let base = tile.as_mut_ptr();
    for first_pixel in (0..pixels).step_by(8) {
        let rows_here = (pixels - first_pixel).min(8);
        for first_channel in channels.clone().step_by(8) {
            let width = (channels.end - first_channel).min(8);
            let lanes = lane_mask(width);
            let at = |p: usize| base.add((first_pixel + p) * stride + first_channel);
            let mut rows = [_mm256_setzero_ps(); 8];
            for (p, row) in rows.iter_mut().enumerate().take(rows_here) {
                *row = if width == 8 {
                    _mm256_loadu_ps(at(p))
                } else {
                    _mm256_maskload_ps(at(p), lanes)
                };
            }
            transpose(&mut rows);
            // The bias here, one per row, rather than in a pass of its own over the pixels.
            if let Some(bias) = bias {
                for (j, row) in rows.iter_mut().enumerate().take(width) {
                    *row =
                        _mm256_add_ps(*row, _mm256_set1_ps(*bias.get_unchecked(first_channel + j)));
                }
            }
            let input = rows;
            // Infinities and NaN are rare: the plain lookup goes first, and a NaN anywhere in its results
            // (which a sum carries) sends the group through the lookup that handles them. Rows past the last
            // channel hold zeros, looked up in the last channel's table and not stored.
            let mut sum = _mm256_setzero_ps();
            for (j, row) in rows.iter_mut().enumerate() {
                *row = lookup.finite((first_channel + j).min(last_channel), *row);
                sum = _mm256_add_ps(sum, *row);
            }
            if _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(sum, sum)) != 0 {
                for (j, (row, x)) in rows.iter_mut().zip(input).enumerate() {
                    *row = lookup.channel((first_channel + j).min(last_channel), x);
                }
            }
            transpose(&mut rows);
            for (p, row) in rows.iter().enumerate().take(rows_here) {
                if width == 8 {
                    _mm256_storeu_ps(at(p), *row);
                } else {
                    _mm256_maskstore_ps(at(p), lanes, *row);
                }
            }
        }
    }
}

/// [`apply_tile`] where every channel has the same unit: each register of 8 channels of a pixel is looked up
/// as loaded.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn shared(
    lookup: &Lookup,
    tile: &mut [f32],
    stride: usize,
    channels: Range<usize>,
    bias: Option<&[f32]>,
) {
    for pixel in tile.chunks_exact_mut(stride) {
        let base = pixel.as_mut_ptr();
        for first_channel in channels.clone().step_by(8) {
            let width = (channels.end - first_channel).min(8);
            let lanes = lane_mask(width);
            let at = base.add(first_channel);
            let load = |at: *const f32| {
                if width == 8 {
                    _mm256_loadu_ps(at)
                } else {
                    _mm256_maskload_ps(at, lanes)
                }
            };
            let mut x = load(at);
            if let Some(bias) = bias {
                x = _mm256_add_ps(x, load(bias.as_ptr().add(first_channel)));
            }
            // Every channel's parameters are the first's. Infinities and NaN (rare) give NaN in the plain
            // lookup: the lookup that handles them.
            let mut y = lookup.finite(first_channel, x);
            if _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(y, y)) != 0 {
                y = lookup.channel(first_channel, x);
            }
            if width == 8 {
                _mm256_storeu_ps(at, y);
            } else {
                _mm256_maskstore_ps(at, lanes, y);
            }
        }
    }
}

/// The lanes `0..width` of a `maskload`/`maskstore` (sign bit set).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn lane_mask(width: usize) -> __m256i {
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(width as i32), lane)
}

/// Transposes the 8x8 matrix whose rows are `rows` (three stages of 8 shuffles; its own inverse).
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn transpose(rows: &mut [__m256; 8]) {
    let mut pairs = [_mm256_setzero_ps(); 8];
    for i in 0..4 {
        pairs[2 * i] = _mm256_unpacklo_ps(rows[2 * i], rows[2 * i + 1]);
        pairs[2 * i + 1] = _mm256_unpackhi_ps(rows[2 * i], rows[2 * i + 1]);
    }
    let mut quads = [_mm256_setzero_ps(); 8];
    for g in 0..2 {
        let (lo01, hi01, lo23, hi23) = (
            pairs[4 * g],
            pairs[4 * g + 1],
            pairs[4 * g + 2],
            pairs[4 * g + 3],
        );
        quads[4 * g] = _mm256_shuffle_ps::<0x44>(lo01, lo23);
        quads[4 * g + 1] = _mm256_shuffle_ps::<0xEE>(lo01, lo23);
        quads[4 * g + 2] = _mm256_shuffle_ps::<0x44>(hi01, hi23);
        quads[4 * g + 3] = _mm256_shuffle_ps::<0xEE>(hi01, hi23);
    }
    // quads[4g + m] holds, in its 128-bit half h, column 4h + m of rows 4g..4g + 4.
    for m in 0..4 {
        rows[m] = _mm256_permute2f128_ps::<0x20>(quads[m], quads[4 + m]);
        rows[4 + m] = _mm256_permute2f128_ps::<0x31>(quads[m], quads[4 + m]);
    }
}

/// A uniform PWLU's lookup of 8 values of one channel, by the fused index ([`UniformPwlu`]).
struct Lookup<'a> {
    pwlu: &'a UniformPwlu,
    planar: &'a [f32],
    segments: usize,
    /// Registers of 8 segments a unit's table fills (1 to 4).
    chunks: usize,
    /// Registers of 8 segments its interior segments fill (1 to 4).
    interior_chunks: usize,
    last_interior: __m256,
    /// `N`, the coordinate where the right tail starts.
    right_bound: __m256,
    right_tail: __m256i,
    left_tail: __m256i,
}

impl<'a> Lookup<'a> {
    #[inline(always)]
    unsafe fn new(pwlu: &'a UniformPwlu, planar: &'a [f32]) -> Self {
        debug_assert!(pwlu.fused_index);
        let n = pwlu.intervals;
        let segments = n + 2;
        let chunks = segments.div_ceil(8);
        debug_assert!(chunks <= 4);
        Lookup {
            pwlu,
            planar,
            segments,
            chunks,
            interior_chunks: n.div_ceil(8),
            last_interior: _mm256_set1_ps((n - 1) as f32),
            right_bound: _mm256_set1_ps(n as f32),
            right_tail: _mm256_set1_epi32(n as i32),
            left_tail: _mm256_set1_epi32(n as i32 + 1),
        }
    }

    /// The `segments` floats at `table` indexed by `index` (8 lanes of at most `segments - 1`).
    #[inline(always)]
    unsafe fn pick(&self, table: *const f32, index: __m256i) -> __m256 {
        self.pick_from(self.chunks, table, index)
    }

    /// The floats at `table` indexed by `index`, from the first `chunks` registers of 8.
    #[inline(always)]
    unsafe fn pick_from(&self, chunks: usize, table: *const f32, index: __m256i) -> __m256 {
        // The planar table has 32 floats past its last unit, so every chunk's load is inside it.
        let chunk = |c: usize| _mm256_permutevar8x32_ps(_mm256_loadu_ps(table.add(8 * c)), index);
        // Bits 3 and 4 of the index, in the sign bit that `blendv` reads.
        let bit3 = _mm256_castsi256_ps(_mm256_slli_epi32::<28>(index));
        let bit4 = _mm256_castsi256_ps(_mm256_slli_epi32::<27>(index));
        match chunks {
            1 => chunk(0),
            2 => _mm256_blendv_ps(chunk(0), chunk(1), bit3),
            3 => _mm256_blendv_ps(_mm256_blendv_ps(chunk(0), chunk(1), bit3), chunk(2), bit4),
            _ => _mm256_blendv_ps(
                _mm256_blendv_ps(chunk(0), chunk(1), bit3),
                _mm256_blendv_ps(chunk(2), chunk(3), bit3),
                bit4,
            ),
        }
    }

    /// Channel `channel`'s segment coordinate of `x`, and where its unit's table starts.
    #[inline(always)]
    unsafe fn coordinate(&self, channel: usize, x: __m256) -> (__m256, *const f32) {
        let pwlu = self.pwlu;
        let inv_d = _mm256_set1_ps(*pwlu.inv_d.get_unchecked(channel));
        let origin = _mm256_set1_ps(*pwlu.origin.get_unchecked(channel));
        let table = self
            .planar
            .as_ptr()
            .add(*pwlu.first.get_unchecked(channel) as usize);
        (_mm256_fmadd_ps(x, inv_d, origin), table)
    }

    /// [`Self::channel`] where `x` holds no infinity and no NaN (elsewhere it may give NaN): the interior
    /// segments by permutes, the tails by blends.
    #[inline(always)]
    unsafe fn finite(&self, channel: usize, x: __m256) -> __m256 {
        let n = self.pwlu.intervals;
        let (t, slopes) = self.coordinate(channel, x);
        let intercepts = slopes.add(self.segments);
        // Below zero the index is any: the left tail replaces what it picks.
        let index = _mm256_cvttps_epi32(_mm256_min_ps(t, self.last_interior));
        let slope = self.pick_from(self.interior_chunks, slopes, index);
        let intercept = self.pick_from(self.interior_chunks, intercepts, index);
        let right_tail = _mm256_cmp_ps::<_CMP_GE_OQ>(t, self.right_bound);
        let left_tail = _mm256_cmp_ps::<_CMP_LT_OQ>(t, _mm256_setzero_ps());
        // Segment N is the right tail, N + 1 the left one.
        let slope = _mm256_blendv_ps(slope, _mm256_broadcast_ss(&*slopes.add(n)), right_tail);
        let slope = _mm256_blendv_ps(slope, _mm256_broadcast_ss(&*slopes.add(n + 1)), left_tail);
        let intercept = _mm256_blendv_ps(
            intercept,
            _mm256_broadcast_ss(&*intercepts.add(n)),
            right_tail,
        );
        let intercept = _mm256_blendv_ps(
            intercept,
            _mm256_broadcast_ss(&*intercepts.add(n + 1)),
            left_tail,
        );
        _mm256_fmadd_ps(slope, x, intercept)
    }

    /// The PWLU of `channel` on `x`, the gather path's values: flat segments exact at infinity and NaN passed
    /// through.
    #[inline(always)]
    unsafe fn channel(&self, channel: usize, x: __m256) -> __m256 {
        let (t, table) = self.coordinate(channel, x);
        // min returns its second operand where t is NaN (x is NaN: the result is x); below zero the index is
        // replaced anyway.
        let interior = _mm256_cvttps_epi32(_mm256_min_ps(t, self.last_interior));
        let right_tail = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GE_OQ>(t, self.right_bound));
        let index = _mm256_blendv_epi8(interior, self.right_tail, right_tail);
        let left_tail = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LT_OQ>(t, _mm256_setzero_ps()));
        let index = _mm256_blendv_epi8(index, self.left_tail, left_tail);
        let slope = self.pick(table, index);
        let intercept = self.pick(table.add(self.segments), index);
        let y = _mm256_fmadd_ps(slope, x, intercept);
        // Only infinities and NaN need more: a flat segment gives its value (0 * inf is NaN) and NaN passes
        // through. Both are rare, so one test decides for all 8.
        let magnitude = _mm256_andnot_ps(_mm256_set1_ps(-0.0), x);
        let special = _mm256_cmp_ps::<_CMP_NLT_UQ>(magnitude, _mm256_set1_ps(f32::INFINITY));
        if _mm256_movemask_ps(special) == 0 {
            return y;
        }
        let flat = _mm256_and_ps(
            special,
            _mm256_cmp_ps::<_CMP_EQ_OQ>(slope, _mm256_setzero_ps()),
        );
        let y = _mm256_blendv_ps(y, intercept, flat);
        let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x);
        _mm256_blendv_ps(y, x, nan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_swaps_rows_and_columns_and_undoes_itself() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            eprintln!("this CPU has no AVX2: the transpose was not run");
            return;
        }
        let matrix: Vec<f32> = (0..64).map(|i| i as f32).collect();
        // Safety: AVX2 was detected above; each load and store covers 8 floats of `matrix`/`out`.
        unsafe {
            let mut rows = [_mm256_setzero_ps(); 8];
            for (i, row) in rows.iter_mut().enumerate() {
                *row = _mm256_loadu_ps(matrix.as_ptr().add(8 * i));
            }
            transpose(&mut rows);
            let mut out = vec![0.0f32; 64];
            for (i, row) in rows.iter().enumerate() {
                _mm256_storeu_ps(out.as_mut_ptr().add(8 * i), *row);
            }
            for i in 0..8 {
                for j in 0..8 {
                    assert_eq!(out[8 * i + j], matrix[8 * j + i], "element ({i}, {j})");
                }
            }
            transpose(&mut rows);
            for (i, row) in rows.iter().enumerate() {
                _mm256_storeu_ps(out.as_mut_ptr().add(8 * i), *row);
            }
            assert_eq!(out, matrix);
        }
    }
}
