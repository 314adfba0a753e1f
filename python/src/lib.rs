//! `atrous` for Python: the library's convolutions, backbones, segmentation models and
//! comparison on NumPy arrays (PyO3 + rust-numpy), a thin layer over the same calls the CLI
//! makes (src/commands/), with the same error words.
//!
//! The GPU is opened once per process, on first use, and shared by every call; the GIL is
//! released while a GPU or CPU computation (or a network build) runs.

use std::sync::{Mutex, PoisonError};

use atrous_core::backend::{Cpu, Device};
use atrous_core::compare::{difference, Difference as Diff, NETWORK_TOLERANCE, OP_TOLERANCE};
use atrous_core::gpu::{AdapterSummary, Gpu, GpuError as CoreGpuError, GpuOptions};
use atrous_core::models::resnet::{resnet, Arch, ResNetConfig};
use atrous_core::models::segmentation::{segmentation, Head, Model, SegmentationConfig, Upsample, VOC_CLASSES};
use atrous_core::net::{Executor, Keep, Network};
use atrous_core::weights::{Prefixed, SafetensorsWeights, SeededWeights, WeightError, DEFAULT_SEED};
use atrous_core::{Backend, Conv2dParams, ConvTranspose2dParams, Error, Hw, Tensor, WindowGeometry};
use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyOverflowError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

/// A float32 NumPy array handed to Python.
type Array<'py> = Bound<'py, PyArrayDyn<f32>>;


pyo3::create_exception!(
    atrous,
    GpuError,
    PyRuntimeError,
    "The GPU could not be opened or failed (no adapter, a device refused, out of memory, a limit exceeded)."
);

// ---------------------------------------------------------------------------------------------
// The one GPU of the process.

static GPU: Mutex<Option<&'static Gpu>> = Mutex::new(None);

/// The process's GPU, opened on first use (a failed open is retried by the next call).
fn gpu() -> Result<&'static Gpu, CoreGpuError> {
    let mut slot = GPU.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(gpu) = *slot {
        return Ok(gpu);
    }
    // Leaked on purpose: it lives as long as the process, and every call shares it.
    let gpu: &'static Gpu = Box::leak(Box::new(Gpu::new(&GpuOptions::default())?));
    *slot = Some(gpu);
    Ok(gpu)
}

// ---------------------------------------------------------------------------------------------
// Errors: the library's words, as Python exceptions.

fn gpu_err(e: CoreGpuError) -> PyErr {
    GpuError::new_err(e.to_string())
}

fn err(e: Error) -> PyErr {
    match e {
        Error::Gpu(e) => gpu_err(e),
        Error::Weights(WeightError::Read { ref source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(e.to_string())
        }
        Error::Weights(WeightError::Read { .. } | WeightError::Write { .. }) => PyOSError::new_err(e.to_string()),
        other => PyValueError::new_err(other.to_string()),
    }
}

fn device(name: &str) -> PyResult<Device> {
    name.parse::<Device>().map_err(PyValueError::new_err)
}

// ---------------------------------------------------------------------------------------------
// NumPy in and out.

/// `obj` as an f32 tensor: any array-like NumPy accepts, float32 or float64 (converted), any
/// memory layout (made C-contiguous). Other dtypes are refused with the `.npy` reader's words.
fn tensor(py: Python<'_>, name: &str, obj: &Bound<'_, PyAny>) -> PyResult<Tensor> {
    let np = py.import("numpy")?;
    let array = np.call_method1("asarray", (obj,))?;
    let dtype = array.getattr("dtype")?;
    let kind: String = dtype.getattr("kind")?.extract()?;
    let itemsize: usize = dtype.getattr("itemsize")?.extract()?;
    if kind != "f" || !(itemsize == 4 || itemsize == 8) {
        let dtype_name: String = dtype.getattr("name")?.extract()?;
        let descr: String = dtype.getattr("str")?.extract()?;
        return Err(PyTypeError::new_err(format!(
            "{name} holds {dtype_name} ('{descr}') values; atrous reads float32 ('<f4') or float64 ('<f8') arrays (convert with arr.astype(numpy.float32))"
        )));
    }
    let kwargs = PyDict::new(py);
    kwargs.set_item("dtype", np.getattr("float32")?)?;
    let array = np.call_method("ascontiguousarray", (array,), Some(&kwargs))?;
    let array: PyReadonlyArrayDyn<'_, f32> = array.extract()?;
    let shape = array.shape().to_vec();
    // Copied: the computation runs without the GIL, while Python code could change the array.
    let data = array.as_slice()?.to_vec();
    Tensor::new(shape, data).map_err(|e| PyValueError::new_err(format!("{name}: {e}")))
}

fn optional_tensor(py: Python<'_>, name: &str, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Tensor>> {
    obj.filter(|o| !o.is_none()).map(|o| tensor(py, name, o)).transpose()
}

fn ndarray<'py>(py: Python<'py>, t: Tensor) -> PyResult<Array<'py>> {
    let shape = t.shape().to_vec();
    let array = ArrayD::from_shape_vec(IxDyn(&shape), t.into_data()).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    Ok(array.into_pyarray(py))
}

