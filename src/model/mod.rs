//! Loading and running models: file -> validated graph -> optimised graph -> a plan per batch size.

#[doc(hidden)]
mod attrs;
pub mod build;
pub mod format;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::cpu::CpuPlan;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::gpu::GpuPlan;
use crate::graph::{passes, Graph};
use crate::ops::Activation;
use crate::plan::MemoryReport;
use crate::plan::{LayerTime, Plan, Timing};
use crate::preprocess::Preprocess;
use crate::tensor::{Shape, Tensor, TensorView};
use build::TensorStore;

pub use format::FORMAT_VERSION;

/// One class of a classification.
#[derive(Clone, Debug, PartialEq)]
pub struct Class {
    /// Index into the model's outputs.
    pub index: usize,
    /// The model's label for it (the index as text when the model has no labels).
    pub label: String,
    /// Softmax probability.
    pub prob: f32,
}

/// A PWLU activation site of a model.
#[derive(Clone, Debug, PartialEq)]
pub struct PwluSite {
    /// Name of the PWLU node in the model file.
    pub name: String,
    /// Name of the node it runs in after fusion (its producer, or itself).
    pub node: String,
    /// The unit.
    pub pwlu: Arc<crate::ops::Pwlu>,
}

/// A PWLU site's functions sampled for plotting: the same `x` for every unit.
#[derive(Clone, Debug, PartialEq)]
pub struct PwluCurves {
    /// Evenly spaced inputs covering every unit's breakpoints plus a quarter of their span on each tail.
    pub x: Vec<f32>,
    /// Per unit, the outputs at `x`, computed by the same lookup the kernels use.
    pub y: Vec<Vec<f32>>,
}

impl PwluSite {
    /// The site's units sampled at `samples + 1` points (at least 2), for plotting.
    pub fn curves(&self, samples: usize) -> PwluCurves {
        let table = self.pwlu.table();
        let (lo, hi) = table
            .data()
            .chunks(table.stride())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), unit| {
                (lo.min(unit[0]), hi.max(unit[1]))
            });
        let margin = 0.25 * (hi - lo);
        let (x0, x1) = (lo - margin, hi + margin);
        let samples = samples.max(1);
        let x: Vec<f32> = (0..=samples)
            .map(|i| x0 + (x1 - x0) * i as f32 / samples as f32)
            .collect();
        let y = (0..self.pwlu.units())
            .map(|unit| x.iter().map(|&x| table.lookup(unit, x)).collect())
            .collect();
        PwluCurves { x, y }
    }
}

/// A model file read, validated and optimised: everything [`Model::from_bytes`] does before it touches the GPU.
/// Useful on its own to check a file (and to fuzz the loader) without an adapter.
#[derive(Debug)]
pub struct CheckedModel {
    /// The optimised graph (padding and batch norm folded, residual adds and activations fused).
    pub graph: Graph,
    /// Nodes in the file, before optimisation.
    pub source_nodes: usize,
    /// Values in the file's tensors.
    pub parameters: usize,
    /// The model's name (`model` when the file has none).
    pub name: String,
    /// How to turn an image into the input tensor, if the file says.
    pub preprocess: Option<Preprocess>,
    /// One label per output (the index as text when the file has none).
    pub labels: Vec<String>,
}

impl CheckedModel {
    /// Parses and validates a `.safetensors` model file and optimises its graph.
    ///
    /// ```
    /// let error = pwlu::model::CheckedModel::from_bytes(b"not a model").unwrap_err();
    /// assert!(error.to_string().starts_with("invalid model"));
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<CheckedModel> {
        let file = format::parse(bytes)?;
        let parameters = file.tensors.values().map(|t| t.data.len()).sum();
        let mut store = TensorStore::new(file.tensors);
        let graph = Graph::from_spec(&file.graph, &mut store)?;
        let source_nodes = graph.nodes.len();
        let output = graph.shape(graph.output);
        if let Some(labels) = &file.labels {
            if labels.len() != output.c {
                return Err(Error::Model(format!(
                    "{} labels for {} outputs",
                    labels.len(),
                    output.c
                )));
            }
        }
        if let Some(p) = &file.preprocess {
            if p.channels() != graph.input.c {
                return Err(Error::Model(format!(
                    "the preprocessing makes {} channels, the model takes {}",
                    p.channels(),
                    graph.input.c
                )));
            }
        }
        Ok(CheckedModel {
            graph: passes::optimize(graph)?,
            source_nodes,
            parameters,
            name: file.name.unwrap_or_else(|| "model".into()),
            preprocess: file.preprocess,
            labels: file
                .labels
                .unwrap_or_else(|| (0..output.c).map(|i| i.to_string()).collect()),
        })
    }

