//! Loading model files: a small model written here runs and agrees with the CPU evaluation of its graph, the
//! optimiser fuses what it should, and malformed files are refused with an error that names the problem.

mod common;

use std::sync::Arc;

use common::model_file::{shared_weight_file, small_model, FileParts};
use pwlu::gpu::InputStage;
use pwlu::graph::{Op, Value};
use pwlu::ops::{Activation, ResidualAdd};
use pwlu::plan::MemoryReport;
use pwlu::{Error, Model, Tensor};
use serde_json::json;

fn context() -> Arc<pwlu::gpu::GpuContext> {
    Arc::new(common::contexts().into_iter().next().expect("context"))
}

/// The reference for a model file: its graph before any pass, to run on the CPU.
fn unoptimised_graph(bytes: &[u8]) -> pwlu::graph::Graph {
    let file = pwlu::model::format::parse(bytes).expect("parse");
    let mut store = pwlu::model::build::TensorStore::new(file.tensors);
    pwlu::graph::Graph::from_spec(&file.graph, &mut store).expect("graph")
}

#[test]
fn a_small_model_runs_and_agrees_with_its_unoptimised_reference_graph() {
    let bytes = small_model().bytes();
    let unoptimised = unoptimised_graph(&bytes);
    for device in common::devices() {
        let name = device.describe();
        let model = Model::from_bytes(device, &bytes).expect("loads");
        let mut rng = common::rng(41);
        for batch in [1, 3] {
            let x = common::random_tensor(&mut rng, pwlu::Shape::new(batch, 3, 10, 9));
            let expected = unoptimised.run_reference(&x).expect("reference");
            let got = model.run_blocking(&x).expect("runs");
            assert_eq!(got.dims(), &[batch, 4]);
            common::assert_close(
                &got,
                &expected,
                common::TOLERANCE,
                &format!("{name}, batch {batch}"),
            );
        }
        assert_eq!(model.labels(), &["a", "b", "c", "d"]);
        assert_eq!(model.pwlu_sites().len(), 2);
    }
}

#[test]
fn the_optimiser_folds_and_fuses() {
    let model = Model::from_bytes(context(), &small_model().bytes()).expect("loads");
    let graph = model.graph();
    let ops: Vec<&str> = graph.nodes.iter().map(|n| n.op.name()).collect();
    // bn1 and p1 fold into c1; bn2, the add and p2 into c2; flatten of [N, C, 1, 1] stays a (free) node.
    assert_eq!(
        ops,
        [
            "conv2d",
            "conv2d",
            "pool2d",
            "global_avg_pool",
            "flatten",
            "linear"
        ],
        "{ops:?}"
    );
    let Op::Conv(c2) = &graph.nodes[1].op else {
        panic!("c2")
    };
    assert_eq!(c2.epilogue.residual, ResidualAdd::BeforeActivation);
    assert!(matches!(c2.epilogue.activation, Activation::Pwlu(_)));
    assert_eq!(graph.nodes[1].inputs, [Value::Node(0), Value::Node(0)]);
    assert_eq!(model.source_nodes(), 11);
    // Dispatches: two convolutions, pool, gap, linear (the flatten aliases its input).
    let plan = model.plan(1).expect("plan");
    let plan = plan.lock().expect("lock");
    assert_eq!(plan.kernels(), 5);
}

fn refuse(parts: &FileParts, needle: &str) {
    let ctx = context();
    match Model::from_bytes(ctx, &parts.bytes()) {
        Ok(_) => panic!("expected an error mentioning '{needle}'"),
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains(needle),
                "error '{message}' should mention '{needle}'"
            );
            // Values, not Rust's debug form of a struct or option.
            assert!(
                !message.contains(" { ") && !message.contains("Some("),
                "error '{message}' prints a debug struct"
            );
        }
    }
}

