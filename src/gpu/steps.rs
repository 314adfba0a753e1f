//! What an op records, as data — dispatches, and the buffer copies that move the parts of a split
//! layer in and out of scratch buffers (src/gpu/split.rs) — and the one place it is encoded
//! into compute passes, timed per op where timestamps are asked for.

use std::num::NonZeroU64;

use wgpu::util::DeviceExt;

use super::context::{Gpu, GpuError};
use super::shaders::Shader;
use super::timing::PassTimestamps;

/// `len` f32s from the start of `buffer`: a tensor, in a buffer that may be larger (network
/// activations share buffers of the largest size they hold).
#[derive(Clone, Debug)]
pub(crate) struct Span {
    pub buffer: wgpu::Buffer,
    pub len: usize,
}

impl Span {
    pub fn new(buffer: &wgpu::Buffer, len: usize) -> Span {
        Span { buffer: buffer.clone(), len }
    }

    /// The tensor's bytes alone, as one binding (the buffer may exceed the binding limit).
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &self.buffer, offset: 0, size: NonZeroU64::new(self.len as u64 * 4) })
    }
}

/// One kernel launch, bound and sized.
#[derive(Debug)]
pub(crate) struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    workgroups: (u32, u32, u32),
}

/// A copy of `len` f32s between two buffers, offsets counted in f32s.
#[derive(Debug)]
pub(crate) struct BufferCopy {
    pub from: wgpu::Buffer,
    pub from_offset: usize,
    pub to: wgpu::Buffer,
    pub to_offset: usize,
    pub len: usize,
}

#[derive(Debug)]
pub(crate) enum Step {
    Dispatch(Dispatch),
    Copy(BufferCopy),
}

/// Sizes (in f32s) of the scratch buffers that the parts of split ops are copied through: the
/// largest that any op of one submission needs (ops run in order, so they share them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ScratchNeeds {
    pub input: usize,
    pub output: usize,
    pub residual: usize,
}

impl ScratchNeeds {
    pub fn max(self, other: ScratchNeeds) -> ScratchNeeds {
        ScratchNeeds { input: self.input.max(other.input), output: self.output.max(other.output), residual: self.residual.max(other.residual) }
    }

    pub fn bytes(&self) -> u64 {
        (self.input + self.output + self.residual) as u64 * 4
    }
}

/// The scratch buffers of [`ScratchNeeds`].
pub(crate) struct Scratch {
    input: Option<wgpu::Buffer>,
    output: Option<wgpu::Buffer>,
    residual: Option<wgpu::Buffer>,
}

impl Scratch {
    fn span(buffer: &Option<wgpu::Buffer>, len: usize) -> Span {
        Span::new(buffer.as_ref().expect("scratch sized by the ops that use it"), len)
    }

    pub fn input(&self, len: usize) -> Span {
        Scratch::span(&self.input, len)
    }

    pub fn output(&self, len: usize) -> Span {
        Scratch::span(&self.output, len)
    }

    pub fn residual(&self, len: usize) -> Span {
        Scratch::span(&self.residual, len)
    }
}

/// Copies of `(from offset, to offset, length)` runs, adjacent runs merged into one.
pub(crate) fn merged_copies(from: &wgpu::Buffer, to: &wgpu::Buffer, runs: impl IntoIterator<Item = (usize, usize, usize)>) -> Vec<Step> {
    let mut merged: Vec<(usize, usize, usize)> = Vec::new();
    for (src, dst, len) in runs {
        match merged.last_mut() {
            Some(last) if last.0 + last.2 == src && last.1 + last.2 == dst => last.2 += len,
            _ => merged.push((src, dst, len)),
        }
    }
    merged
        .into_iter()
        .map(|(from_offset, to_offset, len)| Step::Copy(BufferCopy { from: from.clone(), from_offset, to: to.clone(), to_offset, len }))
        .collect()
}

impl Gpu {
    /// Scratch buffers of the sizes `needs` names (none where it names 0).
    pub(crate) fn scratch(&self, needs: ScratchNeeds) -> Result<Scratch, GpuError> {
        let buffer = |len: usize| (len > 0).then(|| self.output_buffer("scratch", len)).transpose();
        Ok(Scratch { input: buffer(needs.input)?, output: buffer(needs.output)?, residual: buffer(needs.residual)? })
    }

