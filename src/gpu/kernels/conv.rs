//! Launcher of the convolution kernels: `conv2d.wgsl` (dense), `conv2d_depthwise.wgsl` and
//! `conv2d_grouped.wgsl`. Weights are repacked once, here, into the layout each kernel reads.

use std::sync::Arc;

use super::activation::ActivationBinding;
use super::uploads::{SharedUploads, Source};
use super::{check_input, check_invocations, run_single, uniform_words};
use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::dispatch::Dispatch;
use crate::gpu::dispatch::Resource;
use crate::gpu::pipelines::{Constants, Pipeline};
use crate::gpu::shaders::{self, Shader, DENSE_TILE_OC4, DENSE_TILE_PIXELS, DEPTHWISE_TILE_W};
use crate::gpu::tensor::{channel_vec4s, GpuTensor};
use crate::ops::{Conv2d, Conv2dLayer, Linear, ResidualAdd};
use crate::tensor::Shape;

/// Which kernel a convolution runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvVariant {
    /// groups = 1: register-tiled implicit GEMM.
    Dense,
    /// groups = in = out channels.
    Depthwise,
    /// Anything else.
    Grouped,
}

impl ConvVariant {
    /// The kernel for `conv`.
    pub fn of(conv: &Conv2d) -> Self {
        if conv.groups == 1 {
            ConvVariant::Dense
        } else if conv.is_depthwise() {
            ConvVariant::Depthwise
        } else {
            ConvVariant::Grouped
        }
    }

    /// Whether the kernel reads its input through the context's input stage (shaders/shared/staged_input.wgsl)
    /// where the context stages inputs ([`GpuContext::stages_inputs`]), rather than from the storage buffer.
    pub fn reads_staged_input(self) -> bool {
        matches!(self, ConvVariant::Dense | ConvVariant::Depthwise)
    }

    fn shader(self) -> Shader {
        match self {
            ConvVariant::Dense => shaders::CONV2D,
            ConvVariant::Depthwise => shaders::CONV2D_DEPTHWISE,
            ConvVariant::Grouped => shaders::CONV2D_GROUPED,
        }
    }
}

/// Packed weights: a table (texture) for the dense and depthwise kernels, a storage buffer for the grouped one.
#[derive(Debug)]
enum Weights {
    Table(wgpu::Texture),
    Buffer(wgpu::Buffer),
}

/// A convolution layer on the GPU for one input shape: pipeline, packed weights, bias and activation table.
#[derive(Debug)]
pub struct Conv2dKernel {
    variant: ConvVariant,
    pipeline: Arc<Pipeline>,
    /// The pipeline's override constants, for its variant that reads the residual from the input.
    constants: Constants,
    weights: Weights,
    /// The layer's sizes (`ConvShape` in shaders/shared/conv_shape.wgsl) for the dense and depthwise kernels; the
    /// grouped kernel takes them as override constants.
    sizes: Option<wgpu::Buffer>,
    bias: wgpu::Buffer,
    activation: ActivationBinding,
    residual: ResidualAdd,
    input_shape: Shape,
    output_shape: Shape,
    invocations: u64,
}

impl Conv2dKernel {
    /// Prepares `layer` for inputs of `input_shape`.
    pub fn new(ctx: &GpuContext, layer: &Conv2dLayer, input_shape: Shape) -> Result<Self> {
        Self::prepare(ctx, layer, input_shape, &mut SharedUploads::default())
    }

