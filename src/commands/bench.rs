//! `atrous bench`: the dilation throughput profiler — a thin layer over [`atrous::bench`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use super::parse::{parse_size, Rates};
use super::{check_output, AdapterArgs};
use atrous::bench::{self, BenchConfig, Device, GpuKernels, GpuTiming, ConvOp};
use atrous::gpu::GpuOptions;
use atrous::Hw;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OpChoice {
    #[value(name = "conv2d")]
    Conv2d,
    #[value(name = "conv-transpose2d")]
    ConvTranspose2d,
    Both,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceChoice {
    Gpu,
    Cpu,
    Both,
}

impl DeviceChoice {
    /// The devices chosen, the GPU first.
    pub fn devices(self) -> Vec<Device> {
        match self {
            DeviceChoice::Gpu => vec![Device::Gpu],
            DeviceChoice::Cpu => vec![Device::Cpu],
            DeviceChoice::Both => vec![Device::Gpu, Device::Cpu],
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TimingChoice {
    /// Timestamp queries where the device has them, else the wall clock
    Auto,
    /// The wall clock around submit + wait
    Wall,
}

/// `--gpu-kernel`'s value: `auto`, `all` or a kernel's name.
fn parse_gpu_kernel(text: &str) -> Result<GpuKernels, String> {
    GpuKernels::from_name(text.trim())
}

#[derive(Args)]
pub struct BenchArgs {
    /// Which convolution to time
    #[arg(long, value_enum, default_value = "conv2d")]
    op: OpChoice,
    /// Dilations to time, comma-separated; padding is dilation·(k−1)/2
    #[arg(long, default_value = "1,2,4,8,16", value_name = "D,D,...")]
    dilations: Rates,
    /// Input channels
    #[arg(long, default_value_t = 256)]
    channels: usize,
    /// Output channels (default: as many as the input)
    #[arg(long, value_name = "N")]
    out_channels: Option<usize>,
    /// Input size: N (square), HxW or H,W
    #[arg(long, default_value = "65", value_parser = parse_size, value_name = "N|HxW")]
    size: Hw,
    /// Kernel side (square kernels)
    #[arg(long, default_value_t = 3)]
    kernel: usize,
    #[arg(long, default_value_t = 1)]
    stride: usize,
    /// Channel groups (the channels for depthwise)
    #[arg(long, default_value_t = 1)]
    groups: usize,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Untimed runs before the timed ones, per configuration
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed runs per configuration (median, min and max are reported)
    #[arg(long, default_value_t = 20)]
    repeats: usize,
    /// Where to run
    #[arg(long, value_enum, default_value = "gpu")]
    device: DeviceChoice,
    /// Write the records as a JSON list
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the records as CSV (the JSON keys as columns)
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Draw GFLOP/s against dilation as a PNG
    #[arg(long, value_name = "FILE.png")]
    plot: Option<PathBuf>,
    /// First measure each device's attainable FP32 FMA rate; every row gets its fraction of it
    #[arg(long)]
    peak: bool,
    /// How GPU runs are timed
    #[arg(long, value_enum, default_value = "auto")]
    timing: TimingChoice,
    /// Which GPU kernel runs the convolutions: `auto` (the fastest measured on this device for
    /// the shape's class, or the rule's with ATROUS_AUTOTUNE=0), `all` (every kernel that applies,
    /// then auto: one record each), or one forced: direct, tiled, lanes, gemm128x128, gemm64x64,
    /// gemm32x128, gemm128x32
    #[arg(long, default_value = "auto", value_name = "KERNEL", value_parser = parse_gpu_kernel)]
    gpu_kernel: GpuKernels,
    #[command(flatten)]
    adapter: AdapterArgs,
}

impl BenchArgs {
    fn config(&self) -> BenchConfig {
        BenchConfig {
            ops: match self.op {
                OpChoice::Conv2d => vec![ConvOp::Conv2d],
                OpChoice::ConvTranspose2d => vec![ConvOp::ConvTranspose2d],
                OpChoice::Both => vec![ConvOp::Conv2d, ConvOp::ConvTranspose2d],
            },
            dilations: self.dilations.0.clone(),
            channels: self.channels,
            out_channels: self.out_channels,
            size: self.size,
            kernel: self.kernel,
            stride: self.stride,
            groups: self.groups,
            batch: self.batch,
            warmup: self.warmup,
            repeats: self.repeats,
            devices: self.device.devices(),
            peak: self.peak,
            gpu_timing: match self.timing {
                TimingChoice::Auto => GpuTiming::Auto,
                TimingChoice::Wall => GpuTiming::Wall,
            },
            gpu_kernel: self.gpu_kernel,
        }
    }
}

pub fn run(args: &BenchArgs) -> Result<ExitCode> {
    let config = args.config();
    let cases = config.cases()?;
    for (flag, path) in [("--json", &args.json), ("--csv", &args.csv), ("--plot", &args.plot)] {
        if let Some(path) = path {
            check_output(flag, path)?;
        }
    }
    if let Some(plot) = &args.plot {
        if !plot.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
            bail!("--plot {}: the plot is a PNG; give a file name ending in .png", plot.display());
        }
    }
    // A benchmark measures tuned kernels: no per-run tuning budget (each class stays bounded).
    let options = GpuOptions { tuning_budget: Some(f64::INFINITY), ..args.adapter.options() };
    let gpu = if config.devices.contains(&Device::Gpu) { Some(args.adapter.open_with(&options)?) } else { None };

    let progress = ProgressBar::new(config.steps(&cases))
        .with_style(ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}").expect("valid template"));
    let mut done = 0;
    let report = bench::run(&config, gpu.as_ref(), &mut |message| {
        progress.set_position(done);
        progress.set_message(message.to_owned());
        done += 1;
    });
    progress.finish_and_clear();
    let report = report?;

    print!("{}", bench::format_table(&report));
    // The plot is drawn before any file is written, so a drawing error leaves no file behind.
    let plot = args.plot.as_ref().map(|_| bench::plot_png(&report)).transpose()?;
    if let Some(path) = &args.json {
        bench::write_json(path, &report.records)?;
        println!("wrote {} ({} records)", path.display(), report.records.len());
    }
    if let Some(path) = &args.csv {
        bench::write_csv(path, &report.records)?;
        println!("wrote {} ({} records)", path.display(), report.records.len());
    }
    if let (Some(path), Some(image)) = (&args.plot, plot) {
        atrous::imaging::save_png(&image, path)?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
