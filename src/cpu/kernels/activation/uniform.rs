//! The uniform PWLU laid out for vector lookups: each channel's grid side by side, its units' segments as one
//! table, and the portable lookup by gathers.

use crate::cpu::kernels::simd::mul_add;
use crate::ops::{Pwlu, PwluTable};

#[cfg(target_arch = "x86_64")]
use super::Permutes;

/// A uniform PWLU with each channel's bounds side by side, so that a pixel's channels are evaluated as a vector:
/// the segment index is arithmetic, and the segment's slope and intercept come from a table, by gathers or (on
/// AVX-512) by permutes. Values are the f32s of [`crate::ops::PwluTable`], the ones the GPU reads.
///
/// Every CPU path finds the segment the same way, from the coordinate `t` (`(x - left) / d`): the left tail
/// where `t < 0`, the right one where `t >= N`, else interior segment `floor(t)`. Where the grid lies near zero
/// (`|left| / d` at most [`UniformPwlu::MAX_FUSED_ORIGIN`], as it does for realigned bounds) `t` is one
/// multiply-add, `x * inv_d + origin`, off the exact coordinate by at most `|origin| * 2^-24` (from `origin`'s
/// rounding): a value within `2^-14 * d` of a grid point may take the neighbouring segment, whose line meets
/// it there, so the result differs from the spec's by that distance times the change of slope. Elsewhere
/// `t = (x - left) * inv_d`, the spec's own expression, and the table is not laid out for the permutes.
#[derive(Clone, Debug)]
pub(super) struct UniformPwlu {
    pub(super) intervals: usize,
    pub(super) left: Vec<f32>,
    pub(super) inv_d: Vec<f32>,
    /// `-left * inv_d`, where `fused_index`.
    pub(super) origin: Vec<f32>,
    /// Whether `t` is `x * inv_d + origin` rather than `(x - left) * inv_d`.
    pub(super) fused_index: bool,
    /// One unit for every channel (a layer-wise PWLU): a register of one pixel's channels is looked up in one
    /// table as loaded, without the transposes.
    #[cfg(target_arch = "x86_64")]
    pub(super) shared: bool,
    /// Per channel, where its unit's table starts in `segments`.
    pub(super) first: Vec<u32>,
    pub(super) segments: Segments,
}

/// Each unit's `N + 2` segments in the order interior segments (`0..N`), right tail (`N`), left tail
/// (`N + 1`), so that the floor of the interior indexes them directly.
#[derive(Clone, Debug)]
pub(super) enum Segments {
    /// Each slope (low half) and intercept (high half) as one 64-bit word: gathers cost about the same per
    /// element whatever its width, so one 64-bit gather of a pair costs half what two 32-bit gathers do.
    Pairs(Vec<u64>),
    /// Per unit, its slopes and then its intercepts, so that a unit's table loads into four AVX-512 (or
    /// eight AVX2) registers for the gather-free lookup (`avx512::apply_tile`, `avx2::apply_tile`). Built
    /// where the CPU has AVX2, a unit has at most 32 segments and the index is fused, and in the browser
    /// where it is fused, whose lookup loads slopes and intercepts one by one (`simd128::apply`).
    Planar(Vec<f32>),
}

impl UniformPwlu {
    /// The largest `|left| / d` for which the segment coordinate is one multiply-add: its error, at most
    /// `2^10 * 2^-24` of a segment, stays far below what the activations' own rounding moves them.
    pub(super) const MAX_FUSED_ORIGIN: f64 = 1024.0;

