//! `pwlu classify`: images in, top classes out, as a table or JSON.

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pwlu::preprocess::decode_image;
use pwlu::{Class, Model, Tensor};
use serde_json::json;

use crate::{load_model, CliResult};

/// File endings a directory walk picks up.
const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"];

#[derive(clap::Args)]
pub struct Args {
    /// The model (.safetensors).
    model: PathBuf,
    /// Image files, or directories to walk for images.
    #[arg(required = true, value_name = "IMAGE|DIR")]
    inputs: Vec<PathBuf>,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Print JSON: [{"image": PATH, "top": [{"index": I, "label": L, "prob": P}, ...]}, ...].
    #[arg(long)]
    json: bool,
    /// With --json, also give each image's raw model outputs as "logits".
    #[arg(long, requires = "json")]
    logits: bool,
    /// Images per GPU run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    batch: u32,
}

fn collect(inputs: &[PathBuf]) -> CliResult<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|e| format!("{}: {e}", input.display()))?;
        if meta.is_dir() {
            walk(input, &mut files)?;
        } else {
            files.push(input.clone());
        }
    }
    if files.is_empty() {
        return Err("no images found in the given directories".into());
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> CliResult {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, files)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            files.push(path);
        }
    }
    Ok(())
}

fn load_input(model: &Model, path: &Path) -> CliResult<Tensor> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let image = decode_image(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    model
        .preprocess_image(&image)
        .map_err(|e| format!("{}: {e}", path.display()))
}

pub fn run(device: pwlu::Device, args: &Args) -> CliResult {
    let model = load_model(device, &args.model)?;
    if model.preprocess().is_none() {
        return Err(format!(
            "{}: the model has no preprocessing metadata, so it cannot classify images; use `pwlu run`",
            args.model.display()
        ));
    }
    let files = collect(&args.inputs)?;
    let batch = args.batch as usize;
    let progress =
        ProgressBar::with_draw_target(Some(files.len() as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} images {per_sec} eta {eta}")
    {
        progress.set_style(style);
    }
    let start = Instant::now();
    let mut results: Vec<(PathBuf, Vec<Class>, Vec<f32>)> = Vec::new();
    let mut failures = 0usize;
    for chunk in files.chunks(batch) {
        let mut paths = Vec::new();
        let mut inputs = Vec::new();
        for path in chunk {
            match load_input(&model, path) {
                Ok(t) => {
                    paths.push(path.clone());
                    inputs.push(t);
                }
                // With one image, its failure is the error; with several, report each and go on.
                Err(message) if files.len() == 1 => return Err(message),
                Err(message) => {
                    failures += 1;
                    progress.suspend(|| eprintln!("error: {message}"));
                }
            }
        }
        if inputs.is_empty() {
            progress.inc(chunk.len() as u64);
            continue;
        }
        // Pad the last, short batch with zeros so every run reuses the same plan.
        let s = model.input_shape();
        let mut data: Vec<f32> = inputs
            .iter()
            .flat_map(|t| t.data().iter().copied())
            .collect();
        data.resize(batch * s.c * s.h * s.w, 0.0);
        let tensor = Tensor::new(vec![batch, s.c, s.h, s.w], data).map_err(|e| e.to_string())?;
        let logits = model.run_blocking(&tensor).map_err(|e| e.to_string())?;
        let classes = logits.data().len() / batch;
        for (i, path) in paths.into_iter().enumerate() {
            let row = &logits.data()[i * classes..][..classes];
            results.push((path, model.top_k(row, args.top), row.to_vec()));
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();

    if args.json {
        let entries: Vec<_> = results
            .iter()
            .map(|(path, top, logits)| {
                let mut entry = json!({
                    "image": path.display().to_string(),
                    "top": top.iter().map(|c| json!({"index": c.index, "label": c.label, "prob": c.prob})).collect::<Vec<_>>(),
                });
                if args.logits {
                    entry["logits"] = json!(logits);
                }
                entry
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&entries).map_err(|e| e.to_string())?
        );
    } else {
        for (path, top, _) in &results {
            println!("{}", path.display());
            for (rank, class) in top.iter().enumerate() {
                println!(
                    "  {:>2}  {:>7.3}%  {:>5}  {}",
                    rank + 1,
                    class.prob * 100.0,
                    class.index,
                    class.label
                );
            }
        }
    }
    if !results.is_empty() {
        eprintln!(
            "classified {} image{} in {seconds:.2} s ({:.1} images/s, batch {batch}, {})",
            results.len(),
            if results.len() == 1 { "" } else { "s" },
            results.len() as f64 / seconds.max(1e-9),
            model.name()
        );
    }
    if failures > 0 {
        return Err(format!(
            "{failures} of {} images could not be classified",
            files.len()
        ));
    }
    Ok(())
}
