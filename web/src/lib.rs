//! pwlu in the browser: load a model, classify images, read the learned activations, all on WebGPU.
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
//! Every model on a page shares one GPU device; it is released when the last model is disposed.

mod error;
mod fetch;
mod pixels;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Weak};

use js_sys::{Array, Float32Array, Function, Promise, Reflect};
use pwlu::gpu::{Backend, GpuContext, GpuOptions};
use pwlu::{Model, Tensor};
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
}

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
  /** Whether `profile()` can time layers: the adapter has the `timestamp-query` feature. */
  timestamps: boolean;
  adapter: AdapterInfo;
}

/** One layer of `profile()`: its graph node, its WGSL kernel, and its GPU time. */
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
  kind: "webgpu" | "fetch" | "abort" | "model" | "input" | "gpu" | "device-lost" | "disposed";
}
"#;

#[wasm_bindgen]
extern "C" {
    /// The options object of `Model.fromUrl`.
    #[wasm_bindgen(typescript_type = "LoadOptions")]
    pub type LoadOptions;
}

thread_local! {
    // Weak, so that the device goes away with the last model.
    static SHARED_CONTEXT: RefCell<Weak<GpuContext>> = const { RefCell::new(Weak::new()) };
    // What the browser says about its adapter, read once.
    static ADAPTER_NAME: RefCell<Option<String>> = const { RefCell::new(None) };
}

const NO_WEBGPU: &str = "WebGPU is not available in this browser. It is on by default in Chrome and Edge 113 or \
    later (Windows, macOS, ChromeOS, Android), Safari 26 and Firefox 141 (Windows) or later; on Linux start \
    Chrome or Chromium with --enable-unsafe-webgpu --enable-features=Vulkan. Pages must come from https:// or \
    http://localhost.";

/// `navigator.gpu`, if this browser has it.
fn navigator_gpu() -> Option<JsValue> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let gpu = Reflect::get(&navigator, &"gpu".into()).ok()?;
    (!gpu.is_undefined() && !gpu.is_null()).then_some(gpu)
}

/// The adapter's name from `GPUAdapter.info`, which wgpu does not read: its description, else vendor and
/// architecture (browsers may leave any of them empty to protect privacy).
async fn browser_adapter_name() -> String {
    const UNNAMED: &str = "a WebGPU adapter (the browser does not name it)";
    let Some(gpu) = navigator_gpu() else {
        return UNNAMED.into();
    };
    let request = Reflect::get(&gpu, &"requestAdapter".into())
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
        .and_then(|f| f.call0(&gpu).ok())
        .and_then(|p| p.dyn_into::<Promise>().ok());
    let Some(request) = request else {
        return UNNAMED.into();
    };
    let Ok(adapter) = wasm_bindgen_futures::JsFuture::from(request).await else {
        return UNNAMED.into();
    };
    let info = Reflect::get(&adapter, &"info".into()).unwrap_or(JsValue::UNDEFINED);
    let field = |key: &str| {
        Reflect::get(&info, &key.into())
            .ok()
            .and_then(|v| v.as_string())
            .filter(|s| !s.is_empty())
    };
    if let Some(description) = field("description") {
        return description;
    }
    match (field("vendor"), field("architecture")) {
        (Some(vendor), Some(arch)) => format!("{vendor} {arch}"),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => UNNAMED.into(),
    }
}

fn adapter_name(ctx: &GpuContext) -> String {
    ADAPTER_NAME
        .with(|name| name.borrow().clone())
        .unwrap_or_else(|| ctx.adapter().name.clone())
}

async fn shared_context() -> Result<Arc<GpuContext>, JsValue> {
    // A lost device stays with the models made on it (they reject with kind "device-lost"); new ones get a new one.
    let shared = SHARED_CONTEXT.with(|shared| shared.borrow().upgrade());
    if let Some(ctx) = shared.filter(|ctx| !ctx.is_lost()) {
        return Ok(ctx);
    }
    if navigator_gpu().is_none() {
        return Err(js_error(Kind::WebGpu, NO_WEBGPU));
    }
    let options = GpuOptions {
        backend: Backend::WebGpu,
        ..Default::default()
    };
    let ctx = GpuContext::new(&options).await.map_err(from_pwlu)?;
    if ADAPTER_NAME.with(|name| name.borrow().is_none()) {
        let name = match ctx.adapter().name.as_str() {
            "" => browser_adapter_name().await,
            name => name.to_string(),
        };
        ADAPTER_NAME.with(|cell| *cell.borrow_mut() = Some(name));
    }
    // wgpu's browser types are not Send; the Arc is what `pwlu::Model` shares its context through.
    #[allow(clippy::arc_with_non_send_sync)]
    let ctx = Arc::new(ctx);
    SHARED_CONTEXT.with(|shared| *shared.borrow_mut() = Arc::downgrade(&ctx));
    Ok(ctx)
}

