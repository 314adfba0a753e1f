//! `atrous backbone` (run a ResNet, optionally compare GPU with CPU layer by layer) and
//! `atrous rf` (the receptive-field arithmetic, no computation).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::parse::{parse_size, Rates};
use super::run::{note_unused, InputArgs, Run, RunArgs, DEFAULT_SEED};
use atrous::models::resnet::{resnet, Arch, ResNetConfig};
use atrous::net::{receptive_fields, Executor, Network};
use atrous::npy::write_npy;
use atrous::weights::{Prefixed, SafetensorsWeights, SeededWeights};
use atrous::{Hw, Tensor};

/// Which backbone, with which weights.
#[derive(Args, Clone)]
pub struct ModelArgs {
    /// resnet18, resnet34, resnet50, resnet101 or resnet152
    #[arg(long, default_value = "resnet50", value_parser = |s: &str| s.parse::<Arch>())]
    pub arch: Arch,
    /// Output stride: 32 (the plain ResNet), 16, 8 or 4 (later strides become dilations)
    #[arg(long, default_value_t = 16)]
    pub output_stride: usize,
    /// DeepLabv3 multi-grid: layer4's block i uses the layer's rate times Ri (1,2,4 at output stride 16 gives 2,4,8)
    #[arg(long, value_name = "R1,R2,R3")]
    pub multi_grid: Option<Rates>,
}

impl ModelArgs {
    pub fn config(&self) -> ResNetConfig {
        let mut config = ResNetConfig::new(self.arch, self.output_stride);
        config.multi_grid = self.multi_grid.as_ref().map(|Rates(grid)| grid.clone());
        config
    }
}

#[derive(Args)]
pub struct BackboneArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A torchvision ResNet state_dict saved as .safetensors; default: built-in seeded weights
    #[arg(long, value_name = "W.safetensors")]
    pub weights: Option<PathBuf>,
    /// Prefix of the backbone's tensor names in --weights (e.g. "backbone." in a DeepLab state dict)
    #[arg(long, default_value = "", value_name = "PREFIX")]
    pub weights_prefix: String,
    #[command(flatten)]
    pub input: InputArgs,
    /// Write layer4's features (NCHW float32) here
    #[arg(long, value_name = "F.npy")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Builds the network with the chosen weights and reports unused tensors of a weights file.
pub fn build(model: &ModelArgs, weights: Option<&PathBuf>, prefix: &str) -> Result<Network> {
    let config = model.config();
    match weights {
        None => Ok(resnet(&config, &mut SeededWeights::new(DEFAULT_SEED))?),
        Some(path) => {
            let mut file = SafetensorsWeights::open(path)?;
            let network = resnet(&config, &mut Prefixed::new(&mut file, prefix))?;
            note_unused(&file, path, prefix, &[&format!("{prefix}fc.")]);
            Ok(network)
        }
    }
}

pub fn backbone(args: &BackboneArgs) -> Result<ExitCode> {
    let network = build(&args.model, args.weights.as_ref(), &args.weights_prefix)?;
    let (input, _) = args.input.load()?;
    network.geometries(input.shape())?; // refuse bad shapes before opening a device
    let (executor, run) = args.run.run(&network, &input)?;
    if args.run.json {
        print_json(args, &network, &input, executor.as_ref(), &run);
    } else {
        args.run.print(&run, &network, &input, executor.as_ref());
    }
    if let Some(path) = &args.output {
        write_npy(path, run.features())?;
        eprintln!("wrote layer4 features {:?} to {}", run.features().shape(), path.display());
    }
    Ok(if run.agree() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

fn print_json(args: &BackboneArgs, network: &Network, input: &Tensor, executor: &dyn Executor, run: &Run) {
    let mut report = json!({
        "arch": args.model.arch.to_string(),
        "output_stride": args.model.output_stride,
        "multi_grid": args.model.config().multi_grid,
    });
    report.as_object_mut().expect("an object").extend(run.report(network, input, executor));
    println!("{}", serde_json::to_string_pretty(&report).expect("JSON of plain values"));
}

#[derive(Args)]
pub struct RfArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Input size HxW or H,W (or N) for the feature-map sizes
    #[arg(long, value_parser = parse_size, default_value = "513", value_name = "HxW")]
    pub size: Hw,
}

/// `atrous rf`: kernel, effective kernel, stride, dilation, jump, receptive field and feature
/// size of every layer.
pub fn rf(args: &RfArgs) -> Result<ExitCode> {
    let network = build(&args.model, None, "")?;
    let geometries = network.geometries(&[1, 3, args.size.h, args.size.w])?;
    let fields = receptive_fields(&network, &geometries);
    println!("{} with a {}x{} input", network.name, args.size.h, args.size.w);
    println!("{:<24} {:>6} {:>9} {:>6} {:>8} {:>5} {:>9} {:>12}", "layer", "kernel", "effective", "stride", "dilation", "jump", "RF", "feature map");
    for ((layer, geometry), f) in network.layers.iter().zip(&geometries).zip(&fields) {
        let g = geometry.window().expect("a backbone has window ops only");
        let effective = atrous::shape::effective_kernel(g.kernel.h, g.dilation.h);
        println!(
            "{:<24} {:>6} {:>9} {:>6} {:>8} {:>5} {:>9} {:>12}",
            layer.name,
            format!("{}x{}", g.kernel.h, g.kernel.w),
            format!("{effective}x{}", atrous::shape::effective_kernel(g.kernel.w, g.dilation.w)),
            g.stride.h,
            g.dilation.h,
            f.jump.h,
            format!("{}x{}", f.receptive_field.h, f.receptive_field.w),
            format!("{}x{}", g.output.h, g.output.w)
        );
    }
    let last = fields.last().expect("a ResNet has layers");
    println!("output stride {} (jump after the last layer); receptive field {}x{}", last.jump.h, last.receptive_field.h, last.receptive_field.w);
    Ok(ExitCode::SUCCESS)
}
