//! The CPU backend: the same plans as the GPU (lowering, memory placement and fused epilogues from
//! [`crate::plan`]) run by Rust kernels on the host's SIMD cores.
//!
//! Activations are NHWC: a pixel's channels are contiguous, so 1x1 convolutions and linear layers are one
//! GEMM over the activation as it lies, and depthwise convolutions, pooling and the epilogue (bias,
//! activation, PWLU table lookups, residual add) vectorise across channels. Weights are packed once, when a
//! plan is built, into the layout each kernel reads; nodes naming the same tensor share the packed copy.
//! Natively the GEMM is the `gemm` crate's (runtime dispatch to AVX2+FMA, AVX-512 or NEON), and `rten-gemm`'s
//! over weights prepacked at plan time for the layers of few pixels; in the browser a SIMD128 kernel of the
//! engine's own over prepacked weights. `kernels/gemm/` decides, docs/cpu.md says why. Everything else is in
//! `kernels/`.
//!
//! Every run happens inside the context's thread pool, so a thread-count option bounds the whole engine, and
//! a panic in a worker becomes an [`Error::Cpu`] instead of reaching the caller.

mod arena;
mod backend;
mod kernels;
mod run;

pub use arena::CpuValue;
pub use backend::CpuStep;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// Environment variable read when [`CpuOptions::threads`] is `None`.
pub const THREADS_ENV: &str = "PWLU_THREADS";

/// A plan lowered to the CPU's kernels.
pub type CpuPlan = crate::plan::Plan<CpuContext>;

/// How to run on the CPU.
#[derive(Clone, Debug)]
pub struct CpuOptions {
    /// Worker threads; `None` reads `PWLU_THREADS`, then uses every core the process may run on.
    pub threads: Option<usize>,
    /// The most bytes of activations one plan may hold (a larger batch is refused by name, before it runs).
    pub memory_limit: u64,
    /// The widest vector instructions the hand-written kernels may use (`None`: the widest the CPU has), e.g.
    /// to compare them, or to keep AVX-512 from lowering the clock of cores shared with other work. The GEMM
    /// picks its own.
    pub max_simd: Option<Simd>,
    /// Whether 3x3 convolutions of stride 1 over enough channels and pixels may run by Winograd's F(4x4, 3x3)
    /// or F(2x2, 3x3) (on by default): 4x or 2.25x fewer multiplies (ResNets run about 1.5x faster), for 4x or
    /// 1.8x the weight memory of those layers and results that differ from the direct sum by a few more
    /// rounding steps (docs/cpu.md).
    pub winograd: bool,
}

/// Vector instruction sets the hand-written kernels are compiled for, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Simd {
    /// What every CPU of the target has: SSE2 on x86-64, NEON on aarch64, SIMD128 in wasm.
    Baseline,
    /// AVX2 with FMA (x86-64).
    Avx2Fma,
    /// AVX-512 F, BW and VL (x86-64).
    Avx512,
}

impl Simd {
    /// The name people know it by on this target, e.g. `AVX2+FMA`.
    pub fn name(self) -> &'static str {
        match self {
            Simd::Avx512 => "AVX-512",
            Simd::Avx2Fma => "AVX2+FMA",
            Simd::Baseline if cfg!(target_arch = "x86_64") => "SSE2",
            Simd::Baseline if cfg!(target_arch = "aarch64") => "NEON",
            Simd::Baseline if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) => {
                "SIMD128"
            }
            Simd::Baseline => "scalar",
        }
    }

    /// The widest this CPU has.
    pub fn detected() -> Simd {
        kernels::simd::detected()
    }
}

impl std::str::FromStr for Simd {
    type Err = Error;

    /// `avx512`, `avx2` or `baseline` (also `avx-512`, `avx2+fma`, and the baselines' own names: `sse2`,
    /// `neon`, `simd128`, `scalar`), in any case.
    fn from_str(s: &str) -> Result<Simd> {
        match s.trim().to_ascii_lowercase().as_str() {
            "avx512" | "avx-512" => Ok(Simd::Avx512),
            "avx2" | "avx2+fma" | "avx2fma" => Ok(Simd::Avx2Fma),
            "baseline" | "sse2" | "neon" | "simd128" | "scalar" => Ok(Simd::Baseline),
            _ => Err(Error::Cpu(format!(
                "unknown instruction set '{s}' (expected one of: avx512, avx2, baseline)"
            ))),
        }
    }
}

impl Default for CpuOptions {
    fn default() -> Self {
        CpuOptions {
            threads: None,
            max_simd: None,
            winograd: true,
            // wasm32 addresses 4 GiB in all, weights and the module included.
            memory_limit: if cfg!(target_arch = "wasm32") {
                2 << 30
            } else {
                8 << 30
            },
        }
    }
}

/// The CPU as a backend: a thread pool and the limits plans are checked against. Cheap to share in an `Arc`.
pub struct CpuContext {
    /// `None` where the target has no threads (wasm in the browser): rayon then runs every parallel loop on
    /// the calling thread.
    pool: Option<rayon::ThreadPool>,
    threads: usize,
    memory_limit: u64,
    simd: Simd,
    winograd: bool,
}

impl std::fmt::Debug for CpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuContext")
            .field("threads", &self.threads)
            .field("simd", &self.simd)
            .finish_non_exhaustive()
    }
}

