//! The one error type of the library: each variant wraps the error of one layer.

use thiserror::Error;

/// Anything that can go wrong in atrous.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Shape(#[from] crate::shape::ShapeError),
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
    #[error(transparent)]
    Npy(#[from] crate::npy::NpyError),
    #[error("layer {layer}: {source}")]
    Layer { layer: String, source: crate::shape::ShapeError },
    #[error("layer {layer}: {source}")]
    Network { layer: String, source: crate::net::NetworkError },
    #[error(transparent)]
    Weights(#[from] crate::weights::WeightError),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Image(#[from] crate::imaging::ImageError),
}
