//! The GPU launchers: every WGSL kernel against its CPU reference, on random shapes and on edge cases, on every
//! backend listed in `PWLU_TEST_BACKENDS`; the kernels that can read their input through the input stage, both
//! through it and from the buffer.

mod common;

use std::sync::Arc;

use common::{
    assert_close, contexts, contexts_for_both_input_paths, random_non_uniform_pwlu, random_pwlu,
    random_tensor, random_vec, rng, TOLERANCE,
};
use pwlu::gpu::kernels::{
    BinaryKernel, Conv2dKernel, ConvVariant, FlattenKernel, GlobalAvgPoolKernel, MatmulKernel,
    Pool2dKernel, SoftmaxKernel, UnaryKernel,
};
use pwlu::gpu::{GpuContext, GpuTensor};
use pwlu::ops::{
    Activation, BatchNorm, BinaryOp, Conv2d, Conv2dLayer, Epilogue, Linear, Padding, Pool2d,
    PoolKind, Pwlu, ResidualAdd,
};
use pwlu::{reference, Shape, Tensor};
use rand::rngs::SmallRng;
use rand::Rng;

fn all_activations(rng: &mut SmallRng, channels: usize) -> Vec<Activation> {
    pwlu::conformance::activations_for(rng.random(), channels)
}

