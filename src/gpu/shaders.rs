//! The WGSL sources, embedded at build time. Each kernel file is prepended with the shared
//! declarations it uses; `tests/shaders.rs` parses and validates every entry with naga.

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
}

/// Invocations per workgroup of the kernels that compute one element per invocation, the tiled
/// kernels, the resize and the concatenation.
pub const WORKGROUP_SIZE: u32 = 64;

/// Invocations per workgroup of the lanes kernels: one subgroup of eight, the fewest whose
/// broadcasts bring the whole strip (BENCHMARKS.md).
pub const LANES_WORKGROUP_SIZE: u32 = 8;

pub const CONV2D: Shader = Shader {
    name: "conv2d.wgsl",
    entry_point: "conv2d",
    source: concat!(
        include_str!("../../shaders/common.wgsl"),
        include_str!("../../shaders/output_coord.wgsl"),
        include_str!("../../shaders/conv_io.wgsl"),
        include_str!("../../shaders/conv2d.wgsl")
    ),
    subgroups: false,
    workgroup_size: WORKGROUP_SIZE,
};

/// The files of a tiled kernel: the shared prelude, the register tile, one way of fetching its
/// weights (`conv_weights_load.wgsl` or `conv_weights_subgroup.wgsl`) and the kernel.
macro_rules! tiled_source {
    ($weights:literal, $($kernel:literal),+) => {
        concat!(
            include_str!("../../shaders/common.wgsl"),
            include_str!("../../shaders/conv_io.wgsl"),
            include_str!("../../shaders/conv_tile.wgsl"),
            include_str!(concat!("../../shaders/", $weights)),
            $(include_str!(concat!("../../shaders/", $kernel))),+
        )
    };
}

/// The tiled forward kernel for any device: each invocation loads its weights itself.
pub const CONV2D_TILED: Shader = Shader {
    name: "conv2d_tiled.wgsl",
    entry_point: "conv2d_tiled",
    source: tiled_source!("conv_weights_load.wgsl", "conv2d_tiled.wgsl"),
    subgroups: false,
    workgroup_size: WORKGROUP_SIZE,
};

/// [`CONV2D_TILED`] for devices with subgroups of at least [`SUBGROUP_LANES_NEEDED`]
/// invocations: the weights reach the invocations of a subgroup by broadcast.
pub const CONV2D_TILED_SUBGROUP: Shader = Shader {
    name: "conv2d_tiled.wgsl (subgroup weights)",
    entry_point: "conv2d_tiled",
    source: tiled_source!("conv_weights_subgroup.wgsl", "conv2d_tiled.wgsl"),
    subgroups: true,
    workgroup_size: WORKGROUP_SIZE,
};

/// The smallest subgroup the `_SUBGROUP` kernels work with: eight lanes each load one of the
/// eight vec4s of a tap's weights (conv_weights_subgroup.wgsl).
pub const SUBGROUP_LANES_NEEDED: u32 = 8;

/// The forward kernel with output channels across lanes and a strip of output pixels per
/// workgroup, whose inputs reach the lanes by subgroup broadcast (`src/gpu/kernels/lanes.rs`).
pub const CONV2D_LANES: Shader = Shader {
    name: "conv2d_lanes.wgsl",
    entry_point: "conv2d_lanes",
    source: concat!(
        include_str!("../../shaders/common.wgsl"),
        include_str!("../../shaders/conv_io.wgsl"),
        include_str!("../../shaders/conv_lanes.wgsl"),
        include_str!("../../shaders/conv2d_lanes.wgsl")
    ),
    subgroups: true,
    workgroup_size: LANES_WORKGROUP_SIZE,
};

/// [`CONV2D_LANES`] for the transposed convolution, phase by phase.
pub const CONV_TRANSPOSE2D_LANES: Shader = Shader {
    name: "conv_transpose2d_lanes.wgsl",
    entry_point: "conv_transpose2d_lanes",
    source: concat!(
        include_str!("../../shaders/common.wgsl"),
        include_str!("../../shaders/conv_io.wgsl"),
        include_str!("../../shaders/conv_lanes.wgsl"),
        include_str!("../../shaders/conv_transpose_phase.wgsl"),
        include_str!("../../shaders/conv_transpose2d_lanes.wgsl")
    ),
    subgroups: true,
    workgroup_size: LANES_WORKGROUP_SIZE,
};

pub const CONV_TRANSPOSE2D_TILED: Shader = Shader {
    name: "conv_transpose2d_tiled.wgsl",
    entry_point: "conv_transpose2d_tiled",
    source: tiled_source!("conv_weights_load.wgsl", "conv_transpose_phase.wgsl", "conv_transpose2d_tiled.wgsl"),
    subgroups: false,
    workgroup_size: WORKGROUP_SIZE,
};

pub const CONV_TRANSPOSE2D_TILED_SUBGROUP: Shader = Shader {
    name: "conv_transpose2d_tiled.wgsl (subgroup weights)",
    entry_point: "conv_transpose2d_tiled",
    source: tiled_source!("conv_weights_subgroup.wgsl", "conv_transpose_phase.wgsl", "conv_transpose2d_tiled.wgsl"),
    subgroups: true,
    workgroup_size: WORKGROUP_SIZE,
};

