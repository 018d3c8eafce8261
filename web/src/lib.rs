//! pwlu in the browser: load a model, classify images, read the learned activations, on WebGPU or, where
//! the browser has none (or only a software one), on the CPU backend compiled into this module.
//!
//! ```js
//! import init, { Model } from "./pkg/pwlu_web.js";
//! await init();
//! const model = await Model.fromUrl("models/efficientnet_lite0.safetensors", {
//!   onProgress: (loaded, total) => console.log(loaded, total),
//! });
//! const top5 = await model.classify(document.querySelector("img"), 5);
//! model.dispose();
//! ```
//!
//! Every model on a page that runs on WebGPU shares one GPU device; it is released when the last model is
//! disposed. `backend: "auto" | "webgpu" | "cpu"` in the load options picks where it runs (`backend.rs`
//! says how `auto` decides); `model.info.backend` and `model.info.reason` say where it went and why.

mod backend;
mod error;
mod fetch;
mod pixels;

use std::rc::Rc;

use js_sys::{Array, Float32Array, Function, Promise, Reflect};
use pwlu::{Device, Model, Tensor};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use web_sys::AbortSignal;

use crate::error::{from_pwlu, js_error, Kind};

pub use crate::fetch::MAX_DOWNLOAD_BYTES;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = r#"
/** Anything `classify()` and `logits()` accept. A `Blob` (or `File`) holds an encoded image. */
export type ImageSource = ImageData | ImageBitmap | HTMLImageElement | HTMLCanvasElement | OffscreenCanvas
  | HTMLVideoElement | VideoFrame | Blob;

/** One class of a classification. */
export interface Class { index: number; label: string; prob: number; }

/** Options of `Model.fromUrl`. */
export interface LoadOptions {
  /** Called as the download progresses; `total` is undefined when the server does not send a length. */
  onProgress?: (loaded: number, total: number | undefined) => void;
  /** Aborts the download; the promise then rejects with `kind: "abort"`. */
  signal?: AbortSignal;
  /** The largest model file to download, in bytes (default 2 GiB); a larger one rejects with `kind: "fetch"`
   * before its bytes are kept. */
  maxBytes?: number;
  /** Where the model runs (default "auto"): "webgpu" rejects with `kind: "webgpu"` where there is none; "cpu"
   * runs it in this module's wasm on the CPU; "auto" takes WebGPU when its adapter is a real GPU and the CPU
   * when the browser has no WebGPU, no adapter, or only a software fallback adapter (SwiftShader). */
  backend?: Backend;
  /** Whether the CPU backend may run 3x3 convolutions by Winograd's method (default true): faster, for up to
   * 4x the memory of those layers' weights. */
  winograd?: boolean;
}

/** Where a model runs. */
export type Backend = "auto" | "webgpu" | "cpu";

/** Options of `Model.fromBytes`. */
export interface BytesOptions { backend?: Backend; winograd?: boolean; }

export interface AdapterInfo { name: string; backend: string; deviceType: string; driver: string; }

export interface ModelInfo {
  name: string;
  /** `[channels, height, width]` of one input image. */
  input: [number, number, number];
  classes: number;
  parameters: number;
  /** Nodes in the file, and after fusion. */
  nodes: number;
  fusedNodes: number;
  /** The preprocessing the file asks for, in words; null when the model only runs on tensors. */
  preprocess: string | null;
  pwluSites: number;
  /** Floating-point operations per image (2 per multiply-add) of the convolutions and linear layers. */
  flops: number;
  /** Whether `profile()` can time layers: on the CPU always (wall clock), on WebGPU where the adapter has
   * the `timestamp-query` feature. */
  timestamps: boolean;
  /** Where the model runs, and why there. */
  backend: "webgpu" | "cpu";
  reason: string;
  /** The adapter's name, or the CPU's, e.g. "CPU (1 thread, SIMD128)". */
  device: string;
  /** The WebGPU adapter; null on the CPU. */
  adapter: AdapterInfo | null;
}

/** One layer of `profile()`: its graph node, its kernel (a WGSL file, or a CPU kernel), and its time. */
export interface LayerTime { node: string; kernel: string; ms: number; }

/** One PWLU site's learned functions, sampled for plotting: `y[unit][i]` is unit `unit` at `x[i]`. */
export interface ActivationCurve {
  name: string;
  node: string;
  intervals: number;
  units: number;
  layerWise: boolean;
  x: Float32Array;
  y: Float32Array[];
}