    /// [`Self::new`], taking weights, bias and activation table from `uploads` where another kernel of the
    /// plan uploaded them already.
    pub(crate) fn prepare(
        ctx: &GpuContext,
        layer: &Conv2dLayer,
        input_shape: Shape,
        uploads: &mut SharedUploads,
    ) -> Result<Self> {
        let conv = &layer.conv;
        if input_shape.c != conv.in_channels {
            return Err(Error::invalid_op(
                "conv2d",
                format!(
                    "input {input_shape} has {} channels, the layer expects {}",
                    input_shape.c, conv.in_channels
                ),
            ));
        }
        let [oh, ow] = conv.output_size([input_shape.h, input_shape.w])?;
        let output_shape = Shape::new(input_shape.n, conv.out_channels, oh, ow);
        let variant = ConvVariant::of(conv);
        let (ic4, oc4) = (
            channel_vec4s(conv.in_channels),
            channel_vec4s(conv.out_channels),
        );
        let pixels = (input_shape.n * oh * ow) as u64;
        // The dense kernel's weight matrix is as wide as its output channels rounded up to whole tiles.
        let w_oc4 = oc4.next_multiple_of(DENSE_TILE_OC4);

        let (bias_len, invocations, mut constants): (usize, u64, Constants) = match variant {
            ConvVariant::Dense => {
                let invocations =
                    (w_oc4 / DENSE_TILE_OC4) as u64 * pixels.div_ceil(DENSE_TILE_PIXELS as u64);
                let constants = vec![("LIVE_PIXELS", pixels.min(DENSE_TILE_PIXELS as u64) as f64)];
                (w_oc4 * 4, invocations, constants)
            }
            ConvVariant::Depthwise => {
                let rows = (input_shape.n * oh) as u64;
                let tiles = (ow as u64).div_ceil(DEPTHWISE_TILE_W);
                (oc4 * 4, rows * tiles * oc4 as u64, Constants::new())
            }
            ConvVariant::Grouped => {
                let constants = vec![
                    ("IN_C4", ic4 as f64),
                    ("OUT_C4", oc4 as f64),
                    ("IN_PER_GROUP", (conv.in_channels / conv.groups) as f64),
                    ("OUT_PER_GROUP", (conv.out_channels / conv.groups) as f64),
                ];
                (oc4 * 4, pixels * oc4 as u64, constants)
            }
        };
        check_invocations("conv2d", invocations)?;
        let bias = match &layer.bias {
            Some(b) => uploads.buffer(
                "conv bias",
                Source::Floats(vec![Arc::clone(b)]),
                &[bias_len],
                || {
                    let mut padded = vec![0.0; bias_len];
                    padded[..b.len()].copy_from_slice(b);
                    ctx.storage_buffer("conv bias", &padded)
                },
            )?,
            None => uploads.buffer("zero bias", Source::None, &[bias_len], || {
                ctx.storage_buffer("conv bias", &vec![0.0; bias_len])
            })?,
        };

        let activation = ActivationBinding::prepare(
            ctx,
            &layer.epilogue.activation,
            conv.out_channels,
            uploads,
        )?;
        constants.push(("RESIDUAL", residual_code(layer.epilogue.residual)));
        constants.extend(activation.constants().iter().copied());
        let stride_and_dilation = [
            ("STRIDE_H", conv.stride[0] as f64),
            ("STRIDE_W", conv.stride[1] as f64),
            ("DILATION_H", conv.dilation[0] as f64),
            ("DILATION_W", conv.dilation[1] as f64),
        ];
        let source = || Source::Floats(vec![Arc::clone(&layer.weight)]);
        let (weights, sizes) = match variant {
            ConvVariant::Dense => {
                // The packed matrix has one row per (tap, input channel) and w_oc4 texels per row.
                let rows = conv.kernel[0] * conv.kernel[1] * ic4 * 4;
                let table =
                    uploads.texture("dense conv weights", source(), &[ic4, w_oc4], || {
                        ctx.table("conv weights", &pack_dense(layer, ic4, w_oc4), w_oc4)
                    })?;
                let block_rows = ctx.table_block_rows(rows);
                let sizes = ConvShape::new(conv, input_shape, [oh, ow], w_oc4, block_rows)?;
                (
                    Weights::Table(table),
                    Some(ctx.uniform_buffer("conv sizes", bytemuck::cast_slice(&[sizes]))),
                )
            }
            ConvVariant::Depthwise => {
                constants.extend(stride_and_dilation);
                let sizes = ConvShape::new(conv, input_shape, [oh, ow], 0, 0)?;
                let table = uploads.texture("depthwise conv weights", source(), &[oc4], || {
                    ctx.table("conv weights", &pack_depthwise(layer, oc4), oc4)
                })?;
                (
                    Weights::Table(table),
                    Some(ctx.uniform_buffer("conv sizes", bytemuck::cast_slice(&[sizes]))),
                )
            }
            ConvVariant::Grouped => {
                constants.extend(stride_and_dilation);
                constants.extend([
                    ("BATCH", input_shape.n as f64),
                    ("IN_H", input_shape.h as f64),
                    ("IN_W", input_shape.w as f64),
                    ("OUT_H", oh as f64),
                    ("OUT_W", ow as f64),
                    ("KERNEL_H", conv.kernel[0] as f64),
                    ("KERNEL_W", conv.kernel[1] as f64),
                    ("PAD_TOP", conv.padding.top as f64),
                    ("PAD_LEFT", conv.padding.left as f64),
                    ("CHANNELS", conv.out_channels as f64),
                ]);
                let buffer = uploads.buffer("grouped conv weights", source(), &[], || {
                    ctx.storage_buffer("conv weights", &layer.weight)
                })?;
                (Weights::Buffer(buffer), None)
            }
        };
        let pipeline = ctx.pipeline(&variant.shader(), &constants)?;
        Ok(Conv2dKernel {
            variant,
            pipeline,
            constants,
            weights,
            sizes,
            bias,
            activation,
            residual: layer.epilogue.residual,
            input_shape,
            output_shape,
            invocations,
        })
    }

