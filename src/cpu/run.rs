//! Running a plan on the CPU: the input into NHWC, every step in order on the context's threads, the output
//! back to NCHW.

use rayon::prelude::*;
use web_time::Instant;

use super::backend::{CpuStep, StepKernel};
use super::kernels::rows_per_task;
use super::CpuContext;
use crate::error::{Error, Result};
use crate::plan::{LayerTime, Plan, Timing};
use crate::tensor::{Tensor, TensorView};

impl Plan<CpuContext> {
    /// Runs `input` (`[batch, C, H, W]`, NCHW) and returns the output. `&mut`: a plan's memory serves one
    /// run at a time.
    pub fn run<'a>(
        &mut self,
        ctx: &CpuContext,
        input: impl Into<TensorView<'a>>,
    ) -> Result<Tensor> {
        self.run_timed(ctx, input.into(), false)
            .map(|(output, _)| output)
    }

    /// Runs `input` and times each step with the wall clock (the steps run one after the other on all
    /// threads, so the times add up to the run).
    pub fn profile<'a>(
        &mut self,
        ctx: &CpuContext,
        input: impl Into<TensorView<'a>>,
    ) -> Result<Vec<LayerTime>> {
        let (_, times) = self.run_timed(ctx, input.into(), true)?;
        Ok(self
            .steps
            .iter()
            .zip(&self.nodes)
            .zip(times)
            .map(|((step, node), seconds)| LayerTime {
                node: node.clone(),
                kernel: step.label(),
                seconds,
                timing: Timing::WallClock,
            })
            .collect())
    }

    fn run_timed(
        &mut self,
        ctx: &CpuContext,
        input: TensorView<'_>,
        timed: bool,
    ) -> Result<(Tensor, Vec<f64>)> {
        let x = self.input.shape;
        if input.shape() != x || input.dims().len() != 4 {
            return Err(Error::invalid_op(
                "plan input",
                format!("expected {x} (NCHW), got {:?}", input.dims()),
            ));
        }
        let plan = &*self;
        ctx.run_in_pool(|| {
            let _held = ctx.hold_workers();
            // Safety: `&mut self` makes this the only run of the plan, and lowering never gives a step an
            // output that overlaps its inputs (checked when binding), so no two live slices alias mutably.
            unsafe {
                nchw_to_nhwc(input.data(), x, plan.input.slice_mut());
            }
            let mut times = Vec::new();
            for step in &plan.steps {
                let start = timed.then(Instant::now);
                unsafe { run_step(step) };
                if let Some(start) = start {
                    times.push(start.elapsed().as_secs_f64());
                }
            }
            let y = plan.output.shape;
            let mut data = vec![0.0; y.len()];
            unsafe { nhwc_to_nchw(plan.output.slice(), y, &mut data) };
            Ok((Tensor::new(plan.output.dims.clone(), data)?, times))
        })
    }
}

/// # Safety
/// The step's output must not overlap its inputs, and no other slice of them may be alive.
unsafe fn run_step(step: &CpuStep) {
    let output = step.output.slice_mut();
    let input = step.inputs[0].slice();
    let second = step.inputs.get(1).map(|v| v.slice());
    let x = step.inputs[0].shape;
    use super::kernels::{channels, elementwise, pool};
    let y = step.output.shape;
    match &step.kernel {
        StepKernel::Conv(conv) => conv.run(input, second, output),
        StepKernel::ScaleShift {
            activation,
            scale_shift,
        } => elementwise::scale_shift(
            activation,
            scale_shift.as_ref().map(|(s, t)| (&s[..], &t[..])),
            x.c,
            input,
            output,
        ),
        StepKernel::Binary(op, activation) => {
            elementwise::binary(*op, activation, x, input, second.unwrap_or(&[]), output)
        }
        StepKernel::Pool(p) => pool::pool2d(p, x, step.output.shape, input, output),
        StepKernel::GlobalAvgPool => pool::global_avg_pool(x, input, output),
        StepKernel::Flatten => elementwise::flatten(x, input, output),
        StepKernel::AdaptiveAvgPool => channels::adaptive_avg_pool(x, y, input, output),
        StepKernel::CopyChannels { offset } => {
            channels::copy_channels(x, *offset, y.c, input, output)
        }
        StepKernel::SelectChannels(selection) => {
            channels::select_channels(x, selection, input, output)
        }
        StepKernel::LayerNorm(norm) => channels::layer_norm(norm, x, input, output),
    }
}

/// On all threads: the first kernel then finds the workers awake (a worker left waiting through a transform on
/// one thread goes to sleep, and waking it cost the first layer most of its second thread).
fn nchw_to_nhwc(src: &[f32], s: crate::tensor::Shape, dst: &mut [f32]) {
    let plane = s.h * s.w;
    if plane == 0 || s.c == 0 {
        return;
    }
    let rows = rows_per_task(s.n * s.h, s.w * s.c);
    dst.par_chunks_mut(rows * s.w * s.c)
        .enumerate()
        .for_each(|(task, chunk)| {
            let first = task * rows * s.w;
            let pixels = chunk.len() / s.c;
            // Pixels first..first + pixels may span images: one run of each image's plane at a time.
            let mut done = 0;
            while done < pixels {
                let (n, p) = ((first + done) / plane, (first + done) % plane);
                let run = (plane - p).min(pixels - done);
                let out = &mut chunk[done * s.c..][..run * s.c];
                for c in 0..s.c {
                    let channel = &src[(n * s.c + c) * plane + p..][..run];
                    for (i, &v) in channel.iter().enumerate() {
                        out[i * s.c + c] = v;
                    }
                }
                done += run;
            }
        });
}

fn nhwc_to_nchw(src: &[f32], s: crate::tensor::Shape, dst: &mut [f32]) {
    let plane = s.h * s.w;
    for n in 0..s.n {
        for (p, pixel) in src[n * plane * s.c..][..plane * s.c]
            .chunks(s.c)
            .enumerate()
        {
            for (c, &v) in pixel.iter().enumerate() {
                dst[(n * s.c + c) * plane + p] = v;
            }
        }
    }
}