/// Runs `layer` on both sides and compares.
fn check_conv(
    ctx: &GpuContext,
    layer: &Conv2dLayer,
    input: &Tensor,
    residual: Option<&Tensor>,
    what: &str,
) {
    let expected =
        reference::conv2d(layer, input, residual).unwrap_or_else(|e| panic!("{what}: cpu: {e}"));
    let kernel =
        Conv2dKernel::new(ctx, layer, input.shape()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let x = GpuTensor::upload(ctx, input).expect("upload");
    let r = residual.map(|r| GpuTensor::upload(ctx, r).expect("upload residual"));
    let got = kernel
        .run(ctx, &x, r.as_ref())
        .and_then(|y| y.download_blocking(ctx))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_close(
        &got,
        &expected,
        TOLERANCE,
        &format!("{what} on {}", ctx.adapter()),
    );
}

fn random_layer(rng: &mut SmallRng, conv: Conv2d, epilogue: Epilogue) -> Conv2dLayer {
    let fan_in = (conv.in_channels / conv.groups * conv.kernel[0] * conv.kernel[1]) as f32;
    let weight = random_vec(rng, conv.weight_len(), 1.0 / fan_in.sqrt());
    let bias = rng
        .random_bool(0.7)
        .then(|| random_vec(rng, conv.out_channels, 0.5).into());
    Conv2dLayer::new(conv, weight, bias, epilogue).expect("valid layer")
}

fn conv_case(
    ctx: &GpuContext,
    rng: &mut SmallRng,
    conv: Conv2d,
    input: Shape,
    epilogue: Epilogue,
    what: &str,
) {
    let layer = random_layer(rng, conv, epilogue);
    let x = random_tensor(rng, input);
    let residual = (layer.epilogue.residual != ResidualAdd::None).then(|| {
        let [oh, ow] = conv.output_size([input.h, input.w]).expect("fits");
        random_tensor(rng, Shape::new(input.n, conv.out_channels, oh, ow))
    });
    check_conv(ctx, &layer, &x, residual.as_ref(), what);
}

#[test]
fn non_uniform_pwlu_runs_in_every_convolution_epilogue() {
    // Dense, depthwise and grouped kernels, each residual placement, channel-wise and layer-wise units.
    for ctx in contexts_for_both_input_paths() {
        let mut rng = rng(12);
        for (in_channels, out_channels, groups) in [(5, 7, 1), (6, 6, 6), (6, 9, 3)] {
            for residual in [
                ResidualAdd::None,
                ResidualAdd::BeforeActivation,
                ResidualAdd::AfterActivation,
            ] {
                for units in [out_channels, 1] {
                    let conv = Conv2d {
                        padding: Padding {
                            top: 1,
                            left: 0,
                            bottom: 2,
                            right: 1,
                        },
                        stride: [2, 1],
                        groups,
                        ..Conv2d::new(in_channels, out_channels, [3, 3])
                    };
                    let pwlu = random_non_uniform_pwlu(&mut rng, units, 7);
                    let epilogue = Epilogue {
                        activation: Activation::Pwlu(pwlu),
                        residual,
                    };
                    let input = Shape::new(2, in_channels, 9, 7);
                    let what = format!(
                        "non-uniform PWLU ({units} units) after {conv}, residual {residual:?}, on {}",
                        ctx.adapter()
                    );
                    conv_case(&ctx, &mut rng, conv, input, epilogue, &what);
                }
            }
        }
    }
}

#[test]
fn conv2d_random_shapes_agree_with_cpu() {
    for ctx in contexts_for_both_input_paths() {
        let mut rng = rng(1);
        for case in 0..40 {
            let groups = match case % 4 {
                0 | 1 => 1,
                2 => 0, // depthwise, below
                _ => rng.random_range(2..4),
            };
            let (in_channels, out_channels, groups) = if groups == 0 {
                let c = rng.random_range(1..19);
                (c, c, c)
            } else {
                let per_in = rng.random_range(1..9);
                let per_out = rng.random_range(1..9);
                (per_in * groups, per_out * groups, groups)
            };
            let kernel = [rng.random_range(1..6), rng.random_range(1..6)];
            let dilation = [rng.random_range(1..3), rng.random_range(1..3)];
            let padding = Padding {
                top: rng.random_range(0..3),
                left: rng.random_range(0..3),
                bottom: rng.random_range(0..3),
                right: rng.random_range(0..3),
            };
            let conv = Conv2d {
                in_channels,
                out_channels,
                kernel,
                stride: [rng.random_range(1..4), rng.random_range(1..4)],
                dilation,
                padding,
                groups,
            };
            let min_h = (dilation[0] * (kernel[0] - 1) + 1)
                .saturating_sub(padding.top + padding.bottom)
                .max(1);
            let min_w = (dilation[1] * (kernel[1] - 1) + 1)
                .saturating_sub(padding.left + padding.right)
                .max(1);
            let input = Shape::new(
                rng.random_range(1..4),
                in_channels,
                rng.random_range(min_h..min_h + 9),
                rng.random_range(min_w..min_w + 9),
            );
            let activations = all_activations(&mut rng, out_channels);
            let activation = activations[rng.random_range(0..activations.len())].clone();
            let residual = [
                ResidualAdd::None,
                ResidualAdd::BeforeActivation,
                ResidualAdd::AfterActivation,
            ][rng.random_range(0..3)];
            let what = format!(
                "case {case}: {conv:?} on {input}, {} {residual:?}",
                activation.name()
            );
            conv_case(
                &ctx,
                &mut rng,
                conv,
                input,
                Epilogue {
                    activation,
                    residual,
                },
                &what,
            );
        }
    }
}

#[test]
fn conv2d_edge_cases_agree_with_cpu() {
    let base = |ic, oc, k| Conv2d::new(ic, oc, [k, k]);
    let cases: Vec<(&str, Conv2d, Shape)> = vec![
        (
            "1x1 spatial input, 1x1 kernel",
            base(5, 7, 1),
            Shape::new(2, 5, 1, 1),
        ),
        (
            "a classifier at batch 3: fewer pixels than a dense tile",
            base(21, 9, 1),
            Shape::new(3, 21, 1, 1),
        ),
        (
            "7 output pixels: one short of a dense tile",
            base(6, 5, 1),
            Shape::new(1, 6, 1, 7),
        ),
        (
            "1x1 spatial input, 3x3 kernel padded",
            Conv2d {
                padding: Padding::symmetric(1, 1),
                ..base(3, 4, 3)
            },
            Shape::new(1, 3, 1, 1),
        ),
        (
            "stride larger than the kernel",
            Conv2d {
                stride: [3, 3],
                ..base(4, 6, 1)
            },
            Shape::new(1, 4, 10, 11),
        ),
        (
            "stride 3 over a 2x2 kernel",
            Conv2d {
                stride: [3, 2],
                ..base(6, 5, 2)
            },
            Shape::new(2, 6, 9, 7),
        ),
        (
            "TensorFlow SAME, stride 2, even input (pads bottom/right)",
            Conv2d {
                stride: [2, 2],
                padding: Padding::same([16, 16], [3, 3], [2, 2], [1, 1]),
                ..base(8, 16, 3)
            },
            Shape::new(1, 8, 16, 16),
        ),
        (
            "TensorFlow SAME 5x5 stride 2 depthwise",
            Conv2d {
                stride: [2, 2],
                padding: Padding::same([14, 14], [5, 5], [2, 2], [1, 1]),
                groups: 12,
                ..base(12, 12, 5)
            },
            Shape::new(1, 12, 14, 14),
        ),
        (
            "depthwise 7x7 stride 2: even and odd taps from two sliding windows",
            Conv2d {
                stride: [2, 2],
                padding: Padding::symmetric(3, 3),
                groups: 6,
                ..base(6, 6, 7)
            },
            Shape::new(1, 6, 19, 21),
        ),
        (
            "depthwise 3x3 stride 2 dilation 2: one sliding window",
            Conv2d {
                stride: [2, 2],
                dilation: [2, 2],
                padding: Padding::symmetric(2, 2),
                groups: 7,
                ..base(7, 7, 3)
            },
            Shape::new(1, 7, 13, 15),
        ),
        (
            "depthwise 3x3 stride 3: every tap loaded",
            Conv2d {
                stride: [3, 3],
                padding: Padding::symmetric(1, 1),
                groups: 4,
                ..base(4, 4, 3)
            },
            Shape::new(1, 4, 14, 17),
        ),
        (
            "depthwise 3x3 dilation 3, asymmetric padding",
            Conv2d {
                dilation: [3, 3],
                padding: Padding {
                    top: 0,
                    left: 3,
                    bottom: 2,
                    right: 1,
                },
                groups: 5,
                ..base(5, 5, 3)
            },
            Shape::new(2, 5, 11, 13),
        ),
        (
            "dilation 2",
            Conv2d {
                dilation: [2, 2],
                padding: Padding::symmetric(2, 2),
                ..base(5, 3, 3)
            },
            Shape::new(1, 5, 9, 8),
        ),
        (
            "7x7 stride 2 stem",
            Conv2d {
                stride: [2, 2],
                padding: Padding::symmetric(3, 3),
                ..base(3, 8, 7)
            },
            Shape::new(1, 3, 23, 23),
        ),
        (
            "depthwise 3x3, channels not a multiple of 4",
            Conv2d {
                padding: Padding::symmetric(1, 1),
                groups: 13,
                ..base(13, 13, 3)
            },
            Shape::new(3, 13, 7, 6),
        ),
        (
            "depthwise 5x5, 37 channels, 19 wide, asymmetric padding: windows of 8 pixels across both \
             borders, the last channel block masked",
            Conv2d {
                padding: Padding {
                    top: 2,
                    left: 3,
                    bottom: 1,
                    right: 2,
                },
                groups: 37,
                ..base(37, 37, 5)
            },
            Shape::new(2, 37, 9, 19),
        ),
        (
            "depthwise 3x3 stride 2, 40 channels, dilated only vertically",
            Conv2d {
                stride: [2, 2],
                dilation: [2, 1],
                padding: Padding {
                    top: 2,
                    left: 1,
                    bottom: 2,
                    right: 0,
                },
                groups: 40,
                ..base(40, 40, 3)
            },
            Shape::new(1, 40, 11, 30),
        ),
        (
            "depthwise 5x5 stride 2 on an image narrower than the filter's reach: every pixel a border pixel",
            Conv2d {
                stride: [2, 2],
                padding: Padding::symmetric(2, 2),
                groups: 16,
                ..base(16, 16, 5)
            },
            Shape::new(1, 16, 6, 3),
        ),
        (
            "depthwise with channel multiplier 2",
            Conv2d {
                padding: Padding::symmetric(1, 1),
                groups: 6,
                ..base(6, 12, 3)
            },
            Shape::new(1, 6, 5, 5),
        ),
        (
            "groups 3",
            Conv2d {
                groups: 3,
                ..base(9, 6, 3)
            },
            Shape::new(2, 9, 6, 6),
        ),
        (
            "one input and one output channel",
            base(1, 1, 3),
            Shape::new(1, 1, 5, 5),
        ),
        (
            "batch 5, channels 3 -> 33",
            base(3, 33, 1),
            Shape::new(5, 3, 4, 3),
        ),
        (
            "kernel as large as the padded input",
            Conv2d {
                padding: Padding::symmetric(1, 1),
                ..base(2, 3, 5)
            },
            Shape::new(1, 2, 3, 3),
        ),
    ];
    for ctx in contexts_for_both_input_paths() {
        let mut rng = rng(2);
        for (what, conv, input) in &cases {
            for activation in [
                Activation::Identity,
                Activation::Pwlu(random_pwlu(&mut rng, conv.out_channels, 16)),
            ] {
                let epilogue = Epilogue::activation(activation);
                conv_case(&ctx, &mut rng, *conv, *input, epilogue, what);
            }
        }
    }
}

#[test]
fn conv2d_picks_the_specialised_kernels() {
    let ctx = &contexts()[0];
    let mut rng = rng(3);
    let depthwise = Conv2d {
        groups: 8,
        ..Conv2d::new(8, 8, [3, 3])
    };
    let multiplier = Conv2d {
        groups: 4,
        ..Conv2d::new(4, 8, [3, 3])
    };
    for (conv, variant) in [
        (Conv2d::new(8, 8, [3, 3]), ConvVariant::Dense),
        (depthwise, ConvVariant::Depthwise),
        (multiplier, ConvVariant::Grouped),
    ] {
        let layer = random_layer(&mut rng, conv, Epilogue::default());
        let kernel =
            Conv2dKernel::new(ctx, &layer, Shape::new(1, conv.in_channels, 5, 5)).expect("kernel");
        assert_eq!(kernel.variant(), variant, "{conv:?}");
    }
}

#[test]
fn convolutions_of_one_kind_share_a_pipeline_and_keep_their_sizes() {
    // Sizes are a uniform (shaders/shared/conv_shape.wgsl): layers that differ only in them compile once, and
    // each, run after the others were prepared, still computes with its own.
    for ctx in contexts() {
        let mut rng = rng(11);
        let epilogue = || Epilogue::activation(Activation::Relu);
        let dense = [
            (Conv2d::new(3, 16, [7, 7]), Shape::new(1, 3, 19, 17)),
            (
                Conv2d {
                    stride: [2, 1],
                    dilation: [1, 2],
                    padding: Padding {
                        top: 1,
                        left: 2,
                        bottom: 0,
                        right: 1,
                    },
                    ..Conv2d::new(9, 5, [3, 3])
                },
                Shape::new(2, 9, 11, 13),
            ),
            (Conv2d::new(24, 40, [1, 1]), Shape::new(1, 24, 6, 6)),
        ];
        let depthwise = |c: usize, kernel: [usize; 2]| Conv2d {
            groups: c,
            padding: Padding::symmetric(kernel[0] / 2, kernel[1] / 2),
            ..Conv2d::new(c, c, kernel)
        };
        let depthwise = [
            (depthwise(12, [3, 3]), Shape::new(1, 12, 9, 10)),
            (depthwise(7, [5, 5]), Shape::new(2, 7, 14, 6)),
        ];
        for (kind, cases) in [("dense", &dense[..]), ("depthwise", &depthwise[..])] {
            let cases: Vec<(Conv2dLayer, Tensor)> = cases
                .iter()
                .map(|&(conv, input)| {
                    (
                        random_layer(&mut rng, conv, epilogue()),
                        random_tensor(&mut rng, input),
                    )
                })
                .collect();
            let before = ctx.pipeline_count();
            let kernels: Vec<Conv2dKernel> = cases
                .iter()
                .map(|(layer, x)| Conv2dKernel::new(&ctx, layer, x.shape()).expect("kernel"))
                .collect();
            assert_eq!(
                ctx.pipeline_count(),
                before + 1,
                "{kind}: one pipeline for layers of one kind"
            );
            for ((layer, x), kernel) in cases.iter().zip(&kernels).rev() {
                let expected = reference::conv2d(layer, x, None).expect("cpu conv");
                let input = GpuTensor::upload(&ctx, x).expect("upload");
                let got = kernel
                    .run(&ctx, &input, None)
                    .and_then(|y| y.download_blocking(&ctx))
                    .expect("run");
                assert_close(
                    &got,
                    &expected,
                    TOLERANCE,
                    &format!("{kind} {:?} on {}", layer.conv, ctx.adapter()),
                );
            }
        }
    }
}

#[test]
fn poolings_and_binary_operations_of_one_kind_share_a_pipeline() {
    // Their sizes are uniforms too: every global pooling of a model compiles once, and every channel multiply.
    for ctx in contexts() {
        let mut rng = rng(12);
        let shapes = [
            Shape::new(1, 5, 7, 3),
            Shape::new(3, 16, 2, 2),
            Shape::new(2, 9, 11, 13),
        ];
        let before = ctx.pipeline_count();
        let pools: Vec<GlobalAvgPoolKernel> = shapes
            .iter()
            .map(|&shape| GlobalAvgPoolKernel::new(&ctx, shape).expect("pool"))
            .collect();
        let multiplies: Vec<BinaryKernel> = shapes
            .iter()
            .map(|&shape| {
                BinaryKernel::new(&ctx, BinaryOp::MulChannels, &Activation::Sigmoid, shape)
                    .expect("binary")
            })
            .collect();
        assert_eq!(ctx.pipeline_count(), before + 2, "one pipeline per kind");
        for ((shape, pool), multiply) in shapes.iter().zip(&pools).zip(&multiplies).rev() {
            let x = random_tensor(&mut rng, *shape);
            let gate = random_tensor(&mut rng, Shape::new(shape.n, shape.c, 1, 1));
            let gpu_x = GpuTensor::upload(&ctx, &x).expect("upload");
            let pooled = pool
                .run(&ctx, &gpu_x)
                .and_then(|t| t.download_blocking(&ctx))
                .expect("pool run");
            assert_close(
                &pooled,
                &reference::global_avg_pool(&x),
                TOLERANCE,
                &format!("global avg pool {shape} on {}", ctx.adapter()),
            );
            let expected =
                reference::binary(BinaryOp::MulChannels, &Activation::Sigmoid, &x, &gate)
                    .expect("cpu");
            let got = multiply
                .run(
                    &ctx,
                    &gpu_x,
                    &GpuTensor::upload(&ctx, &gate).expect("upload"),
                )
                .and_then(|t| t.download_blocking(&ctx))
                .expect("binary run");
            assert_close(
                &got,
                &expected,
                TOLERANCE,
                &format!("channel multiply {shape} on {}", ctx.adapter()),
            );
        }
    }
}

#[test]
fn convolutions_read_inputs_longer_than_a_row_of_the_input_stage() {
    // The dense and depthwise kernels read their input through a texture of 4096-texel rows: inputs of whole
    // rows and a part row, a residual read back through it, and a stage that grows from one layer to the next.
    for ctx in contexts_for_both_input_paths() {
        let mut rng = rng(9);
        let pwlu = |rng: &mut SmallRng, c| Activation::Pwlu(random_pwlu(rng, c, 16));
        let dense = Conv2d {
            padding: Padding::symmetric(1, 1),
            ..Conv2d::new(5, 5, [3, 3])
        };
        // 2 vec4s x 61 x 70 pixels = 8540 texels: two whole rows and 348 texels of a third.
        let input = Shape::new(1, 5, 61, 70);
        for residual in [ResidualAdd::None, ResidualAdd::AfterActivation] {
            let epilogue = Epilogue {
                activation: pwlu(&mut rng, 5),
                residual,
            };
            let layer = random_layer(&mut rng, dense, epilogue);
            let x = random_tensor(&mut rng, input);
            let from_input = (residual != ResidualAdd::None).then_some(&x);
            check_conv(
                &ctx,
                &layer,
                &x,
                from_input,
                &format!("dense, residual {residual:?}"),
            );
        }
        let depthwise = Conv2d {
            stride: [2, 2],
            padding: Padding::symmetric(1, 1),
            groups: 12,
            ..Conv2d::new(12, 12, [3, 3])
        };
        // 3 vec4s x 2 x 53 x 67 pixels = 21306 texels: a larger stage than the dense case's.
        let epilogue = Epilogue {
            activation: pwlu(&mut rng, 12),
            residual: ResidualAdd::None,
        };
        conv_case(
            &ctx,
            &mut rng,
            depthwise,
            Shape::new(2, 12, 53, 67),
            epilogue,
            "depthwise",
        );
        // Exactly one row.
        let one_row = Conv2d::new(16, 8, [1, 1]);
        conv_case(
            &ctx,
            &mut rng,
            one_row,
            Shape::new(1, 16, 32, 32),
            Epilogue::default(),
            "one row",
        );
    }
}

#[test]
fn fused_residual_blocks_agree_with_unfused_cpu() {
    // ResNet: relu(bn(conv(x)) + x); inverted residual: bn(conv(x)) + x with no activation.
    for ctx in contexts_for_both_input_paths() {
        let mut rng = rng(4);
        let channels = 10;
        let input = random_tensor(&mut rng, Shape::new(2, channels, 6, 6));
        let conv = Conv2d {
            padding: Padding::symmetric(1, 1),
            ..Conv2d::new(channels, channels, [3, 3])
        };
        for residual in [ResidualAdd::BeforeActivation, ResidualAdd::AfterActivation] {
            let activation = Activation::Pwlu(random_pwlu(&mut rng, channels, 16));
            let fused = random_layer(
                &mut rng,
                conv,
                Epilogue {
                    activation: activation.clone(),
                    residual,
                },
            );
            let plain = Conv2dLayer {
                epilogue: Epilogue::default(),
                ..fused.clone()
            };
            let y = reference::conv2d(&plain, &input, None).expect("cpu conv");
            let expected = match residual {
                ResidualAdd::BeforeActivation => {
                    let sum = reference::binary(BinaryOp::Add, &Activation::Identity, &y, &input)
                        .expect("add");
                    reference::activation(&activation, &sum).expect("act")
                }
                _ => {
                    let act = reference::activation(&activation, &y).expect("act");
                    reference::binary(BinaryOp::Add, &Activation::Identity, &act, &input)
                        .expect("add")
                }
            };
            let kernel = Conv2dKernel::new(&ctx, &fused, input.shape()).expect("kernel");
            let x = GpuTensor::upload(&ctx, &input).expect("upload");
            // The residual is the input itself: read through the input's binding.
            let got = kernel
                .run(&ctx, &x, Some(&x))
                .and_then(|t| t.download_blocking(&ctx))
                .expect("run");
            assert_close(&got, &expected, TOLERANCE, &format!("{residual:?}"));
        }
    }
}

fn random_batch_norm(rng: &mut SmallRng, channels: usize) -> BatchNorm {
    BatchNorm {
        mean: random_vec(rng, channels, 0.5).into(),
        var: (0..channels)
            .map(|_| rng.random_range(0.2f32..2.0))
            .collect(),
        gamma: (0..channels)
            .map(|_| rng.random_range(0.5f32..1.5))
            .collect(),
        beta: random_vec(rng, channels, 0.5).into(),
        eps: 1e-5,
    }
}

#[test]
fn batch_norm_folded_into_conv_agrees_with_conv_then_batch_norm() {
    for ctx in contexts() {
        let mut rng = rng(5);
        for (conv, input) in [
            (
                Conv2d {
                    padding: Padding::symmetric(1, 1),
                    ..Conv2d::new(6, 9, [3, 3])
                },
                Shape::new(2, 6, 7, 7),
            ),
            (
                Conv2d {
                    padding: Padding::symmetric(1, 1),
                    groups: 7,
                    ..Conv2d::new(7, 7, [3, 3])
                },
                Shape::new(1, 7, 5, 5),
            ),
        ] {
            let activation = Activation::Pwlu(random_pwlu(&mut rng, conv.out_channels, 16));
            let bn = random_batch_norm(&mut rng, conv.out_channels);
            let plain = random_layer(&mut rng, conv, Epilogue::default());
            let x = random_tensor(&mut rng, input);
            let expected = reference::batch_norm(
                &bn,
                &activation,
                &reference::conv2d(&plain, &x, None).expect("conv"),
            )
            .expect("batch norm");
            let mut folded = Conv2dLayer {
                epilogue: Epilogue::activation(activation),
                ..plain
            };
            folded.fold_batch_norm(&bn).expect("fold");
            let kernel = Conv2dKernel::new(&ctx, &folded, input).expect("kernel");
            let got = kernel
                .run(&ctx, &GpuTensor::upload(&ctx, &x).expect("upload"), None)
                .and_then(|t| t.download_blocking(&ctx))
                .expect("run");
            assert_close(&got, &expected, TOLERANCE, &format!("folded {conv:?}"));
        }
    }
}

#[test]
fn standalone_batch_norm_agrees_with_cpu() {
    for ctx in contexts() {
        let mut rng = rng(6);
        for shape in [
            Shape::new(1, 3, 5, 5),
            Shape::new(2, 17, 3, 4),
            Shape::new(1, 8, 1, 1),
        ] {
            let bn = random_batch_norm(&mut rng, shape.c);
            let x = random_tensor(&mut rng, shape);
            for activation in [
                Activation::Identity,
                Activation::Relu,
                Activation::Pwlu(random_pwlu(&mut rng, shape.c, 8)),
            ] {
                let expected = reference::batch_norm(&bn, &activation, &x).expect("cpu");
                let kernel =
                    UnaryKernel::batch_norm(&ctx, &bn, &activation, shape).expect("kernel");
                let got = kernel
                    .run(&ctx, &GpuTensor::upload(&ctx, &x).expect("upload"))
                    .and_then(|t| t.download_blocking(&ctx))
                    .expect("run");
                assert_close(
                    &got,
                    &expected,
                    TOLERANCE,
                    &format!("batch norm {shape} {}", activation.name()),
                );
            }
        }
    }
}

/// Values that exercise every branch: zeros, signs, the activations' kinks, large magnitudes, non-finite.
fn special_values() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        1.0,
        -1.0,
        3.0,
        -3.0,
        6.0,
        -6.0,
        5.999_999,
        6.000_001,
        2.999_999,
        -2.999_999,
        20.0,
        -20.0,
        88.0,
        -88.0,
        100.0,
        -100.0,
        1e4,
        -1e4,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    v.extend((0..39).map(|i| -4.0 + i as f32 * 0.21));
    v
}

