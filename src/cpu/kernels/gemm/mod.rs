//! The matrix products under the convolutions, and the one place that decides what computes them.
//!
//! - [`Panels`]: weights packed once, at plan time, for the kernel that multiplies by them. Natively they
//!   are `rten-gemm`'s panels, used by the layers with few pixels and large weights (the last stages at small
//!   batches): there the weights are the bulk of the data, and `gemm` would pack them again on every run. In
//!   the browser they are the panels of the SIMD128 kernel in `simd128.rs`, used by every ungrouped layer.
//! - [`gemm_rows`]: row-major products that pack their right-hand side on every call: the `gemm` crate
//!   natively (the convolutions over many pixels, on blocks of rows, one block per thread, with the epilogue
//!   while the block is in cache), the SIMD128 kernel in the browser (grouped layers).
//!
//! docs/cpu.md has the measurements behind each choice.

use rayon::prelude::*;

#[cfg(not(target_arch = "wasm32"))]
mod rten_panels;
#[cfg(any(target_arch = "wasm32", test))]
mod simd128;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use rten_panels::Panels;
#[cfg(target_arch = "wasm32")]
pub(crate) use simd128::Panels;

/// `dst[m, n] = lhs[m, k] * rhs[k, n]`, each matrix row-major with the given row stride (in floats) and
/// contiguous rows: the `gemm` crate's kernels natively, on the current pool's threads when the product is
/// large; the SIMD128 kernel in the browser.
///
/// # Safety
/// The three pointers must address matrices of those sizes and strides, `dst` not overlapping the others.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_rows(
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
    // Safety: forwarded from the caller.
    #[cfg(target_arch = "wasm32")]
    unsafe {
        simd128::multiply_unpacked(
            m,
            n,
            k,
            dst,
            dst_row_stride,
            lhs,
            lhs_row_stride,
            rhs,
            rhs_row_stride,
        );
    }
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

/// What the GEMM kernels' unit tests share.
#[cfg(test)]
pub(crate) mod tests {
    /// Deterministic values in [-1, 1) from a small linear congruential generator, the same everywhere.
    pub(crate) fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// Asserts that `got` is `a [m, k] * b [k, n]` within rounding that grows with the depth.
    pub(crate) fn check_product(m: usize, k: usize, n: usize, got: &[f32], a: &[f32], b: &[f32]) {
        // Cannot fail: the tests size `a` and `b` from `m`, `k` and `n`.
        let want = crate::reference::matmul(a, b, m, k, n).expect("valid sizes");
        for (i, (got, want)) in got.iter().zip(&want).enumerate() {
            let tolerance = 1e-5 * (k as f32).sqrt() * want.abs().max(1.0);
            assert!(
                (got - want).abs() <= tolerance,
                "{m}x{k}x{n} at {i}: {got} against {want}"
            );
        }
    }
}
