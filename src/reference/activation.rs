//! CPU reference of `shaders/shared/activation.wgsl`.
//!
//! Transcendental activations are evaluated in f64 (the mathematical definition, not the shader's
//! approximation). PWLU is evaluated exactly as the shader does: the same packed table, the same index
//! computation in f32, the same fused multiply-add.

use crate::ops::pwlu::PwluTable;
use crate::ops::Activation;
use crate::tensor::Tensor;

/// An activation ready to evaluate.
pub struct ActivationFn<'a> {
    activation: &'a Activation,
    table: Option<&'a PwluTable>,
}

impl<'a> ActivationFn<'a> {
    /// Prepares `activation`.
    pub fn new(activation: &'a Activation) -> Self {
        let table = match activation {
            Activation::Pwlu(p) => Some(p.table()),
            _ => None,
        };
        ActivationFn { activation, table }
    }

    /// `activation(x)` for an element of channel `channel`.
    pub fn eval(&self, x: f32, channel: usize) -> f32 {
        let xd = f64::from(x);
        let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
        // f64::clamp passes NaN through.
        let relu6 = |v: f64| v.clamp(0.0, 6.0);
        let y = match self.activation {
            Activation::Identity => xd,
            // `if` chains rather than max/min so that NaN passes through.
            Activation::Relu => {
                if xd < 0.0 {
                    0.0
                } else {
                    xd
                }
            }
            Activation::Relu6 => relu6(xd),
            Activation::LeakyRelu { negative_slope } => {
                if xd < 0.0 {
                    xd * f64::from(*negative_slope)
                } else {
                    xd
                }
            }
            Activation::Sigmoid => sigmoid(xd),
            Activation::Silu => xd * sigmoid(xd),
            Activation::Hardsigmoid => relu6(xd + 3.0) / 6.0,
            Activation::Hardswish => xd * relu6(xd + 3.0) / 6.0,
            Activation::Gelu => 0.5 * xd * (1.0 + libm::erf(xd / std::f64::consts::SQRT_2)),
            Activation::GeluTanh => {
                let k = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * xd * (1.0 + (k * (xd + 0.044715 * xd * xd * xd)).tanh())
            }
            Activation::Pwlu(p) => match &self.table {
                Some(table) => return pwlu_lookup(table, p.unit_for_channel(channel), x),
                None => f64::NAN,
            },
        };
        y as f32
    }

    /// Applies the activation to an NCHW tensor in place.
    pub fn apply(&self, tensor: &mut Tensor) {
        let shape = tensor.shape();
        let plane = shape.h * shape.w;
        for (i, v) in tensor.data_mut().iter_mut().enumerate() {
            *v = self.eval(*v, (i / plane.max(1)) % shape.c.max(1));
        }
    }
}

/// The twin of `pwlu4()` in `shaders/shared/activation.wgsl` (with the NaN rule of its caller, `activate_with`):
/// evaluates unit `unit` of a packed table. The arithmetic is the lookup form's own, [`PwluTable::lookup`].
pub fn pwlu_lookup(table: &PwluTable, unit: usize, x: f32) -> f32 {
    table.lookup(unit, x)
}
