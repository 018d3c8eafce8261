//! Parity with PyTorch: the engine's logits on the zoo's models match PyTorch's on identical inputs,
//! max |diff| <= 1e-3 * max(1, max |logit|), with the same top-5 in the same order.
//!
//! The models are made by `python -m pwlu_tools.zoo --out models` (`.ci/run` does it), which writes beside each
//! `NAME.safetensors` the reference it is checked against, `NAME.parity.json`: PyTorch's logits from that very
//! model on input crops it saved in `models/crops/`. Training and statistics give other bits on another CPU, so
//! no reference is committed; `tests/fixtures/` holds only what every machine computes alike (torchvision's
//! crops of the photos, for the preprocessing test).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pwlu::gpu::{GpuContext, InputStage};
use pwlu::ops::Grid;
use pwlu::preprocess::{decode_image, Preprocess};
use pwlu::{Device, Model, Tensor};
use serde_json::Value;

const MODELS: &[&str] = &[
    "efficientnet_lite0",
    "resnet18",
    "resnet50",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "shufflenet_v2_x1_0",
    "densenet121",
    "digits",
    "digits_non_uniform",
    "digits_layer_wise",
];

/// The trained digits networks: uniform channel-wise, non-uniform channel-wise and uniform layer-wise units.
const DIGITS: &[&str] = &["digits", "digits_non_uniform", "digits_layer_wise"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn models_dir() -> PathBuf {
    std::env::var_os("PWLU_MODELS").map_or_else(|| root().join("models"), PathBuf::from)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}\nThe zoo's models are generated, not committed: run \
             `python -m pwlu_tools.zoo --out models` (see README) first.",
            path.display()
        )
    })
}

/// The committed, machine-independent fixture: preprocessing and torchvision's crops.
fn fixture(name: &str) -> Value {
    let path = root().join("tests/fixtures").join(format!("{name}.json"));
    serde_json::from_slice(&read(&path)).expect("fixture is JSON")
}

/// PyTorch's outputs, written by the zoo with the model file they describe.
fn reference(name: &str) -> Value {
    let path = models_dir().join(format!("{name}.parity.json"));
    serde_json::from_slice(&read(&path)).expect("parity reference is JSON")
}

