//! The convolution kernel families, each in its own file with its shaders' constants, weight
//! layout and dispatch grid — [`direct`] (one output element per invocation, pooling too),
//! [`tiled`] (a register tile per invocation), [`lanes`] (output channels across subgroup lanes,
//! for CPU drivers such as lavapipe) and [`gemm`] (the implicit GEMM staged in workgroup memory,
//! for hardware GPUs) — and the one place that chooses among them ([`Kernel::for_device`]; what
//! [`KernelChoice::Auto`] stands for is settled first by autotuning, `src/gpu/autotune.rs`).

pub mod direct;
pub mod gemm;
pub mod lanes;
pub mod tiled;

use std::borrow::Cow;

pub use gemm::GemmTile;

use super::context::{Gpu, GpuError};
use super::shaders::Shader;
use crate::shape::{ConvKind, WindowGeometry};

/// Which kernel computes a convolution: the one [`KernelChoice::Auto`] picks for the shape, or
/// one forced (`atrous bench --gpu-kernel`, to measure one against the other).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KernelChoice {
    /// The fastest kernel measured on this device for the shape's class (autotuning, see
    /// `src/gpu/autotune.rs`), or by rule where tuning is off: where a group has at least
    /// [`TILED_MIN_CHANNELS`] output channels, on a CPU adapter the lanes kernel where the
    /// channels fill two thirds of its blocks and the tiled one otherwise, on a GPU the
    /// implicit GEMM ([`GemmTile::by_rule`]); else the direct one.
    #[default]
    Auto,
    /// One output element per invocation.
    Direct,
    /// The register tile (output channels padded to the tile).
    Tiled,
    /// On devices with subgroups: sixteen output channels per lane, a strip of 32 pixels per
    /// workgroup of eight lanes (output channels padded to a multiple of 128).
    Lanes,
    /// The implicit GEMM staged in workgroup memory, in one tile configuration.
    Gemm(GemmTile),
}

impl KernelChoice {
    /// Every kernel that can be forced, in the order `atrous bench --gpu-kernel all` times them.
    pub const FORCED: [KernelChoice; 7] = [
        KernelChoice::Direct,
        KernelChoice::Tiled,
        KernelChoice::Lanes,
        KernelChoice::Gemm(GemmTile::Wide),
        KernelChoice::Gemm(GemmTile::Square),
        KernelChoice::Gemm(GemmTile::Narrow),
        KernelChoice::Gemm(GemmTile::Tall),
    ];

    /// `auto`, `direct`, `tiled`, `lanes` or `gemm128x128` …, as `atrous bench --gpu-kernel`
    /// spells it.
    pub fn name(self) -> &'static str {
        match self {
            KernelChoice::Auto => "auto",
            KernelChoice::Direct => "direct",
            KernelChoice::Tiled => "tiled",
            KernelChoice::Lanes => "lanes",
            KernelChoice::Gemm(tile) => tile.name(),
        }
    }

    /// The choice [`KernelChoice::name`] spells `name`.
    pub fn from_name(name: &str) -> Option<KernelChoice> {
        std::iter::once(KernelChoice::Auto).chain(KernelChoice::FORCED).find(|k| k.name() == name)
    }
}

/// Output channels per group from which [`KernelChoice::Auto`] takes the tiled kernel: below
/// that, most of its 32-channel tile would be padding.
pub const TILED_MIN_CHANNELS: usize = 8;

