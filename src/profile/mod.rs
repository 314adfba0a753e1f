//! The cost of a network layer by layer at several output strides, behind `atrous profile`.
//!
//! One warm-up pass of each network (kernels chosen and tuned, pipelines built, watched layer by
//! layer), then `repeats` rounds of one timed pass of each network in turn, every pass in one
//! submission ([`time_passes`]); a layer's time is the median of its times in those passes
//! (GPU: timestamp queries around the layer's passes; CPU: the wall clock around the layer).
//! Per layer the report has its nominal and useful GFLOP
//! ([`LayerGeometry::flops`], [`LayerGeometry::useful_flops`]), the GFLOP/s of both at the
//! median, the share of the device's measured FMA peak ([`crate::bench::measure_gpu_peak`],
//! [`crate::bench::measure_cpu_peak`]) the nominal rate is, the bytes it moves
//! ([`Network::traffic`], defined in [`BYTES_MOVED`]) and its arithmetic intensity (nominal FLOP
//! per byte moved). Per output stride: the same summed per stage ([`crate::models::stage`]) and
//! over the network, and the totals relative to those of the largest output stride profiled.
//!
//! [`format_table`], [`to_json`], [`to_csv`] write the report as text; [`stages_png`] and
//! [`roofline_png`] draw it.

mod plot;

use serde::Serialize;

pub use plot::{roofline_png, stages_png};

use crate::backend::Device;
use std::path::Path;

use crate::bench::report::{aligned, csv_field, significant, write_text};
use crate::bench::{stats, BenchError, Peak, Stats};
use crate::models::stage;
use crate::net::{Executor, Keep, LayerGeometry, Network, Traffic};
use crate::{Error, Tensor};

/// What "bytes moved" counts, for reports and help texts.
pub const BYTES_MOVED: &str =
    "weight and bias + every tensor the layer reads (input, residual, concatenated inputs) + its output, each once, as f32 (4 bytes an element); re-reads from caches are not counted";

/// Untimed passes of each network before the timed ones ([`time_passes`]).
pub const WARMUP_PASSES: usize = 1;

/// Why a profile cannot run or failed.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Building, validating or running the network (boxed: [`Error`] is large).
    #[error(transparent)]
    Network(Box<Error>),
    /// Measuring a peak, drawing or writing.
    #[error(transparent)]
    Bench(#[from] BenchError),
    #[error("{0} gives no per-layer times (a GPU needs the TIMESTAMP_QUERY feature to time layers); use --device cpu, or another adapter")]
    NoLayerTimes(String),
    #[error("{0}")]
    Config(String),
}

impl From<Error> for ProfileError {
    fn from(error: Error) -> Self {
        ProfileError::Network(Box::new(error))
    }
}

/// The timed passes of one network on one device.
#[derive(Clone, Debug, PartialEq)]
pub struct Passes {
    /// Seconds of each layer in each timed pass, `[layer][pass]`.
    pub layer_seconds: Vec<Vec<f64>>,
    /// Wall-clock seconds of each timed pass (uploads and read-back included).
    pub wall_seconds: Vec<f64>,
    /// Dispatches each layer ran in, where the backend splits layers (the GPU).
    pub parts: Option<Vec<usize>>,
    /// Bytes of one stored value where they ran ([`Executor::precision`]): what traffic counts.
    pub value_bytes: u64,
}

