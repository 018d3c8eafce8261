//! Shared test helpers: the GPU contexts to test on, random data, and the agreement check.
#![allow(dead_code)]

pub mod fuzz_inputs;
pub mod model_file;

use std::sync::Arc;

use pwlu::gpu::{Backend, GpuContext, GpuOptions, InputStage};
use pwlu::ops::Pwlu;
use pwlu::{Shape, Tensor};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Environment variable listing the backends to run the GPU tests on, e.g. `vulkan,gl` (default: `auto`).
pub const TEST_BACKENDS_ENV: &str = "PWLU_TEST_BACKENDS";

/// One context per backend under test. A missing adapter fails the test: GPU tests never pass by skipping.
pub fn contexts() -> Vec<GpuContext> {
    contexts_with(InputStage::Auto)
}

/// For each backend under test, a context whose kernels read their inputs through the input stage and one
/// whose kernels read them from their buffers, whatever the adapter would choose.
pub fn contexts_for_both_input_paths() -> Vec<GpuContext> {
    let mut all = contexts_with(InputStage::Always);
    all.extend(contexts_with(InputStage::Never));
    all
}

/// Every device under test: a GPU context per backend in `PWLU_TEST_BACKENDS`, then the CPU backend with
/// `CPU_TEST_THREADS` workers (more than one, so that the tests cover the split between threads).
pub fn devices() -> Vec<pwlu::Device> {
    let mut all: Vec<pwlu::Device> = contexts().into_iter().map(pwlu::Device::from).collect();
    all.push(cpu_device(CPU_TEST_THREADS));
    all
}

/// Worker threads of the CPU backend under test.
pub const CPU_TEST_THREADS: usize = 3;

/// The CPU backend with `threads` workers.
pub fn cpu_device(threads: usize) -> pwlu::Device {
    let options = pwlu::cpu::CpuOptions {
        threads: Some(threads),
        ..Default::default()
    };
    pwlu::cpu::CpuContext::new(&options)
        .expect("the CPU backend starts")
        .into()
}

/// One context per backend under test, staging inputs as `input_stage` says.
pub fn contexts_with(input_stage: InputStage) -> Vec<GpuContext> {
    let list = std::env::var(TEST_BACKENDS_ENV).unwrap_or_else(|_| "auto".into());
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|name| {
            let backend: Backend = name
                .parse()
                .unwrap_or_else(|e| panic!("{TEST_BACKENDS_ENV}: {e}"));
            let options = GpuOptions {
                backend,
                input_stage,
                ..Default::default()
            };
            GpuContext::new_blocking(&options)
                .unwrap_or_else(|e| panic!("GPU tests need an adapter for backend '{name}': {e}"))
        })
        .collect()
}

pub fn rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

pub fn random_vec(rng: &mut SmallRng, len: usize, scale: f32) -> Vec<f32> {
    (0..len)
        .map(|_| rng.random_range(-1.0f32..1.0) * scale)
        .collect()
}

pub fn random_tensor(rng: &mut SmallRng, shape: Shape) -> Tensor {
    let data = random_vec(rng, shape.len(), 1.0);
    Tensor::from_shape(shape, data).expect("shape and data agree")
}

/// A channel-wise PWLU near ReLU with perturbed points, bounds around the data's range: what training
/// produces, with slopes that stay moderate (the conformance suite's generator).
pub fn random_pwlu(rng: &mut SmallRng, units: usize, intervals: usize) -> Arc<Pwlu> {
    pwlu::conformance::uniform_pwlu(rng.random(), units, intervals)
}

/// A non-uniform PWLU with random, strictly increasing breakpoints (steps of 0.05 to 1), points near ReLU.
pub fn random_non_uniform_pwlu(rng: &mut SmallRng, units: usize, intervals: usize) -> Arc<Pwlu> {
    pwlu::conformance::non_uniform_pwlu(rng.random(), units, intervals)
}

/// The N + 1 grid points (or sorted breakpoints) of one unit, in f32.
pub fn pwlu_grid(pwlu: &Pwlu, unit: usize) -> Vec<f32> {
    let n = pwlu.intervals();
    let p = pwlu.unit(unit).expect("unit");
    match (p.bounds, p.breakpoints) {
        (Some([l, r]), _) => (0..=n).map(|i| l + (r - l) * i as f32 / n as f32).collect(),
        (_, Some(b)) => b.to_vec(),
        _ => Vec::new(),
    }
}

/// `max |gpu - cpu| <= tol * max(1, |cpu|)` element-wise; NaN must meet NaN and infinities must be equal.
pub fn assert_close(gpu: &Tensor, cpu: &Tensor, tol: f32, what: &str) {
    assert_eq!(gpu.dims(), cpu.dims(), "{what}: dims");
    let mut worst = (0.0f32, 0usize);
    for (i, (&g, &c)) in gpu.data().iter().zip(cpu.data()).enumerate() {
        if c.is_nan() || g.is_nan() {
            assert!(
                c.is_nan() && g.is_nan(),
                "{what}: element {i}: gpu {g}, cpu {c}"
            );
            continue;
        }
        if c.is_infinite() || g.is_infinite() {
            assert_eq!(g, c, "{what}: element {i}");
            continue;
        }
        let err = (g - c).abs() / c.abs().max(1.0);
        if err > worst.0 {
            worst = (err, i);
        }
    }
    assert!(
        worst.0 <= tol,
        "{what}: element {} differs by {:e} (relative), gpu {} cpu {}",
        worst.1,
        worst.0,
        gpu.data()[worst.1],
        cpu.data()[worst.1]
    );
}

/// The agreement every kernel must reach (issue 2).
pub const TOLERANCE: f32 = 1e-4;