    /// Reads, validates and optimises a model file from disk (native only), without a GPU.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<CheckedModel> {
        Self::from_bytes(&read_file(path.as_ref())?)
    }

    /// Every PWLU unit, with the node it runs in.
    pub fn pwlu_sites(&self) -> Vec<PwluSite> {
        let mut sites = Vec::new();
        for node in &self.graph.nodes {
            if let Some(Activation::Pwlu(pwlu)) = node.op.activation() {
                sites.push(PwluSite {
                    name: node
                        .activation_source
                        .clone()
                        .unwrap_or_else(|| node.name.clone()),
                    node: node.name.clone(),
                    pwlu: Arc::clone(pwlu),
                });
            }
        }
        sites
    }
}

/// A model's plan for one batch size on its device.
#[derive(Debug)]
pub enum DevicePlan {
    /// Lowered to WGSL dispatches.
    Gpu(GpuPlan),
    /// Lowered to the CPU backend's kernels.
    Cpu(CpuPlan),
}

impl DevicePlan {
    /// Where the plan's memory goes.
    pub fn memory(&self) -> MemoryReport {
        match self {
            DevicePlan::Gpu(plan) => plan.memory(),
            DevicePlan::Cpu(plan) => plan.memory(),
        }
    }

    /// Kernels one run launches (GPU dispatches or CPU steps).
    pub fn kernels(&self) -> usize {
        match self {
            DevicePlan::Gpu(plan) => plan.steps().len(),
            DevicePlan::Cpu(plan) => plan.steps().len(),
        }
    }
}

/// A loaded model, ready to run on its device. Safe to share between threads: runs on one plan are
/// serialised, and each batch size gets its own plan, built on first use.
pub struct Model {
    device: Device,
    checked: CheckedModel,
    plans: Mutex<HashMap<usize, Arc<Mutex<DevicePlan>>>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.checked.name)
            .field("input", &self.checked.graph.input)
            .field("nodes", &self.checked.graph.nodes.len())
            .finish_non_exhaustive()
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn other_device() -> Error {
    Error::Model("the model's plan was built for another device".into())
}

fn poisoned<T>(_: T) -> Error {
    Error::Gpu("a model lock was poisoned by a panic on another thread".into())
}

impl Model {
    /// Loads a model from the bytes of a `.safetensors` model file and prepares its batch-1 plan.
    ///
    /// The browser has bytes, not paths; natively [`Model::load`] reads the file for you.
    ///
    /// ```no_run
    /// # fn main() -> pwlu::Result<()> {
    /// use std::sync::Arc;
    /// let ctx = Arc::new(pwlu::gpu::GpuContext::new_blocking(&Default::default())?);
    /// let bytes = std::fs::read("models/digits.safetensors").map_err(|e| pwlu::Error::Model(e.to_string()))?;
    /// let model = pwlu::Model::from_bytes(ctx, &bytes)?;
    /// println!("{} takes {}", model.name(), model.input_shape());
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_bytes(device: impl Into<Device>, bytes: &[u8]) -> Result<Model> {
        let model = Model {
            device: device.into(),
            checked: CheckedModel::from_bytes(bytes)?,
            plans: Mutex::new(HashMap::new()),
        };
        model.plan(1)?;
        Ok(model)
    }

    /// Loads a model file from disk (native only).
    ///
    /// ```no_run
    /// # fn main() -> pwlu::Result<()> {
    /// use std::sync::Arc;
    /// let ctx = Arc::new(pwlu::gpu::GpuContext::new_blocking(&Default::default())?);
    /// let model = pwlu::Model::load(ctx, "models/efficientnet_lite0.safetensors")?;
    /// println!("{} classes", model.labels().len());
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(device: impl Into<Device>, path: impl AsRef<std::path::Path>) -> Result<Model> {
        Self::from_bytes(device, &read_file(path.as_ref())?)
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.checked.name
    }

    /// Input shape at batch 1.
    pub fn input_shape(&self) -> Shape {
        self.checked.graph.input
    }

    /// Class labels.
    pub fn labels(&self) -> &[String] {
        &self.checked.labels
    }

    /// How images become inputs, if the model says.
    pub fn preprocess(&self) -> Option<&Preprocess> {
        self.checked.preprocess.as_ref()
    }

