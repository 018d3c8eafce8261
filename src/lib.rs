//! # pwlu
//!
//! Portable WebGPU inference for convolutional classifiers whose activations are Piecewise Linear Units
//! (Zhou, Zhu, Zhong, "Learning specialized activation functions with the Piecewise Linear Unit", ICCV 2021).
//!
//! Data flows one way: model file, graph, optimised plan, a backend's kernels, logits. The modules follow it:
//!
//! - [`model`]: reading model files (safetensors with a JSON graph, see `docs/format.md`) and running them.
//! - `graph`: the validated graph and its optimisation passes (batch-norm folding, epilogue fusion).
//! - [`plan`]: backend-neutral lowering ([`plan::lower`]: the one place that picks the kernel for each node),
//!   activation memory placed by lifetime ([`plan::memory`]), and the [`plan::Backend`] trait backends implement.
//! - [`gpu`]: the wgpu backend: context, queue, textures, one launcher per WGSL kernel in `shaders/`.
//! - `cpu`: the CPU backend: NHWC kernels on SIMD cores, natively and in the browser's wasm.
//! - [`device`]: which backend a model runs on (`auto`: the GPU if it is a hardware one, else the CPU).
//! - `reference`: a plain-Rust reference for every kernel and `Graph::run_reference`, the ground truth of the
//!   tests.
//! - [`ops`]: what each operator is (hyper-parameters, weights, shape inference), independent of any backend;
//!   [`ops::pwlu`] holds the unit itself and its lookup form.
//! - [`preprocess`]: image decoding, PIL-compatible resizing, cropping and normalisation.
//! - [`tensor`]: host tensors in PyTorch's NCHW order.
//!
//! ```
//! use pwlu::gpu::{kernels::UnaryKernel, GpuContext, GpuOptions, GpuTensor};
//! use pwlu::ops::{Activation, Pwlu};
//! use pwlu::Tensor;
//! use std::sync::Arc;
//!
//! # fn main() -> pwlu::Result<()> {
//! let ctx = GpuContext::new_blocking(&GpuOptions::default())?;
//! let unit = Arc::new(Pwlu::relu6(1)?);
//! let x = Tensor::new(vec![1, 1, 1, 4], vec![-1.0, 0.5, 3.0, 9.0])?;
//! let kernel = UnaryKernel::activation(&ctx, &Activation::Pwlu(unit), x.shape())?;
//! let y = kernel.run(&ctx, &GpuTensor::upload(&ctx, &x)?)?.download_blocking(&ctx)?;
//! assert_eq!(y.data(), &[0.0, 0.5, 3.0, 6.0]);
//! # Ok(())
//! # }
//! ```

pub mod cpu;
pub mod device;
pub mod error;
pub mod gpu;
pub mod model;
pub mod ops;
pub mod plan;
pub mod preprocess;
pub mod tensor;

// Internals: public for the integration tests, the fuzzers and the benchmarks; hidden from the documentation
// and not a stable API.
#[doc(hidden)]
pub mod conformance;
#[doc(hidden)]
pub mod graph;
#[doc(hidden)]
pub mod reference;

pub use device::Device;
pub use error::{Error, Result};
pub use model::{Class, Model};
pub use tensor::{Shape, Tensor, TensorView};

/// The README's examples, compiled as doctests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
