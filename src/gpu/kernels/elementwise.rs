//! Launchers of `elementwise_unary.wgsl`, `elementwise_binary.wgsl`, `flatten.wgsl` and `softmax.wgsl`.

use std::sync::Arc;

use super::activation::ActivationBinding;
use super::uploads::{SharedUploads, Source};
use super::{
    bind_input_output, bind_with, check_input, check_invocations, run_single, uniform_words,
    workgroups,
};
use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::dispatch::Dispatch;
use crate::gpu::pipelines::{Constants, Pipeline};
use crate::gpu::shaders::{self, ACTIVATION_PARAMS_BINDING, OP_ADD, OP_MUL_CHANNELS};
use crate::gpu::tensor::{channel_vec4s, nhwc4_len, GpuTensor};
use crate::ops::{Activation, BatchNorm, BinaryOp};
use crate::tensor::Shape;

fn vec4_count(shape: Shape) -> Result<u64> {
    let len = nhwc4_len(shape)
        .ok_or_else(|| Error::invalid_op("tensor", format!("{shape} overflows")))?;
    Ok(len as u64 / 4)
}

/// `activation(x * scale + shift)` per channel: a standalone activation or batch norm.
#[derive(Debug)]
pub struct UnaryKernel {
    pipeline: Arc<Pipeline>,
    affine: Option<wgpu::Buffer>,
    activation: ActivationBinding,
    shape: Shape,
    invocations: u64,
}

impl UnaryKernel {
    /// A standalone activation over tensors of `shape`.
    pub fn activation(ctx: &GpuContext, activation: &Activation, shape: Shape) -> Result<Self> {
        Self::prepare_activation(ctx, activation, shape, &mut SharedUploads::default())
    }

    /// [`Self::activation`] with a plan's shared uploads.
    pub(crate) fn prepare_activation(
        ctx: &GpuContext,
        activation: &Activation,
        shape: Shape,
        uploads: &mut SharedUploads,
    ) -> Result<Self> {
        Self::new(ctx, None, activation, shape, uploads)
    }

    /// Batch norm in inference form (folded to a per-channel scale and shift), then `activation`.
    pub fn batch_norm(
        ctx: &GpuContext,
        bn: &BatchNorm,
        activation: &Activation,
        shape: Shape,
    ) -> Result<Self> {
        Self::prepare_batch_norm(ctx, bn, activation, shape, &mut SharedUploads::default())
    }

    /// [`Self::batch_norm`] with a plan's shared uploads: nodes with the same statistics share their
    /// scale and shift.
    pub(crate) fn prepare_batch_norm(
        ctx: &GpuContext,
        bn: &BatchNorm,
        activation: &Activation,
        shape: Shape,
        uploads: &mut SharedUploads,
    ) -> Result<Self> {
        if bn.channels() != shape.c {
            return Err(Error::invalid_op(
                "batch_norm",
                format!("{} channels, input has {}", bn.channels(), shape.c),
            ));
        }
        let (scale, shift) = bn.scale_shift()?;
        let c4 = channel_vec4s(shape.c) * 4;
        let sources = [&bn.mean, &bn.var, &bn.gamma, &bn.beta]
            .map(Arc::clone)
            .to_vec();
        let affine = uploads.buffer(
            "batch norm",
            Source::Floats(sources),
            &[bn.eps.to_bits() as usize],
            || {
                let mut affine = vec![0.0f32; 2 * c4];
                for c in 0..shape.c {
                    affine[c] = scale[c] as f32;
                    affine[c4 + c] = shift[c] as f32;
                }
                ctx.storage_buffer("batch norm", &affine)
            },
        )?;
        Self::new(ctx, Some(affine), activation, shape, uploads)
    }

