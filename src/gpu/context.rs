//! The wgpu context: adapter choice, device, pipeline cache, buffers, and error scopes that turn
//! wgpu's validation errors into values instead of panics.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};

use thiserror::Error;
use wgpu::util::DeviceExt;

use super::shaders::Shader;
use super::steps::Span;
use super::kernels::KernelChoice;
use super::precision::{Precision, PrecisionChoice, PRECISION_VARIABLE};

/// What can go wrong on the GPU side.
#[derive(Debug, Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter found (backends tried: {backends}). On Linux without a GPU, install Mesa's software Vulkan driver: `apt-get install mesa-vulkan-drivers`; elsewhere, install or update the GPU's driver. WGPU_BACKEND=vulkan|metal|dx12|gl chooses the backend"
    )]
    NoAdapter { backends: String },
    #[error("no adapter's name contains '{wanted}'; the adapters here are: {available}")]
    NoAdapterNamed { wanted: String, available: String },
    #[error("unknown backend '{0}': expected vulkan, metal, dx12 or gl (or a comma-separated list)")]
    UnknownBackend(String),
    #[error("adapter '{adapter}' refused to open a device: {reason}")]
    RequestDevice { adapter: String, reason: String },
    #[error("GPU validation error while {what}: {message}")]
    Validation { what: String, message: String },
    #[error("the GPU ran out of memory while {what}")]
    OutOfMemory { what: String },
    #[error("{what} needs {bytes} bytes, more than this adapter's {limit_name} ({limit} bytes) on '{adapter}'")]
    TooLarge { what: String, bytes: u64, limit_name: &'static str, limit: u64, adapter: String },
    #[error("{what} = {value} does not fit the shader's 32-bit index arithmetic")]
    IndexOverflow { what: &'static str, value: u64 },
    #[error("reading results back from the GPU failed: {0}")]
    ReadBack(String),
    #[error("there is no {kernel} kernel for {op}")]
    NoSuchKernel { kernel: &'static str, op: &'static str },
    #[error("{name}={value} is not a byte count: expected a positive whole number of bytes, such as 65536")]
    BadByteCount { name: &'static str, value: String },
    #[error("precision {precision} needs wgpu's SHADER_F16 feature (f16 in shaders and storage buffers), which adapter '{adapter}' does not have; use --precision f32, or --precision fastest to fall back to f32 where f16 is missing")]
    NoShaderF16 { precision: Precision, adapter: String },
    #[error("{variable}: {message}")]
    BadPrecision { variable: &'static str, message: String },
}

/// How to choose the adapter. Unset fields fall back to the wgpu environment variables
/// `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`, then to the best adapter found.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Backends to consider, e.g. `"vulkan"` or `"vulkan,gl"`.
    pub backend: Option<String>,
    /// A case-insensitive substring of the adapter's name.
    pub adapter_name: Option<String>,
    /// Cap on the size of one buffer (never above the adapter's `max_buffer_size`): a batch
    /// whose tensors exceed it runs in chunks of samples. Lets tests exercise that on any device.
    pub max_buffer_bytes: Option<u64>,
    /// Cap on the bytes one storage binding may span (never above the adapter's
    /// `max_storage_buffer_binding_size`): ops whose tensors exceed it run in parts
    /// (src/gpu/split.rs). `None`: `$ATROUS_MAX_BINDING_BYTES` where set. Lets tests and users
    /// exercise splitting on small shapes.
    pub max_binding_bytes: Option<u64>,
    /// Whether the kernels that can skip taps read only in the padding do (the forward lanes
    /// and GEMM kernels); `None`: yes unless `$ATROUS_TAP_SKIPPING` is `0`. Off, they compute every tap,
    /// as PyTorch does: the same results, for measuring what skipping saves.
    pub skip_padding_taps: Option<bool>,
    /// Leave subgroup operations off even where the adapter has them: the tiled kernels then
    /// load their weights as on a device without subgroups (lets tests exercise that path).
    pub without_subgroups: bool,
    /// Never pick the lanes kernels by default: the tiled ones run where they would (with
    /// subgroup weights where the adapter has subgroups; lets tests exercise that path).
    pub without_lanes: bool,
    /// The kernel every convolution runs on ([`KernelChoice::Auto`]: the fastest measured, or the
    /// rule's); pooling is unaffected.
    pub kernel: KernelChoice,
    /// Whether [`KernelChoice::Auto`] times the candidate kernels of each shape class and keeps
    /// the fastest (src/gpu/autotune.rs); `None`: yes unless the environment variable
    /// `ATROUS_AUTOTUNE` is `0`.
    pub autotune: Option<bool>,
    /// Where the autotuning cache (`autotune.json`) lives; `None`: `$ATROUS_CACHE_DIR`, else
    /// `atrous` under the user's cache directory ([`super::autotune_cache_dir`]).
    pub cache_dir: Option<PathBuf>,
    /// Seconds of tuning after which further shape classes follow the rule for the life of
    /// this `Gpu` (left untuned on disk, for a later run); `None`: [`super::TUNING_BUDGET_SECONDS`].
    pub tuning_budget: Option<f64>,
    /// The precision tensors are stored and summed in on the device ([`Precision`]); `None`:
    /// `$ATROUS_PRECISION` (a name `PrecisionChoice` parses), else f32.
    pub precision: Option<PrecisionChoice>,
}

impl GpuOptions {
    fn backends(&self) -> Result<wgpu::Backends, GpuError> {
        let from_text = |text: &str| {
            let backends = wgpu::Backends::from_comma_list(text);
            if backends.is_empty() {
                Err(GpuError::UnknownBackend(text.to_owned()))
            } else {
                Ok(backends)
            }
        };
        match (&self.backend, std::env::var("WGPU_BACKEND")) {
            (Some(text), _) => from_text(text),
            (None, Ok(text)) if !text.trim().is_empty() => from_text(&text),
            _ => Ok(wgpu::Backends::PRIMARY | wgpu::Backends::GL),
        }
    }

    /// Whether the user named the backends (then they are all tried at once).
    fn backend_chosen(&self) -> bool {
        self.backend.is_some() || std::env::var("WGPU_BACKEND").is_ok_and(|t| !t.trim().is_empty())
    }

    /// [`GpuOptions::max_binding_bytes`], else `$ATROUS_MAX_BINDING_BYTES`.
    fn max_binding_bytes(&self) -> Result<Option<u64>, GpuError> {
        if self.max_binding_bytes.is_some() {
            return Ok(self.max_binding_bytes);
        }
        match std::env::var(MAX_BINDING_BYTES_VARIABLE) {
            Ok(text) if !text.trim().is_empty() => match text.trim().parse::<u64>() {
                Ok(bytes) if bytes > 0 => Ok(Some(bytes)),
                _ => Err(GpuError::BadByteCount { name: MAX_BINDING_BYTES_VARIABLE, value: text }),
            },
            _ => Ok(None),
        }
    }

    /// [`GpuOptions::precision`], else `$ATROUS_PRECISION`, else f32.
    fn precision(&self) -> Result<PrecisionChoice, GpuError> {
        if let Some(choice) = self.precision {
            return Ok(choice);
        }
        match std::env::var(PRECISION_VARIABLE) {
            Ok(text) if !text.trim().is_empty() => text.parse().map_err(|message| GpuError::BadPrecision { variable: PRECISION_VARIABLE, message }),
            _ => Ok(PrecisionChoice::Exactly(Precision::F32)),
        }
    }

    fn adapter_name(&self) -> Option<String> {
        self.adapter_name.clone().or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok()).filter(|n| !n.trim().is_empty())
    }
}

/// The environment variable that forces a smaller binding limit ([`GpuOptions::max_binding_bytes`]).
pub const MAX_BINDING_BYTES_VARIABLE: &str = "ATROUS_MAX_BINDING_BYTES";

/// What a person needs to know about an adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: wgpu::Backend,
    pub device_type: wgpu::DeviceType,
    pub driver: String,
    pub driver_info: String,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub timestamp_query: bool,
    /// Whether the adapter has `SHADER_F16`, which the f16 precisions need.
    pub shader_f16: bool,
}

