//! The dilation throughput profiler behind `atrous bench`: how fast a convolution runs as its
//! dilation grows, on the GPU and on the fast CPU path, in useful GFLOP/s.
//!
//! A [`BenchConfig`] describes one shape and a list of dilations; every configuration is
//! validated through [`WindowGeometry`] before anything runs ([`BenchConfig::cases`]). Padding is
//! `dilation·(k−1)/2`, which keeps the size at stride 1 (for the transposed op too). [`run`]
//! times each configuration — warm-up runs first, then the timed repeats, summarised as median,
//! min and max — and returns [`Record`]s: useful GFLOP ([`WindowGeometry::flops`]), GFLOP/s at the
//! median, and the dilation penalty (throughput relative to the dilation-1 row of the same op
//! and device). With `peak` set, each device's attainable FP32 FMA rate is measured first and
//! every record gets its fraction of it.
//!
//! GPU times come from timestamp queries around each dispatch where the device has them, else
//! from the wall clock around submit + wait ([`crate::gpu::Gpu::time_convolution`]); CPU times
//! from the wall clock around the fast CPU convolution ([`crate::backend::Cpu`]). A time that is
//! zero or negative is an error ([`check_positive_time`]): a clock that cannot resolve the work
//! must not turn into an infinite GFLOP/s. The GPU's result of the first configuration of each
//! op is checked against the CPU (relative 1e-3), for every GPU kernel timed.
//! [`BenchConfig::gpu_kernel`] can force one GPU kernel, or time every one that applies and then
//! the auto choice ([`GpuKernels::All`]); each record names the kernel that ran (`kernel`:
//! `tiled`, …, or `auto:NAME` for the auto choice, NAME being what it picked).

mod peak;
pub(crate) mod plot;
pub(crate) mod report;

pub use peak::{cpu_bandwidth, cpu_fma_peak, cpu_name, CpuBandwidthRuns, CpuPeakRuns};
pub use plot::{plot_png, write_plot};
pub use report::{format_table, to_csv, to_json, write_csv, write_json, COLUMNS, PEAK_COLUMNS};

pub use crate::backend::Device;
pub use crate::gpu::TimingSource;

use std::fmt;
use std::time::Instant;

use serde::Serialize;
use thiserror::Error;

use crate::backend::Cpu;
use crate::compare::{difference, Difference};
use crate::gpu::{shaders, Gpu, GpuError, KernelChoice, Precision, TuningStats};
use crate::shape::{Conv2dParams, ConvTranspose2dParams, Hw, ShapeError, WindowGeometry};
use crate::{Backend, Tensor};

/// Relative tolerance of the GPU-vs-CPU check of the first configuration of each op in f32
/// (the f16 precisions use their [`crate::gpu::Precision::op_tolerance`]).
pub const AGREEMENT_TOLERANCE: f64 = 1e-3;

/// Timed runs of each FMA-peak measurement; the best is kept.
pub const PEAK_RUNS: usize = 5;

/// Seeds of the random input and weight.
const INPUT_SEED: u64 = 1;
const WEIGHT_SEED: u64 = 2;

/// Which convolution is measured (named apart from [`crate::net::Op`], a layer of a network).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ConvOp {
    #[serde(rename = "conv2d")]
    Conv2d,
    #[serde(rename = "conv-transpose2d")]
    ConvTranspose2d,
}

impl ConvOp {
    pub fn name(self) -> &'static str {
        match self {
            ConvOp::Conv2d => "conv2d",
            ConvOp::ConvTranspose2d => "conv-transpose2d",
        }
    }
}

impl fmt::Display for ConvOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How GPU runs are timed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GpuTiming {
    /// Timestamp queries where the device has them, else the wall clock.
    #[default]
    Auto,
    /// The wall clock around submit + wait, even where timestamps exist.
    Wall,
}

/// Which GPU kernels `atrous bench` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuKernels {
    /// One: the auto choice, or one forced.
    One(KernelChoice),
    /// Every kernel that tuning times for the shape ([`Gpu::tuning_candidates`]), forced one
    /// after the other, then the auto choice.
    All,
}

