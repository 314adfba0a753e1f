//! ResNet backbones (torchvision's layout and names) with a configurable output stride.
//!
//! torchvision's `replace_stride_with_dilation` semantics, exactly: to reach output stride 16,
//! layer4 keeps stride 1 and dilates instead; for 8, layers 3 and 4; for 4, layers 2–4. Inside
//! a dilated layer `previous = dilation; dilation *= stride; stride = 1`; the first block's
//! stride-carrying 3×3 conv uses `previous`, every conv after it the new dilation; a 3×3 conv's
//! padding is its dilation. Bottleneck blocks carry the stride on the 3×3 conv (ResNet v1.5).
//! Unlike torchvision, BasicBlock nets dilate too: the first block's conv1 (which carries the
//! stride) uses `previous` and its conv2 the new dilation — the choice under which the dense
//! features, subsampled, equal the strided ones (tested).

use std::fmt;
use std::str::FromStr;

use super::builder::{Builder, ConvBn};
use crate::net::{Layer, Network, Op, Source};
use crate::shape::{Hw, Pool2dParams};
use crate::weights::WeightSource;
use crate::Error;

/// The output strides a ResNet can have: 32 natively, 16, 8 or 4 by dilating its last layers.
pub const OUTPUT_STRIDES: [usize; 4] = [4, 8, 16, 32];

/// A ResNet depth, with its block type and blocks per layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    ResNet18,
    ResNet34,
    ResNet50,
    ResNet101,
    ResNet152,
}

impl Arch {
    pub const ALL: [Arch; 5] = [Arch::ResNet18, Arch::ResNet34, Arch::ResNet50, Arch::ResNet101, Arch::ResNet152];

    fn blocks(self) -> [usize; 4] {
        match self {
            Arch::ResNet18 => [2, 2, 2, 2],
            Arch::ResNet34 | Arch::ResNet50 => [3, 4, 6, 3],
            Arch::ResNet101 => [3, 4, 23, 3],
            Arch::ResNet152 => [3, 8, 36, 3],
        }
    }

    fn bottleneck(self) -> bool {
        !matches!(self, Arch::ResNet18 | Arch::ResNet34)
    }

    /// Channels of the backbone's output (layer4).
    pub fn out_channels(self) -> usize {
        if self.bottleneck() {
            2048
        } else {
            512
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let depth = match self {
            Arch::ResNet18 => 18,
            Arch::ResNet34 => 34,
            Arch::ResNet50 => 50,
            Arch::ResNet101 => 101,
            Arch::ResNet152 => 152,
        };
        write!(f, "resnet{depth}")
    }
}

impl FromStr for Arch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Arch::ALL
            .into_iter()
            .find(|a| a.to_string() == s.to_ascii_lowercase())
            .ok_or_else(|| format!("unknown architecture '{s}': expected one of resnet18, resnet34, resnet50, resnet101, resnet152"))
    }
}

/// What to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResNetConfig {
    pub arch: Arch,
    /// 4, 8, 16 or 32.
    pub output_stride: usize,
    /// DeepLabv3's multi-grid, one multiplier per block of layer4: block `i`'s 3×3 convs use
    /// layer4's rate times `multi_grid[i]`, the first block included — the paper's rule (output
    /// stride 16 with (1, 2, 4) gives rates (2, 4, 8)). `None` is torchvision's backbone exactly.
    pub multi_grid: Option<Vec<usize>>,
}

impl ResNetConfig {
    pub fn new(arch: Arch, output_stride: usize) -> Self {
        ResNetConfig { arch, output_stride, multi_grid: None }
    }

    /// Which of layers 2, 3, 4 trade their stride for dilation.
    fn replace_stride_with_dilation(&self) -> Result<[bool; 3], Error> {
        Ok(match self.output_stride {
            32 => [false, false, false],
            16 => [false, false, true],
            8 => [false, true, true],
            4 => [true, true, true],
            other => {
                return Err(Error::Config(format!(
                    "output stride {other} cannot be reached by a ResNet: the possible output strides are 4, 8, 16 and 32"
                )))
            }
        })
    }
}