impl AdapterSummary {
    fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let limits = adapter.limits();
        AdapterSummary {
            name: info.name,
            backend: info.backend,
            device_type: info.device_type,
            driver: info.driver,
            driver_info: info.driver_info,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            timestamp_query: adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY),
            shader_f16: adapter.features().contains(wgpu::Features::SHADER_F16),
        }
    }

    /// Lower is better: real GPUs before virtual and software ones.
    fn device_rank(&self) -> u8 {
        match self.device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Cpu => 3,
            wgpu::DeviceType::Other => 4,
        }
    }

    /// Lower is better: the native APIs before GL, which is only a fallback.
    fn backend_rank(&self) -> u8 {
        match self.backend {
            wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
            wgpu::Backend::Gl => 1,
            _ => 2,
        }
    }
}

impl fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?}, {:?}", self.name, self.backend, self.device_type)?;
        if !self.driver.is_empty() {
            write!(f, ", driver {}", self.driver)?;
            if !self.driver_info.is_empty() {
                write!(f, " {}", self.driver_info)?;
            }
        }
        write!(f, ")")
    }
}


/// An open GPU device with its queue and caches. Create one and reuse it: opening a device and
/// compiling pipelines are the slow parts.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    summary: AdapterSummary,
    limits: wgpu::Limits,
    max_buffer_bytes: u64,
    max_binding_bytes: u64,
    /// Whether `max_binding_bytes` was forced below the adapter's limit.
    binding_forced: bool,
    pipelines: Mutex<HashMap<Shader, wgpu::ComputePipeline>>,
    /// Pipelines compiled so far ([`Gpu::compiled_pipelines`]).
    compilations: std::sync::atomic::AtomicUsize,
    uncaptured: Arc<Mutex<Vec<String>>>,
    /// One zero, bound where a kernel's optional input (bias, residual) is absent.
    placeholder: wgpu::Buffer,
    /// [`GpuOptions::without_lanes`].
    pub(crate) without_lanes: bool,
    /// [`GpuOptions::skip_padding_taps`], resolved.
    pub(crate) skip_padding_taps: bool,
    /// [`GpuOptions::kernel`].
    pub(crate) kernel: KernelChoice,
    /// Autotuning's settings, cache and counters.
    pub(crate) tuner: super::autotune::Tuner,
    /// What tensors are stored and summed in.
    precision: Precision,
    /// Why the precision is not the one asked for (`fastest` on a CPU adapter or one without SHADER_F16).
    precision_note: Option<String>,
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    descriptor.backends = backends;
    wgpu::Instance::new(descriptor)
}

