//! Where a model runs in the browser, and why: WebGPU, or the CPU backend compiled into this wasm module.
//!
//! `auto` (the default) uses WebGPU when the browser has it and its adapter is a real GPU, and the CPU
//! backend when `navigator.gpu` is missing, gives no adapter, or gives a fallback (software) adapter such as
//! SwiftShader: those emulate a GPU on the same cores the CPU backend uses directly, several times more
//! slowly (docs/cpu.md). `"webgpu"` and `"cpu"` force one.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use js_sys::{Function, Promise, Reflect};
use pwlu::cpu::{CpuContext, CpuOptions};
use pwlu::gpu::{Backend, GpuContext, GpuOptions};
use pwlu::Device;
use wasm_bindgen::prelude::*;

use crate::error::{self, from_pwlu, js_error, Kind};

thread_local! {
    // Weak, so that the device goes away with the last model.
    static SHARED_CONTEXT: RefCell<Weak<GpuContext>> = const { RefCell::new(Weak::new()) };
    // What the browser says about its adapter, asked once per page.
    static PROBE: RefCell<Option<Option<AdapterProbe>>> = const { RefCell::new(None) };
}

const NO_WEBGPU: &str = "WebGPU is not available in this browser. It is on by default in Chrome and Edge 113 or \
    later (Windows, macOS, ChromeOS, Android), Safari 26 and Firefox 141 (Windows) or later; on Linux start \
    Chrome or Chromium with --enable-unsafe-webgpu --enable-features=Vulkan. Pages must come from https:// or \
    http://localhost. Without it, load models with backend \"auto\" or \"cpu\" to run them on the CPU.";

/// The `backend` option of `Model.fromUrl` and `Model.fromBytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requested {
    Auto,
    WebGpu,
    Cpu,
}

impl Requested {
    /// Reads the option; absent means `auto`.
    pub fn parse(value: Option<JsValue>) -> Result<Requested, JsValue> {
        let Some(value) = value else {
            return Ok(Requested::Auto);
        };
        match value.as_string().as_deref() {
            Some("auto") => Ok(Requested::Auto),
            Some("webgpu") => Ok(Requested::WebGpu),
            Some("cpu") => Ok(Requested::Cpu),
            _ => Err(js_error(
                Kind::Input,
                format!(
                    "backend must be \"auto\", \"webgpu\" or \"cpu\", not {}",
                    error::describe(&value)
                ),
            )),
        }
    }
}

/// The CPU backend's options from the `winograd` option of `Model.fromUrl` and `Model.fromBytes` (absent:
/// allowed).
pub fn cpu_options(winograd: Option<JsValue>) -> Result<CpuOptions, JsValue> {
    let winograd = match winograd {
        None => true,
        Some(value) => value.as_bool().ok_or_else(|| {
            js_error(
                Kind::Input,
                format!(
                    "winograd must be true or false, not {}",
                    error::describe(&value)
                ),
            )
        })?,
    };
    Ok(CpuOptions {
        winograd,
        ..Default::default()
    })
}

/// The device chosen for a model, and one line saying why.
pub struct Chosen {
    pub device: Device,
    pub reason: String,
}

/// What `navigator.gpu.requestAdapter()` gives, read through JavaScript because wgpu reads neither the
/// adapter's description nor whether it is a fallback adapter.
#[derive(Clone, Debug)]
struct AdapterProbe {
    name: String,
    fallback: bool,
}

/// Picks and starts the device for a new model; a CPU one with `options`.
pub async fn choose(requested: Requested, options: &CpuOptions) -> Result<Chosen, JsValue> {
    let cpu = |reason: String| cpu(reason, options);
    match requested {
        Requested::Cpu => cpu("asked for (backend \"cpu\")".into()),
        Requested::WebGpu => {
            let ctx = shared_context().await?;
            let reason = format!(
                "asked for (backend \"webgpu\", adapter {})",
                adapter_name(&ctx)
            );
            Ok(Chosen {
                device: Device::Gpu(ctx),
                reason,
            })
        }
        Requested::Auto => {
            if navigator_gpu().is_none() {
                return cpu("this browser has no WebGPU".into());
            }
            let Some(probe) = probe().await else {
                return cpu("WebGPU gives no adapter".into());
            };
            if probe.fallback {
                return cpu(format!(
                    "the WebGPU adapter, {}, is a software fallback on these same cores",
                    probe.name
                ));
            }
            match shared_context().await {
                Ok(ctx) => Ok(Chosen {
                    reason: format!("{} is a WebGPU adapter", probe.name),
                    device: Device::Gpu(ctx),
                }),
                Err(e) => cpu(format!("WebGPU did not start ({})", error::describe(&e))),
            }
        }
    }
}