fn context() -> Arc<GpuContext> {
    let ctx = common::contexts()
        .into_iter()
        .next()
        .expect("a GPU context");
    Arc::new(ctx)
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

/// The reference's input: a crop normalised as the model says (no resize, no crop), or a raw tensor.
fn input_of(model: &Model, entry: &Value) -> Tensor {
    if let Some(crop) = entry.get("crop").and_then(Value::as_str) {
        let image = decode_image(&read(&models_dir().join(crop))).expect("crop decodes");
        let preprocess = Preprocess {
            resize: None,
            crop: None,
            ..model.preprocess().expect("model has preprocessing").clone()
        };
        return preprocess.apply(&image).expect("normalise");
    }
    let data = floats(&entry["tensor"]);
    let s = model.input_shape();
    Tensor::new(vec![1, s.c, s.h, s.w], data).expect("fixture tensor")
}

fn top5(logits: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order.truncate(5);
    order
}

fn check_logits(name: &str, got: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(got.len(), expected.len(), "{name}: number of logits");
    let scale = expected.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(expected)
        .map(|(g, e)| (g - e).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1e-3 * scale,
        "{name}: max |engine - pytorch| = {worst:e}, allowed {:e}",
        1e-3 * scale
    );
    assert_eq!(top5(got), top5(expected), "{name}: top-5 differs");
    worst / scale
}

/// `models` on `device`, one input at a time and (with `batched`) all of them as one batch.
fn check_zoo(device: impl Into<Device>, models: &[&str], batched: bool) {
    let device: Device = device.into();
    for name in models {
        let model = Model::load(
            device.clone(),
            models_dir().join(format!("{name}.safetensors")),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let reference = reference(name);
        let entries = reference["inputs"].as_array().expect("inputs");
        let mut inputs = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let input = input_of(&model, entry);
            let logits = model
                .run_blocking(&input)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let expected = floats(&entry["logits"]);
            let relative = check_logits(&format!("{name} input {i}"), logits.data(), &expected);
            println!(
                "{name} input {i} on {}: max |diff| / max(1, max |logit|) = {relative:.2e}",
                device.describe()
            );
            inputs.push(input);
        }
        if !batched {
            continue;
        }
        // The same inputs as one batch give the same logits.
        let s = model.input_shape();
        let batch: Vec<f32> = inputs
            .iter()
            .flat_map(|t| t.data().iter().copied())
            .collect();
        let batch = Tensor::new(vec![inputs.len(), s.c, s.h, s.w], batch).expect("batch");
        let logits = model
            .run_blocking(&batch)
            .unwrap_or_else(|e| panic!("{name} batched: {e}"));
        let classes = logits.dims()[1];
        for (i, entry) in entries.iter().enumerate() {
            let row = &logits.data()[i * classes..][..classes];
            check_logits(
                &format!("{name} batched input {i}"),
                row,
                &floats(&entry["logits"]),
            );
        }
    }
}

#[test]
fn zoo_models_match_pytorch() {
    check_zoo(context(), MODELS, true);
}

#[test]
fn zoo_models_match_pytorch_on_the_cpu_backend() {
    check_zoo(common::cpu_device(common::CPU_TEST_THREADS), MODELS, true);
}

#[test]
fn zoo_models_match_pytorch_reading_inputs_from_buffers() {
    // The path discrete and integrated GPUs take by default (`--input-stage never`).
    let ctx = common::contexts_with(InputStage::Never)
        .into_iter()
        .next()
        .expect("a GPU context");
    check_zoo(ctx, MODELS, false);
}

#[test]
fn efficientnet_lite0_calls_the_coffee_photo_an_espresso() {
    let photo = read(&models_dir().join("photos/coffee.png"));
    for device in [Device::from(context()), common::cpu_device(2)] {
        let on = device.describe();
        let model = Model::load(device, models_dir().join("efficientnet_lite0.safetensors"))
            .expect("model");
        let top = model.classify_bytes_blocking(&photo, 5).expect("classify");
        println!("{on}: {top:?}");
        assert_eq!(top[0].label, "espresso", "{on}");
        assert!(
            top[0].prob > 0.5,
            "{on}: espresso with probability {}",
            top[0].prob
        );
        assert_eq!(top.len(), 5);
        assert!(top.windows(2).all(|w| w[0].prob >= w[1].prob));
    }
}

#[test]
fn preprocessing_matches_torchvision_on_real_photos() {
    // Our resize and crop of the original photo against torchvision's (PIL's) crop in the fixtures.
    for (name, photo) in [
        ("efficientnet_lite0", "coffee.png"),
        ("resnet18", "coffee.png"),
        ("resnet18", "chelsea.png"),
    ] {
        let fixture = fixture(name);
        let preprocess: Preprocess =
            serde_json::from_value(fixture["preprocess"].clone()).expect("preprocess");
        let entry = fixture["inputs"]
            .as_array()
            .expect("inputs")
            .iter()
            .find(|e| e["photo"] == photo)
            .expect("photo in fixture");
        let ours = preprocess
            .apply(&decode_image(&read(&models_dir().join("photos").join(photo))).expect("photo"))
            .expect("preprocess");
        let crop = decode_image(&read(
            &root()
                .join("tests/fixtures")
                .join(entry["crop"].as_str().expect("crop")),
        ))
        .expect("crop");
        let theirs = Preprocess {
            resize: None,
            crop: None,
            ..preprocess.clone()
        }
        .apply(&crop)
        .expect("normalise");
        assert_eq!(ours.dims(), theirs.dims());
        // Back to 0..255 pixel units: mean and max absolute difference per pixel value.
        let plane = ours.data().len() / 3;
        let diffs: Vec<f32> = ours
            .data()
            .iter()
            .zip(theirs.data())
            .enumerate()
            .map(|(i, (a, b))| (a - b).abs() * preprocess.std[i / plane] * 255.0)
            .collect();
        let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
        let max = diffs.iter().copied().fold(0.0, f32::max);
        println!("{name} {photo}: mean |ours - torchvision| = {mean:.4} / 255, max {max:.2} / 255");
        assert!(mean <= 1.0, "{name} {photo}: mean difference {mean} / 255");
    }
}

#[test]
fn digits_variants_match_pytorch_on_every_backend() {
    for device in common::devices() {
        check_zoo(device, DIGITS, true);
    }
}

#[test]
fn digits_models_on_the_cpu_reference_match_pytorch_too() {
    // The whole graph through the CPU references: an independent check of the optimised GPU path.
    let ctx = context();
    for name in DIGITS {
        let model = Model::load(
            Arc::clone(&ctx),
            models_dir().join(format!("{name}.safetensors")),
        )
        .expect("model");
        for entry in reference(name)["inputs"].as_array().expect("inputs") {
            let input = input_of(&model, entry);
            let cpu = model.graph().run_reference(&input).expect("cpu");
            check_logits(
                &format!("{name} on the CPU"),
                cpu.data(),
                &floats(&entry["logits"]),
            );
        }
    }
}

#[test]
fn digits_models_classify_the_held_out_split() {
    // The accuracy of each exported model as the engine runs it, on the 450 images training never saw.
    let ctx = context();
    for name in DIGITS {
        let model = Model::load(
            Arc::clone(&ctx),
            models_dir().join(format!("{name}.safetensors")),
        )
        .expect("model");
        let held_out = &reference(name)["held_out"];
        let labels: Vec<usize> = held_out["labels"]
            .as_array()
            .expect("labels")
            .iter()
            .map(|v| v.as_u64().expect("label") as usize)
            .collect();
        let data: Vec<f32> = held_out["inputs"]
            .as_array()
            .expect("inputs")
            .iter()
            .flat_map(floats)
            .collect();
        let s = model.input_shape();
        let batch = Tensor::new(vec![labels.len(), s.c, s.h, s.w], data).expect("held-out batch");
        let logits = model.run_blocking(&batch).expect("run");
        let classes = logits.dims()[1];
        let correct = logits
            .data()
            .chunks(classes)
            .zip(&labels)
            .filter(|(row, &label)| top5(row)[0] == label)
            .count();
        let accuracy = correct as f64 / labels.len() as f64;
        println!(
            "{name}: {correct} of {} held-out images right ({accuracy:.4})",
            labels.len()
        );
        assert!(labels.len() >= 400, "{} held-out images", labels.len());
        assert!(accuracy >= 0.96, "{name}: held-out accuracy {accuracy}");

        // The units are what the variant says, and training moved them away from the ReLU they started as:
        // mean |PWLU(x) - ReLU(x)| over each site's sampled range.
        let sites = model.pwlu_sites();
        assert_eq!(sites.len(), 3, "{name} has three PWLU sites");
        for site in &sites {
            let uniform = matches!(site.pwlu.grid(), Grid::Uniform { .. });
            assert_eq!(
                uniform,
                *name != "digits_non_uniform",
                "{name} {}",
                site.name
            );
            assert_eq!(
                site.pwlu.is_layer_wise(),
                *name == "digits_layer_wise",
                "{name} {}",
                site.name
            );
            let curves = site.curves(200);
            let distance = curves
                .y
                .iter()
                .flat_map(|unit| {
                    unit.iter()
                        .zip(&curves.x)
                        .map(|(y, x)| (y - x.max(0.0)).abs())
                })
                .sum::<f32>()
                / (curves.y.len() * curves.x.len()) as f32;
            println!("{name} {}: mean |PWLU - ReLU| = {distance:.3}", site.name);
            assert!(
                distance > 0.05,
                "{name} {}: learned units should differ from ReLU",
                site.name
            );
        }
    }
}
