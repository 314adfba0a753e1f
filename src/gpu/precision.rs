//! The precision a GPU runs networks and ops in: how tensors and weights are stored on the
//! device and what the kernels sum in. Every kernel exists in each precision (the same WGSL
//! after a prelude naming the two types, src/gpu/shaders.rs); values are converted at the edges
//! of a run — uploads and read-backs — never between layers.

use std::fmt;
use std::str::FromStr;

use crate::compare::Difference;

/// How tensors are stored on the device and what the kernels' sums are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 storage and f32 sums, as the CPU path.
    #[default]
    F32,
    /// Tensors and weights stored in f16 (half the memory and traffic), products summed in f32.
    F16,
    /// f16 storage and f16 arithmetic too: twice the FMA rate on GPUs with packed half math,
    /// the largest error.
    F16Accumulate,
}

/// What a caller asks for: one precision, or the fastest the adapter offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrecisionChoice {
    Exactly(Precision),
    /// [`Precision::F16Accumulate`] on a GPU with `SHADER_F16`; f32 on one without it and on
    /// CPU adapters, which emulate f16 arithmetic (the caller is told why through
    /// [`crate::gpu::Gpu::precision_note`]).
    Fastest,
}

/// The environment variable that chooses the precision where [`super::GpuOptions::precision`]
/// does not (the Python package reads it).
pub const PRECISION_VARIABLE: &str = "ATROUS_PRECISION";

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::F16, Precision::F16Accumulate];

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::F16Accumulate => "f16-accumulate",
        }
    }

    /// Bytes of one stored value.
    pub fn element_bytes(self) -> u64 {
        match self {
            Precision::F32 => 4,
            Precision::F16 | Precision::F16Accumulate => 2,
        }
    }

    /// Whether the device needs `wgpu::Features::SHADER_F16`.
    pub fn needs_f16(self) -> bool {
        self != Precision::F32
    }

    /// The error this precision is judged by: in f32 every element's relative error
    /// (`max_rel`); in f16 the tensor's relative RMS error (`rms_rel`), because there every
    /// stored value is rounded to 11 significant bits and that rounding, carried from layer to
    /// layer, dominates `max_rel` at the smallest values of a tensor.
    pub fn judged_error(self, d: &Difference) -> f64 {
        if self.needs_f16() { d.rms_rel } else { d.max_rel }
    }

    /// The name of [`Precision::judged_error`], for reports.
    pub fn judged_error_name(self) -> &'static str {
        if self.needs_f16() { "relative RMS" } else { "relative" }
    }

    /// Whether `d` (a result against the f32 CPU path) is within `tolerance` by this precision's
    /// measure, with no value finite on one side only.
    pub fn agrees(self, d: &Difference, tolerance: f64) -> bool {
        d.non_finite == 0 && self.judged_error(d) <= tolerance
    }

    /// The largest [`Precision::judged_error`] a layer of a network may show against the f32
    /// CPU path before `--compare` calls it a disagreement. f32: sums in another order. f16:
    /// every stored value rounded (a relative step of 2^-11 ≈ 4.9e-4), layer after layer.
    /// f16 sums: thousands of products rounded as they are added. BENCHMARKS.md ("Half
    /// precision") has the errors measured.
    pub fn network_tolerance(self) -> f64 {
        match self {
            Precision::F32 => crate::compare::NETWORK_TOLERANCE,
            Precision::F16 => 1e-2,
            Precision::F16Accumulate => 5e-2,
        }
    }

    /// The same for one op (`conv2d --compare`): its input, weights and output each rounded once.
    pub fn op_tolerance(self) -> f64 {
        match self {
            Precision::F32 => crate::compare::OP_TOLERANCE,
            Precision::F16 => 5e-3,
            Precision::F16Accumulate => 2e-2,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl PrecisionChoice {
    /// The names `--precision` and [`PRECISION_VARIABLE`] accept.
    pub const NAMES: [&'static str; 4] = ["f32", "f16", "f16-accumulate", "fastest"];
}

impl FromStr for PrecisionChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "fastest" => Ok(PrecisionChoice::Fastest),
            name => Precision::ALL
                .into_iter()
                .find(|p| p.name() == name)
                .map(PrecisionChoice::Exactly)
                .ok_or_else(|| format!("unknown precision '{text}': expected one of {}", PrecisionChoice::NAMES.join(", "))),
        }
    }
}
