//! Launcher of `matmul.wgsl`, the project's GEMM. Models do not use it: `pwlu bench` measures it as the
//! yardstick for the convolutions, which run the same register-tiled scheme over image indexing.

use std::sync::Arc;

use super::check_invocations;
use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::dispatch::{Dispatch, Resource};
use crate::gpu::pipelines::Pipeline;
use crate::gpu::shaders::{self, MATMUL_TILE_M, MATMUL_TILE_N4};

/// C = A B for one shape: `m x k` times `k x n`.
#[derive(Debug)]
pub struct MatmulKernel {
    pipeline: Arc<Pipeline>,
    m: usize,
    k: usize,
    n: usize,
}

/// A product with its operands on the GPU, ready to dispatch any number of times.
#[derive(Debug)]
pub struct BoundMatmul {
    dispatch: Dispatch,
    c: wgpu::Buffer,
    m: usize,
    n: usize,
}

impl MatmulKernel {
    /// The pipeline for `m x k` times `k x n`.
    pub fn new(ctx: &GpuContext, m: usize, k: usize, n: usize) -> Result<Self> {
        if m == 0 || k == 0 || n == 0 {
            return Err(Error::invalid_op(
                "matmul",
                format!("{m} x {k} times {k} x {n} is empty"),
            ));
        }
        let (k4, n4) = (k.div_ceil(4), padded_n4(n));
        let invocations = (n4 / MATMUL_TILE_N4) as u64 * m.div_ceil(MATMUL_TILE_M) as u64;
        check_invocations("matmul", invocations)?;
        let constants = vec![
            ("M", m as f64),
            ("K4", k4 as f64),
            ("N4", n4 as f64),
            ("B_BLOCK_ROWS", ctx.table_block_rows(k4 * 4) as f64),
        ];
        let pipeline = ctx.pipeline(&shaders::MATMUL, &constants)?;
        Ok(MatmulKernel { pipeline, m, k, n })
    }

    /// Floating-point operations of one product (2 per multiply-add).
    pub fn flops(&self) -> u64 {
        2 * (self.m * self.k * self.n) as u64
    }

    /// Uploads `a` (`m x k`, row-major) and `b` (`k x n`) in the kernel's padded layout.
    pub fn bind(&self, ctx: &GpuContext, a: &[f32], b: &[f32]) -> Result<BoundMatmul> {
        let (m, k, n) = (self.m, self.k, self.n);
        crate::ops::check_matmul_operands(a, b, m, k, n)?;
        let (k_padded, n_padded) = (k.div_ceil(4) * 4, padded_n4(n) * 4);
        let a_padded = pad_rows(a, k, k_padded, m);
        let a_buffer = ctx.storage_buffer("matmul a", &a_padded)?;
        let b_table = ctx.table(
            "matmul b",
            &pad_rows(b, n, n_padded, k_padded),
            n_padded / 4,
        )?;
        let c = ctx.storage_buffer("matmul c", &vec![0.0; m * n_padded])?;
        let workgroups =
            ((n_padded / 4 / MATMUL_TILE_N4) * m.div_ceil(MATMUL_TILE_M)).div_ceil(64) as u64;
        let dispatch = Dispatch::new(
            ctx,
            Arc::clone(&self.pipeline),
            &[
                (
                    0,
                    Resource::Staged {
                        buffer: &a_buffer,
                        offset: 0,
                        texels: a_padded.len() as u64 / 4,
                    },
                ),
                (1, Resource::Table(&b_table)),
                (4, (&c).into()),
            ],
            workgroups,
        )?;
        Ok(BoundMatmul { dispatch, c, m, n })
    }
}

impl BoundMatmul {
    /// The launch, to submit or time.
    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    /// Runs the product and returns C (`m x n`, row-major).
    pub async fn run(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        let n_padded = self.c.size() as usize / 4 / self.m.max(1);
        let bytes = ctx
            .submit_and_read_back(&[&self.dispatch], &self.c, 0, self.c.size())?
            .read(ctx)
            .await?;
        let padded: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok(padded
            .chunks_exact(n_padded)
            .flat_map(|row| &row[..self.n])
            .copied()
            .collect())
    }
}

fn padded_n4(n: usize) -> usize {
    n.div_ceil(4).next_multiple_of(MATMUL_TILE_N4)
}

/// `rows` rows of `width` values, each padded with zeros to `padded`; missing rows are zero.
fn pad_rows(data: &[f32], width: usize, padded: usize, rows: usize) -> Vec<f32> {
    let mut out = vec![0.0; rows * padded];
    for (src, dst) in data.chunks_exact(width).zip(out.chunks_exact_mut(padded)) {
        dst[..width].copy_from_slice(src);
    }
    out
}
