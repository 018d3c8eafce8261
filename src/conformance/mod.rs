//! The conformance suite, as data: small graphs (an op with its shapes, parameters drawn from a seed, and the
//! tolerance its result must meet) that every backend runs through [`Plan`](crate::plan::Plan) and compares with
//! [`Graph::run_reference`]. Natively `tests/conformance.rs` runs them on each GPU backend and input stage; the
//! browser suite (`web/tests/api.rs`) runs the same cases on WebGPU; a new backend runs them too.
//!
//! The cases cover what the references must pin down: odd sizes, asymmetric padding, stride, dilation, groups
//! (dense, depthwise, grouped), every activation in every producing kernel, PWLU at its exact breakpoints and
//! bounds, NaN and infinities, and the channel ops (concatenation off the vec4 lanes, shuffles, layer norm,
//! adaptive pooling).

use std::sync::Arc;

use crate::graph::{Graph, Node, Op, Value};
use crate::ops::{
    Activation, BatchNorm, BinaryOp, Conv2d, Epilogue, Linear, Padding, Pool2d, PoolKind, Pwlu,
    ResidualAdd,
};
use crate::tensor::{Shape, Tensor};

mod activations;
mod channels;
mod random;

use activations::{activation_name, activations, all_activations};
use random::{random_non_uniform_pwlu, random_pwlu, Rng};

/// The agreement every kernel must reach: `|got - reference| <= 1e-4 * max(1, |reference|)` per element.
pub const TOLERANCE: f32 = 1e-4;

/// One case: a graph, its input and the tolerance.
#[derive(Clone, Debug)]
pub struct Case {
    /// What the case is, for failure messages.
    pub name: String,
    /// The graph to plan and run, as the optimiser would leave it (no pass runs on it).
    pub graph: Graph,
    /// Its input, `[N, C, H, W]`.
    pub input: Tensor,
    /// Relative tolerance (see [`TOLERANCE`]).
    pub tolerance: f32,
}

/// What goes wrong when `run` computes every case: its errors, and where its output disagrees with the
/// reference, one line each.
pub fn failures(
    cases: &[Case],
    mut run: impl FnMut(&Case) -> crate::Result<Tensor>,
) -> Vec<String> {
    cases
        .iter()
        .filter_map(|case| {
            run(case)
                .map_err(|e| format!("{}: {e}", case.name))
                .and_then(|got| case.check(&got))
                .err()
        })
        .collect()
}

impl Case {
    /// The reference's output for this case.
    pub fn expected(&self) -> crate::Result<Tensor> {
        self.graph.run_reference(&self.input)
    }

    /// Whether `got` agrees with the reference: element by element within the tolerance, NaN where the
    /// reference has NaN, equal infinities. The error says where and by how much it does not.
    pub fn check(&self, got: &Tensor) -> Result<(), String> {
        let expected = self
            .expected()
            .map_err(|e| format!("{}: reference: {e}", self.name))?;
        if got.dims() != expected.dims() {
            return Err(format!(
                "{}: dims {:?}, expected {:?}",
                self.name,
                got.dims(),
                expected.dims()
            ));
        }
        for (i, (&g, &e)) in got.data().iter().zip(expected.data()).enumerate() {
            let agrees = if e.is_nan() || g.is_nan() {
                e.is_nan() && g.is_nan()
            } else if e.is_infinite() || g.is_infinite() {
                g == e
            } else {
                (g - e).abs() <= self.tolerance * e.abs().max(1.0)
            };
            if !agrees {
                return Err(format!(
                    "{}: element {i} is {g}, the reference says {e}",
                    self.name
                ));
            }
        }
        Ok(())
    }
}

