//! Convolution on NHWC activations, with its fused epilogue.
//!
//! Five methods, chosen per layer at plan time by [`ConvChoice::of`], with the layout of the weights:
//! - `Direct`: an ungrouped convolution over at most four input channels (an RGB stem), summed in registers
//!   over the taps, no GEMM (`conv/direct.rs`);
//! - `Gemm`: a 1x1 convolution with stride 1 and no padding is a GEMM over the input as it lies (each pixel's
//!   channels are a row), one per group;
//! - `Depthwise`: one filter per channel, accumulated across channels in registers, no GEMM;
//! - `Winograd`: a 3x3 convolution with stride 1 over enough channels and pixels, by Winograd's F(4x4, 3x3)
//!   or, where there are too few 4x4 tiles, F(2x2, 3x3): 4x or 2.25x fewer multiplies, in 36 or 16 GEMMs
//!   between input and output transforms (`conv/winograd.rs`);
//! - `Im2col`: everything else copies each output pixel's receptive field into a row of a scratch tile (a
//!   bounded number of rows at a time) and multiplies the tile by the packed weights.
//!
//! Weights are packed once: `[groups][KH * KW * IC/groups][OC/groups]` for the GEMMs, `[KH * KW][C]` for
//! depthwise. The GEMM layers run as blocks of output pixels, one task each: gather (im2col), a
//! single-threaded GEMM, and the epilogue (bias, residual, activation) while the block is in cache. Layers
//! with too few pixels to share that way (late layers at batch 1) run as one product on all threads, then the
//! epilogue; natively their weights are packed at plan time into the GEMM kernel's panels
//! ([`super::gemm::Panels`]), since there the weights are most of the data the product reads.

use std::cell::RefCell;
use std::sync::Arc;

use rayon::prelude::*;

mod depthwise;
mod direct;
mod winograd;

use winograd::Tile;

use depthwise::depthwise_rows;
use direct::direct_rows;

use super::activation::RowActivation;
use super::gemm::gemm_rows;
use super::gemm::Panels;
use super::rows_per_task;
use crate::ops::{Conv2d, Conv2dLayer, ResidualAdd};
use crate::tensor::Shape;

/// Floats in one im2col tile (8 MiB): bounds the scratch memory whatever the layer and batch.
const TILE_FLOATS: usize = 1 << 21;

/// How a convolution is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ConvMethod {
    Direct,
    Gemm,
    Depthwise,
    Winograd(Tile),
    Im2col,
}

impl ConvMethod {
    /// The method for `conv`, producing `output`; Winograd's only if `winograd` allows it.
    fn of(conv: &Conv2d, output: Shape, winograd: bool) -> ConvMethod {
        if conv.is_depthwise() {
            ConvMethod::Depthwise
        } else if direct::serves(conv) {
            ConvMethod::Direct
        } else if conv.kernel == [1, 1]
            && conv.stride == [1, 1]
            && conv.padding == crate::ops::Padding::default()
        {
            ConvMethod::Gemm
        } else if let Some(tile) = Tile::of(conv, output).filter(|_| winograd) {
            ConvMethod::Winograd(tile)
        } else {
            ConvMethod::Im2col
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            ConvMethod::Direct => "cpu conv direct",
            ConvMethod::Gemm => "cpu conv1x1 (gemm)",
            ConvMethod::Depthwise => "cpu conv depthwise",
            ConvMethod::Winograd(tile) => tile.label(),
            ConvMethod::Im2col => "cpu conv (im2col + gemm)",
        }
    }
}

/// What computes a convolution, decided once at plan time: the method, and whether the weights are packed
/// as the GEMM kernel's panels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ConvChoice {
    method: ConvMethod,
    panels: bool,
}

impl ConvChoice {
    /// The choice for `conv` producing `output` on `threads` threads, Winograd's method only where `winograd`
    /// allows it ([`crate::cpu::CpuOptions::winograd`]). Panels serve the ungrouped GEMM layers, natively only
    /// those whose pixels are too few to run as blocks (`gemm` measured faster on the blocks, docs/cpu.md).
    pub(crate) fn of(conv: &Conv2d, output: Shape, threads: usize, winograd: bool) -> ConvChoice {
        let method = ConvMethod::of(conv, output, winograd);
        let panels = conv.groups == 1
            && matches!(method, ConvMethod::Gemm | ConvMethod::Im2col)
            && (cfg!(target_arch = "wasm32") || rows_per_block(conv, output, threads).is_none());
        ConvChoice { method, panels }
    }
}

