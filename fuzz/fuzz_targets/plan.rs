//! The planner: graphs as in `graph_json` (the `graph` metadata over the tests' small classifier's tensors);
//! every graph that validates and is small is planned on the GPU for batch 1 and 2 (buffer lifetimes, the
//! arena, kernel choice and binding), which must give a plan or an error, never a panic.
#![no_main]

#[path = "../../tests/common/model_file.rs"]
#[allow(dead_code)]
mod model_file;

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use pwlu::gpu::{GpuContext, GpuOptions};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

// What model_file.rs expects of its parent module.
fn rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

fn random_vec(rng: &mut SmallRng, len: usize, scale: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0) * scale).collect()
}

fn parts() -> &'static model_file::FileParts {
    static PARTS: OnceLock<model_file::FileParts> = OnceLock::new();
    PARTS.get_or_init(model_file::small_classifier)
}

/// One device for the whole run (lavapipe on the CI machines); a missing adapter is a setup error, not a
/// finding, so it panics at the first input.
fn context() -> &'static Arc<GpuContext> {
    static CONTEXT: OnceLock<Arc<GpuContext>> = OnceLock::new();
    CONTEXT.get_or_init(|| {
        Arc::new(
            GpuContext::new_blocking(&GpuOptions::default())
                .unwrap_or_else(|e| panic!("the plan target needs a GPU adapter: {e}")),
        )
    })
}

fuzz_target!(|graph: &[u8]| {
    let Ok(graph) = std::str::from_utf8(graph) else {
        return;
    };
    let Ok(graph) = serde_json::from_str(graph) else {
        return;
    };
    let mut parts = parts().clone();
    parts.graph = graph;
    let bytes = parts.bytes();
    let Ok(checked) = pwlu::model::CheckedModel::from_bytes(&bytes) else {
        return;
    };
    // Bounded work: only graphs whose activations are small.
    let largest = checked
        .graph
        .nodes
        .iter()
        .map(|n| n.shape.len())
        .chain([checked.graph.input.len()])
        .max()
        .unwrap_or(0);
    if largest > 1 << 16 || checked.graph.nodes.len() > 64 {
        return;
    }
    // Model::from_bytes plans batch 1; then batch 2.
    if let Ok(model) = pwlu::Model::from_bytes(Arc::clone(context()), &bytes) {
        let _ = model.plan(2);
    }
});
