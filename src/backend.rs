//! One trait, several backends: the same validated convolution runs on the GPU, on the fast CPU
//! path or on the f64 reference, so "compare GPU with CPU" is "run both, diff".

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::gpu::Gpu;
use crate::shape::{ConvKind, WindowGeometry};
use crate::{cpu, Error};

/// Where a computation runs: one name for the CLI's `--device` and the bench's records, which
/// spell it `gpu` or `cpu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Device {
    #[serde(rename = "gpu")]
    Gpu,
    #[serde(rename = "cpu")]
    Cpu,
}

impl Device {
    /// Every device, in the order `--help` lists them.
    pub const ALL: [Device; 2] = [Device::Gpu, Device::Cpu];

    pub fn name(self) -> &'static str {
        match self {
            Device::Gpu => "gpu",
            Device::Cpu => "cpu",
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Device {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Device::ALL.into_iter().find(|d| d.name() == s).ok_or_else(|| format!("unknown device '{s}': expected gpu or cpu"))
    }
}

/// Something that executes a validated convolution on flat NCHW data.
pub trait Backend {
    /// A short description for tables and messages (the adapter's name for the GPU).
    fn describe(&self) -> String;

    /// Runs `geometry`: a convolution (forward or transposed), or a pooling (whose `weight` is
    /// ignored). The slices match the geometry's shapes.
    fn convolve(&self, geometry: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Result<Vec<f32>, Error>;
}

/// Whether kernels and the fast CPU path skip the taps that read only padding: yes unless
/// `$ATROUS_TAP_SKIPPING` is `0` (one switch for both devices, for measuring what it saves).
pub fn tap_skipping_from_env() -> bool {
    std::env::var("ATROUS_TAP_SKIPPING").map_or(true, |v| v.trim() != "0")
}

/// The fast CPU path: a packed implicit GEMM on AVX-512/AVX2, wide 3×3 stride-1 layers as
/// Winograd's F(2×2, 3×3) on it (else im2col / col2im around an SGEMM), parallel with rayon.
/// Convolutions skip the taps that read only padding where that saves work
/// ([`cpu::TapSkipping::Auto`]) unless `$ATROUS_TAP_SKIPPING` is `0`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu;

/// The direct-loop CPU reference that accumulates in f64: slow, and the gold standard.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuReference;

impl Backend for Cpu {
    fn describe(&self) -> String {
        format!("CPU ({}, {} threads)", cpu::GemmKernel::name(cpu::GemmKernel::from_env()), rayon::current_num_threads())
    }

    fn convolve(&self, g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Result<Vec<f32>, Error> {
        Ok(cpu::PreparedConv::new(g, weight).convolve(input, bias))
    }
}

impl Backend for CpuReference {
    fn describe(&self) -> String {
        "CPU reference (direct loop, f64 accumulation)".to_owned()
    }

    fn convolve(&self, g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Result<Vec<f32>, Error> {
        Ok(match g.kind {
            ConvKind::Forward => cpu::conv2d_reference(g, input, weight, bias),
            ConvKind::Transposed => cpu::conv_transpose2d_reference(g, input, weight, bias),
            ConvKind::MaxPool => cpu::max_pool2d_reference(g, input),
            ConvKind::AvgPool => cpu::avg_pool2d_reference(g, input),
        })
    }
}

impl Backend for Gpu {
    fn describe(&self) -> String {
        self.summary().to_string()
    }

    fn convolve(&self, g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Result<Vec<f32>, Error> {
        Ok(Gpu::convolve(self, g, input, weight, bias)?)
    }
}