/// A convolution's weights, packed once in the layout its kernel reads.
#[derive(Debug)]
pub(crate) enum ConvWeights {
    /// `[groups][KH * KW * IC/groups][OC/groups]`, or `[KH * KW][C]` for depthwise.
    Rows(Box<[f32]>),
    /// The GEMM kernel's panels of `[KH * KW * IC][OC]` (ungrouped layers whose product [`Panels`] serves:
    /// natively those of few pixels, in the browser all).
    Panels(Panels),
    /// Winograd's transformed weights, one set of panels of `[IC][OC]` per position of the transformed tile.
    Winograd(Box<[Panels]>),
}

impl ConvWeights {
    /// Packs `weight` (`[OC][IC/groups][KH][KW]`) for `conv` as `choice` needs them.
    pub(crate) fn pack(conv: &Conv2d, weight: &[f32], choice: ConvChoice) -> ConvWeights {
        if let ConvMethod::Winograd(tile) = choice.method {
            return ConvWeights::Winograd(winograd::pack(tile, conv, weight));
        }
        let rows = pack_rows(conv, weight);
        if choice.panels {
            let k = conv.kernel[0] * conv.kernel[1] * conv.in_channels;
            return ConvWeights::Panels(Panels::new(k, conv.out_channels, &rows));
        }
        ConvWeights::Rows(rows.into())
    }

    /// The bytes they hold.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            ConvWeights::Rows(rows) => rows.len() * 4,
            ConvWeights::Panels(panels) => panels.bytes(),
            ConvWeights::Winograd(panels) => panels.iter().map(Panels::bytes).sum(),
        }
    }
}

/// The weights of `conv` in the row layout of [`ConvWeights::Rows`].
fn pack_rows(conv: &Conv2d, weight: &[f32]) -> Vec<f32> {
    let [kh, kw] = conv.kernel;
    let taps = kh * kw;
    let icg = conv.in_channels / conv.groups;
    let ocg = conv.out_channels / conv.groups;
    if conv.is_depthwise() {
        let c = conv.out_channels;
        let mut packed = vec![0.0; taps * c];
        for ch in 0..c {
            for t in 0..taps {
                packed[t * c + ch] = weight[ch * taps + t];
            }
        }
        packed
    } else {
        let k = taps * icg;
        let mut packed = vec![0.0; conv.groups * k * ocg];
        for g in 0..conv.groups {
            for o in 0..ocg {
                let filter = &weight[(g * ocg + o) * icg * taps..][..icg * taps];
                for ic in 0..icg {
                    for t in 0..taps {
                        packed[(g * k + t * icg + ic) * ocg + o] = filter[ic * taps + t];
                    }
                }
            }
        }
        packed
    }
}

/// A convolution bound to its shapes, with packed weights.
#[derive(Debug)]
pub(crate) struct ConvKernel {
    conv: Conv2d,
    method: ConvMethod,
    weights: Arc<ConvWeights>,
    bias: Option<Arc<[f32]>>,
    activation: RowActivation,
    residual: ResidualAdd,
    input: Shape,
    output: Shape,
}

impl ConvKernel {
    pub(crate) fn new(
        layer: &Conv2dLayer,
        choice: ConvChoice,
        weights: Arc<ConvWeights>,
        input: Shape,
        output: Shape,
    ) -> Self {
        ConvKernel {
            conv: layer.conv,
            method: choice.method,
            weights,
            bias: layer.bias.clone(),
            activation: RowActivation::new(&layer.epilogue.activation, layer.conv.out_channels),
            residual: layer.epilogue.residual,
            input,
            output,
        }
    }