impl Default for GpuKernels {
    fn default() -> Self {
        GpuKernels::One(KernelChoice::Auto)
    }
}

impl GpuKernels {
    /// `all`, or the kernel's [`KernelChoice::name`], as `--gpu-kernel` spells it.
    pub fn name(self) -> &'static str {
        match self {
            GpuKernels::One(kernel) => kernel.name(),
            GpuKernels::All => "all",
        }
    }

    /// The choice `--gpu-kernel NAME` stands for, or an error listing the valid names.
    pub fn from_name(name: &str) -> Result<GpuKernels, String> {
        if name == "all" {
            return Ok(GpuKernels::All);
        }
        KernelChoice::from_name(name).map(GpuKernels::One).ok_or_else(|| format!("unknown GPU kernel '{name}'; the kernels are: {}", Self::names().join(", ")))
    }

    /// Every valid `--gpu-kernel` value.
    pub fn names() -> Vec<&'static str> {
        ["auto", "all"].into_iter().chain(KernelChoice::FORCED.iter().map(|k| k.name())).collect()
    }

    /// The kernels to time on `geometry`, in order.
    pub fn kernels(self, gpu: &Gpu, geometry: &WindowGeometry) -> Vec<KernelChoice> {
        match self {
            GpuKernels::One(kernel) => vec![kernel],
            GpuKernels::All => {
                gpu.tuning_candidates(geometry).into_iter().chain([KernelChoice::Auto]).collect()
            }
        }
    }

    /// Upper bound on the kernels timed per configuration.
    fn most(self) -> usize {
        match self {
            GpuKernels::One(_) => 1,
            GpuKernels::All => KernelChoice::FORCED.len() + 1,
        }
    }
}

/// What `kernel` ran `geometry` on `gpu` as a record names it: the forced kernel's name, or
/// `auto:NAME` for the auto choice, NAME being the kernel it picked; ` [f16]` after it in f16.
pub fn kernel_label(gpu: &Gpu, geometry: &WindowGeometry, kernel: KernelChoice) -> Result<String, GpuError> {
    let name = match kernel {
        KernelChoice::Auto => {
            let picked = match gpu.resolve(geometry, KernelChoice::Auto)? {
                KernelChoice::Auto => gpu.rule_choice(geometry),
                other => other,
            };
            format!("auto:{}", picked.name())
        }
        forced => forced.name().to_owned(),
    };
    Ok(match gpu.precision() {
        Precision::F32 => name,
        precision => format!("{name} [{precision}]"),
    })
}

/// What `atrous bench` measures. [`Default`] gives the command line's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchConfig {
    pub ops: Vec<ConvOp>,
    pub dilations: Vec<usize>,
    /// Input channels.
    pub channels: usize,
    /// Output channels; `None`: as many as the input.
    pub out_channels: Option<usize>,
    /// Input height and width.
    pub size: Hw,
    /// Square kernel side.
    pub kernel: usize,
    pub stride: usize,
    pub groups: usize,
    pub batch: usize,
    /// Untimed runs before the timed ones.
    pub warmup: usize,
    /// Timed runs per configuration.
    pub repeats: usize,
    pub devices: Vec<Device>,
    /// Measure each device's attainable FP32 FMA rate and report every row's fraction of it.
    pub peak: bool,
    pub gpu_timing: GpuTiming,
    /// Which GPU kernels run the convolutions: the one the library picks, one forced, or all.
    pub gpu_kernel: GpuKernels,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            ops: vec![ConvOp::Conv2d],
            dilations: vec![1, 2, 4, 8, 16],
            channels: 256,
            out_channels: None,
            size: Hw::square(65),
            kernel: 3,
            stride: 1,
            groups: 1,
            batch: 1,
            warmup: 3,
            repeats: 20,
            devices: vec![Device::Gpu],
            peak: false,
            gpu_timing: GpuTiming::Auto,
            gpu_kernel: GpuKernels::default(),
        }
    }
}

/// One validated configuration: an op at one dilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    pub op: ConvOp,
    pub dilation: usize,
    pub geometry: WindowGeometry,
}

