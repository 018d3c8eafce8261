//! The smallest use of the library: load a model, classify an image, print the top 5.
//!
//! ```text
//! bash scripts/zoo.sh --models efficientnet_lite0
//! cargo run --release --example classify -- models/efficientnet_lite0.safetensors models/photos/coffee.png
//! ```

use pwlu::device::{select_blocking, DeviceOptions};
use pwlu::Model;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model_path, image_path] = args.as_slice() else {
        return Err("usage: classify MODEL.safetensors IMAGE".into());
    };
    // A hardware GPU if there is one, else the CPU backend (`PWLU_BACKEND` overrides the choice).
    let selected = select_blocking(&DeviceOptions::default())?;
    eprintln!(
        "running on {} ({})",
        selected.device.describe(),
        selected.reason
    );
    let model = Model::load(selected.device, model_path)?;
    let image = std::fs::read(image_path).map_err(|e| format!("{image_path}: {e}"))?;
    for class in model.classify_bytes_blocking(&image, 5)? {
        println!(
            "{:>6.2}%  {:>4}  {}",
            class.prob * 100.0,
            class.index,
            class.label
        );
    }
    Ok(())
}
