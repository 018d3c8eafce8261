//! Convolution on NHWC activations, with its fused epilogue.
//!
//! Three methods, chosen per layer by [`ConvMethod::of`]:
//! - `Gemm`: a 1x1 convolution with stride 1 and no padding is a GEMM over the input as it lies (each pixel's
//!   channels are a row), one per group;
//! - `Depthwise`: one filter per channel, accumulated across channels in registers, no GEMM;
//! - `Im2col`: everything else copies each output pixel's receptive field into a row of a scratch tile (a
//!   bounded number of rows at a time) and multiplies the tile by the packed weights.
//!
//! Weights are packed once: `[groups][KH * KW * IC/groups][OC/groups]` for the GEMMs, `[KH * KW][C]` for
//! depthwise. The GEMM layers run as blocks of output pixels, one task each: gather (im2col), a
//! single-threaded GEMM, and the epilogue (bias, residual, activation) while the block is in cache. Layers
//! with too few pixels to share that way (late layers at batch 1) run as one product whose threads each take
//! a band of output channels, then the epilogue.

use std::cell::RefCell;
use std::sync::Arc;

use rayon::prelude::*;

mod depthwise;

use depthwise::depthwise_rows;

use super::activation::RowActivation;
use super::rows_per_task;
use crate::ops::{Conv2d, Conv2dLayer, ResidualAdd};
use crate::tensor::Shape;

/// Floats in one im2col tile (8 MiB): bounds the scratch memory whatever the layer and batch.
const TILE_FLOATS: usize = 1 << 21;

/// How a convolution is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConvMethod {
    Gemm,
    Depthwise,
    Im2col,
}

impl ConvMethod {
    pub(crate) fn of(conv: &Conv2d) -> ConvMethod {
        if conv.is_depthwise() {
            ConvMethod::Depthwise
        } else if conv.kernel == [1, 1]
            && conv.stride == [1, 1]
            && conv.padding == crate::ops::Padding::default()
        {
            ConvMethod::Gemm
        } else {
            ConvMethod::Im2col
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            ConvMethod::Gemm => "cpu conv1x1 (gemm)",
            ConvMethod::Depthwise => "cpu conv depthwise",
            ConvMethod::Im2col => "cpu conv (im2col + gemm)",
        }
    }
}

