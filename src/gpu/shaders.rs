//! The WGSL sources, embedded at build time. Each kernel file is prepended with the shared
//! declarations it uses; `tests/shaders.rs` parses and validates every entry with naga.
//!
//! Every kernel that reads tensors exists in each [`Precision`], one module each ([`f32`],
//! [`f16`], [`f16_accumulate`]): the same files after a prelude that names the type tensors are
//! stored as (`Stored`) and the type the kernels sum in (`Acc`). The constants at this module's
//! top are the f32 ones; [`Shader::in_precision`] finds a kernel's twin in another precision.

use super::precision::Precision;

/// A WGSL module as the device receives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shader {
    /// File name under `shaders/`, for messages and the pipeline cache.
    pub name: &'static str,
    /// The entry point to run.
    pub entry_point: &'static str,
    /// Complete source: shared prelude plus the kernel file.
    pub source: &'static str,
    /// Whether it uses subgroup operations (the device must have `wgpu::Features::SUBGROUP`).
    pub subgroups: bool,
    /// Invocations per workgroup, as the host dispatches it: the default of the module's
    /// `WORKGROUP_SIZE` override, or the entry point's fixed size (`tests/shaders.rs` checks).
    pub workgroup_size: u32,
    /// The precision its tensors are stored and summed in.
    pub precision: Precision,
}

impl Shader {
    /// The same kernel in `precision` (itself for the measuring kernels, which have one).
    pub fn in_precision(self, precision: Precision) -> Shader {
        let index = kernels(self.precision).iter().position(|s| *s == self);
        index.map_or(self, |i| kernels(precision)[i])
    }
}

/// The kernels of one precision, in the same order in each.
fn kernels(precision: Precision) -> &'static [Shader] {
    match precision {
        Precision::F32 => f32::KERNELS,
        Precision::F16 => f16::KERNELS,
        Precision::F16Accumulate => f16_accumulate::KERNELS,
    }
}

/// Invocations per workgroup of the kernels that compute one element per invocation, the tiled
/// kernels, the resize and the concatenation.
pub const WORKGROUP_SIZE: u32 = 64;

/// Invocations per workgroup of the lanes kernels: one subgroup of eight, the fewest whose
/// broadcasts bring the whole strip (BENCHMARKS.md).
pub const LANES_WORKGROUP_SIZE: u32 = 8;

/// The files of a tiled kernel: the shared prelude, the register tile, one way of fetching its
/// weights (`conv_weights_load.wgsl` or `conv_weights_subgroup.wgsl`) and the kernel.
macro_rules! tiled_source {
    ($precision:literal, $weights:literal, $($kernel:literal),+) => {
        concat!(
            $precision,
            include_str!("../../shaders/common.wgsl"),
            include_str!("../../shaders/conv_io.wgsl"),
            include_str!("../../shaders/conv_tile.wgsl"),
            include_str!(concat!("../../shaders/", $weights)),
            $(include_str!(concat!("../../shaders/", $kernel))),+
        )
    };
}

/// The files of an implicit-GEMM kernel in one tile configuration: a workgroup of `GEMM_SM` ×
/// `GEMM_SN` invocations and steps of `GEMM_BK` input channels, prepended as constants.
macro_rules! gemm_source {
    ($precision:literal, $tiles:literal, $sm:literal, $sn:literal, $bk:literal, $($kernel:literal),+) => {
        concat!(
            $precision,
            "const GEMM_SM: u32 = ", $sm, "u;\nconst GEMM_SN: u32 = ", $sn, "u;\nconst GEMM_BK: u32 = ", $bk, "u;\n",
            include_str!("../../shaders/common.wgsl"),
            include_str!("../../shaders/conv_io.wgsl"),
            include_str!("../../shaders/conv_gemm.wgsl"),
            include_str!(concat!("../../shaders/", $tiles)),
            $(include_str!(concat!("../../shaders/", $kernel))),+
        )
    };
}

