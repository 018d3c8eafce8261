//! Plain-Rust references, one per kernel, and `Graph::run_reference`, which evaluates a whole graph with them.
//! They define what every backend's kernels must compute and are what the conformance tests hold every backend
//! against; they favour clarity (NCHW loops, f64 accumulation) over speed.

pub mod activation;
pub mod channels;
pub mod conv;
pub mod elementwise;
mod graph;
pub mod matmul;
pub mod pool;

pub use activation::{pwlu_lookup, ActivationFn};
pub use channels::{adaptive_avg_pool2d, concat, layer_norm, select_channels};
pub use conv::conv2d;
pub use elementwise::{activation, batch_norm, binary, flatten, linear, softmax};
pub use matmul::matmul;
pub use pool::{global_avg_pool, pool2d};
