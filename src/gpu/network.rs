//! The GPU executor: a whole forward pass recorded into one submission — no read-back between
//! layers — with activation buffers reused once their tensor is dead, and per-layer GPU time
//! from timestamp queries where the adapter has them.

use std::ops::Range;
use std::time::{Duration, Instant};

use super::context::{explain_out_of_memory, Gpu, GpuError};
use super::precision::Precision;
use super::steps::{encode_op, ScratchNeeds, Span, Step};
use super::timing::PassTimestamps;
use super::split::WindowPart;
use super::window::{PreparedWindow, WindowTensors};
use crate::net::{mib, Executor, Forward, Keep, LayerGeometry, MemoryUse, Network, Op, Source};
use crate::{Error, Tensor};

/// Where each tensor of a pass lives: value 0 is the network input, value `i + 1` layer `i`'s
/// output. Values share a slot once the earlier one is dead; a slot is as large as the largest
/// value it ever holds.
struct BufferPlan {
    slot_of_value: Vec<usize>,
    slot_bytes: Vec<u64>,
}

impl BufferPlan {
    fn new(network: &Network, value_bytes: &[u64], keep: Keep) -> BufferPlan {
        // Last layer reading each value; the network input is value 0.
        let mut last_use = vec![0usize; value_bytes.len()];
        for (i, used) in network.last_uses().into_iter().enumerate() {
            last_use[i + 1] = used;
        }
        for (index, layer) in network.layers.iter().enumerate() {
            if layer.reads().any(|source| source == Source::Input) {
                last_use[0] = last_use[0].max(index);
            }
        }
        let mut plan = BufferPlan { slot_of_value: vec![0; value_bytes.len()], slot_bytes: Vec::new() };
        let mut free: Vec<usize> = Vec::new();
        let mut live: Vec<usize> = Vec::new();
        for (value, &bytes) in value_bytes.iter().enumerate() {
            // Value `value` is written by layer `value − 1`: everything last read before that
            // layer is dead, but that layer's own inputs are not (an output never aliases them).
            if keep == Keep::Last && value > 0 {
                let writer = value - 1;
                live.retain(|&v| {
                    let dead = last_use[v] < writer;
                    if dead {
                        free.push(plan.slot_of_value[v]);
                    }
                    !dead
                });
            }
            let best_fit = free.iter().enumerate().filter(|(_, &s)| plan.slot_bytes[s] >= bytes).min_by_key(|(_, &s)| plan.slot_bytes[s]);
            let largest = free.iter().enumerate().max_by_key(|(_, &s)| plan.slot_bytes[s]);
            let slot = match best_fit.or(largest) {
                Some((position, &slot)) => {
                    free.swap_remove(position);
                    plan.slot_bytes[slot] = plan.slot_bytes[slot].max(bytes);
                    slot
                }
                None => {
                    plan.slot_bytes.push(bytes);
                    plan.slot_bytes.len() - 1
                }
            };
            plan.slot_of_value[value] = slot;
            live.push(value);
        }
        plan
    }
}

fn value_index(source: Source) -> usize {
    match source {
        Source::Input => 0,
        Source::Layer(i) => i + 1,
    }
}

/// A layer's parts, planned from its geometry.
enum LayerParts {
    Window { parts: Vec<WindowPart>, needs: ScratchNeeds },
    /// Blocks of planes.
    Resize { blocks: Vec<Range<usize>>, needs: ScratchNeeds },
    /// A concatenation: buffer copies, never split.
    Copies,
}

impl LayerParts {
    fn count(&self) -> usize {
        match self {
            LayerParts::Window { parts, .. } => parts.len(),
            LayerParts::Resize { blocks, .. } => blocks.len(),
            LayerParts::Copies => 1,
        }
    }

    /// The scratch the parts copy through.
    fn needs(&self) -> ScratchNeeds {
        match self {
            LayerParts::Window { needs, .. } | LayerParts::Resize { needs, .. } => *needs,
            LayerParts::Copies => ScratchNeeds::default(),
        }
    }
}

/// Results of one chunk of the batch.
struct ChunkResult {
    outputs: Vec<Option<Vec<f32>>>,
    layer_times: Option<Vec<Duration>>,
    /// Parts each layer ran in.
    parts: Vec<usize>,
    activation_bytes: u64,
}

