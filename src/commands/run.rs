//! Running a network on the chosen device and reporting the run: the input and device flags,
//! the per-layer table and the JSON report, shared by `backbone`, `segment` and `demo`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::parse::parse_size;
use super::{device_parser, ms, AdapterArgs, Device};
use atrous::backend::Cpu;
use atrous::compare::{difference, Difference};
use atrous::gpu::Precision;
use atrous::imaging::{image_to_tensor, load_image};
use atrous::net::{mib, receptive_fields, Executor, FieldOfView, Forward, Keep, LayerGeometry, Network};
use atrous::npy::read_npy;
use atrous::weights::SafetensorsWeights;
use atrous::{Hw, Tensor};

pub use atrous::weights::DEFAULT_SEED;

/// What a network runs on: a tensor file, a photo, or a seeded random tensor.
#[derive(Args, Clone)]
pub struct InputArgs {
    /// Input tensor, NCHW float .npy with 3 channels (already normalised)
    #[arg(long, value_name = "X.npy", group = "source")]
    pub input: Option<PathBuf>,
    /// A PNG or JPEG photo; ImageNet mean/std are applied (resized when --size is also given)
    #[arg(long, value_name = "PHOTO", group = "source")]
    pub image: Option<PathBuf>,
    /// Input size HxW (or H,W, or N for a square): with no --input/--image, a seeded random input of this size
    #[arg(long, value_parser = parse_size, value_name = "HxW")]
    pub size: Option<Hw>,
    /// Batch size of the random input (with --size)
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
}

impl InputArgs {
    /// The input tensor, and the photo when one was given.
    pub fn load(&self) -> Result<(Tensor, Option<RgbImage>)> {
        if let Some(path) = &self.input {
            return Ok((read_npy(path).context("reading --input")?, None));
        }
        if let Some(path) = &self.image {
            let image = load_image(path, self.size)?;
            return Ok((image_to_tensor(&image), Some(image)));
        }
        let Some(size) = self.size else { bail!("give an input: --input X.npy, --image PHOTO, or --size HxW for a random one") };
        if self.batch == 0 {
            bail!("--batch must be at least 1");
        }
        Ok((Tensor::random(vec![self.batch, 3, size.h, size.w], DEFAULT_SEED), None))
    }
}

/// Where a network runs and how the run is reported (`backbone` and `segment`).
#[derive(Args)]
pub struct RunArgs {
    /// Where to run; --output holds this device's result
    #[arg(long, value_parser = device_parser(), default_value = "gpu")]
    pub device: Device,
    /// Run on GPU and CPU and report each layer's max abs and relative error and a verdict
    /// (exit status 2 when some layer disagrees by more than 1e-3 relative; in f16 1e-2,
    /// in f16-accumulate 5e-2)
    #[arg(long)]
    pub compare: bool,
    /// Print one JSON object instead of the table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub adapter: AdapterArgs,
}

impl RunArgs {
    /// Opens the chosen device.
    pub fn executor(&self) -> Result<Box<dyn Executor>> {
        Ok(match self.device {
            Device::Gpu => Box::new(self.adapter.open()?),
            Device::Cpu => Box::new(Cpu),
        })
    }

    /// Runs `network` on the chosen device (and on the CPU too with --compare).
    pub fn run(&self, network: &Network, input: &Tensor) -> Result<(Box<dyn Executor>, Run)> {
        let executor = self.executor()?;
        let progress = ProgressBar::new_spinner().with_style(ProgressStyle::with_template("{elapsed:>4} {spinner} {msg}").expect("valid template"));
        progress.enable_steady_tick(std::time::Duration::from_millis(200));
        let run = run_network(network, input, executor.as_ref(), self.compare, &progress);
        progress.finish_and_clear();
        Ok((executor, run?))
    }

    /// The human-readable report of a run.
    pub fn print(&self, run: &Run, network: &Network, input: &Tensor, executor: &dyn Executor) {
        run.print(network, input, executor, self.device == Device::Gpu);
    }
}

/// Says which tensors of a weights file under `under` went unused (apart from `ignored` ones).
pub fn note_unused(file: &SafetensorsWeights, path: &Path, under: &str, ignored: &[&str]) {
    let unused = file.unused(under, ignored);
    if !unused.is_empty() {
        eprintln!("note: {} tensor(s) in {} were not used, e.g. {}", unused.len(), path.display(), unused[..unused.len().min(3)].join(", "));
    }
}

