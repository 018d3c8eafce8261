//! `pwlu bench`: latency, throughput, achieved GFLOP/s, memory and a per-layer profile.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use pwlu::device::Selected;
use pwlu::gpu::kernels::MatmulKernel;
use pwlu::gpu::GpuContext;
use pwlu::plan::Timing;
use pwlu::Device;
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
    /// Another model with the same input (a variant of MODEL: other activation, other export), run in
    /// alternation with it: each round times both, in turns first, and the report gives the per-round ratio
    /// MODEL / OTHER. Load on a shared machine drifts over seconds; a ratio taken within one round cancels it.
    #[arg(long, value_name = "OTHER")]
    versus: Option<PathBuf>,
}

/// The lower quartile, median and upper quartile of `values` (not empty).
fn quartiles(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}

/// The model of `--versus` and what was measured of it: its latency and the per-round ratios.
struct Versus {
    model: pwlu::Model,
    first: f64,
    times: Vec<f64>,
    ratios: Vec<f64>,
}

impl Versus {
    /// The other model's median latency and the ratios' lower quartile, median and upper quartile.
    fn summary(&self) -> (f64, (f64, f64, f64)) {
        (quartiles(&self.times).1, quartiles(&self.ratios))
    }
}

fn ms(seconds: f64) -> f64 {
    seconds * 1e3
}