impl Builder<'_> {
    /// One residual block: `stride` and `first_dilation` go to the 3×3 conv that carries the
    /// block's stride, `dilation` to a 3×3 conv after it (BasicBlock's conv2).
    #[allow(clippy::too_many_arguments)]
    fn block(
        &mut self,
        arch: Arch,
        name: &str,
        input: Source,
        c_in: usize,
        planes: usize,
        stride: usize,
        first_dilation: usize,
        dilation: usize,
    ) -> Result<(Source, usize), Error> {
        let expansion = if arch.bottleneck() { 4 } else { 1 };
        let c_out = planes * expansion;
        let needs_projection = stride != 1 || c_in != c_out;
        let shortcut = if needs_projection {
            let (conv, bn) = (format!("{name}.downsample.0"), format!("{name}.downsample.1"));
            self.conv_bn(ConvBn { conv: &conv, bn: &bn, c_in, c_out, kernel: 1, stride, dilation: 1 }, input, false, None)?
        } else {
            input
        };
        let n = |s: &str| format!("{name}.{s}");
        let output = if arch.bottleneck() {
            let a = self.conv_bn(ConvBn { conv: &n("conv1"), bn: &n("bn1"), c_in, c_out: planes, kernel: 1, stride: 1, dilation: 1 }, input, true, None)?;
            let b = self.conv_bn(ConvBn { conv: &n("conv2"), bn: &n("bn2"), c_in: planes, c_out: planes, kernel: 3, stride, dilation: first_dilation }, a, true, None)?;
            self.conv_bn(ConvBn { conv: &n("conv3"), bn: &n("bn3"), c_in: planes, c_out, kernel: 1, stride: 1, dilation: 1 }, b, true, Some(shortcut))?
        } else {
            let a = self.conv_bn(ConvBn { conv: &n("conv1"), bn: &n("bn1"), c_in, c_out: planes, kernel: 3, stride, dilation: first_dilation }, input, true, None)?;
            self.conv_bn(ConvBn { conv: &n("conv2"), bn: &n("bn2"), c_in: planes, c_out: planes, kernel: 3, stride: 1, dilation }, a, true, Some(shortcut))?
        };
        Ok((output, c_out))
    }
}

/// Builds the backbone (stem and layers 1–4, no pooling or classifier) with parameters from
/// `weights`, named as in torchvision's `state_dict` (`conv1.weight`, `layer3.2.bn2.running_var`,
/// `layer2.0.downsample.0.weight`, …).
pub fn resnet(config: &ResNetConfig, weights: &mut dyn WeightSource) -> Result<Network, Error> {
    let dilate = config.replace_stride_with_dilation()?;
    let blocks = config.arch.blocks();
    if let Some(grid) = &config.multi_grid {
        if grid.len() != blocks[3] || grid.contains(&0) {
            return Err(Error::Config(format!("multi-grid needs {} positive rates, one per block of layer4 (e.g. 1,2,4), got {grid:?}", blocks[3])));
        }
    }
    let mut b = Builder { network: Network { name: format!("{} (output stride {})", config.arch, config.output_stride), ..Default::default() }, weights };
    let stem = b.conv_bn(ConvBn { conv: "conv1", bn: "bn1", c_in: 3, c_out: 64, kernel: 7, stride: 2, dilation: 1 }, Source::Input, true, None)?;
    let pool = Pool2dParams { kernel: Hw::square(3), stride: Hw::square(2), padding: Hw::square(1), dilation: Hw::square(1) };
    let mut x = b.push(Layer::new("maxpool", Op::MaxPool(pool), stem));
    let mut c_in = 64;
    let mut dilation = 1;
    for (index, &count) in blocks.iter().enumerate() {
        let planes = 64 << index;
        let mut stride = if index == 0 { 1 } else { 2 };
        let previous = dilation;
        if index > 0 && dilate[index - 1] {
            dilation *= stride;
            stride = 1;
        }
        for block in 0..count {
            let block_stride = if block == 0 { stride } else { 1 };
            let (first, rest) = match &config.multi_grid {
                Some(grid) if index == 3 => (dilation * grid[block], dilation * grid[block]),
                _ if block == 0 => (previous, dilation),
                _ => (dilation, dilation),
            };
            let name = format!("layer{}.{block}", index + 1);
            (x, c_in) = b.block(config.arch, &name, x, c_in, planes, block_stride, first, rest)?;
        }
    }
    Ok(b.network)
}
