//! `wonnx-bench MODEL.onnx [RUNS]`: first-run and median latency of wonnx 0.5.1 on a 1x3x224x224 input,
//! printed as one JSON line. The input matches `pwlu bench`'s (sin(0.001 i)).

use std::collections::HashMap;
use std::time::Instant;

fn main() {
    if let Err(e) = run() {
        println!("{{\"error\": {:?}}}", e);
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: wonnx-bench MODEL.onnx [RUNS]")?;
    let runs: usize = args.next().map_or(Ok(10), |r| r.parse()).map_err(|e| format!("runs: {e}"))?;
    let start = Instant::now();
    let session = pollster::block_on(wonnx::Session::from_path(&path)).map_err(|e| e.to_string())?;
    let load = start.elapsed().as_secs_f64();
    let data: Vec<f32> = (0..3 * 224 * 224).map(|i| ((i as f32) * 0.001).sin()).collect();
    let mut inputs = HashMap::new();
    inputs.insert("input".to_string(), data.as_slice().into());
    let start = Instant::now();
    pollster::block_on(session.run(&inputs)).map_err(|e| e.to_string())?;
    let first = start.elapsed().as_secs_f64();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        pollster::block_on(session.run(&inputs)).map_err(|e| e.to_string())?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"engine\": \"wonnx 0.5.1\", \"load_ms\": {:.1}, \"first_run_ms\": {:.1}, \"median_ms\": {:.1}, \"min_ms\": {:.1}, \"max_ms\": {:.1}, \"runs\": {runs}}}",
        load * 1e3,
        first * 1e3,
        times[times.len() / 2] * 1e3,
        times[0] * 1e3,
        times[times.len() - 1] * 1e3
    );
    Ok(())
}