    /// The optimised graph.
    pub fn graph(&self) -> &Graph {
        &self.checked.graph
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The GPU context the model runs on, if it runs on a GPU.
    pub fn gpu(&self) -> Option<&Arc<GpuContext>> {
        self.device.gpu()
    }

    /// Number of nodes in the file, before optimisation.
    pub fn source_nodes(&self) -> usize {
        self.checked.source_nodes
    }

    /// Number of values in the file's tensors (weights, batch-norm statistics, PWLU parameters).
    pub fn parameter_count(&self) -> usize {
        self.checked.parameters
    }

    /// Every PWLU unit, with the node it runs in.
    pub fn pwlu_sites(&self) -> Vec<PwluSite> {
        self.checked.pwlu_sites()
    }

    /// The plan for `batch` images, built on first use.
    pub fn plan(&self, batch: usize) -> Result<Arc<Mutex<DevicePlan>>> {
        let mut plans = self.plans.lock().map_err(poisoned)?;
        if let Some(plan) = plans.get(&batch) {
            return Ok(Arc::clone(plan));
        }
        let graph = &self.checked.graph;
        let plan = match &self.device {
            Device::Gpu(ctx) => DevicePlan::Gpu(Plan::new(ctx.as_ref(), graph, batch)?),
            Device::Cpu(ctx) => DevicePlan::Cpu(Plan::new(ctx.as_ref(), graph, batch)?),
        };
        // In the browser wgpu's types are not Send, and the model stays on one thread anyway.
        #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
        let plan = Arc::new(Mutex::new(plan));
        plans.insert(batch, Arc::clone(&plan));
        Ok(plan)
    }

    /// Runs the model on an NCHW tensor `[N, C, H, W]`; returns its output (`[N, classes]` for a classifier).
    pub async fn run<'a>(&self, input: impl Into<TensorView<'a>>) -> Result<Tensor> {
        let input = input.into();
        let shape = input.shape();
        if shape.with_batch(1) != self.checked.graph.input || input.dims().len() != 4 {
            return Err(Error::invalid_op(
                "model input",
                format!(
                    "expected [N, {}, {}, {}], got {:?}",
                    self.checked.graph.input.c,
                    self.checked.graph.input.h,
                    self.checked.graph.input.w,
                    input.dims()
                ),
            ));
        }
        let plan = self.plan(shape.n)?;
        // The plan's buffers belong to one run at a time, from writing the input until the output is copied.
        let (pending, ctx) = match (&mut *plan.lock().map_err(poisoned)?, &self.device) {
            (DevicePlan::Gpu(plan), Device::Gpu(ctx)) => (plan.submit(ctx, input)?, ctx),
            (DevicePlan::Cpu(plan), Device::Cpu(ctx)) => return plan.run(ctx, input),
            _ => return Err(other_device()),
        };
        // The GPU's copy of the output is queued and the lock released: the next run may write its input.
        pending.read(ctx).await
    }

    /// Runs one workgroup of each of the batch-1 plan's pipelines and waits for them. Adapters that compile a
    /// pipeline at its first dispatch rather than at creation (lavapipe, and SwiftShader in Chrome without a
    /// GPU, where compiling takes seconds) then do it now, so that the first [`Model::run`] is as fast as the
    /// rest, and loading does not pay for a whole run. The browser package calls it while loading; a one-shot
    /// native run has nothing to gain from it.
    pub async fn warm_up(&self) -> Result<()> {
        let plan = self.plan(1)?;
        let pending = match (&*plan.lock().map_err(poisoned)?, &self.device) {
            (DevicePlan::Gpu(plan), Device::Gpu(ctx)) => (plan.submit_warm_up(ctx)?, ctx),
            // The CPU backend compiles nothing at run time.
            _ => return Ok(()),
        };
        let (pending, ctx) = pending;
        pending.read(ctx).await.map(|_| ())
    }