/// Runs each of `networks` on `executor` once ([`WARMUP_PASSES`]) to warm up, then `repeats`
/// rounds of one timed pass of each in turn, so that a change of load on the machine during the
/// run falls on every network alike rather than on whichever ran then; one [`Passes`] per network.
/// `progress(done, network, message)` is told what runs: `done` passes finished (of
/// `networks.len() · (WARMUP_PASSES + repeats)`), `network` the index of the one running.
pub fn time_passes(
    executor: &dyn Executor,
    networks: &[&Network],
    input: &Tensor,
    repeats: usize,
    progress: &dyn Fn(usize, usize, &str),
) -> Result<Vec<Passes>, ProfileError> {
    if repeats == 0 {
        return Err(ProfileError::Config("repeats must be at least 1 (the timed passes whose median is reported)".into()));
    }
    let mut all: Vec<Passes> = Vec::with_capacity(networks.len());
    for (index, network) in networks.iter().enumerate() {
        let watch = |done: usize, total: usize| progress(index, index, &format!("warm-up pass, {done}/{total}"));
        let warm_up = executor.forward_with_progress(network, input, Keep::Last, Some(&watch))?;
        if warm_up.layer_times.is_none() {
            return Err(ProfileError::NoLayerTimes(executor.describe()));
        }
        let layer_seconds = vec![Vec::with_capacity(repeats); network.layers.len()];
        all.push(Passes { layer_seconds, wall_seconds: Vec::with_capacity(repeats), parts: None, value_bytes: executor.precision().element_bytes() });
    }
    for round in 0..repeats {
        for (index, (network, passes)) in networks.iter().zip(&mut all).enumerate() {
            progress(networks.len() * (WARMUP_PASSES + round) + index, index, &format!("timed pass {}/{repeats}", round + 1));
            let forward = executor.forward(network, input, Keep::Last)?;
            let times = forward.layer_times.ok_or_else(|| ProfileError::NoLayerTimes(executor.describe()))?;
            for (layer, time) in passes.layer_seconds.iter_mut().zip(times) {
                layer.push(time.as_secs_f64());
            }
            passes.wall_seconds.push(forward.total_time.as_secs_f64());
            passes.parts = forward.layer_parts;
        }
    }
    Ok(all)
}

/// GFLOP per second of `gflop` done in `ms` milliseconds; `None` for a time of zero (a clock
/// that could not resolve the work).
pub fn rate(gflop: f64, ms: f64) -> Option<f64> {
    (ms > 0.0).then(|| gflop / (ms / 1e3))
}

/// One layer's cost.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerProfile {
    pub name: String,
    /// [`crate::models::stage`] of the name.
    pub stage: String,
    /// [`crate::net::Layer::kind`].
    pub kind: &'static str,
    pub output_shape: [usize; 4],
    /// Kernel, stride and dilation (H, W) of window ops; `None` for a resize or concatenation.
    pub kernel: Option<[usize; 2]>,
    pub stride: Option<[usize; 2]>,
    pub dilation: Option<[usize; 2]>,
    /// Nominal GFLOP, and the part of it whose taps touch data.
    pub gflop: f64,
    pub useful_gflop: f64,
    /// Median, min and max over the timed passes.
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// Nominal and useful GFLOP at the median; `None` where the time is zero.
    pub gflops: Option<f64>,
    pub useful_gflops: Option<f64>,
    /// `gflops` over the device's measured FMA peak, where that was measured.
    pub fraction_of_peak: Option<f64>,
    /// Bytes moved ([`BYTES_MOVED`]): weight and bias, inputs read, output written, and their sum.
    pub weight_bytes: u64,
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub bytes: u64,
    /// Nominal FLOP per byte moved (0 for ops without FLOPs).
    pub intensity: f64,
    /// Dispatches the layer ran in, where the backend splits layers.
    pub parts: Option<usize>,
}

impl LayerProfile {
    /// The profile of `layer` of `network` whose geometry, traffic and times are given.
    pub fn new(
        network: &Network,
        layer: usize,
        geometry: &LayerGeometry,
        traffic: Traffic,
        time: Stats,
        parts: Option<usize>,
        peak_gflops: Option<f64>,
    ) -> LayerProfile {
        let layer_ref = &network.layers[layer];
        let window = geometry.window();
        let gflop = geometry.flops() as f64 / 1e9;
        let useful_gflop = geometry.useful_flops() as f64 / 1e9;
        let median_ms = time.median * 1e3;
        let gflops = rate(gflop, median_ms);
        LayerProfile {
            name: layer_ref.name.clone(),
            stage: stage(&layer_ref.name).to_owned(),
            kind: layer_ref.kind(),
            output_shape: geometry.output_shape(),
            kernel: window.map(|w| [w.kernel.h, w.kernel.w]),
            stride: window.map(|w| [w.stride.h, w.stride.w]),
            dilation: window.map(|w| [w.dilation.h, w.dilation.w]),
            gflop,
            useful_gflop,
            median_ms,
            min_ms: time.min * 1e3,
            max_ms: time.max * 1e3,
            gflops,
            useful_gflops: rate(useful_gflop, median_ms),
            fraction_of_peak: gflops.zip(peak_gflops).map(|(g, p)| g / p),
            weight_bytes: traffic.weights,
            input_bytes: traffic.inputs,
            output_bytes: traffic.output,
            bytes: traffic.total(),
            intensity: traffic.intensity(geometry.flops()),
            parts,
        }
    }
}