    fn new(
        ctx: &GpuContext,
        affine: Option<wgpu::Buffer>,
        activation: &Activation,
        shape: Shape,
        uploads: &mut SharedUploads,
    ) -> Result<Self> {
        let invocations = vec4_count(shape)?;
        check_invocations("elementwise", invocations)?;
        let activation = ActivationBinding::prepare(ctx, activation, shape.c, uploads)?;
        let mut constants: Constants = vec![
            ("TOTAL", invocations as f64),
            ("C4", channel_vec4s(shape.c) as f64),
            ("AFFINE", if affine.is_some() { 1.0 } else { 0.0 }),
            ("CHANNELS", shape.c as f64),
        ];
        constants.extend(activation.constants().iter().copied());
        Ok(UnaryKernel {
            pipeline: ctx.pipeline(&shaders::ELEMENTWISE_UNARY, &constants)?,
            affine,
            activation,
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
            "elementwise",
            &self.pipeline,
            (input, self.shape),
            (output, self.shape),
            &[
                (1, self.affine.as_ref().unwrap_or(ctx.placeholder()).into()),
                (ACTIVATION_PARAMS_BINDING, self.activation.resource(ctx)),
            ],
            workgroups(&self.pipeline, self.invocations),
        )
    }

    /// Allocates the output and runs once.
    pub fn run(&self, ctx: &GpuContext, input: &GpuTensor) -> Result<GpuTensor> {
        let output = GpuTensor::zeros_with_dims(ctx, self.shape, input.dims().to_vec())?;
        run_single(ctx, self.bind(ctx, input, &output)?, output)
    }
}

/// `activation(a + b)` or `activation(a * b[n, c])`.
#[derive(Debug)]
pub struct BinaryKernel {
    pipeline: Arc<Pipeline>,
    /// `BinarySizes` in elementwise_binary.wgsl.
    sizes: wgpu::Buffer,
    /// The pipeline's override constants, for its variant that reads both operands from one binding.
    constants: Constants,
    activation: ActivationBinding,
    op: BinaryOp,
    shape: Shape,
    invocations: u64,
}

impl BinaryKernel {
    /// `op` over tensors of `shape` (the first operand's and the output's).
    pub fn new(
        ctx: &GpuContext,
        op: BinaryOp,
        activation: &Activation,
        shape: Shape,
    ) -> Result<Self> {
        Self::prepare(ctx, op, activation, shape, &mut SharedUploads::default())
    }

    /// [`Self::new`] with a plan's shared uploads.
    pub(crate) fn prepare(
        ctx: &GpuContext,
        op: BinaryOp,
        activation: &Activation,
        shape: Shape,
        uploads: &mut SharedUploads,
    ) -> Result<Self> {
        let invocations = vec4_count(shape)?;
        check_invocations("binary", invocations)?;
        let activation = ActivationBinding::prepare(ctx, activation, shape.c, uploads)?;
        let code = match op {
            BinaryOp::Add => OP_ADD,
            BinaryOp::MulChannels => OP_MUL_CHANNELS,
        };
        let mut constants: Constants = vec![("OP", f64::from(code))];
        constants.extend(activation.constants().iter().copied());
        let sizes = uniform_words(
            "binary",
            [
                invocations as usize,
                channel_vec4s(shape.c),
                shape.h * shape.w,
                shape.c,
            ],
        )?;
        Ok(BinaryKernel {
            pipeline: ctx.pipeline(&shaders::ELEMENTWISE_BINARY, &constants)?,
            sizes: ctx.uniform_buffer("binary sizes", &sizes),
            constants,
            activation,
            op,
            shape,
            invocations,
        })
    }

    fn second_shape(&self) -> Shape {
        match self.op {
            BinaryOp::Add => self.shape,
            BinaryOp::MulChannels => Shape::new(self.shape.n, self.shape.c, 1, 1),
        }
    }

    /// Binds both operands and the output.
    pub fn bind(
        &self,
        ctx: &GpuContext,
        a: &GpuTensor,
        b: &GpuTensor,
        output: &GpuTensor,
    ) -> Result<Dispatch> {
        check_input("binary first operand", a, self.shape)?;
        check_input("binary second operand", b, self.second_shape())?;
        check_input("binary output", output, self.shape)?;
        let (pipeline, b) = if b.same_data(a) {
            let mut constants = self.constants.clone();
            constants.push(("B_IS_A", 1.0));
            let pipeline = ctx.pipeline(&shaders::ELEMENTWISE_BINARY, &constants)?;
            (pipeline, ctx.placeholder().into())
        } else {
            (Arc::clone(&self.pipeline), b.resource())
        };
        Dispatch::new(
            ctx,
            pipeline,
            &[
                (0, a.resource()),
                (1, b),
                (4, output.resource()),
                (5, (&self.sizes).into()),
                (ACTIVATION_PARAMS_BINDING, self.activation.resource(ctx)),
            ],
            workgroups(&self.pipeline, self.invocations),
        )
    }

