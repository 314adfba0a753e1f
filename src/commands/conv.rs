//! `atrous conv2d` and `atrous conv-transpose2d`: one op on `.npy` files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::{device_parser, AdapterArgs, Device};
use atrous::backend::Cpu;
use atrous::compare::difference;
use atrous::npy::{read_npy, write_npy};
use atrous::{Backend, Conv2dParams, ConvTranspose2dParams, Hw, Tensor, WindowGeometry};

#[derive(Args)]
pub struct ConvArgs {
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
    /// Stride: S, SHxSW or SH,SW
    #[arg(long, default_value = "1", value_name = "S|SH,SW")]
    stride: Hw,
    /// Zero padding on each side: P, PHxPW or PH,PW
    #[arg(long, default_value = "0", value_name = "P|PH,PW")]
    padding: Hw,
    /// Dilation (spacing between kernel taps): D, DHxDW or DH,DW
    #[arg(long, default_value = "1", value_name = "D|DH,DW")]
    dilation: Hw,
    /// Channel groups (C_in for depthwise)
    #[arg(long, default_value_t = 1)]
    groups: usize,
    /// Where to run; the output file holds this device's result
    #[arg(long, value_parser = device_parser(), default_value = "gpu")]
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

pub fn conv2d(conv: &ConvArgs) -> Result<ExitCode> {
    let params = Conv2dParams { stride: conv.stride, padding: conv.padding, dilation: conv.dilation, groups: conv.groups };
    let tensors = conv.load()?;
    let geometry = params.geometry(tensors.input.shape(), tensors.weight.shape(), tensors.bias.as_ref().map(Tensor::shape))?;
    convolve("conv2d", conv, &tensors, geometry)
}

pub fn conv_transpose2d(conv: &ConvArgs, output_padding: Hw) -> Result<ExitCode> {
    let params = ConvTranspose2dParams { stride: conv.stride, padding: conv.padding, output_padding, dilation: conv.dilation, groups: conv.groups };
    let tensors = conv.load()?;
    let geometry = params.geometry(tensors.input.shape(), tensors.weight.shape(), tensors.bias.as_ref().map(Tensor::shape))?;
    convolve("conv-transpose2d", conv, &tensors, geometry)
}

fn describe(op: &str, g: &WindowGeometry) -> String {
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

fn convolve(op: &str, args: &ConvArgs, t: &Loaded, geometry: WindowGeometry) -> Result<ExitCode> {
    println!("{}", describe(op, &geometry));
    let gpu = if args.device == Device::Gpu || args.compare { Some(args.adapter.open()?) } else { None };
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
        let precision = gpu.as_ref().expect("compared on a GPU").precision();
        let (tolerance, measure) = (precision.op_tolerance(), precision.judged_error_name());
        if precision.agrees(&diff, tolerance) {
            println!("  verdict: agree (within {tolerance:e} {measure} error)");
        } else {
            println!("  verdict: DISAGREE (beyond {tolerance:e} {measure} error)");
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