fn enumerate(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance(backends).enumerate_adapters(backends))
}

/// The adapters `options` allow, best first. `all` lists GL too; otherwise GL is probed only
/// when no native (Vulkan, Metal, DX12) adapter exists — it is a fallback, and probing it
/// makes some drivers print noise.
fn adapters(options: &GpuOptions, all: bool) -> Result<Vec<wgpu::Adapter>, GpuError> {
    let backends = options.backends()?;
    let mut found = if all || options.backend_chosen() {
        enumerate(backends)
    } else {
        let native = enumerate(backends - wgpu::Backends::GL);
        if native.is_empty() { enumerate(backends & wgpu::Backends::GL) } else { native }
    };
    found.sort_by_key(|a| {
        let s = AdapterSummary::of(a);
        (s.backend_rank(), s.device_rank())
    });
    if found.is_empty() {
        return Err(GpuError::NoAdapter { backends: format!("{backends:?}") });
    }
    Ok(found)
}

impl Gpu {
    /// Every adapter the options allow (ignoring the name filter), best first.
    pub fn enumerate(options: &GpuOptions) -> Result<Vec<AdapterSummary>, GpuError> {
        Ok(adapters(options, true)?.iter().map(AdapterSummary::of).collect())
    }

    /// Opens the best adapter that matches `options` (see [`GpuOptions`]).
    pub fn new(options: &GpuOptions) -> Result<Gpu, GpuError> {
        let candidates = adapters(options, false)?;
        let adapter = match options.adapter_name() {
            None => candidates.into_iter().next(),
            Some(wanted) => {
                let needle = wanted.to_lowercase();
                let names: Vec<String> = candidates.iter().map(|a| a.get_info().name).collect();
                candidates
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&needle))
                    .ok_or_else(|| GpuError::NoAdapterNamed { wanted, available: names.join(", ") })
                    .map(Some)?
            }
        }
        .expect("adapters() returns a non-empty list");
        let summary = AdapterSummary::of(&adapter);
        let limits = adapter.limits();
        // Subgroups let the tiled kernels share weight loads and run the lanes kernels (src/gpu/kernels/).
        let mut wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP;
        if options.without_subgroups {
            wanted.remove(wgpu::Features::SUBGROUP);
        }
        let (precision, precision_note) = match options.precision()? {
            PrecisionChoice::Exactly(precision) if precision.needs_f16() && !summary.shader_f16 => {
                return Err(GpuError::NoShaderF16 { precision, adapter: summary.name.clone() });
            }
            PrecisionChoice::Exactly(precision) => (precision, None),
            PrecisionChoice::Fastest if summary.device_type == wgpu::DeviceType::Cpu => {
                (Precision::F32, Some(format!("'{}' is a CPU adapter, where f16 arithmetic is emulated and slower than f32: running in f32", summary.name)))
            }
            PrecisionChoice::Fastest if summary.shader_f16 => (Precision::F16Accumulate, None),
            PrecisionChoice::Fastest => (Precision::F32, Some(format!("adapter '{}' does not have wgpu's SHADER_F16 feature: running in f32, not f16", summary.name))),
        };
        if precision.needs_f16() {
            wanted |= wgpu::Features::SHADER_F16;
        }
        let features = adapter.features() & wanted;
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("atrous"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&descriptor))
            .map_err(|e| GpuError::RequestDevice { adapter: summary.name.clone(), reason: e.to_string() })?;
        // Errors outside our scopes are recorded and reported by the next scoped call, not panicked on.
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| sink.lock().unwrap().push(e.to_string())));
        let max_buffer_bytes = options.max_buffer_bytes.map_or(limits.max_buffer_size, |cap| cap.min(limits.max_buffer_size));
        let adapter_binding = limits.max_storage_buffer_binding_size.min(max_buffer_bytes);
        let forced = options.max_binding_bytes()?;
        let max_binding_bytes = forced.map_or(adapter_binding, |cap| cap.min(adapter_binding));
        let placeholder = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("placeholder"),
            contents: bytemuck::bytes_of(&0.0f32),
            usage: wgpu::BufferUsages::STORAGE,
        });
        Ok(Gpu {
            device,
            queue,
            summary,
            limits,
            max_buffer_bytes,
            max_binding_bytes,
            binding_forced: max_binding_bytes < adapter_binding,
            pipelines: Mutex::default(),
            compilations: Default::default(),
            uncaptured,
            placeholder,
            without_lanes: options.without_lanes,
            skip_padding_taps: options.skip_padding_taps.unwrap_or_else(crate::backend::tap_skipping_from_env),
            kernel: options.kernel,
            tuner: super::autotune::Tuner::new(options),
            precision,
            precision_note,
        })
    }

    /// The adapter in use.
    pub fn summary(&self) -> &AdapterSummary {
        &self.summary
    }

    /// The precision tensors are stored and summed in on this device.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Why [`Gpu::precision`] is not what was asked for, where it is not.
    pub fn precision_note(&self) -> Option<&str> {
        self.precision_note.as_deref()
    }

    /// Bytes of one stored value of a tensor.
    pub(crate) fn value_bytes(&self) -> u64 {
        self.precision.element_bytes()
    }

    /// The device's limits (those of the adapter: atrous asks for all it offers).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// Largest buffer one tensor may occupy: the adapter's `max_buffer_size` (or
    /// [`GpuOptions::max_buffer_bytes`] when smaller).
    pub fn max_buffer_bytes(&self) -> u64 {
        self.max_buffer_bytes
    }

    /// Most bytes one storage binding may span: the adapter's `max_storage_buffer_binding_size`
    /// (or [`GpuOptions::max_binding_bytes`] when smaller); larger tensors run in parts.
    pub fn max_binding_bytes(&self) -> u64 {
        self.max_binding_bytes
    }

    pub(crate) fn device(&self) -> &wgpu::Device {
        &self.device
    }

    pub(crate) fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    pub(crate) fn placeholder(&self) -> &wgpu::Buffer {
        &self.placeholder
    }

    /// Most stored values one binding may span ([`Gpu::max_binding_bytes`]), rounded down to
    /// whole 4-byte words: what ops are split by (src/gpu/split.rs).
    pub(crate) fn binding_values(&self) -> u64 {
        self.max_binding_bytes / 4 * 4 / self.value_bytes()
    }

    /// The name of the limit that [`Gpu::max_buffer_bytes`] comes from, for error messages.
    fn buffer_limit_name(&self) -> &'static str {
        if self.max_buffer_bytes < self.limits.max_buffer_size {
            "configured max_buffer_bytes"
        } else {
            "max_buffer_size"
        }
    }

    /// The error for `what`, which needs `bytes` in one binding even when split as finely as
    /// atrous splits.
    pub(crate) fn binding_too_large(&self, what: &str, bytes: u64) -> GpuError {
        let limit_name = if self.binding_forced { "binding limit set by ATROUS_MAX_BINDING_BYTES / max_binding_bytes" } else { "max_storage_buffer_binding_size" };
        GpuError::TooLarge { what: what.to_owned(), bytes, limit_name, limit: self.max_binding_bytes, adapter: self.summary.name.clone() }
    }

    /// Runs `f` inside validation and out-of-memory error scopes and turns what they catch
    /// (or what was reported uncaptured) into a [`GpuError`].
    pub(crate) fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T, GpuError> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let validation = pollster::block_on(validation.pop());
        let oom = pollster::block_on(oom.pop());
        if let Some(error) = validation {
            return Err(GpuError::Validation { what: what.to_owned(), message: error.to_string() });
        }
        if oom.is_some() {
            return Err(GpuError::OutOfMemory { what: what.to_owned() });
        }
        let stray: Vec<String> = std::mem::take(&mut *self.uncaptured.lock().unwrap());
        if !stray.is_empty() {
            return Err(GpuError::Validation { what: what.to_owned(), message: stray.join("; ") });
        }
        Ok(value)
    }

    /// How many times this context has compiled a compute pipeline: once per kernel it ran.
    pub fn compiled_pipelines(&self) -> usize {
        self.compilations.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The compute pipeline for `shader` in this context's precision, compiled once and cached
    /// for the life of this context.
    /// Override constants keep their WGSL defaults: a kernel's `WORKGROUP_SIZE` is the size it
    /// is dispatched with ([`Shader::workgroup_size`]).
    pub(crate) fn pipeline(&self, shader: Shader) -> Result<wgpu::ComputePipeline, GpuError> {
        let shader = shader.in_precision(self.precision);
        if let Some(pipeline) = self.pipelines.lock().unwrap().get(&shader) {
            return Ok(pipeline.clone());
        }
        let pipeline = self.scoped(&format!("compiling {}", shader.name), || {
            let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(shader.name),
                source: wgpu::ShaderSource::Wgsl(shader.source.into()),
            });
            self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(shader.name),
                layout: None,
                module: &module,
                entry_point: Some(shader.entry_point),
                compilation_options: wgpu::PipelineCompilationOptions::default(),
                cache: None,
            })
        })?;
        self.compilations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.pipelines.lock().unwrap().insert(shader, pipeline.clone());
        Ok(pipeline)
    }

    /// A storage buffer holding `data` in the device's precision, refused with the limit named
    /// when it is too large.
    pub(crate) fn storage_buffer(&self, what: &str, data: &[f32]) -> Result<wgpu::Buffer, GpuError> {
        let contents = self.stored_bytes(data);
        self.check_size(what, contents.len() as u64)?;
        Ok(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(what),
            contents: &contents,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        }))
    }

    /// `data` as the device stores it, padded to a whole number of 4-byte words (buffer sizes,
    /// writes and copies are counted in those).
    fn stored_bytes<'d>(&self, data: &'d [f32]) -> Cow<'d, [u8]> {
        match self.precision {
            Precision::F32 => Cow::Borrowed(bytemuck::cast_slice(data)),
            Precision::F16 | Precision::F16Accumulate => {
                let mut bytes: Vec<u8> = data.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect();
                bytes.resize(bytes.len().next_multiple_of(4), 0);
                Cow::Owned(bytes)
            }
        }
    }

    /// Bytes of storage for `len` stored values: whole 4-byte words.
    pub(crate) fn storage_bytes(&self, len: usize) -> u64 {
        (len as u64 * self.value_bytes()).next_multiple_of(4)
    }

    /// An uninitialised storage buffer of `bytes` (a multiple of 4).
    pub(crate) fn raw_buffer(&self, what: &str, bytes: u64) -> Result<wgpu::Buffer, GpuError> {
        self.check_size(what, bytes)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// An uninitialised storage buffer of `len` stored values that results are written to (and
    /// that may be filled from the host, as a network's input slot is).
    pub(crate) fn output_buffer(&self, what: &str, len: usize) -> Result<wgpu::Buffer, GpuError> {
        self.raw_buffer(what, self.storage_bytes(len))
    }

    /// Storage for a tensor of `len` values: one buffer, or pieces of one buffer each where it
    /// would exceed [`Gpu::max_buffer_bytes`] (of an even number of values, so that every
    /// piece starts on a 4-byte word).
    pub(crate) fn tensor_storage(&self, what: &str, len: usize) -> Result<Span, GpuError> {
        let value_bytes = self.value_bytes();
        let piece_len = ((self.max_buffer_bytes / 4 * 4 / value_bytes).max(2) as usize) & !1;
        if len <= piece_len {
            return Ok(Span::new(&self.output_buffer(what, len)?, len, value_bytes));
        }
        let pieces = (0..len.div_ceil(piece_len)).map(|i| self.output_buffer(what, piece_len.min(len - i * piece_len))).collect::<Result<_, _>>()?;
        Ok(Span::in_pieces(pieces, piece_len, len, value_bytes))
    }

    /// A tensor holding `data` ([`Gpu::tensor_storage`]).
    pub(crate) fn upload(&self, what: &str, data: &[f32]) -> Result<Span, GpuError> {
        let span = self.tensor_storage(what, data.len())?;
        self.write_tensor(&span, data);
        Ok(span)
    }

    /// Queues the write of `data` into `span`'s first `data.len()` values (each piece's share
    /// starts on a word; a share of an odd number of f16s writes one padding value after it,
    /// inside the piece's storage).
    pub(crate) fn write_tensor(&self, span: &Span, data: &[f32]) {
        let mut at = 0;
        for (buffer, offset, len) in Span::prefix(span, data.len()).buffers() {
            self.queue.write_buffer(buffer, offset as u64 * self.value_bytes(), &self.stored_bytes(&data[at..at + len]));
            at += len;
        }
    }

    /// Records copies of `span`'s values into mappable buffers (one per piece), for
    /// [`Gpu::map_all`]; [`Gpu::read_staged`] puts the values back together.
    pub(crate) fn stage_tensor(&self, encoder: &mut wgpu::CommandEncoder, span: &Span) -> Vec<wgpu::Buffer> {
        span.buffers()
            .map(|(buffer, offset, len)| {
                let bytes = self.storage_bytes(len);
                let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("read-back"),
                    size: bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                encoder.copy_buffer_to_buffer(buffer, offset as u64 * self.value_bytes(), &staging, 0, bytes);
                staging
            })
            .collect()
    }

    /// The values of a tensor of `len` values from its staged pieces ([`Gpu::stage_tensor`]),
    /// mapped, in order, as f32s.
    pub(crate) fn read_staged(&self, pieces: Vec<Vec<u8>>, len: usize) -> Vec<f32> {
        let mut values: Vec<f32> = match self.precision {
            Precision::F32 => pieces.iter().flat_map(|bytes| bytemuck::pod_collect_to_vec::<u8, f32>(bytes)).collect(),
            Precision::F16 | Precision::F16Accumulate => {
                pieces.iter().flat_map(|bytes| bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())).collect()
            }
        };
        values.truncate(len);
        values
    }

    /// The values of `span` once everything submitted so far has run.
    pub(crate) fn read_tensor(&self, span: &Span) -> Result<Vec<f32>, GpuError> {
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("read-back") });
        let staged = self.stage_tensor(&mut encoder, span);
        self.queue.submit([encoder.finish()]);
        Ok(self.read_staged(self.map_all(&staged)?, span.len))
    }

    pub(crate) fn check_size(&self, what: &str, bytes: u64) -> Result<(), GpuError> {
        if bytes > self.max_buffer_bytes {
            return Err(GpuError::TooLarge {
                what: what.to_owned(),
                bytes,
                limit_name: self.buffer_limit_name(),
                limit: self.max_buffer_bytes,
                adapter: self.summary.name.clone(),
            });
        }
        Ok(())
    }

    /// Records a copy of the first `bytes` of `source` into a new mappable buffer.
    pub(crate) fn stage(&self, encoder: &mut wgpu::CommandEncoder, source: &wgpu::Buffer, bytes: u64) -> wgpu::Buffer {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read-back"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        encoder.copy_buffer_to_buffer(source, 0, &staging, 0, bytes);
        staging
    }

    /// Maps every staged buffer once the work submitted so far has run, and returns their bytes.
    pub(crate) fn map_all(&self, staged: &[wgpu::Buffer]) -> Result<Vec<Vec<u8>>, GpuError> {
        let (sender, receiver) = mpsc::channel();
        for (index, buffer) in staged.iter().enumerate() {
            let sender = sender.clone();
            buffer.map_async(wgpu::MapMode::Read, .., move |result| {
                let _ = sender.send((index, result));
            });
        }
        drop(sender);
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| GpuError::ReadBack(e.to_string()))?;
        for (index, result) in receiver.iter() {
            result.map_err(|e| GpuError::ReadBack(format!("buffer {index}: {e}")))?;
        }
        staged
            .iter()
            .map(|buffer| {
                let bytes = buffer.get_mapped_range(..).map_err(|e| GpuError::ReadBack(e.to_string()))?.to_vec();
                buffer.unmap();
                Ok(bytes)
            })
            .collect()
    }

}

/// `error`; where it is the GPU running out of memory, with what `explain` says was being done:
/// the sizes asked for and the ways out.
pub(crate) fn explain_out_of_memory(error: GpuError, explain: impl FnOnce() -> String) -> GpuError {
    match error {
        GpuError::OutOfMemory { .. } => GpuError::OutOfMemory { what: explain() },
        other => other,
    }
}
