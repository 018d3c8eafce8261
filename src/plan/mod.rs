//! The execution plan: an optimised graph lowered to one backend's kernels for one batch size.
//!
//! Everything is created here, once: kernels (with their packed weights), activation memory and bindings.
//! [`lower`] decides which kernel computes each node and asks the backend ([`Backend`]) to bind it;
//! [`memory`] decides where each activation lives. Running a plan is the backend's (for the GPU,
//! `src/gpu/run.rs`).

pub mod lower;
pub mod memory;

pub use lower::{Backend, HeldBytes, Kernel};
pub use memory::MemoryReport;

use crate::error::Result;
use crate::graph::Graph;

/// How a [`LayerTime`] was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timing {
    /// GPU timestamps around the dispatch, all dispatches in one submission.
    GpuTimestamps,
    /// Host wall clock around the dispatch submitted alone and waited for (submission included).
    WallClock,
}

/// Time spent in one dispatch, from [`Plan::layer_times`] or [`Plan::profile_wall_clock`].
#[derive(Clone, Debug, PartialEq)]
pub struct LayerTime {
    /// The graph node.
    pub node: String,
    /// The WGSL kernel.
    pub kernel: &'static str,
    /// Seconds.
    pub seconds: f64,
    /// How `seconds` was measured.
    pub timing: Timing,
}

/// A graph ready to run on backend `B` at one batch size.
#[derive(Debug)]
pub struct Plan<B: Backend> {
    pub(crate) batch: usize,
    pub(crate) input: B::Value,
    pub(crate) output: B::Value,
    /// Bound kernels in order; each keeps its weights alive.
    pub(crate) steps: Vec<B::Step>,
    /// The graph node each step computes.
    pub(crate) nodes: Vec<String>,
    pub(crate) memory: MemoryReport,
}

impl<B: Backend> Plan<B> {
    /// Plans `graph` (already optimised) for `batch` images on `backend`.
    pub fn new(backend: &B, graph: &Graph, batch: usize) -> Result<Self> {
        lower::lower(backend, graph, batch)
    }

    /// The batch size this plan runs.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The bound kernels, in order.
    pub fn steps(&self) -> &[B::Step] {
        &self.steps
    }

    /// The graph node each step computes, in order.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Where the plan's memory goes.
    pub fn memory(&self) -> MemoryReport {
        self.memory
    }
}
