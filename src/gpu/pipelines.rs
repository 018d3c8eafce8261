//! Shader modules, bind group layouts and compute pipelines, each created once and cached.
//!
//! A pipeline is a shader specialised by its override constants (activation, residual, and for the small
//! kernels their shapes), so the driver compiles the code paths a layer takes and no others. The convolutions
//! take their sizes from a uniform instead (shaders/shared/conv_shape.wgsl): a pipeline is what a cold start
//! pays for, and layers of one kind share theirs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::shaders::{Access, Input, Shader};
use crate::error::{Error, Result};

/// A specialised kernel, ready to dispatch.
#[derive(Debug)]
pub struct Pipeline {
    pub(crate) shader: Shader,
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}

/// Override constants by name; values are f64, as WebGPU passes them.
pub type Constants = Vec<(&'static str, f64)>;

type Key = (&'static str, Input, Vec<(&'static str, u64)>);

/// A shader module with its layouts: one per kernel variant, shared by its pipelines.
type Module = (
    wgpu::ShaderModule,
    wgpu::PipelineLayout,
    wgpu::BindGroupLayout,
);

#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<(&'static str, Input), Module>>,
    pipelines: Mutex<HashMap<Key, Arc<Pipeline>>>,
}

fn poisoned<T>(_: T) -> Error {
    Error::Gpu("a pipeline cache lock was poisoned by a panic on another thread".into())
}

impl PipelineCache {
    /// The pipeline of `shader` specialised by `constants`; `check` runs after creation and before caching, to
    /// catch errors the device reported.
    pub(crate) fn get(
        &self,
        device: &wgpu::Device,
        shader: &Shader,
        constants: &Constants,
        check: impl FnOnce() -> Result<()>,
    ) -> Result<Arc<Pipeline>> {
        let key: Key = (
            shader.name,
            shader.input,
            constants.iter().map(|&(k, v)| (k, v.to_bits())).collect(),
        );
        if let Some(p) = self.pipelines.lock().map_err(poisoned)?.get(&key) {
            return Ok(Arc::clone(p));
        }
        let (module, pipeline_layout, layout) = {
            let mut modules = self.modules.lock().map_err(poisoned)?;
            let entry = modules
                .entry((shader.name, shader.input))
                .or_insert_with(|| create_module(device, shader));
            (entry.0.clone(), entry.1.clone(), entry.2.clone())
        };
        let label = shader.label();
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                // Kernels initialise the workgroup memory they read.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        check()?;
        let pipeline = Arc::new(Pipeline {
            shader: *shader,
            pipeline,
            layout,
        });
        self.pipelines
            .lock()
            .map_err(poisoned)?
            .insert(key, Arc::clone(&pipeline));
        Ok(pipeline)
    }

    /// Number of distinct pipelines created so far.
    pub(crate) fn len(&self) -> usize {
        self.pipelines.lock().map(|p| p.len()).unwrap_or(0)
    }
}

fn create_module(device: &wgpu::Device, shader: &Shader) -> Module {
    let label = shader.label();
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(&label),
        source: wgpu::ShaderSource::Wgsl(shader.compose().into()),
    });
    let entries: Vec<wgpu::BindGroupLayoutEntry> = shader
        .bindings()
        .into_iter()
        .map(|(binding, access)| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: match access {
                Access::Read | Access::ReadWrite => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: access == Access::Read,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                Access::Uniform => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                Access::Table => wgpu::BindingType::Texture {
                    sample_type: wgpu::TextureSampleType::Float { filterable: false },
                    view_dimension: wgpu::TextureViewDimension::D2,
                    multisampled: false,
                },
                Access::Sampler => {
                    wgpu::BindingType::Sampler(wgpu::SamplerBindingType::NonFiltering)
                }
            },
            count: None,
        })
        .collect();
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(&label),
        entries: &entries,
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(&label),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    (module, pipeline_layout, layout)
}
