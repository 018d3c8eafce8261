//! What an application chooses about the GPU: the graphics API, the adapter, whether kernels stage their
//! inputs; and what it can learn about the adapters before choosing.

use std::str::FromStr;

use crate::error::{Error, Result};

/// Environment variable that selects the backend when the options leave it on `Auto`.
pub const BACKEND_ENV: &str = "PWLU_BACKEND";

/// Environment variable that selects [`InputStage`] when the options leave it on `Auto`.
pub const INPUT_STAGE_ENV: &str = "PWLU_INPUT_STAGE";

/// Which graphics API wgpu should use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// `PWLU_BACKEND` if set, otherwise whatever wgpu finds best.
    #[default]
    Auto,
    /// Vulkan (Linux, Windows, Android; Mesa's lavapipe without a GPU).
    Vulkan,
    /// Metal (macOS, iOS).
    Metal,
    /// Direct3D 12 (Windows).
    Dx12,
    /// OpenGL / OpenGL ES (Mesa's llvmpipe without a GPU).
    Gl,
    /// The browser's WebGPU (wasm32 only).
    WebGpu,
    /// No GPU: the CPU backend ([`crate::cpu`]), chosen through [`crate::device`]; a
    /// [`GpuContext`](crate::gpu::GpuContext) cannot be created for it.
    Cpu,
}

impl From<wgpu::Backend> for Backend {
    /// The backend an adapter reports, to ask for the same one again.
    fn from(backend: wgpu::Backend) -> Self {
        match backend {
            wgpu::Backend::Vulkan => Backend::Vulkan,
            wgpu::Backend::Metal => Backend::Metal,
            wgpu::Backend::Dx12 => Backend::Dx12,
            wgpu::Backend::Gl => Backend::Gl,
            wgpu::Backend::BrowserWebGpu => Backend::WebGpu,
            wgpu::Backend::Noop => Backend::Auto,
        }
    }
}

impl FromStr for Backend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Backend::Auto),
            "vulkan" | "vk" => Ok(Backend::Vulkan),
            "metal" | "mtl" => Ok(Backend::Metal),
            "dx12" | "d3d12" => Ok(Backend::Dx12),
            "gl" | "gles" | "opengl" => Ok(Backend::Gl),
            "webgpu" | "browser" => Ok(Backend::WebGpu),
            "cpu" => Ok(Backend::Cpu),
            _ => Err(Error::UnknownBackend(s.to_string())),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Backend::Auto => "auto",
            Backend::Vulkan => "vulkan",
            Backend::Metal => "metal",
            Backend::Dx12 => "dx12",
            Backend::Gl => "gl",
            Backend::WebGpu => "webgpu",
            Backend::Cpu => "cpu",
        };
        f.write_str(name)
    }
}

impl Backend {
    /// `Auto` resolved through `PWLU_BACKEND`; an unparsable variable is an error rather than ignored.
    pub fn resolve(self) -> Result<Backend> {
        if self != Backend::Auto {
            return Ok(self);
        }
        match std::env::var(BACKEND_ENV) {
            Ok(value) => value.parse(),
            Err(_) => Ok(Backend::Auto),
        }
    }

    pub(super) fn wgpu_backends(self) -> wgpu::Backends {
        match self {
            Backend::Auto => wgpu::Backends::all(),
            Backend::Vulkan => wgpu::Backends::VULKAN,
            Backend::Metal => wgpu::Backends::METAL,
            Backend::Dx12 => wgpu::Backends::DX12,
            Backend::Gl => wgpu::Backends::GL,
            Backend::WebGpu => wgpu::Backends::BROWSER_WEBGPU,
            Backend::Cpu => wgpu::Backends::empty(),
        }
    }

    /// What to install or change when this backend has no adapter.
    pub fn install_hint(self) -> &'static str {
        if cfg!(target_arch = "wasm32") {
            return "this browser exposes no WebGPU adapter; use a recent Chrome or Edge, or Firefox / Safari \
                    with WebGPU enabled (Chromium on Linux: --enable-unsafe-webgpu)";
        }
        match self {
            Backend::Vulkan | Backend::Auto => {
                "install a Vulkan driver (without a GPU, Mesa's lavapipe: apt-get install mesa-vulkan-drivers)"
            }
            Backend::Gl => "install an OpenGL driver with EGL (Mesa: apt-get install libegl-mesa0 libgl1-mesa-dri)",
            Backend::Metal => "Metal is available on macOS and iOS only",
            Backend::Dx12 => "Direct3D 12 is available on Windows 10 and later only",
            Backend::WebGpu => "the browser's WebGPU exists only in wasm32 builds",
            Backend::Cpu => "the cpu backend uses no GPU adapter; load models on a pwlu::device::Device",
        }
    }
}

