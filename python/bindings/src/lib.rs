//! pwlu from Python: `pwlu.Model(path)` loads a model on the device `auto` picks (or the one asked for),
//! `model.run(x)` runs NCHW float32 arrays, `model.classify(images)` preprocesses images as the model file says
//! and returns the top classes. The engine runs with the GIL released, so threads can share one model.
//! `pwlu.pyi` has the types.

use std::path::PathBuf;

use engine::cpu::CpuOptions;
use engine::device::DeviceOptions;
use engine::gpu::{Backend, GpuOptions};
use numpy::prelude::*;
use numpy::{PyArray2, PyArrayDyn, PyUntypedArray};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

create_exception!(
    pwlu,
    PwluError,
    PyException,
    "A failure of the pwlu engine: `kind` says what kind (model, input, adapter, limit, gpu, cpu, device-lost, io)."
);

/// The engine's error as a `PwluError` with its message and `kind`.
fn to_py(error: engine::Error) -> PyErr {
    use engine::Error as E;
    let kind = match &error {
        E::NoAdapter { .. }
        | E::DeviceRequest { .. }
        | E::UnknownBackend(_)
        | E::UnknownInputStage(_) => "adapter",
        E::Model(_) | E::InvalidPwlu(_) => "model",
        E::Io { .. } => "io",
        E::Image(_) | E::ShapeMismatch { .. } | E::InvalidOp { .. } => "input",
        E::ExceedsLimit { .. } => "limit",
        E::Gpu(_) => "gpu",
        E::Cpu(_) => "cpu",
        E::DeviceLost(_) => "device-lost",
    };
    error_of_kind(kind, error.to_string())
}

fn error_of_kind(kind: &str, message: String) -> PyErr {
    let error = PwluError::new_err(message);
    Python::attach(|py| {
        // An exception instance always takes attributes.
        let _ = error.value(py).setattr("kind", kind);
    });
    error
}

/// A model loaded on its device. Safe to share between threads: runs on one batch size are serialised, and the
/// engine runs without the GIL.
#[pyclass(frozen, name = "Model", module = "pwlu")]
struct Model {
    model: engine::Model,
    reason: String,
}

/// One image of `classify`, decoded and preprocessed while the GIL is held only for reading it.
enum Image {
    Path(PathBuf),
    Encoded(Vec<u8>),
    Rgb(image::RgbImage),
}

impl Image {
    fn from_python(item: &Bound<'_, PyAny>) -> PyResult<Image> {
        if let Ok(bytes) = item.cast::<PyBytes>() {
            return Ok(Image::Encoded(bytes.as_bytes().to_vec()));
        }
        if let Ok(path) = item.extract::<PathBuf>() {
            return Ok(Image::Path(path));
        }
        // A PIL image: its RGB pixels as an array.
        let array = if item.hasattr("convert")? && item.hasattr("size")? {
            let numpy = item.py().import("numpy")?;
            numpy.call_method1("asarray", (item.call_method1("convert", ("RGB",))?,))?
        } else {
            item.clone()
        };
        let Ok(array) = array.cast::<PyUntypedArray>() else {
            return Err(error_of_kind(
                "input",
                format!(
                    "an image is a file path, the bytes of an encoded image, a PIL image or a uint8 array of \
                     [height, width, 3]; got {}",
                    item.get_type().name()?
                ),
            ));
        };
        let Ok(pixels) = array.cast::<PyArrayDyn<u8>>() else {
            return Err(error_of_kind(
                "input",
                format!("an image array must be uint8, got {}", array.dtype()),
            ));
        };
        let shape = pixels.shape().to_vec();
        if shape.len() != 3 || shape[2] != 3 {
            return Err(error_of_kind(
                "input",
                format!("an image array must be [height, width, 3] (RGB), got {shape:?}"),
            ));
        }
        // Any strides: the pixels are copied in row order.
        let values: Vec<u8> = borrowed(pixels)?.as_array().iter().copied().collect();
        let rgb = image::RgbImage::from_raw(shape[1] as u32, shape[0] as u32, values)
            .ok_or_else(|| error_of_kind("input", format!("{shape:?} is too large an image")))?;
        Ok(Image::Rgb(rgb))
    }