    /// A linear layer as a 1x1 convolution over `[N, in, 1, 1]`.
    pub fn linear(ctx: &GpuContext, layer: &Linear, batch: usize) -> Result<Self> {
        Self::prepare_linear(ctx, layer, batch, &mut SharedUploads::default())
    }

    /// [`Self::linear`] with a plan's shared uploads (see [`Self::prepare`]).
    pub(crate) fn prepare_linear(
        ctx: &GpuContext,
        layer: &Linear,
        batch: usize,
        uploads: &mut SharedUploads,
    ) -> Result<Self> {
        Self::prepare(
            ctx,
            &layer.to_conv()?,
            Shape::new(batch, layer.in_features, 1, 1),
            uploads,
        )
    }

    /// Which kernel runs this layer.
    pub fn variant(&self) -> ConvVariant {
        self.variant
    }

    /// The input shape this kernel was prepared for.
    pub fn input_shape(&self) -> Shape {
        self.input_shape
    }

    /// The output shape.
    pub fn output_shape(&self) -> Shape {
        self.output_shape
    }

    /// Binds input, residual (when the epilogue adds one) and output.
    pub fn bind(
        &self,
        ctx: &GpuContext,
        input: &GpuTensor,
        residual: Option<&GpuTensor>,
        output: &GpuTensor,
    ) -> Result<Dispatch> {
        check_input("conv2d input", input, self.input_shape)?;
        check_input("conv2d output", output, self.output_shape)?;
        let mut pipeline = Arc::clone(&self.pipeline);
        let residual = match (self.residual, residual) {
            (ResidualAdd::None, None) => ctx.placeholder().into(),
            (ResidualAdd::None, Some(_)) => {
                return Err(Error::invalid_op(
                    "conv2d",
                    "a residual was given but the epilogue adds none",
                ))
            }
            (_, None) => {
                return Err(Error::invalid_op(
                    "conv2d",
                    "the epilogue adds a residual but none was given",
                ))
            }
            (_, Some(r)) if r.same_data(input) => {
                check_input("conv2d residual", r, self.output_shape)?;
                let mut constants = self.constants.clone();
                constants.push(("RESIDUAL_FROM_INPUT", 1.0));
                pipeline = ctx.pipeline(&self.variant.shader(), &constants)?;
                ctx.placeholder().into()
            }
            (_, Some(r)) => {
                check_input("conv2d residual", r, self.output_shape)?;
                r.resource()
            }
        };
        let input = if self.variant.reads_staged_input() {
            input.staged()
        } else {
            input.resource()
        };
        let mut resources = vec![
            (0, input),
            (
                1,
                match &self.weights {
                    Weights::Table(texture) => Resource::Table(texture),
                    Weights::Buffer(buffer) => buffer.into(),
                },
            ),
            (2, (&self.bias).into()),
            (3, residual),
            (4, output.resource()),
        ];
        if let Some(sizes) = &self.sizes {
            resources.push((5, sizes.into()));
        }
        resources.push((
            shaders::ACTIVATION_PARAMS_BINDING,
            self.activation.resource(ctx),
        ));
        Dispatch::new(
            ctx,
            pipeline,
            &resources,
            super::workgroups(&self.pipeline, self.invocations),
        )
    }