/// The implicit-GEMM kernels (conv_gemm.wgsl), forward and transposed, one per tile
/// configuration; `src/gpu/kernels/gemm.rs` is their host side.
macro_rules! gemm_shaders {
    ($precision:literal, $tiles:literal, $suffix:literal, $value:expr; $($forward:ident, $transposed:ident: $sm:literal x $sn:literal, $bk:literal, $label:literal;)+) => {
        $(
            pub const $forward: Shader = Shader {
                name: concat!("conv2d_gemm.wgsl (", $label, ")", $suffix),
                entry_point: "conv2d_gemm",
                source: gemm_source!($precision, $tiles, $sm, $sn, $bk, "conv2d_gemm.wgsl"),
                subgroups: false,
                workgroup_size: $sm * $sn,
                precision: $value,
            };
            pub const $transposed: Shader = Shader {
                name: concat!("conv_transpose2d_gemm.wgsl (", $label, ")", $suffix),
                entry_point: "conv_transpose2d_gemm",
                source: gemm_source!($precision, $tiles, $sm, $sn, $bk, "conv_transpose_phase.wgsl", "conv_transpose2d_gemm.wgsl"),
                subgroups: false,
                workgroup_size: $sm * $sn,
                precision: $value,
            };
        )+
    };
}

/// Every kernel that reads tensors, in one precision: `$precision` is the WGSL prelude that
/// names `Stored` and `Acc`, `$gemm_tiles` the file that lays out the GEMM kernels' workgroup
/// tiles for that `Acc`, `$suffix` what the shaders' names end with.
macro_rules! kernels_in {
    ($module:ident, $value:expr, $precision:literal, $gemm_tiles:literal, $suffix:literal) => {
        pub mod $module {
            use super::*;

            pub const CONV2D: Shader = Shader {
                name: concat!("conv2d.wgsl", $suffix),
                entry_point: "conv2d",
                source: concat!(
                    $precision,
                    include_str!("../../shaders/common.wgsl"),
                    include_str!("../../shaders/output_coord.wgsl"),
                    include_str!("../../shaders/conv_io.wgsl"),
                    include_str!("../../shaders/conv2d.wgsl")
                ),
                subgroups: false,
                workgroup_size: WORKGROUP_SIZE,
                precision: $value,
            };

            /// The tiled forward kernel for any device: each invocation loads its weights itself.
            pub const CONV2D_TILED: Shader = Shader {
                name: concat!("conv2d_tiled.wgsl", $suffix),
                entry_point: "conv2d_tiled",
                source: tiled_source!($precision, "conv_weights_load.wgsl", "conv2d_tiled.wgsl"),
                subgroups: false,
                workgroup_size: WORKGROUP_SIZE,
                precision: $value,
            };

            /// [`CONV2D_TILED`] for devices with subgroups of at least [`SUBGROUP_LANES_NEEDED`]
            /// invocations: the weights reach the invocations of a subgroup by broadcast.
            pub const CONV2D_TILED_SUBGROUP: Shader = Shader {
                name: concat!("conv2d_tiled.wgsl (subgroup weights)", $suffix),
                entry_point: "conv2d_tiled",
                source: tiled_source!($precision, "conv_weights_subgroup.wgsl", "conv2d_tiled.wgsl"),
                subgroups: true,
                workgroup_size: WORKGROUP_SIZE,
                precision: $value,
            };

            /// The forward kernel with output channels across lanes and a strip of output pixels
            /// per workgroup, whose inputs reach the lanes by subgroup broadcast
            /// (`src/gpu/kernels/lanes.rs`).
            pub const CONV2D_LANES: Shader = Shader {
                name: concat!("conv2d_lanes.wgsl", $suffix),
                entry_point: "conv2d_lanes",
                source: concat!(
                    $precision,
                    include_str!("../../shaders/common.wgsl"),
                    include_str!("../../shaders/conv_io.wgsl"),
                    include_str!("../../shaders/conv_lanes.wgsl"),
                    include_str!("../../shaders/conv2d_lanes.wgsl")
                ),
                subgroups: true,
                workgroup_size: LANES_WORKGROUP_SIZE,
                precision: $value,
            };

            /// [`CONV2D_LANES`] for the transposed convolution, phase by phase.
            pub const CONV_TRANSPOSE2D_LANES: Shader = Shader {
                name: concat!("conv_transpose2d_lanes.wgsl", $suffix),
                entry_point: "conv_transpose2d_lanes",
                source: concat!(
                    $precision,
                    include_str!("../../shaders/common.wgsl"),
                    include_str!("../../shaders/conv_io.wgsl"),
                    include_str!("../../shaders/conv_lanes.wgsl"),
                    include_str!("../../shaders/conv_transpose_phase.wgsl"),
                    include_str!("../../shaders/conv_transpose2d_lanes.wgsl")
                ),
                subgroups: true,
                workgroup_size: LANES_WORKGROUP_SIZE,
                precision: $value,
            };

            pub const CONV_TRANSPOSE2D_TILED: Shader = Shader {
                name: concat!("conv_transpose2d_tiled.wgsl", $suffix),
                entry_point: "conv_transpose2d_tiled",
                source: tiled_source!($precision, "conv_weights_load.wgsl", "conv_transpose_phase.wgsl", "conv_transpose2d_tiled.wgsl"),
                subgroups: false,
                workgroup_size: WORKGROUP_SIZE,
                precision: $value,
            };

            pub const CONV_TRANSPOSE2D_TILED_SUBGROUP: Shader = Shader {
                name: concat!("conv_transpose2d_tiled.wgsl (subgroup weights)", $suffix),
                entry_point: "conv_transpose2d_tiled",
                source: tiled_source!($precision, "conv_weights_subgroup.wgsl", "conv_transpose_phase.wgsl", "conv_transpose2d_tiled.wgsl"),
                subgroups: true,
                workgroup_size: WORKGROUP_SIZE,
                precision: $value,
            };

            pub const CONV_TRANSPOSE2D: Shader = Shader {
                name: concat!("conv_transpose2d.wgsl", $suffix),
                entry_point: "conv_transpose2d",
                source: concat!(
                    $precision,
                    include_str!("../../shaders/common.wgsl"),
                    include_str!("../../shaders/output_coord.wgsl"),
                    include_str!("../../shaders/conv_io.wgsl"),
                    include_str!("../../shaders/conv_transpose_phase.wgsl"),
                    include_str!("../../shaders/conv_transpose2d.wgsl")
                ),
                subgroups: false,
                workgroup_size: WORKGROUP_SIZE,
                precision: $value,
            };

            gemm_shaders! {
                $precision, $gemm_tiles, $suffix, $value;
                CONV2D_GEMM_128X128, CONV_TRANSPOSE2D_GEMM_128X128: 16 x 16, 16, "128x128";
                CONV2D_GEMM_64X64, CONV_TRANSPOSE2D_GEMM_64X64: 8 x 8, 8, "64x64";
                CONV2D_GEMM_32X128, CONV_TRANSPOSE2D_GEMM_32X128: 4 x 16, 8, "32x128";
                CONV2D_GEMM_128X32, CONV_TRANSPOSE2D_GEMM_128X32: 16 x 4, 8, "128x32";
            }

            /// Max and average pooling: one file, one window walk, two entry points.
            pub const MAX_POOL2D: Shader = Shader {
                name: concat!("pool2d.wgsl", $suffix),
                entry_point: "max_pool2d",
                source: concat!($precision, include_str!("../../shaders/common.wgsl"), include_str!("../../shaders/output_coord.wgsl"), include_str!("../../shaders/pool2d.wgsl")),
                subgroups: false,
                workgroup_size: WORKGROUP_SIZE,
                precision: $value,
            };

            pub const AVG_POOL2D: Shader = Shader { entry_point: "avg_pool2d", ..MAX_POOL2D };

            pub const BILINEAR: Shader = Shader {
                name: concat!("bilinear.wgsl", $suffix),
                entry_point: "bilinear",
                source: concat!($precision, include_str!("../../shaders/bilinear.wgsl")),
                subgroups: false,
                workgroup_size: WORKGROUP_SIZE,
                precision: $value,
            };

            /// Copies between tensors at offsets a buffer copy cannot take (src/gpu/steps.rs).
            pub const COPY_VALUES: Shader = Shader {
                name: concat!("copy_values.wgsl", $suffix),
                entry_point: "copy_values",
                source: concat!($precision, include_str!("../../shaders/copy_values.wgsl")),
                subgroups: false,
                workgroup_size: WORKGROUP_SIZE,
                precision: $value,
            };

            /// Every kernel of this precision.
            pub const KERNELS: &[Shader] = &[
                CONV2D,
                CONV2D_TILED,
                CONV2D_TILED_SUBGROUP,
                CONV2D_LANES,
                CONV_TRANSPOSE2D_LANES,
                CONV_TRANSPOSE2D,
                CONV_TRANSPOSE2D_TILED,
                CONV_TRANSPOSE2D_TILED_SUBGROUP,
                CONV2D_GEMM_64X64,
                CONV_TRANSPOSE2D_GEMM_64X64,
                CONV2D_GEMM_32X128,
                CONV_TRANSPOSE2D_GEMM_32X128,
                CONV2D_GEMM_128X32,
                CONV_TRANSPOSE2D_GEMM_128X32,
                CONV2D_GEMM_128X128,
                CONV_TRANSPOSE2D_GEMM_128X128,
                MAX_POOL2D,
                AVG_POOL2D,
                BILINEAR,
                COPY_VALUES,
            ];
        }
    };
}

