//! Activation cases: every activation standalone on the values where activations go wrong (NaN, infinities,
//! signed zeros, kinks, each PWLU unit's grid points and bounds), and the list of activations the other cases
//! draw from.

use super::random::{random_non_uniform_pwlu, random_pwlu, Rng};
use super::{case, Case};
use crate::graph::{Op, Value};
use crate::ops::{Activation, Pwlu};
use crate::tensor::Shape;

/// Every activation standalone on inputs that hold NaN, infinities, signed zeros, values at and next to the
/// kinks of ReLU6 and the hard functions, and the exact grid points and bounds of the PWLU units. PWLU also
/// over 37 channels and 35 pixels, so that kernels which take tiles of 16 channels and 16 pixels meet whole
/// and partial ones.
pub(super) fn activations(rng: &mut Rng) -> Vec<Case> {
    let narrow = Shape::new(2, 5, 4, 9);
    let wide = Shape::new(1, 37, 5, 7);
    let mut cases: Vec<Case> = all_activations(rng, narrow.c)
        .into_iter()
        .map(|activation| activation_case(rng, narrow, activation))
        .collect();
    for activation in all_activations(rng, wide.c) {
        if matches!(activation, Activation::Pwlu(_)) {
            cases.push(activation_case(rng, wide, activation));
        }
    }
    cases
}

fn activation_case(rng: &mut Rng, input: Shape, activation: Activation) -> Case {
    let mut values = special_values();
    if let Activation::Pwlu(pwlu) = &activation {
        for unit in 0..pwlu.units() {
            values.extend(grid_points(pwlu, unit));
        }
    }
    let mut x = rng.tensor(input, 4.0);
    // Every special value in every channel, so that each unit meets its own grid and every other.
    for (i, v) in x.data_mut().iter_mut().enumerate() {
        if i % 3 != 2 {
            *v = values[(i / 3 * 2 + i % 3) % values.len()];
        }
    }
    case(
        format!("activation {} on {input}", activation_name(&activation)),
        input,
        &[(Op::Activation(activation), vec![Value::Input])],
        x,
    )
}

pub(super) fn activation_name(activation: &Activation) -> String {
    match activation {
        Activation::Pwlu(p) => format!(
            "{} PWLU (N = {}, {} units)",
            if p.table().is_uniform() {
                "uniform"
            } else {
                "non-uniform"
            },
            p.intervals(),
            p.units()
        ),
        other => other.name().to_string(),
    }
}

/// Every activation the kernels implement; PWLU uniform and non-uniform, channel-wise and layer-wise.
pub(super) fn all_activations(rng: &mut Rng, channels: usize) -> Vec<Activation> {
    vec![
        Activation::Identity,
        Activation::Relu,
        Activation::Relu6,
        Activation::LeakyRelu {
            negative_slope: 0.1,
        },
        Activation::Sigmoid,
        Activation::Silu,
        Activation::Hardsigmoid,
        Activation::Hardswish,
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Pwlu(random_pwlu(rng, channels, 16)),
        Activation::Pwlu(random_pwlu(rng, 1, 7)),
        Activation::Pwlu(random_non_uniform_pwlu(rng, channels, 6)),
        Activation::Pwlu(random_non_uniform_pwlu(rng, 1, 5)),
    ]
}

/// Values that find the edges of activations: signed zeros, tiny and huge values, the kinks of ReLU6 and the
/// hard functions and their neighbours in f32, NaN and infinities.
fn special_values() -> Vec<f32> {
    let mut values = vec![
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        3.0,
        -3.0,
        6.0,
        5.999_999,
        6.000_001,
        2.999_999,
        -2.999_999,
        88.0,
        -88.0,
        1e4,
        -1e4,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    values.extend((0..21).map(|i| -4.0 + i as f32 * 0.4));
    values
}

/// The grid points (or breakpoints) of one unit, where a PWLU changes segment.
fn grid_points(pwlu: &Pwlu, unit: usize) -> Vec<f32> {
    let n = pwlu.intervals();
    match pwlu.unit(unit) {
        Some(p) => match (p.bounds, p.breakpoints) {
            (Some([l, r]), _) => (0..=n).map(|i| l + (r - l) * i as f32 / n as f32).collect(),
            (_, Some(b)) => b.to_vec(),
            _ => Vec::new(),
        },
        None => Vec::new(),
    }
}
