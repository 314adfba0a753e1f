//! A network description that every backend executes: a list of named layers, each reading the
//! network input or an earlier layer's output. Comparing backends is running both and diffing
//! layer by layer.

mod cpu;
mod receptive_field;

use std::time::Duration;

pub use receptive_field::{receptive_fields, FieldOfView};

use crate::shape::{global_average_pool, Conv2dParams, ConvTranspose2dParams, Hw, Pool2dParams, ShapeError, WindowGeometry};
use crate::{Error, Tensor};

/// Why a layer cannot run on what it is wired to read: the wiring of a network, where a
/// [`ShapeError`] is about one op's own sizes. [`Error::Network`] names the layer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum NetworkError {
    #[error("reads layer {0}, which does not run before it")]
    ReadsLaterLayer(usize),
    #[error("needs an NCHW tensor, got shape {0:?}")]
    NotAnImage(Vec<usize>),
    #[error("cannot crop a {}x{} output to {}x{}", output.h, output.w, crop.h, crop.w)]
    CropTooLarge { output: Hw, crop: Hw },
    #[error("cannot concatenate {shape:?} with {input:?}: batch and image size must agree")]
    ConcatMismatch { shape: Vec<usize>, input: Vec<usize> },
    #[error("its output would have {0} elements; the GPU kernels index at most {max}", max = u32::MAX)]
    TooManyElements(u128),
    #[error("only convolutions take a residual, not a {0}")]
    ResidualOnNonConv(&'static str),
    #[error("residual shape {residual:?} differs from the output shape {output:?}")]
    ResidualShape { residual: Vec<usize>, output: Vec<usize> },
}

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
    /// A transposed convolution (the FCN paper's learned upsampling). With `crop_to`, only the
    /// top-left part of the output as large as that tensor's image is computed.
    ConvTranspose { params: ConvTranspose2dParams, weight: Tensor, bias: Option<Tensor>, crop_to: Option<Source> },
    MaxPool(Pool2dParams),
    /// The mean of each channel, `[N, C, 1, 1]` (`AdaptiveAvgPool2d(1)`).
    GlobalAvgPool,
    /// Bilinear interpolation to the image size of `size_of` (PyTorch's
    /// `F.interpolate(mode="bilinear", align_corners=False)`); from a 1×1 map it is a broadcast.
    /// Only the size of `size_of` is read, not its values.
    Resize { size_of: Source },
    /// The layer's input followed by `more`, concatenated along channels.
    Concat { more: Vec<Source> },
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

impl Layer {
    /// A layer without a residual.
    pub fn new(name: impl Into<String>, op: Op, input: Source) -> Layer {
        Layer { name: name.into(), op, input, residual: None }
    }

    /// Every tensor whose values this layer reads: its input, its residual, what it concatenates.
    pub fn reads(&self) -> impl Iterator<Item = Source> + '_ {
        std::iter::once(self.input).chain(self.residual).chain(self.more().iter().copied())
    }

    /// What a concatenation joins, in order: its input, then `more` (just the input otherwise).
    pub fn joined(&self) -> impl Iterator<Item = Source> + '_ {
        std::iter::once(self.input).chain(self.more().iter().copied())
    }

    fn more(&self) -> &[Source] {
        match &self.op {
            Op::Concat { more } => more,
            _ => &[],
        }
    }

    /// The weight and bias of a (transposed) convolution.
    pub fn parameters(&self) -> Option<(&Tensor, Option<&Tensor>)> {
        match &self.op {
            Op::Conv { weight, bias, .. } | Op::ConvTranspose { weight, bias, .. } => Some((weight, bias.as_ref())),
            _ => None,
        }
    }

    /// A short name of the op, for tables and JSON.
    pub fn kind(&self) -> &'static str {
        match self.op {
            Op::Conv { .. } => "conv",
            Op::ConvTranspose { .. } => "conv_transpose",
            Op::MaxPool(_) => "max_pool",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::Resize { .. } => "bilinear",
            Op::Concat { .. } => "concat",
        }
    }
}

/// A layer resolved against the shapes of its inputs: every size its kernels need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerGeometry {
    /// A convolution (forward or transposed) or a pooling window.
    Window(WindowGeometry),
    /// Bilinear interpolation of every channel from `input` to `output` size.
    Resize { batch: usize, channels: usize, input: Hw, output: Hw },
    /// Concatenation along channels of tensors of one image size; `channels` of each, in order.
    Concat { batch: usize, channels: Vec<usize>, size: Hw },
}

impl LayerGeometry {
    pub fn output_shape(&self) -> [usize; 4] {
        match self {
            LayerGeometry::Window(g) => g.output_shape(),
            LayerGeometry::Resize { batch, channels, output, .. } => [*batch, *channels, output.h, output.w],
            LayerGeometry::Concat { batch, channels, size } => [*batch, channels.iter().sum(), size.h, size.w],
        }
    }

