//! The PWLU with sorted breakpoints laid out for vector lookups: counted across channels on every target, and
//! on AVX-512 searched in registers.

use crate::cpu::kernels::simd::mul_add;
use crate::ops::Pwlu;

use super::uniform::{pack_pair, segment_pairs, unpack_pair};

/// Sorted breakpoints side by side across channels, so that a pixel's channels are compared with breakpoint
/// `i` of their units as one vector: each value's segment is the number of breakpoints at most it, less one,
/// in a loop the compiler vectorises on every target (no gathers but the segment's), where a binary search
/// per value branches unpredictably (on the Intel Xeon, 23 ns per value).
#[derive(Clone, Debug)]
pub(super) struct SortedColumns {
    pub(super) intervals: usize,
    pub(super) channels: usize,
    /// Breakpoint `i` of channel `c`'s unit at `i * channels + c`.
    pub(super) breakpoints: Vec<f32>,
    /// Per unit, its `N + 2` slopes (low half) and intercepts (high half) in [`Segments`](super::uniform::Segments)' order, one 64-bit
    /// word each as in [`Segments::Pairs`](super::uniform::Segments::Pairs).
    pub(super) segments: Vec<u64>,
    /// Per channel, where its unit's segments start.
    pub(super) first: Vec<u32>,
}

impl SortedColumns {
    /// The most intervals counted: beyond, a binary search takes fewer steps.
    pub(super) const MAX_INTERVALS: usize = 30;

    pub(super) fn new(pwlu: &Pwlu, channels: usize) -> Option<Self> {
        let table = pwlu.table();
        let n = table.intervals();
        if table.is_uniform() || n > Self::MAX_INTERVALS || n == 0 {
            return None;
        }
        let record = |unit: usize| &table.data()[unit * table.stride()..][..table.stride()];
        let units: Vec<usize> = (0..channels).map(|c| pwlu.unit_for_channel(c)).collect();
        let breakpoints = (0..=n)
            .flat_map(|i| {
                units
                    .iter()
                    .map(move |&u| record(u)[table.breakpoints_offset() + i])
            })
            .collect();
        Some(SortedColumns {
            intervals: n,
            channels,
            breakpoints,
            segments: (0..table.units())
                .flat_map(|unit| segment_pairs(table, unit).map(pack_pair))
                .collect(),
            first: units.iter().map(|&u| (u * (n + 2)) as u32).collect(),
        })
    }

    /// The bytes its tables hold.
    pub(super) fn table_bytes(&self) -> usize {
        (self.breakpoints.len() + 2 * self.segments.len() + self.first.len()) * 4
    }

    /// The PWLU on channels `first_channel..` of one pixel (`values`), NaN passed through and flat segments
    /// exact at infinity: [`PwluTable::lookup`](crate::ops::PwluTable::lookup)'s values.
    #[inline(always)]
    pub(super) fn apply<const FMA: bool>(&self, values: &mut [f32], first_channel: usize) {
        // Blocks of channels whose counts stay in registers or the L1 cache.
        const BLOCK: usize = 64;
        let n = self.intervals;
        for (b, block) in values.chunks_mut(BLOCK).enumerate() {
            let first = first_channel + b * BLOCK;
            let mut count = [0u32; BLOCK];
            let count = &mut count[..block.len()];
            for i in 0..=n {
                let row = &self.breakpoints[i * self.channels + first..][..block.len()];
                for ((k, &p), &x) in count.iter_mut().zip(row).zip(block.iter()) {
                    *k += u32::from(p <= x);
                }
            }
            let units = &self.first[first..first + block.len()];
            for j in 0..block.len() {
                let (x, k, at) = (block[j], count[j], units[j]);
                // None at most x (the left tail, or NaN): segment N + 1; all N + 1 (the right tail): N.
                let segment = k.wrapping_sub(1).min(n as u32 + 1);
                // Signed 32-bit offsets, as `UniformPwlu::apply_portable` explains: vectorised, one gather.
                // Safety: `at` starts a unit's N + 2 segments and the segment is at most N + 1.
                let pair = unsafe {
                    *self
                        .segments
                        .as_ptr()
                        .offset((at + segment) as i32 as isize)
                };
                let (s, b) = unpack_pair(pair);
                let y = if s == 0.0 { b } else { mul_add::<FMA>(s, x, b) };
                block[j] = if x.is_nan() { x } else { y };
            }
        }
    }
}

/// A PWLU with sorted breakpoints laid out for the AVX-512 search (`avx512::apply_tile_sorted`): each unit's
/// breakpoints padded to 32 with NaN, and its segments as [`Segments::Planar`](super::uniform::Segments::Planar) lays them out.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Debug)]
pub(super) struct SortedPwlu {
    pub(super) intervals: usize,
    /// Per unit, its `N + 1` breakpoints, then NaN to 32 floats.
    pub(super) breakpoints: Vec<f32>,
    /// Per channel, where its unit's breakpoints start.
    pub(super) first_breakpoint: Vec<u32>,
    /// The units' slopes and intercepts, as `Segments::Planar`.
    pub(super) planar: Vec<f32>,
    /// Per channel, where its unit's segments start in `planar`.
    pub(super) first: Vec<u32>,
    /// One unit for every channel.
    pub(super) shared: bool,
}

#[cfg(target_arch = "x86_64")]
impl SortedPwlu {
    /// The layout, where this CPU searches by AVX-512 permutes and `pwlu`'s units fit in their registers.
    pub(super) fn new(pwlu: &Pwlu, channels: usize) -> Option<Self> {
        let table = pwlu.table();
        let n = table.intervals();
        let searched = crate::cpu::kernels::simd::detected()
            == crate::cpu::kernels::simd::Isa::Avx512
            && std::arch::is_x86_feature_detected!("avx512dq")
            && n + 2 <= super::avx512::MAX_SEGMENTS;
        if !searched || table.is_uniform() {
            return None;
        }
        let record = |unit: usize| &table.data()[unit * table.stride()..][..table.stride()];
        let breakpoints = (0..table.units())
            .flat_map(|unit| {
                let own = &record(unit)[table.breakpoints_offset()..][..n + 1];
                own.iter()
                    .copied()
                    .chain(std::iter::repeat_n(f32::NAN, 31 - n))
            })
            .collect();
        let units: Vec<usize> = (0..channels).map(|c| pwlu.unit_for_channel(c)).collect();
        Some(SortedPwlu {
            intervals: n,
            breakpoints,
            first_breakpoint: units.iter().map(|&u| (u * 32) as u32).collect(),
            planar: super::uniform::planar_segments(table),
            first: units.iter().map(|&u| (u * 2 * (n + 2)) as u32).collect(),
            shared: table.units() == 1,
        })
    }

    /// Whether kernels on this thread search by it: AVX-512 not limited away.
    #[inline(always)]
    pub(super) fn searched(&self) -> bool {
        #[cfg(test)]
        if super::tests::GATHERS_ONLY.get() {
            return false;
        }
        crate::cpu::kernels::simd::isa() == crate::cpu::kernels::simd::Isa::Avx512
    }

    /// The bytes its tables hold.
    pub(super) fn table_bytes(&self) -> usize {
        (self.breakpoints.len() + self.planar.len() + 2 * self.first.len()) * 4
    }
}
