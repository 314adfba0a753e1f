//! The `atrous` command line: a thin layer over the library, one module per subcommand.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use atrous::Hw;
use commands::{backbone, bench, conv, demo, devices, profile, segment, AdapterArgs};

#[derive(Parser)]
#[command(name = "atrous", version, about = "Dilated and transposed convolutions on any GPU (wgpu), checked against a CPU reference")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job on built-in data: ResNet-50 at output stride 16 and 8 and DeepLabv3 on the GPU, compared with the CPU, with heatmaps and a class mask
    Demo(demo::DemoArgs),
    /// List every GPU adapter wgpu can see, with its backend, driver and key limits
    Devices {
        #[command(flatten)]
        adapter: AdapterArgs,
    },
    /// 2-D convolution of .npy tensors (PyTorch's conv2d: NCHW input, [C_out, C_in/groups, kH, kW] weight)
    Conv2d {
        #[command(flatten)]
        conv: conv::ConvArgs,
    },
    /// 2-D transposed convolution of .npy tensors (PyTorch's conv_transpose2d: weight [C_in, C_out/groups, kH, kW])
    #[command(name = "conv-transpose2d")]
    ConvTranspose2d {
        #[command(flatten)]
        conv: conv::ConvArgs,
        /// Extra rows/columns added to one side of the output: P, PHxPW or PH,PW; must be < max(stride, dilation)
        #[arg(long, default_value = "0", value_name = "P|PH,PW")]
        output_padding: Hw,
    },
    /// Run a ResNet backbone with a chosen output stride; per-layer table, optional GPU-vs-CPU comparison
    Backbone(backbone::BackboneArgs),
    /// Semantic segmentation: DeepLabv3 or FCN on a dilated ResNet; logits, class mask and overlay PNGs, optional GPU-vs-CPU comparison (per layer, and the share of pixels whose class differs)
    Segment(segment::SegmentArgs),
    /// Receptive-field arithmetic of a backbone, layer by layer (no computation)
    Rf(backbone::RfArgs),
    /// Throughput of a convolution as its dilation grows: GFLOP/s on the GPU and/or CPU, table, JSON, CSV, plot
    Bench(bench::BenchArgs),
    /// A backbone (and optionally a head) at several output strides in one run: per layer and stage its FLOPs, time, GFLOP/s, share of the FMA peak, bytes moved and arithmetic intensity; table, JSON, CSV, plots
    Profile(profile::ProfileArgs),
}

/// The error and its causes on one line, each cause once: many errors already quote their
/// cause in their own message.
fn describe(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message = format!("{message}: {cause}");
        }
    }
    message
}

/// Keeps freed memory in glibc's heap for the next allocation instead of returning it to the
/// kernel: every CPU layer allocates its output (tens of MB in a dilated ResNet, above the
/// largest threshold glibc would otherwise serve from its heap), and a fresh mapping per layer
/// has the kernel fault in and zero every page again.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
    // Freed memory is reused now, so scratch allocated per call faults nothing in twice.
    atrous::cpu::allocate_scratch_per_call(true);
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn main() -> ExitCode {
    keep_freed_memory();
    // Exit status 2 means "GPU and CPU disagree"; a usage error exits 1 like every other error.
    let cli = Cli::try_parse().unwrap_or_else(|error| {
        let _ = error.print();
        std::process::exit(if error.use_stderr() { 1 } else { 0 })
    });
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Devices { adapter } => devices::run(&adapter.options()),
        Command::Conv2d { conv } => conv::conv2d(&conv),
        Command::ConvTranspose2d { conv, output_padding } => conv::conv_transpose2d(&conv, output_padding),
        Command::Backbone(args) => backbone::backbone(&args),
        Command::Segment(args) => segment::segment(&args),
        Command::Rf(args) => backbone::rf(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Profile(args) => profile::run(&args),
    };
    result.unwrap_or_else(|error| {
        eprintln!("error: {}", describe(&error));
        ExitCode::FAILURE
    })
}
