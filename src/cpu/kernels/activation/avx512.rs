//! The PWLU without gathers, on AVX-512: uniform grids and sorted breakpoints.
//!
//! Activations are NHWC, so a register loaded from memory holds 16 channels of one pixel, each with its own
//! table, and the lookup is a gather. Here a tile of 16 pixels by 16 channels is transposed in registers, so
//! that each register holds one channel's 16 pixels; that channel's segments (up to 32) then fit in two
//! registers of slopes and two of intercepts, and `vpermi2ps` looks all 16 pixels up at once. The results are
//! transposed back. Both transposes together (128 shuffles per 256 values) cost less than the gathers they
//! replace. Only the segment index depends on the grid ([`Grid`]): arithmetic on a uniform one, a branchless
//! binary search over sorted breakpoints (themselves two registers). A layer-wise PWLU (one unit) needs no
//! transposes. The values are the portable path's ([`super::UniformPwlu::apply`], [`super::SortedColumns`],
//! with FMA) bit for bit, but for the sign of a zero from a flat segment.

use std::arch::x86_64::*;
use std::ops::Range;

use super::{SortedPwlu, UniformPwlu};

/// The most segments (`N + 2`) two registers hold.
pub(super) const MAX_SEGMENTS: usize = 32;

/// Transposes the 16x16 matrix whose rows are `rows` (four stages of 16 shuffles; its own inverse).
#[inline(always)]
pub(super) unsafe fn transpose(rows: &mut [__m512; 16]) {
    // Pairs of rows interleaved: within each 128-bit lane, elements k and k + 1 of rows 2i and 2i + 1.
    let mut pairs = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        pairs[2 * i] = _mm512_unpacklo_ps(rows[2 * i], rows[2 * i + 1]);
        pairs[2 * i + 1] = _mm512_unpackhi_ps(rows[2 * i], rows[2 * i + 1]);
    }
    // Four rows' columns: quads[4g + m] holds, in its 128-bit lane k, column 4k + m of rows 4g..4g + 4.
    let mut quads = [_mm512_setzero_ps(); 16];
    for g in 0..4 {
        let (lo01, hi01, lo23, hi23) = (
            pairs[4 * g],
            pairs[4 * g + 1],
            pairs[4 * g + 2],
            pairs[4 * g + 3],
        );
        quads[4 * g] = _mm512_shuffle_ps::<0x44>(lo01, lo23);
        quads[4 * g + 1] = _mm512_shuffle_ps::<0xEE>(lo01, lo23);
        quads[4 * g + 2] = _mm512_shuffle_ps::<0x44>(hi01, hi23);
        quads[4 * g + 3] = _mm512_shuffle_ps::<0xEE>(hi01, hi23);
    }
    // For each m, a 4x4 transpose of 128-bit lanes across the four row groups gives columns m, 4 + m, 8 + m
    // and 12 + m.
    for m in 0..4 {
        let (g0, g1, g2, g3) = (quads[m], quads[4 + m], quads[8 + m], quads[12 + m]);
        let g01_low = _mm512_shuffle_f32x4::<0x44>(g0, g1);
        let g01_high = _mm512_shuffle_f32x4::<0xEE>(g0, g1);
        let g23_low = _mm512_shuffle_f32x4::<0x44>(g2, g3);
        let g23_high = _mm512_shuffle_f32x4::<0xEE>(g2, g3);
        rows[m] = _mm512_shuffle_f32x4::<0x88>(g01_low, g23_low);
        rows[4 + m] = _mm512_shuffle_f32x4::<0xDD>(g01_low, g23_low);
        rows[8 + m] = _mm512_shuffle_f32x4::<0x88>(g01_high, g23_high);
        rows[12 + m] = _mm512_shuffle_f32x4::<0xDD>(g01_high, g23_high);
    }
}