    /// The window op's geometry, if this is one.
    pub fn window(&self) -> Option<&WindowGeometry> {
        match self {
            LayerGeometry::Window(g) => Some(g),
            _ => None,
        }
    }

    /// Nominal floating-point operations (multiply-adds of convolutions; data movement counts none).
    pub fn flops(&self) -> u64 {
        self.window().map_or(0, WindowGeometry::flops)
    }

    /// The part of [`LayerGeometry::flops`] whose taps touch data ([`WindowGeometry::useful_flops`]).
    pub fn useful_flops(&self) -> u64 {
        self.window().map_or(0, WindowGeometry::useful_flops)
    }

    /// The same layer for a batch of `batch`.
    pub fn with_batch(&self, batch: usize) -> LayerGeometry {
        match self.clone() {
            LayerGeometry::Window(g) => LayerGeometry::Window(WindowGeometry { batch, ..g }),
            LayerGeometry::Resize { channels, input, output, .. } => LayerGeometry::Resize { batch, channels, input, output },
            LayerGeometry::Concat { channels, size, .. } => LayerGeometry::Concat { batch, channels, size },
        }
    }
}

/// The bytes one layer moves, each tensor counted once as f32: what [`Network::traffic`] gives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Weight and bias.
    pub weights: u64,
    /// Every tensor the layer reads: its input, its residual, what it concatenates.
    pub inputs: u64,
    /// Its output, written once.
    pub output: u64,
}

impl Traffic {
    pub fn total(&self) -> u64 {
        self.weights + self.inputs + self.output
    }

    /// Arithmetic intensity: `flops` per byte moved ([`Traffic::total`]); 0 for a layer that
    /// moves nothing.
    pub fn intensity(&self, flops: u64) -> f64 {
        match self.total() {
            0 => 0.0,
            bytes => flops as f64 / bytes as f64,
        }
    }
}

/// A feed-forward network: layers in execution order; the last one is the output.
#[derive(Clone, Debug, Default)]
pub struct Network {
    pub name: String,
    pub layers: Vec<Layer>,
    /// Layers whose outputs a pass also returns, besides the last one's (an auxiliary head).
    pub extra_outputs: Vec<usize>,
}

/// Which layer outputs a forward pass returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// The network's outputs only (the last layer's and the extra ones): intermediate memory
    /// is reused as soon as it is dead.
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
    /// Dispatches each layer ran in, where the backend splits layers (the GPU, for tensors
    /// larger than a storage binding or batches larger than a buffer); 1 when unsplit.
    pub layer_parts: Option<Vec<usize>>,
    /// Wall-clock time of the whole pass, uploads and read-back included.
    pub total_time: Duration,
    /// Device memory the pass allocated, where the backend accounts for it.
    pub memory: Option<MemoryUse>,
}

/// Bytes as MiB with one decimal, as memory is reported.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
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
    fn forward(&self, network: &Network, input: &Tensor, keep: Keep) -> Result<Forward, Error> {
        self.forward_with_progress(network, input, keep, None)
    }

    /// [`Executor::forward`], calling `progress(done, total)` as the work advances (the CPU: per
    /// layer; the GPU: per layer prepared, then per layer run, which it then submits one by one).
    fn forward_with_progress(&self, network: &Network, input: &Tensor, keep: Keep, progress: Option<&dyn Fn(usize, usize)>) -> Result<Forward, Error>;

    /// What a report should add about the runs so far (the GPU: what autotuning did).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// What tensors are stored and summed in where it runs (the CPU: f32).
    fn precision(&self) -> crate::gpu::Precision {
        crate::gpu::Precision::F32
    }
}