/// Every layer's profile from the timed passes of `network` on an input of `input_shape`.
pub fn profile_layers(network: &Network, input_shape: &[usize], passes: &Passes, peak_gflops: Option<f64>) -> Result<Vec<LayerProfile>, ProfileError> {
    let geometries = network.geometries(input_shape)?;
    if passes.layer_seconds.len() != geometries.len() || passes.layer_seconds.iter().any(Vec::is_empty) {
        return Err(ProfileError::Config(format!("{} layers but times of {} (every layer needs at least one)", geometries.len(), passes.layer_seconds.len())));
    }
    let traffic = network.traffic(input_shape, &geometries, passes.value_bytes);
    Ok(geometries
        .iter()
        .enumerate()
        .map(|(i, geometry)| {
            let parts = passes.parts.as_ref().map(|p| p[i]);
            LayerProfile::new(network, i, geometry, traffic[i], stats(&passes.layer_seconds[i]), parts, peak_gflops)
        })
        .collect())
}

/// Layers summed: a stage's, or the whole network's.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// The stage, or `total`.
    pub name: String,
    pub layers: usize,
    pub gflop: f64,
    pub useful_gflop: f64,
    /// The sum of the layers' median times.
    pub median_ms: f64,
    /// `median_ms` over the network's; `None` when that is zero.
    pub share_of_time: Option<f64>,
    pub gflops: Option<f64>,
    pub useful_gflops: Option<f64>,
    pub fraction_of_peak: Option<f64>,
    pub bytes: u64,
    /// Nominal FLOP per byte moved, of the sums.
    pub intensity: f64,
}

impl Summary {
    /// The sums of `layers`, whose network takes `network_ms` in all.
    pub fn of(name: &str, layers: &[&LayerProfile], network_ms: f64, peak_gflops: Option<f64>) -> Summary {
        let gflop: f64 = layers.iter().map(|l| l.gflop).sum();
        let useful_gflop: f64 = layers.iter().map(|l| l.useful_gflop).sum();
        let median_ms: f64 = layers.iter().map(|l| l.median_ms).sum();
        let bytes: u64 = layers.iter().map(|l| l.bytes).sum();
        let gflops = rate(gflop, median_ms);
        Summary {
            name: name.to_owned(),
            layers: layers.len(),
            gflop,
            useful_gflop,
            median_ms,
            share_of_time: (network_ms > 0.0).then(|| median_ms / network_ms),
            gflops,
            useful_gflops: rate(useful_gflop, median_ms),
            fraction_of_peak: gflops.zip(peak_gflops).map(|(g, p)| g / p),
            bytes,
            intensity: if bytes == 0 { 0.0 } else { gflop * 1e9 / bytes as f64 },
        }
    }
}

/// A run's totals over those of the reference run (the largest output stride profiled).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Relative {
    pub output_stride: usize,
    pub gflop: f64,
    pub useful_gflop: f64,
    /// `None` where the reference's time is zero.
    pub time: Option<f64>,
    pub bytes: f64,
}

/// One network (one output stride) on one device.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunProfile {
    pub output_stride: usize,
    pub network: String,
    pub output_shape: [usize; 4],
    /// Median wall-clock time of a whole pass (uploads and read-back included).
    pub wall_ms: f64,
    pub total: Summary,
    /// Set by [`set_relative`].
    pub relative: Option<Relative>,
    /// In the order the network first reaches them.
    pub stages: Vec<Summary>,
    pub layers: Vec<LayerProfile>,
}

impl RunProfile {
    /// The profile of `network` at `output_stride` from its timed passes.
    pub fn new(output_stride: usize, network: &Network, input_shape: &[usize], passes: &Passes, peak_gflops: Option<f64>) -> Result<RunProfile, ProfileError> {
        let layers = profile_layers(network, input_shape, passes, peak_gflops)?;
        let all: Vec<&LayerProfile> = layers.iter().collect();
        let network_ms: f64 = layers.iter().map(|l| l.median_ms).sum();
        let total = Summary::of("total", &all, network_ms, peak_gflops);
        let mut names: Vec<&str> = Vec::new();
        for layer in &layers {
            if !names.contains(&layer.stage.as_str()) {
                names.push(&layer.stage);
            }
        }
        let stages = names
            .iter()
            .map(|name| {
                let members: Vec<&LayerProfile> = layers.iter().filter(|l| l.stage == *name).collect();
                Summary::of(name, &members, network_ms, peak_gflops)
            })
            .collect();
        let output_shape = layers.last().map_or([0; 4], |l| l.output_shape);
        Ok(RunProfile {
            output_stride,
            network: network.name.clone(),
            output_shape,
            wall_ms: stats(&passes.wall_seconds).median * 1e3,
            total,
            relative: None,
            stages,
            layers,
        })
    }
}

