//! Graphs: the input is the `graph` metadata of an otherwise valid model file (the tests' small residual PWLU
//! classifier, with its tensors), so mutations explore graph validation, shape inference and the optimiser
//! rather than the safetensors framing. A graph that validates is also run on the CPU reference.
#![no_main]

#[path = "../../tests/common/model_file.rs"]
#[allow(dead_code)]
mod model_file;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
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

fuzz_target!(|graph: &[u8]| {
    let Ok(graph) = std::str::from_utf8(graph) else {
        return;
    };
    let mut parts = parts().clone();
    let Ok(graph) = serde_json::from_str(graph) else {
        return;
    };
    parts.graph = graph;
    let Ok(checked) = pwlu::model::CheckedModel::from_bytes(&parts.bytes()) else {
        return;
    };
    // Bounded work: only graphs small enough to run in a moment.
    let input = checked.graph.input;
    if input.len() <= 1 << 16 && checked.graph.flops() <= 50_000_000 {
        let tensor = pwlu::Tensor::zeros(input);
        let _ = checked.graph.run_cpu(&tensor);
    }
});
