//! Graphs: the input is the `graph` metadata of an otherwise valid model file (the tests' small residual PWLU
//! classifier, with its tensors), so mutations explore graph validation, shape inference and the optimiser
//! rather than the safetensors framing. A graph that validates is also run on the CPU reference.
#![no_main]

#[path = "../../tests/common/fuzz_inputs.rs"]
mod fuzz_inputs;
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
    (0..len)
        .map(|_| rng.random_range(-1.0f32..1.0) * scale)
        .collect()
}

fn parts() -> &'static model_file::FileParts {
    static PARTS: OnceLock<model_file::FileParts> = OnceLock::new();
    PARTS.get_or_init(model_file::small_classifier)
}

fuzz_target!(|graph: &[u8]| {
    let Some(file) = fuzz_inputs::file_with_graph(parts(), graph) else {
        return;
    };
    if let Ok(checked) = pwlu::model::CheckedModel::from_bytes(&file) {
        fuzz_inputs::run_if_small(&checked);
    }
});