/// Why a benchmark cannot run or failed.
#[derive(Debug, Error)]
pub enum BenchError {
    #[error("{0}")]
    Config(String),
    #[error("{op} at dilation {dilation} (padding {padding}): {source}")]
    Shape { op: ConvOp, dilation: usize, padding: usize, source: ShapeError },
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// The CPU's convolution (the reference the GPU is checked against, or the CPU's timed run);
    /// boxed, as `crate::Error` is large and every bench result carries this enum.
    #[error(transparent)]
    Cpu(Box<crate::Error>),
    #[error(
        "{what}: the measured time is {seconds:e} s, not positive — the {timing} clock cannot resolve this work, and its GFLOP/s would be meaningless; give each run more work (a larger --size, --channels or --batch)"
    )]
    NonPositiveTime { what: String, seconds: f64, timing: TimingSource },
    #[error("GPU and CPU disagree on {op} at dilation {dilation} (output {shape:?}): {difference}; the limit is {tolerance:e} relative")]
    Mismatch { op: ConvOp, dilation: usize, shape: [usize; 4], difference: Difference, tolerance: f64 },
    #[error("writing {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("drawing the plot: {0}")]
    Plot(String),
    #[error(transparent)]
    Image(#[from] crate::imaging::ImageError),
}

impl BenchConfig {
    /// Output channels: `out_channels`, or as many as the input.
    pub fn c_out(&self) -> usize {
        self.out_channels.unwrap_or(self.channels)
    }

    /// The shape and method of the sweep in words, for the table's header and the plot's subtitle.
    pub fn describe(&self) -> String {
        format!(
            "batch {}, {}→{} channels, {}x{} input, {}x{} kernel, stride {}, groups {}, padding = dilation·(k−1)/2; median of {} timed runs after {} warm-up",
            self.batch,
            self.channels,
            self.c_out(),
            self.size.h,
            self.size.w,
            self.kernel,
            self.kernel,
            self.stride,
            self.groups,
            self.repeats,
            self.warmup
        )
    }

    /// The padding of a dilation: `dilation·(k−1)/2`, which keeps the size at stride 1.
    pub fn padding(&self, dilation: usize) -> usize {
        dilation.saturating_mul(self.kernel.saturating_sub(1)) / 2
    }

    /// Every configuration, ops in order and dilations as listed, each validated through
    /// [`WindowGeometry`]; the first problem found is the error.
    pub fn cases(&self) -> Result<Vec<Case>, BenchError> {
        let config = |message: String| Err(BenchError::Config(message));
        if self.ops.is_empty() {
            return config("no op to measure: choose conv2d, conv-transpose2d or both".into());
        }
        if self.devices.is_empty() {
            return config("no device to measure on: choose gpu, cpu or both".into());
        }
        if self.dilations.is_empty() {
            return config("no dilations given: e.g. --dilations 1,2,4,8,16".into());
        }
        for (i, d) in self.dilations.iter().enumerate() {
            if self.dilations[..i].contains(d) {
                return config(format!("dilation {d} is listed twice in {:?}", self.dilations));
            }
        }
        if self.repeats == 0 {
            return config("repeats must be at least 1 (the timed runs of each configuration)".into());
        }
        if self.kernel == 0 {
            return config("kernel must be at least 1".into());
        }
        let c_out = self.c_out();
        let mut cases = Vec::new();
        for &op in &self.ops {
            for &dilation in &self.dilations {
                let padding = self.padding(dilation);
                let shape_error = |source| BenchError::Shape { op, dilation, padding, source };
                // Channel counts the groups do not divide are refused by name before a weight
                // shape is derived from them.
                if self.groups > 0 {
                    for (channels, which) in [(self.channels, "input"), (c_out, "output")] {
                        if channels % self.groups != 0 {
                            return Err(shape_error(ShapeError::GroupsDontDivide { groups: self.groups, channels, which }));
                        }
                    }
                }
                let per_group = |c: usize| c / self.groups.max(1);
                let input = [self.batch, self.channels, self.size.h, self.size.w];
                let (k, s, p, d) = (Hw::square(self.kernel), Hw::square(self.stride), Hw::square(padding), Hw::square(dilation));
                let geometry = match op {
                    ConvOp::Conv2d => Conv2dParams { stride: s, padding: p, dilation: d, groups: self.groups }
                        .geometry(&input, &[c_out, per_group(self.channels), k.h, k.w], None),
                    ConvOp::ConvTranspose2d => ConvTranspose2dParams { stride: s, padding: p, output_padding: Hw::square(0), dilation: d, groups: self.groups }
                        .geometry(&input, &[self.channels, per_group(c_out), k.h, k.w], None),
                }
                .map_err(shape_error)?;
                cases.push(Case { op, dilation, geometry });
            }
        }
        Ok(cases)
    }

