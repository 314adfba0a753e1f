//! The CPU executor: the fast CPU path layer by layer, every intermediate kept in memory.

use std::time::Instant;

use super::{Executor, Forward, Keep, Network, Op, Source};
use crate::backend::{Backend, Cpu};
use crate::{cpu, Error, Tensor};

impl Executor for Cpu {
    fn describe(&self) -> String {
        Backend::describe(self)
    }

    fn forward(&self, network: &Network, input: &Tensor, keep: Keep) -> Result<Forward, Error> {
        let geometries = network.geometries(input.shape())?;
        let last_uses = network.last_uses();
        let start = Instant::now();
        let mut outputs: Vec<Option<Tensor>> = vec![None; network.layers.len()];
        let mut times = Vec::with_capacity(network.layers.len());
        for (index, (layer, geometry)) in network.layers.iter().zip(&geometries).enumerate() {
            let layer_start = Instant::now();
            let read = |source: Source| match source {
                Source::Input => input,
                Source::Layer(i) => outputs[i].as_ref().expect("a layer's inputs are alive until their last use"),
            };
            let x = read(layer.input).data();
            let mut values = match &layer.op {
                Op::Conv { weight, bias, .. } => Backend::convolve(self, geometry, x, weight.data(), bias.as_ref().map(Tensor::data))?,
                Op::MaxPool(_) => cpu::max_pool2d(geometry, x),
            };
            let relu = matches!(layer.op, Op::Conv { relu: true, .. });
            cpu::epilogue(&mut values, layer.residual.map(|r| read(r).data()), relu);
            outputs[index] = Some(Tensor::new(geometry.output_shape().to_vec(), values).expect("geometry gives the size"));
            times.push(layer_start.elapsed());
            if keep == Keep::Last {
                free_dead(network, &last_uses, index, &mut outputs);
            }
        }
        Ok(Forward { outputs, layer_times: Some(times), total_time: start.elapsed(), memory: None })
    }
}

/// Drops the outputs whose last reader was layer `index`.
fn free_dead(network: &Network, last_uses: &[usize], index: usize, outputs: &mut [Option<Tensor>]) {
    let layer = &network.layers[index];
    for source in std::iter::once(layer.input).chain(layer.residual) {
        if let Source::Layer(i) = source {
            if last_uses[i] == index {
                outputs[i] = None;
            }
        }
    }
}