export interface WebGpuStatus { available: boolean; adapter?: string; message?: string; }

/** Every rejection and exception of this package. */
export interface PwluError extends Error {
  name: "PwluError";
  kind: "webgpu" | "fetch" | "abort" | "model" | "input" | "gpu" | "cpu" | "device-lost" | "disposed";
}
"#;

#[wasm_bindgen]
extern "C" {
    /// The options object of `Model.fromUrl`.
    #[wasm_bindgen(typescript_type = "LoadOptions")]
    pub type LoadOptions;

    /// The options object of `Model.fromBytes`.
    #[wasm_bindgen(typescript_type = "BytesOptions")]
    pub type BytesOptions;
}

/// `options[key]`, unless it is absent, undefined or null.
fn option(options: Option<&JsValue>, key: &str) -> Option<JsValue> {
    options
        .and_then(|o| Reflect::get(o, &key.into()).ok())
        .filter(|v| !v.is_undefined() && !v.is_null())
}

/// Whether this browser can run models, and on which adapter; never rejects.
#[wasm_bindgen(js_name = webgpuStatus, unchecked_return_type = "Promise<WebGpuStatus>")]
pub fn webgpu_status() -> Promise {
    future_to_promise(async {
        let status = js_sys::Object::new();
        let set = |key: &str, value: JsValue| {
            let _ = Reflect::set(&status, &key.into(), &value);
        };
        match backend::shared_context().await {
            Ok(ctx) => {
                set("available", JsValue::TRUE);
                set("adapter", backend::adapter_name(&ctx).into());
            }
            Err(e) => {
                set("available", JsValue::FALSE);
                set("message", error::describe(&e).into());
            }
        }
        Ok(status.into())
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClassJs<'a> {
    index: usize,
    label: &'a str,
    prob: f32,
}

fn classes_to_js(classes: &[pwlu::Class]) -> Result<JsValue, JsValue> {
    let list: Vec<ClassJs> = classes
        .iter()
        .map(|c| ClassJs {
            index: c.index,
            label: &c.label,
            prob: c.prob,
        })
        .collect();
    serde_wasm_bindgen::to_value(&list).map_err(Into::into)
}

/// A model on WebGPU or the CPU. Create it with `Model.fromUrl` or `Model.fromBytes`; call `dispose()` to
/// release its memory before the garbage collector would.
#[wasm_bindgen(js_name = Model)]
pub struct WebModel {
    model: Option<Rc<Model>>,
    /// Why the model runs where it does.
    reason: String,
}

#[wasm_bindgen(js_class = Model)]
impl WebModel {
    /// Downloads a `.safetensors` model file and prepares it for its backend (on WebGPU every kernel is
    /// compiled, one workgroup of each dispatched, so that the first classification is as fast as the next).
    #[wasm_bindgen(js_name = fromUrl)]
    pub async fn from_url(url: String, options: Option<LoadOptions>) -> Result<WebModel, JsValue> {
        let get = |key: &str| option(options.as_deref(), key);
        let on_progress = get("onProgress")
            .map(|f| {
                f.dyn_into::<Function>()
                    .map_err(|_| js_error(Kind::Input, "onProgress must be a function"))
            })
            .transpose()?;
        let signal = get("signal")
            .map(|s| {
                s.dyn_into::<AbortSignal>()
                    .map_err(|_| js_error(Kind::Input, "signal must be an AbortSignal"))
            })
            .transpose()?;
        let max_bytes = match get("maxBytes") {
            None => fetch::MAX_DOWNLOAD_BYTES,
            Some(v) => match v.as_f64() {
                Some(n) if n.is_finite() && n >= 0.0 => n as u64,
                _ => {
                    return Err(js_error(
                        Kind::Input,
                        "maxBytes must be a non-negative number of bytes",
                    ))
                }
            },
        };
        let requested = backend::Requested::parse(get("backend"))?;
        let cpu_options = backend::cpu_options(get("winograd"))?;
        // Fail on a missing WebGPU before spending the download on it.
        let chosen = backend::choose(requested, &cpu_options).await?;
        let bytes = fetch::download(&url, on_progress.as_ref(), signal.as_ref(), max_bytes).await?;
        WebModel::prepare(chosen, &bytes)
            .await
            .map_err(|e| error::from_pwlu_about(e, &url))
    }

    /// Prepares a model from the bytes of a `.safetensors` model file (an opened `File`'s `arrayBuffer()`), as
    /// `fromUrl` does.
    #[wasm_bindgen(js_name = fromBytes)]
    pub async fn from_bytes(
        bytes: Vec<u8>,
        options: Option<BytesOptions>,
    ) -> Result<WebModel, JsValue> {
        let get = |key: &str| option(options.as_deref(), key);
        let requested = backend::Requested::parse(get("backend"))?;
        let chosen = backend::choose(requested, &backend::cpu_options(get("winograd"))?).await?;
        WebModel::prepare(chosen, &bytes).await.map_err(from_pwlu)
    }

    async fn prepare(chosen: backend::Chosen, bytes: &[u8]) -> pwlu::Result<WebModel> {
        let model = Model::from_bytes(chosen.device, bytes)?;
        model.warm_up().await?;
        Ok(WebModel {
            model: Some(Rc::new(model)),
            reason: chosen.reason,
        })
    }

    fn model(&self) -> Result<Rc<Model>, JsValue> {
        self.model
            .clone()
            .ok_or_else(|| js_error(Kind::Disposed, "this model was disposed"))
    }

    /// The `topK` most probable classes of an image (default 5), most probable first.
    #[wasm_bindgen(unchecked_return_type = "Promise<Class[]>")]
    pub fn classify(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ImageSource")] source: JsValue,
        #[wasm_bindgen(js_name = topK)] top_k: Option<u32>,
    ) -> Promise {
        let model = self.model();
        future_to_promise(async move {
            let model = model?;
            let logits = logits_of(&model, &source).await?;
            classes_to_js(&model.top_k(logits.data(), top_k.unwrap_or(5) as usize))
        })
    }

    /// The model's raw outputs for an image, preprocessed as the model file says.
    #[wasm_bindgen(unchecked_return_type = "Promise<Float32Array>")]
    pub fn logits(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ImageSource")] source: JsValue,
    ) -> Promise {
        let model = self.model();
        future_to_promise(async move {
            let model = model?;
            let logits = logits_of(&model, &source).await?;
            Ok(Float32Array::from(logits.data()).into())
        })
    }

    /// Runs the model on `batch` (default 1) images given as one NCHW `Float32Array`; resolves to the outputs,
    /// `batch` rows of `classes` values.
    #[wasm_bindgen(unchecked_return_type = "Promise<Float32Array>")]
    pub fn run(&self, input: Float32Array, batch: Option<u32>) -> Promise {
        let model = self.model();
        let values = input.to_vec();
        future_to_promise(async move {
            let model = model?;
            let tensor = batch_tensor(&model, values, batch)?;
            let output = model.run(&tensor).await.map_err(from_pwlu)?;
            Ok(Float32Array::from(output.data()).into())
        })
    }

    /// The time of every layer on `batch` (default 1) images given as one NCHW `Float32Array`: on WebGPU from
    /// timestamp queries, rejecting with kind `gpu` where the adapter has no `timestamp-query` feature
    /// (`info.timestamps`); on the CPU from the clock around each layer.
    #[wasm_bindgen(unchecked_return_type = "Promise<LayerTime[]>")]
    pub fn profile(&self, input: Float32Array, batch: Option<u32>) -> Promise {
        let model = self.model();
        let values = input.to_vec();
        future_to_promise(async move {
            let model = model?;
            let tensor = batch_tensor(&model, values, batch)?;
            let layers = model.profile(&tensor).await.map_err(from_pwlu)?;
            let list = Array::new();
            for layer in layers {
                let entry = js_sys::Object::new();
                let _ = Reflect::set(&entry, &"node".into(), &layer.node.as_str().into());
                let _ = Reflect::set(&entry, &"kernel".into(), &layer.kernel.into());
                let _ = Reflect::set(&entry, &"ms".into(), &(layer.seconds * 1e3).into());
                list.push(&entry);
            }
            Ok(list.into())
        })
    }

    /// Softmax over one row of logits, then its `k` largest with their labels.
    #[wasm_bindgen(js_name = topK, unchecked_return_type = "Class[]")]
    pub fn top_k(&self, logits: &[f32], k: u32) -> Result<JsValue, JsValue> {
        classes_to_js(&self.model()?.top_k(logits, k as usize))
    }

    /// The class labels, one per output.
    #[wasm_bindgen(getter)]
    pub fn labels(&self) -> Result<Vec<String>, JsValue> {
        Ok(self.model()?.labels().to_vec())
    }

    /// What the model is and where it runs.
    #[wasm_bindgen(getter, unchecked_return_type = "ModelInfo")]
    pub fn info(&self) -> Result<JsValue, JsValue> {
        let model = self.model()?;
        let input = model.input_shape();
        let device = model.device();
        let device_name = backend::device_name(device);
        let (backend, timestamps, adapter) = match device {
            Device::Gpu(ctx) => {
                let adapter = ctx.adapter();
                let info = AdapterJs {
                    name: device_name.clone(),
                    backend: format!("{:?}", adapter.backend),
                    device_type: format!("{:?}", adapter.device_type),
                    driver: adapter.driver.clone(),
                };
                ("webgpu", ctx.has_timestamps(), Some(info))
            }
            Device::Cpu(_) => ("cpu", true, None),
        };
        let info = ModelInfoJs {
            name: model.name(),
            input: [input.c, input.h, input.w],
            classes: model.labels().len(),
            parameters: model.parameter_count(),
            nodes: model.source_nodes(),
            fused_nodes: model.graph().nodes.len(),
            preprocess: model.preprocess().map(ToString::to_string),
            pwlu_sites: model.pwlu_sites().len(),
            flops: model.graph().flops(),
            timestamps,
            backend,
            reason: &self.reason,
            device: device_name,
            adapter,
        };
        // `null`, not `undefined`, for what is absent, as the types say.
        let serializer = serde_wasm_bindgen::Serializer::new().serialize_missing_as_null(true);
        info.serialize(&serializer).map_err(Into::into)
    }

    /// The learned PWLU functions, each site sampled at `samples + 1` points (default 200).
    #[wasm_bindgen(js_name = activationCurves, unchecked_return_type = "ActivationCurve[]")]
    pub fn activation_curves(&self, samples: Option<u32>) -> Result<Array, JsValue> {
        let model = self.model()?;
        let samples = samples.unwrap_or(200).clamp(1, 100_000) as usize;
        let list = Array::new();
        for site in model.pwlu_sites() {
            let curves = site.curves(samples);
            let entry = js_sys::Object::new();
            let set = |key: &str, value: JsValue| {
                let _ = Reflect::set(&entry, &key.into(), &value);
            };
            set("name", site.name.as_str().into());
            set("node", site.node.as_str().into());
            set("intervals", site.pwlu.intervals().into());
            set("units", site.pwlu.units().into());
            set("layerWise", site.pwlu.is_layer_wise().into());
            set("x", Float32Array::from(&curves.x[..]).into());
            let ys: Array = curves
                .y
                .iter()
                .map(|y| JsValue::from(Float32Array::from(&y[..])))
                .collect();
            set("y", ys.into());
            list.push(&entry);
        }
        Ok(list)
    }

    /// Releases the model's buffers now. Calls still in flight finish; later calls reject with
    /// `kind: "disposed"`.
    pub fn dispose(&mut self) {
        self.model = None;
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AdapterJs {
    name: String,
    backend: String,
    device_type: String,
    driver: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelInfoJs<'a> {
    name: &'a str,
    input: [usize; 3],
    classes: usize,
    parameters: usize,
    nodes: usize,
    fused_nodes: usize,
    preprocess: Option<String>,
    pwlu_sites: usize,
    flops: u64,
    timestamps: bool,
    backend: &'static str,
    reason: &'a str,
    device: String,
    adapter: Option<AdapterJs>,
}

/// `batch` (default 1) NCHW images of the model's input shape from JavaScript's flat values.
fn batch_tensor(model: &Model, values: Vec<f32>, batch: Option<u32>) -> Result<Tensor, JsValue> {
    let shape = model.input_shape();
    let batch = batch.unwrap_or(1).max(1) as usize;
    Tensor::new(vec![batch, shape.c, shape.h, shape.w], values).map_err(from_pwlu)
}

async fn logits_of(model: &Model, source: &JsValue) -> Result<Tensor, JsValue> {
    let rgba = pixels::rgba_image(source).await?;
    let input = model
        .preprocess_image(&image::DynamicImage::ImageRgba8(rgba))
        .map_err(from_pwlu)?;
    model.run(&input).await.map_err(from_pwlu)
}
