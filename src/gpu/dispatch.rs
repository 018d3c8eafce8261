//! A dispatch: a pipeline, its bind group and its grid, created once and recorded any number of times.

use std::sync::Arc;

use super::context::GpuContext;
use super::pipelines::Pipeline;
use super::shaders::Access;
use crate::error::{Error, Result};

/// What a launcher binds to one binding of a kernel.
#[derive(Clone, Debug)]
pub(crate) enum Resource<'a> {
    /// A storage buffer or a range of one ([`Access::Read`] or [`Access::ReadWrite`]), or a uniform buffer
    /// ([`Access::Uniform`]).
    Buffer(wgpu::BufferBinding<'a>),
    /// A lookup table ([`Access::Table`]).
    Table(&'a wgpu::Texture),
}

impl<'a> From<&'a wgpu::Buffer> for Resource<'a> {
    fn from(buffer: &'a wgpu::Buffer) -> Self {
        Resource::Buffer(buffer.as_entire_buffer_binding())
    }
}

/// One kernel launch with its buffers bound.
#[derive(Debug)]
pub struct Dispatch {
    pipeline: Arc<Pipeline>,
    bind_group: wgpu::BindGroup,
    /// What the bind group holds, for accounting the plan's memory.
    buffers: Vec<wgpu::Buffer>,
    tables: Vec<wgpu::Texture>,
    workgroups: [u32; 3],
}

impl Dispatch {
    /// Binds `resources` (by binding number) to `pipeline` and sizes the grid for `workgroups` workgroups.
    pub(crate) fn new(
        ctx: &GpuContext,
        pipeline: Arc<Pipeline>,
        resources: &[(u32, Resource<'_>)],
        workgroups: u64,
    ) -> Result<Self> {
        let expected = pipeline.shader.bindings;
        let matches = expected.len() == resources.len()
            && expected
                .iter()
                .zip(resources)
                .all(|(&(b, access), (given, resource))| {
                    b == *given
                        && matches!(
                            (access, resource),
                            (
                                Access::Read | Access::ReadWrite | Access::Uniform,
                                Resource::Buffer(_)
                            ) | (Access::Table, Resource::Table(_))
                        )
                });
        if !matches {
            return Err(Error::Gpu(format!(
                "{} binds {expected:?}, the launcher supplied {resources:?}",
                pipeline.shader.name
            )));
        }
        enum Bound<'a> {
            Buffer(wgpu::BufferBinding<'a>),
            View(wgpu::TextureView),
        }
        let bound: Vec<(u32, Bound)> = resources
            .iter()
            .map(|(binding, resource)| {
                let bound = match resource {
                    Resource::Buffer(range) => Bound::Buffer(range.clone()),
                    Resource::Table(texture) => {
                        Bound::View(texture.create_view(&wgpu::TextureViewDescriptor::default()))
                    }
                };
                (*binding, bound)
            })
            .collect();
        let entries: Vec<wgpu::BindGroupEntry> = bound
            .iter()
            .map(|(binding, bound)| wgpu::BindGroupEntry {
                binding: *binding,
                resource: match bound {
                    Bound::Buffer(binding) => wgpu::BindingResource::Buffer(binding.clone()),
                    Bound::View(view) => wgpu::BindingResource::TextureView(view),
                },
            })
            .collect();
        let bind_group = ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(pipeline.shader.name),
            layout: &pipeline.layout,
            entries: &entries,
        });
        let workgroups = grid(
            workgroups,
            ctx.limits().max_compute_workgroups_per_dimension,
        )?;
        Ok(Dispatch {
            pipeline,
            bind_group,
            buffers: resources
                .iter()
                .filter_map(|(_, resource)| match resource {
                    Resource::Buffer(binding) => Some(binding.buffer.clone()),
                    Resource::Table(_) => None,
                })
                .collect(),
            tables: resources
                .iter()
                .filter_map(|(_, resource)| match resource {
                    Resource::Table(texture) => Some((*texture).clone()),
                    Resource::Buffer(_) => None,
                })
                .collect(),
            workgroups,
        })
    }

    /// Records the launch into a compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }

    /// The same launch on one workgroup, sharing the bind group: little work, but the driver must have the
    /// pipeline compiled to run it.
    pub(crate) fn one_workgroup(&self) -> Dispatch {
        Dispatch {
            pipeline: Arc::clone(&self.pipeline),
            bind_group: self.bind_group.clone(),
            buffers: Vec::new(),
            tables: Vec::new(),
            workgroups: [1, 1, 1],
        }
    }

    /// Whether `other` runs the same pipeline.
    pub(crate) fn same_pipeline(&self, other: &Dispatch) -> bool {
        Arc::ptr_eq(&self.pipeline, &other.pipeline)
    }

    /// The kernel's file name.
    pub fn label(&self) -> &'static str {
        self.pipeline.shader.name
    }

    /// The buffers bound, in binding order.
    pub fn buffers(&self) -> &[wgpu::Buffer] {
        &self.buffers
    }

    /// The lookup tables bound, in binding order.
    pub fn tables(&self) -> &[wgpu::Texture] {
        &self.tables
    }

    /// The dispatch grid.
    pub fn workgroups(&self) -> [u32; 3] {
        self.workgroups
    }
}

/// Spreads `count` workgroups over x and y so that neither exceeds `max_per_dimension`; kernels fold the grid
/// back with `linear_index` and ignore the excess.
pub(crate) fn grid(count: u64, max_per_dimension: u32) -> Result<[u32; 3]> {
    let max = u64::from(max_per_dimension.max(1));
    let count = count.max(1);
    if count <= max {
        return Ok([count as u32, 1, 1]);
    }
    let y = count.div_ceil(max);
    if y > max {
        return Err(Error::Gpu(format!(
            "{count} workgroups exceed the device's {max} x {max} grid"
        )));
    }
    Ok([max as u32, y as u32, 1])
}

#[cfg(test)]
mod tests {
    use super::grid;

    #[test]
    fn grid_covers_the_count_within_the_limit() {
        assert_eq!(grid(10, 65535).ok(), Some([10, 1, 1]));
        assert_eq!(grid(0, 65535).ok(), Some([1, 1, 1]));
        assert_eq!(grid(65536, 65535).ok(), Some([65535, 2, 1]));
        assert!(grid(65535u64 * 65535 + 1, 65535).is_err());
    }
}