    /// Allocates the output, runs the kernel and returns the output (for one-off use; a model binds once).
    pub fn run(
        &self,
        ctx: &GpuContext,
        input: &GpuTensor,
        residual: Option<&GpuTensor>,
    ) -> Result<GpuTensor> {
        let dims = if self.output_shape.h * self.output_shape.w == 1 && input.dims().len() == 2 {
            vec![self.output_shape.n, self.output_shape.c]
        } else {
            vec![
                self.output_shape.n,
                self.output_shape.c,
                self.output_shape.h,
                self.output_shape.w,
            ]
        };
        let output = GpuTensor::zeros_with_dims(ctx, self.output_shape, dims)?;
        run_single(ctx, self.bind(ctx, input, residual, &output)?, output)
    }
}

/// A convolution layer's sizes as the dense and depthwise kernels read them: `ConvShape` in
/// shaders/shared/conv_shape.wgsl, field for field (tests/shaders.rs compares the two layouts with naga's).
/// `w_oc4` and `w_block_rows` describe the dense kernel's weight texture; the depthwise kernel ignores them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ConvShape {
    /// Batch.
    pub batch: u32,
    /// In h.
    pub in_h: u32,
    /// In w.
    pub in_w: u32,
    /// Input channels in vec4s (the depthwise kernel's channels).
    pub in_c4: u32,
    /// Out h.
    pub out_h: u32,
    /// Out w.
    pub out_w: u32,
    /// Out c4.
    pub out_c4: u32,
    /// Logical output channels; lanes past them are padding.
    pub channels: u32,
    /// The dense kernel's weight matrix: its row width in texels (`out_c4` rounded up to the kernel's tile).
    pub w_oc4: u32,
    /// The dense kernel's weight matrix: its rows per block of the texture (`matrix_origin` in shaders/shared/common.wgsl).
    pub w_block_rows: u32,
    /// Kernel h.
    pub kernel_h: u32,
    /// Kernel w.
    pub kernel_w: u32,
    /// Stride h.
    pub stride_h: u32,
    /// Stride w.
    pub stride_w: u32,
    /// Dilation h.
    pub dilation_h: u32,
    /// Dilation w.
    pub dilation_w: u32,
    /// Pad top.
    pub pad_top: u32,
    /// Pad left.
    pub pad_left: u32,
}