/// One row of the per-layer table.
pub struct Row<'a> {
    pub name: &'a str,
    pub geometry: &'a LayerGeometry,
    pub field: FieldOfView,
    pub time: Option<std::time::Duration>,
    /// Dispatches the layer ran in (more than 1 where it was split), where the backend splits.
    pub parts: Option<usize>,
    pub difference: Option<Difference>,
}

/// The window's kernel, stride and dilation as table cells; "-" for ops without a window.
fn window_cells(g: &LayerGeometry) -> [String; 3] {
    match g.window() {
        Some(w) => [format!("{}x{}", w.kernel.h, w.kernel.w), w.stride.h.to_string(), w.dilation.h.to_string()],
        None => ["-".to_owned(), "-".to_owned(), "-".to_owned()],
    }
}

pub fn print_table(rows: &[Row], time_label: &str, precision: Precision) {
    let compare = rows.iter().any(|r| r.difference.is_some());
    let parts = rows.iter().any(|r| r.parts.is_some());
    print!("{:<30} {:>20} {:>6} {:>6} {:>4} {:>5} {:>9} {:>11}", "layer", "output (NCHW)", "kernel", "stride", "dil", "jump", "RF", time_label);
    if parts {
        print!(" {:>5}", "parts");
    }
    if compare {
        print!(" {:>10} {:>10} {:>10}  verdict", "max abs", "max rel", "rms rel");
    }
    println!();
    for r in rows {
        let shape = r.geometry.output_shape();
        let [kernel, stride, dilation] = window_cells(r.geometry);
        print!(
            "{:<30} {:>20} {:>6} {:>6} {:>4} {:>5} {:>9} {:>11}",
            r.name,
            format!("{}x{}x{}x{}", shape[0], shape[1], shape[2], shape[3]),
            kernel,
            stride,
            dilation,
            r.field.jump.h,
            format!("{}x{}", r.field.receptive_field.h, r.field.receptive_field.w),
            r.time.map_or("-".to_owned(), ms)
        );
        if parts {
            print!(" {:>5}", r.parts.map_or("-".to_owned(), |p| p.to_string()));
        }
        if let Some(d) = r.difference {
            print!(" {:>10.3e} {:>10.3e} {:>10.3e}  {}", d.max_abs, d.max_rel, d.rms_rel, if precision.agrees(&d, precision.network_tolerance()) { "ok" } else { "DISAGREE" });
        }
        println!();
    }
}

/// What running a network produced, shared by `backbone`, `segment` and `demo`.
pub struct Run {
    pub geometries: Vec<LayerGeometry>,
    pub fields: Vec<FieldOfView>,
    pub primary: Forward,
    /// The CPU's pass, every layer kept, when compared.
    pub reference: Option<Forward>,
    pub differences: Option<Vec<Difference>>,
    /// What the primary device stored and summed in: how the differences are judged (within
    /// [`Precision::network_tolerance`] per layer).
    pub precision: Precision,
}

impl Run {
    pub fn features(&self) -> &Tensor {
        self.primary.outputs.last().and_then(Option::as_ref).expect("the last layer is always kept")
    }

    /// The CPU's output of the last layer, when compared.
    pub fn reference_features(&self) -> Option<&Tensor> {
        self.reference.as_ref().map(|r| r.outputs.last().and_then(Option::as_ref).expect("a compared run keeps every layer"))
    }

    pub fn agree(&self) -> bool {
        self.differences.as_ref().is_none_or(|ds| ds.iter().all(|d| self.precision.agrees(d, self.precision.network_tolerance())))
    }

    /// The human-readable report: the per-layer table, total time, GPU memory and the verdict.
    pub fn print(&self, network: &Network, input: &Tensor, executor: &dyn Executor, on_gpu: bool) {
        println!("{} on {:?}, {}", network.name, input.shape(), executor.describe());
        let label = match (on_gpu, self.primary.layer_times.is_some()) {
            (true, true) => "GPU ms",
            (true, false) => "GPU ms (n/a)",
            (false, _) => "CPU ms",
        };
        print_table(&self.rows(network), label, self.precision);
        println!("total wall time {} ms (uploads, read-back and any autotuning included)", ms(self.primary.total_time));
        for note in executor.notes() {
            println!("{note}");
        }
        if let Some(m) = self.primary.memory {
            println!(
                "GPU memory: weights {} + activations {} = {} peak (largest activation {})",
                mib(m.weights),
                mib(m.activations),
                mib(m.peak()),
                mib(m.largest_activation)
            );
        }
        if self.differences.is_some() {
            let verdict = if self.agree() { "GPU and CPU agree" } else { "GPU and CPU DISAGREE" };
            println!("verdict: {verdict} (every layer within {:e} {} error: {})", self.precision.network_tolerance(), self.precision.judged_error_name(), self.agree());
        }
    }

