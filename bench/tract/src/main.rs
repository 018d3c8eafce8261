//! `tract-bench MODEL.onnx [RUNS] [THREADS]`: load, first-run and median latency of tract on a 1x3x224x224
//! input, printed as one JSON line. The input matches `pwlu bench`'s (sin(0.001 i)).

use std::time::Instant;

use tract_onnx::prelude::*;

fn main() {
    if let Err(e) = run() {
        println!("{{\"error\": {:?}}}", e.to_string());
        std::process::exit(1);
    }
}

fn run() -> TractResult<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or_else(|| TractError::msg("usage: tract-bench MODEL.onnx [RUNS] [THREADS]"))?;
    let runs: usize = args.next().map_or(Ok(10), |r| r.parse())?;
    let threads: usize = args.next().map_or(Ok(2), |r| r.parse())?;
    tract_linalg::multithread::set_default_executor(
        tract_linalg::multithread::Executor::multithread(threads),
    );
    let start = Instant::now();
    let model = tract_onnx::onnx()
        .model_for_path(&path)?
        .with_input_fact(0, f32::fact([1, 3, 224, 224]).into())?
        .into_optimized()?
        .into_runnable()?;
    let load = start.elapsed().as_secs_f64();
    let data: Vec<f32> = (0..3 * 224 * 224)
        .map(|i| ((i as f32) * 0.001).sin())
        .collect();
    let input: Tensor = tract_ndarray::Array4::from_shape_vec((1, 3, 224, 224), data)?.into();
    let start = Instant::now();
    model.run(tvec!(input.clone().into()))?;
    let first = start.elapsed().as_secs_f64();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        model.run(tvec!(input.clone().into()))?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"engine\": \"tract 0.23.6\", \"threads\": {threads}, \"load_ms\": {:.1}, \"first_run_ms\": {:.1}, \"median_ms\": {:.1}, \"min_ms\": {:.1}, \"max_ms\": {:.1}, \"runs\": {runs}}}",
        load * 1e3,
        first * 1e3,
        times[times.len() / 2] * 1e3,
        times[0] * 1e3,
        times[times.len() - 1] * 1e3
    );
    Ok(())
}
