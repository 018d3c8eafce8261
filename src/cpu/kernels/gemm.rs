//! The matrix products under the convolutions, and the one place that decides which crate computes them.
//!
//! - [`gemm_rows`]: row-major products whose right-hand side (the weights) the crate packs on every call:
//!   the `gemm` crate natively, `matrixmultiply` in the browser. The convolutions over many pixels use it on
//!   blocks of rows, one block per thread, with the epilogue while the block is in cache.
//! - [`Panels`] (natively): weights packed once, at plan time, into the panels of `rten-gemm`'s kernel. The
//!   layers with few pixels and large weights (the last stages at small batches) use it: there the weights are
//!   the bulk of the data, and `gemm` would pack them again on every run (docs/cpu.md has the measurements).

use rayon::prelude::*;

/// `dst[m, n] = lhs[m, k] * rhs[k, n]`, each matrix row-major with the given row stride (in floats) and
/// contiguous rows: the `gemm` crate's kernels natively, on the current pool's threads when the product is
/// large; `matrixmultiply`'s in the browser.
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

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use panels::Panels;

#[cfg(not(target_arch = "wasm32"))]
mod panels {
    use std::cell::Cell;

    use rten_gemm::{GemmExecutor, GemmInputA, GemmInputB, GemmOptions, PackedBMatrix};
    use rten_tensor::storage::Alloc;
    use rten_tensor::NdTensorView;

    thread_local! {
        /// The executor that packs and multiplies. Each thread's picks the same kernel (the best the CPU has),
        /// so panels packed on one thread are multiplied on another. (One per thread: its kernel is `Sync`
        /// but not `Send`, which a process-wide one would need.)
        static EXECUTOR: GemmExecutor<f32> = GemmExecutor::default();
    }

    /// A `[k, n]` right-hand matrix packed once into `rten-gemm`'s panels.
    pub(crate) struct Panels {
        packed: PackedBMatrix<f32>,
        bytes: usize,
    }

    impl std::fmt::Debug for Panels {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Panels")
                .field("k", &self.packed.rows())
                .field("n", &self.packed.cols())
                .field("bytes", &self.bytes)
                .finish()
        }
    }

    /// Counts the bytes a packing allocates, for the memory report.
    #[derive(Default)]
    struct Counted(Cell<usize>);

    impl Alloc for Counted {
        fn alloc<T>(&self, capacity: usize) -> Vec<T> {
            self.0.set(self.0.get() + capacity * size_of::<T>());
            Vec::with_capacity(capacity)
        }
    }

    impl Panels {
        /// Packs `rhs`, `k` rows of `n` floats.
        pub(crate) fn new(k: usize, n: usize, rhs: &[f32]) -> Panels {
            let counted = Counted::default();
            let rhs = NdTensorView::from_data([k, n], &rhs[..k * n]);
            let packed = EXECUTOR.with(|executor| executor.prepack_b_in(&counted, rhs));
            Panels {
                packed,
                bytes: counted.0.get(),
            }
        }

        /// The bytes the panels hold.
        pub(crate) fn bytes(&self) -> usize {
            self.bytes
        }

        /// `dst[m, n] = lhs[m, k] * self`, both row-major and contiguous, on the current pool's threads
        /// (`rten-gemm` shares column blocks, then row blocks, among them).
        pub(crate) fn multiply(&self, lhs: &[f32], dst: &mut [f32]) {
            let (k, n) = (self.packed.rows(), self.packed.cols());
            let m = dst.len() / n.max(1);
            if m == 0 || n == 0 {
                return;
            }
            let lhs = NdTensorView::from_data([m, k], &lhs[..m * k]);
            let result = EXECUTOR.with(|executor| {
                executor.gemm(
                    &mut dst[..m * n],
                    GemmInputA::Unpacked(lhs),
                    GemmInputB::Packed(&self.packed),
                    GemmOptions::default(),
                )
            });
            // The sizes agree by construction (both slices were just cut to them) and the panels were packed by
            // this executor, which are all `gemm` checks.
            if let Err(e) = result {
                unreachable!("rten-gemm refused a product of checked sizes: {e}");
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn reference(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
            crate::reference::matmul(a, b, m, k, n).expect("valid sizes")
        }

        /// Deterministic values in [-1, 1) from a small linear congruential generator.
        fn values(len: usize, seed: u32) -> Vec<f32> {
            let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
            (0..len)
                .map(|_| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (state >> 8) as f32 / (1u32 << 23) as f32 - 1.0
                })
                .collect()
        }

        #[test]
        fn packed_products_match_the_reference_on_odd_sizes() {
            // Rows below, at and past the kernel's tile of 6; columns not a multiple of its panel width (16 or
            // 32); depths below and past its depth block of 256, with a partial last block.
            for (m, k, n) in [
                (1, 1, 1),
                (1, 1280, 1000),
                (5, 7, 3),
                (6, 256, 32),
                (7, 257, 33),
                (49, 600, 70),
                (130, 1100, 257),
            ] {
                let (a, b) = (values(m * k, 1), values(k * n, 2));
                let panels = Panels::new(k, n, &b);
                assert!(
                    panels.bytes() >= k * n * 4,
                    "{m}x{k}x{n}: {} bytes",
                    panels.bytes()
                );
                let mut c = vec![f32::NAN; m * n];
                panels.multiply(&a, &mut c);
                let want = reference(m, k, n, &a, &b);
                for (i, (got, want)) in c.iter().zip(&want).enumerate() {
                    let tolerance = 1e-5 * (k as f32).sqrt() * want.abs().max(1.0);
                    assert!(
                        (got - want).abs() <= tolerance,
                        "{m}x{k}x{n} at {i}: {got} against {want}"
                    );
                }
            }
        }

        #[test]
        fn packed_products_carry_nan_and_infinity_through() {
            let (m, k, n) = (7, 300, 40);
            let mut a = values(m * k, 3);
            a[2 * k + 5] = f32::NAN;
            a[4 * k + 299] = f32::INFINITY;
            let b = values(k * n, 4);
            let panels = Panels::new(k, n, &b);
            let mut c = vec![0.0; m * n];
            panels.multiply(&a, &mut c);
            assert!(
                c[2 * n..3 * n].iter().all(|v| v.is_nan()),
                "a NaN input poisons its row"
            );
            for (j, v) in c[4 * n..5 * n].iter().enumerate() {
                let weight = b[299 * n + j];
                assert_eq!(*v, f32::INFINITY * weight.signum(), "column {j}");
            }
            assert!(c[..2 * n].iter().chain(&c[5 * n..]).all(|v| v.is_finite()));
        }
    }
}