/// The PWLU on `channels` of the pixels of `tile` (at most 16 pixels of `stride` values each), 16 channels at a
/// time.
///
/// # Safety
/// The CPU has AVX-512F, VL and DQ; `planar` is `pwlu`'s `Segments::Planar` table; `tile` holds at most 16
/// whole pixels; `channels` is a non-empty range inside `0..stride`; `bias`, added first, holds `stride`
/// values.
#[target_feature(enable = "avx512f,avx512vl,avx512dq")]
pub(super) unsafe fn apply_tile(
    pwlu: &UniformPwlu,
    planar: &[f32],
    tile: &mut [f32],
    stride: usize,
    channels: Range<usize>,
    bias: Option<&[f32]>,
) {
    debug_assert!(pwlu.fused_index);
    let grid = UniformGrid {
        pwlu,
        right_tail: _mm512_set1_ps(pwlu.intervals as f32),
    };
    let lookup = Lookup::new(grid, planar, &pwlu.first, pwlu.intervals);
    tile_with(&lookup, pwlu.shared, tile, stride, channels, bias)
}

/// [`apply_tile`] for sorted breakpoints: each value's segment by a binary search over its unit's
/// breakpoints, five steps of a permute and a compare.
///
/// # Safety
/// As [`apply_tile`], with `pwlu`'s own table.
#[target_feature(enable = "avx512f,avx512vl,avx512dq")]
pub(super) unsafe fn apply_tile_sorted(
    pwlu: &SortedPwlu,
    tile: &mut [f32],
    stride: usize,
    channels: Range<usize>,
    bias: Option<&[f32]>,
) {
    let grid = SortedGrid { pwlu };
    let lookup = Lookup::new(grid, &pwlu.planar, &pwlu.first, pwlu.intervals);
    tile_with(&lookup, pwlu.shared, tile, stride, channels, bias)
}

/// [`apply_tile`] with `lookup`; `shared`: every channel has the same unit.
#[inline(always)]
unsafe fn tile_with<G: Grid>(
    lookup: &Lookup<G>,
    shared: bool,
    tile: &mut [f32],
    stride: usize,
    channels: Range<usize>,
    bias: Option<&[f32]>,
) {
    let pixels = tile.len() / stride;
    debug_assert!(pixels <= 16 && !channels.is_empty() && channels.end <= stride);
    if shared {
        return shared_unit(lookup, tile, stride, channels, bias);
    }
    for first_channel in channels.clone().step_by(16) {
        let width = (channels.end - first_channel).min(16);
        let base = tile.as_mut_ptr().add(first_channel);
        if pixels == 16 && width == 16 {
            group::<G, true>(lookup, base, stride, 16, first_channel, 16, bias);
        } else {
            group::<G, false>(lookup, base, stride, pixels, first_channel, width, bias);
        }
    }
}

/// [`tile_with`] where every channel has the same unit: each register of 16 channels of a pixel is looked up
/// as loaded, in the unit's table held in registers.
#[inline(always)]
unsafe fn shared_unit<G: Grid>(
    lookup: &Lookup<G>,
    tile: &mut [f32],
    stride: usize,
    channels: Range<usize>,
    bias: Option<&[f32]>,
) {
    let (unit, table) = lookup.unit(channels.start);
    for pixel in tile.chunks_exact_mut(stride) {
        let base = pixel.as_mut_ptr();
        for first_channel in channels.clone().step_by(16) {
            let width = (channels.end - first_channel).min(16);
            let lanes: __mmask16 = ((1u32 << width) - 1) as __mmask16;
            let at = base.add(first_channel);
            let mut x = if width == 16 {
                _mm512_loadu_ps(at)
            } else {
                _mm512_maskz_loadu_ps(lanes, at)
            };
            if let Some(bias) = bias {
                let bias = bias.as_ptr().add(first_channel);
                x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(lanes, bias));
            }
            let mut y = lookup.plain(&unit, &table, x);
            // Infinities and NaN (rare) give NaN here: the lookup that handles them.
            if _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(y, y) != 0 {
                y = lookup.special(&unit, &table, x);
            }
            if width == 16 {
                _mm512_storeu_ps(at, y);
            } else {
                _mm512_mask_storeu_ps(at, lanes, y);
            }
        }
    }
}

