//! The implicit-GEMM kernel family for hardware GPUs (`shaders/conv_gemm.wgsl`, forward and
//! transposed): its tile configurations, weight layout and dispatch grid. A workgroup computes a
//! tile of [`GemmTile::channels`] output channels × [`GemmTile::pixels`] output pixels with
//! tiles of weights and gathered inputs staged in workgroup memory; see the WGSL for the loop.

use super::phase_grids;
use crate::gpu::shaders::{self, Shader};
use crate::shape::{ConvKind, WindowGeometry};

/// A tile configuration of the implicit-GEMM kernels: output channels × pixels per workgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmTile {
    /// 256 invocations, steps of 16 input channels: the most work per value staged, for layers
    /// with many output channels and pixels (the default where the layer fills enough tiles).
    Wide,
    /// 64 invocations, steps of 8: four times as many workgroups as [`GemmTile::Wide`].
    Square,
    /// 32 channels × 128 pixels: layers with few output channels per group.
    Narrow,
    /// 128 channels × 32 pixels: many channels on small feature maps (late layers, ASPP).
    Tall,
}

/// (invocations along M, along N, input channels per step) of each configuration: `GEMM_SM`,
/// `GEMM_SN` and `GEMM_BK` in the shaders (`tests/shaders.rs` checks they agree).
const fn layout(tile: GemmTile) -> (usize, usize, usize) {
    match tile {
        GemmTile::Wide => (16, 16, 16),
        GemmTile::Square => (8, 8, 8),
        GemmTile::Narrow => (4, 16, 8),
        GemmTile::Tall => (16, 4, 8),
    }
}

/// Workgroups of 256 from which [`GemmTile::by_rule`] takes [`GemmTile::Wide`]: two per compute
/// unit of a large GPU.
const WIDE_MIN_WORKGROUPS: usize = 160;

/// Output channels (and pixels) per invocation along each side: a register tile of 8 × 8.
const INVOCATION_TILE: usize = 8;

impl GemmTile {
    pub const ALL: [GemmTile; 4] = [GemmTile::Wide, GemmTile::Square, GemmTile::Narrow, GemmTile::Tall];

    /// `gemm128x128` …, as `atrous bench --gpu-kernel` spells it.
    pub fn name(self) -> &'static str {
        match self {
            GemmTile::Wide => "gemm128x128",
            GemmTile::Square => "gemm64x64",
            GemmTile::Narrow => "gemm32x128",
            GemmTile::Tall => "gemm128x32",
        }
    }

    /// Output channels per workgroup (M of the tile).
    pub fn channels(self) -> usize {
        INVOCATION_TILE * layout(self).0
    }

    /// Output pixels per workgroup (N of the tile).
    pub fn pixels(self) -> usize {
        INVOCATION_TILE * layout(self).1
    }

    /// Input channels per step of the K loop.
    pub fn depth(self) -> usize {
        layout(self).2
    }

    /// The input channels of a group are padded to a multiple of this, two steps: each tap then
    /// takes an even number of steps, as the shader's K loop needs.
    pub fn channel_padding(self) -> usize {
        2 * self.depth()
    }

    /// The constants the shaders of this configuration declare, as they declare them.
    pub fn wgsl_constants(self) -> [String; 3] {
        let (sm, sn, bk) = layout(self);
        [format!("const GEMM_SM: u32 = {sm}u;"), format!("const GEMM_SN: u32 = {sn}u;"), format!("const GEMM_BK: u32 = {bk}u;")]
    }

    /// The forward and the transposed shader of this configuration.
    pub fn shaders(self) -> [Shader; 2] {
        match self {
            GemmTile::Wide => [shaders::CONV2D_GEMM_128X128, shaders::CONV_TRANSPOSE2D_GEMM_128X128],
            GemmTile::Square => [shaders::CONV2D_GEMM_64X64, shaders::CONV_TRANSPOSE2D_GEMM_64X64],
            GemmTile::Narrow => [shaders::CONV2D_GEMM_32X128, shaders::CONV_TRANSPOSE2D_GEMM_32X128],
            GemmTile::Tall => [shaders::CONV2D_GEMM_128X32, shaders::CONV_TRANSPOSE2D_GEMM_128X32],
        }
    }

    /// The shader for `kind`, or `None` for pooling.
    pub(crate) fn shader(self, kind: ConvKind) -> Option<Shader> {
        let [forward, transposed] = self.shaders();
        match kind {
            ConvKind::Forward => Some(forward),
            ConvKind::Transposed => Some(transposed),
            ConvKind::MaxPool | ConvKind::AvgPool => None,
        }
    }

    /// Pixel tiles (of every phase's grid, for the transposed convolution, each padded to the
    /// largest phase's): the rule's measure of a layer's size (the grid may add a few tiles,
    /// where the forward kernel keeps tiles within column segments).
    pub(crate) fn pixel_tiles(self, g: &WindowGeometry) -> usize {
        let (phases, pixels) = phase_grids(g);
        phases * pixels.div_ceil(self.pixels())
    }

    /// Workgroups along M: channel tiles of every group.
    pub(crate) fn channel_tiles(self, g: &WindowGeometry) -> usize {
        g.groups * g.c_out_per_group().div_ceil(self.channels())
    }

    /// The configuration [`super::KernelChoice::Auto`] takes where nothing has been measured:
    /// 32-channel tiles where a group has no more channels; else the widest tile where it still
    /// makes [`WIDE_MIN_WORKGROUPS`] workgroups (most work per value staged); else 128 × 32 on
    /// small maps and 64 × 64 elsewhere (more, smaller workgroups).
    pub(crate) fn by_rule(g: &WindowGeometry) -> GemmTile {
        let pixels = g.batch * g.output.h * g.output.w;
        if g.c_out_per_group() <= GemmTile::Narrow.channels() {
            GemmTile::Narrow
        } else if GemmTile::Wide.pixel_tiles(g) * GemmTile::Wide.channel_tiles(g) >= WIDE_MIN_WORKGROUPS {
            GemmTile::Wide
        } else if pixels <= 32 * GemmTile::Tall.pixels() {
            GemmTile::Tall
        } else {
            GemmTile::Square
        }
    }
}