#[test]
fn activations_agree_with_cpu_including_nan_and_infinities() {
    for ctx in contexts() {
        let mut rng = rng(7);
        let values = special_values();
        let channels = 4;
        let per_channel = values.len();
        let shape = Shape::new(1, channels, 1, per_channel);
        let data: Vec<f32> = (0..channels).flat_map(|_| values.iter().copied()).collect();
        let x = Tensor::from_shape(shape, data).expect("tensor");
        for activation in all_activations(&mut rng, channels) {
            let expected = reference::activation(&activation, &x).expect("cpu");
            let kernel = UnaryKernel::activation(&ctx, &activation, shape).expect("kernel");
            let got = kernel
                .run(&ctx, &GpuTensor::upload(&ctx, &x).expect("upload"))
                .and_then(|t| t.download_blocking(&ctx))
                .expect("run");
            assert_close(
                &got,
                &expected,
                TOLERANCE,
                &format!("{} on {}", activation.name(), ctx.adapter()),
            );
            // NaN in gives NaN out, whatever the activation.
            for (i, &v) in x.data().iter().enumerate() {
                if v.is_nan() {
                    assert!(
                        got.data()[i].is_nan(),
                        "{}: NaN became {}",
                        activation.name(),
                        got.data()[i]
                    );
                }
            }
        }
    }
}