/// The PWLU on channels `first_channel..first_channel + width` of `pixels` pixels, pixel `p` at
/// `base + p * stride`. `FULL`: 16 pixels of 16 channels, known when compiled.
#[inline(always)]
unsafe fn group<G: Grid, const FULL: bool>(
    lookup: &Lookup<G>,
    base: *mut f32,
    stride: usize,
    pixels: usize,
    first_channel: usize,
    width: usize,
    bias: Option<&[f32]>,
) {
    let lanes: __mmask16 = ((1u32 << width) - 1) as __mmask16;
    // Each step unrolled so that the rows stay in registers.
    macro_rules! unrolled {
        ($step:ident) => {
            $step!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
        };
    }
    // The group's rows, transposed: row j holds channel j of every pixel.
    macro_rules! load {
        ($($p:literal)*) => {{
            let mut rows = [_mm512_setzero_ps(); 16];
            $( if FULL {
                rows[$p] = _mm512_loadu_ps(base.add($p * stride));
            } else if $p < pixels {
                rows[$p] = _mm512_maskz_loadu_ps(lanes, base.add($p * stride));
            } )*
            transpose(&mut rows);
            // The bias here, one per row, rather than in a pass of its own over the pixels.
            if let Some(bias) = bias {
                for (j, row) in rows.iter_mut().enumerate().take(width) {
                    *row = _mm512_add_ps(*row, _mm512_set1_ps(*bias.get_unchecked(first_channel + j)));
                }
            }
            rows
        }};
    }
    let mut rows = unrolled!(load);
    // Infinities and NaN are rare: the plain lookup goes first, and a NaN anywhere in its results (which sums
    // carry) sends the group through the lookup that handles them. Four sums, so that their adds do not wait
    // on one another. Rows past the last channel hold zeros, not looked up and not stored.
    let mut sums = [_mm512_setzero_ps(); 4];
    macro_rules! finite {
        ($($j:literal)*) => { $( if FULL || $j < width {
            rows[$j] = lookup.finite(first_channel + $j, rows[$j]);
            sums[$j % 4] = _mm512_add_ps(sums[$j % 4], rows[$j]);
        } )* };
    }
    unrolled!(finite);
    let sum = _mm512_add_ps(
        _mm512_add_ps(sums[0], sums[1]),
        _mm512_add_ps(sums[2], sums[3]),
    );
    if _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(sum, sum) != 0 {
        rows = unrolled!(load);
        for (j, row) in rows.iter_mut().enumerate().take(width) {
            *row = lookup.channel(first_channel + j, *row);
        }
    }
    transpose(&mut rows);
    macro_rules! store {
        ($($p:literal)*) => { $( if FULL {
            _mm512_storeu_ps(base.add($p * stride), rows[$p]);
        } else if $p < pixels {
            _mm512_mask_storeu_ps(base.add($p * stride), lanes, rows[$p]);
        } )* };
    }
    unrolled!(store);
}

/// How a lookup finds the segments of 16 values of one channel in its unit's table.
trait Grid {
    /// What the search needs of one unit, in registers.
    type Unit;

    /// Channel `channel`'s unit.
    unsafe fn unit(&self, channel: usize) -> Self::Unit;

    /// The segments (in `Segments`' order: interior, right tail, left tail) that `x` falls in.
    unsafe fn index(&self, unit: &Self::Unit, x: __m512) -> __m512i;
}

/// A uniform grid, by the fused index ([`UniformPwlu`]): the floor of `t` clamped above to `N` (the right
/// tail), then an unsigned minimum with `N + 1` (the left tail), as a negative floor is a large unsigned number.
struct UniformGrid<'a> {
    pwlu: &'a UniformPwlu,
    right_tail: __m512,
}

