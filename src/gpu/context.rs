//! The GPU runtime: adapter selection, the device with the adapter's real limits, submission and read-back.

use std::str::FromStr;
use std::sync::{Arc, Mutex};

use super::dispatch::Dispatch;
use super::pipelines::{Constants, Pipeline, PipelineCache};
use super::shaders::Shader;
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

    fn wgpu_backends(self) -> wgpu::Backends {
        match self {
            Backend::Auto => wgpu::Backends::all(),
            Backend::Vulkan => wgpu::Backends::VULKAN,
            Backend::Metal => wgpu::Backends::METAL,
            Backend::Dx12 => wgpu::Backends::DX12,
            Backend::Gl => wgpu::Backends::GL,
            Backend::WebGpu => wgpu::Backends::BROWSER_WEBGPU,
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
    fn stages(self, device_type: wgpu::DeviceType) -> Result<bool> {
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

fn make_instance(backend: Backend) -> wgpu::Instance {
    make_instance_for(backend.wgpu_backends())
}

fn make_instance_for(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// A device and queue with everything created on them: the entry point of the GPU side.
///
/// Cheap to share: clone the `Arc` it usually lives in. Pipelines are cached per shader and specialisation,
/// so two layers of the same shape share one.
pub struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: AdapterSummary,
    limits: wgpu::Limits,
    pipelines: PipelineCache,
    errors: Arc<Mutex<Vec<String>>>,
    /// Set by wgpu's device-lost callback: why the device went away.
    lost: Arc<Mutex<Option<String>>>,
    placeholder: wgpu::Buffer,
    placeholder_table: wgpu::Texture,
    /// Nearest, clamp-to-edge: how kernels read their tables (see shaders/shared/table.wgsl).
    table_sampler: wgpu::Sampler,
    /// The texture kernels read their input through (see [`GpuContext::input_stage`]).
    input_stage: Mutex<Option<wgpu::Texture>>,
    /// Whether kernels that can read their input through the stage do (see [`InputStage`]).
    stages_inputs: bool,
    timestamps: bool,
}

/// Texels per row of the texture that staged inputs are copied into (`STAGE_WIDTH_LOG2` in
/// shaders/shared/staged_input.wgsl): a power of two, so that kernels find a texel with a mask and a shift, and
/// within WebGPU's default `max_texture_dimension_2d` of 8192.
pub(crate) const STAGE_WIDTH: u32 = 4096;

impl GpuContext {
    /// Finds an adapter and creates a device with the adapter's own limits.
    ///
    /// ```no_run
    /// # fn main() -> pwlu::Result<()> {
    /// use pwlu::gpu::{Backend, GpuContext, GpuOptions};
    /// let options = GpuOptions { backend: Backend::Vulkan, ..Default::default() };
    /// let ctx = GpuContext::new_blocking(&options)?; // natively; `GpuContext::new(&options).await` on the web
    /// println!("running on {}", ctx.adapter());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn new(options: &GpuOptions) -> Result<Self> {
        let backend = options.backend.resolve()?;
        if backend == Backend::WebGpu && !cfg!(target_arch = "wasm32") {
            return Err(Error::NoAdapter {
                backend: backend.to_string(),
                hint: backend.install_hint().into(),
            });
        }
        let no_adapter = |detail: String| Error::NoAdapter {
            backend: backend.to_string(),
            hint: format!("{}; {detail}", backend.install_hint()),
        };
        let adapter = match options.adapter_index {
            Some(index) => {
                let instance = make_instance(backend);
                let adapters = instance.enumerate_adapters(backend.wgpu_backends()).await;
                let count = adapters.len();
                adapters.into_iter().nth(index).ok_or_else(|| {
                    no_adapter(format!("adapter {index} asked for, {count} found"))
                })?
            }
            None => {
                let request = wgpu::RequestAdapterOptions {
                    power_preference: options.power_preference,
                    ..Default::default()
                };
                // `Auto` tries the primary APIs first and starts GL (and its EGL probing) only if they fail.
                let first = if backend == Backend::Auto && !cfg!(target_arch = "wasm32") {
                    make_instance_for(wgpu::Backends::PRIMARY)
                        .request_adapter(&request)
                        .await
                } else {
                    make_instance(backend).request_adapter(&request).await
                };
                match first {
                    Ok(adapter) => adapter,
                    Err(_) if backend == Backend::Auto && !cfg!(target_arch = "wasm32") => {
                        make_instance_for(wgpu::Backends::SECONDARY)
                            .request_adapter(&request)
                            .await
                            .map_err(|e| no_adapter(e.to_string()))?
                    }
                    Err(e) => return Err(no_adapter(e.to_string())),
                }
            }
        };
        let info = adapter.get_info();
        let stages_inputs = options.input_stage.stages(info.device_type)?;
        if !adapter
            .get_downlevel_capabilities()
            .flags
            .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
        {
            return Err(no_adapter(format!("{} has no compute shaders", info.name)));
        }
        let limits = adapter.limits();
        // Timestamps are only for profiling; take them where the adapter offers them.
        let features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("pwlu"),
                required_features: features,
                required_limits: limits.clone(),
                memory_hints: wgpu::MemoryHints::Performance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::DeviceRequest {
                adapter: info.name.clone(),
                reason: e.to_string(),
            })?;

        // Errors not caught elsewhere are kept and returned by the next submission instead of panicking.
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&errors);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut list) = sink.lock() {
                list.push(e.to_string());
            }
        }));
        let lost = Arc::new(Mutex::new(None));
        let lost_sink = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut lost) = lost_sink.lock() {
                let why = match reason {
                    wgpu::DeviceLostReason::Destroyed => "destroyed",
                    wgpu::DeviceLostReason::Unknown => "lost",
                };
                *lost = Some(if message.is_empty() {
                    why.to_string()
                } else {
                    format!("{why}: {message}")
                });
            }
        });
        let placeholder = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unused binding"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let placeholder_table = device.create_texture(&table_descriptor("unused table", 1, 1));
        let table_sampler = device.create_sampler(&wgpu::SamplerDescriptor {
            label: Some("table reads"),
            ..Default::default()
        });
        Ok(GpuContext {
            placeholder_table,
            table_sampler,
            pipelines: PipelineCache::default(),
            adapter: AdapterSummary::from(&info),
            // What the device really has, which is what every check against a limit must use.
            limits: device.limits(),
            device,
            queue,
            errors,
            lost,
            placeholder,
            input_stage: Mutex::new(None),
            stages_inputs,
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
        })
    }

    /// [`GpuContext::new`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(options: &GpuOptions) -> Result<Self> {
        pollster::block_on(Self::new(options))
    }

    /// The adapter this context runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    /// The device's limits, as the device reports them: the adapter's own, not wgpu's defaults.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// Whether the device writes GPU timestamps (for [`GpuContext::time_dispatches`]).
    pub fn has_timestamps(&self) -> bool {
        self.timestamps
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Whether kernels that can read their input through the input stage do (see [`InputStage`]).
    pub fn stages_inputs(&self) -> bool {
        self.stages_inputs
    }

    /// The pipeline of `shader` specialised by `constants`, created on first use. A kernel that reads its input
    /// through the input stage gets its variant that reads the storage buffer where this context does not stage.
    pub(crate) fn pipeline(&self, shader: &Shader, constants: &Constants) -> Result<Arc<Pipeline>> {
        let shader = if self.stages_inputs {
            *shader
        } else {
            shader.with_buffer_input()
        };
        self.pipelines
            .get(&self.device, &shader, constants, || self.take_errors())
    }

    /// Number of distinct pipelines this context has created.
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.len()
    }

    /// A tiny buffer to bind where a kernel's binding is unused (no residual, no affine parameters).
    pub(crate) fn placeholder(&self) -> &wgpu::Buffer {
        &self.placeholder
    }

    /// The sampler kernels read their tables through (shaders/shared/table.wgsl).
    pub(crate) fn table_sampler(&self) -> &wgpu::Sampler {
        &self.table_sampler
    }

    /// A one-texel table to bind where a kernel's table is unused (no PWLU).
    pub(crate) fn placeholder_table(&self) -> &wgpu::Texture {
        &self.placeholder_table
    }

    /// The texture a kernel reads its input through, at least `rows` rows of [`STAGE_WIDTH`] texels: one per
    /// context, shared by every dispatch that stages its input (each copies its input in just before it runs,
    /// see [`StagedCopy`](super::dispatch::StagedCopy)). A larger request replaces it for later dispatches;
    /// those already bound keep the old one. A plan asks for its largest input first.
    pub(crate) fn input_stage(&self, rows: u32) -> Result<wgpu::Texture> {
        let limit = self.limits.max_texture_dimension_2d;
        if STAGE_WIDTH > limit || rows > limit {
            return Err(Error::InvalidOp {
                op: "input staging",
                reason: format!(
                    "an input of {rows} rows of {STAGE_WIDTH} texels does not fit in the device's \
                     max_texture_dimension_2d of {limit}"
                ),
            });
        }
        let mut stage = self
            .input_stage
            .lock()
            .map_err(|_| Error::Gpu("the input stage's lock was poisoned".into()))?;
        match stage.as_ref() {
            Some(texture) if texture.height() >= rows => Ok(texture.clone()),
            _ => {
                let texture = self.device.create_texture(&table_descriptor(
                    "input stage",
                    STAGE_WIDTH,
                    rows.max(1),
                ));
                *stage = Some(texture.clone());
                Ok(texture)
            }
        }
    }

    /// Rows per block of a [`Table`] of `rows` rows on this device.
    pub(crate) fn table_block_rows(&self, rows: usize) -> usize {
        let limit = self.limits.max_texture_dimension_2d as usize;
        // A multiple of 4, so that the 4 rows a kernel reads per vec4 of inputs are in one block.
        if rows <= limit {
            rows
        } else {
            limit - limit % 4
        }
    }

    /// A matrix of `rgba32float` texels, `width` per row, for an [`Access::Table`](super::shaders::Access::Table)
    /// binding; `data.len()` must be a whole number of rows. Row `r` of the matrix is texture row
    /// `r % block_rows` ([`Self::table_block_rows`]), starting at texel `(r / block_rows) * width`: blocks of
    /// rows side by side where the matrix has more rows than the device's `max_texture_dimension_2d`
    /// (`table_read` in shaders/shared/table.wgsl reads it).
    pub(crate) fn table(&self, label: &str, data: &[f32], width: usize) -> Result<wgpu::Texture> {
        let limit = self.limits.max_texture_dimension_2d as usize;
        let rows = (data.len() / 4).checked_div(width).unwrap_or(0);
        if rows == 0 || width * rows * 4 != data.len() {
            return Err(Error::Gpu(format!(
                "{label}: {} floats do not make rows of {width} texels",
                data.len()
            )));
        }
        let block_rows = self.table_block_rows(rows);
        let blocks = rows.div_ceil(block_rows);
        if width * blocks > limit {
            return Err(Error::InvalidOp {
                op: "lookup table",
                reason: format!(
                    "{label} needs {rows} rows of {width} texels, more than fit in the device's \
                     max_texture_dimension_2d of {limit} squared"
                ),
            });
        }
        let texels = fold_rows(data, width, block_rows);
        let texture = self.device.create_texture(&table_descriptor(
            label,
            (width * blocks) as u32,
            block_rows as u32,
        ));
        self.queue.write_texture(
            texture.as_image_copy(),
            bytemuck::cast_slice(&texels),
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some((width * blocks * 16) as u32),
                rows_per_image: None,
            },
            texture.size(),
        );
        Ok(texture)
    }

    /// Checks `bytes` against the storage-binding and buffer-size limits.
    pub(crate) fn check_buffer_size(&self, what: &str, bytes: u64) -> Result<()> {
        let checks = [
            (
                self.limits.max_storage_buffer_binding_size,
                "max_storage_buffer_binding_size",
            ),
            (self.limits.max_buffer_size, "max_buffer_size"),
        ];
        for (limit, limit_name) in checks {
            if bytes > limit {
                return Err(Error::ExceedsLimit {
                    what: what.to_string(),
                    bytes,
                    limit_name,
                    limit,
                });
            }
        }
        Ok(())
    }

    /// A zero-filled storage buffer for tensors (at least 16 bytes), which may be written, copied and read back.
    pub(crate) fn tensor_buffer(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(16),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A storage buffer initialised with `data` (at least 16 bytes, as bindings must not be empty).
    pub(crate) fn storage_buffer(&self, label: &str, data: &[f32]) -> Result<wgpu::Buffer> {
        let bytes = (data.len() as u64) * 4;
        self.check_buffer_size(label, bytes)?;
        let size = bytes.max(16).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        if !data.is_empty() {
            self.queue
                .write_buffer(&buffer, 0, bytemuck::cast_slice(data));
        }
        Ok(buffer)
    }

    /// A uniform buffer initialised with `data` (a kernel's sizes).
    pub(crate) fn uniform_buffer(&self, label: &str, data: &[u32]) -> wgpu::Buffer {
        let size = ((data.len() as u64) * 4).max(16).next_multiple_of(16);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if !data.is_empty() {
            self.queue
                .write_buffer(&buffer, 0, bytemuck::cast_slice(data));
        }
        buffer
    }

    /// Records `dispatches` and submits them as one command buffer: consecutive dispatches share a compute
    /// pass, which ends where a dispatch's input must first be copied into its stage.
    pub fn submit(&self, dispatches: &[&Dispatch]) -> Result<wgpu::SubmissionIndex> {
        self.check_alive()?;
        let encoder = self.encode(dispatches);
        let index = self.queue.submit([encoder.finish()]);
        self.take_errors()?;
        Ok(index)
    }

    fn encode(&self, dispatches: &[&Dispatch]) -> wgpu::CommandEncoder {
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("pwlu"),
            });
        let mut rest = dispatches;
        while let Some((first, _)) = rest.split_first() {
            if let Some(stage) = first.stage() {
                stage.record(&mut encoder);
            }
            let until_next_copy = rest[1..]
                .iter()
                .position(|d| d.stage().is_some())
                .map_or(rest.len(), |i| i + 1);
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("pwlu"),
                timestamp_writes: None,
            });
            for dispatch in &rest[..until_next_copy] {
                dispatch.record(&mut pass);
            }
            drop(pass);
            rest = &rest[until_next_copy..];
        }
        encoder
    }

    /// Submits `dispatches` followed by a copy of `bytes` of `buffer` from `offset` into a fresh staging buffer,
    /// in one command buffer. Once this returns, `buffer` may be overwritten by later submissions; the copy
    /// is read with [`ReadBack::read`].
    pub fn submit_and_read_back(
        &self,
        dispatches: &[&Dispatch],
        buffer: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) -> Result<ReadBack> {
        self.check_alive()?;
        let size = bytes.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT).max(4);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read-back"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.encode(dispatches);
        encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
        self.queue.submit([encoder.finish()]);
        self.take_errors()?;
        Ok(ReadBack { staging, bytes })
    }

    /// GPU time of each dispatch in seconds, measured by timestamps around each one in one submission, or
    /// `None` where the device has no timestamp queries.
    pub async fn time_dispatches(&self, dispatches: &[&Dispatch]) -> Result<Option<Vec<f64>>> {
        match self.submit_timed(dispatches)? {
            Some(run) => Ok(Some(run.read(self).await?)),
            None => Ok(None),
        }
    }

    /// Submits `dispatches` with a timestamp before and after each (each in its own compute pass, so the
    /// figures hold no submission or host overhead, nor the copy of a staged input, which precedes the pass);
    /// `None` where the device has no timestamp queries.
    pub fn submit_timed(&self, dispatches: &[&Dispatch]) -> Result<Option<TimedRun>> {
        if !self.timestamps {
            return Ok(None);
        }
        self.check_alive()?;
        // A query set holds at most 4096 queries, two per dispatch.
        if dispatches.len() > 2048 {
            return Err(Error::Gpu(format!(
                "{} dispatches are more than one timestamp query set can time (2048)",
                dispatches.len()
            )));
        }
        let count = 2 * dispatches.len().max(1) as u32;
        let queries = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("layer timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let bytes = u64::from(count) * 8;
        let resolved = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("resolved timestamps"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("pwlu timed"),
            });
        for (i, dispatch) in dispatches.iter().enumerate() {
            let begin = 2 * i as u32;
            if let Some(stage) = dispatch.stage() {
                stage.record(&mut encoder);
            }
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(dispatch.label()),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &queries,
                    beginning_of_pass_write_index: Some(begin),
                    end_of_pass_write_index: Some(begin + 1),
                }),
            });
            dispatch.record(&mut pass);
        }
        if dispatches.is_empty() {
            return Ok(Some(TimedRun {
                read_back: None,
                period_ns: 0.0,
            }));
        }
        encoder.resolve_query_set(&queries, 0..count, &resolved, 0);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamp read-back"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        encoder.copy_buffer_to_buffer(&resolved, 0, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        self.take_errors()?;
        Ok(Some(TimedRun {
            read_back: Some(ReadBack { staging, bytes }),
            period_ns: f64::from(self.queue.get_timestamp_period()),
        }))
    }

    /// True once the device is lost; every later call on this context fails with [`Error::DeviceLost`].
    pub fn is_lost(&self) -> bool {
        self.lost.lock().map_or(true, |lost| lost.is_some())
    }

    /// [`Error::DeviceLost`] once the device is gone.
    pub fn check_alive(&self) -> Result<()> {
        match self.lost.lock() {
            Ok(lost) => match lost.as_ref() {
                Some(why) => Err(Error::DeviceLost(why.clone())),
                None => Ok(()),
            },
            Err(_) => Err(Error::DeviceLost("its state lock was poisoned".into())),
        }
    }

    /// Returns (and clears) the errors wgpu reported since the last check; a lost device comes first.
    pub fn take_errors(&self) -> Result<()> {
        self.check_alive()?;
        let mut list = self
            .errors
            .lock()
            .map_err(|_| Error::Gpu("error list poisoned".into()))?;
        if list.is_empty() {
            return Ok(());
        }
        // One broken shader fails every pipeline made from it; say each distinct problem once.
        let mut distinct: Vec<String> = Vec::new();
        for error in list.drain(..) {
            if !distinct.contains(&error) {
                distinct.push(error);
            }
        }
        let message = distinct.join("; ");
        Err(Error::Gpu(message))
    }

    /// Copies `bytes` of `buffer` from `offset` back to the host.
    pub async fn read_buffer(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) -> Result<Vec<u8>> {
        self.submit_and_read_back(&[], buffer, offset, bytes)?
            .read(self)
            .await
    }
}