/// Sets every run's [`Relative`] to the run with the largest output stride; returns that
/// output stride (`None` for no runs).
pub fn set_relative(runs: &mut [RunProfile]) -> Option<usize> {
    let reference = runs.iter().max_by_key(|r| r.output_stride)?.clone();
    let base = &reference.total;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    for run in runs {
        let t = &run.total;
        run.relative = Some(Relative {
            output_stride: reference.output_stride,
            gflop: ratio(t.gflop, base.gflop),
            useful_gflop: ratio(t.useful_gflop, base.useful_gflop),
            time: (base.median_ms > 0.0).then(|| t.median_ms / base.median_ms),
            bytes: ratio(t.bytes as f64, base.bytes as f64),
        });
    }
    Some(reference.output_stride)
}

/// A device's measured FMA peak and memory bandwidth, as reported.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PeakSummary {
    pub gflops: f64,
    pub bandwidth_gbs: f64,
    /// Where the roofline bends: peak over bandwidth, FLOP per byte.
    pub ridge_intensity: f64,
    /// `timestamp` or `wall`.
    pub timing: &'static str,
    pub method: String,
    pub bandwidth_method: String,
}

impl From<&Peak> for PeakSummary {
    fn from(peak: &Peak) -> Self {
        PeakSummary {
            gflops: peak.gflops,
            bandwidth_gbs: peak.bandwidth_gbs,
            ridge_intensity: peak.gflops / peak.bandwidth_gbs,
            timing: peak.timing.name(),
            method: peak.method.clone(),
            bandwidth_method: peak.bandwidth_method.clone(),
        }
    }
}

/// Every output stride on one device.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceProfile {
    pub device: Device,
    pub description: String,
    /// How layers were timed: `timestamp` (GPU) or `wall` (CPU).
    pub timing: &'static str,
    pub peak: Option<PeakSummary>,
    /// What the backend adds about the runs (the GPU: autotuning).
    pub notes: Vec<String>,
    pub runs: Vec<RunProfile>,
}

/// Everything one profile measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProfileReport {
    pub arch: String,
    /// `deeplabv3` or `fcn`; `None`: the backbone alone.
    pub head: Option<String>,
    pub input_shape: [usize; 4],
    pub warmup_passes: usize,
    pub timed_passes: usize,
    pub output_strides: Vec<usize>,
    /// The output stride every run's `relative` is to (the largest).
    pub reference_output_stride: usize,
    /// What `bytes` counts ([`BYTES_MOVED`]).
    pub bytes_moved: &'static str,
    pub devices: Vec<DeviceProfile>,
}

/// The report as pretty-printed JSON.
pub fn to_json(report: &ProfileReport) -> String {
    serde_json::to_string_pretty(report).expect("the report serialises")
}

/// Writes [`to_json`] to `path`, atomically.
pub fn write_json(path: &Path, report: &ProfileReport) -> Result<(), BenchError> {
    write_text(path, &(to_json(report) + "\n"))
}

/// Writes [`to_csv`] to `path`, atomically.
pub fn write_csv(path: &Path, report: &ProfileReport) -> Result<(), BenchError> {
    write_text(path, &to_csv(report))
}

/// The CSV's columns: one row per (device, output stride, layer).
pub const CSV_COLUMNS: [&str; 27] = [
    "device",
    "output_stride",
    "layer",
    "stage",
    "kind",
    "out_n",
    "out_c",
    "out_h",
    "out_w",
    "kernel",
    "stride",
    "dilation",
    "gflop",
    "useful_gflop",
    "median_ms",
    "min_ms",
    "max_ms",
    "gflops",
    "useful_gflops",
    "fraction_of_peak",
    "weight_bytes",
    "input_bytes",
    "output_bytes",
    "bytes",
    "intensity",
    "relative_gflop",
    "parts",
];

