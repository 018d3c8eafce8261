//! 2-D convolution: hyper-parameters, shape inference, the fused epilogue, and batch-norm folding.

use std::sync::Arc;

use super::activation::Activation;
use crate::error::{Error, Result};

/// Zero padding on each side, in pixels. PyTorch pads symmetrically; TensorFlow's "SAME" pads more at the
/// bottom and right when the total is odd.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Padding {
    /// Rows above.
    pub top: usize,
    /// Columns to the left.
    pub left: usize,
    /// Rows below.
    pub bottom: usize,
    /// Columns to the right.
    pub right: usize,
}

impl Padding {
    /// PyTorch's `padding=(ph, pw)`.
    pub const fn symmetric(ph: usize, pw: usize) -> Self {
        Padding {
            top: ph,
            left: pw,
            bottom: ph,
            right: pw,
        }
    }

    /// TensorFlow's "SAME" padding for an input of `size = [h, w]`: output `ceil(size / stride)`, the odd pixel
    /// of padding going to the bottom and right.
    pub fn same(
        size: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
    ) -> Self {
        let total = |i: usize| {
            let out = size[i].div_ceil(stride[i].max(1));
            let needed =
                (out.saturating_sub(1)) * stride[i] + dilation[i] * (kernel[i].max(1) - 1) + 1;
            needed.saturating_sub(size[i])
        };
        let (th, tw) = (total(0), total(1));
        Padding {
            top: th / 2,
            left: tw / 2,
            bottom: th - th / 2,
            right: tw - tw / 2,
        }
    }
}

impl std::fmt::Display for Padding {
    /// e.g. `top 1, left 1, bottom 2, right 2`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "top {}, left {}, bottom {}, right {}",
            self.top, self.left, self.bottom, self.right
        )
    }
}

/// Hyper-parameters of a 2-D convolution (PyTorch's `nn.Conv2d`, weights `[OC, IC / groups, KH, KW]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2d {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// `[KH, KW]`.
    pub kernel: [usize; 2],
    /// `[SH, SW]`.
    pub stride: [usize; 2],
    /// `[DH, DW]`.
    pub dilation: [usize; 2],
    /// Zero padding.
    pub padding: Padding,
    /// Channel groups; `in_channels` for a depthwise convolution.
    pub groups: usize,
}

impl std::fmt::Display for Conv2d {
    /// e.g. `3 -> 8 channels, kernel 3x3, stride 1x1, dilation 1x1, padding (top 1, left 1, bottom 1,
    /// right 1), groups 1`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.stride;
        let [dh, dw] = self.dilation;
        write!(
            f,
            "{} -> {} channels, kernel {kh}x{kw}, stride {sh}x{sw}, dilation {dh}x{dw}, padding ({}), groups {}",
            self.in_channels, self.out_channels, self.padding, self.groups
        )
    }
}

impl Conv2d {
    /// A dense convolution with stride 1, no dilation and no padding; adjust the public fields from there.
    pub fn new(in_channels: usize, out_channels: usize, kernel: [usize; 2]) -> Self {
        Conv2d {
            in_channels,
            out_channels,
            kernel,
            stride: [1, 1],
            dilation: [1, 1],
            padding: Padding::default(),
            groups: 1,
        }
    }

    /// Checks the hyper-parameters on their own.
    pub fn validate(&self) -> Result<()> {
        let fail = |reason: String| Err(Error::invalid_op("conv2d", reason));
        if self.in_channels == 0 || self.out_channels == 0 {
            return fail(format!(
                "channels must be positive, got in {} out {}",
                self.in_channels, self.out_channels
            ));
        }
        if self.kernel.contains(&0) || self.stride.contains(&0) || self.dilation.contains(&0) {
            return fail(format!(
                "kernel {:?}, stride {:?} and dilation {:?} must be positive",
                self.kernel, self.stride, self.dilation
            ));
        }
        if self.groups == 0
            || !self.in_channels.is_multiple_of(self.groups)
            || !self.out_channels.is_multiple_of(self.groups)
        {
            return fail(format!(
                "groups = {} must divide in_channels = {} and out_channels = {}",
                self.groups, self.in_channels, self.out_channels
            ));
        }
        let limit = 1 << 16;
        let dims = [self.kernel, self.stride, self.dilation].concat();
        let pads = [
            self.padding.top,
            self.padding.left,
            self.padding.bottom,
            self.padding.right,
        ];
        if dims.iter().chain(&pads).any(|&v| v > limit)
            || self.out_channels > limit * 4
            || self.in_channels > limit * 4
        {
            return fail(format!(
                "hyper-parameters out of range (kernel, stride, dilation and padding at most {limit}, \
                 channels at most {}): {self}",
                limit * 4
            ));
        }
        Ok(())
    }

    /// `[OH, OW]` for an input of `[IH, IW]`, PyTorch's formula; fails when the padded input is smaller than
    /// the dilated kernel.
    pub fn output_size(&self, input: [usize; 2]) -> Result<[usize; 2]> {
        self.validate()?;
        let pads = [
            self.padding.top + self.padding.bottom,
            self.padding.left + self.padding.right,
        ];
        let mut out = [0; 2];
        for i in 0..2 {
            let padded = input[i] + pads[i];
            let span = self.dilation[i] * (self.kernel[i] - 1) + 1;
            if padded < span || input[i] == 0 {
                return Err(Error::invalid_op(
                    "conv2d",
                    format!(
                        "input {}x{} padded by {}x{} is smaller than the dilated kernel ({span})",
                        input[0], input[1], pads[0], pads[1]
                    ),
                ));
            }
            out[i] = (padded - span) / self.stride[i] + 1;
        }
        Ok(out)
    }