/// A per-axis parameter as PyTorch takes it: an int for both axes, or a pair `(h, w)`.
fn pair(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<Hw> {
    let one = |v: &Bound<'_, PyAny>| -> PyResult<usize> {
        let value: i64 = v.extract().map_err(|e: PyErr| {
            if e.is_instance_of::<PyOverflowError>(v.py()) {
                PyValueError::new_err(format!("{name}={} is too large for this tool (limit {})", describe(v), atrous_core::shape::MAX_PARAMETER))
            } else {
                PyTypeError::new_err(format!("{name} must be an int or a pair (h, w) of ints, got {}", describe(v)))
            }
        })?;
        usize::try_from(value)
            .map_err(|_| PyValueError::new_err(format!("{name}={value} is not a size: expected non-negative integers, an int or a pair (h, w)")))
    };
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return match tuple.len() {
            2 => Ok(Hw::new(one(&tuple.get_item(0)?)?, one(&tuple.get_item(1)?)?)),
            n => Err(PyValueError::new_err(format!("{name} must be an int or a pair (h, w), got a tuple of {n}"))),
        };
    }
    if let Ok(list) = obj.cast::<PyList>() {
        return match list.len() {
            2 => Ok(Hw::new(one(&list.get_item(0)?)?, one(&list.get_item(1)?)?)),
            n => Err(PyValueError::new_err(format!("{name} must be an int or a pair (h, w), got a list of {n}"))),
        };
    }
    Ok(Hw::square(one(obj)?))
}

fn describe(v: &Bound<'_, PyAny>) -> String {
    let type_name = v.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".to_owned());
    match v.repr() {
        Ok(repr) => format!("{repr} ({type_name})"),
        Err(_) => type_name,
    }
}

fn groups(value: i64) -> PyResult<usize> {
    usize::try_from(value).map_err(|_| PyValueError::new_err(format!("groups must be at least 1, got {value}")))
}

// ---------------------------------------------------------------------------------------------
// Single ops.

