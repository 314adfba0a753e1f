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
}

pub const CONV2D: Shader = Shader {
    name: "conv2d.wgsl",
    entry_point: "conv2d",
    source: concat!(
        include_str!("../../shaders/common.wgsl"),
        include_str!("../../shaders/conv_io.wgsl"),
        include_str!("../../shaders/conv2d.wgsl")
    ),
};

pub const CONV2D_TILED: Shader = Shader {
    name: "conv2d_tiled.wgsl",
    entry_point: "conv2d_tiled",
    source: concat!(
        include_str!("../../shaders/common.wgsl"),
        include_str!("../../shaders/conv_io.wgsl"),
        include_str!("../../shaders/conv_tile.wgsl"),
        include_str!("../../shaders/conv2d_tiled.wgsl")
    ),
};

/// Output channels per invocation of [`CONV2D_TILED`] and [`CONV_TRANSPOSE2D_TILED`] (`CO_TILE`
/// in both shaders).
pub const CONV2D_TILED_CHANNELS: usize = 16;

pub const CONV_TRANSPOSE2D_TILED: Shader = Shader {
    name: "conv_transpose2d_tiled.wgsl",
    entry_point: "conv_transpose2d_tiled",
    source: concat!(
        include_str!("../../shaders/common.wgsl"),
        include_str!("../../shaders/conv_io.wgsl"),
        include_str!("../../shaders/conv_tile.wgsl"),
        include_str!("../../shaders/conv_transpose2d_tiled.wgsl")
    ),
};

pub const CONV_TRANSPOSE2D: Shader = Shader {
    name: "conv_transpose2d.wgsl",
    entry_point: "conv_transpose2d",
    source: concat!(
        include_str!("../../shaders/common.wgsl"),
        include_str!("../../shaders/conv_io.wgsl"),
        include_str!("../../shaders/conv_transpose2d.wgsl")
    ),
};

pub const MAX_POOL2D: Shader = Shader {
    name: "max_pool2d.wgsl",
    entry_point: "max_pool2d",
    source: concat!(include_str!("../../shaders/common.wgsl"), include_str!("../../shaders/max_pool2d.wgsl")),
};

pub const AVG_POOL2D: Shader = Shader {
    name: "avg_pool2d.wgsl",
    entry_point: "avg_pool2d",
    source: concat!(include_str!("../../shaders/common.wgsl"), include_str!("../../shaders/avg_pool2d.wgsl")),
};

pub const BILINEAR: Shader = Shader { name: "bilinear.wgsl", entry_point: "bilinear", source: include_str!("../../shaders/bilinear.wgsl") };

pub const CONCAT: Shader = Shader { name: "concat.wgsl", entry_point: "concat", source: include_str!("../../shaders/concat.wgsl") };

/// The ALU-bound kernel that measures the device's attainable FP32 FMA rate (`atrous bench --peak`).
pub const FMA_PEAK: Shader = Shader { name: "fma_peak.wgsl", entry_point: "fma_peak", source: include_str!("../../shaders/fma_peak.wgsl") };

/// Independent vec4 FMA chains per invocation of [`FMA_PEAK`] (`a0` … `a7` in the shader).
pub const FMA_PEAK_CHAINS: u64 = 8;

/// Steps each chain of [`FMA_PEAK`] advances per trip of its loop (unrolled in the shader).
pub const FMA_PEAK_STEPS_PER_TRIP: u64 = 4;

/// Every shader the library can run.
pub const ALL: &[Shader] = &[CONV2D, CONV2D_TILED, CONV_TRANSPOSE2D, CONV_TRANSPOSE2D_TILED, MAX_POOL2D, AVG_POOL2D, BILINEAR, CONCAT, FMA_PEAK];
