//! Launchers of `copy_channels.wgsl`, `select_channels.wgsl`, `layer_norm.wgsl` and `adaptive_avg_pool.wgsl`.

use std::sync::Arc;

use super::{bind_input_output, bind_with, check_invocations, uniform_words, workgroups};
use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::dispatch::Dispatch;
use crate::gpu::pipelines::{Constants, Pipeline};
use crate::gpu::shaders;
use crate::gpu::tensor::{channel_vec4s, GpuTensor};
use crate::ops::{ChannelSelection, LayerNorm};
use crate::tensor::Shape;

/// One operand of a concatenation, written into channels `offset..` of the output.
#[derive(Debug)]
pub struct CopyChannelsKernel {
    pipeline: Arc<Pipeline>,
    sizes: wgpu::Buffer,
    input_shape: Shape,
    output_shape: Shape,
    invocations: u64,
}

impl CopyChannelsKernel {
    /// Prepares the copy of an `input_shape` operand into `output_shape` at channel `offset`.
    pub fn new(
        ctx: &GpuContext,
        input_shape: Shape,
        output_shape: Shape,
        offset: usize,
    ) -> Result<Self> {
        let (x, y) = (input_shape, output_shape);
        if (x.n, x.h, x.w) != (y.n, y.h, y.w) || offset + x.c > y.c || x.c == 0 {
            return Err(Error::invalid_op(
                "concat",
                format!("{x} does not fit {y} at channel {offset}"),
            ));
        }
        let first_c4 = offset / 4;
        // The operand that writes the output's last channel also clears the padding lanes after it.
        let end = if offset + x.c == y.c {
            channel_vec4s(y.c) * 4
        } else {
            offset + x.c
        };
        let span_c4 = end.div_ceil(4) - first_c4;
        let pixels = y.n * y.h * y.w;
        let invocations = (pixels * span_c4) as u64;
        check_invocations("concat", invocations)?;
        let sizes = uniform_words(
            "concat",
            [
                pixels,
                x.c,
                channel_vec4s(x.c),
                y.c,
                channel_vec4s(y.c),
                offset,
                first_c4,
                span_c4,
            ],
        )?;
        Ok(CopyChannelsKernel {
            pipeline: ctx.pipeline(&shaders::COPY_CHANNELS, &Vec::new())?,
            sizes: ctx.uniform_buffer("concat sizes", &sizes),
            input_shape,
            output_shape,
            invocations,
        })
    }

    /// Binds the operand and the concatenation's output.
    pub fn bind(
        &self,
        ctx: &GpuContext,
        input: &GpuTensor,
        output: &GpuTensor,
    ) -> Result<Dispatch> {
        bind_with(
            ctx,
            "concat",
            &self.pipeline,
            (input, self.input_shape),
            (output, self.output_shape),
            &[(5, (&self.sizes).into())],
            workgroups(&self.pipeline, self.invocations),
        )
    }
}

/// Channels picked by index.
#[derive(Debug)]
pub struct SelectChannelsKernel {
    pipeline: Arc<Pipeline>,
    indices: wgpu::Buffer,
    sizes: wgpu::Buffer,
    input_shape: Shape,
    output_shape: Shape,
    invocations: u64,
}

impl SelectChannelsKernel {
    /// Prepares `selection` for inputs of `input_shape`.
    pub fn new(ctx: &GpuContext, selection: &ChannelSelection, input_shape: Shape) -> Result<Self> {
        selection.check(input_shape.c)?;
        let x = input_shape;
        let y = Shape::new(x.n, selection.output_channels(), x.h, x.w);
        let out_c4 = channel_vec4s(y.c);
        let invocations = (y.n * y.h * y.w * out_c4) as u64;
        check_invocations("select_channels", invocations)?;
        let sizes = uniform_words(
            "select_channels",
            [invocations as usize, channel_vec4s(x.c), y.c, out_c4],
        )?;
        // The shader reads u32 indices; the buffer carries their bits.
        let bits: Vec<f32> = selection
            .indices
            .iter()
            .map(|&i| u32::try_from(i).map(f32::from_bits))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| Error::invalid_op("select_channels", "a channel index exceeds 32 bits"))?;
        Ok(SelectChannelsKernel {
            pipeline: ctx.pipeline(&shaders::SELECT_CHANNELS, &Vec::new())?,
            indices: ctx.storage_buffer("channel indices", &bits)?,
            sizes: ctx.uniform_buffer("select_channels sizes", &sizes),
            input_shape,
            output_shape: y,
            invocations,
        })
    }

    /// Binds input and output.
    pub fn bind(
        &self,
        ctx: &GpuContext,
        input: &GpuTensor,
        output: &GpuTensor,
    ) -> Result<Dispatch> {
        bind_with(
            ctx,
            "select_channels",
            &self.pipeline,
            (input, self.input_shape),
            (output, self.output_shape),
            &[(1, (&self.indices).into()), (5, (&self.sizes).into())],
            workgroups(&self.pipeline, self.invocations),
        )
    }
}