    /// How many progress steps [`run`] reports for these cases.
    pub fn steps(&self, cases: &[Case]) -> u64 {
        let devices = self.devices.len() as u64;
        let gpu = self.devices.contains(&Device::Gpu) as u64;
        (devices + gpu * (self.gpu_kernel.most() as u64 - 1)) * cases.len() as u64 + if self.peak { devices } else { 0 }
    }
}

/// Fails unless `seconds` is a positive, finite time. A timing source that cannot resolve the
/// work gives zero (or, for a reversed timestamp pair, a negative time); reported as it is, it
/// would become an infinite (or negative) GFLOP/s.
pub fn check_positive_time(what: &str, timing: TimingSource, seconds: f64) -> Result<f64, BenchError> {
    if seconds > 0.0 && seconds.is_finite() {
        Ok(seconds)
    } else {
        Err(BenchError::NonPositiveTime { what: what.to_owned(), seconds, timing })
    }
}

/// Median, min and max of the timed repeats, in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// Summarises the repeats' times; every one must be positive ([`check_positive_time`]).
pub fn summarize(what: &str, timing: TimingSource, seconds: &[f64]) -> Result<Stats, BenchError> {
    if seconds.is_empty() {
        return Err(BenchError::Config(format!("{what}: no timed runs")));
    }
    let checked = seconds.iter().map(|&s| check_positive_time(what, timing, s)).collect::<Result<Vec<f64>, _>>()?;
    Ok(stats(&checked))
}

/// Median (the mean of the middle two of an even count), min and max of `values`, as they are;
/// [`summarize`] checks times first. Panics on an empty slice.
pub fn stats(values: &[f64]) -> Stats {
    assert!(!values.is_empty(), "stats of no values");
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
    Stats { median, min: sorted[0], max: sorted[n - 1] }
}

/// Useful GFLOP of one configuration: [`WindowGeometry::flops`] / 10⁹ (a transposed convolution
/// counts its input positions, not the zeros a strided transposed conv inserts).
pub fn gflop(geometry: &WindowGeometry) -> f64 {
    geometry.flops() as f64 / 1e9
}

/// One measured configuration. Serialised (JSON, CSV) with exactly these keys, in this order;
/// the peak fields only when a peak was measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Record {
    pub op: ConvOp,
    pub device: Device,
    /// The GPU adapter's name, or the CPU's model and thread count.
    pub adapter: String,
    /// The wgpu backend (`vulkan`, `metal`, …), or the CPU implementation.
    pub backend: String,
    /// `"timestamp"` or `"wall"`.
    pub timing: String,
    /// The GPU kernel that ran (`tiled`, `lanes`, `gemm128x128`, …; `auto:NAME` for the auto
    /// choice, NAME being the kernel it picked), or the CPU implementation.
    pub kernel: String,
    /// Dispatches one run takes: 1 unless the tensors exceed a storage binding (the GPU runs
    /// them in parts, src/gpu/split.rs).
    pub parts: usize,
    pub batch: usize,
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
    pub out_h: usize,
    pub out_w: usize,
    /// The kernel's side (square kernels).
    pub kernel_size: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
    pub gflop: f64,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub gflops: f64,
    /// The part of `gflop` whose taps touch data (padding left out,
    /// [`WindowGeometry::useful_flops`]), and the rate of that.
    pub useful_gflop: f64,
    pub useful_gflops: f64,
    /// This row's GFLOP/s over the dilation-1 row's of the same op, device and shape; `None`
    /// (null) without such a row.
    pub dilation_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_gflops: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction_of_peak: Option<f64>,
    /// The device's measured memory bandwidth, GB/s ([`Peak::bandwidth_gbs`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_bandwidth_gbs: Option<f64>,
}