/// Inputs at and around every grid point of each unit, on the bounds, far in the tails, and non-finite.
fn pwlu_probe_inputs(pwlu: &Pwlu, unit: usize) -> Vec<f32> {
    let grid = common::pwlu_grid(pwlu, unit);
    let mut xs = vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e4, -1e4, 0.0];
    for &g in &grid {
        xs.extend([g, g.next_up(), g.next_down(), g + 1e-3, g - 1e-3]);
    }
    xs
}

fn check_pwlu(ctx: &GpuContext, pwlu: Arc<Pwlu>, channels: usize, what: &str) {
    let per_channel: Vec<Vec<f32>> = (0..channels)
        .map(|c| pwlu_probe_inputs(&pwlu, pwlu.unit_for_channel(c)))
        .collect();
    let width = per_channel.iter().map(Vec::len).max().unwrap_or(1);
    let shape = Shape::new(1, channels, 1, width);
    let data: Vec<f32> = per_channel
        .iter()
        .flat_map(|xs| (0..width).map(move |i| xs[i % xs.len()]))
        .collect();
    let x = Tensor::from_shape(shape, data).expect("tensor");
    let activation = Activation::Pwlu(Arc::clone(&pwlu));
    let expected = reference::activation(&activation, &x).expect("cpu");
    let got = UnaryKernel::activation(ctx, &activation, shape)
        .and_then(|k| k.run(ctx, &GpuTensor::upload(ctx, &x)?))
        .and_then(|t| t.download_blocking(ctx))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_close(&got, &expected, TOLERANCE, what);
}

