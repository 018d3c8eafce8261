//! `pwlu`: classify images, run tensors, inspect and plot PWLU models, list GPUs.
//!
//! Every failure is one line on stderr and a non-zero exit status: 1 for a failure while working, 2 for a
//! command line that does not parse.

mod bench;
mod classify;
mod devices;
mod info;
mod npy;
mod plot;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pwlu::cpu::CpuOptions;
use pwlu::device::{DeviceOptions, Selected};
use pwlu::gpu::{Backend, GpuOptions, InputStage};
use pwlu::{Device, Model};

#[derive(Parser)]
#[command(
    name = "pwlu",
    version,
    about = "WebGPU inference for CNN classifiers with Piecewise Linear Units"
)]
struct Cli {
    /// Where models run: auto (a hardware GPU if there is one, else the CPU backend), cpu, or a graphics API:
    /// vulkan, metal, dx12, gl (default: $PWLU_BACKEND, then auto).
    #[arg(long, global = true, default_value = "auto")]
    backend: String,
    /// Threads of the CPU backend (default: $PWLU_THREADS, then one per core).
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// The widest vector instructions the CPU backend's own kernels may use: avx512, avx2 or baseline (default:
    /// the widest the CPU has; the GEMMs pick their own). To compare them, or to keep AVX-512 from lowering
    /// the clock of cores shared with other work.
    #[arg(long, global = true, value_name = "avx512|avx2|baseline")]
    simd: Option<String>,
    /// Compute every convolution of the CPU backend directly: no Winograd transforms for 3x3 layers (faster,
    /// but up to 4x the weight memory of those layers), e.g. to compare the two or to save memory.
    #[arg(long, global = true)]
    no_winograd: bool,
    /// Use the N-th adapter of `pwlu devices` instead of the one wgpu prefers.
    #[arg(long, global = true, value_name = "N")]
    adapter: Option<usize>,
    /// Whether convolutions read their input through a texture copy (always), from the buffer (never), or as
    /// suits the adapter (auto: copy on CPU adapters, not on GPUs; default: $PWLU_INPUT_STAGE, then auto).
    #[arg(
        long,
        global = true,
        default_value = "auto",
        value_name = "auto|always|never"
    )]
    input_stage: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify images (files or directories, walked recursively) and print the top classes.
    Classify(classify::Args),
    /// Run a model on a float32 NCHW tensor from a .npy file and write its output as .npy.
    Run {
        /// The model (.safetensors).
        model: PathBuf,
        /// Input tensor, float32, [N, C, H, W].
        #[arg(long, value_name = "IN.npy")]
        input: PathBuf,
        /// Where to write the output tensor.
        #[arg(long, value_name = "OUT.npy")]
        output: PathBuf,
    },
    /// Describe a model: layers, parameters, FLOPs, input, preprocessing and every PWLU site.
    Info {
        /// The model (.safetensors).
        model: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Draw the learned activation functions as SVG and PNG.
    Plot(plot::Args),
    /// Measure latency, throughput, GFLOP/s and memory, optionally per layer.
    Bench(bench::Args),
    /// List the GPU adapters with their backend, type, limits and features, and say where models run and why.
    Devices {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// An error for the user: one line, no backtrace.
pub type CliResult<T = ()> = Result<T, String>;

impl Cli {
    fn gpu_options(&self) -> CliResult<GpuOptions> {
        let backend: Backend = self
            .backend
            .parse()
            .map_err(|e: pwlu::Error| e.to_string())?;
        let input_stage: InputStage = self
            .input_stage
            .parse()
            .map_err(|e: pwlu::Error| e.to_string())?;
        Ok(GpuOptions {
            backend,
            adapter_index: self.adapter,
            input_stage,
            ..Default::default()
        })
    }

    fn device_options(&self) -> CliResult<DeviceOptions> {
        Ok(DeviceOptions {
            gpu: self.gpu_options()?,
            cpu: CpuOptions {
                threads: self.threads.map(usize::from),
                max_simd: self
                    .simd
                    .as_deref()
                    .map(str::parse)
                    .transpose()
                    .map_err(|e: pwlu::Error| e.to_string())?,
                winograd: !self.no_winograd,
                ..Default::default()
            },
        })
    }

    /// The device models run on, and why (see `pwlu::device`).
    fn device(&self) -> CliResult<Selected> {
        pwlu::device::select_blocking(&self.device_options()?).map_err(|e| e.to_string())
    }
}

/// The message for a model that failed to load, with its path.
fn load_error(path: &std::path::Path, e: pwlu::Error) -> String {
    match e {
        pwlu::Error::Io { .. } => e.to_string(),
        other => format!("{}: {other}", path.display()),
    }
}

/// Loads a model onto a device.
pub fn load_model(device: Device, path: &std::path::Path) -> CliResult<Model> {
    Model::load(device, path).map_err(|e| load_error(path, e))
}

/// Reads and checks a model file without a GPU (for the commands that only look at it).
pub fn load_checked(path: &std::path::Path) -> CliResult<pwlu::model::CheckedModel> {
    pwlu::model::CheckedModel::load(path).map_err(|e| load_error(path, e))
}

fn run(cli: &Cli) -> CliResult {
    // The GPU options are checked for every command, including those that start no GPU.
    cli.gpu_options()?;
    match &cli.command {
        Command::Classify(args) => classify::run(cli.device()?.device, args),
        Command::Run {
            model,
            input,
            output,
        } => {
            let model = load_model(cli.device()?.device, model)?;
            let tensor = npy::read(input)?;
            let result = model.run_blocking(&tensor).map_err(|e| e.to_string())?;
            npy::write(output, &result)
        }
        Command::Info { model, json } => info::print(&load_checked(model)?, *json),
        Command::Plot(args) => plot::run(args),
        Command::Bench(args) => bench::run(cli.device()?, args),
        Command::Devices { json } => devices::print(&cli.device_options()?, *json),
    }
}

fn main() -> ExitCode {
    // Like other command-line tools, end quietly when the reader of our output goes away (`pwlu info | head`)
    // instead of panicking on the failed write.
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any other thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Mesa's Vulkan device-selection layer connects to a Wayland display while adapters are enumerated, and
    // without XDG_RUNTIME_DIR (containers, ssh, CI) libwayland prints an error line each time. The layer only
    // reorders devices for the session's display, which pwlu does not use: it picks adapters itself.
    #[cfg(target_os = "linux")]
    if std::env::var_os("XDG_RUNTIME_DIR").is_none()
        && std::env::var_os("NODEVICE_SELECT").is_none()
    {
        // SAFETY: no other thread exists yet, so nothing reads the environment concurrently.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
