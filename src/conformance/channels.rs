//! Cases for the channel ops: concatenation at offsets that are and are not multiples of 4 (the GPU's vec4
//! lanes), with an operand used twice; ShuffleNet's slice, branch, concat and shuffle; layer normalisation
//! over few and many channels with a large mean; adaptive pooling over non-uniform, repeating and uniform
//! windows.

use super::random::{random_pwlu, Rng};
use super::{case, Case};
use crate::graph::{Op, Value};
use crate::ops::{Activation, ChannelSelection, Conv2d, Epilogue, LayerNorm, Padding};
use crate::tensor::{Shape, Tensor};

/// Every channel-op case.
pub(super) fn cases(rng: &mut Rng) -> Vec<Case> {
    let mut cases = vec![concat(rng, 5, 7), concat(rng, 4, 8), shuffle_block(rng)];
    for (channels, mean) in [(7, 0.0), (96, 50.0)] {
        cases.push(layer_norm(rng, channels, mean));
    }
    for (input, output) in [
        (Shape::new(2, 5, 5, 7), [3, 2]),
        (Shape::new(1, 6, 1, 1), [7, 7]),
        (Shape::new(1, 9, 13, 11), [6, 6]),
        (Shape::new(2, 3, 8, 4), [4, 2]),
    ] {
        cases.push(case(
            format!("adaptive_avg_pool2d {input} to {output:?}"),
            input,
            &[(Op::AdaptiveAvgPool(output), vec![Value::Input])],
            rng.tensor(input, 1.0),
        ));
    }
    cases
}

/// `concat(a, x, b, a)` of two convolutions of the input and the input itself, then a convolution that reads
/// every channel.
fn concat(rng: &mut Rng, a_channels: usize, b_channels: usize) -> Case {
    let input = Shape::new(2, 3, 5, 7);
    let a = rng.layer(Conv2d::new(3, a_channels, [1, 1]), Epilogue::default());
    let mut b_conv = Conv2d::new(3, b_channels, [3, 3]);
    b_conv.padding = Padding::symmetric(1, 1);
    let b = rng.layer(b_conv, Epilogue::default());
    let total = 2 * a_channels + 3 + b_channels;
    let pwlu = random_pwlu(rng, 6, 8);
    let head = rng.layer(
        Conv2d::new(total, 6, [1, 1]),
        Epilogue::activation(Activation::Pwlu(pwlu)),
    );
    case(
        format!(
            "concat of {a_channels} + 3 + {b_channels} + {a_channels} channels, then conv2d 1x1"
        ),
        input,
        &[
            (Op::Conv(a), vec![Value::Input]),
            (Op::Conv(b), vec![Value::Input]),
            (
                Op::Concat,
                vec![Value::Node(0), Value::Input, Value::Node(1), Value::Node(0)],
            ),
            (Op::Conv(head), vec![Value::Node(2)]),
        ],
        rng.tensor(input, 1.0),
    )
}

/// ShuffleNet v2's unit: split the channels in two halves, a depthwise convolution on the second, concatenate,
/// shuffle with 2 groups; 14 channels, so that the halves start off the vec4 lanes.
fn shuffle_block(rng: &mut Rng) -> Case {
    let input = Shape::new(2, 14, 4, 3);
    let mut dw = Conv2d::new(7, 7, [3, 3]);
    dw.groups = 7;
    dw.padding = Padding::symmetric(1, 1);
    let dw = rng.layer(dw, Epilogue::default());
    let slice = |start, end| ChannelSelection::slice(14, start, end);
    let (Ok(first), Ok(second), Ok(shuffle)) =
        (slice(0, 7), slice(7, 14), ChannelSelection::shuffle(14, 2))
    else {
        unreachable!("the selections fit 14 channels")
    };
    case(
        "slice, depthwise, concat and shuffle over 14 channels".into(),
        input,
        &[
            (Op::SelectChannels(first), vec![Value::Input]),
            (Op::SelectChannels(second), vec![Value::Input]),
            (Op::Conv(dw), vec![Value::Node(1)]),
            (Op::Concat, vec![Value::Node(0), Value::Node(2)]),
            (Op::SelectChannels(shuffle), vec![Value::Node(3)]),
        ],
        rng.tensor(input, 1.0),
    )
}

/// Layer normalisation with random weights over inputs centred on `mean`.
fn layer_norm(rng: &mut Rng, channels: usize, mean: f32) -> Case {
    let input = Shape::new(2, channels, 3, 5);
    let x = rng.tensor(input, 1.0);
    let x = Tensor::from_shape(input, x.data().iter().map(|v| v + mean).collect()).unwrap_or(x);
    let weight = rng.vec(channels, 1.0).into();
    let bias = rng.vec(channels, 0.5).into();
    let Ok(norm) = LayerNorm::new(weight, bias, 1e-6) else {
        unreachable!("one weight and bias per channel, a valid eps")
    };
    case(
        format!("layer_norm over {channels} channels, mean {mean}"),
        input,
        &[(Op::LayerNorm(norm), vec![Value::Input])],
        x,
    )
}