/// Every case, the same on every run and platform.
pub fn cases() -> Vec<Case> {
    let mut rng = Rng(0x5eed_2026);
    let mut cases = Vec::new();
    for i in 0..18 {
        cases.push(convolution(&mut rng, i));
    }
    cases.push(wide_depthwise(&mut rng));
    cases.push(depthwise_5x5(&mut rng));
    cases.push(wide_late_layer(&mut rng));
    cases.extend(winograd_layers(&mut rng));
    cases.push(pointwise(&mut rng));
    for i in 0..4 {
        cases.push(residual_block(&mut rng, i));
    }
    cases.extend(activations(&mut rng));
    cases.push(batch_norm(&mut rng));
    cases.extend(binary(&mut rng));
    for i in 0..6 {
        cases.push(pooling(&mut rng, i));
    }
    for (h, w) in [(7, 7), (20, 17)] {
        let input = Shape::new(2, 9, h, w);
        cases.push(case(
            format!("global_avg_pool over {input}"),
            input,
            &[(Op::GlobalAvgPool, vec![Value::Input])],
            rng.tensor(input, 1.0),
        ));
    }
    cases.push(classifier_head(&mut rng));
    cases.extend(channels::cases(&mut rng));
    cases.extend(image_layers(&mut rng));
    cases
}

/// First layers on images, few input channels and so shallow products: RGB with a strided 3x3 filter,
/// asymmetric padding and 53 output channels (32 + 16 + 5) with a per-channel PWLU; one channel with a
/// dilated 5x5 filter; ResNet's 7x7 stem.
fn image_layers(rng: &mut Rng) -> Vec<Case> {
    let rgb = Conv2d {
        stride: [2, 2],
        padding: Padding {
            top: 0,
            left: 1,
            bottom: 1,
            right: 0,
        },
        ..Conv2d::new(3, 53, [3, 3])
    };
    let gray = Conv2d {
        dilation: [2, 2],
        padding: Padding {
            top: 2,
            left: 1,
            bottom: 3,
            right: 0,
        },
        ..Conv2d::new(1, 19, [5, 5])
    };
    // ResNet's stem, 7x7 with stride 2, onto 83 channels (64 + 16 + 3).
    let stem = Conv2d {
        stride: [2, 2],
        padding: Padding::symmetric(3, 3),
        ..Conv2d::new(3, 83, [7, 7])
    };
    let pwlu = Activation::Pwlu(random_pwlu(rng, 53, 16));
    vec![
        conv_case(rng, rgb, Shape::new(2, 3, 23, 29), pwlu),
        conv_case(rng, gray, Shape::new(1, 1, 17, 21), Activation::Relu6),
        conv_case(rng, stem, Shape::new(2, 3, 19, 18), Activation::Relu),
    ]
}

/// A random convolution: dense, depthwise or grouped by `index`, random kernel, stride, dilation and asymmetric
/// padding, odd sizes, and an activation from `all_activations`.
fn convolution(rng: &mut Rng, index: usize) -> Case {
    let (in_channels, out_channels, groups) = match index % 3 {
        0 => (rng.range(1, 13), rng.range(1, 21), 1),
        1 => {
            let c = rng.range(1, 19);
            (c, c, c)
        }
        _ => {
            let groups = rng.range(2, 4);
            (groups * rng.range(1, 6), groups * rng.range(1, 6), groups)
        }
    };
    let kernel = [rng.range(1, 6), rng.range(1, 6)];
    let dilation = [rng.range(1, 3), rng.range(1, 3)];
    let padding = Padding {
        top: rng.range(0, 3),
        left: rng.range(0, 3),
        bottom: rng.range(0, 3),
        right: rng.range(0, 3),
    };
    let conv = Conv2d {
        in_channels,
        out_channels,
        kernel,
        stride: [rng.range(1, 4), rng.range(1, 4)],
        dilation,
        padding,
        groups,
    };
    let min = |k: usize, d: usize, pad: usize| (d * (k - 1) + 1).saturating_sub(pad).max(1);
    let input = Shape::new(
        rng.range(1, 3),
        in_channels,
        min(kernel[0], dilation[0], padding.top + padding.bottom) + rng.range(0, 8),
        min(kernel[1], dilation[1], padding.left + padding.right) + rng.range(0, 8),
    );
    let activations = all_activations(rng, out_channels);
    let activation = activations[index % activations.len()].clone();
    conv_case(rng, conv, input, activation)
}

/// One convolution with `activation` in its epilogue, on random weights and input.
fn conv_case(rng: &mut Rng, conv: Conv2d, input: Shape, activation: Activation) -> Case {
    let name = format!(
        "conv2d {conv} on {input}, then {}",
        activation_name(&activation)
    );
    let layer = rng.layer(conv, Epilogue::activation(activation));
    let x = rng.tensor(input, 1.0);
    case(name, input, &[(Op::Conv(layer), vec![Value::Input])], x)
}

