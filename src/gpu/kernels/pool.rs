//! Launchers of `pool2d.wgsl` and `global_avg_pool.wgsl`.

use std::sync::Arc;

use super::{bind_input_output, check_input, check_invocations, run_single, uniform_words};
use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::gpu::dispatch::Dispatch;
use crate::gpu::pipelines::{Constants, Pipeline};
use crate::gpu::shaders;
use crate::gpu::tensor::{channel_vec4s, GpuTensor};
use crate::ops::{Pool2d, PoolKind};
use crate::tensor::Shape;

/// Max or average pooling for one input shape.
#[derive(Debug)]
pub struct Pool2dKernel {
    pipeline: Arc<Pipeline>,
    input_shape: Shape,
    output_shape: Shape,
    invocations: u64,
}

impl Pool2dKernel {
    /// Prepares `pool` for inputs of `input_shape`.
    pub fn new(ctx: &GpuContext, pool: &Pool2d, input_shape: Shape) -> Result<Self> {
        let [oh, ow] = pool.output_size([input_shape.h, input_shape.w])?;
        let output_shape = Shape::new(input_shape.n, input_shape.c, oh, ow);
        let c4 = channel_vec4s(input_shape.c);
        let invocations = (input_shape.n * oh * ow * c4) as u64;
        check_invocations("pool2d", invocations)?;
        let (mode, count_include_pad) = match pool.kind {
            PoolKind::Max => (0.0, 0.0),
            PoolKind::Average { count_include_pad } => {
                (1.0, if count_include_pad { 1.0 } else { 0.0 })
            }
        };
        let constants: Constants = vec![
            ("MODE", mode),
            ("COUNT_INCLUDE_PAD", count_include_pad),
            ("BATCH", input_shape.n as f64),
            ("IN_H", input_shape.h as f64),
            ("IN_W", input_shape.w as f64),
            ("C4", c4 as f64),
            ("OUT_H", oh as f64),
            ("OUT_W", ow as f64),
            ("KERNEL_H", pool.kernel[0] as f64),
            ("KERNEL_W", pool.kernel[1] as f64),
            ("STRIDE_H", pool.stride[0] as f64),
            ("STRIDE_W", pool.stride[1] as f64),
            ("DILATION_H", pool.dilation[0] as f64),
            ("DILATION_W", pool.dilation[1] as f64),
            ("PAD_TOP", pool.padding.top as f64),
            ("PAD_LEFT", pool.padding.left as f64),
            ("PAD_BOTTOM", pool.padding.bottom as f64),
            ("PAD_RIGHT", pool.padding.right as f64),
        ];
        Ok(Pool2dKernel {
            pipeline: ctx.pipeline(&shaders::POOL2D, &constants)?,
            input_shape,
            output_shape,
            invocations,
        })
    }

    /// The output shape.
    pub fn output_shape(&self) -> Shape {
        self.output_shape
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
            "pool2d",
            &self.pipeline,
            (input, self.input_shape),
            (output, self.output_shape),
            super::workgroups(&self.pipeline, self.invocations),
        )
    }

    /// Allocates the output and runs once.
    pub fn run(&self, ctx: &GpuContext, input: &GpuTensor) -> Result<GpuTensor> {
        let output = GpuTensor::zeros(ctx, self.output_shape)?;
        run_single(ctx, self.bind(ctx, input, &output)?, output)
    }
}

/// Mean over height and width, one workgroup per (image, 4 channels).
#[derive(Debug)]
pub struct GlobalAvgPoolKernel {
    pipeline: Arc<Pipeline>,
    /// `PoolSizes` in global_avg_pool.wgsl.
    sizes: wgpu::Buffer,
    input_shape: Shape,
    /// Workgroups to launch.
    workgroups: u64,
}

/// Feature maps of at most this many pixels are pooled by one invocation per channel vec4 (`SERIAL` in
/// global_avg_pool.wgsl), larger ones by a workgroup each: 14 x 14.
const SERIAL_POOL_MAX_PIXELS: usize = 196;

impl GlobalAvgPoolKernel {
    /// Prepares for inputs of `input_shape`.
    pub fn new(ctx: &GpuContext, input_shape: Shape) -> Result<Self> {
        let c4 = channel_vec4s(input_shape.c);
        let pixels = input_shape.h * input_shape.w;
        let slots = (input_shape.n * c4) as u64;
        check_invocations("global_avg_pool", slots * 64)?;
        let sizes = uniform_words("global_avg_pool", [input_shape.n, pixels, c4])?;
        let serial = pixels <= SERIAL_POOL_MAX_PIXELS;
        let workgroup_size = u64::from(shaders::GLOBAL_AVG_POOL.workgroup_size);
        let constants = vec![("SERIAL", if serial { 1.0 } else { 0.0 })];
        Ok(GlobalAvgPoolKernel {
            pipeline: ctx.pipeline(&shaders::GLOBAL_AVG_POOL, &constants)?,
            sizes: ctx.uniform_buffer("global_avg_pool sizes", &sizes),
            input_shape,
            workgroups: if serial {
                slots.div_ceil(workgroup_size)
            } else {
                slots
            },
        })
    }

    /// `[N, C, 1, 1]`.
    pub fn output_shape(&self) -> Shape {
        Shape::new(self.input_shape.n, self.input_shape.c, 1, 1)
    }

    /// Binds input and output.
    pub fn bind(
        &self,
        ctx: &GpuContext,
        input: &GpuTensor,
        output: &GpuTensor,
    ) -> Result<Dispatch> {
        check_input("global_avg_pool input", input, self.input_shape)?;
        check_input("global_avg_pool output", output, self.output_shape())?;
        Dispatch::new(
            ctx,
            Arc::clone(&self.pipeline),
            &[
                (0, input.staged()),
                (4, output.resource()),
                (5, (&self.sizes).into()),
            ],
            self.workgroups,
        )
    }

    /// Allocates the output and runs once.
    pub fn run(&self, ctx: &GpuContext, input: &GpuTensor) -> Result<GpuTensor> {
        let output = GpuTensor::zeros(ctx, self.output_shape())?;
        run_single(ctx, self.bind(ctx, input, &output)?, output)
    }
}