/// Runs a validated geometry on `device` without the GIL.
fn convolve(
    py: Python<'_>,
    geometry: WindowGeometry,
    device: Device,
    input: Tensor,
    weight: Tensor,
    bias: Option<Tensor>,
) -> PyResult<Tensor> {
    let data = py
        .detach(move || -> Result<Vec<f32>, Error> {
            let backend: &dyn Backend = match device {
                Device::Gpu => gpu()?,
                Device::Cpu => &Cpu,
            };
            backend.convolve(&geometry, input.data(), weight.data(), bias.as_ref().map(Tensor::data))
        })
        .map_err(err)?;
    Tensor::new(geometry.output_shape().to_vec(), data).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// 2-D convolution, as ``torch.nn.functional.conv2d``.
///
/// ``x`` is ``[N, C_in, H, W]``, ``weight`` ``[C_out, C_in/groups, kH, kW]``, ``bias``
/// ``[C_out]`` or None: NumPy arrays (or anything ``numpy.asarray`` takes) of float32 or
/// float64 (converted to float32). ``stride``, ``padding`` (zeros on each side) and
/// ``dilation`` are an int or a pair ``(h, w)``. ``device`` is ``"gpu"`` (the first adapter
/// wgpu finds, opened once per process) or ``"cpu"``. Returns a float32 ``[N, C_out, OH, OW]``
/// array. Bad shapes or parameters raise ``ValueError``/``TypeError``; GPU failures
/// ``atrous.GpuError``.
#[pyfunction]
#[pyo3(
    signature = (x, weight, bias=None, stride=None, padding=None, dilation=None, groups=1, device="gpu"),
    text_signature = "(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, device='gpu')"
)]
#[allow(clippy::too_many_arguments)]
fn conv2d<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    weight: &Bound<'py, PyAny>,
    bias: Option<&Bound<'py, PyAny>>,
    stride: Option<&Bound<'py, PyAny>>,
    padding: Option<&Bound<'py, PyAny>>,
    dilation: Option<&Bound<'py, PyAny>>,
    groups: i64,
    device: &str,
) -> PyResult<Array<'py>> {
    let params = Conv2dParams {
        stride: stride.map_or(Ok(Hw::square(1)), |v| pair("stride", v))?,
        padding: padding.map_or(Ok(Hw::square(0)), |v| pair("padding", v))?,
        dilation: dilation.map_or(Ok(Hw::square(1)), |v| pair("dilation", v))?,
        groups: self::groups(groups)?,
    };
    let device = self::device(device)?;
    let (input, weight, bias) = (tensor(py, "x", x)?, tensor(py, "weight", weight)?, optional_tensor(py, "bias", bias)?);
    let geometry = params.geometry(input.shape(), weight.shape(), bias.as_ref().map(Tensor::shape)).map_err(|e| err(e.into()))?;
    ndarray(py, convolve(py, geometry, device, input, weight, bias)?)
}

/// 2-D transposed convolution, as ``torch.nn.functional.conv_transpose2d`` (same argument
/// order).
///
/// ``x`` is ``[N, C_in, H, W]``, ``weight`` ``[C_in, C_out/groups, kH, kW]``, ``bias``
/// ``[C_out]`` or None; float32 or float64 arrays. ``stride``, ``padding``,
/// ``output_padding`` (``< max(stride, dilation)``) and ``dilation`` are an int or a pair
/// ``(h, w)``. Output size per axis: ``(n − 1)·s − 2p + d·(k − 1) + 1 + output_padding``.
/// Returns a float32 ``[N, C_out, OH, OW]`` array.
#[pyfunction]
#[pyo3(
    signature = (x, weight, bias=None, stride=None, padding=None, output_padding=None, groups=1, dilation=None, device="gpu"),
    text_signature = "(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, device='gpu')"
)]
#[allow(clippy::too_many_arguments)]
fn conv_transpose2d<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    weight: &Bound<'py, PyAny>,
    bias: Option<&Bound<'py, PyAny>>,
    stride: Option<&Bound<'py, PyAny>>,
    padding: Option<&Bound<'py, PyAny>>,
    output_padding: Option<&Bound<'py, PyAny>>,
    groups: i64,
    dilation: Option<&Bound<'py, PyAny>>,
    device: &str,
) -> PyResult<Array<'py>> {
    let params = ConvTranspose2dParams {
        stride: stride.map_or(Ok(Hw::square(1)), |v| pair("stride", v))?,
        padding: padding.map_or(Ok(Hw::square(0)), |v| pair("padding", v))?,
        output_padding: output_padding.map_or(Ok(Hw::square(0)), |v| pair("output_padding", v))?,
        dilation: dilation.map_or(Ok(Hw::square(1)), |v| pair("dilation", v))?,
        groups: self::groups(groups)?,
    };
    let device = self::device(device)?;
    let (input, weight, bias) = (tensor(py, "x", x)?, tensor(py, "weight", weight)?, optional_tensor(py, "bias", bias)?);
    let geometry = params.geometry(input.shape(), weight.shape(), bias.as_ref().map(Tensor::shape)).map_err(|e| err(e.into()))?;
    ndarray(py, convolve(py, geometry, device, input, weight, bias)?)
}

// ---------------------------------------------------------------------------------------------
// Adapters.