/// A depthwise convolution over more channels than one vector register holds (64 + 16 + 3: every block size
/// of the CPU kernel), with a per-channel PWLU.
fn wide_depthwise(rng: &mut Rng) -> Case {
    let channels = 83;
    let conv = Conv2d {
        stride: [2, 2],
        padding: Padding {
            top: 1,
            left: 0,
            bottom: 2,
            right: 1,
        },
        groups: channels,
        ..Conv2d::new(channels, channels, [3, 3])
    };
    let input = Shape::new(2, channels, 9, 8);
    let activation = Activation::Pwlu(random_pwlu(rng, channels, 16));
    conv_case(rng, conv, input, activation)
}

/// A 5x5 depthwise convolution with stride 1 on a frame wide enough for the CPU kernel's unrolled path over
/// runs of inner pixels (in fours, then one by one), odd channels (16 + 3 * 4 + 1) and asymmetric padding.
fn depthwise_5x5(rng: &mut Rng) -> Case {
    let channels = 29;
    let conv = Conv2d {
        padding: Padding {
            top: 2,
            left: 1,
            bottom: 1,
            right: 3,
        },
        groups: channels,
        ..Conv2d::new(channels, channels, [5, 5])
    };
    let input = Shape::new(1, channels, 6, 13);
    let activation = Activation::Pwlu(random_pwlu(rng, channels, 16));
    conv_case(rng, conv, input, activation)
}

/// A 1x1 convolution as in an inverted residual block's expansion: few input channels, output channels that
/// are not a multiple of a vector, and pixels that are not a multiple of a register tile.
fn pointwise(rng: &mut Rng) -> Case {
    let conv = Conv2d::new(37, 83, [1, 1]);
    let input = Shape::new(2, 37, 5, 7);
    let activation = Activation::Pwlu(random_pwlu(rng, 83, 12));
    conv_case(rng, conv, input, activation)
}

/// A layer as late in a network at batch 1: few pixels, many channels (the CPU backend splits such a product
/// by columns of the weights rather than by rows of pixels).
fn wide_late_layer(rng: &mut Rng) -> Case {
    let conv = Conv2d {
        padding: Padding::symmetric(1, 1),
        ..Conv2d::new(96, 131, [3, 3])
    };
    let input = Shape::new(1, 96, 3, 3);
    let activation = Activation::Pwlu(random_pwlu(rng, 131, 8));
    conv_case(rng, conv, input, activation)
}

/// 3x3 convolutions with stride 1 over enough channels and pixels for the CPU backend's Winograd kernels
/// (F(4x4, 3x3) from 8 tiles of 4x4 outputs, F(2x2, 3x3) below that from 16 of 2x2): outputs whose height and
/// width are not multiples of the tile (tiles cut by the edge), asymmetric padding, channels off the 16-lane
/// blocks, and a residual added after a PWLU.
fn winograd_layers(rng: &mut Rng) -> Vec<Case> {
    let odd = Conv2d {
        padding: Padding {
            top: 2,
            left: 0,
            bottom: 0,
            right: 1,
        },
        ..Conv2d::new(19, 24, [3, 3])
    };
    let first = Conv2d {
        padding: Padding::symmetric(1, 1),
        ..Conv2d::new(16, 37, [3, 3])
    };
    let second = Conv2d {
        padding: Padding::symmetric(1, 1),
        ..Conv2d::new(37, 37, [3, 3])
    };
    let input = Shape::new(2, 16, 9, 14);
    let epilogue = Epilogue {
        activation: Activation::Pwlu(random_pwlu(rng, 37, 16)),
        residual: ResidualAdd::AfterActivation,
    };
    let second = rng.layer(second, epilogue);
    let first = rng.layer(first, Epilogue::activation(Activation::Relu));
    let residual = case(
        format!("residual block of 3x3 convolutions 16 -> 37 -> 37 on {input}"),
        input,
        &[
            (Op::Conv(first), vec![Value::Input]),
            (Op::Conv(second), vec![Value::Node(0), Value::Node(0)]),
        ],
        rng.tensor(input, 1.0),
    );
    let activation = Activation::Pwlu(random_pwlu(rng, 24, 8));
    let odd = conv_case(rng, odd, Shape::new(2, 19, 13, 11), activation);
    // A 7x7 output at batch 1, as a ResNet's last stage: F(2x2, 3x3).
    let late = Conv2d {
        padding: Padding {
            top: 1,
            left: 2,
            bottom: 1,
            right: 0,
        },
        ..Conv2d::new(24, 40, [3, 3])
    };
    let activation = Activation::Pwlu(random_pwlu(rng, 40, 12));
    let late = conv_case(rng, late, Shape::new(1, 24, 7, 7), activation);
    vec![odd, residual, late]
}

