//! The wgpu backend as lowering sees it ([`crate::plan::Backend`]): NHWC4 values in storage-buffer arenas, and
//! the WGSL launcher that runs each kernel.

use crate::error::Result;
use crate::plan::{Backend, HeldBytes, Kernel};
use crate::tensor::Shape;

use super::context::GpuContext;
use super::dispatch::Dispatch;
use super::kernels::{
    AdaptiveAvgPoolKernel, BinaryKernel, Conv2dKernel, ConvVariant, CopyChannelsKernel,
    FlattenKernel, GlobalAvgPoolKernel, LayerNormKernel, Pool2dKernel, SelectChannelsKernel,
    SharedUploads, UnaryKernel,
};
use super::tensor::{nhwc4_len, GpuTensor};
use super::textures::STAGE_WIDTH;

impl Backend for GpuContext {
    type Value = GpuTensor;
    type Step = Dispatch;
    type Arena = wgpu::Buffer;
    type Uploads = SharedUploads;

    fn value_bytes(&self, what: &str, shape: Shape) -> Result<u64> {
        let bytes = nhwc4_len(shape)
            .and_then(|len| (len as u64).checked_mul(4))
            .ok_or_else(|| {
                crate::Error::invalid_op("plan", format!("{what}: {shape} overflows"))
            })?;
        self.check_buffer_size(what, bytes)?;
        Ok(bytes)
    }

    fn arena_alignment(&self) -> u64 {
        u64::from(self.limits().min_storage_buffer_offset_alignment).max(16)
    }

    fn max_arena_bytes(&self) -> u64 {
        self.limits().max_buffer_size
    }

    fn arena(&self, bytes: u64) -> Result<wgpu::Buffer> {
        Ok(self.tensor_buffer("activations", bytes))
    }

    fn value(
        &self,
        arena: &wgpu::Buffer,
        offset: u64,
        shape: Shape,
        dims: Vec<usize>,
    ) -> GpuTensor {
        GpuTensor::in_buffer(arena.clone(), offset, shape, dims)
    }

    fn shape(value: &GpuTensor) -> Shape {
        value.shape()
    }

    /// The kernels that read their input through the input stage (shaders/shared/staged_input.wgsl), where this
    /// context stages inputs at all: they copy it into the stage just before they run.
    fn reads_inputs_first(&self, kernel: &Kernel<'_>) -> bool {
        self.stages_inputs()
            && match kernel {
                Kernel::Conv(layer) => ConvVariant::of(&layer.conv).reads_staged_input(),
                Kernel::GlobalAvgPool => true,
                _ => false,
            }
    }

    /// One input stage for the plan, as large as the largest input read through it.
    fn reserve_scratch(&self, largest_input_read_first: Option<u64>) -> Result<()> {
        if let Some(bytes) = largest_input_read_first {
            let rows = (bytes / 16).div_ceil(u64::from(STAGE_WIDTH));
            self.input_stage(u32::try_from(rows).unwrap_or(u32::MAX))?;
        }
        self.take_errors()
    }

    fn bind(
        &self,
        kernel: &Kernel<'_>,
        inputs: &[GpuTensor],
        output: &GpuTensor,
        uploads: &mut SharedUploads,
    ) -> Result<Dispatch> {
        let Some(first) = inputs.first() else {
            return Err(crate::Error::invalid_op("plan", "a kernel without inputs"));
        };
        let second = || {
            inputs
                .get(1)
                .ok_or_else(|| crate::Error::invalid_op("plan", "a binary kernel with one input"))
        };
        let in_shape = first.shape();
        match kernel {
            Kernel::Conv(layer) => Conv2dKernel::prepare(self, layer, in_shape, uploads)?.bind(
                self,
                first,
                inputs.get(1),
                output,
            ),
            Kernel::BatchNorm(bn, act) => {
                UnaryKernel::prepare_batch_norm(self, bn, act, in_shape, uploads)?
                    .bind(self, first, output)
            }
            Kernel::Activation(act) => {
                UnaryKernel::prepare_activation(self, act, in_shape, uploads)?
                    .bind(self, first, output)
            }
            Kernel::Binary(op, act) => BinaryKernel::prepare(self, *op, act, in_shape, uploads)?
                .bind(self, first, second()?, output),
            Kernel::Pool(pool) => {
                Pool2dKernel::new(self, pool, in_shape)?.bind(self, first, output)
            }
            Kernel::GlobalAvgPool => {
                GlobalAvgPoolKernel::new(self, in_shape)?.bind(self, first, output)
            }
            Kernel::Flatten => FlattenKernel::new(self, in_shape)?.bind(self, first, output),
            Kernel::AdaptiveAvgPool(size) => {
                AdaptiveAvgPoolKernel::new(self, *size, in_shape)?.bind(self, first, output)
            }
            Kernel::Concat => Err(crate::Error::invalid_op(
                "concat",
                "lowering binds a concatenation as one copy per operand",
            )),
            Kernel::CopyChannels { offset } => {
                CopyChannelsKernel::new(self, in_shape, output.shape(), *offset)?
                    .bind(self, first, output)
            }
            Kernel::SelectChannels(selection) => {
                SelectChannelsKernel::new(self, selection, in_shape)?.bind(self, first, output)
            }
            Kernel::LayerNorm(norm) => {
                LayerNormKernel::new(self, norm, in_shape)?.bind(self, first, output)
            }
        }
    }

    fn held_bytes(&self, arenas: &[wgpu::Buffer], steps: &[Dispatch]) -> HeldBytes {
        let mut weights: Vec<&wgpu::Buffer> = Vec::new();
        for buffer in steps.iter().flat_map(|d| d.buffers()) {
            if !arenas.contains(buffer)
                && buffer != self.placeholder()
                && !weights.contains(&buffer)
            {
                weights.push(buffer);
            }
        }
        let mut tables: Vec<&wgpu::Texture> = Vec::new();
        for table in steps.iter().flat_map(|d| d.tables()) {
            if table != self.placeholder_table() && !tables.contains(&table) {
                tables.push(table);
            }
        }
        let mut stages: Vec<&wgpu::Texture> = Vec::new();
        for stage in steps.iter().filter_map(|d| d.input_stage()) {
            if !stages.contains(&stage) {
                stages.push(stage);
            }
        }
        HeldBytes {
            weights: weights.iter().map(|b| b.size()).sum::<u64>()
                + tables.iter().map(|t| texture_bytes(t)).sum::<u64>(),
            staging: stages.iter().map(|t| texture_bytes(t)).sum(),
        }
    }
}

/// Bytes of an uncompressed single-level texture.
fn texture_bytes(texture: &wgpu::Texture) -> u64 {
    let size = texture.size();
    let texel = u64::from(texture.format().block_copy_size(None).unwrap_or(0));
    u64::from(size.width) * u64::from(size.height) * u64::from(size.depth_or_array_layers) * texel
}
