//! Weights packed once into the panels of `rten-gemm`'s kernel (natively: AVX-512, AVX2+FMA, NEON), for the
//! products of few rows where the weights are most of the data.

use std::cell::Cell;

use rayon::prelude::*;
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
        let threads = rayon::current_num_threads();
        // rten-gemm shares a product among threads by blocks of at least 128 columns (or by blocks of 64
        // rows): a narrow product of few rows, such as the 1x1 projections of the mobile networks' last
        // stages (49 x 1152 times 1152 x 192), would run on one thread. Its rows are shared instead.
        if threads > 1 && n < 128 * threads && m >= 8 * threads && m <= 64 * threads {
            let rows = m.div_ceil(threads);
            lhs[..m * k]
                .par_chunks(rows * k)
                .zip(dst[..m * n].par_chunks_mut(rows * n))
                .for_each(|(lhs, dst)| self.multiply_rows(lhs, dst));
            return;
        }
        self.multiply_rows(lhs, dst);
    }

    /// [`Self::multiply`] as one product of rten-gemm's.
    fn multiply_rows(&self, lhs: &[f32], dst: &mut [f32]) {
        let (k, n) = (self.packed.rows(), self.packed.cols());
        let m = dst.len() / n;
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

#[cfg(test)]
mod timing {
    use super::*;

    /// The products of few rows the mobile networks' last stages run, on one thread and on two: a benchmark,
    /// not a check (`cargo test --release --lib products_of_few_rows_on_one_and_two_threads -- --ignored
    /// --nocapture`).
    #[test]
    #[ignore]
    fn products_of_few_rows_on_one_and_two_threads() {
        for (m, k, n) in [
            (49, 192, 1152),
            (49, 1152, 192),
            (49, 320, 1280),
            (1, 1280, 1000),
            (196, 112, 672),
        ] {
            let a = vec![0.5f32; m * k];
            let b = vec![0.25f32; k * n];
            for threads in [1, 2] {
                // Fails only if the OS refuses a thread: a broken test machine, not an input.
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("a pool");
                pool.install(|| {
                    let panels = Panels::new(k, n, &b);
                    let mut c = vec![0.0f32; m * n];
                    for _ in 0..50 {
                        panels.multiply(&a, &mut c);
                    }
                    let mut times: Vec<f64> = (0..300)
                        .map(|_| {
                            let t = std::time::Instant::now();
                            panels.multiply(&a, &mut c);
                            t.elapsed().as_secs_f64() * 1e6
                        })
                        .collect();
                    times.sort_by(f64::total_cmp);
                    eprintln!(
                        "{m}x{k}x{n} threads {threads}: median {:.1} us min {:.1}",
                        times[150], times[0]
                    );
                });
            }
        }
    }
}