/// A residual block: a convolution, an activation, and a second convolution that adds the first one's output
/// before or after its own activation.
fn residual_block(rng: &mut Rng, index: usize) -> Case {
    let channels = rng.range(3, 17);
    let input = Shape::new(
        rng.range(1, 3),
        rng.range(1, 9),
        rng.range(4, 12),
        rng.range(4, 12),
    );
    let first = Conv2d {
        padding: Padding::symmetric(1, 1),
        ..Conv2d::new(input.c, channels, [3, 3])
    };
    let second = if index.is_multiple_of(2) {
        Conv2d {
            padding: Padding::symmetric(1, 1),
            ..Conv2d::new(channels, channels, [3, 3])
        }
    } else {
        Conv2d {
            padding: Padding::symmetric(1, 1),
            groups: channels,
            ..Conv2d::new(channels, channels, [3, 3])
        }
    };
    let residual = [ResidualAdd::BeforeActivation, ResidualAdd::AfterActivation][index / 2 % 2];
    let activations = all_activations(rng, channels);
    let activation = activations[(index * 5 + 3) % activations.len()].clone();
    let name = format!(
        "residual block {first} then {second} with {residual:?}, {}",
        activation_name(&activation)
    );
    let first = rng.layer(first, Epilogue::activation(Activation::Identity));
    let second = rng.layer(
        second,
        Epilogue {
            activation,
            residual,
        },
    );
    let x = rng.tensor(input, 1.0);
    case(
        name,
        input,
        &[
            (Op::Conv(first), vec![Value::Input]),
            (Op::Activation(Activation::Relu), vec![Value::Node(0)]),
            (Op::Conv(second), vec![Value::Node(1), Value::Node(0)]),
        ],
        x,
    )
}

fn batch_norm(rng: &mut Rng) -> Case {
    let input = Shape::new(2, 7, 5, 3);
    let c = input.c;
    let bn = BatchNorm {
        mean: rng.vec(c, 0.5).into(),
        var: (0..c).map(|_| 0.2 + rng.unit()).collect::<Vec<_>>().into(),
        gamma: rng.vec(c, 1.5).into(),
        beta: rng.vec(c, 0.5).into(),
        eps: 1e-5,
    };
    let activation = Activation::Pwlu(random_pwlu(rng, c, 8));
    case(
        format!("batch_norm then PWLU on {input}"),
        input,
        &[(Op::BatchNorm(bn, activation), vec![Value::Input])],
        rng.tensor(input, 2.0),
    )
}

/// A residual add and a squeeze-and-excitation multiply, each with an activation fused.
fn binary(rng: &mut Rng) -> Vec<Case> {
    let input = Shape::new(2, 6, 5, 7);
    let add = case(
        format!("add then PWLU on {input}"),
        input,
        &[
            (Op::Activation(Activation::Silu), vec![Value::Input]),
            (
                Op::Binary(
                    BinaryOp::Add,
                    Activation::Pwlu(random_pwlu(rng, input.c, 16)),
                ),
                vec![Value::Input, Value::Node(0)],
            ),
        ],
        rng.tensor(input, 2.0),
    );
    let multiply = case(
        format!("channel multiply then ReLU6 on {input}"),
        input,
        &[
            (Op::GlobalAvgPool, vec![Value::Input]),
            (Op::Activation(Activation::Sigmoid), vec![Value::Node(0)]),
            (
                Op::Binary(BinaryOp::MulChannels, Activation::Relu6),
                vec![Value::Input, Value::Node(1)],
            ),
        ],
        rng.tensor(input, 4.0),
    );
    vec![add, multiply]
}

