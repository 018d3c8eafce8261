//! Launchers, one per WGSL kernel: each checks shapes, packs parameters once, specialises its pipeline and
//! binds tensors into a [`crate::gpu::Dispatch`].

mod activation;
pub mod channels;
pub mod conv;
pub mod elementwise;
pub mod matmul;
pub mod pool;
mod uploads;

pub use channels::{
    AdaptiveAvgPoolKernel, CopyChannelsKernel, LayerNormKernel, SelectChannelsKernel,
};
pub use conv::{Conv2dKernel, ConvShape, ConvVariant};
pub use elementwise::{BinaryKernel, FlattenKernel, SoftmaxKernel, UnaryKernel};
pub use matmul::{BoundMatmul, MatmulKernel};
pub use pool::{GlobalAvgPoolKernel, Pool2dKernel};
pub use uploads::SharedUploads;

use super::context::GpuContext;
use super::dispatch::Dispatch;
use super::tensor::GpuTensor;
use crate::error::{Error, Result};
use crate::tensor::Shape;

fn check_input(what: &'static str, tensor: &GpuTensor, expected: Shape) -> Result<()> {
    if tensor.shape() != expected {
        return Err(Error::invalid_op(
            what,
            format!("expected a tensor of {expected}, got {}", tensor.shape()),
        ));
    }
    Ok(())
}

/// Kernels index invocations with u32.
fn check_invocations(op: &'static str, invocations: u64) -> Result<()> {
    if invocations > u64::from(u32::MAX) - 4096 {
        return Err(Error::invalid_op(
            op,
            format!("{invocations} invocations exceed the u32 index range"),
        ));
    }
    Ok(())
}

/// Workgroups of `pipeline` that cover `invocations` (one-dimensional kernels).
fn workgroups(pipeline: &crate::gpu::pipelines::Pipeline, invocations: u64) -> u64 {
    invocations.div_ceil(u64::from(pipeline.shader.workgroup_size))
}

/// Binds the `input` (binding 0) and `output` (binding 4) of a kernel that reads and writes one tensor each,
/// after checking their shapes; `workgroups` sizes the grid.
fn bind_input_output(
    ctx: &GpuContext,
    op: &'static str,
    pipeline: &std::sync::Arc<super::pipelines::Pipeline>,
    input: (&GpuTensor, Shape),
    output: (&GpuTensor, Shape),
    workgroups: u64,
) -> Result<Dispatch> {
    bind_with(ctx, op, pipeline, input, output, &[], workgroups)
}

/// [`bind_input_output`] for a kernel with more bindings (`constants`: weights, indices, sizes).
fn bind_with(
    ctx: &GpuContext,
    op: &'static str,
    pipeline: &std::sync::Arc<super::pipelines::Pipeline>,
    (input, expected_input): (&GpuTensor, Shape),
    (output, expected_output): (&GpuTensor, Shape),
    constants: &[(u32, super::dispatch::Resource<'_>)],
    workgroups: u64,
) -> Result<Dispatch> {
    check_input(op, input, expected_input)?;
    check_input(op, output, expected_output)?;
    let mut resources = vec![(0, input.resource()), (4, output.resource())];
    resources.extend(constants.iter().cloned());
    resources.sort_by_key(|&(binding, _)| binding);
    Dispatch::new(ctx, std::sync::Arc::clone(pipeline), &resources, workgroups)
}

/// A kernel's sizes as the `u32` words of its uniform, or an error naming `op` where one does not fit.
fn uniform_words<const N: usize>(op: &'static str, sizes: [usize; N]) -> Result<[u32; N]> {
    let mut words = [0u32; N];
    for (word, size) in words.iter_mut().zip(sizes) {
        *word = u32::try_from(size).map_err(|_| {
            Error::invalid_op(op, format!("a size of {size} does not fit in 32 bits"))
        })?;
    }
    Ok(words)
}

fn run_single(ctx: &GpuContext, dispatch: Dispatch, output: GpuTensor) -> Result<GpuTensor> {
    ctx.submit(&[&dispatch])?;
    Ok(output)
}
