//! `atrous segment`: a DeepLabv3 or FCN model on a photo or a tensor. Writes the logits, a
//! class mask with the Pascal VOC palette and its overlay on the picture; with `--compare`,
//! every layer's GPU-vs-CPU error and the share of pixels whose class differs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use image::RgbImage;
use serde_json::json;

use super::parse::Rates;
use super::run::{note_unused, InputArgs, Run, RunArgs, DEFAULT_SEED};
use atrous::imaging::{argmax_classes, mask_overlay, save_mask_png, save_png, tensor_to_image};
use atrous::models::segmentation::{segmentation, Head, Model, SegmentationConfig, Upsample, VOC_CLASSES};
use atrous::net::{Executor, Network};
use atrous::npy::write_npy;
use atrous::weights::{SafetensorsWeights, SeededWeights};
use atrous::Tensor;

/// How the logits return to the input's size.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UpsampleChoice {
    /// Bilinear interpolation, align_corners=False (what torchvision's models do)
    Bilinear,
    /// The FCN paper's transposed convolution (kernel 2f, stride f, padding f/2, bilinear weights)
    Transposed,
}

impl From<UpsampleChoice> for Upsample {
    fn from(choice: UpsampleChoice) -> Upsample {
        match choice {
            UpsampleChoice::Bilinear => Upsample::Bilinear,
            UpsampleChoice::Transposed => Upsample::Transposed,
        }
    }
}

/// Which segmentation model, with which weights.
#[derive(Args, Clone)]
pub struct SegmentationModelArgs {
    /// deeplabv3_resnet50, deeplabv3_resnet101, fcn_resnet50, fcn_resnet101 (resnet18, 34 and 152 work too)
    #[arg(long, default_value = "deeplabv3_resnet50", value_parser = |s: &str| s.parse::<Model>())]
    pub model: Model,
    /// Output stride of the backbone: 8 (torchvision's models) or 16; 4 and 32 work too
    #[arg(long, default_value_t = 8)]
    pub output_stride: usize,
    /// DeepLabv3's ASPP rates; default 12,24,36 at output stride 8 and 6,12,18 at 16
    #[arg(long, value_name = "R1,R2,R3")]
    pub rates: Option<Rates>,
    /// Classes of the built-in weights (a --weights file says how many it has)
    #[arg(long)]
    pub classes: Option<usize>,
    /// How the logits return to the input's size
    #[arg(long, value_enum, default_value = "bilinear")]
    pub upsample: UpsampleChoice,
}

#[derive(Args)]
pub struct SegmentArgs {
    #[command(flatten)]
    pub model: SegmentationModelArgs,
    /// A torchvision segmentation state_dict (deeplabv3_resnet50's, …) as .safetensors; default: built-in seeded weights
    #[arg(long, value_name = "W.safetensors")]
    pub weights: Option<PathBuf>,
    #[command(flatten)]
    pub input: InputArgs,
    /// Write the logits (N, classes, H, W; float32) here
    #[arg(long, value_name = "LOGITS.npy")]
    pub output: Option<PathBuf>,
    /// Also run torchvision's auxiliary head (aux_classifier.*: an FCN head on layer3) and write its logits here
    #[arg(long, value_name = "AUX.npy")]
    pub aux: Option<PathBuf>,
    /// Write each pixel's arg-max class as a paletted PNG (Pascal VOC colours; batch of 1)
    #[arg(long, value_name = "MASK.png")]
    pub mask: Option<PathBuf>,
    /// Write the mask's colours over the picture (the de-normalised input for --input/--size)
    #[arg(long, value_name = "OVERLAY.png")]
    pub overlay: Option<PathBuf>,
    // With --compare, segment also reports the share of pixels whose arg-max class differs.
    #[command(flatten)]
    pub run: RunArgs,
}

impl SegmentationModelArgs {
    fn config(&self, classes: usize, aux: bool) -> Result<SegmentationConfig> {
        if self.rates.is_some() && self.model.head != Head::DeepLabV3 {
            bail!("--rates sets DeepLabv3's ASPP rates; {} has no ASPP", self.model);
        }
        let mut config = SegmentationConfig::new(self.model, self.output_stride);
        config.classes = classes;
        config.rates = self.rates.as_ref().map(|Rates(r)| r.clone());
        config.upsample = self.upsample.into();
        config.aux = aux;
        Ok(config)
    }

