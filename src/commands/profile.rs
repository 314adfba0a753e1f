//! `atrous profile`: a backbone (and optionally a head) at several output strides in one run,
//! layer by layer — a thin layer over [`atrous::profile`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use super::backbone::{build, ModelArgs};
use super::bench::DeviceChoice;
use super::parse::{parse_size, Rates};
use super::segment::{SegmentationModelArgs, UpsampleChoice};
use super::{check_output, AdapterArgs, Device};
use atrous::backend::Cpu;
use atrous::bench::{measure_cpu_peak, measure_gpu_peak, Peak};
use atrous::imaging::save_png;
use atrous::models::resnet::{Arch, OUTPUT_STRIDES};
use atrous::models::segmentation::{Head, Model};
use atrous::net::{Executor, Network};
use atrous::profile::{self, set_relative, time_passes, DeviceProfile, ProfileReport, RunProfile};
use atrous::weights::DEFAULT_SEED;
use atrous::{Hw, Tensor};

/// Which head sits on the backbone.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HeadChoice {
    /// The backbone alone
    None,
    /// DeepLabv3's ASPP head (rates 96/OS, 192/OS, 288/OS) and bilinear upsampling to the input
    Deeplabv3,
    /// The FCN head and bilinear upsampling to the input
    Fcn,
}

impl HeadChoice {
    fn head(self) -> Option<Head> {
        match self {
            HeadChoice::None => None,
            HeadChoice::Deeplabv3 => Some(Head::DeepLabV3),
            HeadChoice::Fcn => Some(Head::Fcn),
        }
    }

    fn name(self) -> Option<&'static str> {
        match self {
            HeadChoice::None => None,
            HeadChoice::Deeplabv3 => Some("deeplabv3"),
            HeadChoice::Fcn => Some("fcn"),
        }
    }
}

#[derive(Args)]
#[command(after_help = "Per layer: nominal and useful GFLOP (useful: the products whose taps touch data, not padding), the median time \
(GPU: timestamp queries; CPU: wall clock), GFLOP/s of both, the share of the device's measured FMA peak (nominal GFLOP/s over it), \
bytes moved and arithmetic intensity (nominal FLOP per byte moved). Bytes moved = weight and bias + every tensor the layer reads \
(input, residual, concatenated inputs) + its output, each once, as f32; cache re-reads are not counted. \
Per output stride: the same per stage (stem, layer1-4, aspp, classifier, upsample) and in all, and relative to the largest output stride.")]
pub struct ProfileArgs {
    /// resnet18, resnet34, resnet50, resnet101 or resnet152
    #[arg(long, default_value = "resnet50", value_parser = |s: &str| s.parse::<Arch>())]
    arch: Arch,
    /// Output strides to profile, comma-separated, each 4, 8, 16 or 32; every total is also
    /// given relative to the largest one's
    #[arg(long, default_value = "32,16,8", value_name = "OS,OS,...")]
    output_strides: Rates,
    /// A head on the backbone (seeded weights, 21 classes, upsampled bilinearly to the input)
    #[arg(long, value_enum, default_value = "none")]
    head: HeadChoice,
    /// Size of the seeded random input: N (square), HxW or H,W. At the default, resnet50 with
    /// the DeepLabv3 head at 32,16,8 takes about a minute on lavapipe on 2 cores; at 513x513
    /// (DeepLab's size) two to six
    #[arg(long, default_value = "321x321", value_parser = parse_size, value_name = "N|HxW")]
    size: Hw,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Where to run (with both, the GPU first, then the CPU's fast path)
    #[arg(long, value_enum, default_value = "gpu")]
    device: DeviceChoice,
    /// Timed passes of each output stride after one warm-up pass; each layer's time is their
    /// median. The output strides take turns pass by pass, so a change of load on the machine
    /// hits them alike
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Do not measure the devices' FMA peak and memory bandwidth first (no share of the peak,
    /// no roofline in the plot)
    #[arg(long)]
    no_peak: bool,
    /// Also print one row per layer (JSON and CSV always have them)
    #[arg(long)]
    layers: bool,
    /// Write the whole report as JSON
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write one row per (device, output stride, layer) as CSV
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Draw stages.png (time per stage stacked, one bar per output stride) and roofline.png
    /// (GFLOP/s against FLOP per byte moved, log-log, under the measured peak and bandwidth)
    /// into this folder (created if missing; its parent must exist)
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
    #[command(flatten)]
    adapter: AdapterArgs,
}

/// The output strides asked for: each one a ResNet can have, each once.
fn output_strides(Rates(strides): &Rates) -> Result<Vec<usize>> {
    let possible = OUTPUT_STRIDES.map(|s| s.to_string()).join(", ");
    if strides.is_empty() {
        bail!("--output-strides: give at least one of {possible}");
    }
    for (i, s) in strides.iter().enumerate() {
        if !OUTPUT_STRIDES.contains(s) {
            bail!("--output-strides: a ResNet cannot have output stride {s}; the possible output strides are {possible}");
        }
        if strides[..i].contains(s) {
            bail!("--output-strides: {s} is listed twice");
        }
    }
    Ok(strides.clone())
}

/// Refuses a `--plot` folder that cannot be made, before anything is measured.
fn check_plot_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            bail!("--plot {}: not a folder", dir.display());
        }
        return Ok(());
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        bail!("--plot {}: the folder {} does not exist", dir.display(), parent.display());
    }
    Ok(())
}

impl ProfileArgs {
    /// The network at `output_stride`: the backbone, or the model with its head, seeded.
    fn network(&self, output_stride: usize) -> Result<Network> {
        match self.head.head() {
            None => build(&ModelArgs { arch: self.arch, output_stride, multi_grid: None }, None, ""),
            Some(head) => {
                let model = SegmentationModelArgs {
                    model: Model { head, arch: self.arch },
                    output_stride,
                    rates: None,
                    classes: None,
                    upsample: UpsampleChoice::Bilinear,
                };
                model.build(None, false)
            }
        }
    }
}