impl Record {
    /// The record of `case` run by `kernel` and timed as `stats` (no penalty or peak yet).
    #[allow(clippy::too_many_arguments)] // each is one column of the record
    pub fn new(case: &Case, device: Device, adapter: &str, backend: &str, timing: TimingSource, kernel: &str, parts: usize, stats: Stats) -> Record {
        let g = &case.geometry;
        let gflop = gflop(g);
        Record {
            op: case.op,
            device,
            adapter: adapter.to_owned(),
            backend: backend.to_owned(),
            timing: timing.name().to_owned(),
            kernel: kernel.to_owned(),
            parts,
            batch: g.batch,
            cin: g.c_in,
            cout: g.c_out,
            h: g.input.h,
            w: g.input.w,
            out_h: g.output.h,
            out_w: g.output.w,
            kernel_size: g.kernel.h,
            stride: g.stride.h,
            padding: g.padding.h,
            dilation: case.dilation,
            groups: g.groups,
            gflop,
            median_ms: stats.median * 1e3,
            min_ms: stats.min * 1e3,
            max_ms: stats.max * 1e3,
            gflops: gflop / stats.median,
            useful_gflop: g.useful_flops() as f64 / 1e9,
            useful_gflops: g.useful_flops() as f64 / 1e9 / stats.median,
            dilation_penalty: None,
            peak_gflops: None,
            fraction_of_peak: None,
            peak_bandwidth_gbs: None,
        }
    }

    /// Everything that makes two records the same series except the dilation (and what
    /// follows from it). The auto choice is one series whatever it picked at each dilation.
    #[allow(clippy::type_complexity)]
    fn series_key(&self) -> (ConvOp, Device, &str, &str, usize, usize, usize, usize, usize, usize, usize, usize) {
        let kernel = if self.kernel.starts_with("auto:") { "auto" } else { self.kernel.as_str() };
        (self.op, self.device, self.adapter.as_str(), kernel, self.batch, self.cin, self.cout, self.h, self.w, self.kernel_size, self.stride, self.groups)
    }
}

/// Sets every record's `dilation_penalty`: its GFLOP/s divided by that of the dilation-1 record
/// of the same op, device and shape; `None` where there is no such record.
pub fn fill_penalties(records: &mut [Record]) {
    let penalties: Vec<Option<f64>> = records
        .iter()
        .map(|r| {
            records
                .iter()
                .find(|base| base.dilation == 1 && base.series_key() == r.series_key())
                .filter(|base| base.gflops > 0.0)
                .map(|base| r.gflops / base.gflops)
        })
        .collect();
    for (record, penalty) in records.iter_mut().zip(penalties) {
        record.dilation_penalty = penalty;
    }
}

/// A device's measured attainable FP32 FMA rate and memory bandwidth.
#[derive(Clone, Debug, PartialEq)]
pub struct Peak {
    pub device: Device,
    pub gflops: f64,
    pub timing: TimingSource,
    /// How it was measured, for the table's header.
    pub method: String,
    /// GB/s of a stream copy (bytes read plus bytes written, per second), best of the runs.
    pub bandwidth_gbs: f64,
    pub bandwidth_method: String,
}

/// Sets `peak_gflops`, `fraction_of_peak` and `peak_bandwidth_gbs` of every record whose device
/// has a peak.
pub fn apply_peaks(records: &mut [Record], peaks: &[Peak]) {
    for record in records {
        if let Some(peak) = peaks.iter().find(|p| p.device == record.device) {
            record.peak_gflops = Some(peak.gflops);
            record.fraction_of_peak = Some(record.gflops / peak.gflops);
            record.peak_bandwidth_gbs = Some(peak.bandwidth_gbs);
        }
    }
}

