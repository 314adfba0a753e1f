//! Dense prediction on a dilated ResNet: torchvision's DeepLabv3 and FCN heads (layout and
//! names of `deeplabv3_resnet50/101` and `fcn_resnet50/101` state dicts), followed by an
//! upsampling of the logits to the input's size.
//!
//! - DeepLabv3 (`classifier.*`): ASPP — a 1×1 branch, one 3×3 branch per atrous rate, and an
//!   image-pooling branch (global average pool, 1×1 conv, broadcast back) — concatenated,
//!   projected by a 1×1 conv, then a 3×3 conv and a 1×1 conv to the classes.
//! - FCN (`classifier.*`): a 3×3 conv to a quarter of the channels, then a 1×1 conv to the classes.
//! - Upsampling: bilinear (`F.interpolate(..., align_corners=False)`, torchvision's choice), or
//!   the FCN paper's learned upsampling — a transposed convolution per class with kernel 2f,
//!   stride f, padding f/2 (f = the output stride) and bilinear weights — cut to the input's size.
//!
//! Batch-norms are folded as in the backbone; dropout does nothing at inference and is left out;
//! `aux_classifier.*` (an FCN head on layer3) is built only when asked for.

use std::fmt;
use std::str::FromStr;

use super::builder::{Builder, ConvBn};
use super::resnet::{resnet, Arch, ResNetConfig};
use crate::net::{Layer, Network, Op, Source};
use crate::shape::{ConvTranspose2dParams, Hw};
use crate::weights::{Prefixed, WeightSource};
use crate::{Error, Tensor};

/// Channels of every ASPP branch and of the DeepLabv3 head after it (torchvision's 256).
pub const ASPP_CHANNELS: usize = 256;

/// Classes of the Pascal VOC models torchvision ships (background and 20 objects).
pub const VOC_CLASSES: usize = 21;

/// Which head sits on the backbone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    DeepLabV3,
    Fcn,
}

/// A head on a ResNet, named as torchvision names its builders (`deeplabv3_resnet50`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Model {
    pub head: Head,
    pub arch: Arch,
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = match self.head {
            Head::DeepLabV3 => "deeplabv3",
            Head::Fcn => "fcn",
        };
        write!(f, "{head}_{}", self.arch)
    }
}

impl FromStr for Model {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let known = || "expected deeplabv3_resnetNN or fcn_resnetNN with NN one of 18, 34, 50, 101, 152 (e.g. deeplabv3_resnet50)";
        let lower = s.to_ascii_lowercase();
        let (head, arch) = match lower.split_once('_') {
            Some(("deeplabv3", arch)) => (Head::DeepLabV3, arch),
            Some(("fcn", arch)) => (Head::Fcn, arch),
            _ => return Err(format!("unknown model '{s}': {}", known())),
        };
        let arch = arch.parse::<Arch>().map_err(|_| format!("unknown model '{s}': {}", known()))?;
        Ok(Model { head, arch })
    }
}

/// How the logits are brought back to the input's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upsample {
    /// Bilinear interpolation, `align_corners=False` (what torchvision's models do).
    Bilinear,
    /// The FCN paper's transposed convolution with bilinear weights.
    Transposed,
}

impl fmt::Display for Upsample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Upsample::Bilinear => "bilinear",
            Upsample::Transposed => "transposed",
        })
    }
}

/// What to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentationConfig {
    pub model: Model,
    /// 4, 8, 16 or 32 (torchvision's models use 8).
    pub output_stride: usize,
    pub classes: usize,
    /// ASPP's atrous rates (DeepLabv3 only); `None`: 12, 24, 36 at output stride 8, 6, 12, 18
    /// at 16 — in general 96/OS, 192/OS, 288/OS, so that they cover the same image extent.
    pub rates: Option<Vec<usize>>,
    pub upsample: Upsample,
    /// Also build torchvision's auxiliary head (`aux_classifier.*`, an FCN head on layer3's
    /// output), upsampled like the main one: an extra output of the network.
    pub aux: bool,
}

impl SegmentationConfig {
    pub fn new(model: Model, output_stride: usize) -> Self {
        SegmentationConfig { model, output_stride, classes: VOC_CLASSES, rates: None, upsample: Upsample::Bilinear, aux: false }
    }

    /// The ASPP rates this configuration uses.
    pub fn aspp_rates(&self) -> Vec<usize> {
        self.rates.clone().unwrap_or_else(|| [96, 192, 288].iter().map(|r| (r / self.output_stride).max(1)).collect())
    }
}

/// Builds the backbone (parameters under `backbone.`), the head (`classifier.`) and the
/// upsampling; the last layer is the logits, `[N, classes, H, W]` for an `[N, 3, H, W]` input.
/// With `aux`, the auxiliary head's upsampled logits are the network's extra output.
pub fn segmentation(config: &SegmentationConfig, weights: &mut dyn WeightSource) -> Result<Network, Error> {
    if config.classes == 0 {
        return Err(Error::Config("a segmentation model needs at least 1 class".to_owned()));
    }
    let backbone_config = ResNetConfig::new(config.model.arch, config.output_stride);
    let backbone = resnet(&backbone_config, &mut Prefixed::new(weights, "backbone."))?;
    let features = Source::Layer(backbone.layers.len() - 1);
    let mut b = Builder { network: backbone, weights };
    b.network.name = format!("{} (output stride {}, {} upsampling)", config.model, config.output_stride, config.upsample);
    let c_in = config.model.arch.out_channels();
    if config.aux {
        // torchvision's aux_classifier reads layer3's output (half layer4's channels).
        let layer3 = b.network.layers.iter().rposition(|l| l.name.starts_with("layer3.")).expect("a ResNet has a layer3");
        let aux = fcn_head(&mut b, "aux_classifier", Source::Layer(layer3), c_in / 2, config.classes)?;
        let Source::Layer(aux) = upsample(&mut b, "aux_upsample", aux, config) else { unreachable!("a layer's output") };
        b.network.extra_outputs.push(aux);
    }
    let logits = match config.model.head {
        Head::DeepLabV3 => deeplabv3_head(&mut b, features, c_in, &config.aspp_rates(), config.classes)?,
        Head::Fcn => fcn_head(&mut b, "classifier", features, c_in, config.classes)?,
    };
    upsample(&mut b, "upsample", logits, config);
    Ok(b.network)
}

