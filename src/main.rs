//! The `atrous` command line: a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use atrous::backend::Cpu;
use atrous::compare::difference;
use atrous::gpu::{Gpu, GpuOptions};
use atrous::npy::{read_npy, write_npy};
use atrous::{Backend, Conv2dParams, ConvGeometry, ConvTranspose2dParams, Hw, Tensor};

/// Relative tolerance under which `--compare` calls GPU and CPU in agreement.
const AGREEMENT_TOLERANCE: f64 = 1e-4;

#[derive(Parser)]
#[command(name = "atrous", version, about = "Dilated and transposed convolutions on any GPU (wgpu), checked against a CPU reference")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every GPU adapter wgpu can see, with its backend, driver and key limits
    Devices {
        #[command(flatten)]
        adapter: AdapterArgs,
    },
    /// 2-D convolution of .npy tensors (PyTorch's conv2d: NCHW input, [C_out, C_in/groups, kH, kW] weight)
    Conv2d {
        #[command(flatten)]
        conv: ConvArgs,
    },
    /// 2-D transposed convolution of .npy tensors (PyTorch's conv_transpose2d: weight [C_in, C_out/groups, kH, kW])
    #[command(name = "conv-transpose2d")]
    ConvTranspose2d {
        #[command(flatten)]
        conv: ConvArgs,
        /// Extra rows/columns added to one side of the output: P or PH,PW; must be < max(stride, dilation)
        #[arg(long, default_value = "0", value_name = "P|PH,PW")]
        output_padding: Hw,
    },
}

#[derive(Args)]
struct AdapterArgs {
    /// GPU backend(s) to use: vulkan, metal, dx12, gl (comma-separated); default: WGPU_BACKEND, else all
    #[arg(long, value_name = "NAME")]
    backend: Option<String>,
    /// Use the adapter whose name contains this text; default: WGPU_ADAPTER_NAME, else the best one
    #[arg(long, value_name = "TEXT")]
    adapter: Option<String>,
}