/// The GPU-vs-CPU check of one configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub op: ConvOp,
    /// The GPU kernel checked, as its records name it.
    pub kernel: String,
    pub dilation: usize,
    pub difference: Difference,
    /// The tolerance it was judged against, by its precision's measure.
    pub tolerance: f64,
    pub measure: &'static str,
}

/// Which GPU or CPU ran, for headers and titles.
#[derive(Clone, Debug, PartialEq)]
pub struct Runner {
    pub device: Device,
    /// Short name (the adapter's, or the CPU model with its thread count).
    pub name: String,
    /// Everything known, for the table's header.
    pub description: String,
    pub backend: String,
    pub timing: TimingSource,
}

/// The GPU shader that ran an op, for the table's header.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuKernel {
    pub op: ConvOp,
    /// As the records name it (`tiled`, `auto:lanes`, …).
    pub kernel: String,
    pub shader: &'static str,
}

/// Everything one benchmark measured.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub config: BenchConfig,
    /// The GPU shader of each op (empty without the GPU).
    pub kernels: Vec<GpuKernel>,
    pub records: Vec<Record>,
    pub runners: Vec<Runner>,
    pub peaks: Vec<Peak>,
    pub checks: Vec<Check>,
    /// The GPU's autotuning by the end of the run (`None` without the GPU).
    pub tuning: Option<Tuning>,
}

/// The GPU's autotuning, for the table's header.
#[derive(Clone, Debug, PartialEq)]
pub struct Tuning {
    /// Whether Auto was tuned (else it followed the rule).
    pub enabled: bool,
    pub stats: TuningStats,
    /// The cache file, where one is known.
    pub cache_file: Option<String>,
}

/// The best (highest) GFLOP/s of several runs of `flops` each; every time must be positive.
/// The best rate of `amount` (FLOPs or bytes) per run, in giga-units per second.
fn best_gflops(what: &str, timing: TimingSource, amount: u64, seconds: &[f64]) -> Result<f64, BenchError> {
    let stats = summarize(what, timing, seconds)?;
    Ok(amount as f64 / stats.min / 1e9)
}

/// Measures the GPU's attainable FP32 FMA rate and memory bandwidth (best of [`PEAK_RUNS`]
/// each, timed by `timing` where the device has it); `progress` is told as each begins.
pub fn measure_gpu_peak(gpu: &Gpu, timing: TimingSource, progress: &mut dyn FnMut(&str)) -> Result<Peak, BenchError> {
    progress("GPU: measuring the FP32 FMA peak");
    let runs = gpu.time_fma_peak(PEAK_RUNS, timing)?;
    let gflops = best_gflops("the GPU's FMA peak kernel", runs.source, runs.flops_per_run, &runs.seconds)?;
    let method = format!(
        "{}: {} invocations × {} vec4 FMA chains × {} iterations, best of {PEAK_RUNS}",
        shaders::FMA_PEAK.name,
        runs.invocations,
        shaders::FMA_PEAK_CHAINS,
        runs.iterations
    );
    progress("GPU: measuring the memory bandwidth");
    let copy = gpu.time_bandwidth(PEAK_RUNS, timing)?;
    let bandwidth_gbs = best_gflops("the GPU's stream copy", copy.source, copy.bytes_per_run, &copy.seconds)?;
    let bandwidth_method = format!("{}: {} MiB copied, best of {PEAK_RUNS}", shaders::STREAM_COPY.name, copy.bytes_per_run >> 21);
    Ok(Peak { device: Device::Gpu, gflops, timing: runs.source, method, bandwidth_gbs, bandwidth_method })
}

