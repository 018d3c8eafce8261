//! The planner: graphs as in `graph_json` (the `graph` metadata over the tests' small classifier's tensors);
//! every graph that validates and is small is planned on the GPU for batch 1 and 2 (buffer lifetimes, the
//! arena, kernel choice and binding), which must give a plan or an error, never a panic.
#![no_main]

#[path = "../../tests/common/fuzz_inputs.rs"]
mod fuzz_inputs;
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
    (0..len)
        .map(|_| rng.random_range(-1.0f32..1.0) * scale)
        .collect()
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
    if let Some(file) = fuzz_inputs::file_with_graph(parts(), graph) {
        fuzz_inputs::plan_if_small(context(), &file);
    }
});