impl Grid for UniformGrid<'_> {
    /// `1 / d` and the origin in every lane.
    type Unit = (__m512, __m512);

    #[inline(always)]
    unsafe fn unit(&self, channel: usize) -> Self::Unit {
        (
            _mm512_set1_ps(*self.pwlu.inv_d.get_unchecked(channel)),
            _mm512_set1_ps(*self.pwlu.origin.get_unchecked(channel)),
        )
    }

    #[inline(always)]
    unsafe fn index(&self, &(inv_d, origin): &Self::Unit, x: __m512) -> __m512i {
        // min returns its second operand, the right tail, where t is NaN (x is NaN: the result is x).
        let t = _mm512_min_ps(_mm512_fmadd_ps(x, inv_d, origin), self.right_tail);
        let floor = _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(t);
        let left_tail = _mm512_set1_epi32(self.pwlu.intervals as i32 + 1);
        _mm512_min_epu32(floor, left_tail)
    }
}

/// Sorted breakpoints ([`SortedPwlu`]): the number of breakpoints at most `x`, by a branchless binary search
/// over the unit's 32 (its `N + 1`, then NaN, which compares false), less one; none (the left tail) becomes
/// `N + 1` by an unsigned minimum, all `N + 1` (the right tail) `N`. A NaN `x` compares false too: the left
/// tail, and NaN again.
struct SortedGrid<'a> {
    pwlu: &'a SortedPwlu,
}

impl Grid for SortedGrid<'_> {
    /// The unit's 32 breakpoints.
    type Unit = (__m512, __m512);

    #[inline(always)]
    unsafe fn unit(&self, channel: usize) -> Self::Unit {
        let at = self
            .pwlu
            .breakpoints
            .as_ptr()
            .add(*self.pwlu.first_breakpoint.get_unchecked(channel) as usize);
        (_mm512_loadu_ps(at), _mm512_loadu_ps(at.add(16)))
    }

    #[inline(always)]
    unsafe fn index(&self, &(low, high): &Self::Unit, x: __m512) -> __m512i {
        let mut count = _mm512_setzero_si512();
        macro_rules! step {
            ($($step:literal)*) => { $(
                let probe = _mm512_add_epi32(count, _mm512_set1_epi32($step - 1));
                let at_most_x = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(
                    _mm512_permutex2var_ps(low, probe, high),
                    x,
                );
                count = _mm512_mask_add_epi32(count, at_most_x, count, _mm512_set1_epi32($step));
            )* };
        }
        step!(16 8 4 2 1);
        let left_tail = _mm512_set1_epi32(self.pwlu.intervals as i32 + 1);
        _mm512_min_epu32(_mm512_sub_epi32(count, _mm512_set1_epi32(1)), left_tail)
    }
}

/// A unit's slopes and intercepts, two registers each.
struct Table {
    slopes: (__m512, __m512),
    intercepts: (__m512, __m512),
}

/// A PWLU's lookup of 16 values of one channel: the grid's segment index, then the segment's slope and
/// intercept by `vpermi2ps` from the unit's table.
struct Lookup<'a, G> {
    grid: G,
    planar: &'a [f32],
    /// Per channel, where its unit's table starts in `planar`.
    first: &'a [u32],
    segments: usize,
}

impl<'a, G: Grid> Lookup<'a, G> {
    #[inline(always)]
    fn new(grid: G, planar: &'a [f32], first: &'a [u32], intervals: usize) -> Self {
        Lookup {
            grid,
            planar,
            first,
            segments: intervals + 2,
        }
    }