    pub(super) fn new(pwlu: &Pwlu, channels: usize) -> Self {
        let table = pwlu.table();
        let n = table.intervals();
        let record = |unit: usize| &table.data()[unit * table.stride()..][..table.stride()];
        let units: Vec<usize> = (0..channels).map(|c| pwlu.unit_for_channel(c)).collect();
        // Exact in f64 (a product of two f32s), rounded once.
        let origin = |unit: usize| -f64::from(record(unit)[0]) * f64::from(record(unit)[2]);
        let fused_index = (0..table.units()).all(|u| origin(u).abs() <= Self::MAX_FUSED_ORIGIN);
        let (segments, per_unit) = if fused_index && Self::planar(n) {
            (Segments::Planar(planar_segments(table)), 2 * (n + 2))
        } else {
            let packed = (0..table.units())
                .flat_map(|unit| segment_pairs(table, unit).map(pack_pair))
                .collect();
            (Segments::Pairs(packed), n + 2)
        };
        UniformPwlu {
            intervals: n,
            left: units.iter().map(|&u| record(u)[0]).collect(),
            inv_d: units.iter().map(|&u| record(u)[2]).collect(),
            origin: units.iter().map(|&u| origin(u) as f32).collect(),
            fused_index,
            #[cfg(target_arch = "x86_64")]
            shared: table.units() == 1,
            first: units.iter().map(|&u| (u * per_unit) as u32).collect(),
            segments,
        }
    }

    /// Whether units of `intervals` are laid out planar on this CPU (where their index is fused): where they
    /// are looked up by permutes, and in the browser.
    pub(super) fn planar(intervals: usize) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            crate::cpu::kernels::simd::detected() >= crate::cpu::kernels::simd::Isa::Avx2Fma
                && intervals + 2 <= super::avx512::MAX_SEGMENTS
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = intervals;
            cfg!(all(target_arch = "wasm32", target_feature = "simd128"))
        }
    }

    /// The bytes its tables hold.
    pub(super) fn table_bytes(&self) -> usize {
        let per_channel = self.left.len() * 4 * 4;
        per_channel
            + match &self.segments {
                Segments::Pairs(pairs) => pairs.len() * 8,
                Segments::Planar(planar) => planar.len() * 4,
            }
    }

    /// The planar table and the permutes kernels on this thread look up by, if they do.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(super) fn permuted(&self) -> Option<(&[f32], Permutes)> {
        use crate::cpu::kernels::simd::{isa, Isa};
        #[cfg(test)]
        if super::tests::GATHERS_ONLY.get() {
            return None;
        }
        let Segments::Planar(planar) = &self.segments else {
            return None;
        };
        match isa() {
            Isa::Avx512 if std::arch::is_x86_feature_detected!("avx512dq") => {
                Some((planar, Permutes::Avx512))
            }
            Isa::Avx512 | Isa::Avx2Fma => Some((planar, Permutes::Avx2)),
            Isa::Baseline => None,
        }
    }

    /// [`PwluTable::lookup`] on channels `first_channel..` of one pixel (`values`), NaN passed through and flat
    /// tails exact at infinity.
    #[inline(always)]
    pub(super) fn apply<const FMA: bool>(&self, values: &mut [f32], first_channel: usize) {
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        if let Segments::Planar(planar) = &self.segments {
            return super::simd128::apply(self, planar, values, first_channel);
        }
        self.apply_portable::<FMA>(values, first_channel)
    }

    /// [`Self::apply`] as plain Rust that LLVM vectorises (with gathers where the CPU has them).
    #[inline(always)]
    pub(super) fn apply_portable<const FMA: bool>(&self, values: &mut [f32], first_channel: usize) {
        // Signed 32-bit offsets: x86's gathers sign-extend 32-bit indices, so the index arithmetic stays in
        // 32-bit lanes, 16 per AVX-512 register, instead of being widened first. At most 2^20 units of at most
        // 1026 segments (docs/format.md's limits), two floats each, keep them below 2^31.
        match &self.segments {
            Segments::Pairs(pairs) => self.apply_with::<FMA>(values, first_channel, |at: i32| {
                // Safety: `at` is a segment of a unit of the table (see `apply_with`).
                unpack_pair(unsafe { *pairs.as_ptr().offset(at as isize) })
            }),
            Segments::Planar(planar) => {
                let intercepts = (self.intervals + 2) as isize;
                self.apply_with::<FMA>(values, first_channel, |at: i32| {
                    // Safety: as above; a unit's intercepts follow its N + 2 slopes.
                    unsafe {
                        let slope = planar.as_ptr().offset(at as isize);
                        (*slope, *slope.offset(intercepts))
                    }
                })
            }
        }
    }

    /// [`Self::apply`] with `segment(first + k)` fetching segment `k`'s slope and intercept of the unit whose
    /// table starts at `first`.
    #[inline(always)]
    pub(super) fn apply_with<const FMA: bool>(
        &self,
        values: &mut [f32],
        first_channel: usize,
        segment: impl Fn(i32) -> (f32, f32),
    ) {
        // One loop per way of finding the coordinate: a test inside the loop made the gathers 12% slower.
        if self.fused_index {
            self.apply_by::<FMA, true>(values, first_channel, segment)
        } else {
            self.apply_by::<FMA, false>(values, first_channel, segment)
        }
    }

    /// [`Self::apply_with`], the coordinate by one multiply-add where `FUSED`.
    #[inline(always)]
    pub(super) fn apply_by<const FMA: bool, const FUSED: bool>(
        &self,
        values: &mut [f32],
        first_channel: usize,
        segment: impl Fn(i32) -> (f32, f32),
    ) {
        let c = values.len();
        let row = values;
        let channels = first_channel..first_channel + c;
        let (left, inv_d, origin) = (
            &self.left[channels.clone()],
            &self.inv_d[channels.clone()],
            &self.origin[channels.clone()],
        );
        let first = &self.first[channels];
        let n = self.intervals;
        let last_interior = (n - 1) as f32;
        for j in 0..c {
            let x = row[j];
            let t = if FUSED {
                mul_add::<FMA>(x, inv_d[j], origin[j])
            } else {
                (x - left[j]) * inv_d[j]
            };
            // The floor of the interior as a float clamp (NaN becomes 0) and a truncation.
            // Safety: the clamped value is finite and in [0, N - 1].
            let interior = unsafe { t.max(0.0).min(last_interior).to_int_unchecked::<i32>() };
            let k = if t < 0.0 {
                n as i32 + 1
            } else if t >= n as f32 {
                n as i32
            } else {
                interior
            };
            // In bounds: `first` starts a unit of the table and k <= N + 1.
            let (s, b) = segment(first[j] as i32 + k);
            // A flat segment gives its value, also at +-inf (where the formula gives 0 * inf = NaN).
            let y = if s == 0.0 { b } else { mul_add::<FMA>(s, x, b) };
            row[j] = if x.is_nan() { x } else { y };
        }
    }
}