/// Max or average pooling with random window, stride, dilation, padding and ceil mode.
fn pooling(rng: &mut Rng, index: usize) -> Case {
    let kind = if index.is_multiple_of(2) {
        PoolKind::Max
    } else {
        PoolKind::Average {
            count_include_pad: index % 4 == 1,
        }
    };
    let kernel = [rng.range(1, 4), rng.range(1, 4)];
    let pad = |k: usize, rng: &mut Rng| rng.range(0, k / 2 + 1);
    let pool = Pool2d {
        stride: [rng.range(1, 3), rng.range(1, 3)],
        padding: Padding {
            top: pad(kernel[0], rng),
            left: pad(kernel[1], rng),
            bottom: pad(kernel[0], rng),
            right: pad(kernel[1], rng),
        },
        dilation: if kind == PoolKind::Max {
            [rng.range(1, 3), 1]
        } else {
            [1, 1]
        },
        ceil_mode: index >= 3,
        ..Pool2d::new(kind, kernel)
    };
    let input = Shape::new(2, rng.range(1, 10), rng.range(6, 12), rng.range(6, 12));
    let mut x = rng.tensor(input, 2.0);
    if kind == PoolKind::Max {
        // PyTorch's rule: a window with a NaN gives NaN; infinities win or lose as numbers.
        x.data_mut()[3] = f32::NAN;
        x.data_mut()[10] = f32::INFINITY;
        x.data_mut()[17] = f32::NEG_INFINITY;
    }
    case(
        format!("pool2d {pool:?} on {input}"),
        input,
        &[(Op::Pool(pool), vec![Value::Input])],
        x,
    )
}

/// Flatten of a tensor with height and width (a real layout change), then a linear layer with PWLU.
fn classifier_head(rng: &mut Rng) -> Case {
    let input = Shape::new(3, 5, 3, 2);
    let features = input.c * input.h * input.w;
    let out = 11;
    let linear = Linear {
        in_features: features,
        out_features: out,
        weight: rng.vec(features * out, 0.3).into(),
        bias: Some(rng.vec(out, 0.5).into()),
        activation: Activation::Pwlu(random_pwlu(rng, out, 8)),
    };
    case(
        format!("flatten then linear {features} -> {out} on {input}"),
        input,
        &[
            (Op::Flatten, vec![Value::Input]),
            (Op::Linear(linear), vec![Value::Node(0)]),
        ],
        rng.tensor(input, 1.0),
    )
}

/// A case of `nodes` (op and inputs, in order; the last is the output) over an `input`-shaped input.
pub(crate) fn case(name: String, input: Shape, nodes: &[(Op, Vec<Value>)], x: Tensor) -> Case {
    let mut graph = Graph {
        input: input.with_batch(1),
        nodes: Vec::with_capacity(nodes.len()),
        output: Value::Node(nodes.len() - 1),
    };
    for (i, (op, inputs)) in nodes.iter().enumerate() {
        let shapes: Vec<Shape> = inputs.iter().map(|&v| graph.shape(v)).collect();
        let shape = op
            .output_shape(&shapes)
            .unwrap_or_else(|e| panic!("conformance case '{name}' is ill-formed: {e}"));
        graph.nodes.push(Node {
            name: format!("n{i}"),
            op: op.clone(),
            inputs: inputs.clone(),
            shape,
            activation_source: None,
        });
    }
    Case {
        name,
        graph,
        input: x,
        tolerance: TOLERANCE,
    }
}

/// Every activation the kernels implement, with PWLU units for `channels` channels drawn from `seed`: the list
/// the GPU launcher tests use too.
pub fn activations_for(seed: u64, channels: usize) -> Vec<Activation> {
    all_activations(&mut Rng(seed), channels)
}

/// A random channel-wise uniform PWLU near ReLU, drawn from `seed`.
pub fn uniform_pwlu(seed: u64, units: usize, intervals: usize) -> Arc<Pwlu> {
    random_pwlu(&mut Rng(seed), units, intervals)
}

/// A random non-uniform PWLU with increasing breakpoints, drawn from `seed`.
pub fn non_uniform_pwlu(seed: u64, units: usize, intervals: usize) -> Arc<Pwlu> {
    random_non_uniform_pwlu(&mut Rng(seed), units, intervals)
}