impl CpuContext {
    /// A thread pool of the requested size.
    pub fn new(options: &CpuOptions) -> Result<Self> {
        let threads = match options.threads {
            Some(n) => n,
            None => match std::env::var(THREADS_ENV) {
                Ok(value) if !value.trim().is_empty() => value.trim().parse().map_err(|_| {
                    Error::Cpu(format!("{THREADS_ENV}={value} is not a thread count"))
                })?,
                _ => std::thread::available_parallelism().map_or(1, |n| n.get()),
            },
        };
        let most = if cfg!(target_arch = "wasm32") {
            1
        } else {
            1024
        };
        if threads == 0 || threads > most {
            return Err(Error::Cpu(format!(
                "{threads} threads asked for; between 1 and {most} are possible here"
            )));
        }
        let simd = options
            .max_simd
            .map_or(Simd::detected(), |limit| limit.min(Simd::detected()));
        let pool = if cfg!(target_arch = "wasm32") {
            None
        } else {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("pwlu-cpu-{i}"))
                .start_handler(move |_| kernels::simd::limit_this_thread(simd))
                .build()
                .map_err(|e| Error::Cpu(format!("cannot start {threads} worker threads: {e}")))?;
            Some(pool)
        };
        Ok(CpuContext {
            pool,
            threads,
            memory_limit: options.memory_limit,
            simd,
            winograd: options.winograd,
        })
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The widest vector instructions the hand-written kernels use.
    pub fn simd(&self) -> Simd {
        self.simd
    }

    /// Whether plans may compute 3x3 convolutions by Winograd's method ([`CpuOptions::winograd`]).
    pub fn winograd(&self) -> bool {
        self.winograd
    }

    /// e.g. `CPU (2 threads, AVX-512)`.
    pub fn describe(&self) -> String {
        let plural = if self.threads == 1 { "" } else { "s" };
        let winograd = if self.winograd { "" } else { ", no Winograd" };
        format!(
            "CPU ({} thread{plural}, {}{winograd})",
            self.threads,
            self.simd.name()
        )
    }

    /// Runs `work` on the pool; a panic in it or in any worker it starts becomes an error.
    pub(crate) fn run_in_pool<T: Send>(
        &self,
        work: impl FnOnce() -> Result<T> + Send,
    ) -> Result<T> {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &self.pool {
            Some(pool) => pool.install(work),
            None => work(),
        }));
        outcome.unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown cause".into());
            Err(Error::Cpu(format!("a CPU kernel panicked: {what}")))
        })
    }
}

/// While alive, the pool's other workers take work instead of going to sleep between kernels
/// ([`CpuContext::hold_workers`]).
pub(crate) struct WorkersHeld {
    done: Arc<AtomicBool>,
}

impl Drop for WorkersHeld {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
    }
}

impl CpuContext {
    /// Keeps the pool's other workers busy until the returned guard drops: each runs a job that takes the
    /// pool's pending work (`rayon::yield_now`) and spins when there is none. Called on a worker at the start
    /// of a run. A rayon worker that finds no work for about 32 rounds of `sched_yield` goes to sleep, and a
    /// run has many such gaps (the tails of unevenly split kernels); waking it again cost each of them tens of
    /// microseconds.
    pub(crate) fn hold_workers(&self) -> WorkersHeld {
        let done = Arc::new(AtomicBool::new(false));
        if let (Some(pool), Some(caller)) = (&self.pool, rayon::current_thread_index()) {
            for _ in 1..self.threads {
                let done = Arc::clone(&done);
                pool.spawn(move || {
                    // On the caller's own thread (it took the job back while waiting) the job would hold the
                    // run it waits for: it ends at once.
                    if rayon::current_thread_index() == Some(caller) {
                        return;
                    }
                    while !done.load(Ordering::Acquire) {
                        if rayon::yield_now() != Some(rayon::Yield::Executed) {
                            std::hint::spin_loop();
                        }
                    }
                });
            }
        }
        WorkersHeld { done }
    }

    /// Seconds of the fastest of three `[m, k] x [k, n]` products by the GEMM the convolutions use, on this
    /// context's threads: the yardstick `pwlu bench` compares the layers with.
    #[doc(hidden)]
    pub fn time_gemm(&self, m: usize, k: usize, n: usize) -> Result<f64> {
        let a: Vec<f32> = (0..m * k).map(|i| ((i % 97) as f32) * 0.01).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i % 89) as f32) * 0.01).collect();
        let mut c = vec![0.0f32; m * n];
        self.run_in_pool(|| {
            let mut best = f64::INFINITY;
            for _ in 0..4 {
                let start = web_time::Instant::now();
                kernels::gemm::matmul(m, k, n, &a, &b, &mut c);
                best = best.min(start.elapsed().as_secs_f64());
            }
            Ok(best)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_a_worker_becomes_an_error_and_the_pool_survives() {
        let options = CpuOptions {
            threads: Some(2),
            ..Default::default()
        };
        // Fails only if the OS refuses a thread: a broken test machine, not an input.
        let ctx = CpuContext::new(&options).expect("pool");
        let outcome: Result<()> = ctx.run_in_pool(|| {
            rayon::join(|| (), || panic!("a kernel bug"));
            Ok(())
        });
        match outcome {
            Err(Error::Cpu(message)) => assert!(message.contains("a kernel bug"), "{message}"),
            other => panic!("expected Error::Cpu, got {other:?}"),
        }
        assert_eq!(
            ctx.run_in_pool(|| Ok(rayon::current_num_threads())).ok(),
            Some(2)
        );
    }

    #[test]
    fn thread_counts_outside_the_possible_range_are_errors() {
        for threads in [0, 5000] {
            let options = CpuOptions {
                threads: Some(threads),
                ..Default::default()
            };
            assert!(matches!(CpuContext::new(&options), Err(Error::Cpu(_))));
        }
    }
}