    /// Builds the model (with the auxiliary head when `aux`) with seeded weights, or from a
    /// state dict whose classifier gives the number of classes.
    pub fn build(&self, weights: Option<&Path>, aux: bool) -> Result<Network> {
        let Some(path) = weights else {
            return Ok(segmentation(&self.config(self.classes.unwrap_or(VOC_CLASSES), aux)?, &mut SeededWeights::new(DEFAULT_SEED))?);
        };
        let mut file = SafetensorsWeights::open(path)?;
        let in_file = file.shape_of("classifier.4.weight").map(|shape| shape[0]);
        let classes = match (self.classes, in_file) {
            (Some(asked), Some(found)) if asked != found => {
                bail!("--classes {asked} disagrees with {}: its classifier.4.weight has {found} classes", path.display())
            }
            (_, Some(found)) => found,
            // Without classifier.4.weight the build below is refused, naming the tensor.
            (asked, None) => asked.unwrap_or(VOC_CLASSES),
        };
        let network = segmentation(&self.config(classes, aux)?, &mut file)?;
        note_unused(&file, path, "", if aux { &[] } else { &["aux_classifier."] });
        Ok(network)
    }
}

/// The share of pixels whose arg-max class differs between two logit tensors.
pub fn argmax_disagreement(logits: &Tensor, reference: &Tensor) -> f64 {
    let (a, b) = (argmax_classes(logits), argmax_classes(reference));
    a.iter().zip(&b).filter(|(x, y)| x != y).count() as f64 / a.len() as f64
}

/// Writes the mask and overlay of sample 0 of `logits` over `picture`.
pub fn write_pictures(logits: &Tensor, picture: &RgbImage, mask: Option<&Path>, overlay: Option<&Path>) -> Result<()> {
    let [_, _, h, w] = logits.shape().try_into().expect("logits are NCHW");
    let classes = &argmax_classes(logits)[..h * w];
    if let Some(path) = mask {
        save_mask_png(classes, h, w, path)?;
        eprintln!("wrote the class mask ({w}x{h}, VOC palette) to {}", path.display());
    }
    if let Some(path) = overlay {
        save_png(&mask_overlay(picture, classes), path)?;
        eprintln!("wrote the overlay to {}", path.display());
    }
    Ok(())
}

pub fn segment(args: &SegmentArgs) -> Result<ExitCode> {
    let network = args.model.build(args.weights.as_deref(), args.aux.is_some())?;
    let (input, photo) = args.input.load()?;
    // Everything that can be refused is refused before anything runs.
    let [batch, classes, ..] = network.geometries(input.shape())?.last().expect("a model has layers").output_shape();
    let pictures = args.mask.is_some() || args.overlay.is_some();
    if pictures && batch != 1 {
        bail!("--mask and --overlay draw one picture: give a batch of 1 (the input's batch is {batch})");
    }
    if args.mask.is_some() && classes > 256 {
        bail!("--mask writes class indices into an 8-bit paletted PNG, which holds at most 256 classes; this model has {classes}");
    }
    let (executor, run) = args.run.run(&network, &input)?;
    let logits = run.features();
    let disagreement = run.reference_features().map(|reference| argmax_disagreement(logits, reference));

    if args.run.json {
        print_json(args, &network, &input, executor.as_ref(), &run, disagreement);
    } else {
        args.run.print(&run, &network, &input, executor.as_ref());
        if let Some(share) = disagreement {
            println!("arg-max class differs between GPU and CPU at {:.4}% of pixels", share * 100.0);
        }
    }
    if let Some(path) = &args.output {
        write_npy(path, logits)?;
        eprintln!("wrote logits {:?} to {}", logits.shape(), path.display());
    }
    if let Some(path) = &args.aux {
        let aux = network.extra_outputs.first().and_then(|&i| run.primary.outputs[i].as_ref()).expect("the auxiliary head is an output");
        write_npy(path, aux)?;
        eprintln!("wrote the auxiliary head's logits {:?} to {}", aux.shape(), path.display());
    }
    if pictures {
        let picture = photo.unwrap_or_else(|| tensor_to_image(&input, 0));
        write_pictures(logits, &picture, args.mask.as_deref(), args.overlay.as_deref())?;
    }
    Ok(if run.agree() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

fn print_json(args: &SegmentArgs, network: &Network, input: &Tensor, executor: &dyn Executor, run: &Run, disagreement: Option<f64>) {
    let mut report = json!({
        "model": args.model.model.to_string(),
        "output_stride": args.model.output_stride,
        "upsample": Upsample::from(args.model.upsample).to_string(),
        "classes": run.features().shape()[1],
        "argmax_disagreement": disagreement,
    });
    report.as_object_mut().expect("an object").extend(run.report(network, input, executor));
    println!("{}", serde_json::to_string_pretty(&report).expect("JSON of plain values"));
}