fn adapter_dict<'py>(py: Python<'py>, a: &AdapterSummary) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &a.name)?;
    d.set_item("backend", format!("{:?}", a.backend))?;
    d.set_item("type", format!("{:?}", a.device_type))?;
    d.set_item("driver", &a.driver)?;
    d.set_item("driver_info", &a.driver_info)?;
    let limits = PyDict::new(py);
    limits.set_item("max_storage_buffer_binding_size", a.max_storage_buffer_binding_size)?;
    limits.set_item("max_buffer_size", a.max_buffer_size)?;
    limits.set_item("max_compute_workgroups_per_dimension", a.max_compute_workgroups_per_dimension)?;
    limits.set_item("max_compute_invocations_per_workgroup", a.max_compute_invocations_per_workgroup)?;
    limits.set_item("max_compute_workgroup_storage_size", a.max_compute_workgroup_storage_size)?;
    limits.set_item("timestamp_query", a.timestamp_query)?;
    d.set_item("limits", limits)?;
    Ok(d)
}

/// Every adapter wgpu can see, best first (as ``atrous devices``): a list of dicts with
/// ``name``, ``backend``, ``type``, ``driver``, ``driver_info`` and ``limits``. The first is the
/// one ``device="gpu"`` uses, unless ``WGPU_ADAPTER_NAME`` / ``WGPU_BACKEND`` (read when the GPU
/// is first opened) say otherwise. Raises ``atrous.GpuError`` when there is none.
#[pyfunction]
fn devices(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let adapters = py.detach(|| Gpu::enumerate(&GpuOptions::default())).map_err(gpu_err)?;
    adapters.iter().map(|a| adapter_dict(py, a)).collect()
}

/// The adapter that ``device="gpu"`` runs on, as a dict like those of ``devices()``; opens the
/// GPU if no call has yet. Raises ``atrous.GpuError`` when there is none.
#[pyfunction]
fn adapter(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let gpu = py.detach(gpu).map_err(gpu_err)?;
    adapter_dict(py, gpu.summary())
}

// ---------------------------------------------------------------------------------------------
// Comparison.

/// How far one tensor is from a reference, as ``--compare`` reports it.
///
/// ``max_abs`` is the largest ``|a − b|``; ``max_rel`` the largest
/// ``|a − b| / max(|b|, 0.01·max|b|)`` (values near zero judged against the tensor's scale);
/// ``worst_index`` the flat index where it occurs; ``reference_scale`` ``max|b|``;
/// ``rms_rel`` the error's norm over the reference's; ``non_finite`` how many elements are NaN/inf on one side only; ``agree`` whether
/// ``max_rel <= tolerance`` and ``non_finite == 0``; ``verdict`` ``"agree"`` or ``"DISAGREE"``.
#[pyclass(frozen, get_all, module = "atrous")]
#[derive(Clone)]
struct Difference {
    max_abs: f64,
    max_rel: f64,
    rms_rel: f64,
    worst_index: usize,
    reference_scale: f64,
    non_finite: usize,
    tolerance: f64,
    agree: bool,
    verdict: &'static str,
}

impl Difference {
    fn of(d: Diff, tolerance: f64) -> Self {
        let agree = d.within(tolerance);
        Difference {
            max_abs: d.max_abs,
            max_rel: d.max_rel,
            rms_rel: d.rms_rel,
            worst_index: d.worst_index,
            reference_scale: d.reference_scale,
            non_finite: d.non_finite,
            tolerance,
            agree,
            verdict: if agree { "agree" } else { "DISAGREE" },
        }
    }

    fn core(&self) -> Diff {
        Diff {
            max_abs: self.max_abs,
            max_rel: self.max_rel,
            rms_rel: self.rms_rel,
            worst_index: self.worst_index,
            reference_scale: self.reference_scale,
            non_finite: self.non_finite,
        }
    }
}

#[pymethods]
impl Difference {
    fn __repr__(&self) -> String {
        format!("<atrous.Difference {}; verdict: {} ({} {:e} relative)>", self.core(), self.verdict, if self.agree { "within" } else { "beyond" }, self.tolerance)
    }

    fn __str__(&self) -> String {
        format!("{}\nverdict: {} ({} {:e} relative)", self.core(), self.verdict, if self.agree { "within" } else { "beyond" }, self.tolerance)
    }

    /// The fields as a dict.
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("max_abs", self.max_abs)?;
        d.set_item("max_rel", self.max_rel)?;
        d.set_item("worst_index", self.worst_index)?;
        d.set_item("reference_scale", self.reference_scale)?;
        d.set_item("non_finite", self.non_finite)?;
        d.set_item("tolerance", self.tolerance)?;
        d.set_item("agree", self.agree)?;
        d.set_item("verdict", self.verdict)?;
        Ok(d)
    }
}

