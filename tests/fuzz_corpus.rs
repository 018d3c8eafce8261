//! Every input the fuzzers kept (fuzz/corpus) and every input that ever crashed them (fuzz/regressions), replayed
//! through the same code as the fuzz targets in fuzz/fuzz_targets: each must give a result or an error, never a
//! panic. `scripts/fuzz.sh` runs the fuzzers themselves.

mod common;

use std::path::{Path, PathBuf};

use common::fuzz_inputs::{file_with_graph, plan_if_small, run_if_small};
use pwlu::model::CheckedModel;
use pwlu::preprocess::{decode_image, Preprocess};

/// The kept and the crashing inputs of one target, with their paths for the failure message.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                let bytes = std::fs::read(&path).expect("readable corpus file");
                files.push((path, bytes));
            }
        }
    }
    files.sort();
    files
}

fn replay(target: &str, run: impl Fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "fuzz/corpus/{target} is empty");
    for (path, bytes) in &files {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(bytes)));
        assert!(outcome.is_ok(), "{} panicked", path.display());
    }
    println!("{target}: {} inputs replayed", files.len());
}

#[test]
fn model_files_the_fuzzer_kept_never_panic() {
    replay("model_file", |bytes| {
        let _ = CheckedModel::from_bytes(bytes);
    });
}

#[test]
fn graphs_the_fuzzer_kept_never_panic() {
    let parts = common::model_file::small_classifier();
    replay("graph_json", |bytes| {
        let Some(file) = file_with_graph(&parts, bytes) else {
            return;
        };
        if let Ok(checked) = CheckedModel::from_bytes(&file) {
            run_if_small(&checked);
        }
    });
}

#[test]
fn graphs_the_fuzzers_kept_plan_without_panicking() {
    // What fuzz/fuzz_targets/plan.rs does: plan every small valid graph for batch 1 and 2 on the GPU.
    let ctx = std::sync::Arc::new(
        common::contexts()
            .into_iter()
            .next()
            .expect("a GPU context"),
    );
    let parts = common::model_file::small_classifier();
    let planned = std::sync::atomic::AtomicUsize::new(0);
    for target in ["plan", "graph_json"] {
        replay(target, |bytes| {
            if file_with_graph(&parts, bytes).is_some_and(|file| plan_if_small(&ctx, &file)) {
                planned.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    let planned = planned.into_inner();
    println!("{planned} graphs planned for batch 1 and 2");
    assert!(planned > 0, "no kept graph reached the planner");
}

#[test]
fn images_the_fuzzer_kept_never_panic() {
    let preprocess: Preprocess = serde_json::from_str(
        r#"{"resize": 16, "crop": 12, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}"#,
    )
    .expect("a valid preprocessing spec");
    replay("image_decode", |bytes| {
        if let Ok(image) = decode_image(bytes) {
            let _ = preprocess.apply(&image);
        }
    });
}