/// Brings `logits` back to the input's size as `config.upsample` says, as layer `name`.
fn upsample(b: &mut Builder, name: &str, logits: Source, config: &SegmentationConfig) -> Source {
    match config.upsample {
        Upsample::Bilinear => b.push(Layer::new(name, Op::Resize { size_of: Source::Input }, logits)),
        Upsample::Transposed => {
            let f = config.output_stride;
            let params = ConvTranspose2dParams { stride: Hw::square(f), padding: Hw::square(f / 2), groups: config.classes, ..Default::default() };
            let weight = bilinear_kernel(config.classes, f);
            b.push(Layer::new(name, Op::ConvTranspose { params, weight, bias: None, crop_to: Some(Source::Input) }, logits))
        }
    }
}

/// torchvision's `DeepLabHead`: ASPP (`classifier.0`), 3×3 conv (`classifier.1`) with its
/// batch-norm (`classifier.2`) and ReLU, 1×1 conv to the classes (`classifier.4`).
fn deeplabv3_head(b: &mut Builder, features: Source, c_in: usize, rates: &[usize], classes: usize) -> Result<Source, Error> {
    if rates.is_empty() || rates.contains(&0) {
        return Err(Error::Config(format!("ASPP needs at least one positive atrous rate (e.g. 12,24,36), got {rates:?}")));
    }
    let branch = |b: &mut Builder, index: usize, kernel: usize, dilation: usize, input: Source| {
        let (conv, bn) = (format!("classifier.0.convs.{index}.0"), format!("classifier.0.convs.{index}.1"));
        b.conv_bn(ConvBn { conv: &conv, bn: &bn, c_in, c_out: ASPP_CHANNELS, kernel, stride: 1, dilation }, input, true, None)
    };
    let mut branches = vec![branch(b, 0, 1, 1, features)?];
    for (i, &rate) in rates.iter().enumerate() {
        branches.push(branch(b, i + 1, 3, rate, features)?);
    }
    // Image pooling (ASPPPooling): its modules are 0 the pool, 1 the conv, 2 the batch-norm.
    let pool = rates.len() + 1;
    let pooled = b.push(Layer::new(format!("classifier.0.convs.{pool}.0"), Op::GlobalAvgPool, features));
    let (conv, bn) = (format!("classifier.0.convs.{pool}.1"), format!("classifier.0.convs.{pool}.2"));
    let pooled = b.conv_bn(ConvBn { conv: &conv, bn: &bn, c_in, c_out: ASPP_CHANNELS, kernel: 1, stride: 1, dilation: 1 }, pooled, true, None)?;
    branches.push(b.push(Layer::new(format!("classifier.0.convs.{pool}.broadcast"), Op::Resize { size_of: features }, pooled)));

    let joined = b.push(Layer::new("classifier.0.concat", Op::Concat { more: branches[1..].to_vec() }, branches[0]));
    let project = ConvBn {
        conv: "classifier.0.project.0",
        bn: "classifier.0.project.1",
        c_in: ASPP_CHANNELS * branches.len(),
        c_out: ASPP_CHANNELS,
        kernel: 1,
        stride: 1,
        dilation: 1,
    };
    let projected = b.conv_bn(project, joined, true, None)?;
    let head = ConvBn { conv: "classifier.1", bn: "classifier.2", c_in: ASPP_CHANNELS, c_out: ASPP_CHANNELS, kernel: 3, stride: 1, dilation: 1 };
    let x = b.conv_bn(head, projected, true, None)?;
    b.conv_with_bias("classifier.4", ASPP_CHANNELS, classes, 1, x)
}

/// torchvision's `FCNHead` under `name` (`classifier`, or `aux_classifier` on layer3): 3×3 conv
/// to a quarter of the channels (`.0`) with its batch-norm (`.1`) and ReLU, 1×1 conv to the
/// classes (`.4`).
fn fcn_head(b: &mut Builder, name: &str, features: Source, c_in: usize, classes: usize) -> Result<Source, Error> {
    let inter = c_in / 4;
    let (conv, bn) = (format!("{name}.0"), format!("{name}.1"));
    let x = b.conv_bn(ConvBn { conv: &conv, bn: &bn, c_in, c_out: inter, kernel: 3, stride: 1, dilation: 1 }, features, true, None)?;
    b.conv_with_bias(&format!("{name}.4"), inter, classes, 1, x)
}

/// The FCN paper's bilinear upsampling weight for a grouped transposed convolution, one group
/// per channel: `[channels, 1, 2f, 2f]`, each kernel `(1 − |i − c|/f)·(1 − |j − c|/f)` with
/// centre `c = f − ½`. With stride f and padding f/2 it interpolates bilinearly between the
/// input pixels, which sit at the centres of f×f output cells, so a constant map stays constant
/// away from the border.
pub fn bilinear_kernel(channels: usize, factor: usize) -> Tensor {
    let size = 2 * factor;
    let centre = factor as f32 - 0.5;
    let tent = |i: usize| 1.0 - (i as f32 - centre).abs() / factor as f32;
    Tensor::from_fn(vec![channels, 1, size, size], |index| tent(index[2]) * tent(index[3]))
}
