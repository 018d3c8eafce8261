//! The wgpu backend: the context (adapter, device, limits, buffers), the queue (submission, read-back,
//! timestamps), textures (tables, the input stage), tensors in NHWC4 layout, one launcher per WGSL kernel, the
//! shader registry, and the implementation of [`crate::plan::Backend`] that lowering uses.

mod backend;
pub mod context;
#[doc(hidden)]
pub mod dispatch;
pub mod kernels;
pub mod options;
mod pipelines;
pub mod queue;
mod run;
#[doc(hidden)]
pub mod shaders;
pub mod tensor;
mod textures;

pub use context::GpuContext;
#[doc(hidden)]
pub use dispatch::Dispatch;
pub use options::{
    list_adapters, AdapterSummary, Backend, GpuOptions, InputStage, BACKEND_ENV, INPUT_STAGE_ENV,
};
#[doc(hidden)]
pub use pipelines::{Constants, Pipeline};
pub use queue::{ReadBack, TimedRun};
pub use run::PendingOutput;
pub use tensor::GpuTensor;

/// A plan lowered to the GPU's kernels.
pub type GpuPlan = crate::plan::Plan<GpuContext>;
