//! Where a network's parameters come from: a PyTorch `state_dict` saved as `.safetensors`, or
//! deterministic seeded values so that everything works offline. Batch-norm is folded into the
//! preceding convolution here, once, at load.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use thiserror::Error;

use crate::Tensor;

/// Why a parameter could not be had.
#[derive(Debug, Error)]
pub enum WeightError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid .safetensors file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} has no tensor '{name}' (expected shape {expected:?}){hint}")]
    Missing { path: PathBuf, name: String, expected: Vec<usize>, hint: String },
    #[error("tensor '{name}' in {path} has shape {found:?}, but the network needs {expected:?}")]
    WrongShape { path: PathBuf, name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("tensor '{name}' in {path} is {dtype:?}; atrous reads F32, F64, F16 and BF16")]
    UnsupportedDtype { path: PathBuf, name: String, dtype: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// What a parameter is for; seeded sources use it to pick plausible values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    ConvWeight,
    ConvBias,
    /// Batch-norm scale; `closes_residual_branch` marks the last one before a shortcut add,
    /// which seeded weights keep small so that deep stacks of blocks stay well-scaled.
    BnScale { closes_residual_branch: bool },
    BnShift,
    BnMean,
    BnVariance,
}

/// A provider of named parameters, in PyTorch's naming and layouts.
pub trait WeightSource {
    /// The tensor called `name`, which must have `shape`.
    fn tensor(&mut self, name: &str, shape: &[usize], role: Role) -> Result<Tensor, WeightError>;
}

/// Another source's tensors under a name prefix: `Prefixed::new(source, "backbone.")` serves
/// `conv1.weight` as the source's `backbone.conv1.weight`.
pub struct Prefixed<'a> {
    source: &'a mut dyn WeightSource,
    prefix: &'a str,
}

impl<'a> Prefixed<'a> {
    pub fn new(source: &'a mut dyn WeightSource, prefix: &'a str) -> Self {
        Prefixed { source, prefix }
    }
}

impl WeightSource for Prefixed<'_> {
    fn tensor(&mut self, name: &str, shape: &[usize], role: Role) -> Result<Tensor, WeightError> {
        self.source.tensor(&format!("{}{name}", self.prefix), shape, role)
    }
}

/// The tensors of a `.safetensors` state dict, converted to f32 on load.
pub struct SafetensorsWeights {
    path: PathBuf,
    tensors: BTreeMap<String, Tensor>,
    used: HashSet<String>,
}

fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytemuck::pod_collect_to_vec(bytes),
        Dtype::F64 => bytemuck::pod_collect_to_vec::<u8, f64>(bytes).into_iter().map(|v| v as f32).collect(),
        Dtype::F16 => bytemuck::pod_collect_to_vec::<u8, u16>(bytes).into_iter().map(|b| half::f16::from_bits(b).to_f32()).collect(),
        Dtype::BF16 => bytemuck::pod_collect_to_vec::<u8, u16>(bytes).into_iter().map(|b| half::bf16::from_bits(b).to_f32()).collect(),
        _ => return None,
    })
}

/// Batch-norm's `num_batches_tracked` counts training steps; it is never a parameter.
fn is_counter(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
}

impl SafetensorsWeights {
    /// Reads every floating-point tensor of `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, WeightError> {
        let path = path.as_ref().to_owned();
        let bytes = std::fs::read(&path).map_err(|source| WeightError::Read { path: path.clone(), source })?;
        let file = SafeTensors::deserialize(&bytes).map_err(|e| WeightError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        let mut tensors = BTreeMap::new();
        for (name, view) in file.iter() {
            if is_counter(name) {
                continue;
            }
            let data = to_f32(view.dtype(), view.data())
                .ok_or_else(|| WeightError::UnsupportedDtype { path: path.clone(), name: name.to_owned(), dtype: format!("{:?}", view.dtype()) })?;
            let tensor = Tensor::new(view.shape().to_vec(), data).map_err(|e| WeightError::Corrupt { path: path.clone(), reason: e.to_string() })?;
            tensors.insert(name.to_owned(), tensor);
        }
        Ok(SafetensorsWeights { path, tensors, used: HashSet::new() })
    }

    /// The shape of the tensor of this full name, if the file holds it.
    pub fn shape_of(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(Tensor::shape)
    }

    /// Tensors whose names start with `under` that nothing asked for, apart from those starting
    /// with one of `ignored` (such as a classifier the network does not include). A long list
    /// usually means the file is for another architecture.
    pub fn unused(&self, under: &str, ignored: &[&str]) -> Vec<&str> {
        self.tensors
            .keys()
            .filter(|name| name.starts_with(under) && !self.used.contains(*name))
            .filter(|name| !ignored.iter().any(|prefix| name.starts_with(prefix)))
            .map(String::as_str)
            .collect()
    }
}

