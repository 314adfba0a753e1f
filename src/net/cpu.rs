//! The CPU executor: the fast CPU path layer by layer, every intermediate kept in memory.

use std::time::Instant;

use super::{Executor, Forward, Keep, LayerGeometry, Network, Op, Source};
use crate::backend::{Backend, Cpu};
use crate::shape::ConvKind;
use crate::{cpu, Error, Tensor};

impl Executor for Cpu {
    fn describe(&self) -> String {
        Backend::describe(self)
    }

    fn forward_with_progress(&self, network: &Network, input: &Tensor, keep: Keep, progress: Option<&dyn Fn(usize, usize)>) -> Result<Forward, Error> {
        let geometries = network.geometries(input.shape())?;
        let last_uses = network.last_uses();
        let start = Instant::now();
        let mut outputs: Vec<Option<Tensor>> = vec![None; network.layers.len()];
        let mut times = Vec::with_capacity(network.layers.len());
        for (index, (layer, geometry)) in network.layers.iter().zip(&geometries).enumerate() {
            let layer_start = Instant::now();
            // A forward convolution applies the epilogue as it stores its sums; the rest after.
            let fused = matches!(geometry, LayerGeometry::Window(g) if g.kind == ConvKind::Forward);
            // A residual that no later layer reads lends its buffer to the output, which the
            // convolution adds onto ([`cpu::conv2d_onto`]).
            let lent = match layer.residual {
                Some(Source::Layer(r)) if fused && keep == Keep::Last && last_uses[r] == index && layer.input != Source::Layer(r) => outputs[r].take().map(Tensor::into_data),
                _ => None,
            };
            let read = |source: Source| match source {
                Source::Input => input,
                Source::Layer(i) => outputs[i].as_ref().expect("a layer's inputs are alive until their last use"),
            };
            let x = read(layer.input).data();
            let relu = matches!(layer.op, Op::Conv { relu: true, .. });
            let epilogue = cpu::Epilogue { residual: layer.residual.filter(|_| lent.is_none()).map(|r| read(r).data()), relu };
            let (weight, bias) = layer.parameters().map_or((&[][..], None), |(w, b)| (w.data(), b.map(Tensor::data)));
            let (skipping, kernel) = (cpu::TapSkipping::from_env(), cpu::GemmKernel::from_env());
            let mut values = match geometry {
                LayerGeometry::Window(g) if fused => match lent {
                    Some(residual) => cpu::conv2d_onto(g, x, weight, bias, residual, relu, skipping, kernel),
                    None => cpu::conv2d_with_epilogue(g, x, weight, bias, epilogue, skipping, kernel),
                },
                LayerGeometry::Window(g) => Backend::convolve(self, g, x, weight, bias)?,
                LayerGeometry::Resize { batch, channels, input, output } => cpu::resize_bilinear(x, batch * channels, *input, *output),
                LayerGeometry::Concat { batch, channels, size } => {
                    let parts: Vec<(&[f32], usize)> = layer.joined().zip(channels).map(|(source, &c)| (read(source).data(), c)).collect();
                    cpu::concat_channels(&parts, *batch, size.h * size.w)
                }
            };
            if !fused {
                epilogue.apply(&mut values);
            }
            outputs[index] = Some(Tensor::new(geometry.output_shape().to_vec(), values).expect("geometry gives the size"));
            times.push(layer_start.elapsed());
            if let Some(progress) = progress {
                progress(index + 1, network.layers.len());
            }
            if keep == Keep::Last {
                free_dead(network, &last_uses, index, &mut outputs);
            }
        }
        Ok(Forward { outputs, layer_times: Some(times), layer_parts: None, total_time: start.elapsed(), memory: None })
    }
}

/// Drops the outputs whose last reader was layer `index`.
fn free_dead(network: &Network, last_uses: &[usize], index: usize, outputs: &mut [Option<Tensor>]) {
    for source in network.layers[index].reads() {
        if let Source::Layer(i) = source {
            if last_uses[i] == index {
                outputs[i] = None;
            }
        }
    }
}
