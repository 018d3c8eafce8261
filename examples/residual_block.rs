//! A ResNet basic block with channel-wise PWLU activations, run on the GPU and checked against the CPU
//! reference: `relu`-shaped PWLU(bn(conv3x3(x))) -> bn(conv3x3) + x -> PWLU.
//!
//! Both convolutions have their batch norm folded in and their activation (and the residual add) fused into
//! the epilogue, so the block is two dispatches, bound once and submitted as one command buffer per run.
//!
//! ```text
//! cargo run --release --example residual_block -- [channels] [size]
//! ```

use std::sync::Arc;
use std::time::Instant;

use pwlu::gpu::kernels::Conv2dKernel;
use pwlu::gpu::{GpuContext, GpuOptions, GpuTensor};
use pwlu::ops::{Activation, BatchNorm, Conv2d, Conv2dLayer, Epilogue, Padding, Pwlu, ResidualAdd};
use pwlu::{reference, Shape, Tensor};

/// A deterministic pseudo-random stream, so the example needs no extra dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn vec(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| self.next() * scale).collect()
    }
}

/// A learned-looking PWLU: ReLU on [-3, 3] with 16 intervals, each channel's points bent differently.
fn pwlu(rng: &mut Lcg, channels: usize) -> pwlu::Result<Arc<Pwlu>> {
    let relu = Pwlu::relu(channels, 16, 3.0)?;
    let mut points = Vec::new();
    for c in 0..channels {
        let unit = relu
            .unit(c)
            .ok_or_else(|| pwlu::Error::InvalidPwlu("missing unit".into()))?;
        points.extend(unit.points.iter().map(|&p| p + 0.1 * rng.next()));
    }
    Ok(Arc::new(Pwlu::uniform(
        16,
        vec![[-3.0, 3.0]; channels],
        points,
        vec![[0.05, 1.0]; channels],
    )?))
}

fn conv_bn(rng: &mut Lcg, channels: usize, epilogue: Epilogue) -> pwlu::Result<Conv2dLayer> {
    let conv = Conv2d {
        padding: Padding::symmetric(1, 1),
        ..Conv2d::new(channels, channels, [3, 3])
    };
    let scale = 1.0 / ((channels * 9) as f32).sqrt();
    let mut layer = Conv2dLayer::new(
        conv,
        rng.vec(conv.weight_len(), scale * 1.7),
        None,
        epilogue,
    )?;
    let bn = BatchNorm {
        mean: rng.vec(channels, 0.1).into(),
        var: rng.vec(channels, 0.2).iter().map(|v| 1.0 + v).collect(),
        gamma: rng.vec(channels, 0.2).iter().map(|v| 1.0 + v).collect(),
        beta: rng.vec(channels, 0.1).into(),
        eps: 1e-5,
    };
    layer.fold_batch_norm(&bn)?;
    Ok(layer)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let channels: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(64);
    let size: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(56);

    let ctx = GpuContext::new_blocking(&GpuOptions::default())?;
    println!("adapter: {}", ctx.adapter());

    let mut rng = Lcg(7);
    let first_act = Activation::Pwlu(pwlu(&mut rng, channels)?);
    let first = conv_bn(&mut rng, channels, Epilogue::activation(first_act))?;
    let second_act = Activation::Pwlu(pwlu(&mut rng, channels)?);
    let second = conv_bn(
        &mut rng,
        channels,
        Epilogue {
            activation: second_act,
            residual: ResidualAdd::BeforeActivation,
        },
    )?;
    let shape = Shape::new(1, channels, size, size);
    let input = Tensor::from_shape(shape, rng.vec(shape.len(), 1.0))?;

    // Everything is created once: pipelines, packed weights, tensors, bind groups.
    let k1 = Conv2dKernel::new(&ctx, &first, shape)?;
    let k2 = Conv2dKernel::new(&ctx, &second, k1.output_shape())?;
    let x = GpuTensor::upload(&ctx, &input)?;
    let hidden = GpuTensor::zeros(&ctx, k1.output_shape())?;
    let output = GpuTensor::zeros(&ctx, k2.output_shape())?;
    let d1 = k1.bind(&ctx, &x, None, &hidden)?;
    let d2 = k2.bind(&ctx, &hidden, Some(&x), &output)?;

    let mut times = Vec::new();
    let mut result = None;
    for _ in 0..6 {
        let start = Instant::now();
        ctx.submit(&[&d1, &d2])?;
        result = Some(output.download_blocking(&ctx)?);
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let first_run = times[0];
    let mut steady = times[1..].to_vec();
    steady.sort_by(f64::total_cmp);
    let gpu = result.ok_or("no run")?;

    let start = Instant::now();
    let h = reference::conv2d(&first, &input, None)?;
    let expected = reference::conv2d(&second, &h, Some(&input))?;
    let cpu_ms = start.elapsed().as_secs_f64() * 1e3;

    let max_err = gpu
        .data()
        .iter()
        .zip(expected.data())
        .map(|(g, c)| (g - c).abs() / c.abs().max(1.0))
        .fold(0.0f32, f32::max);
    let flops = 2.0 * 2.0 * (channels * channels * 9 * size * size) as f64;
    let median = steady[steady.len() / 2];
    println!(
        "block: {channels} channels, {size}x{size}, {:.2} GFLOP",
        flops / 1e9
    );
    println!(
        "gpu: first run {first_run:.1} ms, median {median:.1} ms ({:.1} GFLOP/s); cpu reference {cpu_ms:.0} ms",
        flops / median / 1e6
    );
    println!("max |gpu - cpu| / max(1, |cpu|) = {max_err:.2e}");
    if max_err > 1e-4 {
        return Err(format!("GPU and CPU disagree: {max_err:e}").into());
    }
    Ok(())
}