impl WeightSource for SafetensorsWeights {
    fn tensor(&mut self, name: &str, shape: &[usize], _role: Role) -> Result<Tensor, WeightError> {
        let tensor = self.tensors.get(name).ok_or_else(|| {
            let hint = match self.tensors.keys().find(|k| k.ends_with(&format!(".{name}"))) {
                Some(other) => format!("; it has '{other}': pass the prefix before '{name}'"),
                None => String::new(),
            };
            WeightError::Missing { path: self.path.clone(), name: name.to_owned(), expected: shape.to_vec(), hint }
        })?;
        if tensor.shape() != shape {
            return Err(WeightError::WrongShape { path: self.path.clone(), name: name.to_owned(), expected: shape.to_vec(), found: tensor.shape().to_vec() });
        }
        let tensor = tensor.clone();
        self.used.insert(name.to_owned());
        Ok(tensor)
    }
}

/// Seed of the built-in weights, which the CLI and the Python package use when no weights file
/// is given, so both build the same network.
pub const DEFAULT_SEED: u64 = 2024;

/// Deterministic pseudo-random parameters: each tensor's values depend only on the seed and
/// its name, so networks that share names (a backbone at two output strides) share weights.
/// Scales follow He initialisation so that activations stay well-scaled through deep networks.
pub struct SeededWeights {
    seed: u64,
    generated: Vec<(String, Tensor)>,
}

impl SeededWeights {
    pub fn new(seed: u64) -> Self {
        SeededWeights { seed, generated: Vec::new() }
    }

    /// Every tensor handed out so far, by name: a complete state dict of what was built.
    pub fn generated(&self) -> &[(String, Tensor)] {
        &self.generated
    }
}

/// FNV-1a, to turn a parameter's name into a seed.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

impl WeightSource for SeededWeights {
    fn tensor(&mut self, name: &str, shape: &[usize], role: Role) -> Result<Tensor, WeightError> {
        let unit = Tensor::random(shape.to_vec(), self.seed ^ name_hash(name));
        let (scale, offset) = match role {
            Role::ConvWeight => ((6.0 / shape[1..].iter().product::<usize>() as f32).sqrt(), 0.0),
            Role::ConvBias | Role::BnShift | Role::BnMean => (0.1, 0.0),
            Role::BnScale { closes_residual_branch: false } => (0.2, 1.0),
            Role::BnScale { closes_residual_branch: true } => (0.1, 0.2),
            Role::BnVariance => (0.25, 1.0),
        };
        let data = unit.data().iter().map(|v| v * scale + offset).collect();
        let tensor = Tensor::new(shape.to_vec(), data).expect("same shape");
        self.generated.push((name.to_owned(), tensor.clone()));
        Ok(tensor)
    }
}

/// Folds an inference-mode batch-norm into the convolution before it: with
/// `s = γ / √(var + ε)`, the weight of output channel `c` becomes `s_c·W_c` and the bias
/// `s_c·(b_c − mean_c) + β_c`.
pub fn fold_batch_norm(weight: &Tensor, bias: Option<&Tensor>, gamma: &Tensor, beta: &Tensor, mean: &Tensor, var: &Tensor, eps: f32) -> (Tensor, Tensor) {
    let channels = weight.shape()[0];
    let per_channel = weight.len() / channels;
    let mut folded_weight = weight.clone();
    let mut folded_bias = Vec::with_capacity(channels);
    for c in 0..channels {
        let scale = gamma.data()[c] / (var.data()[c] + eps).sqrt();
        folded_weight.data_mut()[c * per_channel..(c + 1) * per_channel].iter_mut().for_each(|w| *w *= scale);
        let b = bias.map_or(0.0, |b| b.data()[c]);
        folded_bias.push(scale * (b - mean.data()[c]) + beta.data()[c]);
    }
    (folded_weight, Tensor::new(vec![channels], folded_bias).expect("one per channel"))
}

/// Writes named f32 tensors as a `.safetensors` file (atomically), e.g. seeded weights for
/// another implementation to load.
pub fn write_safetensors(path: impl AsRef<Path>, tensors: &[(String, Tensor)]) -> Result<(), WeightError> {
    let path = path.as_ref();
    let write_err = |reason: String| WeightError::Write { path: path.to_owned(), reason };
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> =
        tensors.iter().map(|(name, t)| (name.clone(), bytemuck::cast_slice(t.data()).to_vec(), t.shape().to_vec())).collect();
    let views = bytes
        .iter()
        .map(|(name, data, shape)| Ok((name.as_str(), safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| write_err(e.to_string()))?;
    let serialized = safetensors::serialize(views, None).map_err(|e| write_err(e.to_string()))?;
    crate::atomic_file::write_atomically(path, |file| std::io::Write::write_all(file, &serialized)).map_err(|e| write_err(e.to_string()))
}
