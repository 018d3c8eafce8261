//! Activations applied to one pixel's channels at a time (NHWC rows), with the residual add the epilogue
//! may fuse before or after them. The same functions as `reference::activation`, in f32.

use std::sync::Arc;

use super::simd::{mul_add, multiversion};
use crate::ops::{Activation, Pwlu, PwluTable, ResidualAdd};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;
#[cfg(all(test, target_arch = "x86_64"))]
mod tests;

/// An activation ready to apply to rows of `channels` values (NHWC pixels).
#[derive(Clone, Debug)]
pub(crate) struct RowActivation {
    activation: Activation,
    channels: usize,
    pwlu: Option<PwluRows>,
}

/// A PWLU laid out for the CPU.
#[derive(Clone, Debug)]
enum PwluRows {
    Uniform(UniformPwlu),
    /// Sorted breakpoints: where a unit has at most 30 intervals, by counting the breakpoints at most each
    /// value (`columns`), or on AVX-512 by a search 16 values at a time (`sorted`); beyond, a binary search
    /// per value through the table the GPU reads.
    NonUniform {
        pwlu: Arc<Pwlu>,
        units: Vec<usize>,
        columns: Option<SortedColumns>,
        #[cfg(target_arch = "x86_64")]
        sorted: Option<SortedPwlu>,
    },
}

/// Sorted breakpoints side by side across channels, so that a pixel's channels are compared with breakpoint
/// `i` of their units as one vector: each value's segment is the number of breakpoints at most it, less one,
/// in a loop the compiler vectorises on every target (no gathers but the segment's), where a binary search
/// per value branches unpredictably (on the Intel Xeon, 23 ns per value).
#[derive(Clone, Debug)]
struct SortedColumns {
    intervals: usize,
    channels: usize,
    /// Breakpoint `i` of channel `c`'s unit at `i * channels + c`.
    breakpoints: Vec<f32>,
    /// Per unit, its `N + 2` slopes (low half) and intercepts (high half) in [`Segments`]' order, one 64-bit
    /// word each as in [`Segments::Pairs`].
    segments: Vec<u64>,
    /// Per channel, where its unit's segments start.
    first: Vec<u32>,
}

impl SortedColumns {
    /// The most intervals counted: beyond, a binary search takes fewer steps.
    const MAX_INTERVALS: usize = 30;