fn message(progress: &ProgressBar, base: u64, done: usize, text: String) {
    progress.set_position(base + done as u64);
    progress.set_message(text);
}

pub fn run(args: &ProfileArgs) -> Result<ExitCode> {
    // Everything that can be refused is refused before anything runs.
    let strides = output_strides(&args.output_strides)?;
    if args.repeats == 0 {
        bail!("--repeats must be at least 1 (the timed passes whose median is reported)");
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    for (flag, path) in [("--json", &args.json), ("--csv", &args.csv)] {
        if let Some(path) = path {
            check_output(flag, path)?;
        }
    }
    if let Some(dir) = &args.plot {
        check_plot_dir(dir)?;
    }
    let input = Tensor::random(vec![args.batch, 3, args.size.h, args.size.w], DEFAULT_SEED);
    let networks = strides
        .iter()
        .map(|&os| {
            let network = args.network(os)?;
            network.geometries(input.shape())?;
            Ok((os, network))
        })
        .collect::<Result<Vec<_>>>()?;

    let devices = args.device.devices();
    let gpu = if devices.contains(&Device::Gpu) { Some(args.adapter.open()?) } else { None };
    let passes = profile::WARMUP_PASSES + args.repeats;
    let peak_steps = if args.no_peak { 0 } else { 2 * devices.len() };
    let progress = ProgressBar::new((peak_steps + devices.len() * networks.len() * passes) as u64)
        .with_style(ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}").expect("valid template"));
    progress.enable_steady_tick(std::time::Duration::from_millis(200));
    let result = profile_devices(args, &devices, gpu.as_ref(), &networks, &input, &progress);
    progress.finish_and_clear();
    let report = result?;

    print!("{}", profile::format_table(&report, args.layers));
    // Pictures are drawn before any file is written, so a drawing error leaves no file behind.
    let pictures = match &args.plot {
        Some(_) => Some((profile::stages_png(&report)?, profile::roofline_png(&report)?)),
        None => None,
    };
    let rows: usize = report.devices.iter().flat_map(|d| &d.runs).map(|r| r.layers.len()).sum();
    if let Some(path) = &args.json {
        profile::write_json(path, &report)?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &args.csv {
        profile::write_csv(path, &report)?;
        println!("wrote {} ({rows} rows)", path.display());
    }
    if let (Some(dir), Some((stages, roofline))) = (&args.plot, pictures) {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("--plot {}: cannot create the folder: {e}", dir.display()))?;
        for (name, image) in [("stages.png", stages), ("roofline.png", roofline)] {
            let path = dir.join(name);
            save_png(&image, &path)?;
            println!("wrote {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Measures each device's peak (unless `--no-peak`) and profiles every network on it.
fn profile_devices(
    args: &ProfileArgs,
    devices: &[Device],
    gpu: Option<&atrous::gpu::Gpu>,
    networks: &[(usize, Network)],
    input: &Tensor,
    progress: &ProgressBar,
) -> Result<ProfileReport> {
    let mut base = 0u64;
    let mut step = |text: &str| {
        message(progress, base, 0, text.to_owned());
        base += 1;
    };
    let mut peaks: Vec<Peak> = Vec::new();
    if !args.no_peak {
        for device in devices {
            peaks.push(match (device, gpu) {
                (Device::Gpu, Some(gpu)) => measure_gpu_peak(gpu, gpu.timing_source(), &mut step)?,
                (Device::Gpu, None) => unreachable!("the GPU is opened when asked for"),
                (Device::Cpu, _) => measure_cpu_peak(&mut step)?,
            });
        }
    }
    let passes = (profile::WARMUP_PASSES + args.repeats) as u64;
    let mut profiles = Vec::new();
    for &device in devices {
        let executor: &dyn Executor = match (device, gpu) {
            (Device::Gpu, Some(gpu)) => gpu,
            (Device::Gpu, None) => unreachable!("the GPU is opened when asked for"),
            (Device::Cpu, _) => &Cpu,
        };
        let peak = peaks.iter().find(|p| p.device == device);
        let name = device.name().to_uppercase();
        let each: Vec<&Network> = networks.iter().map(|(_, network)| network).collect();
        let report = |done: usize, index: usize, text: &str| message(progress, base, done, format!("{name}, output stride {}: {text}", networks[index].0));
        let timed = time_passes(executor, &each, input, args.repeats, &report)?;
        base += passes * networks.len() as u64;
        let runs = networks
            .iter()
            .zip(&timed)
            .map(|((os, network), timed)| RunProfile::new(*os, network, input.shape(), timed, peak.map(|p| p.gflops)))
            .collect::<Result<Vec<_>, _>>();
        let mut runs = runs?;
        set_relative(&mut runs);
        profiles.push(DeviceProfile {
            device,
            description: executor.describe(),
            timing: if device == Device::Gpu { "timestamp" } else { "wall" },
            peak: peak.map(Into::into),
            notes: executor.notes(),
            runs,
        });
    }
    let strides: Vec<usize> = networks.iter().map(|(os, _)| *os).collect();
    Ok(ProfileReport {
        arch: args.arch.to_string(),
        head: args.head.name().map(str::to_owned),
        input_shape: input.shape().try_into().expect("the input is NCHW"),
        warmup_passes: profile::WARMUP_PASSES,
        timed_passes: args.repeats,
        reference_output_stride: strides.iter().copied().max().expect("at least one output stride"),
        output_strides: strides,
        bytes_moved: profile::BYTES_MOVED,
        devices: profiles,
    })
}