    fn decode(self) -> engine::Result<image::DynamicImage> {
        match self {
            Image::Path(path) => {
                let bytes = std::fs::read(&path).map_err(|e| engine::Error::Io {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                engine::preprocess::decode_image(&bytes)
            }
            Image::Encoded(bytes) => engine::preprocess::decode_image(&bytes),
            Image::Rgb(rgb) => Ok(image::DynamicImage::ImageRgb8(rgb)),
        }
    }
}

/// A read-only borrow of `array`, or an input error where Rust code elsewhere holds it mutably.
fn borrowed<'py, T: numpy::Element>(
    array: &Bound<'py, PyArrayDyn<T>>,
) -> PyResult<numpy::PyReadonlyArrayDyn<'py, T>> {
    array
        .try_readonly()
        .map_err(|e| error_of_kind("input", format!("the array cannot be read now: {e}")))
}

/// One class of a classification.
#[pyclass(frozen, get_all, name = "Class", module = "pwlu")]
struct Class {
    index: usize,
    label: String,
    prob: f32,
}

#[pymethods]
impl Class {
    fn __repr__(&self) -> String {
        format!(
            "Class(index={}, label={:?}, prob={:.4})",
            self.index, self.label, self.prob
        )
    }
}

/// A model file's preprocessing on its own (its metadata, no weights packed), for decoding and preprocessing
/// images apart from where the model runs, e.g. in the CPU tasks of a data pipeline.
#[pyclass(frozen, name = "Preprocess", module = "pwlu")]
struct Preprocess {
    preprocess: engine::preprocess::Preprocess,
    input: engine::Shape,
}

#[pymethods]
impl Preprocess {
    /// The preprocessing the model file at `path` asks for.
    #[staticmethod]
    fn of_model(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        py.detach(|| {
            let checked = engine::model::CheckedModel::load(&path)?;
            let preprocess = checked.preprocess.ok_or_else(|| {
                engine::Error::Model(format!(
                    "{} has no preprocessing metadata; run it on tensors",
                    path.display()
                ))
            })?;
            Ok(Preprocess {
                preprocess,
                input: checked.graph.input,
            })
        })
        .map_err(to_py)
    }

    /// The model's input `[1, C, H, W]` (float32) for one image: a file path, encoded bytes, a PIL image or a
    /// uint8 array `[height, width, 3]`. `Model.run` on a stack of these gives what `Model.classify` would.
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        image: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, numpy::PyArray4<f32>>> {
        let image = Image::from_python(image)?;
        let tensor = py
            .detach(|| self.preprocess.apply(&image.decode()?))
            .map_err(to_py)?;
        let s = tensor.shape();
        if s.with_batch(1) != self.input {
            return Err(to_py(engine::Error::Model(format!(
                "the preprocessing makes {s}, the model takes {}",
                self.input
            ))));
        }
        let flat = numpy::PyArray1::from_vec(py, tensor.into_data());
        flat.reshape([1, s.c, s.h, s.w])
    }

    fn __repr__(&self) -> String {
        format!("pwlu.Preprocess({})", self.preprocess)
    }
}