impl AdapterArgs {
    fn options(&self) -> GpuOptions {
        GpuOptions { backend: self.backend.clone(), adapter_name: self.adapter.clone(), ..Default::default() }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Device {
    Gpu,
    Cpu,
}

#[derive(Args)]
struct ConvArgs {
    /// Input tensor, NCHW, float32 or float64 .npy
    #[arg(long, value_name = "X.npy")]
    input: PathBuf,
    /// Weight tensor .npy
    #[arg(long, value_name = "W.npy")]
    weight: PathBuf,
    /// Optional bias .npy, shape [C_out]
    #[arg(long, value_name = "B.npy")]
    bias: Option<PathBuf>,
    /// Where to write the result (float32 .npy); written only if the whole run succeeds
    #[arg(long, value_name = "Y.npy")]
    output: Option<PathBuf>,
    /// Stride: S or SH,SW
    #[arg(long, default_value = "1", value_name = "S|SH,SW")]
    stride: Hw,
    /// Zero padding on each side: P or PH,PW
    #[arg(long, default_value = "0", value_name = "P|PH,PW")]
    padding: Hw,
    /// Dilation (spacing between kernel taps): D or DH,DW
    #[arg(long, default_value = "1", value_name = "D|DH,DW")]
    dilation: Hw,
    /// Channel groups (C_in for depthwise)
    #[arg(long, default_value_t = 1)]
    groups: usize,
    /// Where to run; the output file holds this device's result
    #[arg(long, value_enum, default_value = "gpu")]
    device: Device,
    /// Run on both GPU and CPU and report their max absolute and relative difference
    /// (exit status 2 when they disagree by more than 1e-4 relative)
    #[arg(long)]
    compare: bool,
    #[command(flatten)]
    adapter: AdapterArgs,
}

struct Loaded {
    input: Tensor,
    weight: Tensor,
    bias: Option<Tensor>,
}

impl ConvArgs {
    fn load(&self) -> Result<Loaded> {
        Ok(Loaded {
            input: read_npy(&self.input).context("reading --input")?,
            weight: read_npy(&self.weight).context("reading --weight")?,
            bias: self.bias.as_ref().map(read_npy).transpose().context("reading --bias")?,
        })
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Devices { adapter } => devices(&adapter.options()),
        Command::Conv2d { conv } => {
            let params = Conv2dParams { stride: conv.stride, padding: conv.padding, dilation: conv.dilation, groups: conv.groups };
            let tensors = conv.load()?;
            let geometry = params.geometry(tensors.input.shape(), tensors.weight.shape(), tensors.bias.as_ref().map(Tensor::shape))?;
            convolve("conv2d", &conv, &tensors, geometry)
        }
        Command::ConvTranspose2d { conv, output_padding } => {
            let params = ConvTranspose2dParams {
                stride: conv.stride,
                padding: conv.padding,
                output_padding,
                dilation: conv.dilation,
                groups: conv.groups,
            };
            let tensors = conv.load()?;
            let geometry = params.geometry(tensors.input.shape(), tensors.weight.shape(), tensors.bias.as_ref().map(Tensor::shape))?;
            convolve("conv-transpose2d", &conv, &tensors, geometry)
        }
    }
}

fn devices(options: &GpuOptions) -> Result<ExitCode> {
    let adapters = Gpu::enumerate(options)?;
    println!("{} adapter(s), best first (the first is used unless --adapter / WGPU_ADAPTER_NAME says otherwise):", adapters.len());
    for (i, a) in adapters.iter().enumerate() {
        println!("\n[{i}] {}", a.name);
        println!("    backend       {:?}", a.backend);
        println!("    device type   {:?}", a.device_type);
        println!("    driver        {} {}", a.driver, a.driver_info);
        println!("    max storage buffer binding  {} bytes", a.max_storage_buffer_binding_size);
        println!("    max buffer size             {} bytes", a.max_buffer_size);
        println!("    max workgroups / dimension  {}", a.max_compute_workgroups_per_dimension);
        println!("    max invocations / workgroup {}", a.max_compute_invocations_per_workgroup);
        println!("    workgroup shared memory     {} bytes", a.max_compute_workgroup_storage_size);
        println!("    timestamp queries           {}", if a.timestamp_query { "yes" } else { "no" });
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(op: &str, g: &ConvGeometry) -> String {
    format!(
        "{op}: input {:?} weight {:?} -> output {:?} (stride {}, padding {}, dilation {}, groups {})",
        g.input_shape(),
        g.weight_shape().unwrap_or_default(),
        g.output_shape(),
        g.stride,
        g.padding,
        g.dilation,
        g.groups
    )
}

fn convolve(op: &str, args: &ConvArgs, t: &Loaded, geometry: ConvGeometry) -> Result<ExitCode> {
    println!("{}", describe(op, &geometry));
    let gpu = if args.device == Device::Gpu || args.compare {
        let gpu = Gpu::new(&args.adapter.options())?;
        println!("GPU: {}", gpu.summary());
        Some(gpu)
    } else {
        None
    };
    let execute = |backend: &dyn Backend| -> Result<Tensor> {
        let data = backend.convolve(&geometry, t.input.data(), t.weight.data(), t.bias.as_ref().map(Tensor::data))?;
        Ok(Tensor::new(geometry.output_shape().to_vec(), data)?)
    };
    let gpu_result = gpu.as_ref().map(|g| execute(g)).transpose()?;
    let cpu_result = if args.device == Device::Cpu || args.compare { Some(execute(&Cpu)?) } else { None };

    let mut code = ExitCode::SUCCESS;
    if let (Some(on_gpu), Some(on_cpu)) = (&gpu_result, &cpu_result) {
        let diff = difference(on_gpu.data(), on_cpu.data());
        println!("compare GPU vs CPU: shapes {:?} and {:?}", on_gpu.shape(), on_cpu.shape());
        println!("  {diff}");
        if diff.within(AGREEMENT_TOLERANCE) {
            println!("  verdict: agree (within {AGREEMENT_TOLERANCE:e} relative)");
        } else {
            println!("  verdict: DISAGREE (beyond {AGREEMENT_TOLERANCE:e} relative)");
            code = ExitCode::from(2);
        }
    }
    if let Some(path) = &args.output {
        let result = match args.device {
            Device::Gpu => gpu_result.as_ref(),
            Device::Cpu => cpu_result.as_ref(),
        }
        .expect("the chosen device always runs");
        write_npy(path, result)?;
        println!("wrote {} ({:?})", path.display(), result.shape());
    }
    Ok(code)
}
