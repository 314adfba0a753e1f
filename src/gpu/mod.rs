//! The GPU backend: a wgpu context ([`Gpu`]) and the dispatch code of each op.

mod context;
mod network;
mod resample;
mod timing;
mod window;
pub mod shaders;

pub use context::{AdapterSummary, Gpu, GpuError, GpuOptions};
pub use timing::{FmaPeakRuns, TimedConvolution, TimingSource};
pub use window::{KernelChoice, TILED_MIN_CHANNELS};
