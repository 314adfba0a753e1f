//! What building a torchvision-layout network takes: appending layers, and a convolution whose
//! batch-norm is folded in as its parameters are read.

use crate::net::{Layer, Network, Op, Source};
use crate::shape::{Conv2dParams, Hw};
use crate::weights::{fold_batch_norm, Role, WeightSource};
use crate::Error;

/// Batch-norm epsilon of torchvision's models.
pub const BN_EPS: f32 = 1e-5;

/// A network under construction, with the source of its parameters.
pub(super) struct Builder<'a> {
    pub network: Network,
    pub weights: &'a mut dyn WeightSource,
}

/// A convolution without bias followed by a batch-norm, by their module names.
pub(super) struct ConvBn<'n> {
    pub conv: &'n str,
    pub bn: &'n str,
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
}

/// A k×k conv pads by its dilation·(k−1)/2: "same" size at stride 1 (padding = dilation for 3×3).
fn same_padding(kernel: usize, stride: usize, dilation: usize) -> Conv2dParams {
    let padding = dilation * (kernel - 1) / 2;
    Conv2dParams { stride: Hw::square(stride), padding: Hw::square(padding), dilation: Hw::square(dilation), groups: 1 }
}

impl Builder<'_> {
    /// Appends `layer`; returns its output.
    pub fn push(&mut self, layer: Layer) -> Source {
        self.network.layers.push(layer);
        Source::Layer(self.network.layers.len() - 1)
    }

    /// Adds `conv` with its batch-norm folded in; `residual` is added before the ReLU.
    pub fn conv_bn(&mut self, spec: ConvBn, input: Source, relu: bool, residual: Option<Source>) -> Result<Source, Error> {
        let shape = [spec.c_out, spec.c_in, spec.kernel, spec.kernel];
        let weight = self.weights.tensor(&format!("{}.weight", spec.conv), &shape, Role::ConvWeight)?;
        let channels = [spec.c_out];
        let mut bn = |field: &str, role| self.weights.tensor(&format!("{}.{field}", spec.bn), &channels, role);
        let gamma = bn("weight", Role::BnScale { closes_residual_branch: residual.is_some() })?;
        let beta = bn("bias", Role::BnShift)?;
        let mean = bn("running_mean", Role::BnMean)?;
        let var = bn("running_var", Role::BnVariance)?;
        let (weight, bias) = fold_batch_norm(&weight, None, &gamma, &beta, &mean, &var, BN_EPS);
        let op = Op::Conv { params: same_padding(spec.kernel, spec.stride, spec.dilation), weight, bias: Some(bias), relu };
        Ok(self.push(Layer { name: spec.conv.to_owned(), op, input, residual }))
    }

    /// Adds a k×k convolution with a bias and nothing after it (a classifier).
    pub fn conv_with_bias(&mut self, name: &str, c_in: usize, c_out: usize, kernel: usize, input: Source) -> Result<Source, Error> {
        let weight = self.weights.tensor(&format!("{name}.weight"), &[c_out, c_in, kernel, kernel], Role::ConvWeight)?;
        let bias = self.weights.tensor(&format!("{name}.bias"), &[c_out], Role::ConvBias)?;
        let op = Op::Conv { params: same_padding(kernel, 1, 1), weight, bias: Some(bias), relu: false };
        Ok(self.push(Layer::new(name, op, input)))
    }
}
