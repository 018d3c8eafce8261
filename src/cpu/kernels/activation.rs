//! Activations applied to one pixel's channels at a time (NHWC rows), with the residual add the epilogue
//! may fuse before or after them. The same functions as `reference::activation`, in f32.

use std::sync::Arc;

use super::simd::{mul_add, multiversion};
use crate::ops::{Activation, Pwlu, PwluTable, ResidualAdd};

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
    /// Sorted breakpoints: a binary search per value, through the table the GPU reads.
    NonUniform {
        pwlu: Arc<Pwlu>,
        units: Vec<usize>,
    },
}

/// A uniform PWLU with each channel's bounds side by side, so that a pixel's channels are evaluated as a vector:
/// the segment index is arithmetic, and the segment's slope and intercept one 64-bit gather. Values are the
/// f32s of [`crate::ops::PwluTable`], the ones the GPU reads.
#[derive(Clone, Debug)]
struct UniformPwlu {
    intervals: usize,
    left: Vec<f32>,
    right: Vec<f32>,
    inv_d: Vec<f32>,
    /// Per channel, where its unit's `N + 2` segments start in `segments`.
    first_segment: Vec<u32>,
    /// Each segment's slope (low half) and intercept (high half) as one 64-bit word: gathers cost about the
    /// same per element whatever its width, so one 64-bit gather of a pair costs half what two 32-bit gathers
    /// do.
    segments: Vec<u64>,
}

impl UniformPwlu {
    fn new(pwlu: &Pwlu, channels: usize) -> Self {
        let table = pwlu.table();
        let n = table.intervals();
        let record = |unit: usize| &table.data()[unit * table.stride()..][..table.stride()];
        let units: Vec<usize> = (0..channels).map(|c| pwlu.unit_for_channel(c)).collect();
        let segments = (0..table.units())
            .flat_map(|unit| {
                (0..n + 2).map(move |segment| {
                    let at = PwluTable::segment_offset(segment);
                    let (slope, intercept) = (record(unit)[at], record(unit)[at + 1]);
                    u64::from(slope.to_bits()) | (u64::from(intercept.to_bits()) << 32)
                })
            })
            .collect();
        UniformPwlu {
            intervals: n,
            left: units.iter().map(|&u| record(u)[0]).collect(),
            right: units.iter().map(|&u| record(u)[1]).collect(),
            inv_d: units.iter().map(|&u| record(u)[2]).collect(),
            first_segment: units.iter().map(|&u| (u * (n + 2)) as u32).collect(),
            segments,
        }
    }