/// Each unit's slopes (`N + 2`, in [`Segments`]' order) then its intercepts, and 32 floats past the last unit,
/// so that the two whole AVX-512 registers loaded from its last row (its intercepts, 16 and 32 floats from where
/// they start) stay inside the table: the lanes past the unit are never picked, and unmasked loads cost less
/// than masked ones.
pub(super) fn planar_segments(table: &PwluTable) -> Vec<f32> {
    (0..table.units())
        .flat_map(|unit| {
            let slopes = segment_pairs(table, unit).map(|(slope, _)| slope);
            slopes.chain(segment_pairs(table, unit).map(|(_, intercept)| intercept))
        })
        .chain([0.0; 32])
        .collect()
}

/// A slope (low half) and an intercept (high half) as one 64-bit word: gathers cost about the same per element
/// whatever its width, so one 64-bit gather of a pair costs half what two 32-bit gathers do.
pub(super) fn pack_pair((slope, intercept): (f32, f32)) -> u64 {
    u64::from(slope.to_bits()) | (u64::from(intercept.to_bits()) << 32)
}

/// [`pack_pair`]'s slope and intercept.
#[inline(always)]
pub(super) fn unpack_pair(pair: u64) -> (f32, f32) {
    (
        f32::from_bits(pair as u32),
        f32::from_bits((pair >> 32) as u32),
    )
}

/// (slope, intercept) of each of `unit`'s segments, in [`Segments`]' order.
pub(super) fn segment_pairs(
    table: &PwluTable,
    unit: usize,
) -> impl Iterator<Item = (f32, f32)> + '_ {
    let record = &table.data()[unit * table.stride()..][..table.stride()];
    (1..table.intervals() + 2).chain([0]).map(move |segment| {
        let at = PwluTable::segment_offset(segment);
        (record[at], record[at + 1])
    })
}