/// Whether the convolutions, global pooling and the GEMM yardstick read their input through the *input
/// stage*: a copy into a texture before each such dispatch (shaders/shared/staged_input.wgsl), or straight from
/// the storage buffer (shaders/shared/buffer_input.wgsl).
///
/// On CPU-emulated adapters a texel read serves a SIMD batch of invocations where a storage-buffer load is a
/// loop over them, and the copy pays for itself many times (MobileNet-V2 0.68x the time on SwiftShader,
/// Lite0 0.55x on lavapipe). On a GPU both reads go through the same caches and the copy is one more pass over
/// every input, with a barrier, per layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InputStage {
    /// `PWLU_INPUT_STAGE` if set; otherwise staged except on discrete and integrated GPUs (so on CPU adapters,
    /// and in browsers, which do not say what their adapter is).
    #[default]
    Auto,
    /// Always through the stage.
    Always,
    /// Always from the storage buffer.
    Never,
}

impl FromStr for InputStage {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(InputStage::Auto),
            "always" | "on" | "staged" => Ok(InputStage::Always),
            "never" | "off" | "buffer" => Ok(InputStage::Never),
            _ => Err(Error::UnknownInputStage(s.to_string())),
        }
    }
}

impl std::fmt::Display for InputStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InputStage::Auto => "auto",
            InputStage::Always => "always",
            InputStage::Never => "never",
        })
    }
}

impl InputStage {
    /// `Auto` resolved through `PWLU_INPUT_STAGE` and then the adapter's type: whether to stage.
    pub(super) fn stages(self, device_type: wgpu::DeviceType) -> Result<bool> {
        let choice = match self {
            InputStage::Auto => match std::env::var(INPUT_STAGE_ENV) {
                Ok(value) => value.parse()?,
                Err(_) => InputStage::Auto,
            },
            chosen => chosen,
        };
        Ok(match choice {
            InputStage::Always => true,
            InputStage::Never => false,
            InputStage::Auto => !matches!(
                device_type,
                wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu
            ),
        })
    }
}

/// How to choose the GPU.
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Graphics API; `Auto` consults `PWLU_BACKEND`.
    pub backend: Backend,
    /// Prefer the discrete GPU (the default) or the integrated one.
    pub power_preference: wgpu::PowerPreference,
    /// Pick the n-th adapter of [`list_adapters`] instead of letting wgpu choose (native only).
    pub adapter_index: Option<usize>,
    /// Whether kernels read their input through the input stage; `Auto` consults `PWLU_INPUT_STAGE`, then the
    /// adapter's type.
    pub input_stage: InputStage,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            backend: Backend::Auto,
            power_preference: wgpu::PowerPreference::HighPerformance,
            adapter_index: None,
            input_stage: InputStage::Auto,
        }
    }
}

/// What a context runs on.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// e.g. "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// e.g. Vulkan.
    pub backend: wgpu::Backend,
    /// Discrete, integrated, CPU, ...
    pub device_type: wgpu::DeviceType,
    /// Driver name and version as reported.
    pub driver: String,
}

impl From<&wgpu::AdapterInfo> for AdapterSummary {
    fn from(info: &wgpu::AdapterInfo) -> Self {
        AdapterSummary {
            name: info.name.clone(),
            backend: info.backend,
            device_type: info.device_type,
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
        }
    }
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({:?}, {:?})",
            self.name, self.backend, self.device_type
        )
    }
}

/// The adapters wgpu can see for `backend` (native only; the browser exposes one).
pub async fn list_adapters(backend: Backend) -> Result<Vec<wgpu::Adapter>> {
    let instance = make_instance(backend.resolve()?);
    Ok(instance
        .enumerate_adapters(backend.resolve()?.wgpu_backends())
        .await)
}

pub(super) fn make_instance(backend: Backend) -> wgpu::Instance {
    make_instance_for(backend.wgpu_backends())
}

pub(super) fn make_instance_for(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}