kernels_in!(f32, Precision::F32, "alias Stored = f32;\nalias Acc = f32;\n", "gemm_tiles_apart.wgsl", "");
kernels_in!(f16, Precision::F16, "enable f16;\nalias Stored = f16;\nalias Acc = f32;\n", "gemm_tiles_apart.wgsl", " [f16]");
kernels_in!(f16_accumulate, Precision::F16Accumulate, "enable f16;\nalias Stored = f16;\nalias Acc = f16;\n", "gemm_tiles_side_by_side.wgsl", " [f16-accumulate]");

pub use self::f32::{
    AVG_POOL2D, BILINEAR, CONV2D, CONV2D_GEMM_128X128, CONV2D_GEMM_128X32, CONV2D_GEMM_32X128, CONV2D_GEMM_64X64, CONV2D_LANES, CONV2D_TILED,
    CONV2D_TILED_SUBGROUP, CONV_TRANSPOSE2D, CONV_TRANSPOSE2D_GEMM_128X128, CONV_TRANSPOSE2D_GEMM_128X32, CONV_TRANSPOSE2D_GEMM_32X128,
    CONV_TRANSPOSE2D_GEMM_64X64, CONV_TRANSPOSE2D_LANES, CONV_TRANSPOSE2D_TILED, CONV_TRANSPOSE2D_TILED_SUBGROUP, COPY_VALUES, MAX_POOL2D,
};