    /// Number of weights, `OC * IC / groups * KH * KW`.
    pub fn weight_len(&self) -> usize {
        self.out_channels
            * (self.in_channels / self.groups.max(1))
            * self.kernel[0]
            * self.kernel[1]
    }

    /// True when every input channel has its own filter (groups == in == out channels).
    pub fn is_depthwise(&self) -> bool {
        self.groups == self.in_channels && self.groups == self.out_channels && self.groups > 1
    }
}

/// Where a residual tensor is added in a fused epilogue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ResidualAdd {
    /// No residual input.
    #[default]
    None,
    /// `act(conv + bias + residual)`: ResNet's basic and bottleneck blocks.
    BeforeActivation,
    /// `act(conv + bias) + residual`: inverted residuals (whose projection has no activation) and others.
    AfterActivation,
}

/// What a producing kernel does to each output after its accumulation: bias, residual add, activation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Epilogue {
    /// Activation applied to every output.
    pub activation: Activation,
    /// Whether and where a residual tensor of the output's shape is added.
    pub residual: ResidualAdd,
}

impl Epilogue {
    /// Just an activation.
    pub fn activation(activation: Activation) -> Self {
        Epilogue {
            activation,
            residual: ResidualAdd::None,
        }
    }
}

/// A convolution with its weights and fused epilogue: the unit the kernels run. Weights are shared, not
/// copied, between layers that use the same tensor of a model file (and between a layer and its clones).
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2dLayer {
    /// Hyper-parameters.
    pub conv: Conv2d,
    /// `[OC, IC / groups, KH, KW]`, row-major.
    pub weight: Arc<[f32]>,
    /// `[OC]`; `None` for no bias.
    pub bias: Option<Arc<[f32]>>,
    /// Bias is applied first, then the epilogue.
    pub epilogue: Epilogue,
}

impl Conv2dLayer {
    /// Builds a layer and checks that weights, bias and epilogue fit the hyper-parameters.
    pub fn new(
        conv: Conv2d,
        weight: impl Into<Arc<[f32]>>,
        bias: Option<Arc<[f32]>>,
        epilogue: Epilogue,
    ) -> Result<Self> {
        let weight = weight.into();
        conv.validate()?;
        if weight.len() != conv.weight_len() {
            return Err(Error::invalid_op(
                "conv2d",
                format!(
                    "expected {} weights for {conv}, got {}",
                    conv.weight_len(),
                    weight.len()
                ),
            ));
        }
        if let Some(b) = &bias {
            if b.len() != conv.out_channels {
                return Err(Error::invalid_op(
                    "conv2d",
                    format!("expected {} biases, got {}", conv.out_channels, b.len()),
                ));
            }
        }
        epilogue.activation.check_channels(conv.out_channels)?;
        Ok(Conv2dLayer {
            conv,
            weight,
            bias,
            epilogue,
        })
    }

    /// Folds an inference-mode batch norm that follows this convolution into its weights and bias.
    pub fn fold_batch_norm(&mut self, bn: &BatchNorm) -> Result<()> {
        if bn.channels() != self.conv.out_channels {
            return Err(Error::invalid_op(
                "batch_norm",
                format!(
                    "{} channels cannot fold into a convolution with {} outputs",
                    bn.channels(),
                    self.conv.out_channels
                ),
            ));
        }
        let (scale, shift) = bn.scale_shift()?;
        let per_filter = self.weight.len() / self.conv.out_channels;
        let scale = &scale;
        self.weight = self
            .weight
            .chunks(per_filter)
            .enumerate()
            .flat_map(|(oc, filter)| {
                filter
                    .iter()
                    .map(move |&w| (f64::from(w) * scale[oc]) as f32)
            })
            .collect();
        let bias = (0..self.conv.out_channels)
            .map(|oc| {
                let b = self.bias.as_ref().map_or(0.0, |b| f64::from(b[oc]));
                (b * scale[oc] + shift[oc]) as f32
            })
            .collect();
        self.bias = Some(bias);
        Ok(())
    }
}

/// Batch normalisation in inference form: `(x - mean) / sqrt(var + eps) * gamma + beta` per channel.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    /// Running mean.
    pub mean: Arc<[f32]>,
    /// Running variance.
    pub var: Arc<[f32]>,
    /// Scale (`weight` in PyTorch); ones when not affine.
    pub gamma: Arc<[f32]>,
    /// Shift (`bias` in PyTorch); zeros when not affine.
    pub beta: Arc<[f32]>,
    /// PyTorch's default is 1e-5.
    pub eps: f32,
}

impl BatchNorm {
    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// Per-channel `(scale, shift)` in f64 such that `bn(x) = x * scale + shift`.
    pub fn scale_shift(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        let c = self.channels();
        if [self.var.len(), self.gamma.len(), self.beta.len()] != [c; 3] {
            return Err(Error::invalid_op(
                "batch_norm",
                format!(
                    "mean, var, gamma and beta must have one value per channel, got {}, {}, {}, {}",
                    c,
                    self.var.len(),
                    self.gamma.len(),
                    self.beta.len()
                ),
            ));
        }
        if self.eps.is_nan() || self.eps < 0.0 {
            return Err(Error::invalid_op(
                "batch_norm",
                format!("eps is {}", self.eps),
            ));
        }
        let scale: Vec<f64> = (0..c)
            .map(|i| {
                f64::from(self.gamma[i]) / (f64::from(self.var[i]) + f64::from(self.eps)).sqrt()
            })
            .collect();
        let shift = (0..c)
            .map(|i| f64::from(self.beta[i]) - f64::from(self.mean[i]) * scale[i])
            .collect();
        Ok((scale, shift))
    }
}