/// Timestamps of [`GpuContext::submit_timed`] on their way back.
#[derive(Debug)]
pub struct TimedRun {
    read_back: Option<ReadBack>,
    period_ns: f64,
}

impl TimedRun {
    /// Waits for the GPU; the seconds each dispatch took, in order.
    pub async fn read(self, ctx: &GpuContext) -> Result<Vec<f64>> {
        let Some(read_back) = self.read_back else {
            return Ok(Vec::new());
        };
        let raw = read_back.read(ctx).await?;
        let ticks: Vec<u64> = raw
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect();
        Ok(ticks
            .chunks_exact(2)
            .map(|pair| pair[1].saturating_sub(pair[0]) as f64 * self.period_ns * 1e-9)
            .collect())
    }
}

/// A copy on its way back to the host.
#[derive(Debug)]
pub struct ReadBack {
    staging: wgpu::Buffer,
    bytes: u64,
}

impl ReadBack {
    /// Waits for the GPU and returns the bytes.
    pub async fn read(self, ctx: &GpuContext) -> Result<Vec<u8>> {
        let (sender, receiver) = futures_channel::oneshot::channel();
        self.staging
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |result| {
                // The receiver only disappears if the caller stopped waiting; nothing to report then.
                let _ = sender.send(result);
            });
        // On a lost device every step fails; say that, not which step noticed.
        let failed = |what: String| ctx.check_alive().err().unwrap_or(Error::Gpu(what));
        #[cfg(not(target_arch = "wasm32"))]
        ctx.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| failed(format!("waiting for the GPU failed: {e}")))?;
        let mapped = receiver
            .await
            .map_err(|_| failed("the read-back was cancelled".into()))?;
        mapped.map_err(|e| failed(format!("mapping the read-back buffer failed: {e}")))?;
        let data = self
            .staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("reading the read-back buffer failed: {e}")))?
            [..self.bytes as usize]
            .to_vec();
        self.staging.unmap();
        ctx.take_errors()?;
        Ok(data)
    }
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.adapter)
            .finish_non_exhaustive()
    }
}