/// Layer normalisation over channels, one invocation per pixel.
#[derive(Debug)]
pub struct LayerNormKernel {
    pipeline: Arc<Pipeline>,
    affine: wgpu::Buffer,
    shape: Shape,
    invocations: u64,
}

impl LayerNormKernel {
    /// Prepares `norm` for tensors of `shape`.
    pub fn new(ctx: &GpuContext, norm: &LayerNorm, shape: Shape) -> Result<Self> {
        if norm.channels() != shape.c {
            return Err(Error::invalid_op(
                "layer_norm",
                format!("{} channels, input has {}", norm.channels(), shape.c),
            ));
        }
        let c4 = channel_vec4s(shape.c);
        let mut affine = vec![0.0f32; 8 * c4];
        affine[..shape.c].copy_from_slice(&norm.weight);
        affine[4 * c4..4 * c4 + shape.c].copy_from_slice(&norm.bias);
        let invocations = (shape.n * shape.h * shape.w) as u64;
        check_invocations("layer_norm", invocations)?;
        let constants: Constants = vec![
            ("PIXELS", invocations as f64),
            ("C4", c4 as f64),
            ("CHANNELS", shape.c as f64),
            ("EPS", f64::from(norm.eps)),
        ];
        Ok(LayerNormKernel {
            pipeline: ctx.pipeline(&shaders::LAYER_NORM, &constants)?,
            affine: ctx.storage_buffer("layer norm", &affine)?,
            shape,
            invocations,
        })
    }

    /// Binds input and output (both of the prepared shape).
    pub fn bind(
        &self,
        ctx: &GpuContext,
        input: &GpuTensor,
        output: &GpuTensor,
    ) -> Result<Dispatch> {
        bind_with(
            ctx,
            "layer_norm",
            &self.pipeline,
            (input, self.shape),
            (output, self.shape),
            &[(1, (&self.affine).into())],
            workgroups(&self.pipeline, self.invocations),
        )
    }
}

/// Average pooling over PyTorch's adaptive windows.
#[derive(Debug)]
pub struct AdaptiveAvgPoolKernel {
    pipeline: Arc<Pipeline>,
    input_shape: Shape,
    output_shape: Shape,
    invocations: u64,
}

impl AdaptiveAvgPoolKernel {
    /// Prepares pooling of `input_shape` to `[oh, ow]`.
    pub fn new(ctx: &GpuContext, [oh, ow]: [usize; 2], input_shape: Shape) -> Result<Self> {
        let x = input_shape;
        if oh == 0 || ow == 0 {
            return Err(Error::invalid_op(
                "adaptive_avg_pool2d",
                "output size must be positive",
            ));
        }
        // The shader computes window bounds as (o + 1) * input in u32.
        if (oh as u64 + 1) * x.h as u64 > u64::from(u32::MAX)
            || (ow as u64 + 1) * x.w as u64 > u64::from(u32::MAX)
        {
            return Err(Error::invalid_op(
                "adaptive_avg_pool2d",
                format!("pooling {x} to {oh} x {ow} exceeds the kernel's 32-bit window arithmetic"),
            ));
        }
        let c4 = channel_vec4s(x.c);
        let invocations = (x.n * oh * ow * c4) as u64;
        check_invocations("adaptive_avg_pool2d", invocations)?;
        let constants: Constants = vec![
            ("BATCH", x.n as f64),
            ("IN_H", x.h as f64),
            ("IN_W", x.w as f64),
            ("C4", c4 as f64),
            ("OUT_H", oh as f64),
            ("OUT_W", ow as f64),
        ];
        Ok(AdaptiveAvgPoolKernel {
            pipeline: ctx.pipeline(&shaders::ADAPTIVE_AVG_POOL, &constants)?,
            input_shape,
            output_shape: Shape::new(x.n, x.c, oh, ow),
            invocations,
        })
    }

    /// Binds input and output.
    pub fn bind(
        &self,
        ctx: &GpuContext,
        input: &GpuTensor,
        output: &GpuTensor,
    ) -> Result<Dispatch> {
        bind_input_output(
            ctx,
            "adaptive_avg_pool2d",
            &self.pipeline,
            (input, self.input_shape),
            (output, self.output_shape),
            workgroups(&self.pipeline, self.invocations),
        )
    }
}
