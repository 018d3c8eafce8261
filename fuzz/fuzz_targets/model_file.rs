//! Whole model files: the safetensors header, the metadata, the graph, the tensors. Anything may be refused;
//! nothing may panic, hang or allocate beyond what the file justifies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = pwlu::model::CheckedModel::from_bytes(bytes);
});