    fn new(pwlu: &Pwlu, channels: usize) -> Option<Self> {
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
    fn table_bytes(&self) -> usize {
        (self.breakpoints.len() + 2 * self.segments.len() + self.first.len()) * 4
    }

    /// The PWLU on channels `first_channel..` of one pixel (`values`), NaN passed through and flat segments
    /// exact at infinity: [`PwluTable::lookup`]'s values.
    #[inline(always)]
    fn apply<const FMA: bool>(&self, values: &mut [f32], first_channel: usize) {
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
/// breakpoints padded to 32 with NaN, and its segments as [`Segments::Planar`] lays them out.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Debug)]
struct SortedPwlu {
    intervals: usize,
    /// Per unit, its `N + 1` breakpoints, then NaN to 32 floats.
    breakpoints: Vec<f32>,
    /// Per channel, where its unit's breakpoints start.
    first_breakpoint: Vec<u32>,
    /// The units' slopes and intercepts, as `Segments::Planar`.
    planar: Vec<f32>,
    /// Per channel, where its unit's segments start in `planar`.
    first: Vec<u32>,
    /// One unit for every channel.
    shared: bool,
}

#[cfg(target_arch = "x86_64")]
impl SortedPwlu {
    /// The layout, where this CPU searches by AVX-512 permutes and `pwlu`'s units fit in their registers.
    fn new(pwlu: &Pwlu, channels: usize) -> Option<Self> {
        let table = pwlu.table();
        let n = table.intervals();
        let searched = super::simd::detected() == super::simd::Isa::Avx512
            && std::arch::is_x86_feature_detected!("avx512dq")
            && n + 2 <= avx512::MAX_SEGMENTS;
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
            planar: planar_segments(table),
            first: units.iter().map(|&u| (u * 2 * (n + 2)) as u32).collect(),
            shared: table.units() == 1,
        })
    }

    /// Whether kernels on this thread search by it: AVX-512 not limited away.
    #[inline(always)]
    fn searched(&self) -> bool {
        #[cfg(test)]
        if tests::GATHERS_ONLY.get() {
            return false;
        }
        super::simd::isa() == super::simd::Isa::Avx512
    }

    /// The bytes its tables hold.
    fn table_bytes(&self) -> usize {
        (self.breakpoints.len() + self.planar.len() + 2 * self.first.len()) * 4
    }
}

/// Each unit's slopes (`N + 2`, in [`Segments`]' order) then its intercepts, and 32 floats past the last unit,
/// so that the two whole AVX-512 registers loaded from its last row (its intercepts, 16 and 32 floats from where
/// they start) stay inside the table: the lanes past the unit are never picked, and unmasked loads cost less
/// than masked ones.
fn planar_segments(table: &PwluTable) -> Vec<f32> {
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
fn pack_pair((slope, intercept): (f32, f32)) -> u64 {
    u64::from(slope.to_bits()) | (u64::from(intercept.to_bits()) << 32)
}

/// [`pack_pair`]'s slope and intercept.
#[inline(always)]
fn unpack_pair(pair: u64) -> (f32, f32) {
    (
        f32::from_bits(pair as u32),
        f32::from_bits((pair >> 32) as u32),
    )
}

/// (slope, intercept) of each of `unit`'s segments, in [`Segments`]' order.
fn segment_pairs(table: &PwluTable, unit: usize) -> impl Iterator<Item = (f32, f32)> + '_ {
    let record = &table.data()[unit * table.stride()..][..table.stride()];
    (1..table.intervals() + 2).chain([0]).map(move |segment| {
        let at = PwluTable::segment_offset(segment);
        (record[at], record[at + 1])
    })
}

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
struct UniformPwlu {
    intervals: usize,
    left: Vec<f32>,
    inv_d: Vec<f32>,
    /// `-left * inv_d`, where `fused_index`.
    origin: Vec<f32>,
    /// Whether `t` is `x * inv_d + origin` rather than `(x - left) * inv_d`.
    fused_index: bool,
    /// One unit for every channel (a layer-wise PWLU): a register of one pixel's channels is looked up in one
    /// table as loaded, without the transposes.
    #[cfg(target_arch = "x86_64")]
    shared: bool,
    /// Per channel, where its unit's table starts in `segments`.
    first: Vec<u32>,
    segments: Segments,
}

/// Each unit's `N + 2` segments in the order interior segments (`0..N`), right tail (`N`), left tail
/// (`N + 1`), so that the floor of the interior indexes them directly.
#[derive(Clone, Debug)]
enum Segments {
    /// Each slope (low half) and intercept (high half) as one 64-bit word: gathers cost about the same per
    /// element whatever its width, so one 64-bit gather of a pair costs half what two 32-bit gathers do.
    Pairs(Vec<u64>),
    /// Per unit, its slopes and then its intercepts, so that a unit's table loads into four AVX-512 (or
    /// eight AVX2) registers for the gather-free lookup (`avx512::apply_tile`, `avx2::apply_tile`). Built
    /// where the CPU has AVX2, a unit has at most 32 segments and the index is fused, and in the browser
    /// where it is fused, whose lookup loads slopes and intercepts one by one (`simd128::apply`).
    Planar(Vec<f32>),
}

/// Which gather-free lookup a thread runs.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Permutes {
    /// 16 x 16 tiles, `vpermi2ps` (`avx512.rs`).
    Avx512,
    /// 8 x 8 tiles, `vpermps` and blends (`avx2.rs`).
    Avx2,
}

/// A lookup that takes a tile of pixels at once, with what it runs on.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
enum TileLookup<'a> {
    /// A uniform PWLU by permutes, from its planar table.
    Uniform(&'a UniformPwlu, &'a [f32], Permutes),
    /// Sorted breakpoints by the AVX-512 search.
    Sorted(&'a SortedPwlu),
}

#[cfg(target_arch = "x86_64")]
impl<'a> TileLookup<'a> {
    /// The tile lookup of `act` that this thread may run, if any.
    #[inline(always)]
    fn on_this_thread(act: &'a RowActivation) -> Option<Self> {
        match &act.pwlu {
            Some(PwluRows::Uniform(pwlu)) => pwlu
                .permuted()
                .map(|(planar, how)| TileLookup::Uniform(pwlu, planar, how)),
            Some(PwluRows::NonUniform {
                sorted: Some(sorted),
                ..
            }) if sorted.searched() => Some(TileLookup::Sorted(sorted)),
            _ => None,
        }
    }

