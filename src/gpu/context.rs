//! The GPU context: the adapter chosen by the options, the device with the adapter's real limits, and what is
//! created on it (pipelines, buffers, tables); errors and device loss as wgpu reports them. Submission is in
//! `queue.rs`, textures in `textures.rs`.

use std::sync::{Arc, Mutex};

use super::options::{make_instance, make_instance_for, AdapterSummary, Backend, GpuOptions};
use super::pipelines::{Constants, Pipeline, PipelineCache};
use super::shaders::Shader;
use super::textures::{self, table_descriptor, StageTexture};
use crate::error::{Error, Result};

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
    input_stage: StageTexture,
    /// Whether kernels that can read their input through the stage do (see [`InputStage`](super::InputStage)).
    stages_inputs: bool,
    timestamps: bool,
}

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
        let adapter = choose_adapter(options).await?;
        Self::with_adapter(adapter, options).await
    }

    /// A device on `adapter` (from [`choose_adapter`]) with the adapter's own limits.
    pub(crate) async fn with_adapter(adapter: wgpu::Adapter, options: &GpuOptions) -> Result<Self> {
        let backend = options.backend.resolve()?;
        let no_adapter = |detail: String| Error::NoAdapter {
            backend: backend.to_string(),
            hint: format!("{}; {detail}", backend.install_hint()),
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
            input_stage: StageTexture::default(),
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

    /// Whether kernels that can read their input through the input stage do (see [`InputStage`](super::InputStage)).
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

    /// The texture a kernel reads its input through, at least `rows` rows (see [`StageTexture::at_least`]).
    pub(crate) fn input_stage(&self, rows: u32) -> Result<wgpu::Texture> {
        self.input_stage.at_least(&self.device, &self.limits, rows)
    }

    /// Rows per block of a table of `rows` rows on this device (see [`textures::table`]).
    pub(crate) fn table_block_rows(&self, rows: usize) -> usize {
        textures::table_block_rows(&self.limits, rows)
    }

    /// A matrix of texels for a table binding (see [`textures::table`]).
    pub(crate) fn table(&self, label: &str, data: &[f32], width: usize) -> Result<wgpu::Texture> {
        textures::table(&self.device, &self.queue, &self.limits, label, data, width)
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
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.adapter)
            .finish_non_exhaustive()
    }
}

/// The adapter `options` ask for: the n-th one, or the one wgpu prefers for the backend.
pub(crate) async fn choose_adapter(options: &GpuOptions) -> Result<wgpu::Adapter> {
    let backend = options.backend.resolve()?;
    if backend == Backend::Cpu || (backend == Backend::WebGpu && !cfg!(target_arch = "wasm32")) {
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
            adapters
                .into_iter()
                .nth(index)
                .ok_or_else(|| no_adapter(format!("adapter {index} asked for, {count} found")))?
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
    Ok(adapter)
}