pub fn run(selected: Selected, args: &Args) -> CliResult {
    let start = Instant::now();
    let device = selected.device;
    let adapter = device.describe();
    let gpu: Option<Arc<GpuContext>> = device.gpu().cloned();
    let model = load_model(device.clone(), &args.model)?;
    let load = start.elapsed().as_secs_f64();
    let batch = args.batch as usize;
    let s = model.input_shape();
    let len = batch * s.c * s.h * s.w;
    // A smooth, deterministic input: realistic magnitudes, no denormals.
    let data: Vec<f32> = (0..len).map(|i| ((i as f32) * 0.001).sin()).collect();
    let input = Tensor::new(vec![batch, s.c, s.h, s.w], data).map_err(|e| e.to_string())?;

    let time_run = |m: &pwlu::Model| -> Result<f64, String> {
        let start = Instant::now();
        m.run_blocking(&input).map_err(|e| e.to_string())?;
        Ok(start.elapsed().as_secs_f64())
    };
    let first = time_run(&model)?;
    // Batch 1's at load and, at another batch, that batch's; before the other model or the GEMM yardstick add
    // theirs.
    let pipelines = gpu.as_ref().map(|ctx| ctx.pipeline_count());
    let mut versus = match &args.versus {
        Some(path) => {
            let other = load_model(device.clone(), path)?;
            let o = other.input_shape();
            if o != s {
                return Err(format!(
                    "--versus needs models with the same input: {} takes {}x{}x{}, {} takes {}x{}x{}",
                    model.name(),
                    s.c,
                    s.h,
                    s.w,
                    other.name(),
                    o.c,
                    o.h,
                    o.w
                ));
            }
            Some(Versus {
                first: time_run(&other)?,
                model: other,
                times: Vec::with_capacity(args.runs as usize),
                ratios: Vec::with_capacity(args.runs as usize),
            })
        }
        None => None,
    };
    let mut times = Vec::with_capacity(args.runs as usize);
    for round in 0..args.runs {
        let Some(versus) = &mut versus else {
            times.push(time_run(&model)?);
            continue;
        };
        // In turns first, so that neither always runs right after the other.
        let (ours, theirs) = if round % 2 == 0 {
            let ours = time_run(&model)?;
            (ours, time_run(&versus.model)?)
        } else {
            let theirs = time_run(&versus.model)?;
            (time_run(&model)?, theirs)
        };
        times.push(ours);
        versus.times.push(theirs);
        versus.ratios.push(ours / theirs);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let (min, max) = (times[0], times[times.len() - 1]);
    let flops = model.graph().flops() as f64 * batch as f64;
    let (memory, dispatches) = {
        let plan = model.plan(batch).map_err(|e| e.to_string())?;
        let plan = plan.lock().map_err(|_| "plan lock poisoned".to_string())?;
        (plan.memory(), plan.kernels())
    };
    let mut layers = if args.layers {
        pollster::block_on(model.profile(&input)).map_err(|e| e.to_string())?
    } else {
        Vec::new()
    };
    let layer_total: f64 = layers.iter().map(|l| l.seconds).sum();
    layers.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    let timing = match layers.first().map(|l| l.timing) {
        Some(Timing::GpuTimestamps) => "GPU timestamps, one submission",
        Some(Timing::WallClock) => "wall clock, each dispatch submitted alone",
        None => "",
    };
    let node_flops = |name: &str| {
        let per_image = model
            .graph()
            .nodes
            .iter()
            .find(|n| n.name == name)
            .map_or(0, |n| n.flops());
        per_image as f64 * batch as f64
    };
    let mib = |bytes: u64| bytes as f64 / 1048576.0;
    let gemms = if args.layers {
        gemm_yardstick(&device)?
    } else {
        Vec::new()
    };
    let best_gemm = gemms.iter().map(|g| g.gflop_per_second).fold(0.0, f64::max);

    if args.json {
        let doc = json!({
            "model": model.name(),
            "backend": device.backend_name(),
            "backend_reason": selected.reason,
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
            "dispatches": dispatches,
            "pipelines_compiled": pipelines,
            "memory_bytes": memory.total_bytes(),
            "weight_bytes": memory.weight_bytes,
            "activation_bytes": memory.activation_bytes,
            "activation_bytes_without_reuse": memory.unshared_activation_bytes,
            "input_stage_bytes": memory.staging_bytes,
            "inputs_staged": gpu.as_ref().map(|ctx| ctx.stages_inputs()),
            "two_largest_live_activation_bytes": memory.two_largest_live_bytes,
            "peak_live_activation_bytes": memory.peak_live_bytes,
            "memory_over_floor": memory.overhead_ratio(),
            "layer_timing": timing,
            "gemm": gemms.iter().map(|g| json!({
                "m": g.m, "k": g.k, "n": g.n, "ms": ms(g.seconds), "gflop_per_second": g.gflop_per_second,
            })).collect::<Vec<_>>(),
            "best_gemm_gflop_per_second": best_gemm,
            "versus": versus.as_ref().map(|v| {
                let (median, (low, ratio, high)) = v.summary();
                json!({
                    "model": v.model.name(),
                    "first_run_ms": ms(v.first),
                    "median_ms": ms(median),
                    "ratio_median": ratio,
                    "ratio_lower_quartile": low,
                    "ratio_upper_quartile": high,
                    "rounds": v.ratios.len(),
                })
            }),
            "layers": layers.iter().map(|l| json!({
                "node": l.node,
                "kernel": l.kernel,
                "ms": ms(l.seconds),
                "gflop_per_second": node_flops(&l.node) / l.seconds.max(1e-12) / 1e9,
            })).collect::<Vec<_>>(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    println!("model        {} on {adapter}", model.name());
    println!(
        "backend      {}: {}",
        device.backend_name(),
        selected.reason
    );
    match (&gpu, pipelines) {
        (Some(ctx), Some(pipelines)) => println!(
            "batch        {batch}, {dispatches} dispatches; {pipelines} pipelines compiled{}; inputs {}",
            if batch == 1 {
                ""
            } else {
                " (batch 1's at load, then this batch's)"
            },
            if ctx.stages_inputs() {
                "read through the input stage"
            } else {
                "read from their buffers (PWLU_INPUT_STAGE=always to stage)"
            }
        ),
        _ => println!("batch        {batch}, {dispatches} kernels"),
    }
    println!(
        "load         {:.1} ms (parse, optimise, {} for batch 1)",
        ms(load),
        if gpu.is_some() {
            "pipelines and weights"
        } else {
            "pack the weights"
        }
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
        "{}   {:.1} MiB: weights {:.1}, activations {:.1} ({:.1} without reuse), input stage {:.1}",
        if gpu.is_some() {
            "GPU memory"
        } else {
            "memory    "
        },
        mib(memory.total_bytes()),
        mib(memory.weight_bytes),
        mib(memory.activation_bytes),
        mib(memory.unshared_activation_bytes),
        mib(memory.staging_bytes),
    );
    println!(
        "             {:.2}x weights + the two largest live activations ({:.1} MiB); {:.2}x weights + all \
         activations live at the busiest step ({:.1} MiB)",
        memory.overhead_ratio(),
        mib(memory.weight_bytes + memory.two_largest_live_bytes),
        memory.total_bytes() as f64 / (memory.weight_bytes + memory.peak_live_bytes).max(1) as f64,
        mib(memory.weight_bytes + memory.peak_live_bytes),
    );
    if let Some(v) = &versus {
        let (median, (low, ratio, high)) = v.summary();
        println!(
            "versus       {}: first run {:.1} ms, median {:.1} ms",
            v.model.name(),
            ms(v.first),
            ms(median)
        );
        println!(
            "             {} / {} per round: {ratio:.3}x (middle half {low:.3}-{high:.3}) over {} alternated rounds",
            model.name(),
            v.model.name(),
            v.ratios.len()
        );
    }
    if !layers.is_empty() {
        println!(
            "slowest layers ({timing}; {:.1} ms in all):",
            ms(layer_total)
        );
        for l in layers.iter().take(10) {
            let flops = node_flops(&l.node);
            let rate = if flops > 0.0 {
                format!("{:>6.2} GFLOP/s", flops / l.seconds.max(1e-12) / 1e9)
            } else {
                " ".repeat(14)
            };
            println!(
                "  {:>8.2} ms  {:>5.1}%  {rate}  {:<24}  {}",
                ms(l.seconds),
                100.0 * l.seconds / layer_total,
                l.kernel,
                l.node
            );
        }
        println!(
            "GEMM yardstick ({}, {timing}):",
            if gpu.is_some() {
                "matmul.wgsl, same adapter"
            } else {
                "the gemm crate, same threads"
            }
        );
        for g in &gemms {
            println!(
                "  {:>8.2} ms          {:>6.2} GFLOP/s  {} x {} times {} x {}",
                ms(g.seconds),
                g.gflop_per_second,
                g.m,
                g.k,
                g.k,
                g.n
            );
        }
        let (conv_flops, conv_seconds) = layers
            .iter()
            .filter(|l| node_flops(&l.node) > 0.0)
            .fold((0.0, 0.0), |(f, t), l| {
                (f + node_flops(&l.node), t + l.seconds)
            });
        if conv_seconds > 0.0 && best_gemm > 0.0 {
            let rate = conv_flops / conv_seconds / 1e9;
            println!(
                "  convolutions together: {rate:.2} GFLOP/s = {:.2}x the best GEMM",
                rate / best_gemm
            );
        }
    }
    Ok(())
}

/// One GEMM measurement of [`gemm_yardstick`].
struct GemmFigure {
    m: usize,
    k: usize,
    n: usize,
    seconds: f64,
    gflop_per_second: f64,
}

/// The project's own matrix multiply on a few shapes: a square one and the shapes of typical 1x1
/// convolutions (pixels x input channels times input x output channels). Best of three, timed like the layers.
fn gemm_yardstick(device: &Device) -> Result<Vec<GemmFigure>, String> {
    let shapes = [
        (512, 512, 512),
        (12544, 32, 96),
        (3136, 144, 24),
        (784, 240, 80),
        (49, 1280, 1000),
    ];
    let mut figures = Vec::new();
    for (m, k, n) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| ((i % 97) as f32) * 0.01).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i % 89) as f32) * 0.01).collect();
        let flops = 2.0 * (m * k * n) as f64;
        let ctx = match device {
            Device::Gpu(ctx) => ctx,
            Device::Cpu(cpu) => {
                let seconds = cpu.time_gemm(m, k, n).map_err(|e| e.to_string())?;
                figures.push(GemmFigure {
                    m,
                    k,
                    n,
                    seconds,
                    gflop_per_second: flops / seconds.max(1e-12) / 1e9,
                });
                continue;
            }
        };
        let kernel = MatmulKernel::new(ctx, m, k, n).map_err(|e| e.to_string())?;
        let bound = kernel.bind(ctx, &a, &b).map_err(|e| e.to_string())?;
        pollster::block_on(bound.run(ctx)).map_err(|e| e.to_string())?;
        let repeats = [bound.dispatch(); 3];
        let seconds =
            match pollster::block_on(ctx.time_dispatches(&repeats)).map_err(|e| e.to_string())? {
                Some(times) => times.into_iter().fold(f64::INFINITY, f64::min),
                None => {
                    let mut best = f64::INFINITY;
                    for _ in 0..3 {
                        let start = Instant::now();
                        pollster::block_on(bound.run(ctx)).map_err(|e| e.to_string())?;
                        best = best.min(start.elapsed().as_secs_f64());
                    }
                    best
                }
            };
        figures.push(GemmFigure {
            m,
            k,
            n,
            seconds,
            gflop_per_second: kernel.flops() as f64 / seconds.max(1e-12) / 1e9,
        });
    }
    Ok(figures)
}
