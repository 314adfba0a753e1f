//! `.npy` files (NumPy's format) in and out: f32 or f64, C order, any rank.
//!
//! Writing is atomic (see [`crate::atomic_file`]): a failed run never leaves a half-written
//! output behind.

use std::path::{Path, PathBuf};

use npyz::{DType, Order, TypeChar, WriterBuilder};
use thiserror::Error;

use crate::atomic_file::write_atomically;
use crate::tensor::Tensor;

/// Why a `.npy` file could not be read or written.
#[derive(Debug, Error)]
pub enum NpyError {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid .npy file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} holds {found} values; atrous reads float32 ('<f4') or float64 ('<f8') arrays (convert with arr.astype(numpy.float32))")]
    UnsupportedDtype { path: PathBuf, found: String },
    #[error("{path} is stored in Fortran order; save a C-ordered array (numpy.ascontiguousarray)")]
    FortranOrder { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Reads a float32 or float64 `.npy` file into an f32 tensor.
pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor, NpyError> {
    let path = path.as_ref();
    let corrupt = |e: std::io::Error| NpyError::Corrupt { path: path.to_owned(), reason: e.to_string() };
    let bytes = std::fs::read(path).map_err(|source| NpyError::Open { path: path.to_owned(), source })?;
    check_declared_size(&bytes).map_err(|reason| NpyError::Corrupt { path: path.to_owned(), reason })?;
    let npy = npyz::NpyFile::new(bytes.as_slice()).map_err(corrupt)?;
    if npy.order() == Order::Fortran {
        return Err(NpyError::FortranOrder { path: path.to_owned() });
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let data = match npy.dtype() {
        DType::Plain(ts) if ts.type_char() == TypeChar::Float && ts.size_field() == 4 => npy.into_vec::<f32>().map_err(corrupt)?,
        DType::Plain(ts) if ts.type_char() == TypeChar::Float && ts.size_field() == 8 => {
            npy.into_vec::<f64>().map_err(corrupt)?.into_iter().map(|v| v as f32).collect()
        }
        other => return Err(NpyError::UnsupportedDtype { path: path.to_owned(), found: other.descr() }),
    };
    Tensor::new(shape, data).map_err(|e| NpyError::Corrupt { path: path.to_owned(), reason: e.to_string() })
}

/// Refuses a header whose shape holds more elements than the file could contain, before the
/// npy parser multiplies the dimensions (which it does without overflow checks).
fn check_declared_size(bytes: &[u8]) -> Result<(), String> {
    let header = String::from_utf8_lossy(&bytes[..bytes.len().min(65_536)]);
    let Some(start) = header.find("'shape'").and_then(|i| header[i..].find('(').map(|j| i + j + 1)) else {
        return Ok(()); // no shape to check: the parser reports what is wrong
    };
    let Some(len) = header[start..].find(')') else { return Ok(()) };
    let mut elements: u128 = 1;
    for dim in header[start..start + len].split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let dim: u128 = dim.trim_end_matches('L').parse().map_err(|_| format!("shape entry '{dim}' is not a size"))?;
        elements = elements.saturating_mul(dim);
    }
    if elements > bytes.len() as u128 {
        return Err(format!("its header declares {elements} elements, more than the file's {} bytes can hold", bytes.len()));
    }
    Ok(())
}

/// Writes `tensor` as a little-endian float32 `.npy` file, atomically.
pub fn write_npy(path: impl AsRef<Path>, tensor: &Tensor) -> Result<(), NpyError> {
    let path = path.as_ref();
    let shape: Vec<u64> = tensor.shape().iter().map(|&d| d as u64).collect();
    write_atomically(path, |file| {
        let mut writer = npyz::WriteOptions::new().default_dtype().shape(&shape).writer(file).begin_nd()?;
        writer.extend(tensor.data().iter().copied())?;
        writer.finish()
    })
    .map_err(|source| NpyError::Write { path: path.to_owned(), source })
}
