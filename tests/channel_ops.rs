//! Model files with the channel ops of format version 2 (concat, channel_shuffle, slice_channels, layer_norm,
//! adaptive_avg_pool2d): one runs on every device and agrees with its unoptimised reference graph; malformed
//! ones, and version-1 files that use them, are refused with an error that names the node and the problem.

mod common;

use common::model_file::{small_model, FileParts};
use pwlu::Model;
use serde_json::json;

/// The small model with a version-2 tail between its max pool and its global pooling: the pool's 6 channels
/// twice (12), shuffled in 3 groups, channels 3..9 taken, normalised over the channels, pooled to 2 x 3 over
/// adaptive windows (from 5 x 5).
fn channel_model() -> FileParts {
    let mut parts = small_model();
    parts.metadata.insert("format_version".into(), "2".into());
    parts.tensors.push((
        "ln.weight".into(),
        vec![6],
        vec![1.5, -0.5, 1.0, 0.25, 2.0, 1.0],
    ));
    parts.tensors.push((
        "ln.bias".into(),
        vec![6],
        vec![0.1, 0.2, -0.3, 0.0, 0.5, -1.0],
    ));
    let nodes = parts.graph["nodes"].as_array_mut().expect("nodes");
    let gap = nodes.iter().position(|n| n["name"] == "gap").expect("gap");
    let tail = [
        json!({"name": "cat", "op": "concat", "inputs": ["pool", "pool"], "shape": [1, 12, 5, 5]}),
        json!({"name": "shuffle", "op": "channel_shuffle", "inputs": ["cat"], "attrs": {"groups": 3}}),
        json!({"name": "slice", "op": "slice_channels", "inputs": ["shuffle"], "attrs": {"start": 3, "end": 9}}),
        json!({"name": "ln", "op": "layer_norm", "inputs": ["slice"],
               "params": {"weight": "ln.weight", "bias": "ln.bias"}, "attrs": {"eps": 1e-5}}),
        json!({"name": "adaptive", "op": "adaptive_avg_pool2d", "inputs": ["ln"],
               "attrs": {"output_size": [2, 3]}, "shape": [1, 6, 2, 3]}),
    ];
    for (i, node) in tail.into_iter().enumerate() {
        nodes.insert(gap + i, node);
    }
    parts.node("gap")["inputs"] = json!(["adaptive"]);
    parts
}

#[test]
fn channel_ops_run_on_every_device_and_agree_with_the_reference() {
    let bytes = channel_model().bytes();
    let file = pwlu::model::format::parse(&bytes).expect("parse");
    let mut store = pwlu::model::build::TensorStore::new(file.tensors);
    let reference = pwlu::graph::Graph::from_spec(&file.graph, &mut store).expect("graph");
    for device in common::devices() {
        let name = device.describe();
        let model = Model::from_bytes(device, &bytes).expect("loads");
        let mut rng = common::rng(7);
        for batch in [1, 2] {
            let x = common::random_tensor(&mut rng, pwlu::Shape::new(batch, 3, 10, 9));
            let expected = reference.run_reference(&x).expect("reference");
            let got = model.run_blocking(&x).expect("runs");
            common::assert_close(
                &got,
                &expected,
                common::TOLERANCE,
                &format!("{name}, batch {batch}"),
            );
        }
    }
}

fn refuse(parts: &FileParts, needle: &str) {
    match pwlu::model::CheckedModel::from_bytes(&parts.bytes()) {
        Ok(_) => panic!("expected an error mentioning '{needle}'"),
        Err(e) => assert!(
            e.to_string().contains(needle),
            "error '{e}' should mention '{needle}'"
        ),
    }
}

#[test]
fn malformed_channel_ops_are_refused_by_node() {
    let base = channel_model();
    let mut p = base.clone();
    p.metadata.insert("format_version".into(), "1".into());
    refuse(&p, "node 'cat': op 'concat' needs format version 2");

    let mut p = base.clone();
    p.node("cat")["inputs"] = json!(["pool", "p2"]);
    refuse(&p, "differ in more than their channels");
    let mut p = base.clone();
    p.node("cat")["attrs"] = json!({"dim": 2});
    refuse(&p, "node 'cat' (concat): takes no attributes");

    let mut p = base.clone();
    p.node("shuffle")["attrs"] = json!({"groups": 5});
    refuse(&p, "5 groups do not divide 12 channels");
    let mut p = base.clone();
    p.node("slice")["attrs"] = json!({"start": 9, "end": 13});
    refuse(&p, "channels 9..13 are not a non-empty range of 12");

    let mut p = base.clone();
    p.tensor("ln.weight").1 = vec![2, 3];
    refuse(
        &p,
        "weight tensor 'ln.weight' has shape [2, 3], expected [6]",
    );
    let mut p = base.clone();
    p.node("ln")["attrs"] = json!({"eps": -1.0});
    refuse(&p, "eps -1 must be finite and non-negative");

    let mut p = base.clone();
    p.node("adaptive")["attrs"] = json!({"output_size": [0, 3]});
    refuse(&p, "output size must be positive");
    let mut p = base;
    p.node("adaptive")["op"] = json!("adaptive_max_pool2d");
    refuse(&p, "unknown op 'adaptive_max_pool2d'");
}

#[test]
fn the_graph_fuzzers_channel_op_seeds_are_valid_models() {
    // Seeds the fuzzer mutates from (concat, shuffle, slices, adaptive pooling up and down): they must load,
    // or it would only explore the errors.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/graph_json");
    for seed in [
        "3954f73b8c14fe73dc1d799996f50fc1f337dd9b",
        "6eed35826567bb092d93d2df78cc7b231d9ae63a",
    ] {
        let graph = std::fs::read(dir.join(seed)).expect("seed");
        let mut parts = common::model_file::small_classifier();
        parts.graph = serde_json::from_slice(&graph).expect("json");
        if let Err(e) = pwlu::model::CheckedModel::from_bytes(&parts.bytes()) {
            panic!("seed {seed} does not load: {e}");
        }
    }
}
