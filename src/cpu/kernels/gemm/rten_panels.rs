//! Weights packed once into the panels of `rten-gemm`'s kernel (natively: AVX-512, AVX2+FMA, NEON), for the
//! products of few rows where the weights are most of the data.

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
    use crate::cpu::kernels::gemm::tests::{check_product, values};

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
            check_product(m, k, n, &c, &a, &b);
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