    /// [`PwluTable::lookup`] on channels `first_channel..` of one pixel (`values`), NaN passed through and flat
    /// tails exact at infinity.
    #[inline(always)]
    fn apply<const FMA: bool>(&self, values: &mut [f32], first_channel: usize) {
        let c = values.len();
        let row = values;
        let channels = first_channel..first_channel + c;
        let (left, right, inv_d) = (
            &self.left[channels.clone()],
            &self.right[channels.clone()],
            &self.inv_d[channels.clone()],
        );
        let first_segment = &self.first_segment[channels];
        let last_interior = (self.intervals - 1) as f32;
        let right_tail = self.intervals as u32 + 1;
        for j in 0..c {
            let x = row[j];
            // The table's floor and clamp to [0, N - 1], as a float clamp (NaN becomes 0) and a truncation.
            let t = ((x - left[j]) * inv_d[j]).max(0.0).min(last_interior);
            // Safety: t is finite and in [0, N - 1].
            let interior = 1 + unsafe { t.to_int_unchecked::<u32>() };
            let segment = if x < left[j] {
                0
            } else if x >= right[j] {
                right_tail
            } else {
                interior
            };
            // A signed 32-bit offset: x86's gathers sign-extend 32-bit indices (`vpgatherdq`), so the index
            // arithmetic stays in 32-bit lanes, 16 per AVX-512 register, instead of being widened first.
            let at = (first_segment[j] + segment) as i32;
            // Safety: first_segment is unit * (N + 2) for a unit of the table and segment <= N + 1, so `at` is
            // inside `segments`, which holds N + 2 per unit; at most 2^20 units of at most 1026 segments
            // (docs/format.md's limits) keep it below 2^31.
            let pair = unsafe { *self.segments.as_ptr().offset(at as isize) };
            let (s, b) = (
                f32::from_bits(pair as u32),
                f32::from_bits((pair >> 32) as u32),
            );
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
            }),
            _ => None,
        };
        RowActivation {
            activation: activation.clone(),
            channels,
            pwlu,
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
    // A uniform PWLU goes a few pixels at a time, each block of 64 channels across them: a wide layer's tables
    // (18 segments of two floats per channel: 184 KiB for 1280 channels) do not fit in the L1 cache, a
    // block's do, and the table lookups are gathers, each of whose 16 loads would otherwise miss it. Other
    // activations take whole pixels (shorter loops cost them more than they save: MobileNet-V2 3% slower).
    const PIXELS: usize = 16;
    let c = act.channels.max(1);
    let block = match act.pwlu {
        Some(PwluRows::Uniform(_)) => 64,
        _ => c,
    };
    let residual = residual.filter(|_| mode != ResidualAdd::None);
    for (t, tile) in rows.chunks_mut(c * PIXELS).enumerate() {
        for first in (0..c).step_by(block) {
            let width = block.min(c - first);
            for (p, pixel) in tile.chunks_exact_mut(c).enumerate() {
                let values = &mut pixel[first..first + width];
                if let Some(bias) = bias {
                    for (v, b) in values.iter_mut().zip(&bias[first..first + width]) {
                        *v += b;
                    }
                }
                let add = |values: &mut [f32]| {
                    if let Some(r) = residual {
                        let at = (t * PIXELS + p) * c + first;
                        for (v, r) in values.iter_mut().zip(&r[at..at + width]) {
                            *v += r;
                        }
                    }
                };
                if mode == ResidualAdd::BeforeActivation {
                    add(values);
                }
                apply_values::<FMA>(act, values, first);
                if mode == ResidualAdd::AfterActivation {
                    add(values);
                }
            }
        }
    }
}

/// The activation on channels `first_channel..` of one pixel (`row`). The same functions as
/// `reference::activation`, in f32.
#[inline(always)]
fn apply_values<const FMA: bool>(act: &RowActivation, row: &mut [f32], first_channel: usize) {
    #[inline(always)]
    fn each(row: &mut [f32], f: impl Fn(f32) -> f32) {
        for v in row {
            *v = f(*v);
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
        Activation::Identity => {}
        Activation::Relu => each(row, |x| if x < 0.0 { 0.0 } else { x }),
        Activation::Relu6 => each(row, relu6),
        Activation::LeakyRelu { negative_slope } => {
            let slope = *negative_slope;
            each(row, |x| if x < 0.0 { x * slope } else { x })
        }
        Activation::Sigmoid => each(row, sigmoid),
        Activation::Silu => each(row, |x| x * sigmoid(x)),
        Activation::Hardsigmoid => each(row, |x| relu6(x + 3.0) / 6.0),
        Activation::Hardswish => each(row, |x| x * relu6(x + 3.0) / 6.0),
        Activation::Gelu => each(row, |x| {
            0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
        }),
        Activation::GeluTanh => {
            let k = (2.0 / std::f32::consts::PI).sqrt();
            each(row, |x| {
                0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
            })
        }
        Activation::Pwlu(_) => match &act.pwlu {
            Some(PwluRows::Uniform(pwlu)) => pwlu.apply::<FMA>(row, first_channel),
            Some(PwluRows::NonUniform { pwlu, units }) => {
                let table = pwlu.table();
                for (v, &unit) in row.iter_mut().zip(&units[first_channel..]) {
                    *v = table.lookup(unit, *v);
                }
            }
            None => {}
        },
    }
}