#[test]
fn pwlu_agrees_with_cpu_at_breakpoints_bounds_tails_and_non_finite_inputs() {
    for ctx in contexts() {
        let mut rng = rng(8);
        for intervals in [1, 2, 16, 255, 256] {
            check_pwlu(
                &ctx,
                random_pwlu(&mut rng, 5, intervals),
                5,
                &format!("channel-wise N={intervals}"),
            );
            check_pwlu(
                &ctx,
                random_pwlu(&mut rng, 1, intervals),
                6,
                &format!("layer-wise N={intervals}"),
            );
        }
        check_pwlu(
            &ctx,
            Arc::new(Pwlu::relu6(3).expect("relu6")),
            3,
            "ReLU6 as PWLU",
        );
        check_pwlu(
            &ctx,
            Arc::new(Pwlu::relu(2, 16, 4.0).expect("relu")),
            2,
            "ReLU as PWLU",
        );
    }
}

#[test]
fn non_uniform_pwlu_agrees_with_cpu() {
    for ctx in contexts() {
        let mut rng = rng(9);
        for intervals in [1, 4, 7, 64] {
            let units = 3;
            let mut breakpoints = Vec::new();
            for _ in 0..units {
                let mut x = rng.random_range(-4.0f32..-1.0);
                for _ in 0..=intervals {
                    breakpoints.push(x);
                    x += rng.random_range(0.05f32..1.0);
                }
            }
            let points = random_vec(&mut rng, units * (intervals + 1), 2.0);
            let slopes = (0..units)
                .map(|_| [rng.random_range(-1.0f32..1.0), 0.0])
                .collect();
            let pwlu = Pwlu::non_uniform(intervals, breakpoints, points, slopes).expect("valid");
            check_pwlu(
                &ctx,
                Arc::new(pwlu),
                units,
                &format!("non-uniform N={intervals}"),
            );
        }
    }
}

