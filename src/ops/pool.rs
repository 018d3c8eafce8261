//! 2-D pooling with PyTorch's semantics.

use super::conv::Padding;
use crate::error::{Error, Result};

/// Max or average.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// Max over the window; padding never wins; NaN propagates.
    Max,
    /// Mean over the window.
    Average {
        /// Whether padded zeros count in the divisor (PyTorch's default: true).
        count_include_pad: bool,
    },
}

/// Hyper-parameters of `MaxPool2d` / `AvgPool2d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2d {
    /// Max or average.
    pub kind: PoolKind,
    /// `[KH, KW]`.
    pub kernel: [usize; 2],
    /// `[SH, SW]` (PyTorch's default is the kernel size).
    pub stride: [usize; 2],
    /// Implicit padding (PyTorch's is symmetric; TensorFlow "SAME" may be asymmetric).
    pub padding: Padding,
    /// `[DH, DW]`; PyTorch allows dilation for max pooling only.
    pub dilation: [usize; 2],
    /// Round the output size up instead of down.
    pub ceil_mode: bool,
}

impl Pool2d {
    /// A pool with stride equal to the kernel, no padding, no dilation.
    pub fn new(kind: PoolKind, kernel: [usize; 2]) -> Self {
        Pool2d {
            kind,
            kernel,
            stride: kernel,
            padding: Padding::default(),
            dilation: [1, 1],
            ceil_mode: false,
        }
    }

    /// `[OH, OW]` for an input of `[IH, IW]`, following PyTorch's `pooling_output_shape`.
    pub fn output_size(&self, input: [usize; 2]) -> Result<[usize; 2]> {
        let fail = |reason: String| Err(Error::invalid_op("pool2d", reason));
        if self.kernel.contains(&0) || self.stride.contains(&0) || self.dilation.contains(&0) {
            return fail(format!(
                "kernel {:?}, stride {:?} and dilation {:?} must be positive",
                self.kernel, self.stride, self.dilation
            ));
        }
        if matches!(self.kind, PoolKind::Average { .. }) && self.dilation != [1, 1] {
            return fail("average pooling has no dilation".into());
        }
        let before = [self.padding.top, self.padding.left];
        let after = [self.padding.bottom, self.padding.right];
        let mut out = [0; 2];
        for i in 0..2 {
            let span = self.dilation[i] * (self.kernel[i] - 1) + 1;
            if before[i].max(after[i]) * 2 > span {
                return fail(format!(
                    "padding ({}) must be at most half the (dilated) kernel {span}",
                    self.padding
                ));
            }
            let padded = input[i] + before[i] + after[i];
            if input[i] == 0 || padded < span {
                return fail(format!(
                    "input {input:?} is smaller than the kernel {:?}",
                    self.kernel
                ));
            }
            let round_up = if self.ceil_mode {
                self.stride[i] - 1
            } else {
                0
            };
            let mut o = (padded - span + round_up) / self.stride[i] + 1;
            // PyTorch: the last window must start inside the input or its leading padding.
            if self.ceil_mode && (o - 1) * self.stride[i] >= input[i] + before[i] {
                o -= 1;
            }
            out[i] = o;
        }
        Ok(out)
    }
}