/// Measures the CPU's attainable FP32 FMA rate and memory bandwidth on every rayon thread
/// (best of [`PEAK_RUNS`] each); `progress` is told as each begins.
pub fn measure_cpu_peak(progress: &mut dyn FnMut(&str)) -> Result<Peak, BenchError> {
    progress("CPU: measuring the FP32 FMA peak");
    let runs = cpu_fma_peak(PEAK_RUNS);
    let gflops = best_gflops("the CPU's FMA peak loop", TimingSource::Wall, runs.flops_per_run, &runs.seconds)?;
    progress("CPU: measuring the memory bandwidth");
    let copy = cpu_bandwidth(PEAK_RUNS);
    let bandwidth_gbs = best_gflops("the CPU's copy", TimingSource::Wall, copy.bytes_per_run, &copy.seconds)?;
    let bandwidth_method = format!("a parallel copy of {} MiB, best of {PEAK_RUNS}", copy.bytes_per_run >> 21);
    let method = format!("{}, best of {PEAK_RUNS}", runs.method);
    Ok(Peak { device: Device::Cpu, gflops, timing: TimingSource::Wall, method, bandwidth_gbs, bandwidth_method })
}

/// What the CPU's records name as their backend and kernel (wide layers' kernel).
fn cpu_kernel() -> &'static str {
    crate::cpu::GemmKernel::name(crate::cpu::GemmKernel::from_env())
}

/// The CPU's description: model name and rayon's thread count.
fn cpu_runner() -> Runner {
    let threads = rayon::current_num_threads();
    let name = format!("{}, {threads} threads", cpu_name());
    Runner { device: Device::Cpu, description: format!("{name} ({}, rayon)", cpu_kernel()), name, backend: cpu_kernel().into(), timing: TimingSource::Wall }
}