    pub(crate) fn label(&self) -> &'static str {
        match (self.method, &*self.weights) {
            (ConvMethod::Gemm, ConvWeights::Panels(_)) => "cpu conv1x1 (prepacked gemm)",
            (_, ConvWeights::Panels(_)) => "cpu conv (im2col + prepacked gemm)",
            (method, _) => method.label(),
        }
    }

    pub(crate) fn weights(&self) -> &Arc<ConvWeights> {
        &self.weights
    }

    /// The weights of the depthwise and direct kernels, `[KH * KW][C]` and `[KH * KW * IC][OC]` (never panels).
    fn rows(&self) -> &[f32] {
        match &*self.weights {
            ConvWeights::Rows(rows) => rows,
            ConvWeights::Panels(_) | ConvWeights::Winograd(_) => &[],
        }
    }

    /// The output columns `[start, end)` whose receptive fields lie inside the image's columns: the kernels'
    /// fast paths, which read their taps without a bounds test.
    fn interior_columns(&self) -> (usize, usize) {
        let conv = &self.conv;
        let (x_w, y_w) = (self.input.w, self.output.w);
        let (stride, pad_left) = (conv.stride[1], conv.padding.left);
        let span = (conv.kernel[1] - 1) * conv.dilation[1] + 1;
        if x_w < span {
            return (0, 0);
        }
        let start = pad_left.div_ceil(stride);
        let end = ((x_w - span + pad_left) / stride + 1).min(y_w);
        (start.min(end), end)
    }

    pub(crate) fn activation(&self) -> &RowActivation {
        &self.activation
    }

    /// Floats of im2col scratch a run on `threads` threads needs: one tile, or one block's per thread.
    pub(crate) fn scratch_floats(&self, threads: usize) -> usize {
        match self.method {
            ConvMethod::Im2col => {
                let k = self.tile_row_len();
                match rows_per_block(&self.conv, self.output, threads) {
                    Some(rows) => threads * rows * k,
                    None => self.tile_rows() * k,
                }
            }
            ConvMethod::Winograd(tile) => winograd::scratch_floats(tile, self),
            _ => 0,
        }
    }

    /// Multiply-adds of one run.
    pub(crate) fn macs(&self) -> u64 {
        self.output.len() as u64 * (self.conv.weight_len() / self.conv.out_channels) as u64
    }

    fn tile_row_len(&self) -> usize {
        tile_row_len(&self.conv)
    }

    fn tile_rows(&self) -> usize {
        let pixels = self.output.n * self.output.h * self.output.w;
        (TILE_FLOATS / self.tile_row_len().max(1)).clamp(1, pixels.max(1))
    }

    /// `output = epilogue(conv(input))`; `input`, `residual` and `output` are NHWC with the bound shapes.
    pub(crate) fn run(&self, input: &[f32], residual: Option<&[f32]>, output: &mut [f32]) {
        match (self.method, &*self.weights) {
            (ConvMethod::Depthwise, _) => return self.depthwise(input, residual, output),
            (ConvMethod::Direct, _) => return self.direct(input, residual, output),
            (ConvMethod::Winograd(tile), ConvWeights::Winograd(panels)) => {
                return with_scratch(|scratch| {
                    let floats = winograd::scratch_floats(tile, self);
                    if scratch.len() < floats {
                        scratch.resize(floats, 0.0);
                    }
                    let scratch = &mut scratch[..floats];
                    winograd::run(tile, self, panels, input, residual, output, scratch);
                });
            }
            _ => {}
        }
        if let Some(rows) = rows_per_block(&self.conv, self.output, rayon::current_num_threads()) {
            let oc = self.output.c;
            return output
                .par_chunks_mut(oc * rows)
                .enumerate()
                .for_each(|(task, chunk)| {
                    let first = task * rows;
                    let res = residual.map(|res| &res[first * oc..][..chunk.len()]);
                    self.block(input, first, chunk, res);
                });
        }
        match self.method {
            ConvMethod::Gemm => self.pointwise(input, output),
            _ => self.im2col(input, output),
        }
        self.finish(residual, output);
    }

    /// The epilogue over a whole output, on all threads.
    fn finish(&self, residual: Option<&[f32]>, output: &mut [f32]) {
        let oc = self.output.c;
        let bias = self.bias.as_deref();
        let rows = rows_per_task(output.len() / oc, oc);
        output
            .par_chunks_mut(oc * rows)
            .enumerate()
            .for_each(|(task, chunk)| {
                let at = task * rows * oc;
                let res = residual.map(|res| &res[at..at + chunk.len()]);
                self.activation.finish_rows(chunk, bias, res, self.residual);
            });
    }

    /// Output pixels `first..` (all channels of `out`): the products and the epilogue, on this thread.
    fn block(&self, input: &[f32], first: usize, out: &mut [f32], residual: Option<&[f32]>) {
        let ic = self.conv.in_channels;
        let m = out.len() / self.conv.out_channels;
        match self.method {
            ConvMethod::Gemm => {
                let icg = ic / self.conv.groups;
                for g in 0..self.conv.groups {
                    self.product(g, &input[first * ic + g * icg..], ic, out, false);
                }
            }
            _ => with_scratch(|tile| {
                let k = self.tile_row_len();
                if tile.len() < m * k {
                    tile.resize(m * k, 0.0);
                }
                let tile = &mut tile[..m * k];
                for g in 0..self.conv.groups {
                    self.gather_rows(input, tile, first, g);
                    self.product(g, tile, k, out, false);
                }
            }),
        }
        self.activation
            .finish_rows(out, self.bias.as_deref(), residual, self.residual);
    }

    /// A 1x1 convolution's products over all pixels, on all threads.
    fn pointwise(&self, input: &[f32], output: &mut [f32]) {
        let ic = self.conv.in_channels;
        let icg = ic / self.conv.groups;
        for g in 0..self.conv.groups {
            self.product(g, &input[g * icg..], ic, output, true);
        }
    }

    /// The products over all pixels, a bounded tile of gathered receptive fields at a time, on all threads.
    fn im2col(&self, input: &[f32], output: &mut [f32]) {
        with_scratch(|tile| {
            let (k, oc) = (self.tile_row_len(), self.conv.out_channels);
            let pixels = self.output.n * self.output.h * self.output.w;
            let tile_rows = self.tile_rows();
            if tile.len() < tile_rows * k {
                tile.resize(tile_rows * k, 0.0);
            }
            for g in 0..self.conv.groups {
                for first in (0..pixels).step_by(tile_rows) {
                    let rows = tile_rows.min(pixels - first);
                    let tile = &mut tile[..rows * k];
                    self.gather(input, tile, first, g);
                    self.product(g, tile, k, &mut output[first * oc..][..rows * oc], true);
                }
            }
        });
    }

    /// Group `g`'s columns of `out` (whole rows of OC) = rows of K floats from `lhs`, `lhs_stride` apart, times
    /// the group's weights: with the panels where the weights are packed so, otherwise by [`gemm_rows`], on all
    /// threads if `parallel`.
    fn product(&self, g: usize, lhs: &[f32], lhs_stride: usize, out: &mut [f32], parallel: bool) {
        let oc = self.conv.out_channels;
        let (k, ocg) = (self.tile_row_len(), oc / self.conv.groups);
        let m = out.len() / oc;
        if m == 0 {
            return;
        }
        match &*self.weights {
            // Panels are ungrouped, so both matrices are contiguous.
            ConvWeights::Panels(panels) => {
                debug_assert_eq!(lhs_stride, k);
                panels.multiply(&lhs[..m * k], out)
            }
            // Winograd's layers never come here (`run` takes them first).
            ConvWeights::Winograd(_) => debug_assert!(false, "a product of Winograd's weights"),
            ConvWeights::Rows(weights) => {
                let lhs = &lhs[..(m - 1) * lhs_stride + k];
                let weights = &weights[g * k * ocg..][..k * ocg];
                // Safety: the slices were just cut to the matrices: m rows of K, `lhs_stride` apart; K rows
                // of OCg; m rows of OC, of which group g's OCg at g * OCg.
                unsafe {
                    gemm_rows(
                        m,
                        ocg,
                        k,
                        out.as_mut_ptr().add(g * ocg),
                        oc,
                        lhs.as_ptr(),
                        lhs_stride,
                        weights.as_ptr(),
                        ocg,
                        parallel,
                    );
                }
            }
        }
    }

    /// Copies the receptive field of output pixels `first..` (group `g`'s channels) into the tile's rows,
    /// zeros where it falls on padding.
    fn gather(&self, input: &[f32], tile: &mut [f32], first: usize, g: usize) {
        let k = self.tile_row_len();
        let rows = rows_per_task(tile.len() / k, k);
        tile.par_chunks_mut(k * rows)
            .enumerate()
            .for_each(|(task, chunk)| self.gather_rows(input, chunk, first + task * rows, g));
    }

    /// [`Self::gather`] on the calling thread.
    fn gather_rows(&self, input: &[f32], tile: &mut [f32], first: usize, g: usize) {
        let conv = &self.conv;
        let (x, y) = (self.input, self.output);
        let icg = conv.in_channels / conv.groups;
        let [kh, kw] = conv.kernel;
        let k = kh * kw * icg;
        // With no horizontal dilation a filter row's taps are neighbouring pixels, which lie side by side in
        // NHWC: inside the image they are one copy of KW * ICg floats when the layer is not grouped.
        let whole_rows = conv.dilation[1] == 1 && conv.groups == 1;
        for (r, row) in tile.chunks_exact_mut(k).enumerate() {
            let m = first + r;
            let ox = m % y.w;
            let oy = (m / y.w) % y.h;
            let n = m / (y.w * y.h);
            let left = (ox * conv.stride[1]) as isize - conv.padding.left as isize;
            for ky in 0..kh {
                let iy = (oy * conv.stride[0] + ky * conv.dilation[0]) as isize
                    - conv.padding.top as isize;
                let filter_row = &mut row[ky * kw * icg..][..kw * icg];
                if iy < 0 || iy >= x.h as isize {
                    filter_row.fill(0.0);
                    continue;
                }
                let input_row = (n * x.h + iy as usize) * x.w;
                if whole_rows && left >= 0 && left as usize + kw <= x.w {
                    let at = (input_row + left as usize) * x.c;
                    filter_row.copy_from_slice(&input[at..at + kw * icg]);
                    continue;
                }
                for (kx, dst) in filter_row.chunks_exact_mut(icg).enumerate() {
                    let ix = left + (kx * conv.dilation[1]) as isize;
                    if ix < 0 || ix >= x.w as isize {
                        dst.fill(0.0);
                    } else {
                        let at = (input_row + ix as usize) * x.c + g * icg;
                        dst.copy_from_slice(&input[at..at + icg]);
                    }
                }
            }
        }
    }

    fn depthwise(&self, input: &[f32], residual: Option<&[f32]>, output: &mut [f32]) {
        self.by_rows(residual, output, |first, chunk, res| {
            depthwise_rows(self, input, first, chunk, res)
        });
    }

    fn direct(&self, input: &[f32], residual: Option<&[f32]>, output: &mut [f32]) {
        self.by_rows(residual, output, |first, chunk, res| {
            direct_rows(self, input, first, chunk, res)
        });
    }

    /// `rows(first, out, residual)` over the output's rows (`N * H` of them, whole rows each) on all threads.
    fn by_rows(
        &self,
        residual: Option<&[f32]>,
        output: &mut [f32],
        rows: impl Fn(usize, &mut [f32], Option<&[f32]>) + Sync,
    ) {
        let y = self.output;
        let row_len = y.w * y.c;
        let per_task = rows_per_task(y.n * y.h, row_len);
        output
            .par_chunks_mut(row_len * per_task)
            .enumerate()
            .for_each(|(task, chunk)| {
                let first = task * per_task;
                let res = residual.map(|res| &res[first * row_len..][..chunk.len()]);
                rows(first, chunk, res);
            });
    }
}

