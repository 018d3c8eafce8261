//! The GPU side: runtime (adapter, device, pipelines, dispatches), tensors in NHWC4 layout, and one launcher
//! per WGSL kernel.

pub mod context;
pub mod dispatch;
pub mod kernels;
mod pipelines;
pub mod shaders;
pub mod tensor;

pub use context::{
    list_adapters, AdapterSummary, Backend, GpuContext, GpuOptions, InputStage, BACKEND_ENV,
    INPUT_STAGE_ENV,
};
pub use dispatch::Dispatch;
pub use pipelines::{Constants, Pipeline};
pub use tensor::GpuTensor;