#[test]
fn malformed_files_are_refused_with_a_reason() {
    let ctx = context();
    for bytes in [
        &b""[..],
        b"12345678",
        b"\xff\xff\xff\xff\xff\xff\xff\x7f{}",
        b"\x02\x00\x00\x00\x00\x00\x00\x00{}",
    ] {
        assert!(matches!(
            Model::from_bytes(Arc::clone(&ctx), bytes),
            Err(Error::Model(_))
        ));
    }
    let good = small_model().bytes();
    for cut in [8, 100, good.len() / 2, good.len() - 1] {
        let result = Model::from_bytes(Arc::clone(&ctx), &good[..cut]);
        assert!(matches!(result, Err(Error::Model(_))), "truncated at {cut}");
    }

    let base = small_model();
    let mut p = base.clone();
    p.metadata.remove("format");
    refuse(&p, "not a pwlu model");
    let mut p = base.clone();
    p.metadata.insert("format_version".into(), "3".into());
    refuse(&p, "format version 3");
    let mut p = base.clone();
    p.metadata.insert("format_version".into(), "0".into());
    refuse(&p, "format version 0");
    let mut p = base.clone();
    p.metadata
        .insert("labels".into(), "[\"too\", \"few\"]".into());
    refuse(&p, "2 labels for 4 outputs");
    let mut p = base.clone();
    p.metadata.insert("graph".into(), "{not json".into());
    p.graph = json!("{not json");
    refuse(&p, "graph");

    let mut p = base.clone();
    p.node("c2")["op"] = json!("conv3d");
    refuse(&p, "unknown op 'conv3d'");
    let mut p = base.clone();
    p.node("c2")["inputs"] = json!(["nowhere"]);
    refuse(&p, "reads 'nowhere'");
    let mut p = base.clone();
    p.node("c1")["inputs"] = json!(["p1"]);
    refuse(&p, "reads 'p1'");
    let mut p = base.clone();
    p.node("bn2")["name"] = json!("c1");
    refuse(&p, "used twice");
    let mut p = base.clone();
    p.node("c1")["params"]["weight"] = json!("missing.weight");
    refuse(&p, "'missing.weight' is not in the file");
    let mut p = base.clone();
    p.tensors.push(("stray".into(), vec![1], vec![0.0]));
    refuse(&p, "not used by any node: stray");
    let mut p = base.clone();
    p.tensor("c2.weight").1 = vec![6, 6, 9];
    refuse(&p, "c2.weight' has shape [6, 6, 9]");
    let mut p = base.clone();
    p.node("c2")["attrs"]["in_channels"] = json!(5);
    refuse(&p, "c2");
    let mut p = base.clone();
    p.node("c2")["attrs"]["groups"] = json!(4);
    refuse(&p, "groups = 4");
    let mut p = base.clone();
    p.node("c1")["attrs"]["kernel"] = json!([1_000_000_000, 3]);
    refuse(&p, "c1");
    let mut p = base.clone();
    p.node("c1")["attrs"]["padding"]["top"] = json!(1_073_741_824);
    refuse(&p, "padding (top 1073741824, left 1, bottom 1, right 1)");
    let mut p = base.clone();
    p.node("c1")["attrs"]["surprise"] = json!(1);
    refuse(&p, "unknown field `surprise`");
    let mut p = base.clone();
    p.node("fc")["shape"] = json!([1, 5]);
    refuse(&p, "records [1, 5]");
    let mut p = base.clone();
    p.graph["outputs"] = json!(["gone"]);
    refuse(&p, "output 'gone'");

    // PWLU parameters.
    let mut p = base.clone();
    p.tensor("p1.bounds").2 = [2.0, -2.0].repeat(6);
    refuse(&p, "B_L < B_R");
    let mut p = base.clone();
    p.tensor("p1.points").2[5] = f32::NAN;
    refuse(&p, "NaN");
    let mut p = base.clone();
    p.node("p1")["attrs"]["intervals"] = json!(0);
    refuse(&p, "0 intervals");
    let mut p = base.clone();
    p.node("p1")["attrs"]["intervals"] = json!(1u64 << 40);
    refuse(&p, "intervals");
    let mut p = base.clone();
    p.node("p1")["attrs"]["granularity"] = json!("pixel");
    refuse(&p, "granularity 'pixel'");
    let mut p = base.clone();
    p.tensor("p1.slopes").2[3] = f32::INFINITY;
    refuse(&p, "slopes' holds inf");
    let mut p = base.clone();
    p.tensor("p2.bounds").2[0] = f32::NEG_INFINITY;
    refuse(&p, "bounds' holds -inf");
    // A non-uniform unit whose breakpoints are not increasing.
    let mut p = base.clone();
    p.node("p1")["op"] = json!("pwlu_non_uniform");
    p.node("p1")["params"] = json!({"points": "p1.points", "breakpoints": "p1.breakpoints",
                                    "slopes": "p1.slopes"});
    p.tensors.retain(|t| t.0 != "p1.bounds");
    let mut breakpoints: Vec<f32> = (0..6)
        .flat_map(|_| (0..9).map(|i| i as f32 * 0.5 - 2.0))
        .collect();
    let good = p.clone();
    breakpoints.swap(3, 4);
    p.tensors
        .push(("p1.breakpoints".into(), vec![6, 9], breakpoints.clone()));
    refuse(&p, "increasing");
    breakpoints.swap(3, 4);
    let mut p = good;
    p.tensors
        .push(("p1.breakpoints".into(), vec![6, 9], breakpoints));
    Model::from_bytes(Arc::clone(&ctx), &p.bytes()).expect("sorted breakpoints load");

    let mut p = base.clone();
    p.tensor("bn1.running_var").2 = vec![-1.0; 6];
    refuse(&p, "variance");
    // A preprocessing whose channels disagree with the input.
    let mut p = base.clone();
    p.metadata.insert(
        "preprocess".into(),
        json!({"mean": [0.5], "std": [0.2], "channel_order": "gray"}).to_string(),
    );
    refuse(&p, "the preprocessing makes 1 channels, the model takes 3");
    // A tensor of more than 2^40 elements, each dimension in range.
    let mut p = base.clone();
    p.graph["inputs"][0]["shape"] = json!([1, 3, 1 << 20, 1 << 20]);
    p.node("c1")["shape"] = json!(null);
    refuse(&p, "is too large");
}