#[test]
fn pwlu_at_infinity_returns_the_flat_tail_value() {
    for ctx in contexts() {
        let relu6 = Arc::new(Pwlu::relu6(1).expect("relu6"));
        let x = Tensor::new(
            vec![1, 1, 1, 4],
            vec![f32::NEG_INFINITY, f32::INFINITY, -1e30, 1e30],
        )
        .expect("tensor");
        let got = UnaryKernel::activation(&ctx, &Activation::Pwlu(relu6), x.shape())
            .and_then(|k| k.run(&ctx, &GpuTensor::upload(&ctx, &x)?))
            .and_then(|t| t.download_blocking(&ctx))
            .expect("run");
        assert_eq!(got.data(), &[0.0, 6.0, 0.0, 6.0]);
    }
}

#[test]
fn binary_ops_agree_with_cpu() {
    for ctx in contexts() {
        let mut rng = rng(10);
        for shape in [
            Shape::new(2, 7, 5, 3),
            Shape::new(1, 16, 1, 1),
            Shape::new(3, 1, 4, 4),
        ] {
            let a = random_tensor(&mut rng, shape);
            for op in [BinaryOp::Add, BinaryOp::MulChannels] {
                let b_shape = match op {
                    BinaryOp::Add => shape,
                    BinaryOp::MulChannels => Shape::new(shape.n, shape.c, 1, 1),
                };
                let b = random_tensor(&mut rng, b_shape);
                for activation in [
                    Activation::Identity,
                    Activation::Relu6,
                    Activation::Pwlu(random_pwlu(&mut rng, shape.c, 16)),
                ] {
                    let expected = reference::binary(op, &activation, &a, &b).expect("cpu");
                    let got = BinaryKernel::new(&ctx, op, &activation, shape)
                        .and_then(|k| {
                            k.run(
                                &ctx,
                                &GpuTensor::upload(&ctx, &a)?,
                                &GpuTensor::upload(&ctx, &b)?,
                            )
                        })
                        .and_then(|t| t.download_blocking(&ctx))
                        .expect("run");
                    assert_close(
                        &got,
                        &expected,
                        TOLERANCE,
                        &format!("{op:?} {shape} {}", activation.name()),
                    );
                }
            }
            // x + x: one tensor in both operands, read through one binding.
            let twice = reference::binary(BinaryOp::Add, &Activation::Relu6, &a, &a).expect("cpu");
            let x = GpuTensor::upload(&ctx, &a).expect("upload");
            let got = BinaryKernel::new(&ctx, BinaryOp::Add, &Activation::Relu6, shape)
                .and_then(|k| k.run(&ctx, &x, &x))
                .and_then(|t| t.download_blocking(&ctx))
                .expect("run");
            assert_close(&got, &twice, TOLERANCE, &format!("x + x {shape}"));
        }
    }
}