    /// The time each layer takes on `input`: GPU timestamps where the device has them (all layers in one
    /// submission), otherwise, natively, the wall clock around each layer submitted alone. In a browser
    /// without the `timestamp-query` feature this is an error. A profile for finding the slow layers; the
    /// latency of a run is what [`Model::run`] takes.
    pub async fn profile(&self, input: &Tensor) -> Result<Vec<LayerTime>> {
        // A full run first: every buffer holds realistic data and every pipeline is compiled.
        self.run(input).await?;
        let plan = self.plan(input.shape().n)?;
        let (timed, ctx) = match (&mut *plan.lock().map_err(poisoned)?, &self.device) {
            (DevicePlan::Gpu(plan), Device::Gpu(ctx)) => (plan.submit_timed(ctx)?, ctx),
            (DevicePlan::Cpu(plan), Device::Cpu(ctx)) => return plan.profile(ctx, input),
            _ => return Err(other_device()),
        };
        let with_gpu_plan = |f: &dyn Fn(&GpuPlan) -> Result<Vec<LayerTime>>| match &*plan
            .lock()
            .map_err(poisoned)?
        {
            DevicePlan::Gpu(plan) => f(plan),
            DevicePlan::Cpu(_) => Err(other_device()),
        };
        match timed {
            Some(run) => {
                let times = run.read(ctx).await?;
                with_gpu_plan(&|plan| Ok(plan.layer_times(&times, Timing::GpuTimestamps)))
            }
            #[cfg(not(target_arch = "wasm32"))]
            None => with_gpu_plan(&|plan| plan.profile_wall_clock(ctx)),
            #[cfg(target_arch = "wasm32")]
            None => Err(Error::Gpu(
                "per-layer times need the adapter's timestamp-query feature".into(),
            )),
        }
    }

    /// [`Model::run`], blocking (native only).
    ///
    /// ```no_run
    /// # fn main() -> pwlu::Result<()> {
    /// # let ctx = std::sync::Arc::new(pwlu::gpu::GpuContext::new_blocking(&Default::default())?);
    /// # let model = pwlu::Model::load(ctx, "models/digits.safetensors")?;
    /// let input = pwlu::Tensor::new(vec![4, 1, 8, 8], vec![0.0; 4 * 64])?; // a batch of 4
    /// let logits = model.run_blocking(&input)?;
    /// println!("{:?}", logits.dims()); // [4, 10]
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_blocking<'a>(&self, input: impl Into<TensorView<'a>>) -> Result<Tensor> {
        pollster::block_on(self.run(input))
    }

    /// Preprocesses a decoded image as the model file says.
    pub fn preprocess_image(&self, image: &image::DynamicImage) -> Result<Tensor> {
        let p = self.checked.preprocess.as_ref().ok_or_else(|| {
            Error::Model("the model has no preprocessing metadata; run it on tensors".into())
        })?;
        let tensor = p.apply(image)?;
        let s = tensor.shape();
        if s.with_batch(1) != self.checked.graph.input {
            return Err(Error::Model(format!(
                "the preprocessing makes {s}, the model takes {}",
                self.checked.graph.input
            )));
        }
        Ok(tensor)
    }

    /// Classifies a decoded image: the `top_k` most probable classes, most probable first.
    pub async fn classify(&self, image: &image::DynamicImage, top_k: usize) -> Result<Vec<Class>> {
        let input = self.preprocess_image(image)?;
        let logits = self.run(&input).await?;
        Ok(self.top_k(logits.data(), top_k))
    }

    /// [`Model::classify`] on the bytes of an encoded image (JPEG, PNG), blocking (native only).
    ///
    /// ```no_run
    /// # fn main() -> pwlu::Result<()> {
    /// # let ctx = std::sync::Arc::new(pwlu::gpu::GpuContext::new_blocking(&Default::default())?);
    /// # let model = pwlu::Model::load(ctx, "models/efficientnet_lite0.safetensors")?;
    /// let photo = std::fs::read("models/photos/coffee.png").map_err(|e| pwlu::Error::Image(e.to_string()))?;
    /// let top = model.classify_bytes_blocking(&photo, 5)?;
    /// println!("{} ({:.1} %)", top[0].label, top[0].prob * 100.0);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(not(target_arch = "wasm32"))]
    pub fn classify_bytes_blocking(&self, bytes: &[u8], top_k: usize) -> Result<Vec<Class>> {
        let image = crate::preprocess::decode_image(bytes)?;
        pollster::block_on(self.classify(&image, top_k))
    }

    /// Softmax over one row of logits, then the `k` largest with their labels.
    pub fn top_k(&self, logits: &[f32], k: usize) -> Vec<Class> {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
        let sum: f64 = exp.iter().sum();
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        order
            .into_iter()
            .take(k)
            .map(|index| Class {
                index,
                label: self
                    .checked
                    .labels
                    .get(index)
                    .cloned()
                    .unwrap_or_else(|| index.to_string()),
                prob: (exp[index] / sum) as f32,
            })
            .collect()
    }
}
