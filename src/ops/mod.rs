//! What the ops are: hyper-parameters, weights, validation and shape inference, independent of any backend.
//! `cpu` evaluates them plainly; `gpu` runs them as WGSL kernels.

pub mod activation;
pub mod channels;
pub mod conv;
pub mod pool;
pub mod pwlu;

pub use activation::Activation;
pub use channels::{adaptive_window, ChannelSelection, LayerNorm};
pub use conv::{BatchNorm, Conv2d, Conv2dLayer, Epilogue, Padding, ResidualAdd};
pub use pool::{Pool2d, PoolKind};
pub use pwlu::{Grid, Pwlu, PwluTable};

use std::sync::Arc;

use crate::error::{Error, Result};

/// A fully connected layer (`nn.Linear`): `y = x W^T + b`, weights `[out, in]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// `[out, in]`, row-major.
    pub weight: Arc<[f32]>,
    /// `[out]`.
    pub bias: Option<Arc<[f32]>>,
    /// Activation applied to the output.
    pub activation: Activation,
}

impl Linear {
    /// The same computation as a 1x1 convolution over a `[N, in, 1, 1]` tensor, which is how the GPU runs it.
    pub fn to_conv(&self) -> Result<Conv2dLayer> {
        if self.in_features == 0 || self.out_features == 0 {
            return Err(Error::invalid_op(
                "linear",
                format!(
                    "features must be positive, got {} -> {}",
                    self.in_features, self.out_features
                ),
            ));
        }
        Conv2dLayer::new(
            Conv2d::new(self.in_features, self.out_features, [1, 1]),
            Arc::clone(&self.weight),
            self.bias.clone(),
            Epilogue::activation(self.activation.clone()),
        )
    }
}

/// A binary element-wise op; both operands have the output's shape, except `MulChannels`, whose second operand
/// is `[N, C, 1, 1]` (squeeze-and-excitation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a * b` with `b` broadcast over height and width.
    MulChannels,
}

/// Checks that `a` and `b` hold an `m x k` and a `k x n` matrix.
pub fn check_matmul_operands(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Result<()> {
    if Some(a.len()) != m.checked_mul(k) || Some(b.len()) != k.checked_mul(n) {
        return Err(Error::invalid_op(
            "matmul",
            format!(
                "{} and {} values do not make {m} x {k} and {k} x {n} matrices",
                a.len(),
                b.len()
            ),
        ));
    }
    Ok(())
}
