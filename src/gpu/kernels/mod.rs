//! Launchers, one per WGSL kernel: each checks shapes, packs parameters once, specialises its pipeline and
//! binds tensors into a [`Dispatch`](crate::gpu::Dispatch).

mod activation;
pub mod conv;
pub mod elementwise;
pub mod pool;

pub use conv::{Conv2dKernel, ConvVariant};
pub use elementwise::{BinaryKernel, FlattenKernel, SoftmaxKernel, UnaryKernel};
pub use pool::{GlobalAvgPoolKernel, Pool2dKernel};

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

fn run_single(ctx: &GpuContext, dispatch: Dispatch, output: GpuTensor) -> Result<GpuTensor> {
    ctx.submit(&[&dispatch])?;
    Ok(output)
}