/// `f(this thread's im2col tile)`.
fn with_scratch(f: impl FnOnce(&mut Vec<f32>)) {
    thread_local! {
        static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|cell| {
        // A nested run on this thread (rayon may start another task while this one waits) gets its own tile.
        let mut own = Vec::new();
        let mut borrowed = cell.try_borrow_mut();
        let tile = match borrowed.as_deref_mut() {
            Ok(tile) => tile,
            Err(_) => &mut own,
        };
        f(tile);
    });
}

/// Output pixels per task when the layer runs as independent row blocks, each a single-threaded GEMM
/// (after its im2col gather) with the epilogue while the block is in cache; `None` when it runs as one
/// GEMM on all threads, then the epilogue: too few rows to share, or weights too large to pack again for
/// every block.
fn rows_per_block(conv: &Conv2d, output: Shape, threads: usize) -> Option<usize> {
    let pixels = output.n * output.h * output.w;
    let (k, n) = (tile_row_len(conv), output.c);
    let threads = threads.max(1);
    // A block's input rows and outputs fit in about 128 KiB of cache, but it has at least 128 rows (each
    // block packs the weights again: with fewer, packing costs more than a tenth of the products), and
    // every thread gets a few blocks.
    let by_cache = (32 * 1024 / (k + n)).max(128);
    let by_threads = pixels.div_ceil(threads * 4);
    // Whole tiles of 16 pixels for the epilogue, whose PWLU lookup costs as much for a partial tile.
    let rows = by_cache.min(by_threads).max(16).next_multiple_of(16);
    let weights_fit = k * n <= 128 * 1024;
    (pixels >= 2 * rows && (rows >= 64 || weights_fit)).then_some(rows)
}

/// The length of an im2col row of `conv` (a GEMM's depth): one group's receptive field.
fn tile_row_len(conv: &Conv2d) -> usize {
    conv.kernel[0] * conv.kernel[1] * (conv.in_channels / conv.groups)
}