impl Network {
    /// Validates every layer against an input of `input_shape` and resolves its geometry; an
    /// error names the layer.
    pub fn geometries(&self, input_shape: &[usize]) -> Result<Vec<LayerGeometry>, Error> {
        let mut shapes: Vec<[usize; 4]> = Vec::with_capacity(self.layers.len());
        let mut geometries = Vec::with_capacity(self.layers.len());
        for (index, layer) in self.layers.iter().enumerate() {
            let in_error = |source: ShapeError| Error::Layer { layer: layer.name.clone(), source };
            let refuse = |source: NetworkError| Error::Network { layer: layer.name.clone(), source };
            let shape_of = |source: Source| -> Result<Vec<usize>, Error> {
                match source {
                    Source::Input => Ok(input_shape.to_vec()),
                    Source::Layer(i) if i < index => Ok(shapes[i].to_vec()),
                    Source::Layer(i) => Err(refuse(NetworkError::ReadsLaterLayer(i))),
                }
            };
            let image_of = |source: Source| -> Result<Hw, Error> {
                let shape = shape_of(source)?;
                match shape[..] {
                    [_, _, h, w] => Ok(Hw::new(h, w)),
                    _ => Err(refuse(NetworkError::NotAnImage(shape))),
                }
            };
            let input = shape_of(layer.input)?;
            let geometry = match &layer.op {
                Op::Conv { params, weight, bias, .. } => {
                    LayerGeometry::Window(params.geometry(&input, weight.shape(), bias.as_ref().map(Tensor::shape)).map_err(in_error)?)
                }
                Op::ConvTranspose { params, weight, bias, crop_to } => {
                    let mut g = params.geometry(&input, weight.shape(), bias.as_ref().map(Tensor::shape)).map_err(in_error)?;
                    if let Some(crop_to) = crop_to {
                        let crop = image_of(*crop_to)?;
                        if crop.h > g.output.h || crop.w > g.output.w {
                            return Err(refuse(NetworkError::CropTooLarge { output: g.output, crop }));
                        }
                        g.output = crop;
                    }
                    LayerGeometry::Window(g)
                }
                Op::MaxPool(params) => LayerGeometry::Window(params.geometry(&input).map_err(in_error)?),
                Op::GlobalAvgPool => LayerGeometry::Window(global_average_pool(&input).map_err(in_error)?),
                Op::Resize { size_of } => {
                    let image = image_of(layer.input)?;
                    LayerGeometry::Resize { batch: input[0], channels: input[1], input: image, output: image_of(*size_of)? }
                }
                Op::Concat { .. } => {
                    let image = image_of(layer.input)?;
                    let mut channels = vec![input[1]];
                    for source in layer.joined().skip(1) {
                        let shape = shape_of(source)?;
                        if shape.len() != 4 || shape[0] != input[0] || shape[2..] != input[2..] {
                            return Err(refuse(NetworkError::ConcatMismatch { shape, input: input.clone() }));
                        }
                        channels.push(shape[1]);
                    }
                    LayerGeometry::Concat { batch: input[0], channels, size: image }
                }
            };
            let elements = geometry.output_shape().iter().map(|&d| d as u128).product::<u128>();
            if elements > u32::MAX as u128 {
                return Err(refuse(NetworkError::TooManyElements(elements)));
            }
            if let Some(residual) = layer.residual {
                if !matches!(layer.op, Op::Conv { .. }) {
                    return Err(refuse(NetworkError::ResidualOnNonConv(layer.kind())));
                }
                let residual_shape = shape_of(residual)?;
                if residual_shape != geometry.output_shape() {
                    return Err(refuse(NetworkError::ResidualShape { residual: residual_shape, output: geometry.output_shape().to_vec() }));
                }
            }
            shapes.push(geometry.output_shape());
            geometries.push(geometry);
        }
        Ok(geometries)
    }

    /// For each layer, the index of the last layer that reads its output (itself if none; the
    /// outputs — the last layer's and the extra ones — live to the end, `usize::MAX`).
    pub fn last_uses(&self) -> Vec<usize> {
        let mut last: Vec<usize> = (0..self.layers.len()).collect();
        for (index, layer) in self.layers.iter().enumerate() {
            for source in layer.reads() {
                if let Source::Layer(i) = source {
                    last[i] = last[i].max(index);
                }
            }
        }
        for output in self.extra_outputs.iter().copied().chain(self.layers.len().checked_sub(1)) {
            last[output] = usize::MAX;
        }
        last
    }

    /// What each layer moves ([`Traffic`]), from the geometries [`Network::geometries`] gave
    /// for an input of `input_shape`: its weight and bias, every tensor whose values it reads
    /// ([`Layer::reads`]; a resize's `size_of` and a crop's target give only a size and are not
    /// counted) and its output, each once, `value_bytes` an element (4 in f32, 2 in f16). The
    /// least any implementation moves between memory and the chip: re-reads from caches are not
    /// counted.
    pub fn traffic(&self, input_shape: &[usize], geometries: &[LayerGeometry], value_bytes: u64) -> Vec<Traffic> {
        let elements = |source: Source| -> u64 {
            match source {
                Source::Input => input_shape.iter().product::<usize>() as u64,
                Source::Layer(i) => geometries[i].output_shape().iter().product::<usize>() as u64,
            }
        };
        self.layers
            .iter()
            .zip(geometries)
            .map(|(layer, geometry)| Traffic {
                weights: layer.parameters().map_or(0, |(weight, bias)| (weight.len() + bias.map_or(0, Tensor::len)) as u64 * value_bytes),
                inputs: layer.reads().map(elements).sum::<u64>() * value_bytes,
                output: geometry.output_shape().iter().product::<usize>() as u64 * value_bytes,
            })
            .collect()
    }

    /// Bytes of all weights and biases, `value_bytes` each (4 in f32, 2 in f16).
    pub fn weight_bytes(&self, value_bytes: u64) -> u64 {
        self.layers.iter().filter_map(Layer::parameters).map(|(weight, bias)| (weight.len() + bias.map_or(0, Tensor::len)) as u64 * value_bytes).sum()
    }

    /// Index of the layer with this name.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.layers.iter().position(|l| l.name == name)
    }
}