    /// Channel `channel`'s unit and table.
    #[inline(always)]
    unsafe fn unit(&self, channel: usize) -> (G::Unit, Table) {
        let slopes = self
            .planar
            .as_ptr()
            .add(*self.first.get_unchecked(channel) as usize);
        let intercepts = slopes.add(self.segments);
        let table = Table {
            slopes: (_mm512_loadu_ps(slopes), _mm512_loadu_ps(slopes.add(16))),
            intercepts: (
                _mm512_loadu_ps(intercepts),
                _mm512_loadu_ps(intercepts.add(16)),
            ),
        };
        (self.grid.unit(channel), table)
    }

    /// The slopes and intercepts of `x`'s segments.
    #[inline(always)]
    unsafe fn pick(&self, unit: &G::Unit, table: &Table, x: __m512) -> (__m512, __m512) {
        let index = self.grid.index(unit, x);
        (
            _mm512_permutex2var_ps(table.slopes.0, index, table.slopes.1),
            _mm512_permutex2var_ps(table.intercepts.0, index, table.intercepts.1),
        )
    }

    /// [`Self::special`] where `x` holds no infinity and no NaN (elsewhere it may give NaN).
    #[inline(always)]
    unsafe fn plain(&self, unit: &G::Unit, table: &Table, x: __m512) -> __m512 {
        let (slope, intercept) = self.pick(unit, table, x);
        _mm512_fmadd_ps(slope, x, intercept)
    }

    /// The PWLU on `x`, the gather path's values: flat segments exact at infinity and NaN passed through.
    #[inline(always)]
    unsafe fn special(&self, unit: &G::Unit, table: &Table, x: __m512) -> __m512 {
        let (slope, intercept) = self.pick(unit, table, x);
        let y = _mm512_fmadd_ps(slope, x, intercept);
        // Only infinities and NaN need more: a flat segment gives its value (0 * inf is NaN) and NaN passes
        // through. Both are rare, so one test decides for all 16.
        const NAN_OR_INFINITE: i32 = 0x01 | 0x08 | 0x10 | 0x80;
        let special = _mm512_fpclass_ps_mask::<NAN_OR_INFINITE>(x);
        if special == 0 {
            return y;
        }
        let flat = _mm512_mask_cmp_ps_mask::<_CMP_EQ_OQ>(special, slope, _mm512_setzero_ps());
        let y = _mm512_mask_mov_ps(y, flat, intercept);
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
        _mm512_mask_mov_ps(y, nan, x)
    }

    /// [`Self::plain`] on channel `channel`.
    #[inline(always)]
    unsafe fn finite(&self, channel: usize, x: __m512) -> __m512 {
        let (unit, table) = self.unit(channel);
        self.plain(&unit, &table, x)
    }

    /// [`Self::special`] on channel `channel`.
    #[inline(always)]
    unsafe fn channel(&self, channel: usize, x: __m512) -> __m512 {
        let (unit, table) = self.unit(channel);
        self.special(&unit, &table, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_swaps_rows_and_columns_and_undoes_itself() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("this CPU has no AVX-512F: the transpose was not run");
            return;
        }
        let matrix: Vec<f32> = (0..256).map(|i| i as f32).collect();
        // Safety: AVX-512F was detected above; each load and store covers 16 floats of `matrix`/`out`.
        unsafe {
            let mut rows = [_mm512_setzero_ps(); 16];
            for (i, row) in rows.iter_mut().enumerate() {
                *row = _mm512_loadu_ps(matrix.as_ptr().add(16 * i));
            }
            transpose(&mut rows);
            let mut out = vec![0.0f32; 256];
            for (i, row) in rows.iter().enumerate() {
                _mm512_storeu_ps(out.as_mut_ptr().add(16 * i), *row);
            }
            for i in 0..16 {
                for j in 0..16 {
                    assert_eq!(out[16 * i + j], matrix[16 * j + i], "element ({i}, {j})");
                }
            }
            transpose(&mut rows);
            for (i, row) in rows.iter().enumerate() {
                _mm512_storeu_ps(out.as_mut_ptr().add(16 * i), *row);
            }
            assert_eq!(out, matrix);
        }
    }
}