#[test]
fn pooling_agrees_with_cpu() {
    let max = |k: usize| Pool2d::new(PoolKind::Max, [k, k]);
    let avg = |k: usize, include: bool| {
        Pool2d::new(
            PoolKind::Average {
                count_include_pad: include,
            },
            [k, k],
        )
    };
    let cases: Vec<(&str, Pool2d, Shape)> = vec![
        (
            "ResNet max pool 3x3 s2 p1",
            Pool2d {
                stride: [2, 2],
                padding: Padding::symmetric(1, 1),
                ..max(3)
            },
            Shape::new(2, 6, 13, 12),
        ),
        (
            "max pool ceil mode",
            Pool2d {
                stride: [2, 2],
                ceil_mode: true,
                ..max(3)
            },
            Shape::new(1, 5, 8, 10),
        ),
        (
            "max pool dilation 2",
            Pool2d {
                dilation: [2, 2],
                stride: [1, 1],
                padding: Padding::symmetric(1, 1),
                ..max(3)
            },
            Shape::new(1, 3, 7, 7),
        ),
        ("max pool 2x2 on 1 channel", max(2), Shape::new(3, 1, 6, 7)),
        (
            "avg pool count_include_pad",
            Pool2d {
                stride: [2, 2],
                padding: Padding::symmetric(1, 1),
                ..avg(3, true)
            },
            Shape::new(1, 9, 7, 8),
        ),
        (
            "avg pool without padded zeros",
            Pool2d {
                stride: [2, 2],
                padding: Padding::symmetric(1, 1),
                ..avg(3, false)
            },
            Shape::new(1, 9, 7, 8),
        ),
        (
            "avg pool ceil mode with padding",
            Pool2d {
                stride: [2, 2],
                padding: Padding::symmetric(1, 1),
                ceil_mode: true,
                ..avg(3, true)
            },
            Shape::new(2, 4, 6, 9),
        ),
        (
            "avg pool asymmetric (TF SAME)",
            Pool2d {
                stride: [2, 2],
                padding: Padding {
                    top: 0,
                    left: 0,
                    bottom: 1,
                    right: 1,
                },
                ..avg(3, false)
            },
            Shape::new(1, 5, 8, 8),
        ),
        ("avg pool 1x1 input", avg(1, true), Shape::new(1, 3, 1, 1)),
    ];
    for ctx in contexts() {
        let mut rng = rng(11);
        for (what, pool, shape) in &cases {
            let x = random_tensor(&mut rng, *shape);
            let expected = reference::pool2d(pool, &x).expect("cpu");
            let kernel = Pool2dKernel::new(&ctx, pool, *shape).expect("kernel");
            assert_eq!(kernel.output_shape(), expected.shape(), "{what}");
            let got = kernel
                .run(&ctx, &GpuTensor::upload(&ctx, &x).expect("upload"))
                .and_then(|t| t.download_blocking(&ctx))
                .expect("run");
            assert_close(&got, &expected, TOLERANCE, what);
        }
    }
}

#[test]
fn max_pool_propagates_nan_and_handles_infinities() {
    for ctx in contexts() {
        let data = vec![
            1.0,
            f32::NAN,
            2.0,
            3.0, // window 1: NaN
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY, // window 2: all -inf
        ];
        let x = Tensor::new(vec![1, 1, 2, 4], data).expect("tensor");
        let x = Tensor::new(
            vec![1, 2, 2, 2],
            vec![
                x.data()[0],
                x.data()[1],
                x.data()[2],
                x.data()[3],
                x.data()[4],
                x.data()[5],
                x.data()[6],
                x.data()[7],
            ],
        )
        .expect("tensor");
        let pool = Pool2d::new(PoolKind::Max, [2, 2]);
        let expected = reference::pool2d(&pool, &x).expect("cpu");
        let got = Pool2dKernel::new(&ctx, &pool, x.shape())
            .and_then(|k| k.run(&ctx, &GpuTensor::upload(&ctx, &x)?))
            .and_then(|t| t.download_blocking(&ctx))
            .expect("run");
        assert!(got.data()[0].is_nan(), "NaN must win: {:?}", got.data());
        assert_eq!(got.data()[1], f32::NEG_INFINITY);
        assert_close(&got, &expected, 0.0, "max pool non-finite");
    }
}

#[test]
fn global_average_pool_agrees_with_cpu() {
    for ctx in contexts_for_both_input_paths() {
        let mut rng = rng(12);
        for shape in [
            // One invocation per channel vec4 up to 14 x 14 pixels (several workgroups of them here), a workgroup
            // each above.
            Shape::new(1, 3, 1, 1),
            Shape::new(2, 13, 7, 7),
            Shape::new(3, 300, 14, 14),
            Shape::new(2, 9, 15, 15),
            Shape::new(1, 8, 112, 112),
            Shape::new(3, 5, 9, 1),
        ] {
            let x = random_tensor(&mut rng, shape);
            let expected = reference::global_avg_pool(&x);
            let got = GlobalAvgPoolKernel::new(&ctx, shape)
                .and_then(|k| k.run(&ctx, &GpuTensor::upload(&ctx, &x)?))
                .and_then(|t| t.download_blocking(&ctx))
                .expect("run");
            // Summing 12544 values in f32 (tree order) against f64: still far inside the bound.
            assert_close(
                &got,
                &expected,
                TOLERANCE,
                &format!("global avg pool {shape}"),
            );
        }
    }
}

#[test]
fn flatten_linear_and_softmax_agree_with_cpu() {
    for ctx in contexts_for_both_input_paths() {
        let mut rng = rng(13);
        for shape in [
            Shape::new(2, 3, 4, 5),
            Shape::new(1, 7, 1, 1),
            Shape::new(3, 10, 2, 1),
        ] {
            let x = random_tensor(&mut rng, shape);
            let flat_cpu = reference::flatten(&x).expect("flatten");
            let flatten = FlattenKernel::new(&ctx, shape).expect("kernel");
            let flat_gpu = flatten
                .run(&ctx, &GpuTensor::upload(&ctx, &x).expect("upload"))
                .expect("run");
            assert_close(
                &flat_gpu.download_blocking(&ctx).expect("download"),
                &flat_cpu,
                0.0,
                "flatten",
            );

            let features = shape.c * shape.h * shape.w;
            for out_features in [1, 10, 37] {
                let linear = Linear {
                    in_features: features,
                    out_features,
                    weight: random_vec(&mut rng, features * out_features, 0.3).into(),
                    bias: Some(random_vec(&mut rng, out_features, 0.3).into()),
                    activation: Activation::Identity,
                };
                let logits_cpu = reference::linear(&linear, &flat_cpu).expect("linear");
                let kernel = Conv2dKernel::linear(&ctx, &linear, shape.n).expect("kernel");
                let logits_gpu = kernel.run(&ctx, &flat_gpu, None).expect("run");
                let got = logits_gpu.download_blocking(&ctx).expect("download");
                assert_close(
                    &got,
                    &logits_cpu,
                    TOLERANCE,
                    &format!("linear {features} -> {out_features}"),
                );

                let probs_cpu = reference::softmax(&logits_cpu).expect("softmax");
                let probs_gpu = SoftmaxKernel::new(&ctx, logits_gpu.shape())
                    .and_then(|k| k.run(&ctx, &logits_gpu))
                    .and_then(|t| t.download_blocking(&ctx))
                    .expect("run");
                assert_close(&probs_gpu, &probs_cpu, TOLERANCE, "softmax");
            }
        }
    }
}