    /// The PWLU on `channels` of the pixels of `tile`, `bias` (one per channel) added first.
    ///
    /// # Safety
    /// `tile` holds at most 16 whole pixels of `stride` values; `channels` is a non-empty range inside
    /// `0..stride`; `bias` holds `stride` values.
    #[inline(always)]
    unsafe fn apply(
        self,
        tile: &mut [f32],
        stride: usize,
        channels: std::ops::Range<usize>,
        bias: Option<&[f32]>,
    ) {
        // Safety: `on_this_thread` chose each kernel where this thread may run its instructions, with its
        // own table; the rest is the caller's.
        match self {
            TileLookup::Uniform(pwlu, planar, Permutes::Avx512) => {
                avx512::apply_tile(pwlu, planar, tile, stride, channels, bias)
            }
            TileLookup::Uniform(pwlu, planar, Permutes::Avx2) => {
                avx2::apply_tile(pwlu, planar, tile, stride, channels, bias)
            }
            TileLookup::Sorted(sorted) => {
                avx512::apply_tile_sorted(sorted, tile, stride, channels, bias)
            }
        }
    }
}

impl UniformPwlu {
    /// The largest `|left| / d` for which the segment coordinate is one multiply-add: its error, at most
    /// `2^10 * 2^-24` of a segment, stays far below what the activations' own rounding moves them.
    const MAX_FUSED_ORIGIN: f64 = 1024.0;

