//! The lanes kernels for CPU drivers with subgroups (`shaders/conv_lanes.wgsl`,
//! `conv2d_lanes.wgsl`, `conv_transpose2d_lanes.wgsl`): [`CHANNELS`] output channels per lane,
//! a workgroup of one subgroup of [`shaders::LANES_WORKGROUP_SIZE`] lanes computing a strip of
//! [`PIXELS`] pixels for a [`BLOCK`] of channels, on weights packed like the tiled kernels' but
//! padded to the block.

use crate::gpu::context::GpuError;
use crate::gpu::shaders::{self, Shader};
use crate::shape::{ConvKind, WindowGeometry};

/// Output channels per invocation (`LANE_CHANNELS` in conv_lanes.wgsl).
pub const CHANNELS: usize = 16;

/// Consecutive output pixels per workgroup (`STRIP` in conv_lanes.wgsl).
pub const PIXELS: usize = 32;

/// Output channels per workgroup (128).
pub const BLOCK: usize = CHANNELS * shaders::LANES_WORKGROUP_SIZE as usize;

pub(crate) fn shader(kind: ConvKind, subgroups: bool) -> Result<Shader, GpuError> {
    match (kind, subgroups) {
        (ConvKind::Forward, true) => Ok(shaders::CONV2D_LANES),
        (ConvKind::Transposed, true) => Ok(shaders::CONV_TRANSPOSE2D_LANES),
        (ConvKind::Forward | ConvKind::Transposed, false) => Err(GpuError::NoSuchKernel { kernel: "lanes", op: "a device without subgroups of 8 lanes" }),
        _ => Err(GpuError::NoSuchKernel { kernel: "lanes", op: "pooling" }),
    }
}

/// Whether a group's output channels fill at least two thirds of the blocks: at 64 channels
/// (half a block) the tiled kernel is faster on lavapipe, at 128 the lanes one is.
pub(crate) fn fills_its_blocks(g: &WindowGeometry) -> bool {
    3 * g.c_out_per_group() >= 2 * g.c_out_per_group().div_ceil(BLOCK) * BLOCK
}

/// Workgroups along y: blocks of channels of every group.
pub(crate) fn channel_tiles(g: &WindowGeometry) -> usize {
    g.groups * g.c_out_per_group().div_ceil(BLOCK)
}
