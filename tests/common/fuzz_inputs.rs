//! What the fuzz targets (fuzz/fuzz_targets) do with a graph input, shared with tests/fuzz_corpus.rs, which
//! replays what they kept.
#![allow(dead_code)]

use std::sync::Arc;

use pwlu::gpu::GpuContext;
use pwlu::model::CheckedModel;

use super::model_file::FileParts;

/// `parts` with its graph replaced by `input` (JSON text), as file bytes; `None` when `input` is not JSON.
pub fn file_with_graph(parts: &FileParts, input: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(input).ok()?;
    let graph = serde_json::from_str(text).ok()?;
    let mut parts = parts.clone();
    parts.graph = graph;
    Some(parts.bytes())
}

/// Runs a validated graph on the CPU reference when that takes a moment.
pub fn run_if_small(checked: &CheckedModel) {
    let input = checked.graph.input;
    if input.len() <= 1 << 16 && checked.graph.flops() <= 50_000_000 {
        let _ = checked.graph.run_reference(&pwlu::Tensor::zeros(input));
    }
}

/// Plans a model file on `ctx` for batch 1 and 2 when its graph validates and its activations are small;
/// whether both plans were made.
pub fn plan_if_small(ctx: &Arc<GpuContext>, bytes: &[u8]) -> bool {
    let Ok(checked) = CheckedModel::from_bytes(bytes) else {
        return false;
    };
    let largest = checked
        .graph
        .nodes
        .iter()
        .map(|n| n.shape.len())
        .chain([checked.graph.input.len()])
        .max()
        .unwrap_or(0);
    if largest > 1 << 16 || checked.graph.nodes.len() > 64 {
        return false;
    }
    // Model::from_bytes plans batch 1; then batch 2.
    pwlu::Model::from_bytes(Arc::clone(ctx), bytes).is_ok_and(|model| model.plan(2).is_ok())
}