    fn new(pwlu: &Pwlu, channels: usize) -> Self {
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
    fn planar(intervals: usize) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            super::simd::detected() >= super::simd::Isa::Avx2Fma
                && intervals + 2 <= avx512::MAX_SEGMENTS
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = intervals;
            cfg!(all(target_arch = "wasm32", target_feature = "simd128"))
        }
    }

    /// The bytes its tables hold.
    fn table_bytes(&self) -> usize {
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
    fn permuted(&self) -> Option<(&[f32], Permutes)> {
        use super::simd::{isa, Isa};
        #[cfg(test)]
        if tests::GATHERS_ONLY.get() {
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
    fn apply<const FMA: bool>(&self, values: &mut [f32], first_channel: usize) {
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        if let Segments::Planar(planar) = &self.segments {
            return simd128::apply(self, planar, values, first_channel);
        }
        self.apply_portable::<FMA>(values, first_channel)
    }

    /// [`Self::apply`] as plain Rust that LLVM vectorises (with gathers where the CPU has them).
    #[inline(always)]
    fn apply_portable<const FMA: bool>(&self, values: &mut [f32], first_channel: usize) {
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
    fn apply_with<const FMA: bool>(
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
    fn apply_by<const FMA: bool, const FUSED: bool>(
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

impl RowActivation {
    pub(crate) fn new(activation: &Activation, channels: usize) -> Self {
        let pwlu = match activation {
            Activation::Pwlu(p)
                if p.table().is_uniform() && p.table().intervals() > 0 && p.table().units() > 0 =>
            {
                Some(PwluRows::Uniform(UniformPwlu::new(p, channels)))
            }
            Activation::Pwlu(p) => Some(PwluRows::NonUniform {
                pwlu: Arc::clone(p),
                units: (0..channels).map(|c| p.unit_for_channel(c)).collect(),
                columns: SortedColumns::new(p, channels),
                #[cfg(target_arch = "x86_64")]
                sorted: SortedPwlu::new(p, channels),
            }),
            _ => None,
        };
        RowActivation {
            activation: activation.clone(),
            channels,
            pwlu,
        }
    }

    /// The bytes of the tables laid out for the CPU (none but a PWLU's).
    pub(crate) fn table_bytes(&self) -> usize {
        match &self.pwlu {
            Some(PwluRows::Uniform(pwlu)) => pwlu.table_bytes(),
            Some(PwluRows::NonUniform {
                units,
                columns,
                #[cfg(target_arch = "x86_64")]
                sorted,
                ..
            }) => {
                let bytes = units.len() * std::mem::size_of::<usize>()
                    + columns.as_ref().map_or(0, SortedColumns::table_bytes);
                #[cfg(target_arch = "x86_64")]
                let bytes = bytes + sorted.as_ref().map_or(0, SortedPwlu::table_bytes);
                bytes
            }
            None => 0,
        }
    }

    /// The activation on `rows`, whole pixels of `channels` values.
    pub(crate) fn apply_rows(&self, rows: &mut [f32]) {
        self.finish_rows(rows, None, None, ResidualAdd::None);
    }

    /// The epilogue of whole pixels: `rows` holds the accumulated sums; adds `bias` (one per channel), then
    /// applies the activation with `residual` (the same length as `rows`) added before or after it.
    pub(crate) fn finish_rows(
        &self,
        rows: &mut [f32],
        bias: Option<&[f32]>,
        residual: Option<&[f32]>,
        mode: ResidualAdd,
    ) {
        finish_rows(self, rows, bias, residual, mode)
    }
}

multiversion! {
    fn finish_rows(
        act: &RowActivation,
        rows: &mut [f32],
        bias: Option<&[f32]>,
        residual: Option<&[f32]>,
        mode: ResidualAdd,
    ) => finish_rows_body
}

/// [`RowActivation::finish_rows`], inlined into kernels compiled for one instruction set.
#[inline(always)]
pub(crate) fn finish_rows_body<const FMA: bool>(
    act: &RowActivation,
    rows: &mut [f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    mode: ResidualAdd,
) {
    // Tiles of 16 pixels, so that each step over a tile finds it in cache (L1 up to a few hundred channels).
    const PIXELS: usize = 16;
    let c = act.channels.max(1);
    let residual = residual.filter(|_| mode != ResidualAdd::None);
    if act.pwlu.is_none() {
        // The same function on every channel: each step over a whole tile at once, one long loop.
        for (t, tile) in rows.chunks_mut(c * PIXELS).enumerate() {
            let residual = residual.map(|r| &r[t * PIXELS * c..][..tile.len()]);
            match (bias, residual, mode) {
                (bias, Some(r), ResidualAdd::BeforeActivation) => {
                    if let Some(bias) = bias {
                        for pixel in tile.chunks_exact_mut(c) {
                            add_to(pixel, bias);
                        }
                    }
                    add_to(tile, r);
                    apply_values::<FMA>(act, tile, 0, None);
                }
                // The bias in the activation's own pass, pixel by pixel.
                (Some(bias), ..) => {
                    for pixel in tile.chunks_exact_mut(c) {
                        apply_values::<FMA>(act, pixel, 0, Some(bias));
                    }
                }
                (None, ..) => apply_values::<FMA>(act, tile, 0, None),
            }
            if let (Some(r), ResidualAdd::AfterActivation) = (residual, mode) {
                add_to(tile, r);
            }
        }
        return;
    }
    // A PWLU goes a tile at a time, each block of 64 channels across it: a wide layer's tables (18 segments
    // of two floats per channel: 184 KiB for 1280 channels) do not fit in the L1 cache, a block's do.
    #[cfg(target_arch = "x86_64")]
    let tile_lookup = TileLookup::on_this_thread(act);
    #[cfg(target_arch = "x86_64")]
    let blocked = matches!(act.pwlu, Some(PwluRows::Uniform(_))) || tile_lookup.is_some();
    #[cfg(not(target_arch = "x86_64"))]
    let blocked = matches!(act.pwlu, Some(PwluRows::Uniform(_)));
    let block = if blocked { 64 } else { c };
    for (t, tile) in rows.chunks_mut(c * PIXELS).enumerate() {
        let residual = residual.map(|r| &r[t * PIXELS * c..][..tile.len()]);
        for first in (0..c).step_by(block) {
            let width = block.min(c - first);
            let channels = first..first + width;
            let block_bias = bias.map(|bias| &bias[channels.clone()]);
            let add = |values: &mut [f32], p: usize| {
                if let Some(r) = residual {
                    add_to(values, &r[p * c..][channels.clone()]);
                }
            };
            // Pixel `p`'s values before the activation: the sums, the bias and a residual added first.
            let before = |values: &mut [f32], p: usize| {
                if let Some(bias) = block_bias {
                    add_to(values, bias);
                }
                if mode == ResidualAdd::BeforeActivation {
                    add(values, p);
                }
            };
            #[cfg(target_arch = "x86_64")]
            if let Some(lookup) = tile_lookup {
                // The block a step at a time across the tile: the lookup takes 8 or 16 pixels at once, and
                // adds the bias itself where no residual comes first (a pass over the pixels less).
                let residual_first = residual.is_some() && mode == ResidualAdd::BeforeActivation;
                let lookup_bias = if residual_first {
                    for (p, pixel) in tile.chunks_exact_mut(c).enumerate() {
                        before(&mut pixel[channels.clone()], p);
                    }
                    None
                } else {
                    bias
                };
                // Safety: a tile holds at most 16 whole pixels; the block lies inside the channels, and a bias
                // has one value per channel.
                unsafe { lookup.apply(tile, c, channels.clone(), lookup_bias) };
                if mode == ResidualAdd::AfterActivation {
                    for (p, pixel) in tile.chunks_exact_mut(c).enumerate() {
                        add(&mut pixel[channels.clone()], p);
                    }
                }
                continue;
            }
            for (p, pixel) in tile.chunks_exact_mut(c).enumerate() {
                let values = &mut pixel[channels.clone()];
                before(values, p);
                apply_values::<FMA>(act, values, first, None);
                if mode == ResidualAdd::AfterActivation {
                    add(values, p);
                }
            }
        }
    }
}

/// `values += addend`, element by element.
#[inline(always)]
fn add_to(values: &mut [f32], addend: &[f32]) {
    for (v, a) in values.iter_mut().zip(addend) {
        *v += a;
    }
}

/// The activation on channels `first_channel..` of one pixel (`row`), after adding `bias` (one per value)
/// if given (never for a PWLU). The same functions as `reference::activation`, in f32.
#[inline(always)]
fn apply_values<const FMA: bool>(
    act: &RowActivation,
    row: &mut [f32],
    first_channel: usize,
    bias: Option<&[f32]>,
) {
    // The bias and the function in one pass.
    #[inline(always)]
    fn each_of(row: &mut [f32], bias: Option<&[f32]>, f: impl Fn(f32) -> f32) {
        match bias {
            Some(bias) => {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v = f(*v + b);
                }
            }
            None => {
                for v in row {
                    *v = f(*v);
                }
            }
        }
    }
    let sigmoid = |x: f32| 1.0 / (1.0 + (-x).exp());
    // Comparisons rather than max/min or clamp so that NaN passes through, as in the reference.
    #[allow(clippy::manual_clamp)]
    let relu6 = |x: f32| {
        if x < 0.0 {
            0.0
        } else if x > 6.0 {
            6.0
        } else {
            x
        }
    };
    match &act.activation {
        Activation::Identity => each_of(row, bias, |x| x),
        Activation::Relu => each_of(row, bias, |x| if x < 0.0 { 0.0 } else { x }),
        Activation::Relu6 => each_of(row, bias, relu6),
        Activation::LeakyRelu { negative_slope } => {
            let slope = *negative_slope;
            each_of(row, bias, |x| if x < 0.0 { x * slope } else { x })
        }
        Activation::Sigmoid => each_of(row, bias, sigmoid),
        Activation::Silu => each_of(row, bias, |x| x * sigmoid(x)),
        Activation::Hardsigmoid => each_of(row, bias, |x| relu6(x + 3.0) / 6.0),
        Activation::Hardswish => each_of(row, bias, |x| x * relu6(x + 3.0) / 6.0),
        Activation::Gelu => each_of(row, bias, |x| {
            0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
        }),
        Activation::GeluTanh => {
            let k = (2.0 / std::f32::consts::PI).sqrt();
            each_of(row, bias, |x| {
                0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
            })
        }
        // `finish_rows_body` adds a PWLU's bias itself (inside the lookup where it can).
        Activation::Pwlu(_) => match &act.pwlu {
            Some(PwluRows::Uniform(pwlu)) => {
                debug_assert!(bias.is_none());
                pwlu.apply::<FMA>(row, first_channel)
            }
            Some(PwluRows::NonUniform {
                columns: Some(columns),
                ..
            }) => {
                debug_assert!(bias.is_none());
                columns.apply::<FMA>(row, first_channel)
            }
            Some(PwluRows::NonUniform { pwlu, units, .. }) => {
                debug_assert!(bias.is_none());
                let table = pwlu.table();
                for (v, &unit) in row.iter_mut().zip(&units[first_channel..]) {
                    *v = table.lookup(unit, *v);
                }
            }
            None => {}
        },
    }
}
