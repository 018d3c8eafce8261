//! `pwlu bench`: latency, throughput, achieved GFLOP/s, memory and a per-layer profile.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use pwlu::gpu::GpuContext;
use pwlu::Tensor;
use serde_json::json;

use crate::{load_model, CliResult};

#[derive(clap::Args)]
pub struct Args {
    /// The model (.safetensors).
    model: PathBuf,
    /// Images per run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch: u32,
    /// Timed runs after the first.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    runs: u32,
    /// Also time every layer on its own (the ten slowest are printed).
    #[arg(long)]
    layers: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn ms(seconds: f64) -> f64 {
    seconds * 1e3
}

pub fn run(ctx: Arc<GpuContext>, args: &Args) -> CliResult {
    let start = Instant::now();
    let adapter = ctx.adapter().to_string();
    let model = load_model(ctx.clone(), &args.model)?;
    let load = start.elapsed().as_secs_f64();
    let batch = args.batch as usize;
    let s = model.input_shape();
    let len = batch * s.c * s.h * s.w;
    // A smooth, deterministic input: realistic magnitudes, no denormals.
    let data: Vec<f32> = (0..len).map(|i| ((i as f32) * 0.001).sin()).collect();
    let input = Tensor::new(vec![batch, s.c, s.h, s.w], data).map_err(|e| e.to_string())?;

    let start = Instant::now();
    model.run_blocking(&input).map_err(|e| e.to_string())?;
    let first = start.elapsed().as_secs_f64();
    let mut times = Vec::with_capacity(args.runs as usize);
    for _ in 0..args.runs {
        let start = Instant::now();
        model.run_blocking(&input).map_err(|e| e.to_string())?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let (min, max) = (times[0], times[times.len() - 1]);
    let flops = model.graph().flops() as f64 * batch as f64;
    let plan = model.plan(batch).map_err(|e| e.to_string())?;
    let plan = plan.lock().map_err(|_| "plan lock poisoned".to_string())?;
    let memory = plan.memory();
    let weight_bytes = model.parameter_count() as u64 * 4;
    let mut layers = if args.layers {
        plan.profile(&ctx, &input).map_err(|e| e.to_string())?
    } else {
        Vec::new()
    };
    let layer_total: f64 = layers.iter().map(|l| l.seconds).sum();
    layers.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));

    if args.json {
        let doc = json!({
            "model": model.name(),
            "adapter": adapter,
            "batch": batch,
            "runs": args.runs,
            "load_ms": ms(load),
            "first_run_ms": ms(first),
            "median_ms": ms(median),
            "min_ms": ms(min),
            "max_ms": ms(max),
            "images_per_second": batch as f64 / median,
            "gflops": flops / 1e9,
            "gflop_per_second": flops / median / 1e9,
            "dispatches": plan.dispatches().len(),
            "activation_bytes": memory.activation_bytes,
            "activation_bytes_without_reuse": memory.unshared_activation_bytes,
            "weight_bytes": weight_bytes,
            "layers": layers.iter().map(|l| json!({"node": l.node, "kernel": l.kernel, "ms": ms(l.seconds)})).collect::<Vec<_>>(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    println!("model        {} on {adapter}", model.name());
    println!(
        "batch        {batch}, {} dispatches",
        plan.dispatches().len()
    );
    println!(
        "load         {:.1} ms (parse, optimise, pipelines and weights for batch 1)",
        ms(load)
    );
    println!("first run    {:.1} ms", ms(first));
    println!(
        "steady       median {:.1} ms, min {:.1}, max {:.1} over {} runs",
        ms(median),
        ms(min),
        ms(max),
        args.runs
    );
    println!(
        "throughput   {:.2} images/s, {:.2} GFLOP/s ({:.3} GFLOP per run)",
        batch as f64 / median,
        flops / median / 1e9,
        flops / 1e9
    );
    println!(
        "memory       activations {:.1} MiB ({:.1} MiB without reuse), weights {:.1} MiB",
        memory.activation_bytes as f64 / 1048576.0,
        memory.unshared_activation_bytes as f64 / 1048576.0,
        weight_bytes as f64 / 1048576.0
    );
    if !layers.is_empty() {
        println!(
            "slowest layers (each submitted alone; {:.1} ms in all):",
            ms(layer_total)
        );
        for l in layers.iter().take(10) {
            println!(
                "  {:>8.2} ms  {:>5.1}%  {:<24}  {}",
                ms(l.seconds),
                100.0 * l.seconds / layer_total,
                l.kernel,
                l.node
            );
        }
    }
    Ok(())
}