#[test]
fn softmax_is_stable_for_large_logits() {
    for ctx in contexts() {
        let x = Tensor::new(
            vec![2, 5],
            vec![
                1000.0, 999.0, -1000.0, 0.0, 998.0, -5.0, -5.0, -5.0, -5.0, -5.0,
            ],
        )
        .expect("tensor");
        let expected = reference::softmax(&x).expect("cpu");
        let got = SoftmaxKernel::new(&ctx, x.shape())
            .and_then(|k| k.run(&ctx, &GpuTensor::upload(&ctx, &x)?))
            .and_then(|t| t.download_blocking(&ctx))
            .expect("run");
        assert_close(&got, &expected, TOLERANCE, "softmax of large logits");
        assert!((got.data()[5] - 0.2).abs() < 1e-6);
    }
}

#[test]
fn upload_then_download_is_the_identity() {
    for ctx in contexts() {
        let mut rng = rng(14);
        for dims in [
            vec![1, 1, 1, 1],
            vec![2, 5, 3, 7],
            vec![3, 1000],
            vec![4, 9, 1, 2],
        ] {
            let len = dims.iter().product();
            let t = Tensor::new(dims.clone(), random_vec(&mut rng, len, 10.0)).expect("tensor");
            let back = GpuTensor::upload(&ctx, &t)
                .and_then(|g| g.download_blocking(&ctx))
                .expect("round trip");
            assert_eq!(back, t, "{dims:?}");
        }
    }
}

#[test]
fn mismatched_shapes_are_errors_not_panics() {
    let ctx = &contexts()[0];
    let mut rng = rng(15);
    let layer = random_layer(&mut rng, Conv2d::new(4, 4, [3, 3]), Epilogue::default());
    // Wrong channel count.
    assert!(Conv2dKernel::new(ctx, &layer, Shape::new(1, 5, 8, 8)).is_err());
    // Input smaller than the kernel.
    assert!(Conv2dKernel::new(ctx, &layer, Shape::new(1, 4, 2, 2)).is_err());
    // Binding a tensor of the wrong shape.
    let kernel = Conv2dKernel::new(ctx, &layer, Shape::new(1, 4, 8, 8)).expect("kernel");
    let wrong = GpuTensor::zeros(ctx, Shape::new(1, 4, 7, 8)).expect("tensor");
    let out = GpuTensor::zeros(ctx, kernel.output_shape()).expect("tensor");
    assert!(kernel.bind(ctx, &wrong, None, &out).is_err());
    // A residual the epilogue does not add.
    let x = GpuTensor::zeros(ctx, Shape::new(1, 4, 8, 8)).expect("tensor");
    assert!(kernel.bind(ctx, &x, Some(&out), &out).is_err());
    // A channel-wise PWLU with the wrong number of units.
    let act = Activation::Pwlu(random_pwlu(&mut rng, 3, 4));
    assert!(UnaryKernel::activation(ctx, &act, Shape::new(1, 4, 2, 2)).is_err());
    // Empty tensors.
    assert!(GpuTensor::zeros(ctx, Shape::new(0, 4, 2, 2)).is_err());
}

#[test]
fn matmul_agrees_with_cpu_on_random_and_odd_shapes() {
    for ctx in contexts_for_both_input_paths() {
        let mut rng = rng(16);
        let mut shapes = vec![
            (1, 1, 1),
            (1, 3, 1),
            (5, 1, 9),
            (4, 4, 8),
            (7, 13, 5),
            (64, 33, 17),
            // More rows of B than a texture may have: its table is folded into blocks side by side.
            (3, ctx.limits().max_texture_dimension_2d as usize + 6, 5),
            // A table 8191 texels high, just under WebGPU's default limit and not a power of two: kernels
            // sample texel centres at (y + 0.5) / 8191, which nearest filtering must map back to row y exactly.
            (2, 8191, 3),
        ];
        for _ in 0..12 {
            shapes.push((
                rng.random_range(1..70),
                rng.random_range(1..70),
                rng.random_range(1..70),
            ));
        }
        for (m, k, n) in shapes {
            let a = random_vec(&mut rng, m * k, 2.0);
            let b = random_vec(&mut rng, k * n, 2.0);
            let expected = reference::matmul(&a, &b, m, k, n).expect("cpu");
            let kernel = MatmulKernel::new(&ctx, m, k, n).expect("kernel");
            assert_eq!(kernel.flops(), 2 * (m * k * n) as u64);
            let got = pollster::block_on(kernel.bind(&ctx, &a, &b).expect("bind").run(&ctx))
                .expect("run");
            let tensor = |data| Tensor::new(vec![m, n], data).expect("tensor");
            assert_close(
                &tensor(got),
                &tensor(expected),
                TOLERANCE,
                &format!("matmul {m}x{k}x{n}"),
            );
        }
        assert!(MatmulKernel::new(&ctx, 0, 3, 3).is_err());
        let kernel = MatmulKernel::new(&ctx, 2, 3, 4).expect("kernel");
        assert!(kernel.bind(&ctx, &[0.0; 5], &[0.0; 12]).is_err());
    }
}
