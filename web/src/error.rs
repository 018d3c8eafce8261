//! Every failure reaches JavaScript as a rejected promise (or a thrown exception) holding an `Error` named
//! `PwluError`, with a `kind` that scripts can branch on and a message that people can read.

use std::fmt::Display;

use wasm_bindgen::{JsCast, JsValue};

/// What went wrong, as scripts see it in `error.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The browser has no WebGPU, or no adapter or device could be had.
    WebGpu,
    /// The model could not be downloaded: bad URL, network or CORS failure, HTTP error.
    Fetch,
    /// The download was aborted through the `AbortSignal`.
    Abort,
    /// The bytes are not a valid pwlu model file.
    Model,
    /// The image (or other input) cannot be used.
    Input,
    /// The GPU failed while running (validation error, out of memory, lost device).
    Gpu,
    /// The CPU backend failed: a model or batch over its memory budget, or a kernel fault.
    Cpu,
    /// The GPU device was lost; load the model again (a new device is made for it).
    DeviceLost,
    /// The model was disposed before this call.
    Disposed,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::WebGpu => "webgpu",
            Kind::Fetch => "fetch",
            Kind::Abort => "abort",
            Kind::Model => "model",
            Kind::Input => "input",
            Kind::Gpu => "gpu",
            Kind::Cpu => "cpu",
            Kind::DeviceLost => "device-lost",
            Kind::Disposed => "disposed",
        }
    }
}

/// A JavaScript `Error` named `PwluError` with `kind` set.
pub fn js_error(kind: Kind, message: impl Display) -> JsValue {
    let error = js_sys::Error::new(&message.to_string());
    error.set_name("PwluError");
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&error, &"kind".into(), &kind.as_str().into());
    error.into()
}

/// The engine's errors, sorted into kinds.
pub fn from_pwlu(error: pwlu::Error) -> JsValue {
    js_error(kind_of(&error), error)
}

/// [`from_pwlu`] with what it was about (a URL, a file name) in front of the message.
pub fn from_pwlu_about(error: pwlu::Error, about: &str) -> JsValue {
    js_error(kind_of(&error), format!("{about}: {error}"))
}

fn kind_of(error: &pwlu::Error) -> Kind {
    use pwlu::Error as E;
    match error {
        E::NoAdapter { .. }
        | E::DeviceRequest { .. }
        | E::UnknownBackend(_)
        | E::UnknownInputStage(_) => Kind::WebGpu,
        E::Model(_) | E::InvalidPwlu(_) | E::Io { .. } => Kind::Model,
        E::Image(_) | E::ShapeMismatch { .. } | E::InvalidOp { .. } => Kind::Input,
        E::ExceedsLimit { limit_name, .. } if limit_name.starts_with("CPU") => Kind::Cpu,
        E::Cpu(_) => Kind::Cpu,
        E::ExceedsLimit { .. } | E::Gpu(_) => Kind::Gpu,
        E::DeviceLost(_) => Kind::DeviceLost,
    }
}

/// The text of whatever JavaScript threw: an Error's message, a string, or its debug form.
pub fn describe(value: &JsValue) -> String {
    if let Some(error) = value.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    if let Some(text) = value.as_string() {
        return text;
    }
    format!("{value:?}")
}