/// Runs the benchmark `config` describes on `gpu` (needed when `config.devices` has the GPU)
/// and the CPU. `progress` is called with a message as each of [`BenchConfig::steps`] steps
/// begins. Nothing is written: see [`write_json`], [`write_csv`], [`write_plot`].
pub fn run(config: &BenchConfig, gpu: Option<&Gpu>, progress: &mut dyn FnMut(&str)) -> Result<BenchReport, BenchError> {
    let cases = config.cases()?;
    let gpu = match (config.devices.contains(&Device::Gpu), gpu) {
        (true, None) => return Err(BenchError::Config("the GPU is to be measured, but no GPU was opened".into())),
        (true, Some(gpu)) => Some(gpu),
        (false, _) => None,
    };
    let requested = match config.gpu_timing {
        GpuTiming::Auto => TimingSource::Timestamp,
        GpuTiming::Wall => TimingSource::Wall,
    };
    let gpu_runner = gpu.map(|gpu| Runner {
        device: Device::Gpu,
        name: gpu.summary().name.clone(),
        description: gpu.summary().to_string(),
        backend: format!("{:?}", gpu.summary().backend).to_lowercase(),
        timing: if gpu.has_timestamps() { requested } else { TimingSource::Wall },
    });
    let cpu_runner = config.devices.contains(&Device::Cpu).then(cpu_runner);

    // One input and weight per op, shared by its dilations (their shapes do not depend on it).
    let tensors = |case: &Case| {
        let g = &case.geometry;
        let input = Tensor::random(g.input_shape().to_vec(), INPUT_SEED);
        let weight = Tensor::random(g.weight_shape().expect("convolutions have weights").to_vec(), WEIGHT_SEED);
        (input, weight)
    };
    let mut data = Vec::new();
    for op in &config.ops {
        let first = cases.iter().find(|c| c.op == *op).expect("every op has cases");
        data.push((*op, tensors(first)));
    }
    let data_of = |op: ConvOp| &data.iter().find(|(o, _)| *o == op).expect("tensors for every op").1;

    let mut peaks = Vec::new();
    if config.peak {
        if let (Some(gpu), Some(runner)) = (gpu, &gpu_runner) {
            peaks.push(measure_gpu_peak(gpu, runner.timing, progress)?);
        }
        if cpu_runner.is_some() {
            peaks.push(measure_cpu_peak(progress)?);
        }
    }

    let mut records = Vec::new();
    let mut checks = Vec::new();
    let mut kernels = Vec::new();
    if let (Some(gpu), Some(runner)) = (gpu, &gpu_runner) {
        // The CPU's result of the first configuration of each op, which every kernel is checked on.
        let mut references: Vec<(ConvOp, Vec<f32>)> = Vec::new();
        for case in &cases {
            for kernel in config.gpu_kernel.kernels(gpu, &case.geometry) {
                // Resolving the auto choice first tunes its class (outside the timed runs).
                let label = kernel_label(gpu, &case.geometry, kernel)?;
                let series = |k: &GpuKernel| k.op == case.op && (k.kernel == label || (kernel == KernelChoice::Auto && k.kernel.starts_with("auto:")));
                if !kernels.iter().any(series) {
                    kernels.push(GpuKernel { op: case.op, kernel: label.clone(), shader: gpu.kernel_name(&case.geometry, kernel)? });
                }
                progress(&format!("GPU: {} at dilation {}, {label}", case.op, case.dilation));
                let (input, weight) = data_of(case.op);
                let what = format!("GPU {} at dilation {} ({label})", case.op, case.dilation);
                let timed = gpu.time_convolution(&case.geometry, input.data(), weight.data(), config.warmup, config.repeats, runner.timing, kernel)?;
                let stats = summarize(&what, timed.source, &timed.seconds)?;
                let first_of_op = cases.iter().find(|c| c.op == case.op).is_some_and(|c| c == case);
                if first_of_op {
                    if !references.iter().any(|(op, _)| *op == case.op) {
                        let reference = Cpu.convolve(&case.geometry, input.data(), weight.data(), None).map_err(|e| BenchError::Cpu(Box::new(e)))?;
                        references.push((case.op, reference));
                    }
                    let reference = &references.iter().find(|(op, _)| *op == case.op).expect("just computed").1;
                    let difference = difference(&timed.output, reference);
                    let precision = gpu.precision();
                    let tolerance = if precision == Precision::F32 { AGREEMENT_TOLERANCE } else { precision.op_tolerance() };
                    if !precision.agrees(&difference, tolerance) {
                        return Err(BenchError::Mismatch { op: case.op, dilation: case.dilation, shape: case.geometry.output_shape(), difference, tolerance });
                    }
                    checks.push(Check { op: case.op, kernel: label.clone(), dilation: case.dilation, difference, tolerance, measure: precision.judged_error_name() });
                }
                records.push(Record::new(case, Device::Gpu, &runner.name, &runner.backend, timed.source, &label, timed.parts, stats));
            }
        }
    }
    if let Some(runner) = &cpu_runner {
        for case in &cases {
            progress(&format!("CPU: {} at dilation {}", case.op, case.dilation));
            let (input, weight) = data_of(case.op);
            // The weights made ready once, outside the timed runs, as the GPU's are uploaded
            // once (and ONNX Runtime's sessions pre-pack theirs): Winograd's transform of a
            // transposed 256-channel layer's was a fifth of its time on a 33×33 map.
            let prepared = crate::cpu::PreparedConv::new(&case.geometry, weight.data());
            let mut seconds = Vec::with_capacity(config.repeats);
            for run in 0..config.warmup + config.repeats {
                let start = Instant::now();
                let output = prepared.convolve(input.data(), None);
                let elapsed = start.elapsed().as_secs_f64();
                std::hint::black_box(output);
                if run >= config.warmup {
                    seconds.push(elapsed);
                }
            }
            let stats = summarize(&format!("CPU {} at dilation {}", case.op, case.dilation), TimingSource::Wall, &seconds)?;
            records.push(Record::new(case, Device::Cpu, &runner.name, &runner.backend, TimingSource::Wall, crate::cpu::GemmKernel::name_for(crate::cpu::GemmKernel::from_env(), &case.geometry), 1, stats));
        }
    }
    fill_penalties(&mut records);
    apply_peaks(&mut records, &peaks);
    let runners = gpu_runner.into_iter().chain(cpu_runner).collect();
    let tuning = gpu.map(|gpu| Tuning { enabled: gpu.autotunes(), stats: gpu.tuning(), cache_file: gpu.autotune_cache_file().map(|p| p.display().to_string()) });
    Ok(BenchReport { config: config.clone(), kernels, records, runners, peaks, checks, tuning })
}