/// Whether this browser can run models, and on which adapter; never rejects.
#[wasm_bindgen(js_name = webgpuStatus, unchecked_return_type = "Promise<WebGpuStatus>")]
pub fn webgpu_status() -> Promise {
    future_to_promise(async {
        let status = js_sys::Object::new();
        let set = |key: &str, value: JsValue| {
            let _ = Reflect::set(&status, &key.into(), &value);
        };
        match shared_context().await {
            Ok(ctx) => {
                set("available", JsValue::TRUE);
                set("adapter", adapter_name(&ctx).into());
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

/// A model on the GPU. Create it with `Model.fromUrl` or `Model.fromBytes`; call `dispose()` to release its GPU
/// memory before the garbage collector would.
#[wasm_bindgen(js_name = Model)]
pub struct WebModel {
    model: Option<Rc<Model>>,
}

#[wasm_bindgen(js_class = Model)]
impl WebModel {
    /// Downloads a `.safetensors` model file and prepares it for the GPU, compiling every kernel (one workgroup
    /// of each is dispatched), so that the first classification is as fast as the next.
    #[wasm_bindgen(js_name = fromUrl)]
    pub async fn from_url(url: String, options: Option<LoadOptions>) -> Result<WebModel, JsValue> {
        let get = |key: &str| {
            options
                .as_ref()
                .and_then(|o| Reflect::get(o, &key.into()).ok())
                .filter(|v| !v.is_undefined() && !v.is_null())
        };
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
        // Fail on a missing WebGPU before spending the download on it.
        let ctx = shared_context().await?;
        let bytes = fetch::download(&url, on_progress.as_ref(), signal.as_ref(), max_bytes).await?;
        let model = Model::from_bytes(ctx, &bytes).map_err(|e| error::from_pwlu_about(e, &url))?;
        model
            .warm_up()
            .await
            .map_err(|e| error::from_pwlu_about(e, &url))?;
        Ok(WebModel {
            model: Some(Rc::new(model)),
        })
    }

    /// Prepares a model from the bytes of a `.safetensors` model file (an opened `File`'s `arrayBuffer()`),
    /// compiling every kernel as `fromUrl` does.
    #[wasm_bindgen(js_name = fromBytes)]
    pub async fn from_bytes(bytes: Vec<u8>) -> Result<WebModel, JsValue> {
        let ctx = shared_context().await?;
        let model = Model::from_bytes(ctx, &bytes).map_err(from_pwlu)?;
        model.warm_up().await.map_err(from_pwlu)?;
        Ok(WebModel {
            model: Some(Rc::new(model)),
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

    /// GPU time of every layer on `batch` (default 1) images given as one NCHW `Float32Array`, from timestamp
    /// queries; rejects with kind `gpu` where the adapter has no `timestamp-query` feature (`info.timestamps`).
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
        // The browser build has one device kind, so a model is always on a GPU here.
        let pwlu::Device::Gpu(ctx) = model.device();
        let adapter = ctx.adapter();
        let adapter_name = adapter_name(ctx);
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
            timestamps: ctx.has_timestamps(),
            adapter: AdapterJs {
                name: &adapter_name,
                backend: format!("{:?}", adapter.backend),
                device_type: format!("{:?}", adapter.device_type),
                driver: &adapter.driver,
            },
        };
        serde_wasm_bindgen::to_value(&info).map_err(Into::into)
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

    /// Releases the model's GPU buffers now. Calls still in flight finish; later calls reject with
    /// `kind: "disposed"`.
    pub fn dispose(&mut self) {
        self.model = None;
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AdapterJs<'a> {
    name: &'a str,
    backend: String,
    device_type: String,
    driver: &'a str,
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
    adapter: AdapterJs<'a>,
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
