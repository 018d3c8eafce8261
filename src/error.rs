//! The one error type of the crate.
//!
//! Every fallible public function returns [`Result`]; nothing that a caller passes in (shapes, parameters,
//! tensors) can make the crate panic.

use std::fmt;

/// Everything that can go wrong in `pwlu`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No GPU adapter matched the request.
    #[error("no GPU adapter found for backend {backend}: {hint}")]
    NoAdapter {
        /// The backend that was asked for.
        backend: String,
        /// What to install or change.
        hint: String,
    },

    /// The adapter was found but refused to create a device.
    #[error("the GPU adapter '{adapter}' refused to create a device: {reason}")]
    DeviceRequest {
        /// Adapter name.
        adapter: String,
        /// wgpu's message.
        reason: String,
    },

    /// An unrecognised backend name (from an option or `PWLU_BACKEND`).
    #[error(
        "unknown GPU backend '{0}' (expected one of: auto, vulkan, metal, dx12, gl, webgpu, cpu)"
    )]
    UnknownBackend(String),

    /// An unrecognised input-stage choice (from an option or `PWLU_INPUT_STAGE`).
    #[error("unknown input stage '{0}' (expected one of: auto, always, never)")]
    UnknownInputStage(String),

    /// Operator hyper-parameters or tensors that do not fit together.
    #[error("invalid {op}: {reason}")]
    InvalidOp {
        /// The operator, e.g. `conv2d`.
        op: &'static str,
        /// What is wrong, with the offending values.
        reason: String,
    },

    /// PWLU parameters that do not describe a valid unit.
    #[error("invalid PWLU parameters: {0}")]
    InvalidPwlu(String),

    /// A tensor's data does not match its shape.
    #[error("tensor shape {dims:?} needs {expected} values, got {actual}")]
    ShapeMismatch {
        /// The declared dimensions.
        dims: Vec<usize>,
        /// Product of `dims`.
        expected: usize,
        /// Length of the data.
        actual: usize,
    },

    /// A buffer larger than the device allows.
    #[error("{what} needs {bytes} bytes, more than the device's {limit_name} of {limit} bytes")]
    ExceedsLimit {
        /// What was being allocated.
        what: String,
        /// Size asked for.
        bytes: u64,
        /// Which wgpu limit, e.g. `max_storage_buffer_binding_size`.
        limit_name: &'static str,
        /// The limit's value on this device.
        limit: u64,
    },

    /// A model file that is malformed or inconsistent; the message names the node or tensor.
    #[error("invalid model: {0}")]
    Model(String),

    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Io {
        /// The path.
        path: String,
        /// The OS's message.
        reason: String,
    },

    /// An image that cannot be decoded or used.
    #[error("image: {0}")]
    Image(String),

    /// wgpu reported an error (validation, out of memory) or a read-back failed.
    #[error("GPU error: {0}")]
    Gpu(String),

    /// The CPU backend could not start its threads, or a kernel panicked (a bug, reported instead of
    /// unwinding into the caller).
    #[error("CPU backend: {0}")]
    Cpu(String),

    /// The GPU device is gone (driver reset, GPU removed, `destroy()`): this context is finished. Create a new
    /// [`GpuContext`](crate::gpu::GpuContext) and load the model on it again.
    #[error("the GPU device was lost ({0}); create a new GPU context and load the model again")]
    DeviceLost(String),
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid_op(op: &'static str, reason: impl fmt::Display) -> Self {
        Error::InvalidOp {
            op,
            reason: reason.to_string(),
        }
    }
}
