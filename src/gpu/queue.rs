//! Submission: recording dispatches into command buffers, timing them with GPU timestamps, and copying
//! results back to the host.

use super::context::GpuContext;
use super::dispatch::Dispatch;
use crate::error::{Error, Result};

impl GpuContext {
    /// Records `dispatches` and submits them as one command buffer: consecutive dispatches share a compute
    /// pass, which ends where a dispatch's input must first be copied into its stage.
    pub fn submit(&self, dispatches: &[&Dispatch]) -> Result<wgpu::SubmissionIndex> {
        self.check_alive()?;
        let encoder = self.encode(dispatches);
        let index = self.queue().submit([encoder.finish()]);
        self.take_errors()?;
        Ok(index)
    }

    fn encode(&self, dispatches: &[&Dispatch]) -> wgpu::CommandEncoder {
        let mut encoder = self
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("pwlu"),
            });
        let mut rest = dispatches;
        while let Some((first, _)) = rest.split_first() {
            if let Some(stage) = first.stage() {
                stage.record(&mut encoder);
            }
            let until_next_copy = rest[1..]
                .iter()
                .position(|d| d.stage().is_some())
                .map_or(rest.len(), |i| i + 1);
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("pwlu"),
                timestamp_writes: None,
            });
            for dispatch in &rest[..until_next_copy] {
                dispatch.record(&mut pass);
            }
            drop(pass);
            rest = &rest[until_next_copy..];
        }
        encoder
    }

    /// Submits `dispatches` followed by a copy of `bytes` of `buffer` from `offset` into a fresh staging buffer,
    /// in one command buffer. Once this returns, `buffer` may be overwritten by later submissions; the copy
    /// is read with [`ReadBack::read`].
    pub fn submit_and_read_back(
        &self,
        dispatches: &[&Dispatch],
        buffer: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) -> Result<ReadBack> {
        self.check_alive()?;
        let size = bytes.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT).max(4);
        let staging = self.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("read-back"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.encode(dispatches);
        encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
        self.queue().submit([encoder.finish()]);
        self.take_errors()?;
        Ok(ReadBack { staging, bytes })
    }

    /// GPU time of each dispatch in seconds, measured by timestamps around each one in one submission, or
    /// `None` where the device has no timestamp queries.
    pub async fn time_dispatches(&self, dispatches: &[&Dispatch]) -> Result<Option<Vec<f64>>> {
        match self.submit_timed(dispatches)? {
            Some(run) => Ok(Some(run.read(self).await?)),
            None => Ok(None),
        }
    }

    /// Submits `dispatches` with a timestamp before and after each (each in its own compute pass, so the
    /// figures hold no submission or host overhead, nor the copy of a staged input, which precedes the pass);
    /// `None` where the device has no timestamp queries.
    pub fn submit_timed(&self, dispatches: &[&Dispatch]) -> Result<Option<TimedRun>> {
        if !self.has_timestamps() {
            return Ok(None);
        }
        self.check_alive()?;
        // A query set holds at most 4096 queries, two per dispatch.
        if dispatches.len() > 2048 {
            return Err(Error::Gpu(format!(
                "{} dispatches are more than one timestamp query set can time (2048)",
                dispatches.len()
            )));
        }
        let count = 2 * dispatches.len().max(1) as u32;
        let queries = self.device().create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("layer timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let bytes = u64::from(count) * 8;
        let resolved = self.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("resolved timestamps"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("pwlu timed"),
            });
        for (i, dispatch) in dispatches.iter().enumerate() {
            let begin = 2 * i as u32;
            if let Some(stage) = dispatch.stage() {
                stage.record(&mut encoder);
            }
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(dispatch.label()),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &queries,
                    beginning_of_pass_write_index: Some(begin),
                    end_of_pass_write_index: Some(begin + 1),
                }),
            });
            dispatch.record(&mut pass);
        }
        if dispatches.is_empty() {
            return Ok(Some(TimedRun {
                read_back: None,
                period_ns: 0.0,
            }));
        }
        encoder.resolve_query_set(&queries, 0..count, &resolved, 0);
        let staging = self.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamp read-back"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        encoder.copy_buffer_to_buffer(&resolved, 0, &staging, 0, bytes);
        self.queue().submit([encoder.finish()]);
        self.take_errors()?;
        Ok(Some(TimedRun {
            read_back: Some(ReadBack { staging, bytes }),
            period_ns: f64::from(self.queue().get_timestamp_period()),
        }))
    }

    /// Copies `bytes` of `buffer` from `offset` back to the host.
    pub async fn read_buffer(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) -> Result<Vec<u8>> {
        self.submit_and_read_back(&[], buffer, offset, bytes)?
            .read(self)
            .await
    }
}

/// Timestamps of [`GpuContext::submit_timed`] on their way back.
#[derive(Debug)]
pub struct TimedRun {
    read_back: Option<ReadBack>,
    period_ns: f64,
}

impl TimedRun {
    /// Waits for the GPU; the seconds each dispatch took, in order.
    pub async fn read(self, ctx: &GpuContext) -> Result<Vec<f64>> {
        let Some(read_back) = self.read_back else {
            return Ok(Vec::new());
        };
        let raw = read_back.read(ctx).await?;
        let ticks: Vec<u64> = raw
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect();
        Ok(ticks
            .chunks_exact(2)
            .map(|pair| pair[1].saturating_sub(pair[0]) as f64 * self.period_ns * 1e-9)
            .collect())
    }
}

/// A copy on its way back to the host.
#[derive(Debug)]
pub struct ReadBack {
    staging: wgpu::Buffer,
    bytes: u64,
}

impl ReadBack {
    /// Waits for the GPU and returns the bytes.
    pub async fn read(self, ctx: &GpuContext) -> Result<Vec<u8>> {
        let (sender, receiver) = futures_channel::oneshot::channel();
        self.staging
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |result| {
                // The receiver only disappears if the caller stopped waiting; nothing to report then.
                let _ = sender.send(result);
            });
        // On a lost device every step fails; say that, not which step noticed.
        let failed = |what: String| ctx.check_alive().err().unwrap_or(Error::Gpu(what));
        #[cfg(not(target_arch = "wasm32"))]
        ctx.device()
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| failed(format!("waiting for the GPU failed: {e}")))?;
        let mapped = receiver
            .await
            .map_err(|_| failed("the read-back was cancelled".into()))?;
        mapped.map_err(|e| failed(format!("mapping the read-back buffer failed: {e}")))?;
        let data = self
            .staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("reading the read-back buffer failed: {e}")))?
            [..self.bytes as usize]
            .to_vec();
        self.staging.unmap();
        ctx.take_errors()?;
        Ok(data)
    }
}
