//! A network description that every backend executes: a list of named layers, each reading the
//! network input or an earlier layer's output. Comparing backends is running both and diffing
//! layer by layer.

mod cpu;
mod receptive_field;

use std::time::Duration;

pub use receptive_field::{receptive_fields, FieldOfView};

use crate::shape::{Conv2dParams, ConvGeometry, Pool2dParams, ShapeError};
use crate::{Error, Tensor};

/// Which tensor a layer reads: the network's input, or the output of an earlier layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    Input,
    Layer(usize),
}

/// What a layer computes.
#[derive(Clone, Debug)]
pub enum Op {
    /// A convolution with its epilogue fused: `relu(conv(x) + bias + residual)`. Batch-norm
    /// is folded into `weight` and `bias` when the network is built.
    Conv { params: Conv2dParams, weight: Tensor, bias: Option<Tensor>, relu: bool },
    MaxPool(Pool2dParams),
}

/// One named layer.
#[derive(Clone, Debug)]
pub struct Layer {
    /// The name of the module it comes from, as in the weights (`layer3.2.conv2`).
    pub name: String,
    pub op: Op,
    pub input: Source,
    /// Added to the output before the ReLU (a ResNet block's shortcut); same shape as the output.
    pub residual: Option<Source>,
}

/// A feed-forward network: layers in execution order; the last one is the output.
#[derive(Clone, Debug, Default)]
pub struct Network {
    pub name: String,
    pub layers: Vec<Layer>,
}

/// Which layer outputs a forward pass returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Only the last layer's: intermediate memory is reused as soon as it is dead.
    Last,
    /// Every layer's, for a layer-by-layer comparison.
    All,
}

/// What a forward pass returns.
#[derive(Debug)]
pub struct Forward {
    /// One entry per layer: its output where it was kept.
    pub outputs: Vec<Option<Tensor>>,
    /// Time per layer, where the backend can measure it (GPU timestamp queries; CPU wall clock).
    pub layer_times: Option<Vec<Duration>>,
    /// Wall-clock time of the whole pass, uploads and read-back included.
    pub total_time: Duration,
    /// Device memory the pass allocated, where the backend accounts for it.
    pub memory: Option<MemoryUse>,
}

/// Device memory of one forward pass, as allocated by atrous.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryUse {
    /// Bytes of weights and biases.
    pub weights: u64,
    /// Bytes of activation buffers alive at once at the peak (after reuse).
    pub activations: u64,
    /// Bytes of the largest single activation.
    pub largest_activation: u64,
}

impl MemoryUse {
    pub fn peak(&self) -> u64 {
        self.weights + self.activations
    }
}

/// Something that runs a whole network.
pub trait Executor {
    /// A short description for tables and messages.
    fn describe(&self) -> String;

    /// Runs `network` on an NCHW `input`.
    fn forward(&self, network: &Network, input: &Tensor, keep: Keep) -> Result<Forward, Error>;
}

impl Network {
    /// Validates every layer against an input of `input_shape` and resolves its geometry; an
    /// error names the layer.
    pub fn geometries(&self, input_shape: &[usize]) -> Result<Vec<ConvGeometry>, Error> {
        let mut shapes: Vec<[usize; 4]> = Vec::with_capacity(self.layers.len());
        let mut geometries = Vec::with_capacity(self.layers.len());
        let input_shape = input_shape.to_vec();
        for (index, layer) in self.layers.iter().enumerate() {
            let in_error = |source: ShapeError| Error::Layer { layer: layer.name.clone(), source };
            let shape_of = |source: Source| -> Result<Vec<usize>, Error> {
                match source {
                    Source::Input => Ok(input_shape.clone()),
                    Source::Layer(i) if i < index => Ok(shapes[i].to_vec()),
                    Source::Layer(i) => Err(Error::Network(format!("layer {} reads layer {i}, which does not run before it", layer.name))),
                }
            };
            let input = shape_of(layer.input)?;
            let geometry = match &layer.op {
                Op::Conv { params, weight, bias, .. } => params.geometry(&input, weight.shape(), bias.as_ref().map(Tensor::shape)),
                Op::MaxPool(params) => params.geometry(&input),
            }
            .map_err(in_error)?;
            if let Some(residual) = layer.residual {
                let residual_shape = shape_of(residual)?;
                if residual_shape != geometry.output_shape() {
                    return Err(Error::Network(format!(
                        "layer {}: residual shape {residual_shape:?} differs from the output shape {:?}",
                        layer.name,
                        geometry.output_shape()
                    )));
                }
            }
            shapes.push(geometry.output_shape());
            geometries.push(geometry);
        }
        Ok(geometries)
    }

    /// For each layer, the index of the last layer that reads its output (itself if none; the
    /// last layer's output lives to the end).
    pub fn last_uses(&self) -> Vec<usize> {
        let mut last: Vec<usize> = (0..self.layers.len()).collect();
        for (index, layer) in self.layers.iter().enumerate() {
            for source in std::iter::once(layer.input).chain(layer.residual) {
                if let Source::Layer(i) = source {
                    last[i] = last[i].max(index);
                }
            }
        }
        if let Some(final_layer) = last.last_mut() {
            *final_layer = usize::MAX;
        }
        last
    }

    /// Bytes of all weights and biases.
    pub fn weight_bytes(&self) -> u64 {
        self.layers
            .iter()
            .map(|layer| match &layer.op {
                Op::Conv { weight, bias, .. } => (weight.len() + bias.as_ref().map_or(0, Tensor::len)) as u64 * 4,
                Op::MaxPool(_) => 0,
            })
            .sum()
    }

    /// Index of the layer with this name.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.layers.iter().position(|l| l.name == name)
    }
}