/// The kernel [`KernelChoice::Auto`] takes for `g` on `gpu` by rule (where tuning is off, or has
/// not measured the shape class): `direct` below [`TILED_MIN_CHANNELS`] output channels per group
/// and for pooling; on a CPU adapter `lanes` where [`Gpu::lanes_by_default`] and a group's
/// channels fill two thirds of its blocks, else `tiled`; on a GPU the implicit GEMM in the
/// configuration [`GemmTile::by_rule`] picks.
pub(crate) fn rule(g: &WindowGeometry, gpu: &Gpu) -> KernelChoice {
    let convolution = matches!(g.kind, ConvKind::Forward | ConvKind::Transposed);
    if !convolution || g.c_out_per_group() < TILED_MIN_CHANNELS {
        KernelChoice::Direct
    } else if gpu.lanes_by_default() && lanes::fills_its_blocks(g) {
        // On lavapipe the lanes kernels beat the tiled ones by 1.6× where a group's channels
        // fill their blocks, and lose where half of each block is padding (BENCHMARKS.md).
        KernelChoice::Lanes
    } else if gpu.summary().device_type == wgpu::DeviceType::Cpu {
        KernelChoice::Tiled
    } else {
        KernelChoice::Gemm(GemmTile::by_rule(g))
    }
}

/// How a window op is computed on the GPU: a family and its shader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kernel {
    Direct(Shader),
    Tiled(Shader),
    Lanes(Shader),
    Gemm(Shader, GemmTile),
}

/// The workgroups a kernel is dispatched with.
pub(crate) enum Grid {
    /// One invocation per element, in workgroups spread over x and y.
    Elements(usize),
    /// Workgroups of pixels spread over x and z, and channel tiles (of every group) along y.
    Tiles { pixel_workgroups: usize, channel_tiles: usize },
}

impl Kernel {
    /// The one place that decides which kernel runs `g` for `choice` on `gpu` (`choice` is
    /// [`KernelChoice::Auto`] only where tuning is off: then [`rule`] decides).
    pub(crate) fn for_device(g: &WindowGeometry, choice: KernelChoice, gpu: &Gpu) -> Result<Kernel, GpuError> {
        let subgroups = gpu.subgroups();
        Ok(match choice {
            KernelChoice::Auto => return Kernel::for_device(g, rule(g, gpu), gpu),
            KernelChoice::Direct => Kernel::Direct(direct::shader(g.kind)),
            KernelChoice::Tiled => Kernel::Tiled(tiled::shader(g.kind, subgroups).ok_or(GpuError::NoSuchKernel { kernel: "tiled", op: "pooling" })?),
            KernelChoice::Lanes => Kernel::Lanes(lanes::shader(g.kind, subgroups)?),
            KernelChoice::Gemm(tile) => Kernel::Gemm(tile.shader(g.kind).ok_or(GpuError::NoSuchKernel { kernel: tile.name(), op: "pooling" })?, tile),
        })
    }

    pub(crate) fn shader(self) -> Shader {
        match self {
            Kernel::Direct(shader) | Kernel::Tiled(shader) | Kernel::Lanes(shader) | Kernel::Gemm(shader, _) => shader,
        }
    }

    /// A conv weight (PyTorch's layout) in the layout this kernel reads.
    pub(crate) fn weights<'a>(self, g: &WindowGeometry, weight: &'a [f32]) -> Cow<'a, [f32]> {
        match self {
            Kernel::Direct(_) => Cow::Borrowed(weight),
            Kernel::Tiled(_) => Cow::Owned(pack_weights(g, weight, tiled::CHANNELS, 1)),
            Kernel::Lanes(_) => Cow::Owned(pack_weights(g, weight, lanes::BLOCK, 1)),
            Kernel::Gemm(_, tile) => Cow::Owned(pack_weights(g, weight, tile.channels(), tile.channel_padding())),
        }
    }

    /// The length of [`Kernel::weights`] for `g`.
    pub(crate) fn weight_len(self, g: &WindowGeometry) -> usize {
        match self {
            Kernel::Direct(_) => g.weight_shape().map_or(0, |s| s.iter().product()),
            Kernel::Tiled(_) => packed_len(g, tiled::CHANNELS, 1),
            Kernel::Lanes(_) => packed_len(g, lanes::BLOCK, 1),
            Kernel::Gemm(_, tile) => packed_len(g, tile.channels(), tile.channel_padding()),
        }
    }

    /// The grid for `g`, whose column segments are `segments` ([`Kernel::column_segments`]).
    pub(crate) fn grid(self, g: &WindowGeometry, segments: &[usize]) -> Grid {
        match self {
            Kernel::Direct(_) => Grid::Elements(g.output_shape().iter().product()),
            Kernel::Tiled(shader) => tiled::grid(g, shader),
            Kernel::Lanes(_) => Grid::Tiles { pixel_workgroups: pixel_workgroups(g, segments, lanes::PIXELS), channel_tiles: lanes::channel_tiles(g) },
            Kernel::Gemm(_, tile) => Grid::Tiles { pixel_workgroups: pixel_workgroups(g, segments, tile.pixels()), channel_tiles: tile.channel_tiles(g) },
        }
    }

    /// The output's column segments this kernel keeps its workgroups within
    /// ([`WindowGeometry::column_segments`]): the forward lanes and GEMM kernels'; one segment
    /// for the others.
    pub(crate) fn column_segments(self, g: &WindowGeometry) -> Vec<usize> {
        match (self, g.kind) {
            (Kernel::Lanes(_), ConvKind::Forward) => g.column_segments(lanes::PIXELS),
            (Kernel::Gemm(_, tile), ConvKind::Forward) => g.column_segments(tile.pixels()),
            _ => vec![g.output.w],
        }
    }
}