/// `data` (rows of `width` texels) laid out as a table's blocks of `block_rows` rows (see
/// [`GpuContext::table`]), the last block padded with zeros.
fn fold_rows(data: &[f32], width: usize, block_rows: usize) -> Vec<f32> {
    let row_floats = width * 4;
    let rows = data.len() / row_floats;
    if rows <= block_rows {
        return data.to_vec();
    }
    let blocks = rows.div_ceil(block_rows);
    let mut folded = vec![0.0; blocks * row_floats * block_rows];
    for (r, row) in data.chunks_exact(row_floats).enumerate() {
        let at = ((r % block_rows) * blocks + r / block_rows) * row_floats;
        folded[at..at + row_floats].copy_from_slice(row);
    }
    folded
}

/// An unfilterable `rgba32float` 2-D texture read by `textureLoad`: what an [`Access::Table`](super::shaders::Access::Table) binding takes.
fn table_descriptor(label: &str, width: u32, height: u32) -> wgpu::TextureDescriptor<'_> {
    wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Float,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    }
}

#[cfg(test)]
mod tests {
    use super::fold_rows;

    #[test]
    fn rows_beyond_a_block_continue_in_the_next_block_to_the_right() {
        // 5 rows of 1 texel, blocks of 2 rows: texture rows [r0 r2 r4], [r1 r3 0].
        let data: Vec<f32> = (0..5).flat_map(|r| [r as f32; 4]).collect();
        let folded = fold_rows(&data, 1, 2);
        let texel = |x: usize, y: usize| folded[(y * 3 + x) * 4];
        assert_eq!([texel(0, 0), texel(1, 0), texel(2, 0)], [0.0, 2.0, 4.0]);
        assert_eq!([texel(0, 1), texel(1, 1), texel(2, 1)], [1.0, 3.0, 0.0]);
    }

    #[test]
    fn a_matrix_that_fits_is_left_as_it_is() {
        let data: Vec<f32> = (0..24).map(|v| v as f32).collect();
        assert_eq!(fold_rows(&data, 2, 3), data);
    }
}