/// The weights of `conv` in the layout its method reads.
pub(crate) fn pack_weights(conv: &Conv2d, weight: &[f32]) -> Vec<f32> {
    let [kh, kw] = conv.kernel;
    let taps = kh * kw;
    let icg = conv.in_channels / conv.groups;
    let ocg = conv.out_channels / conv.groups;
    match ConvMethod::of(conv) {
        ConvMethod::Depthwise => {
            let c = conv.out_channels;
            let mut packed = vec![0.0; taps * c];
            for ch in 0..c {
                for t in 0..taps {
                    packed[t * c + ch] = weight[ch * taps + t];
                }
            }
            packed
        }
        ConvMethod::Gemm | ConvMethod::Im2col => {
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
}

/// A convolution bound to its shapes, with packed weights.
#[derive(Debug)]
pub(crate) struct ConvKernel {
    conv: Conv2d,
    method: ConvMethod,
    weights: Arc<[f32]>,
    bias: Option<Arc<[f32]>>,
    activation: RowActivation,
    residual: ResidualAdd,
    input: Shape,
    output: Shape,
}

impl ConvKernel {
    pub(crate) fn new(
        layer: &Conv2dLayer,
        weights: Arc<[f32]>,
        input: Shape,
        output: Shape,
    ) -> Self {
        ConvKernel {
            conv: layer.conv,
            method: ConvMethod::of(&layer.conv),
            weights,
            bias: layer.bias.clone(),
            activation: RowActivation::new(&layer.epilogue.activation, layer.conv.out_channels),
            residual: layer.epilogue.residual,
            input,
            output,
        }
    }

    pub(crate) fn label(&self) -> &'static str {
        self.method.label()
    }

    pub(crate) fn weights(&self) -> &Arc<[f32]> {
        &self.weights
    }

    pub(crate) fn activation(&self) -> &RowActivation {
        &self.activation
    }

    /// Floats of im2col scratch a run on `threads` threads needs: one tile, or one block's per thread.
    pub(crate) fn scratch_floats(&self, threads: usize) -> usize {
        match self.method {
            ConvMethod::Im2col => {
                let k = self.tile_row_len();
                match self.rows_per_block(threads) {
                    Some(rows) => threads * rows * k,
                    None => self.tile_rows() * k,
                }
            }
            _ => 0,
        }
    }

    /// Multiply-adds of one run.
    pub(crate) fn macs(&self) -> u64 {
        self.output.len() as u64 * (self.conv.weight_len() / self.conv.out_channels) as u64
    }

    fn tile_row_len(&self) -> usize {
        self.conv.kernel[0] * self.conv.kernel[1] * (self.conv.in_channels / self.conv.groups)
    }

    fn tile_rows(&self) -> usize {
        let pixels = self.output.n * self.output.h * self.output.w;
        (TILE_FLOATS / self.tile_row_len().max(1)).clamp(1, pixels.max(1))
    }

    /// `output = epilogue(conv(input))`; `input`, `residual` and `output` are NHWC with the bound shapes.
    pub(crate) fn run(&self, input: &[f32], residual: Option<&[f32]>, output: &mut [f32]) {
        if self.method == ConvMethod::Depthwise {
            return self.depthwise(input, residual, output);
        }
        if let Some(rows) = self.rows_per_block(rayon::current_num_threads()) {
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

    /// Output pixels per task when the layer runs as independent row blocks, each a single-threaded GEMM
    /// (after its im2col gather) with the epilogue while the block is in cache; `None` when it runs as one
    /// GEMM on all threads, then the epilogue: too few rows to share, or weights too large to pack again for
    /// every block.
    fn rows_per_block(&self, threads: usize) -> Option<usize> {
        let pixels = self.output.n * self.output.h * self.output.w;
        let (k, n) = (self.tile_row_len(), self.output.c);
        let threads = threads.max(1);
        // A block's input rows and outputs fit in about 128 KiB of cache, but it has at least 128 rows (each
        // block packs the weights again: with fewer, packing costs more than a tenth of the products), and
        // every thread gets a few blocks.
        let by_cache = (32 * 1024 / (k + n)).max(128);
        let by_threads = pixels.div_ceil(threads * 4);
        let rows = by_cache.min(by_threads).max(8);
        let weights_fit = k * n <= 128 * 1024;
        (pixels >= 2 * rows && (rows >= 64 || weights_fit)).then_some(rows)
    }

    /// Output pixels `first..` (all channels of `out`): the products and the epilogue, on this thread.
    fn block(&self, input: &[f32], first: usize, out: &mut [f32], residual: Option<&[f32]>) {
        let conv = &self.conv;
        let (ic, oc) = (conv.in_channels, conv.out_channels);
        let (icg, ocg) = (ic / conv.groups, oc / conv.groups);
        let m = out.len() / oc;
        match self.method {
            ConvMethod::Gemm => {
                for g in 0..conv.groups {
                    // Safety: pixel p's channels of group g are input[p * IC + g * ICg..][..ICg] and
                    // out[(p - first) * OC + g * OCg..][..OCg] for p in first..first + m.
                    unsafe {
                        gemm_rows(
                            m,
                            ocg,
                            icg,
                            out.as_mut_ptr().add(g * ocg),
                            oc,
                            input.as_ptr().add(first * ic + g * icg),
                            ic,
                            self.weights.as_ptr().add(g * icg * ocg),
                            ocg,
                            false,
                        );
                    }
                }
            }
            _ => with_scratch(|tile| {
                let k = self.tile_row_len();
                if tile.len() < m * k {
                    tile.resize(m * k, 0.0);
                }
                let tile = &mut tile[..m * k];
                for g in 0..conv.groups {
                    self.gather_rows(input, tile, first, g);
                    // Safety: the tile holds m rows of k; out holds m rows of OC, group g's at g * OCg.
                    unsafe {
                        gemm_rows(
                            m,
                            ocg,
                            k,
                            out.as_mut_ptr().add(g * ocg),
                            oc,
                            tile.as_ptr(),
                            k,
                            self.weights.as_ptr().add(g * k * ocg),
                            ocg,
                            false,
                        );
                    }
                }
            }),
        }
        self.activation
            .finish_rows(out, self.bias.as_deref(), residual, self.residual);
    }

    fn pointwise(&self, input: &[f32], output: &mut [f32]) {
        let conv = &self.conv;
        let (icg, ocg) = (
            conv.in_channels / conv.groups,
            conv.out_channels / conv.groups,
        );
        let pixels = self.output.n * self.output.h * self.output.w;
        for g in 0..conv.groups {
            // Safety: pixel p's channels of group g are input[p * IC + g * ICg..][..ICg] and
            // output[p * OC + g * OCg..][..OCg], inside the slices for every p < pixels.
            unsafe {
                gemm_rows(
                    pixels,
                    ocg,
                    icg,
                    output.as_mut_ptr().add(g * ocg),
                    conv.out_channels,
                    input.as_ptr().add(g * icg),
                    conv.in_channels,
                    self.weights.as_ptr().add(g * icg * ocg),
                    ocg,
                    true,
                );
            }
        }
    }

    fn im2col(&self, input: &[f32], output: &mut [f32]) {
        with_scratch(|tile| self.im2col_with(input, output, tile));
    }

    fn im2col_with(&self, input: &[f32], output: &mut [f32], tile: &mut Vec<f32>) {
        let conv = &self.conv;
        let ocg = conv.out_channels / conv.groups;
        let k = self.tile_row_len();
        let pixels = self.output.n * self.output.h * self.output.w;
        let tile_rows = self.tile_rows();
        if tile.len() < tile_rows * k {
            tile.resize(tile_rows * k, 0.0);
        }
        for g in 0..conv.groups {
            for first in (0..pixels).step_by(tile_rows) {
                let rows = tile_rows.min(pixels - first);
                let tile = &mut tile[..rows * k];
                self.gather(input, tile, first, g);
                // Safety: the tile holds `rows` rows of k; output rows first.. first + rows have OC floats,
                // of which group g's are g * OCg.. (g + 1) * OCg.
                unsafe {
                    gemm_rows(
                        rows,
                        ocg,
                        k,
                        output.as_mut_ptr().add(first * conv.out_channels + g * ocg),
                        conv.out_channels,
                        tile.as_ptr(),
                        k,
                        self.weights.as_ptr().add(g * k * ocg),
                        ocg,
                        true,
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
        let y = self.output;
        let row_len = y.w * y.c;
        let rows = rows_per_task(y.n * y.h, row_len);
        output
            .par_chunks_mut(row_len * rows)
            .enumerate()
            .for_each(|(task, chunk)| {
                let first = task * rows;
                let res = residual.map(|res| &res[first * row_len..][..chunk.len()]);
                depthwise_rows(self, input, first, chunk, res);
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

/// `dst[m, n] = lhs[m, k] * rhs[k, n]`, each matrix row-major with the given row stride (in floats) and
/// contiguous rows: the `gemm` crate's kernels natively, on the current pool's threads when the product is
/// large; `matrixmultiply`'s in the browser.
///
/// # Safety
/// The three pointers must address matrices of those sizes and strides, `dst` not overlapping the others.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_rows(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_row_stride: usize,
    lhs: *const f32,
    lhs_row_stride: usize,
    rhs: *const f32,
    rhs_row_stride: usize,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            std::slice::from_raw_parts_mut(dst.add(i * dst_row_stride), n).fill(0.0);
        }
        return;
    }
    let threads = rayon::current_num_threads();
    // Below this many multiply-adds the threads cost more than they save.
    let parallel = parallel && threads > 1 && (m * n * k) >= (1 << 17);
    if parallel && m < 256 && n >= 32 * threads {
        // Few rows (late layers at small batches): each thread takes a band of columns, so that each packs
        // only its own part of the weights, the bulk of the data here.
        let cols = n.div_ceil(threads).next_multiple_of(16);
        let (dst, lhs, rhs) = (dst as usize, lhs as usize, rhs as usize);
        (0..n.div_ceil(cols)).into_par_iter().for_each(|band| {
            let first = band * cols;
            // Safety: the bands are disjoint columns of the caller's matrices.
            unsafe {
                gemm_rows(
                    m,
                    cols.min(n - first),
                    k,
                    (dst as *mut f32).add(first),
                    dst_row_stride,
                    lhs as *const f32,
                    lhs_row_stride,
                    (rhs as *const f32).add(first),
                    rhs_row_stride,
                    false,
                )
            }
        });
        return;
    }
    // In the browser there is one thread, and `matrixmultiply`'s SIMD128 kernels are as fast as `gemm`'s
    // (which its `wasm-simd128-enable` feature turns on) on ResNet-18 within 5%, and faster on the mobile
    // networks (docs/cpu.md).
    #[cfg(target_arch = "wasm32")]
    matrixmultiply::sgemm(
        m,
        k,
        n,
        1.0,
        lhs,
        lhs_row_stride as isize,
        1,
        rhs,
        rhs_row_stride as isize,
        1,
        0.0,
        dst,
        dst_row_stride as isize,
        1,
    );
    #[cfg(not(target_arch = "wasm32"))]
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_row_stride as isize,
        false,
        lhs,
        1,
        lhs_row_stride as isize,
        rhs,
        1,
        rhs_row_stride as isize,
        0.0,
        1.0,
        false,
        false,
        false,
        if parallel {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        },
    );
}

/// `c = a * b` for row-major `a: [m, k]`, `b: [k, n]`, `c: [m, n]` (the GEMM yardstick).
pub(crate) fn matmul(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    // Safety: the lengths were just checked; `c` is a distinct mutable slice.
    unsafe {
        gemm_rows(
            m,
            n,
            k,
            c.as_mut_ptr(),
            n,
            a.as_ptr(),
            k,
            b.as_ptr(),
            n,
            true,
        )
    }
}