fn cpu(reason: String, options: &CpuOptions) -> Result<Chosen, JsValue> {
    let ctx = CpuContext::new(options).map_err(from_pwlu)?;
    Ok(Chosen {
        device: Device::Cpu(Arc::new(ctx)),
        reason,
    })
}

/// `navigator.gpu`, if this browser has it.
fn navigator_gpu() -> Option<JsValue> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let gpu = Reflect::get(&navigator, &"gpu".into()).ok()?;
    (!gpu.is_undefined() && !gpu.is_null()).then_some(gpu)
}

/// The browser's default adapter (asked once per page), `None` when there is none.
async fn probe() -> Option<AdapterProbe> {
    if let Some(known) = PROBE.with(|probe| probe.borrow().clone()) {
        return known;
    }
    let found = request_adapter().await;
    PROBE.with(|probe| *probe.borrow_mut() = Some(found.clone()));
    found
}

async fn request_adapter() -> Option<AdapterProbe> {
    let gpu = navigator_gpu()?;
    let request = Reflect::get(&gpu, &"requestAdapter".into())
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
        .and_then(|f| f.call0(&gpu).ok())
        .and_then(|p| p.dyn_into::<Promise>().ok())?;
    let adapter = wasm_bindgen_futures::JsFuture::from(request).await.ok()?;
    if adapter.is_null() || adapter.is_undefined() {
        return None;
    }
    let info = Reflect::get(&adapter, &"info".into()).unwrap_or(JsValue::UNDEFINED);
    let text = |of: &JsValue, key: &str| {
        Reflect::get(of, &key.into())
            .ok()
            .and_then(|v| v.as_string())
            .filter(|s| !s.is_empty())
    };
    let flag = |of: &JsValue, key: &str| {
        Reflect::get(of, &key.into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    };
    // Browsers may leave any of these empty to protect privacy.
    let name = text(&info, "description")
        .or_else(
            || match (text(&info, "vendor"), text(&info, "architecture")) {
                (Some(vendor), Some(arch)) => Some(format!("{vendor} {arch}")),
                (Some(one), None) | (None, Some(one)) => Some(one),
                (None, None) => None,
            },
        )
        .unwrap_or_else(|| "a WebGPU adapter (the browser does not name it)".into());
    // `isFallbackAdapter` moved from the adapter to its info in 2024; Chrome does not set it for
    // SwiftShader when that is the only adapter, so the name counts too.
    let software = [
        "swiftshader",
        "llvmpipe",
        "lavapipe",
        "microsoft basic render",
    ]
    .iter()
    .any(|s| name.to_lowercase().contains(s));
    Some(AdapterProbe {
        fallback: flag(&info, "isFallbackAdapter")
            || flag(&adapter, "isFallbackAdapter")
            || software,
        name,
    })
}

/// The adapter's name as the browser gives it, else as wgpu does.
pub fn adapter_name(ctx: &GpuContext) -> String {
    PROBE
        .with(|probe| probe.borrow().clone().flatten())
        .map(|probe| probe.name)
        .filter(|_| ctx.adapter().name.is_empty())
        .unwrap_or_else(|| ctx.adapter().name.clone())
}

/// The device's name for people: the adapter's, or e.g. `CPU (1 thread, SIMD128)`.
pub fn device_name(device: &Device) -> String {
    match device {
        Device::Gpu(ctx) => adapter_name(ctx),
        Device::Cpu(ctx) => ctx.describe(),
    }
}

/// The page's one WebGPU device, started on first use and shared by every model on it.
pub async fn shared_context() -> Result<Arc<GpuContext>, JsValue> {
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
    if ctx.adapter().name.is_empty() {
        probe().await;
    }
    // wgpu's browser types are not Send; the Arc is what `pwlu::Model` shares its context through.
    #[allow(clippy::arc_with_non_send_sync)]
    let ctx = Arc::new(ctx);
    SHARED_CONTEXT.with(|shared| *shared.borrow_mut() = Arc::downgrade(&ctx));
    Ok(ctx)
}