/// Workgroups of `pixels` pixels for every pixel grid of `g` (`phase_grids`), those of the
/// forward lanes and GEMM kernels within each of the column segments that end at `ends`.
fn pixel_workgroups(g: &WindowGeometry, ends: &[usize], pixels: usize) -> usize {
    if ends.len() == 1 {
        let (phases, grid_pixels) = phase_grids(g);
        return phases * grid_pixels.div_ceil(pixels);
    }
    let starts = std::iter::once(0).chain(ends.iter().copied());
    starts.zip(ends).map(|(start, &end)| (g.batch * g.output.h * (end - start)).div_ceil(pixels)).sum()
}

/// The pixel grids a kernel walks for `g`, as (grids, pixels per grid): the output's, or for the
/// transposed convolution one per phase (each that of the largest phase, ⌈O / s⌉ per axis).
pub(crate) fn phase_grids(g: &WindowGeometry) -> (usize, usize) {
    match g.kind {
        ConvKind::Transposed => (g.stride.h * g.stride.w, g.batch * g.output.h.div_ceil(g.stride.h) * g.output.w.div_ceil(g.stride.w)),
        _ => (1, g.batch * g.output.h * g.output.w),
    }
}

/// The length of [`pack_weights`]' result.
fn packed_len(g: &WindowGeometry, co_tile: usize, ci_tile: usize) -> usize {
    g.groups * g.kernel.h * g.kernel.w * g.c_in_per_group().div_ceil(ci_tile) * ci_tile * g.c_out_per_group().div_ceil(co_tile) * co_tile
}

/// Repacks a conv weight — forward `[C_out, C_in/g, kH, kW]` or transposed
/// `[C_in, C_out/g, kH, kW]` — to `[g, kH, kW, C_in/g rounded up to ci_tile, C_out/g rounded up
/// to co_tile]`, zero-filled: the layout of the tiled, lanes and GEMM kernels.
pub(crate) fn pack_weights(g: &WindowGeometry, weight: &[f32], co_tile: usize, ci_tile: usize) -> Vec<f32> {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let row = cog.div_ceil(co_tile) * co_tile;
    let rows = cig.div_ceil(ci_tile) * ci_tile;
    let taps = g.kernel.h * g.kernel.w;
    let mut packed = vec![0.0; packed_len(g, co_tile, ci_tile)];
    for group in 0..g.groups {
        for ci in 0..cig {
            for co_local in 0..cog {
                // Where the taps of (ci, co_local) start in PyTorch's layout.
                let source = match g.kind {
                    ConvKind::Transposed => ((group * cig + ci) * cog + co_local) * taps,
                    _ => ((group * cog + co_local) * cig + ci) * taps,
                };
                for tap in 0..taps {
                    packed[((group * taps + tap) * rows + ci) * row + co_local] = weight[source + tap];
                }
            }
        }
    }
    packed
}