/// Compares ``a`` (a result) with ``b`` (the reference), arrays of the same shape, as
/// ``atrous conv2d --compare`` does: returns an ``atrous.Difference`` (max abs and max relative
/// error, a verdict within ``tolerance`` relative). The CLI judges single ops at 1e-4
/// (``atrous.OP_TOLERANCE``) and every layer of a network at 1e-3
/// (``atrous.NETWORK_TOLERANCE``).
#[pyfunction]
#[pyo3(signature = (a, b, tolerance=OP_TOLERANCE), text_signature = "(a, b, tolerance=1e-4)")]
fn compare(py: Python<'_>, a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>, tolerance: f64) -> PyResult<Difference> {
    let (a, b) = (tensor(py, "a", a)?, tensor(py, "b", b)?);
    if a.shape() != b.shape() {
        return Err(PyValueError::new_err(format!("compared tensors must have the same shape, but a is {:?} and b is {:?}", a.shape(), b.shape())));
    }
    if tolerance.is_nan() || tolerance < 0.0 {
        return Err(PyValueError::new_err(format!("tolerance must be a non-negative number, got {tolerance}")));
    }
    let d = py.detach(|| difference(a.data(), b.data()));
    Ok(Difference::of(d, tolerance))
}

// ---------------------------------------------------------------------------------------------
// Networks.

/// A built network and where it runs: what Backbone and Segmentation share.
struct Net {
    network: Network,
    device: Device,
    unused: Vec<String>,
}

impl Net {
    fn forward(&self, py: Python<'_>, x: &Bound<'_, PyAny>, keep: Keep) -> PyResult<Vec<Option<Tensor>>> {
        let input = tensor(py, "x", x)?;
        // Refuse a bad input before opening a device, naming the layer (as the CLI).
        self.network.geometries(input.shape()).map_err(err)?;
        let (network, device) = (&self.network, self.device);
        let forward = py
            .detach(move || -> Result<_, Error> {
                let executor: &dyn Executor = match device {
                    Device::Gpu => gpu()?,
                    Device::Cpu => &Cpu,
                };
                executor.forward(network, &input, keep)
            })
            .map_err(err)?;
        Ok(forward.outputs)
    }

    fn call<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Array<'py>> {
        let mut outputs = self.forward(py, x, Keep::Last)?;
        let last = outputs.pop().flatten().ok_or_else(|| PyRuntimeError::new_err("the last layer's output was not kept"))?;
        ndarray(py, last)
    }

    fn outputs<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>, keep_all: bool) -> PyResult<Bound<'py, PyDict>> {
        let outputs = self.forward(py, x, if keep_all { Keep::All } else { Keep::Last })?;
        let d = PyDict::new(py);
        for (layer, output) in self.network.layers.iter().zip(outputs) {
            if let Some(t) = output {
                d.set_item(&layer.name, ndarray(py, t)?)?;
            }
        }
        Ok(d)
    }

    fn layer_names(&self) -> Vec<String> {
        self.network.layers.iter().map(|l| l.name.clone()).collect()
    }

    fn output_shapes(&self, shape: Vec<usize>) -> PyResult<Vec<(String, Vec<usize>)>> {
        let geometries = self.network.geometries(&shape).map_err(err)?;
        Ok(self.network.layers.iter().zip(geometries).map(|(l, g)| (l.name.clone(), g.output_shape().to_vec())).collect())
    }
}