impl Gpu {
    fn run_network_chunk(
        &self,
        network: &Network,
        geometries: &[LayerGeometry],
        input: &[f32],
        prepared: &[Option<PreparedWindow>],
        keep: Keep,
        progress: Option<&dyn Fn(usize)>,
    ) -> Result<ChunkResult, GpuError> {
        let vb = self.value_bytes();
        let mut value_bytes = vec![input.len() as u64 * vb];
        value_bytes.extend(geometries.iter().map(|g| g.output_shape().iter().product::<usize>() as u64 * vb));
        let plan = BufferPlan::new(network, &value_bytes, keep);
        let layers = network.layers.len();

        let out_of_memory = |error| {
            explain_out_of_memory(error, || {
                format!(
                    "running {} (weights {} + activations {}; ways out: a smaller input, a larger output stride, a smaller batch, or the CPU: --device cpu)",
                    network.name,
                    mib(network.weight_bytes(vb)),
                    mib(plan.slot_bytes.iter().sum())
                )
            })
        };
        self.scoped("running the network", || -> Result<ChunkResult, GpuError> {
            let slots: Vec<Span> = plan.slot_bytes.iter().map(|&b| self.tensor_storage("activation", (b / vb) as usize)).collect::<Result<_, _>>()?;
            let span_of = |source: Source| {
                let value = value_index(source);
                Span::prefix(&slots[plan.slot_of_value[value]], (value_bytes[value] / vb) as usize)
            };
            self.write_tensor(&span_of(Source::Input), input);

            // Each layer's parts, planned once: first for the scratch that split layers copy
            // through (shared by all of them), then for their steps.
            let plans: Vec<LayerParts> = network
                .layers
                .iter()
                .zip(geometries)
                .enumerate()
                .map(|(index, (layer, geometry))| -> Result<LayerParts, GpuError> {
                    Ok(match geometry {
                        LayerGeometry::Window(g) => {
                            let parts = self.window_parts(prepared[index].as_ref().expect("window layers are prepared"), g);
                            LayerParts::Window { needs: Gpu::window_scratch(&parts, g, layer.residual.is_some()), parts }
                        }
                        LayerGeometry::Resize { batch, channels, input: from, output: to } => {
                            let blocks = self.resize_parts(batch * channels, *from, *to)?;
                            LayerParts::Resize { needs: Gpu::resize_scratch(&blocks, *from, *to), blocks }
                        }
                        LayerGeometry::Concat { .. } => LayerParts::Copies,
                    })
                })
                .collect::<Result<_, _>>()?;
            let needs = plans.iter().fold(ScratchNeeds::default(), |needs, plan| needs.max(plan.needs()));
            let scratch = self.scratch(needs)?;

            let mut steps: Vec<Vec<Step>> = Vec::with_capacity(layers);
            for (index, ((layer, geometry), plan)) in network.layers.iter().zip(geometries).zip(&plans).enumerate() {
                let output = span_of(Source::Layer(index));
                steps.push(match (geometry, plan) {
                    (LayerGeometry::Window(g), LayerParts::Window { parts, .. }) => {
                        let prepared = prepared[index].as_ref().expect("window layers are prepared");
                        let relu = matches!(layer.op, Op::Conv { relu: true, .. });
                        let residual = layer.residual.map(span_of);
                        let tensors = WindowTensors { input: &span_of(layer.input), residual: residual.as_ref(), output: &output };
                        self.window_steps(prepared, g, parts, &tensors, relu, &scratch)?
                    }
                    (LayerGeometry::Resize { input: from, output: to, .. }, LayerParts::Resize { blocks, .. }) => {
                        self.resize_steps(blocks, *from, *to, &span_of(layer.input), &output, &scratch)?
                    }
                    (LayerGeometry::Concat { batch, channels, size }, _) => {
                        let inputs: Vec<Span> = layer.joined().map(span_of).collect();
                        let joined: Vec<(&Span, usize)> = inputs.iter().zip(channels.iter().copied()).collect();
                        self.concat_steps(&joined, *batch, size.h * size.w, &output)?
                    }
                    _ => unreachable!("a layer's parts are planned from its geometry"),
                });
            }
            let parts: Vec<usize> = plans.iter().map(LayerParts::count).collect();
            let timestamps = self.pass_timestamps(layers);
            let ops = network.layers.iter().zip(&steps).map(|(layer, steps)| (layer.name.as_str(), steps.as_slice()));
            // Watched, the layers go in one submission each, so that each can be waited for.
            let mut submissions = Vec::new();
            let mut encoder = match progress {
                None => self.encode_steps(&network.name, ops, timestamps.as_ref()),
                Some(_) => {
                    for (index, (label, steps)) in ops.enumerate() {
                        let mut encoder = self.device().create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
                        encode_op(&mut encoder, index, label, steps, timestamps.as_ref());
                        submissions.push(self.queue().submit([encoder.finish()]));
                    }
                    self.device().create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("read-back") })
                }
            };

            let kept: Vec<usize> = match keep {
                Keep::All => (0..layers).collect(),
                Keep::Last => network.extra_outputs.iter().copied().chain([layers - 1]).collect(),
            };
            // Each kept output's staged pieces, one after another.
            let staged_per_output: Vec<Vec<wgpu::Buffer>> = kept.iter().map(|&i| self.stage_tensor(&mut encoder, &span_of(Source::Layer(i)))).collect();
            let pieces: Vec<usize> = staged_per_output.iter().map(Vec::len).collect();
            let mut staged: Vec<wgpu::Buffer> = staged_per_output.into_iter().flatten().collect();
            if let Some(timestamps) = &timestamps {
                staged.push(timestamps.resolve(self, &mut encoder));
            }
            self.queue().submit([encoder.finish()]);
            if let Some(progress) = progress {
                for (index, submission) in submissions.into_iter().enumerate() {
                    self.device()
                        .poll(wgpu::PollType::Wait { submission_index: Some(submission), timeout: None })
                        .map_err(|e| GpuError::ReadBack(e.to_string()))?;
                    progress(index + 1);
                }
            }

            let mut bytes = self.map_all(&staged)?;
            let layer_times = timestamps.is_some().then(|| {
                let seconds = PassTimestamps::seconds(self, &bytes.pop().expect("timestamps were staged last"));
                seconds.into_iter().map(|s| Duration::from_secs_f64(s.max(0.0))).collect()
            });
            let mut outputs = vec![None; layers];
            let mut bytes = bytes.into_iter();
            for (&i, &count) in kept.iter().zip(&pieces) {
                let len = geometries[i].output_shape().iter().product();
                outputs[i] = Some(self.read_staged(bytes.by_ref().take(count).collect(), len));
            }
            Ok(ChunkResult { outputs, layer_times, parts, activation_bytes: plan.slot_bytes.iter().sum::<u64>() + needs.bytes(vb) })
        })
        .map_err(out_of_memory)?
    }
}

