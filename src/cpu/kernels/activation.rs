//! Activations applied to one pixel's channels at a time (NHWC rows), with the residual add the epilogue
//! may fuse before or after them. The same functions as `reference::activation`, in f32.

use std::sync::Arc;

use crate::ops::{Activation, Pwlu, ResidualAdd};

/// An activation ready to apply to rows of `channels` values.
#[derive(Clone, Debug)]
pub(crate) struct RowActivation {
    activation: Activation,
    /// For a PWLU, the unit of each channel.
    units: Vec<usize>,
    pwlu: Option<Arc<Pwlu>>,
}

impl RowActivation {
    pub(crate) fn new(activation: &Activation, channels: usize) -> Self {
        let (units, pwlu) = match activation {
            Activation::Pwlu(p) => (
                (0..channels).map(|c| p.unit_for_channel(c)).collect(),
                Some(Arc::clone(p)),
            ),
            _ => (Vec::new(), None),
        };
        RowActivation {
            activation: activation.clone(),
            units,
            pwlu,
        }
    }

    /// Applies the activation to `row`, one pixel's channels.
    pub(crate) fn apply(&self, row: &mut [f32]) {
        fn each(row: &mut [f32], f: impl Fn(f32) -> f32) {
            for v in row {
                *v = f(*v);
            }
        }
        let sigmoid = |x: f32| 1.0 / (1.0 + (-x).exp());
        // Comparisons rather than max/min or clamp so that NaN passes through, as in the reference.
        #[allow(clippy::manual_clamp)]
        let relu6 = |x: f32| {
            if x < 0.0 {
                0.0
            } else if x > 6.0 {
                6.0
            } else {
                x
            }
        };
        match &self.activation {
            Activation::Identity => {}
            Activation::Relu => each(row, |x| if x < 0.0 { 0.0 } else { x }),
            Activation::Relu6 => each(row, relu6),
            Activation::LeakyRelu { negative_slope } => {
                let slope = *negative_slope;
                each(row, |x| if x < 0.0 { x * slope } else { x })
            }
            Activation::Sigmoid => each(row, sigmoid),
            Activation::Silu => each(row, |x| x * sigmoid(x)),
            Activation::Hardsigmoid => each(row, |x| relu6(x + 3.0) / 6.0),
            Activation::Hardswish => each(row, |x| x * relu6(x + 3.0) / 6.0),
            Activation::Gelu => each(row, |x| {
                0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
            }),
            Activation::GeluTanh => {
                let k = (2.0 / std::f32::consts::PI).sqrt();
                each(row, |x| {
                    0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
                })
            }
            Activation::Pwlu(_) => {
                if let Some(pwlu) = &self.pwlu {
                    let table = pwlu.table();
                    for (v, &unit) in row.iter_mut().zip(&self.units) {
                        *v = table.lookup(unit, *v);
                    }
                }
            }
        }
    }

    /// The epilogue of one pixel: `row` holds the accumulated sums; adds `bias`, then the activation with
    /// the residual before or after it.
    pub(crate) fn finish(
        &self,
        row: &mut [f32],
        bias: Option<&[f32]>,
        residual: Option<&[f32]>,
        mode: ResidualAdd,
    ) {
        if let Some(bias) = bias {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
        let add = |row: &mut [f32]| {
            if let Some(r) = residual {
                for (v, r) in row.iter_mut().zip(r) {
                    *v += r;
                }
            }
        };
        match mode {
            ResidualAdd::None => self.apply(row),
            ResidualAdd::BeforeActivation => {
                add(row);
                self.apply(row);
            }
            ResidualAdd::AfterActivation => {
                self.apply(row);
                add(row);
            }
        }
    }
}