    /// A dispatch of `shader` with `uniform` at binding 0 and `bindings` after it, over
    /// `workgroups`.
    pub(crate) fn dispatch(&self, shader: Shader, uniform: &[u8], bindings: &[wgpu::BindingResource], workgroups: (u32, u32, u32)) -> Result<Dispatch, GpuError> {
        let pipeline = self.pipeline(shader)?;
        let params = self.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(shader.name),
            contents: uniform,
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let entries: Vec<wgpu::BindGroupEntry> = std::iter::once(params.as_entire_binding())
            .chain(bindings.iter().cloned())
            .enumerate()
            .map(|(binding, resource)| wgpu::BindGroupEntry { binding: binding as u32, resource })
            .collect();
        let bind_group = self.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(shader.name),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Ok(Dispatch { pipeline, bind_group, workgroups })
    }

    /// An encoder holding `ops`, each `(label, steps)`, for the caller to add its copies to and
    /// submit. With `timestamps`, op `i` is timed between its timestamps `2i` and `2i + 1`.
    pub(crate) fn encode_steps<'s>(&self, label: &str, ops: impl IntoIterator<Item = (&'s str, &'s [Step])>, timestamps: Option<&PassTimestamps>) -> wgpu::CommandEncoder {
        let mut encoder = self.device().create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        for (index, (op_label, steps)) in ops.into_iter().enumerate() {
            encode_op(&mut encoder, index, op_label, steps, timestamps);
        }
        encoder
    }

    /// `steps` recorded `repeats` times under `label` and submitted.
    pub(crate) fn submit_steps(&self, label: &str, steps: &[Step], repeats: usize) {
        let encoder = self.encode_steps(label, std::iter::repeat_n((label, steps), repeats), None);
        self.queue().submit([encoder.finish()]);
    }
}

/// Encodes op `index`: the one place work is encoded. Consecutive dispatches share a compute
/// pass; with `timestamps` the op is timed from the start of its first pass to the end of its
/// last (copies included: an op that begins or ends with a copy gets an empty pass there).
pub(crate) fn encode_op(encoder: &mut wgpu::CommandEncoder, index: usize, label: &str, steps: &[Step], timestamps: Option<&PassTimestamps>) {
    // The op as runs: Some(dispatches) for a pass, None for a copy.
    let mut runs: Vec<Option<Vec<&Dispatch>>> = Vec::new();
    for step in steps {
        match (step, runs.last_mut()) {
            (Step::Dispatch(d), Some(Some(pass))) => pass.push(d),
            (Step::Dispatch(d), _) => runs.push(Some(vec![d])),
            (Step::Copy(_), _) => runs.push(None),
        }
    }
    if timestamps.is_some() {
        if !matches!(runs.first(), Some(Some(_))) {
            runs.insert(0, Some(Vec::new()));
        }
        if !matches!(runs.last(), Some(Some(_))) {
            runs.push(Some(Vec::new()));
        }
    }
    let last_pass = runs.iter().rposition(Option::is_some);
    let mut copies = steps.iter().filter_map(|s| match s {
        Step::Copy(c) => Some(c),
        Step::Dispatch(_) => None,
    });
    for (run_index, run) in runs.iter().enumerate() {
        match run {
            Some(dispatches) => {
                let (first, last) = (run_index == 0, Some(run_index) == last_pass);
                let timestamp_writes = timestamps.filter(|_| first || last).map(|t| t.writes(index, first, last));
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(label), timestamp_writes });
                for d in dispatches {
                    pass.set_pipeline(&d.pipeline);
                    pass.set_bind_group(0, &d.bind_group, &[]);
                    pass.dispatch_workgroups(d.workgroups.0, d.workgroups.1, d.workgroups.2);
                }
            }
            None => {
                let c = copies.next().expect("one copy per copy run");
                encoder.copy_buffer_to_buffer(&c.from, c.from_offset as u64 * 4, &c.to, c.to_offset as u64 * 4, c.len as u64 * 4);
            }
        }
    }
}