impl Executor for Gpu {
    fn describe(&self) -> String {
        match self.precision() {
            Precision::F32 => self.summary().to_string(),
            precision => format!("{} in {precision}", self.summary()),
        }
    }

    fn precision(&self) -> Precision {
        Gpu::precision(self)
    }

    fn notes(&self) -> Vec<String> {
        vec![self.tuning_line()]
    }

    /// Runs the network in one submission per chunk of the batch; the batch is split only when
    /// one layer's activation for the whole batch would exceed the adapter's buffer limit (a
    /// single sample's may: it is stored in pieces), and a layer whose tensors exceed a binding
    /// runs in parts (src/gpu/split.rs).
    fn forward_with_progress(&self, network: &Network, input: &Tensor, keep: Keep, progress: Option<&dyn Fn(usize, usize)>) -> Result<Forward, Error> {
        let geometries = network.geometries(input.shape())?;
        let start = Instant::now();
        let batch = input.shape()[0];
        let largest = geometries.iter().map(|g| g.output_shape()[1..].iter().product::<usize>()).chain([input.len() / batch]).max().expect("a network has an input");
        let per_chunk = ((self.max_buffer_bytes() / (4 * largest as u64)) as usize).clamp(1, batch);
        // Progress counts the layers prepared (kernels chosen, weights uploaded), then run.
        let layers = network.layers.len();
        let total = layers * (1 + batch.div_ceil(per_chunk));
        let report = |done: usize| {
            if let Some(progress) = progress {
                progress(done, total);
            }
        };

        let prepared = network
            .layers
            .iter()
            .zip(&geometries)
            .enumerate()
            .map(|(index, (layer, geometry))| {
                let prepared = match geometry.window() {
                    Some(g) => {
                        let (weight, bias) = layer.parameters().map_or((None, None), |(w, b)| (Some(w.data()), b.map(Tensor::data)));
                        Some(self.prepare_window(g, weight, bias, crate::gpu::KernelChoice::Auto, &format!("layer {}", layer.name))?)
                    }
                    None => None,
                };
                report(index + 1);
                Ok(prepared)
            })
            .collect::<Result<Vec<_>, GpuError>>()?;

        let sample_len = input.len() / batch;
        let mut outputs: Vec<Option<Vec<f32>>> = vec![None; network.layers.len()];
        let mut layer_times: Option<Vec<Duration>> = None;
        let mut activation_bytes = 0;
        let mut parts = vec![0; network.layers.len()];
        for (chunk, first) in (0..batch).step_by(per_chunk).enumerate() {
            let count = per_chunk.min(batch - first);
            let chunk_geometries: Vec<LayerGeometry> = geometries.iter().map(|g| g.with_batch(count)).collect();
            let chunk_input = &input.data()[first * sample_len..(first + count) * sample_len];
            let run_done = |done: usize| report(layers * (1 + chunk) + done);
            let result = self.run_network_chunk(network, &chunk_geometries, chunk_input, &prepared, keep, progress.map(|_| &run_done as &dyn Fn(usize)))?;
            parts.iter_mut().zip(&result.parts).for_each(|(all, chunk)| *all += chunk);
            for (all, part) in outputs.iter_mut().zip(result.outputs) {
                if let Some(part) = part {
                    all.get_or_insert_with(Vec::new).extend(part);
                }
            }
            layer_times = match (layer_times, result.layer_times) {
                (None, times) => times,
                (Some(sum), Some(times)) => Some(sum.iter().zip(times).map(|(a, b)| *a + b).collect()),
                (Some(sum), None) => Some(sum),
            };
            activation_bytes = activation_bytes.max(result.activation_bytes);
        }
        let outputs = outputs
            .into_iter()
            .zip(&geometries)
            .map(|(data, g)| data.map(|d| Tensor::new(g.output_shape().to_vec(), d).expect("geometry gives the size")))
            .collect();
        let memory = MemoryUse { weights: network.weight_bytes(self.value_bytes()), activations: activation_bytes, largest_activation: largest as u64 * self.value_bytes() * per_chunk as u64 };
        Ok(Forward { outputs, layer_times, layer_parts: Some(parts), total_time: start.elapsed(), memory: Some(memory) })
    }
}
