//! The register-tiled kernels (`shaders/conv_tile.wgsl`, `conv2d_tiled.wgsl`,
//! `conv_transpose2d_tiled.wgsl`): each invocation computes [`PIXELS`] neighbouring pixels of a
//! row for [`CHANNELS`] output channels, on weights packed to `[groups, kH, kW, C_in/groups,
//! C_out/groups padded to CHANNELS]`; with subgroups, a subgroup shares each tap's weight loads.

use super::Grid;
use crate::gpu::shaders::{self, Shader};
use crate::shape::{ConvKind, WindowGeometry};

/// Output channels per invocation (`CO_TILE` in conv_tile.wgsl).
pub const CHANNELS: usize = 32;

/// Neighbouring pixels per invocation (`PIXEL_TILE` in conv_tile.wgsl).
pub const PIXELS: usize = 4;

/// The tiled shader for `kind` (none for pooling), sharing weight loads across a subgroup where
/// `subgroups`.
pub(crate) fn shader(kind: ConvKind, subgroups: bool) -> Option<Shader> {
    let pick = |plain, with_subgroups| if subgroups { with_subgroups } else { plain };
    match kind {
        ConvKind::Forward => Some(pick(shaders::CONV2D_TILED, shaders::CONV2D_TILED_SUBGROUP)),
        ConvKind::Transposed => Some(pick(shaders::CONV_TRANSPOSE2D_TILED, shaders::CONV_TRANSPOSE2D_TILED_SUBGROUP)),
        ConvKind::MaxPool | ConvKind::AvgPool => None,
    }
}

/// One invocation per quad of neighbouring pixels in a row; the transposed kernel walks every
/// phase's grid, each padded to whole workgroups.
pub(crate) fn grid(g: &WindowGeometry, shader: Shader) -> Grid {
    let workgroup = shader.workgroup_size as usize;
    let quads = match g.kind {
        ConvKind::Transposed => {
            let (s, o) = (g.stride, g.output);
            s.h * s.w * (g.batch * o.h.div_ceil(s.h) * o.w.div_ceil(s.w).div_ceil(PIXELS)).next_multiple_of(workgroup)
        }
        _ => g.batch * g.output.h * g.output.w.div_ceil(PIXELS),
    };
    Grid::Tiles { pixel_workgroups: quads.div_ceil(workgroup), channel_tiles: g.groups * g.c_out_per_group().div_ceil(CHANNELS) }
}
