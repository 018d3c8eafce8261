//! Element-wise activation functions, with PyTorch's definitions.

use std::sync::Arc;

use super::pwlu::Pwlu;
use crate::error::{Error, Result};

/// An activation applied element-wise, standalone or fused into a producing kernel's epilogue.
///
/// NaN in gives NaN out for every variant. At `±inf` each follows the IEEE evaluation of PyTorch's formula,
/// except PWLU, whose flat tails return their limit (see [`crate::ops::pwlu`]).
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Activation {
    /// `y = x`.
    #[default]
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `x` for `x >= 0`, else `negative_slope * x`.
    LeakyRelu {
        /// PyTorch's `negative_slope` (default 0.01).
        negative_slope: f32,
    },
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// SiLU / Swish: `x * sigmoid(x)`.
    Silu,
    /// `relu6(x + 3) / 6`.
    Hardsigmoid,
    /// `x * relu6(x + 3) / 6`.
    Hardswish,
    /// `x * Phi(x)` with the exact normal CDF (PyTorch's default `approximate='none'`).
    Gelu,
    /// GELU with PyTorch's `approximate='tanh'`.
    GeluTanh,
    /// A Piecewise Linear Unit, channel-wise or layer-wise.
    Pwlu(Arc<Pwlu>),
}

impl Activation {
    /// A short name for messages and labels.
    pub fn name(&self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Silu => "silu",
            Activation::Hardsigmoid => "hardsigmoid",
            Activation::Hardswish => "hardswish",
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_tanh",
            Activation::Pwlu(_) => "pwlu",
        }
    }

    /// Checks that the activation can be applied to a tensor of `channels` channels.
    pub fn check_channels(&self, channels: usize) -> Result<()> {
        match self {
            Activation::Pwlu(p) if !p.is_layer_wise() && p.units() != channels => {
                Err(Error::InvalidPwlu(format!(
                    "a channel-wise PWLU with {} units cannot apply to {channels} channels",
                    p.units()
                )))
            }
            Activation::LeakyRelu { negative_slope } if !negative_slope.is_finite() => Err(
                Error::invalid_op("leaky_relu", format!("negative_slope is {negative_slope}")),
            ),
            _ => Ok(()),
        }
    }
}