/// The weights argument: None (seeded) or a path (str or os.PathLike).
fn weights_path(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<std::path::PathBuf>> {
    obj.filter(|o| !o.is_none())
        .map(|o| o.extract::<std::path::PathBuf>().map_err(|_| PyTypeError::new_err(format!("weights must be a path to a .safetensors file or None, got {}", describe(o)))))
        .transpose()
}

fn rates(name: &str, obj: Option<Vec<i64>>) -> PyResult<Option<Vec<usize>>> {
    obj.map(|values| {
        values
            .into_iter()
            .map(|v| usize::try_from(v).map_err(|_| PyValueError::new_err(format!("{name} must be non-negative integers, got {v}"))))
            .collect()
    })
    .transpose()
}

fn output_stride(value: i64) -> PyResult<usize> {
    usize::try_from(value).map_err(|_| {
        PyValueError::new_err(format!("output stride {value} cannot be reached by a ResNet: the possible output strides are 4, 8, 16 and 32"))
    })
}

/// A ResNet backbone (stem and layers 1–4, no pooling or classifier), as ``atrous backbone``.
///
/// ``arch`` is resnet18, resnet34, resnet50, resnet101 or resnet152. ``output_stride`` 32 is the
/// plain ResNet; 16, 8 and 4 turn the later strides into dilations (torchvision's
/// ``replace_stride_with_dilation``). ``multi_grid`` (e.g. ``(1, 2, 4)``) multiplies layer4's
/// rates per block (DeepLabv3). ``weights`` is a torchvision state dict saved as
/// ``.safetensors`` (batch norm folded at load; ``weights_prefix="backbone."`` for a
/// segmentation model's file), or None for the CLI's seeded weights. ``device`` is ``"gpu"`` or
/// ``"cpu"``.
///
/// ``backbone(x)`` returns layer4's features for an ``[N, 3, H, W]`` input;
/// ``backbone.forward(x, keep_all=True)`` every layer's output by name.
#[pyclass(frozen, module = "atrous")]
struct Backbone {
    net: Net,
    #[pyo3(get)]
    arch: String,
    #[pyo3(get)]
    output_stride: usize,
    #[pyo3(get)]
    multi_grid: Option<Vec<usize>>,
}

#[pymethods]
impl Backbone {
    #[new]
    #[pyo3(signature = (arch="resnet50", output_stride=16, multi_grid=None, weights=None, weights_prefix="", device="gpu"))]
    fn new(
        py: Python<'_>,
        arch: &str,
        output_stride: i64,
        multi_grid: Option<Vec<i64>>,
        weights: Option<&Bound<'_, PyAny>>,
        weights_prefix: &str,
        device: &str,
    ) -> PyResult<Self> {
        let arch: Arch = arch.parse().map_err(PyValueError::new_err)?;
        let device = self::device(device)?;
        let mut config = ResNetConfig::new(arch, self::output_stride(output_stride)?);
        config.multi_grid = rates("multi_grid", multi_grid)?;
        let path = weights_path(weights)?;
        let prefix = weights_prefix.to_owned();
        let build_config = config.clone();
        let (network, unused) = py
            .detach(move || -> Result<_, Error> {
                match path {
                    None => Ok((resnet(&build_config, &mut SeededWeights::new(DEFAULT_SEED))?, Vec::new())),
                    Some(path) => {
                        let mut file = SafetensorsWeights::open(&path)?;
                        let network = resnet(&build_config, &mut Prefixed::new(&mut file, &prefix))?;
                        let unused = file.unused(&prefix, &[&format!("{prefix}fc.")]).into_iter().map(str::to_owned).collect();
                        Ok((network, unused))
                    }
                }
            })
            .map_err(err)?;
        Ok(Backbone { net: Net { network, device, unused }, arch: arch.to_string(), output_stride: config.output_stride, multi_grid: config.multi_grid })
    }

    /// backbone(x) -> layer4's features, float32 NCHW.
    fn __call__<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Array<'py>> {
        self.net.call(py, x)
    }

    /// The outputs by layer name: with ``keep_all`` every layer's (for a layer-by-layer
    /// comparison), else the last layer's only.
    #[pyo3(signature = (x, keep_all=false))]
    fn forward<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>, keep_all: bool) -> PyResult<Bound<'py, PyDict>> {
        self.net.outputs(py, x, keep_all)
    }

    /// Every layer's output shape for an input of ``shape`` (NCHW), by name, in order; nothing
    /// runs. A shape the network cannot take raises ``ValueError`` naming the layer.
    fn output_shapes(&self, shape: Vec<usize>) -> PyResult<Vec<(String, Vec<usize>)>> {
        self.net.output_shapes(shape)
    }

    /// The layers' names in execution order (torchvision's module names: ``conv1``,
    /// ``layer3.2.conv2``, …), the keys of ``forward(x, keep_all=True)``.
    #[getter]
    fn layer_names(&self) -> Vec<String> {
        self.net.layer_names()
    }

    /// ``"gpu"`` or ``"cpu"``.
    #[getter]
    fn device(&self) -> &'static str {
        self.net.device.name()
    }

    /// Tensors of the weights file the network did not use (``fc.*`` aside); a long list
    /// usually means the file is for another architecture.
    #[getter]
    fn unused_weights(&self) -> Vec<String> {
        self.net.unused.clone()
    }

    fn __repr__(&self) -> String {
        let grid = self.multi_grid.as_ref().map_or("None".to_owned(), |g| format!("{g:?}"));
        format!("Backbone(arch='{}', output_stride={}, multi_grid={grid}, device='{}')", self.arch, self.output_stride, self.net.device)
    }
}

