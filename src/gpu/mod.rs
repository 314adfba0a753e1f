//! The GPU backend: a wgpu context ([`Gpu`]) and the dispatch code of each op.

mod autotune;
mod context;
pub mod kernels;
mod network;
pub mod precision;
mod resample;
mod split;
mod steps;
mod timing;
mod window;
pub mod shaders;

pub use autotune::{cache_dir as autotune_cache_dir, shape_class, tuning_line, TunedCandidate, TuningStats, CACHE_FILE, CACHE_VERSION, TUNING_BUDGET_SECONDS};
pub use context::{AdapterSummary, Gpu, GpuError, GpuOptions, MAX_BINDING_BYTES_VARIABLE};
pub use precision::{Precision, PrecisionChoice, PRECISION_VARIABLE};
pub use timing::{BandwidthRuns, FmaPeakRuns, TimedConvolution, TimingSource};
pub use kernels::{GemmTile, KernelChoice, TILED_MIN_CHANNELS};
