//! A dispatch: a pipeline, its bind group and its grid, created once and recorded any number of times.

use std::sync::Arc;

use super::context::GpuContext;
use super::pipelines::Pipeline;
use super::shaders::{Access, Input};
use super::textures::STAGE_WIDTH;
use crate::error::{Error, Result};

/// What a launcher binds to one binding of a kernel.
#[derive(Clone, Debug)]
pub(crate) enum Resource<'a> {
    /// A storage buffer or a range of one ([`Access::Read`] or [`Access::ReadWrite`]), or a uniform buffer
    /// ([`Access::Uniform`]).
    Buffer(wgpu::BufferBinding<'a>),
    /// A lookup table ([`Access::Table`]).
    Table(&'a wgpu::Texture),
    /// A tensor of `texels` vec4s at `offset` in `buffer`, copied into the context's input stage before the
    /// dispatch runs and read through it ([`Access::Table`]; see shaders/shared/staged_input.wgsl). Bound to
    /// a kernel's [`Input::Buffer`] variant, it is that range of the buffer instead, and nothing is copied.
    Staged {
        buffer: &'a wgpu::Buffer,
        offset: u64,
        texels: u64,
    },
}

/// The copy of a dispatch's input into the texture it reads it through, recorded before the dispatch.
#[derive(Debug)]
pub(crate) struct StagedCopy {
    buffer: wgpu::Buffer,
    offset: u64,
    texels: u64,
    texture: wgpu::Texture,
}

impl StagedCopy {
    /// Copies the texels in order into rows of [`STAGE_WIDTH`]: the whole rows in one copy, the rest of the
    /// last row in another (one copy of whole rows would read past the tensor, perhaps past its buffer).
    pub(crate) fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        let width = u64::from(STAGE_WIDTH);
        let row_bytes = width * 16;
        let (rows, rest) = (self.texels / width, self.texels % width);
        let copy =
            |encoder: &mut wgpu::CommandEncoder, offset: u64, width: u64, rows: u64, y: u64| {
                encoder.copy_buffer_to_texture(
                    wgpu::TexelCopyBufferInfo {
                        buffer: &self.buffer,
                        layout: wgpu::TexelCopyBufferLayout {
                            offset,
                            bytes_per_row: Some(row_bytes as u32),
                            rows_per_image: None,
                        },
                    },
                    wgpu::TexelCopyTextureInfo {
                        texture: &self.texture,
                        mip_level: 0,
                        origin: wgpu::Origin3d {
                            x: 0,
                            y: y as u32,
                            z: 0,
                        },
                        aspect: wgpu::TextureAspect::All,
                    },
                    wgpu::Extent3d {
                        width: width as u32,
                        height: rows as u32,
                        depth_or_array_layers: 1,
                    },
                );
            };
        if rows > 0 {
            copy(encoder, self.offset, width, rows, 0);
        }
        if rest > 0 {
            copy(encoder, self.offset + rows * row_bytes, rest, 1, rows);
        }
    }
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
    /// The copy of the input that must precede the dispatch, where it reads it through a texture.
    stage: Option<StagedCopy>,
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
        // The table sampler is bound here, not by launchers.
        let expected: Vec<(u32, Access)> = pipeline
            .shader
            .bindings()
            .into_iter()
            .filter(|&(_, access)| access != Access::Sampler)
            .collect();
        let input_from_buffer = pipeline.shader.input == Input::Buffer;
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
                            ) | (Access::Table, Resource::Table(_) | Resource::Staged { .. })
                        )
                        || (input_from_buffer
                            && b == 0
                            && access == Access::ReadWrite
                            && matches!(resource, Resource::Staged { .. }))
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
        let mut stage = None;
        let mut bound: Vec<(u32, Bound)> = Vec::with_capacity(resources.len());
        for (binding, resource) in resources {
            let view = |texture: &wgpu::Texture| {
                Bound::View(texture.create_view(&wgpu::TextureViewDescriptor::default()))
            };
            let resource = match resource {
                Resource::Buffer(range) => Bound::Buffer(range.clone()),
                Resource::Table(texture) => view(texture),
                Resource::Staged {
                    buffer,
                    offset,
                    texels,
                } if input_from_buffer => Bound::Buffer(wgpu::BufferBinding {
                    buffer,
                    offset: *offset,
                    size: wgpu::BufferSize::new(texels * 16),
                }),
                Resource::Staged {
                    buffer,
                    offset,
                    texels,
                } => {
                    let rows =
                        u32::try_from(texels.div_ceil(u64::from(STAGE_WIDTH))).unwrap_or(u32::MAX);
                    let texture = ctx.input_stage(rows)?;
                    let bound = view(&texture);
                    stage = Some(StagedCopy {
                        buffer: (*buffer).clone(),
                        offset: *offset,
                        texels: *texels,
                        texture,
                    });
                    bound
                }
            };
            bound.push((*binding, resource));
        }
        let mut entries: Vec<wgpu::BindGroupEntry> = bound
            .iter()
            .map(|(binding, bound)| wgpu::BindGroupEntry {
                binding: *binding,
                resource: match bound {
                    Bound::Buffer(binding) => wgpu::BindingResource::Buffer(binding.clone()),
                    Bound::View(view) => wgpu::BindingResource::TextureView(view),
                },
            })
            .collect();
        entries.extend(
            pipeline
                .shader
                .bindings()
                .into_iter()
                .filter(|&(_, access)| access == Access::Sampler)
                .map(|(binding, _)| wgpu::BindGroupEntry {
                    binding,
                    resource: wgpu::BindingResource::Sampler(ctx.table_sampler()),
                }),
        );
        let bind_group = ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&pipeline.shader.label()),
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
                    Resource::Staged { buffer, .. } => Some((*buffer).clone()),
                    Resource::Table(_) => None,
                })
                .collect(),
            tables: resources
                .iter()
                .filter_map(|(_, resource)| match resource {
                    Resource::Table(texture) => Some((*texture).clone()),
                    Resource::Buffer(_) | Resource::Staged { .. } => None,
                })
                .collect(),
            stage,
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
            stage: None,
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

    /// The lookup tables bound, in binding order (not the input stage).
    pub fn tables(&self) -> &[wgpu::Texture] {
        &self.tables
    }

    /// The copy into the input stage that precedes the dispatch, if it reads its input through one.
    pub(crate) fn stage(&self) -> Option<&StagedCopy> {
        self.stage.as_ref()
    }

    /// The texture the dispatch reads its input through, if any.
    pub fn input_stage(&self) -> Option<&wgpu::Texture> {
        self.stage.as_ref().map(|stage| &stage.texture)
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