/// torchvision's DeepLabv3 (ASPP) or FCN head on a ResNet, as ``atrous segment``.
///
/// ``model`` is ``deeplabv3_`` or ``fcn_`` + ``resnet18/34/50/101/152``. ``output_stride`` 8
/// (torchvision's) or 16 (4 and 32 work too). ``rates``: DeepLabv3's ASPP rates (default
/// 96/OS, 192/OS, 288/OS). ``classes``: of the seeded weights (21 by default; a weights file
/// says how many it has). ``upsample``: ``"bilinear"`` (as torchvision) or ``"transposed"``
/// (the FCN paper's transposed convolution). ``aux``: also build the auxiliary head
/// (``aux_classifier.*``), whose logits ``aux_logits(x)`` returns with the main ones.
/// ``weights``: a torchvision segmentation state dict as ``.safetensors``, or None for seeded
/// weights.
///
/// ``model(x)`` returns the logits ``[N, classes, H, W]`` for an ``[N, 3, H, W]`` input.
#[pyclass(frozen, module = "atrous")]
struct Segmentation {
    net: Net,
    #[pyo3(get)]
    model: String,
    #[pyo3(get)]
    output_stride: usize,
    #[pyo3(get)]
    rates: Option<Vec<usize>>,
    #[pyo3(get)]
    classes: usize,
    #[pyo3(get)]
    upsample: String,
    #[pyo3(get)]
    aux: bool,
}