#[test]
fn inputs_of_the_wrong_shape_are_errors() {
    let model = Model::from_bytes(context(), &small_model().bytes()).expect("loads");
    for dims in [vec![1, 3, 9, 10], vec![1, 4, 10, 9], vec![3, 10, 9]] {
        let len = dims.iter().product();
        let x = Tensor::new(dims.clone(), vec![0.0; len]).expect("tensor");
        assert!(model.run_blocking(&x).is_err(), "{dims:?}");
    }
    // A model without preprocessing metadata classifies no images.
    let image = image::DynamicImage::new_rgb8(10, 9);
    assert!(model.preprocess_image(&image).is_err());
}

/// The file's header as JSON and its data, to be edited and reassembled by `assemble`.
fn split(bytes: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + len]).expect("header JSON");
    (header, bytes[8 + len..].to_vec())
}

fn assemble(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let text = header.to_string();
    let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(text.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

fn refuse_bytes(bytes: &[u8], needle: &str) {
    match pwlu::model::CheckedModel::from_bytes(bytes) {
        Ok(_) => panic!("expected an error mentioning '{needle}'"),
        Err(e) => assert!(
            e.to_string().contains(needle),
            "error '{e}' should mention '{needle}'"
        ),
    }
}

#[test]
fn tensor_data_that_overlaps_or_is_not_float_is_refused() {
    let (header, data) = split(&small_model().bytes());

    // Two tensors sharing bytes.
    let mut overlapping = header.clone();
    let offsets = overlapping["c1.bias"]["data_offsets"].clone();
    overlapping["c1.weight"]["data_offsets"][0] = offsets[0].clone();
    refuse_bytes(&assemble(&overlapping, &data), "not a safetensors file");

    // Offsets past the end of the data.
    let mut beyond = header.clone();
    beyond["fc.bias"]["data_offsets"][1] = json!(data.len() + 4096);
    refuse_bytes(&assemble(&beyond, &data), "not a safetensors file");

    // Integers where weights belong: same byte length, wrong dtype.
    let mut integers = header.clone();
    integers["c1.bias"]["dtype"] = json!("I32");
    refuse_bytes(
        &assemble(&integers, &data),
        "weights must be F32, F16 or BF16",
    );

    // The untouched file still loads: the edits above are what was refused.
    pwlu::model::CheckedModel::from_bytes(&assemble(&header, &data)).expect("the original loads");
}

/// Expand, depthwise, project: three convolutions that read their inputs through the input stage.
fn inverted_bottleneck() -> FileParts {
    let mut rng = common::rng(43);
    let mut tensors = Vec::new();
    let mut conv = |name: &str,
                    input: &str,
                    cin: usize,
                    cout: usize,
                    kernel: usize,
                    groups: usize| {
        let len = cout * cin / groups * kernel * kernel;
        let weight = common::random_vec(&mut rng, len, 0.4);
        tensors.push((
            format!("{name}.weight"),
            vec![cout, cin / groups, kernel, kernel],
            weight,
        ));
        let p = kernel / 2;
        json!({"name": name, "op": "conv2d", "inputs": [input],
               "params": {"weight": format!("{name}.weight")},
               "attrs": {"in_channels": cin, "out_channels": cout, "kernel": [kernel, kernel],
                         "stride": [1, 1], "dilation": [1, 1],
                         "padding": {"top": p, "left": p, "bottom": p, "right": p}, "groups": groups}})
    };
    let nodes = vec![
        conv("expand", "x", 8, 32, 1, 1),
        conv("depthwise", "expand", 32, 32, 3, 32),
        conv("project", "depthwise", 32, 8, 1, 1),
    ];
    let graph = json!({
        "inputs": [{"name": "x", "shape": [1, 8, 16, 16]}],
        "outputs": ["project"],
        "nodes": nodes,
    });
    let metadata = [("format", "pwlu"), ("format_version", "1")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    FileParts {
        tensors,
        metadata,
        graph,
    }
}

/// Runs the inverted bottleneck twice (the second run reads an arena the first left full of its values) against
/// its CPU graph, and returns the plan's memory.
fn run_inverted_bottleneck(input_stage: InputStage) -> MemoryReport {
    let ctx = Arc::new(
        common::contexts_with(input_stage)
            .into_iter()
            .next()
            .expect("context"),
    );
    let bytes = inverted_bottleneck().bytes();
    let model = Model::from_bytes(Arc::clone(&ctx), &bytes).expect("loads");
    let unoptimised = unoptimised_graph(&bytes);
    let x = common::random_tensor(&mut common::rng(44), pwlu::Shape::new(1, 8, 16, 16));
    let expected = unoptimised.run_reference(&x).expect("cpu");
    for run in 0..2 {
        let got = model.run_blocking(&x).expect("gpu");
        common::assert_close(
            &got,
            &expected,
            common::TOLERANCE,
            &format!("input stage {input_stage}, run {run}"),
        );
    }
    let plan = model.plan(1).expect("plan");
    let memory = plan.lock().expect("plan lock").memory();
    memory
}

const WIDE: u64 = 16 * 16 * 32 * 4;
const NARROW: u64 = 16 * 16 * 8 * 4;

#[test]
fn a_layer_that_reads_its_input_through_the_stage_may_write_over_it() {
    let memory = run_inverted_bottleneck(InputStage::Always);
    // Expand's and depthwise's 32-channel outputs share bytes: the depthwise copied its input out first.
    assert_eq!(memory.two_largest_live_bytes, 2 * WIDE);
    assert_eq!(memory.activation_bytes, WIDE + NARROW);
    assert_eq!(memory.staging_bytes, 4096 * 16, "one row holds 2048 texels");
}

#[test]
fn a_layer_that_reads_its_input_from_the_buffer_keeps_its_output_apart() {
    let memory = run_inverted_bottleneck(InputStage::Never);
    // Expand's and depthwise's outputs are both live while the depthwise runs; the projection takes the
    // expansion's bytes once nothing reads them. No stage.
    assert_eq!(memory.two_largest_live_bytes, 2 * WIDE);
    assert_eq!(memory.activation_bytes, 2 * WIDE);
    assert_eq!(memory.staging_bytes, 0);
}

#[test]
fn convolutions_that_share_weights_agree_with_the_cpu_graph() {
    // Their batch norms stay nodes of their own (folding would copy the shared weights into each).
    let ctx = context();
    let bytes = shared_weight_file(6, 3).bytes();
    let model = Model::from_bytes(Arc::clone(&ctx), &bytes).expect("loads");
    let batch_norms = model
        .graph()
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::BatchNorm(..)))
        .count();
    assert_eq!(batch_norms, 3);
    let unoptimised = unoptimised_graph(&bytes);
    let x = common::random_tensor(&mut common::rng(91), pwlu::Shape::new(2, 6, 2, 2));
    let expected = unoptimised.run_reference(&x).expect("cpu");
    let got = model.run_blocking(&x).expect("gpu");
    common::assert_close(&got, &expected, 1e-4, "shared weights");
}
