//! The GEMM crates the CPU backend could use, timed on the shapes its convolutions produce (docs/cpu.md).
//!
//! `cargo run --release --example gemm_crates [THREADS]` prints GFLOP/s of `gemm` (the one the backend uses
//! for products over many pixels, with `THREADS` rayon workers, default 2, and with one), `rten-gemm` with the
//! weights prepacked (the one it uses for products of few pixels, natively; its packing is left out of the
//! time, as it happens once at plan time) and `matrixmultiply` (the browser's; single-threaded: its own
//! threading feature spawns a pool per call) on 1x1 convolutions of MobileNet-V2, EfficientNet-Lite0 and
//! ResNet-50, 3x3 im2col products of ResNet-18 (a whole layer, one block of pixels, the last two stages), the
//! classifier and a square 1024^3 product.

use std::time::Instant;

use rten_gemm::{GemmExecutor, GemmInputA, GemmInputB, GemmOptions};
use rten_tensor::NdTensorView;

/// (name, m = output pixels, k = input channels x kernel taps, n = output channels)
const SHAPES: [(&str, usize, usize, usize); 9] = [
    ("MobileNet-V2 1x1 expand 56x56 24->144", 56 * 56, 24, 144),
    ("Lite0 1x1 project 28x28 240->40", 28 * 28, 240, 40),
    (
        "ResNet-18 3x3 28x28 128->128 (im2col)",
        28 * 28,
        128 * 9,
        128,
    ),
    (
        "ResNet-18 3x3 56x56 64->64, a block of 128 pixels",
        128,
        64 * 9,
        64,
    ),
    (
        "ResNet-18 3x3 14x14 256->256 (im2col)",
        14 * 14,
        256 * 9,
        256,
    ),
    ("ResNet-18 3x3 7x7 512->512 (im2col)", 7 * 7, 512 * 9, 512),
    ("ResNet-50 1x1 7x7 2048->512", 7 * 7, 2048, 512),
    ("classifier 1280->1000, batch 1", 1, 1280, 1000),
    ("square 1024^3", 1024, 1024, 1024),
];

fn median_seconds(mut run: impl FnMut()) -> f64 {
    run();
    let mut times: Vec<f64> = (0..9)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap_or_else(|e| panic!("cannot start {threads} threads: {e}"));
    let single_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap_or_else(|e| panic!("cannot start a thread: {e}"));
    println!(
        "| shape (m x k x n) | gemm, {threads} threads | gemm, 1 thread | rten-gemm prepacked, {threads} threads \
         | rten-gemm prepacked, 1 thread | matrixmultiply, 1 thread |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, m, k, n) in SHAPES {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut c = vec![0.0f32; m * n];
        let flops = 2.0 * (m * k * n) as f64;
        let mut with_gemm = |parallelism: gemm::Parallelism| {
            let seconds = median_seconds(|| unsafe {
                // Row-major m x k times k x n into m x n; every slice holds exactly its matrix.
                gemm::gemm(
                    m,
                    n,
                    k,
                    c.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    k as isize,
                    b.as_ptr(),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                )
            });
            flops / seconds / 1e9
        };
        let parallel = pool.install(|| with_gemm(gemm::Parallelism::Rayon(threads)));
        let single = with_gemm(gemm::Parallelism::None);
        // rten-gemm shares the work among the current pool's threads.
        let executor = GemmExecutor::<f32>::default();
        let packed = executor.prepack_b(NdTensorView::from_data([k, n], &b[..]));
        let mut with_rten = || {
            let lhs = NdTensorView::from_data([m, k], &a[..]);
            let seconds = median_seconds(|| {
                executor
                    .gemm(
                        &mut c,
                        GemmInputA::Unpacked(lhs.view()),
                        GemmInputB::Packed(&packed),
                        GemmOptions::default(),
                    )
                    .unwrap_or_else(|e| panic!("rten-gemm: {e}"))
            });
            flops / seconds / 1e9
        };
        let rten_parallel = pool.install(&mut with_rten);
        let rten_single = single_thread.install(&mut with_rten);
        let mm = flops
            / median_seconds(|| unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.as_ptr(),
                    k as isize,
                    1,
                    b.as_ptr(),
                    n as isize,
                    1,
                    0.0,
                    c.as_mut_ptr(),
                    n as isize,
                    1,
                )
            })
            / 1e9;
        println!(
            "| {name} ({m} x {k} x {n}) | {parallel:.1} | {single:.1} | {rten_parallel:.1} | {rten_single:.1} \
             | {mm:.1} |"
        );
    }
}