/// An (H, W) pair as one cell: `3` when square, `3x1` otherwise; empty for none.
fn pair(value: Option<[usize; 2]>) -> String {
    match value {
        None => String::new(),
        Some([h, w]) if h == w => h.to_string(),
        Some([h, w]) => format!("{h}x{w}"),
    }
}

fn optional(value: Option<f64>) -> String {
    value.map_or(String::new(), |v| v.to_string())
}

/// The report as CSV: a header of [`CSV_COLUMNS`], then one line per layer of every run of
/// every device (`relative_gflop` is the run's total GFLOP over the reference run's); an
/// absent value is an empty field.
pub fn to_csv(report: &ProfileReport) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for device in &report.devices {
        for run in &device.runs {
            for l in &run.layers {
                let [n, c, h, w] = l.output_shape;
                let fields = [
                    device.device.name().to_owned(),
                    run.output_stride.to_string(),
                    l.name.clone(),
                    l.stage.clone(),
                    l.kind.to_owned(),
                    n.to_string(),
                    c.to_string(),
                    h.to_string(),
                    w.to_string(),
                    pair(l.kernel),
                    pair(l.stride),
                    pair(l.dilation),
                    l.gflop.to_string(),
                    l.useful_gflop.to_string(),
                    l.median_ms.to_string(),
                    l.min_ms.to_string(),
                    l.max_ms.to_string(),
                    optional(l.gflops),
                    optional(l.useful_gflops),
                    optional(l.fraction_of_peak),
                    l.weight_bytes.to_string(),
                    l.input_bytes.to_string(),
                    l.output_bytes.to_string(),
                    l.bytes.to_string(),
                    l.intensity.to_string(),
                    optional(run.relative.as_ref().map(|r| r.gflop)),
                    l.parts.map_or(String::new(), |p| p.to_string()),
                ];
                let cells: Vec<String> = fields.into_iter().map(|f| csv_field(&serde_json::Value::String(f))).collect();
                out.push_str(&cells.join(","));
                out.push('\n');
            }
        }
    }
    out
}

/// "1 timed pass", "3 timed passes".
pub(crate) fn passes_text(count: usize) -> String {
    format!("{count} timed pass{}", if count == 1 { "" } else { "es" })
}

fn cell(value: Option<f64>, decimals: usize) -> String {
    value.map_or("—".to_owned(), |v| format!("{v:.decimals$}"))
}