    /// Allocates the output and runs once.
    pub fn run(&self, ctx: &GpuContext, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        let output = GpuTensor::zeros_with_dims(ctx, self.shape, a.dims().to_vec())?;
        run_single(ctx, self.bind(ctx, a, b, &output)?, output)
    }
}

/// `[N, C, H, W] -> [N, C * H * W]` in PyTorch's element order.
#[derive(Debug)]
pub struct FlattenKernel {
    pipeline: Arc<Pipeline>,
    input_shape: Shape,
    output_shape: Shape,
    invocations: u64,
}

impl FlattenKernel {
    /// Prepares for inputs of `input_shape`.
    pub fn new(ctx: &GpuContext, input_shape: Shape) -> Result<Self> {
        let features = input_shape
            .c
            .checked_mul(input_shape.h * input_shape.w)
            .ok_or_else(|| Error::invalid_op("flatten", format!("{input_shape} overflows")))?;
        let output_shape = Shape::new(input_shape.n, features, 1, 1);
        let invocations = vec4_count(output_shape)?;
        check_invocations("flatten", invocations)?;
        let constants: Constants = vec![
            ("BATCH", input_shape.n as f64),
            ("IN_C4", channel_vec4s(input_shape.c) as f64),
            ("PIXELS", (input_shape.h * input_shape.w) as f64),
            ("FEATURES", features as f64),
            ("OUT_C4", channel_vec4s(features) as f64),
        ];
        Ok(FlattenKernel {
            pipeline: ctx.pipeline(&shaders::FLATTEN, &constants)?,
            input_shape,
            output_shape,
            invocations,
        })
    }

    /// `[N, C * H * W, 1, 1]`.
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
            "flatten",
            &self.pipeline,
            (input, self.input_shape),
            (output, self.output_shape),
            workgroups(&self.pipeline, self.invocations),
        )
    }

    /// Allocates the output (`[N, F]`) and runs once.
    pub fn run(&self, ctx: &GpuContext, input: &GpuTensor) -> Result<GpuTensor> {
        let s = self.output_shape;
        let output = GpuTensor::zeros_with_dims(ctx, s, vec![s.n, s.c])?;
        run_single(ctx, self.bind(ctx, input, &output)?, output)
    }
}

/// Softmax over channels.
#[derive(Debug)]
pub struct SoftmaxKernel {
    pipeline: Arc<Pipeline>,
    shape: Shape,
    rows: u64,
}

impl SoftmaxKernel {
    /// Prepares for tensors of `shape`.
    pub fn new(ctx: &GpuContext, shape: Shape) -> Result<Self> {
        let rows = (shape.n * shape.h * shape.w) as u64;
        check_invocations("softmax", rows)?;
        let constants: Constants = vec![
            ("ROWS", rows as f64),
            ("C4", channel_vec4s(shape.c) as f64),
            ("CHANNELS", shape.c as f64),
        ];
        Ok(SoftmaxKernel {
            pipeline: ctx.pipeline(&shaders::SOFTMAX, &constants)?,
            shape,
            rows,
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
            "softmax",
            &self.pipeline,
            (input, self.shape),
            (output, self.shape),
            workgroups(&self.pipeline, self.rows),
        )
    }

    /// Allocates the output and runs once.
    pub fn run(&self, ctx: &GpuContext, input: &GpuTensor) -> Result<GpuTensor> {
        let output = GpuTensor::zeros_with_dims(ctx, self.shape, input.dims().to_vec())?;
        run_single(ctx, self.bind(ctx, input, &output)?, output)
    }
}