/// The smallest subgroup the `_SUBGROUP` kernels work with: eight lanes each load one of the
/// eight vec4s of a tap's weights (conv_weights_subgroup.wgsl).
pub const SUBGROUP_LANES_NEEDED: u32 = 8;

/// The ALU-bound kernel that measures the device's attainable FP32 FMA rate (`atrous bench --peak`).
pub const FMA_PEAK: Shader = Shader { name: "fma_peak.wgsl", entry_point: "fma_peak", source: include_str!("../../shaders/fma_peak.wgsl"), subgroups: false, workgroup_size: WORKGROUP_SIZE, precision: Precision::F32 };

/// Independent vec4 FMA chains per invocation of [`FMA_PEAK`] (`a0` … `a7` in the shader).
pub const FMA_PEAK_CHAINS: u64 = 8;

/// Steps each chain of [`FMA_PEAK`] advances per trip of its loop (unrolled in the shader).
pub const FMA_PEAK_STEPS_PER_TRIP: u64 = 4;

/// The memory-bound kernel that measures the device's attainable bandwidth (`atrous bench --peak`).
pub const STREAM_COPY: Shader = Shader { name: "stream_copy.wgsl", entry_point: "stream_copy", source: include_str!("../../shaders/stream_copy.wgsl"), subgroups: false, workgroup_size: WORKGROUP_SIZE, precision: Precision::F32 };

/// Every shader the library can run: the kernels in each precision, then the measuring ones.
pub const ALL: &[Shader] = &every_shader::<{ 3 * f32::KERNELS.len() + 2 }>([f32::KERNELS, f16::KERNELS, f16_accumulate::KERNELS, &[FMA_PEAK, STREAM_COPY]]);

const fn every_shader<const N: usize>(lists: [&[Shader]; 4]) -> [Shader; N] {
    let mut all = [FMA_PEAK; N];
    let (mut at, mut list) = (0, 0);
    while list < lists.len() {
        let mut i = 0;
        while i < lists[list].len() {
            all[at] = lists[list][i];
            at += 1;
            i += 1;
        }
        list += 1;
    }
    assert!(at == N, "ALL holds every list");
    all
}
