//! Running a plan on the GPU: writing the input, submitting its dispatches in one command buffer, reading the
//! output back, and timing each dispatch.

use crate::error::{Error, Result};
use crate::plan::{LayerTime, Plan, Timing};
use crate::tensor::{Tensor, TensorView};

use super::context::GpuContext;
use super::dispatch::Dispatch;
use super::queue::{ReadBack, TimedRun};
use super::tensor::{to_nhwc4, GpuTensor};

impl Plan<GpuContext> {
    /// The dispatches, in order.
    pub fn dispatches(&self) -> &[Dispatch] {
        &self.steps
    }

    /// Submits every dispatch with GPU timestamps around each; `None` where the device has none.
    pub fn submit_timed(&self, ctx: &GpuContext) -> Result<Option<TimedRun>> {
        let dispatches: Vec<&Dispatch> = self.steps.iter().collect();
        ctx.submit_timed(&dispatches)
    }

    /// The layers with the seconds `times` gives each dispatch.
    pub fn layer_times(&self, times: &[f64], timing: Timing) -> Vec<LayerTime> {
        self.steps
            .iter()
            .zip(&self.nodes)
            .zip(times)
            .map(|((dispatch, node), &seconds)| LayerTime {
                node: node.clone(),
                kernel: dispatch.label(),
                seconds,
                timing,
            })
            .collect()
    }

    /// Wall-clock time of each dispatch, submitted alone and waited for (native only): the profile of a
    /// device without timestamp queries. Submission overhead is included.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile_wall_clock(&self, ctx: &GpuContext) -> Result<Vec<LayerTime>> {
        let wait = || {
            ctx.device()
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::Gpu(format!("waiting for the GPU failed: {e}")))
        };
        wait()?;
        let mut times = Vec::with_capacity(self.steps.len());
        for dispatch in &self.steps {
            let start = std::time::Instant::now();
            ctx.submit(&[dispatch])?;
            wait()?;
            times.push(start.elapsed().as_secs_f64());
        }
        Ok(self.layer_times(&times, Timing::WallClock))
    }

    /// Runs `input` and waits for the output (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_blocking<'a>(
        &self,
        ctx: &GpuContext,
        input: impl Into<TensorView<'a>>,
    ) -> Result<Tensor> {
        pollster::block_on(self.submit(ctx, input)?.read(ctx))
    }

    /// Submits one workgroup of each distinct pipeline and a copy of a few bytes of the output, to wait for.
    /// Adapters that compile a pipeline at its first dispatch compile them all now, without the cost of a
    /// whole run. What the workgroups write is garbage, but every run writes each value before reading it.
    pub fn submit_warm_up(&self, ctx: &GpuContext) -> Result<ReadBack> {
        let mut distinct: Vec<Dispatch> = Vec::new();
        for dispatch in &self.steps {
            if !distinct.iter().any(|d| d.same_pipeline(dispatch)) {
                distinct.push(dispatch.one_workgroup());
            }
        }
        let dispatches: Vec<&Dispatch> = distinct.iter().collect();
        ctx.submit_and_read_back(&dispatches, self.output.buffer(), self.output.offset(), 4)
    }

    /// Writes `input` (`[batch, C, H, W]`, NCHW), submits every dispatch and a copy of the output in one
    /// command buffer. The plan's buffers are free for the next run as soon as this returns.
    pub fn submit<'a>(
        &self,
        ctx: &GpuContext,
        input: impl Into<TensorView<'a>>,
    ) -> Result<PendingOutput> {
        let input = input.into();
        if input.shape() != self.input.shape() {
            return Err(Error::invalid_op(
                "model input",
                format!("expected {}, got {}", self.input.shape(), input.shape()),
            ));
        }
        ctx.queue().write_buffer(
            self.input.buffer(),
            self.input.offset(),
            bytemuck::cast_slice(&to_nhwc4(input)),
        );
        let dispatches: Vec<&Dispatch> = self.steps.iter().collect();
        let read_back = ctx.submit_and_read_back(
            &dispatches,
            self.output.buffer(),
            self.output.offset(),
            self.output.byte_len(),
        )?;
        Ok(PendingOutput {
            read_back,
            output: self.output.clone(),
        })
    }
}

/// The output of a submitted run, on its way back.
#[derive(Debug)]
pub struct PendingOutput {
    read_back: ReadBack,
    output: GpuTensor,
}

impl PendingOutput {
    /// Waits for the GPU and returns the output tensor.
    pub async fn read(self, ctx: &GpuContext) -> Result<Tensor> {
        let bytes = self.read_back.read(ctx).await?;
        self.output.decode_read_back(&bytes)
    }
}
