//! The CPU kernels, on NHWC activations: convolution (GEMM, im2col + GEMM, depthwise), pooling, the
//! channel ops (concatenation, selection, layer norm), the element-wise kernels and the epilogue every producing kernel ends with. Each is checked against the
//! plain-Rust reference in `src/reference/` by the conformance suite.

pub(crate) mod activation;
pub(crate) mod channels;
pub(crate) mod conv;
pub(crate) mod elementwise;
pub(crate) mod gemm;
pub(crate) mod pool;
pub(crate) mod simd;

/// Output rows (pixels) a parallel task takes at least, so that small layers do not pay for scheduling.
pub(crate) fn rows_per_task(rows: usize, row_len: usize) -> usize {
    const MIN_FLOATS_PER_TASK: usize = 16 * 1024;
    let threads = rayon::current_num_threads().max(1);
    let by_size = MIN_FLOATS_PER_TASK.div_ceil(row_len.max(1));
    let by_threads = rows.div_ceil(threads * 4);
    by_size.max(by_threads).max(1)
}