#[pymethods]
impl Segmentation {
    #[new]
    #[pyo3(signature = (model="deeplabv3_resnet50", output_stride=8, rates=None, classes=None, upsample="bilinear", aux=false, weights=None, device="gpu"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: &str,
        output_stride: i64,
        rates: Option<Vec<i64>>,
        classes: Option<i64>,
        upsample: &str,
        aux: bool,
        weights: Option<&Bound<'_, PyAny>>,
        device: &str,
    ) -> PyResult<Self> {
        let model: Model = model.parse().map_err(PyValueError::new_err)?;
        let device = self::device(device)?;
        let output_stride = self::output_stride(output_stride)?;
        let rates = self::rates("rates", rates)?;
        if rates.is_some() && model.head != Head::DeepLabV3 {
            return Err(PyValueError::new_err(format!("rates sets DeepLabv3's ASPP rates; {model} has no ASPP")));
        }
        let classes = classes
            .map(|c| usize::try_from(c).map_err(|_| PyValueError::new_err(format!("classes must be at least 1, got {c}"))))
            .transpose()?;
        let upsample = match upsample {
            "bilinear" => Upsample::Bilinear,
            "transposed" => Upsample::Transposed,
            other => return Err(PyValueError::new_err(format!("unknown upsample '{other}': expected bilinear or transposed"))),
        };
        let path = weights_path(weights)?;
        let mut config = SegmentationConfig::new(model, output_stride);
        config.rates = rates;
        config.upsample = upsample;
        config.aux = aux;
        let aspp_rates = (model.head == Head::DeepLabV3).then(|| config.aspp_rates());
        // As `atrous segment` (src/commands/segment.rs): a weights file's classifier says how
        // many classes there are.
        let (network, unused, classes) = py
            .detach(move || -> Result<_, Error> {
                let Some(path) = path else {
                    config.classes = classes.unwrap_or(VOC_CLASSES);
                    return Ok((segmentation(&config, &mut SeededWeights::new(DEFAULT_SEED))?, Vec::new(), config.classes));
                };
                let mut file = SafetensorsWeights::open(&path)?;
                let in_file = file.shape_of("classifier.4.weight").map(|shape| shape[0]);
                config.classes = match (classes, in_file) {
                    (Some(asked), Some(found)) if asked != found => {
                        return Err(Error::Config(format!(
                            "classes={asked} disagrees with {}: its classifier.4.weight has {found} classes",
                            path.display()
                        )))
                    }
                    (_, Some(found)) => found,
                    // Without classifier.4.weight the build below is refused, naming the tensor.
                    (asked, None) => asked.unwrap_or(VOC_CLASSES),
                };
                let network = segmentation(&config, &mut file)?;
                let ignored: &[&str] = if aux { &[] } else { &["aux_classifier."] };
                let unused = file.unused("", ignored).into_iter().map(str::to_owned).collect();
                Ok((network, unused, config.classes))
            })
            .map_err(err)?;
        Ok(Segmentation {
            net: Net { network, device, unused },
            model: model.to_string(),
            output_stride,
            rates: aspp_rates,
            classes,
            upsample: upsample.to_string(),
            aux,
        })
    }

    /// model(x) -> the logits, float32 ``[N, classes, H, W]``.
    fn __call__<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Array<'py>> {
        self.net.call(py, x)
    }

    /// The outputs by layer name: with ``keep_all`` every layer's, else the network's outputs
    /// only (the logits, and with ``aux=True`` the auxiliary head's logits too).
    #[pyo3(signature = (x, keep_all=false))]
    fn forward<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>, keep_all: bool) -> PyResult<Bound<'py, PyDict>> {
        self.net.outputs(py, x, keep_all)
    }

    /// Both heads' logits in one pass; needs ``aux=True``.
    fn aux_logits<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<(Array<'py>, Array<'py>)> {
        let Some(&aux_index) = self.net.network.extra_outputs.first() else {
            return Err(PyValueError::new_err("this model has no auxiliary head: build it with aux=True"));
        };
        let mut outputs = self.net.forward(py, x, Keep::Last)?;
        let missing = || PyRuntimeError::new_err("an output of the network was not kept");
        let logits = outputs.pop().flatten().ok_or_else(missing)?;
        let aux = outputs.get_mut(aux_index).and_then(Option::take).ok_or_else(missing)?;
        Ok((ndarray(py, logits)?, ndarray(py, aux)?))
    }

    /// Every layer's output shape for an input of ``shape`` (NCHW), by name, in order.
    fn output_shapes(&self, shape: Vec<usize>) -> PyResult<Vec<(String, Vec<usize>)>> {
        self.net.output_shapes(shape)
    }

    /// The layers' names in execution order (``conv1``, …, ``classifier.0.convs.1.0``, …, ``upsample``).
    #[getter]
    fn layer_names(&self) -> Vec<String> {
        self.net.layer_names()
    }

    /// ``"gpu"`` or ``"cpu"``.
    #[getter]
    fn device(&self) -> &'static str {
        self.net.device.name()
    }

    /// Tensors of the weights file the model did not use (``aux_classifier.*`` aside unless
    /// ``aux``).
    #[getter]
    fn unused_weights(&self) -> Vec<String> {
        self.net.unused.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "Segmentation(model='{}', output_stride={}, classes={}, upsample='{}', aux={}, device='{}')",
            self.model,
            self.output_stride,
            self.classes,
            self.upsample,
            if self.aux { "True" } else { "False" },
            self.net.device
        )
    }
}

// ---------------------------------------------------------------------------------------------

/// Dilated (atrous) and transposed convolutions as WGSL compute shaders on any GPU that wgpu
/// reaches (Vulkan, Metal, DX12, GL; Mesa's lavapipe where there is none), with a CPU path to
/// check them against. NumPy float32 NCHW arrays in and out; PyTorch's conventions.
#[pymodule]
fn atrous(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(conv2d, m)?)?;
    m.add_function(wrap_pyfunction!(conv_transpose2d, m)?)?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add_function(wrap_pyfunction!(adapter, m)?)?;
    m.add_function(wrap_pyfunction!(compare, m)?)?;
    m.add_class::<Backbone>()?;
    m.add_class::<Segmentation>()?;
    m.add_class::<Difference>()?;
    m.add("GpuError", m.py().get_type::<GpuError>())?;
    m.add("OP_TOLERANCE", OP_TOLERANCE)?;
    m.add("NETWORK_TOLERANCE", NETWORK_TOLERANCE)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