    /// The machine-readable report of `--json`: shapes, device, times, memory and every layer.
    pub fn report(&self, network: &Network, input: &Tensor, executor: &dyn Executor) -> serde_json::Map<String, serde_json::Value> {
        let layers: Vec<_> = self
            .rows(network)
            .iter()
            .zip(&network.layers)
            .map(|(r, layer)| {
                let window = r.geometry.window();
                json!({
                    "name": r.name,
                    "op": layer.kind(),
                    "output_shape": r.geometry.output_shape(),
                    "kernel": window.map(|w| [w.kernel.h, w.kernel.w]),
                    "stride": window.map(|w| [w.stride.h, w.stride.w]),
                    "dilation": window.map(|w| [w.dilation.h, w.dilation.w]),
                    "padding": window.map(|w| [w.padding.h, w.padding.w]),
                    "jump": [r.field.jump.h, r.field.jump.w],
                    "receptive_field": [r.field.receptive_field.h, r.field.receptive_field.w],
                    "time_ms": r.time.map(|t| t.as_secs_f64() * 1e3),
                    "parts": r.parts,
                    "gflop": r.geometry.flops() as f64 / 1e9,
                    "useful_gflop": r.geometry.useful_flops() as f64 / 1e9,
                    "max_abs_error": r.difference.map(|d| d.max_abs),
                    "max_rel_error": r.difference.map(|d| d.max_rel),
                    "max_rms_rel_error": r.difference.map(|d| d.rms_rel),
                    "agree": r.difference.map(|d| self.precision.agrees(&d, self.precision.network_tolerance())),
                })
            })
            .collect();
        let report = json!({
            "input_shape": input.shape(),
            "output_shape": self.features().shape(),
            "device": executor.describe(),
            "total_ms": self.primary.total_time.as_secs_f64() * 1e3,
            "peak_memory_bytes": self.primary.memory.map(|m| m.peak()),
            "weight_bytes": self.primary.memory.map(|m| m.weights),
            "activation_bytes": self.primary.memory.map(|m| m.activations),
            "agree": self.differences.as_ref().map(|_| self.agree()),
            "layers": layers,
        });
        match report {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("json! of braces is an object"),
        }
    }

    pub fn rows<'a>(&'a self, network: &'a Network) -> Vec<Row<'a>> {
        network
            .layers
            .iter()
            .enumerate()
            .map(|(i, layer)| Row {
                name: &layer.name,
                geometry: &self.geometries[i],
                field: self.fields[i],
                time: self.primary.layer_times.as_ref().map(|t| t[i]),
                parts: self.primary.layer_parts.as_ref().map(|p| p[i]),
                difference: self.differences.as_ref().map(|d| d[i]),
            })
            .collect()
    }
}

/// Runs `network` on `primary`, and with `compare` also on the CPU, diffing every layer; says
/// how far each pass has got in `progress`'s message where it is drawn (on a terminal).
pub fn run_network(network: &Network, input: &Tensor, primary: &dyn Executor, compare: bool, progress: &ProgressBar) -> Result<Run> {
    let geometries = network.geometries(input.shape())?;
    let fields = receptive_fields(network, &geometries);
    let keep = if compare { Keep::All } else { Keep::Last };
    // After what the caller's message says (the demo's step), if anything.
    let context = match progress.message() {
        m if m.is_empty() => m,
        m => m + ": ",
    };
    let watch = |what: &'static str| {
        let context = context.clone();
        move |done: usize, total: usize| progress.set_message(format!("{context}{what} {done}/{total}"))
    };
    let (on_primary, on_cpu) = (watch("preparing and running the layers"), watch("the CPU reference, layer"));
    let drawn = !progress.is_hidden();
    let forward = primary.forward_with_progress(network, input, keep, drawn.then_some(&on_primary as &dyn Fn(usize, usize)))?;
    let reference = if compare { Some(Cpu.forward_with_progress(network, input, Keep::All, drawn.then_some(&on_cpu as &dyn Fn(usize, usize)))?) } else { None };
    let differences = reference.as_ref().map(|reference| {
        forward
            .outputs
            .iter()
            .zip(&reference.outputs)
            .map(|(a, b)| difference(a.as_ref().expect("kept").data(), b.as_ref().expect("kept").data()))
            .collect()
    });
    Ok(Run { geometries, fields, primary: forward, reference, differences, precision: primary.precision() })
}