#[pymethods]
impl Model {
    /// Loads a `.safetensors` model file. `backend`: "auto" (a hardware GPU if there is one, else the CPU
    /// backend), "cpu", or a graphics API ("vulkan", "metal", "dx12", "gl"); `adapter`: the index of a GPU
    /// adapter in `pwlu.devices()`; `threads`: the CPU backend's threads (default: every core); `winograd`:
    /// whether the CPU backend may compute 3x3 convolutions by Winograd's method (faster, up to 4x the memory
    /// of those layers' weights).
    #[new]
    #[pyo3(signature = (path, backend = "auto", adapter = None, threads = None, winograd = true))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        backend: &str,
        adapter: Option<usize>,
        threads: Option<usize>,
        winograd: bool,
    ) -> PyResult<Self> {
        let mut backend: Backend = backend.parse().map_err(to_py)?;
        let mut adapter_index = adapter;
        if let (Backend::Auto, Some(index)) = (backend.resolve().map_err(to_py)?, adapter) {
            // `devices()` numbers the adapters of the primary APIs: find that one's API and its place there.
            let (api, within) = py.detach(|| primary_adapter(index)).map_err(to_py)?;
            backend = api;
            adapter_index = Some(within);
        }
        let options = DeviceOptions {
            gpu: GpuOptions {
                backend,
                adapter_index,
                ..Default::default()
            },
            cpu: CpuOptions {
                threads,
                winograd,
                ..Default::default()
            },
        };
        py.detach(|| {
            let selected = engine::device::select_blocking(&options)?;
            let model = engine::Model::load(selected.device, &path)?;
            Ok(Model {
                model,
                reason: selected.reason,
            })
        })
        .map_err(to_py)
    }

    /// The outputs (`[N, classes]` for a classifier) of `x`, a float32 array `[N, C, H, W]` of the model's
    /// input size. A C-contiguous array is read in place; any other layout is copied first.
    fn run<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let Ok(array) = x.cast::<PyUntypedArray>() else {
            return Err(error_of_kind(
                "input",
                format!(
                    "run takes a numpy float32 array [N, C, H, W], got {}",
                    x.get_type().name()?
                ),
            ));
        };
        let Ok(array) = array.cast::<PyArrayDyn<f32>>() else {
            return Err(error_of_kind(
                "input",
                format!(
                    "run takes float32 values, got {} (convert with x.astype(numpy.float32))",
                    array.dtype()
                ),
            ));
        };
        let dims = array.shape().to_vec();
        if dims.len() != 4 {
            return Err(error_of_kind(
                "input",
                format!(
                    "run takes [N, C, H, W], got {} dimensions {dims:?}",
                    dims.len()
                ),
            ));
        }
        let readonly = borrowed(array)?;
        let owned;
        let values: &[f32] = match readonly.as_slice() {
            Ok(values) if array.is_c_contiguous() => values,
            _ => {
                owned = readonly.as_array().iter().copied().collect::<Vec<f32>>();
                &owned
            }
        };
        let output = py
            .detach(|| {
                let input = engine::tensor::TensorView::new(&dims, values)?;
                self.model.run_blocking(input)
            })
            .map_err(to_py)?;
        let dims = output.dims().to_vec();
        let rows = dims.first().copied().unwrap_or(0);
        let columns = output.data().len() / rows.max(1);
        let flat = numpy::PyArray1::from_vec(py, output.into_data());
        flat.reshape([rows, columns])
    }

    /// The `top` most probable classes of each image, most probable first: one list for one image, a list of
    /// lists for a list of images. An image is a file path, the bytes of an encoded image (JPEG, PNG, ...), a
    /// PIL image or a uint8 array `[height, width, 3]`; each is preprocessed as the model file says.
    #[pyo3(signature = (images, top = 5))]
    fn classify<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
        top: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let one = !images.is_instance_of::<PyList>()
            && !images.hasattr("__next__")?
            && !images.is_instance_of::<pyo3::types::PyTuple>();
        let items: Vec<Image> = if one {
            vec![Image::from_python(images)?]
        } else {
            images
                .try_iter()?
                .map(|item| Image::from_python(&item?))
                .collect::<PyResult<_>>()?
        };
        let results = py
            .detach(|| {
                items
                    .into_iter()
                    .map(|image| {
                        let image = image.decode()?;
                        pollster::block_on(self.model.classify(&image, top))
                    })
                    .collect::<engine::Result<Vec<_>>>()
            })
            .map_err(to_py)?;
        let lists = results
            .into_iter()
            .map(|classes| {
                classes
                    .into_iter()
                    .map(|c| Class {
                        index: c.index,
                        label: c.label,
                        prob: c.prob,
                    })
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>();
        if one {
            let first = lists.into_iter().next().unwrap_or_default();
            Ok(first.into_pyobject(py)?.into_any())
        } else {
            Ok(lists.into_pyobject(py)?.into_any())
        }
    }

    /// The class labels, one per output.
    #[getter]
    fn labels(&self) -> Vec<String> {
        self.model.labels().to_vec()
    }

    /// What the model is and where it runs: name, input `[C, H, W]`, classes, parameters, flops, pwlu_sites,
    /// preprocess, backend ("gpu" or "cpu"), device, reason.
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = &self.model;
        let input = m.input_shape();
        let info = PyDict::new(py);
        info.set_item("name", m.name())?;
        info.set_item("input", [input.c, input.h, input.w])?;
        info.set_item("classes", m.labels().len())?;
        info.set_item("parameters", m.parameter_count())?;
        info.set_item("flops", m.graph().flops())?;
        info.set_item("pwlu_sites", m.pwlu_sites().len())?;
        info.set_item("preprocess", m.preprocess().map(ToString::to_string))?;
        info.set_item("backend", m.device().backend_name())?;
        info.set_item("device", m.device().describe())?;
        info.set_item("reason", &self.reason)?;
        Ok(info)
    }

    fn __repr__(&self) -> String {
        format!(
            "pwlu.Model({:?} on {})",
            self.model.name(),
            self.model.device().describe()
        )
    }
}

