//! Activations applied to one pixel's channels at a time (NHWC rows), with the residual add the epilogue
//! may fuse before or after them. The same functions as `reference::activation`, in f32.

use std::sync::Arc;

use super::simd::multiversion;
use crate::ops::{Activation, Pwlu, ResidualAdd};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;
mod sorted;
#[cfg(all(test, target_arch = "x86_64"))]
mod tests;
mod uniform;

use sorted::SortedColumns;
#[cfg(target_arch = "x86_64")]
use sorted::SortedPwlu;
use uniform::UniformPwlu;

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

    /// Whether this is the identity, which leaves values as they are.
    pub(crate) fn is_identity(&self) -> bool {
        matches!(self.activation, Activation::Identity)
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