pub const CONV_TRANSPOSE2D: Shader = Shader {
    name: "conv_transpose2d.wgsl",
    entry_point: "conv_transpose2d",
    source: concat!(
        include_str!("../../shaders/common.wgsl"),
        include_str!("../../shaders/output_coord.wgsl"),
        include_str!("../../shaders/conv_io.wgsl"),
        include_str!("../../shaders/conv_transpose_phase.wgsl"),
        include_str!("../../shaders/conv_transpose2d.wgsl")
    ),
    subgroups: false,
    workgroup_size: WORKGROUP_SIZE,
};

/// The files of an implicit-GEMM kernel in one tile configuration: a workgroup of `GEMM_SM` ×
/// `GEMM_SN` invocations and steps of `GEMM_BK` input channels, prepended as constants.
macro_rules! gemm_source {
    ($sm:literal, $sn:literal, $bk:literal, $($kernel:literal),+) => {
        concat!(
            "const GEMM_SM: u32 = ", $sm, "u;\nconst GEMM_SN: u32 = ", $sn, "u;\nconst GEMM_BK: u32 = ", $bk, "u;\n",
            include_str!("../../shaders/common.wgsl"),
            include_str!("../../shaders/conv_io.wgsl"),
            include_str!("../../shaders/conv_gemm.wgsl"),
            $(include_str!(concat!("../../shaders/", $kernel))),+
        )
    };
}

/// The implicit-GEMM kernels (conv_gemm.wgsl), forward and transposed, one per tile
/// configuration; `src/gpu/kernels/gemm.rs` is their host side.
macro_rules! gemm_shaders {
    ($($forward:ident, $transposed:ident: $sm:literal x $sn:literal, $bk:literal, $label:literal;)+) => {
        $(
            pub const $forward: Shader = Shader {
                name: concat!("conv2d_gemm.wgsl (", $label, ")"),
                entry_point: "conv2d_gemm",
                source: gemm_source!($sm, $sn, $bk, "conv2d_gemm.wgsl"),
                subgroups: false,
                workgroup_size: $sm * $sn,
            };
            pub const $transposed: Shader = Shader {
                name: concat!("conv_transpose2d_gemm.wgsl (", $label, ")"),
                entry_point: "conv_transpose2d_gemm",
                source: gemm_source!($sm, $sn, $bk, "conv_transpose_phase.wgsl", "conv_transpose2d_gemm.wgsl"),
                subgroups: false,
                workgroup_size: $sm * $sn,
            };
        )+
    };
}

gemm_shaders! {
    CONV2D_GEMM_128X128, CONV_TRANSPOSE2D_GEMM_128X128: 16 x 16, 16, "128x128";
    CONV2D_GEMM_64X64, CONV_TRANSPOSE2D_GEMM_64X64: 8 x 8, 8, "64x64";
    CONV2D_GEMM_32X128, CONV_TRANSPOSE2D_GEMM_32X128: 4 x 16, 8, "32x128";
    CONV2D_GEMM_128X32, CONV_TRANSPOSE2D_GEMM_128X32: 16 x 4, 8, "128x32";
}

/// Max and average pooling: one file, one window walk, two entry points.
pub const MAX_POOL2D: Shader = Shader {
    name: "pool2d.wgsl",
    entry_point: "max_pool2d",
    source: concat!(include_str!("../../shaders/common.wgsl"), include_str!("../../shaders/output_coord.wgsl"), include_str!("../../shaders/pool2d.wgsl")),
    subgroups: false,
    workgroup_size: WORKGROUP_SIZE,
};

pub const AVG_POOL2D: Shader = Shader { entry_point: "avg_pool2d", ..MAX_POOL2D };

pub const BILINEAR: Shader = Shader { name: "bilinear.wgsl", entry_point: "bilinear", source: include_str!("../../shaders/bilinear.wgsl"), subgroups: false, workgroup_size: WORKGROUP_SIZE };


/// The ALU-bound kernel that measures the device's attainable FP32 FMA rate (`atrous bench --peak`).
pub const FMA_PEAK: Shader = Shader { name: "fma_peak.wgsl", entry_point: "fma_peak", source: include_str!("../../shaders/fma_peak.wgsl"), subgroups: false, workgroup_size: WORKGROUP_SIZE };

/// Independent vec4 FMA chains per invocation of [`FMA_PEAK`] (`a0` … `a7` in the shader).
pub const FMA_PEAK_CHAINS: u64 = 8;

/// Steps each chain of [`FMA_PEAK`] advances per trip of its loop (unrolled in the shader).
pub const FMA_PEAK_STEPS_PER_TRIP: u64 = 4;

/// The memory-bound kernel that measures the device's attainable bandwidth (`atrous bench --peak`).
pub const STREAM_COPY: Shader = Shader { name: "stream_copy.wgsl", entry_point: "stream_copy", source: include_str!("../../shaders/stream_copy.wgsl"), subgroups: false, workgroup_size: WORKGROUP_SIZE };

/// Every shader the library can run.
pub const ALL: &[Shader] = &[
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
    FMA_PEAK,
    STREAM_COPY,
];
