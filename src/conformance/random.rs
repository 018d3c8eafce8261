//! The suite's random data: a small deterministic generator and the layers and PWLU units drawn from it.

use std::sync::Arc;

use crate::ops::{Conv2d, Conv2dLayer, Epilogue, Pwlu};
use crate::tensor::{Shape, Tensor};

/// A channel-wise PWLU near ReLU with perturbed points and moderate slopes: what training produces.
pub(super) fn random_pwlu(rng: &mut Rng, units: usize, intervals: usize) -> Arc<Pwlu> {
    let (mut bounds, mut points, mut slopes) = (Vec::new(), Vec::new(), Vec::new());
    for unit in 0..units {
        let center = rng.uniform(-0.5, 0.5);
        let half = rng.uniform(1.0, 3.0);
        bounds.push([center - half, center + half]);
        for i in 0..=intervals {
            let x = center - half + 2.0 * half * i as f32 / intervals as f32;
            // Every fourth unit has a flat first segment (as a PWLU starting from ReLU does).
            let y = if unit % 4 == 1 && i == 1 {
                points[points.len() - 1]
            } else {
                x.max(0.0) + rng.uniform(-0.2, 0.2)
            };
            points.push(y);
        }
        slopes.push([left_slope(rng, unit), rng.uniform(0.5, 1.5)]);
    }
    // Cannot fail: finite bounds with B_L < B_R, N + 1 finite points and two finite slopes per unit, built
    // above from the suite's own constants (no user input reaches this generator).
    Arc::new(Pwlu::uniform(intervals, bounds, points, slopes).expect("a valid random PWLU"))
}

/// A unit's left tail slope: flat for every third unit (where -inf must give the tail's value, not 0 * inf),
/// small otherwise.
fn left_slope(rng: &mut Rng, unit: usize) -> f32 {
    if unit.is_multiple_of(3) {
        0.0
    } else {
        rng.uniform(-0.2, 0.3)
    }
}

/// A PWLU with learned, strictly increasing breakpoints (steps of 0.05 to 1).
pub(super) fn random_non_uniform_pwlu(rng: &mut Rng, units: usize, intervals: usize) -> Arc<Pwlu> {
    let (mut breakpoints, mut points, mut slopes) = (Vec::new(), Vec::new(), Vec::new());
    for unit in 0..units {
        let mut x = rng.uniform(-3.0, -0.5);
        for _ in 0..=intervals {
            breakpoints.push(x);
            points.push(x.max(0.0) + rng.uniform(-0.2, 0.2));
            x += rng.uniform(0.05, 1.0);
        }
        slopes.push([left_slope(rng, unit), rng.uniform(0.5, 1.5)]);
    }
    // Cannot fail: breakpoints strictly increase (steps of at least 0.05), every value is finite, and the
    // counts match `units` and `intervals` by construction.
    Arc::new(
        Pwlu::non_uniform(intervals, breakpoints, points, slopes).expect("a valid random PWLU"),
    )
}

/// A small deterministic generator (SplitMix64): the cases are the same everywhere, without a dependency.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// In `[0, 1)`.
    pub(super) fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    pub(super) fn uniform(&mut self, low: f32, high: f32) -> f32 {
        low + (high - low) * self.unit()
    }

    /// In `low..high`.
    pub(super) fn range(&mut self, low: usize, high: usize) -> usize {
        low + (self.next() % (high - low) as u64) as usize
    }

    pub(super) fn vec(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform(-scale, scale)).collect()
    }

    pub(super) fn tensor(&mut self, shape: Shape, scale: f32) -> Tensor {
        let data = self.vec(shape.len(), scale);
        // Cannot fail: `data` has exactly `shape.len()` values.
        Tensor::from_shape(shape, data).expect("shape and data agree")
    }

    /// A layer with weights scaled by its fan-in and, mostly, a bias.
    pub(super) fn layer(&mut self, conv: Conv2d, epilogue: Epilogue) -> Conv2dLayer {
        let fan_in = (conv.in_channels / conv.groups * conv.kernel[0] * conv.kernel[1]) as f32;
        let weight = self.vec(conv.weight_len(), 1.0 / fan_in.sqrt());
        let bias = (self.unit() < 0.7).then(|| self.vec(conv.out_channels, 0.5).into());
        // Cannot fail for the suite's fixed cases: the weight and bias lengths come from `conv` itself, and the
        // cases pair each epilogue with a matching channel count; a new case that breaks this fails its test
        // at once, never a user's input.
        Conv2dLayer::new(conv, weight, bias, epilogue).expect("a valid layer")
    }
}