/// The graphics APIs `auto` takes adapters from, in `devices()` order. OpenGL is left out: starting it loads the
/// GL driver into the process (on Linux without a GPU, Mesa's llvmpipe and its LLVM), and a process that then
/// imports PyTorch's Triton crashes on the second LLVM. `Model(path, backend="gl")` still runs on it.
const PRIMARY_APIS: [Backend; 3] = [Backend::Vulkan, Backend::Metal, Backend::Dx12];

/// The adapters of the primary APIs, in `devices()` order, with their API.
fn primary_adapters() -> engine::Result<Vec<(Backend, wgpu::AdapterInfo)>> {
    let mut all = Vec::new();
    for api in PRIMARY_APIS {
        for adapter in pollster::block_on(engine::gpu::list_adapters(api))? {
            all.push((api, adapter.get_info()));
        }
    }
    Ok(all)
}

/// The API of adapter `index` of `devices()`, and its index among that API's adapters.
fn primary_adapter(index: usize) -> engine::Result<(Backend, usize)> {
    let all = primary_adapters()?;
    let Some((api, _)) = all.get(index) else {
        return Err(engine::Error::NoAdapter {
            backend: "auto".into(),
            hint: format!(
                "adapter {index} asked for, {} found (pwlu.devices() lists them)",
                all.len()
            ),
        });
    };
    let within = all[..index].iter().filter(|(a, _)| a == api).count();
    Ok((*api, within))
}

/// The GPU adapters of the primary APIs (index, name, backend, device_type, pci_bus_id) and where models would
/// run by default.
#[pyfunction]
fn devices(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let (adapters, selected) = py
        .detach(|| {
            let infos: Vec<_> = primary_adapters()?
                .into_iter()
                .map(|(_, info)| info)
                .collect();
            let selected = engine::device::select_blocking(&DeviceOptions::default())?;
            Ok((infos, selected))
        })
        .map_err(to_py)?;
    let list = PyList::empty(py);
    for (index, info) in adapters.iter().enumerate() {
        let entry = PyDict::new(py);
        entry.set_item("index", index)?;
        entry.set_item("name", &info.name)?;
        entry.set_item("backend", format!("{:?}", info.backend))?;
        entry.set_item("device_type", format!("{:?}", info.device_type))?;
        // e.g. "0000:3b:00.0": how a GPU that a scheduler assigned by CUDA index is found among the adapters.
        entry.set_item("pci_bus_id", &info.device_pci_bus_id)?;
        list.append(entry)?;
    }
    let result = PyDict::new(py);
    result.set_item("adapters", list)?;
    let runs_on = PyDict::new(py);
    runs_on.set_item("backend", selected.device.backend_name())?;
    runs_on.set_item("device", selected.device.describe())?;
    runs_on.set_item("reason", selected.reason)?;
    result.set_item("models_run_on", runs_on)?;
    Ok(result)
}

#[pymodule]
fn pwlu(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_class::<Class>()?;
    m.add_class::<Preprocess>()?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add("PwluError", m.py().get_type::<PwluError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