impl ConvShape {
    /// Every field's name and byte offset, in declaration order.
    pub const FIELDS: [(&'static str, usize); 18] = [
        ("batch", std::mem::offset_of!(ConvShape, batch)),
        ("in_h", std::mem::offset_of!(ConvShape, in_h)),
        ("in_w", std::mem::offset_of!(ConvShape, in_w)),
        ("in_c4", std::mem::offset_of!(ConvShape, in_c4)),
        ("out_h", std::mem::offset_of!(ConvShape, out_h)),
        ("out_w", std::mem::offset_of!(ConvShape, out_w)),
        ("out_c4", std::mem::offset_of!(ConvShape, out_c4)),
        ("channels", std::mem::offset_of!(ConvShape, channels)),
        ("w_oc4", std::mem::offset_of!(ConvShape, w_oc4)),
        (
            "w_block_rows",
            std::mem::offset_of!(ConvShape, w_block_rows),
        ),
        ("kernel_h", std::mem::offset_of!(ConvShape, kernel_h)),
        ("kernel_w", std::mem::offset_of!(ConvShape, kernel_w)),
        ("stride_h", std::mem::offset_of!(ConvShape, stride_h)),
        ("stride_w", std::mem::offset_of!(ConvShape, stride_w)),
        ("dilation_h", std::mem::offset_of!(ConvShape, dilation_h)),
        ("dilation_w", std::mem::offset_of!(ConvShape, dilation_w)),
        ("pad_top", std::mem::offset_of!(ConvShape, pad_top)),
        ("pad_left", std::mem::offset_of!(ConvShape, pad_left)),
    ];

    /// The sizes of `conv` over `input` with output `[out_h, out_w]`; an error where one exceeds 32 bits.
    fn new(
        conv: &Conv2d,
        input: Shape,
        [out_h, out_w]: [usize; 2],
        w_oc4: usize,
        w_block_rows: usize,
    ) -> Result<ConvShape> {
        let [batch, in_h, in_w, in_c4, out_h, out_w, out_c4, channels, w_oc4, w_block_rows, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left] =
            uniform_words(
                "conv2d",
                [
                    input.n,
                    input.h,
                    input.w,
                    channel_vec4s(input.c),
                    out_h,
                    out_w,
                    channel_vec4s(conv.out_channels),
                    conv.out_channels,
                    w_oc4,
                    w_block_rows,
                    conv.kernel[0],
                    conv.kernel[1],
                    conv.stride[0],
                    conv.stride[1],
                    conv.dilation[0],
                    conv.dilation[1],
                    conv.padding.top,
                    conv.padding.left,
                ],
            )?;
        Ok(ConvShape {
            batch,
            in_h,
            in_w,
            in_c4,
            out_h,
            out_w,
            out_c4,
            channels,
            w_oc4,
            w_block_rows,
            kernel_h,
            kernel_w,
            stride_h,
            stride_w,
            dilation_h,
            dilation_w,
            pad_top,
            pad_left,
        })
    }
}

fn residual_code(residual: ResidualAdd) -> f64 {
    match residual {
        ResidualAdd::None => 0.0,
        ResidualAdd::BeforeActivation => 1.0,
        ResidualAdd::AfterActivation => 2.0,
    }
}

/// `[OC][IC][KH][KW]` to `[KH][KW][IC4 * 4][W_OC4]` vec4s of output channels, zero-padded.
fn pack_dense(layer: &Conv2dLayer, ic4: usize, w_oc4: usize) -> Vec<f32> {
    let conv = &layer.conv;
    let [kh, kw] = conv.kernel;
    let mut packed = vec![0.0; kh * kw * ic4 * 4 * w_oc4 * 4];
    for oc in 0..conv.out_channels {
        for ic in 0..conv.in_channels {
            for ky in 0..kh {
                for kx in 0..kw {
                    let row = (ky * kw + kx) * ic4 * 4 + ic;
                    packed[(row * w_oc4 + oc / 4) * 4 + oc % 4] =
                        layer.weight[((oc * conv.in_channels + ic) * kh + ky) * kw + kx];
                }
            }
        }
    }
    packed
}

/// `[C][1][KH][KW]` to `[KH][KW][C4]` vec4s.
fn pack_depthwise(layer: &Conv2dLayer, c4: usize) -> Vec<f32> {
    let [kh, kw] = layer.conv.kernel;
    let mut packed = vec![0.0; kh * kw * c4 * 4];
    for c in 0..layer.conv.out_channels {
        for k in 0..kh * kw {
            packed[k * c4 * 4 + c] = layer.weight[c * kh * kw + k];
        }
    }
    packed
}
