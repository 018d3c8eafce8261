//! Where a model runs: a GPU through wgpu, or the CPU backend, and the rule that picks one.
//!
//! `Auto` (the default) runs on the GPU when wgpu's preferred adapter is a hardware one, and on the CPU
//! backend when there is no adapter or the best one is a software renderer (lavapipe, llvmpipe,
//! SwiftShader, WARP): those emulate a GPU on the same cores the CPU backend uses directly, many times more
//! slowly (docs/cpu.md). `--backend cpu` / `PWLU_BACKEND=cpu` forces the CPU; naming a graphics API or an
//! adapter forces the GPU.

use std::sync::Arc;

use crate::cpu::CpuContext;
#[cfg(not(target_arch = "wasm32"))]
use crate::cpu::CpuOptions;
#[cfg(not(target_arch = "wasm32"))]
use crate::error::Result;
use crate::gpu::GpuContext;
#[cfg(not(target_arch = "wasm32"))]
use crate::gpu::{Backend, GpuOptions};

/// What a model runs on.
#[derive(Clone, Debug)]
pub enum Device {
    /// A wgpu device.
    Gpu(Arc<GpuContext>),
    /// The CPU backend's thread pool.
    Cpu(Arc<CpuContext>),
}

impl From<Arc<GpuContext>> for Device {
    fn from(ctx: Arc<GpuContext>) -> Self {
        Device::Gpu(ctx)
    }
}

impl From<GpuContext> for Device {
    // In the browser wgpu's types are not Send, and the context stays on one thread anyway.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    fn from(ctx: GpuContext) -> Self {
        Device::Gpu(Arc::new(ctx))
    }
}

impl From<Arc<CpuContext>> for Device {
    fn from(ctx: Arc<CpuContext>) -> Self {
        Device::Cpu(ctx)
    }
}

impl From<CpuContext> for Device {
    fn from(ctx: CpuContext) -> Self {
        Device::Cpu(Arc::new(ctx))
    }
}

impl Device {
    /// `gpu` or `cpu`.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Device::Gpu(_) => "gpu",
            Device::Cpu(_) => "cpu",
        }
    }

    /// e.g. `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)` or `CPU (2 threads, AVX-512)`.
    pub fn describe(&self) -> String {
        match self {
            Device::Gpu(ctx) => ctx.adapter().to_string(),
            Device::Cpu(ctx) => ctx.describe(),
        }
    }

    /// The GPU context, if this is a GPU.
    pub fn gpu(&self) -> Option<&Arc<GpuContext>> {
        match self {
            Device::Gpu(ctx) => Some(ctx),
            Device::Cpu(_) => None,
        }
    }

    /// The CPU context, if this is the CPU backend.
    pub fn cpu(&self) -> Option<&Arc<CpuContext>> {
        match self {
            Device::Gpu(_) => None,
            Device::Cpu(ctx) => Some(ctx),
        }
    }
}

/// How to choose the device.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Clone, Debug, Default)]
pub struct DeviceOptions {
    /// The backend (`Auto`, a graphics API, or `Cpu`) and, for a GPU, which one.
    pub gpu: GpuOptions,
    /// Threads and memory for the CPU backend.
    pub cpu: CpuOptions,
}

/// The device chosen, and why.
#[derive(Clone, Debug)]
pub struct Selected {
    /// What models will run on.
    pub device: Device,
    /// One line for users: why this device (e.g. `the only GPU adapter, llvmpipe, is a software renderer`).
    pub reason: String,
}

/// Chooses and starts the device `options` ask for (see the module's rule), blocking.
#[cfg(not(target_arch = "wasm32"))]
pub fn select_blocking(options: &DeviceOptions) -> Result<Selected> {
    pollster::block_on(select(options))
}

/// Chooses and starts the device `options` ask for (see the module's rule).
#[cfg(not(target_arch = "wasm32"))]
pub async fn select(options: &DeviceOptions) -> Result<Selected> {
    let cpu = |reason: String| -> Result<Selected> {
        Ok(Selected {
            device: Device::Cpu(Arc::new(CpuContext::new(&options.cpu)?)),
            reason,
        })
    };
    let backend = options.gpu.backend.resolve()?;
    if backend == Backend::Cpu {
        return cpu(if options.gpu.backend == Backend::Cpu {
            "asked for (backend cpu)".into()
        } else {
            format!("asked for ({}=cpu)", crate::gpu::BACKEND_ENV)
        });
    }
    let explicit = backend != Backend::Auto || options.gpu.adapter_index.is_some();
    let adapter = match crate::gpu::context::choose_adapter(&options.gpu).await {
        Ok(adapter) => adapter,
        Err(e) if !explicit => return cpu(format!("no GPU adapter ({e})")),
        Err(e) => return Err(e),
    };
    let info = adapter.get_info();
    if !explicit && info.device_type == wgpu::DeviceType::Cpu {
        return cpu(format!(
            "the best GPU adapter, {}, is a software renderer on these same cores",
            info.name
        ));
    }
    let reason = if explicit {
        format!("asked for ({backend} adapter {})", info.name)
    } else {
        format!("{} is a {:?} GPU", info.name, info.device_type)
    };
    Ok(Selected {
        device: Device::Gpu(Arc::new(
            GpuContext::with_adapter(adapter, &options.gpu).await?,
        )),
        reason,
    })
}