fn percent(value: Option<f64>) -> String {
    value.map_or("—".to_owned(), |v| format!("{:.1}%", 100.0 * v))
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

fn summary_row(s: &Summary, peak: bool) -> Vec<String> {
    let mut row = vec![
        s.name.clone(),
        s.layers.to_string(),
        significant(s.gflop),
        significant(s.useful_gflop),
        format!("{:.3}", s.median_ms),
        percent(s.share_of_time),
        cell(s.gflops, 2),
        cell(s.useful_gflops, 2),
    ];
    if peak {
        row.push(percent(s.fraction_of_peak));
    }
    row.extend([megabytes(s.bytes), format!("{:.1}", s.intensity)]);
    row
}

fn window_cell(value: Option<[usize; 2]>) -> String {
    match pair(value) {
        p if p.is_empty() => "-".to_owned(),
        p => p,
    }
}

/// The human-readable report: what was profiled and on what, each device's peak, then per
/// device and output stride the stage totals (with `layers`, every layer too), and per device
/// the totals of every output stride relative to the largest one.
pub fn format_table(report: &ProfileReport, layers: bool) -> String {
    let mut out = String::new();
    let [n, c, h, w] = report.input_shape;
    let head = report.head.as_ref().map_or(String::new(), |h| format!(" + {h} head"));
    let strides: Vec<String> = report.output_strides.iter().map(usize::to_string).collect();
    out.push_str(&format!(
        "atrous profile: {}{head} on a {n}x{c}x{h}x{w} input at output strides {}; median of {} after {} warm-up\n",
        report.arch,
        strides.join(","),
        passes_text(report.timed_passes),
        report.warmup_passes
    ));
    out.push_str(&format!("bytes moved: {}; FLOP/B = nominal FLOP per byte moved\n", report.bytes_moved));
    for device in &report.devices {
        let name = device.device.name().to_uppercase();
        let timing = match device.device {
            Device::Gpu => "timestamp queries around each layer",
            Device::Cpu => "wall clock around each layer",
        };
        out.push_str(&format!("{name}: {} — layer times: {timing}\n", device.description));
        if let Some(p) = &device.peak {
            out.push_str(&format!(
                "{name} peak FP32 FMA {:.1} GFLOP/s ({}); memory bandwidth {:.1} GB/s ({}); the roofline bends at {:.1} FLOP/B\n",
                p.gflops, p.method, p.bandwidth_gbs, p.bandwidth_method, p.ridge_intensity
            ));
        }
        for note in &device.notes {
            out.push_str(note);
            out.push('\n');
        }
    }
    for device in &report.devices {
        let name = device.device.name().to_uppercase();
        let peak = device.peak.is_some();
        for run in &device.runs {
            let [n, c, h, w] = run.output_shape;
            out.push_str(&format!(
                "\n{name}, output stride {}: {} → {n}x{c}x{h}x{w}; {:.1} ms a pass by the wall clock (median; uploads and read-back included)\n",
                run.output_stride, run.network, run.wall_ms
            ));
            let mut header: Vec<String> =
                ["stage", "layers", "GFLOP", "useful GFLOP", "ms", "% of time", "GFLOP/s", "useful GFLOP/s"].map(String::from).to_vec();
            if peak {
                header.push("% of peak".into());
            }
            header.extend(["MB moved".into(), "FLOP/B".into()]);
            let mut rows = vec![header];
            rows.extend(run.stages.iter().map(|s| summary_row(s, peak)));
            rows.push(summary_row(&run.total, peak));
            out.push_str(&aligned(&rows, 1));
            if layers {
                out.push('\n');
                let mut header: Vec<String> =
                    ["layer", "stage", "kind", "output (NCHW)", "kernel", "stride", "dil", "GFLOP", "useful GFLOP", "ms", "GFLOP/s", "useful GFLOP/s"]
                        .map(String::from)
                        .to_vec();
                if peak {
                    header.push("% of peak".into());
                }
                header.extend(["MB moved".into(), "FLOP/B".into()]);
                let mut rows = vec![header];
                for l in &run.layers {
                    let [n, c, h, w] = l.output_shape;
                    let mut row = vec![
                        l.name.clone(),
                        l.stage.clone(),
                        l.kind.to_owned(),
                        format!("{n}x{c}x{h}x{w}"),
                        l.kernel.map_or("-".to_owned(), |[h, w]| format!("{h}x{w}")),
                        window_cell(l.stride),
                        window_cell(l.dilation),
                        significant(l.gflop),
                        significant(l.useful_gflop),
                        format!("{:.3}", l.median_ms),
                        cell(l.gflops, 2),
                        cell(l.useful_gflops, 2),
                    ];
                    if peak {
                        row.push(percent(l.fraction_of_peak));
                    }
                    row.extend([megabytes(l.bytes), format!("{:.1}", l.intensity)]);
                    rows.push(row);
                }
                out.push_str(&aligned(&rows, 4));
            }
        }
        out.push_str(&format!("\n{name}, every output stride (× = relative to output stride {}):\n", report.reference_output_stride));
        let mut header: Vec<String> = ["output stride", "GFLOP", "useful GFLOP", "ms", "GFLOP/s"].map(String::from).to_vec();
        if peak {
            header.push("% of peak".into());
        }
        header.extend(["MB moved", "FLOP/B", "× GFLOP", "× useful GFLOP", "× time", "× MB moved"].map(String::from));
        let mut rows = vec![header];
        for run in &device.runs {
            let t = &run.total;
            let r = run.relative.as_ref();
            let times = |v: Option<f64>| v.filter(|v| v.is_finite()).map_or("—".to_owned(), |v| format!("{v:.2}×"));
            let mut row =
                vec![run.output_stride.to_string(), significant(t.gflop), significant(t.useful_gflop), format!("{:.3}", t.median_ms), cell(t.gflops, 2)];
            if peak {
                row.push(percent(t.fraction_of_peak));
            }
            row.extend([
                megabytes(t.bytes),
                format!("{:.1}", t.intensity),
                times(r.map(|r| r.gflop)),
                times(r.map(|r| r.useful_gflop)),
                times(r.and_then(|r| r.time)),
                times(r.map(|r| r.bytes)),
            ]);
            rows.push(row);
        }
        out.push_str(&aligned(&rows, 0));
    }
    out
}
