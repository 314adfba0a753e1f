//! What an op records, as data — dispatches, and the buffer copies that move the parts of a split
//! layer in and out of scratch buffers (src/gpu/split.rs) — and the one place it is encoded
//! into compute passes, timed per op where timestamps are asked for.

use std::num::NonZeroU64;

use wgpu::util::DeviceExt;

use super::context::{Gpu, GpuError};
use super::shaders::{self, Shader};
use super::timing::PassTimestamps;

/// A tensor on the device: its first `len` values of storage that may be larger (network
/// activations share storage of the largest size it holds), each `value_bytes` (the device's
/// precision). Storage is one buffer, or — where it would exceed a buffer — pieces of
/// `piece_len` values, one buffer each, that only copies reach (a tensor that fits a binding
/// always fits one buffer).
#[derive(Clone, Debug)]
pub(crate) struct Span {
    pieces: Vec<wgpu::Buffer>,
    piece_len: usize,
    pub len: usize,
    value_bytes: u64,
}

impl Span {
    /// `len` values of `value_bytes` at the start of `buffer`.
    pub fn new(buffer: &wgpu::Buffer, len: usize, value_bytes: u64) -> Span {
        Span { pieces: vec![buffer.clone()], piece_len: usize::MAX, len, value_bytes }
    }

    /// Storage in `pieces` of `piece_len` values (the last may be shorter), holding `len`.
    pub fn in_pieces(pieces: Vec<wgpu::Buffer>, piece_len: usize, len: usize, value_bytes: u64) -> Span {
        Span { pieces, piece_len, len, value_bytes }
    }

    /// The first `len` values of `storage`.
    pub fn prefix(storage: &Span, len: usize) -> Span {
        Span { len, ..storage.clone() }
    }

    /// The buffer of a tensor in one piece (the scratch buffers, everything that fits a binding).
    pub fn buffer(&self) -> &wgpu::Buffer {
        assert!(self.pieces.len() == 1 || self.len <= self.piece_len, "a tensor in pieces is reached by copies only");
        &self.pieces[0]
    }

    /// The tensor's bytes alone, to the end of their last 4-byte word, as one binding (the
    /// buffer may exceed the binding limit).
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        let bytes = (self.len as u64 * self.value_bytes).next_multiple_of(4);
        wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: self.buffer(), offset: 0, size: NonZeroU64::new(bytes) })
    }

    /// `(buffer, offset in it, length)` of each piece's share of `start .. start + len`.
    fn segments(&self, start: usize, len: usize) -> impl Iterator<Item = (&wgpu::Buffer, usize, usize)> {
        let mut at = start;
        let end = start + len;
        std::iter::from_fn(move || {
            (at < end).then(|| {
                let (piece, offset) = (at / self.piece_len, at % self.piece_len);
                let take = (self.piece_len - offset).min(end - at);
                at += take;
                (&self.pieces[piece], offset, take)
            })
        })
    }

    /// `(buffer, offset, length)` of every piece the tensor occupies, in order.
    pub fn buffers(&self) -> impl Iterator<Item = (&wgpu::Buffer, usize, usize)> {
        self.segments(0, self.len)
    }
}

/// One kernel launch, bound and sized.
#[derive(Debug)]
pub(crate) struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    workgroups: (u32, u32, u32),
}

/// A copy of `len` values between two buffers, offsets counted in values of `value_bytes`,
/// every byte offset and the size multiples of 4 (others are [`Gpu::copy_values`] dispatches).
#[derive(Debug)]
pub(crate) struct BufferCopy {
    pub from: wgpu::Buffer,
    pub from_offset: usize,
    pub to: wgpu::Buffer,
    pub to_offset: usize,
    pub len: usize,
    pub value_bytes: u64,
}

impl BufferCopy {
    /// Whether a buffer copy can make it: byte offsets and size multiples of 4.
    fn aligned(&self) -> bool {
        [self.from_offset, self.to_offset, self.len].iter().all(|&n| (n as u64 * self.value_bytes).is_multiple_of(4))
    }
}

#[derive(Debug)]
pub(crate) enum Step {
    Dispatch(Dispatch),
    Copy(BufferCopy),
}

/// Sizes (in values) of the scratch buffers that the parts of split ops are copied through: the
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

    pub fn bytes(&self, value_bytes: u64) -> u64 {
        (self.input + self.output + self.residual) as u64 * value_bytes
    }
}

/// The scratch buffers of [`ScratchNeeds`].
pub(crate) struct Scratch {
    input: Option<wgpu::Buffer>,
    output: Option<wgpu::Buffer>,
    residual: Option<wgpu::Buffer>,
    value_bytes: u64,
}

impl Scratch {
    fn span(&self, buffer: &Option<wgpu::Buffer>, len: usize) -> Span {
        Span::new(buffer.as_ref().expect("scratch sized by the ops that use it"), len, self.value_bytes)
    }

    pub fn input(&self, len: usize) -> Span {
        self.span(&self.input, len)
    }

    pub fn output(&self, len: usize) -> Span {
        self.span(&self.output, len)
    }

    pub fn residual(&self, len: usize) -> Span {
        self.span(&self.residual, len)
    }
}

/// The uniform of copy_values.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ValueCopy {
    source_first: u32,
    destination_first: u32,
    len: u32,
    unused: u32,
}

/// The binding of `len` values of `value_bytes` from value `first` of `buffer` for
/// copy_values.wgsl: from the `align`-aligned offset at or before them to the end of their last
/// word, and where the first of them lies in it (in values).
fn copy_window(buffer: &wgpu::Buffer, first: usize, len: usize, value_bytes: u64, align: u64) -> (wgpu::BindingResource<'_>, u32) {
    let start = first as u64 * value_bytes / align * align;
    let end = ((first + len) as u64 * value_bytes).next_multiple_of(4).min(buffer.size());
    let binding = wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer, offset: start, size: NonZeroU64::new(end - start) });
    (binding, ((first as u64 * value_bytes - start) / value_bytes) as u32)
}

impl Gpu {
    /// Copies of `(from offset, to offset, length)` runs between two tensors, adjacent runs merged
    /// into one and cut where either tensor's storage changes pieces.
    pub(crate) fn merged_copies(&self, from: &Span, to: &Span, runs: impl IntoIterator<Item = (usize, usize, usize)>) -> Result<Vec<Step>, GpuError> {
        let mut merged: Vec<(usize, usize, usize)> = Vec::new();
        for (src, dst, len) in runs {
            match merged.last_mut() {
                Some(last) if last.0 + last.2 == src && last.1 + last.2 == dst => last.2 += len,
                _ => merged.push((src, dst, len)),
            }
        }
        let mut steps = Vec::new();
        for (src, dst, len) in merged {
            // Each source piece's share, then each destination piece's share of that.
            let mut done = 0;
            for (from_buffer, from_offset, share) in from.segments(src, len) {
                let mut taken = 0;
                for (to_buffer, to_offset, part) in to.segments(dst + done, share) {
                    let copy = BufferCopy { from: from_buffer.clone(), from_offset: from_offset + taken, to: to_buffer.clone(), to_offset, len: part, value_bytes: from.value_bytes };
                    if copy.aligned() {
                        steps.push(Step::Copy(copy));
                    } else {
                        steps.extend(self.copy_values(&copy)?);
                    }
                    taken += part;
                }
                done += share;
            }
        }
        Ok(steps)
    }

    /// `copy` as dispatches of copy_values.wgsl, for offsets or a size a buffer copy cannot
    /// take: each binds the words that hold at most a binding's worth of the values, from an
    /// offset the device allows a binding to start at.
    fn copy_values(&self, copy: &BufferCopy) -> Result<Vec<Step>, GpuError> {
        let vb = copy.value_bytes;
        let align = self.limits().min_storage_buffer_offset_alignment as u64;
        // Values per dispatch: what a binding holds once its start is moved back to an aligned offset.
        let chunk = ((self.max_binding_bytes().saturating_sub(align + 4)) / vb).max(1) as usize;
        let mut steps = Vec::new();
        let mut done = 0;
        while done < copy.len {
            let len = chunk.min(copy.len - done);
            let (source, source_first) = copy_window(&copy.from, copy.from_offset + done, len, vb, align);
            let (destination, destination_first) = copy_window(&copy.to, copy.to_offset + done, len, vb, align);
            let uniform = ValueCopy { source_first, destination_first, len: len as u32, unused: 0 };
            let (x, y) = self.workgroup_grid(len)?;
            steps.push(Step::Dispatch(self.dispatch(shaders::COPY_VALUES, bytemuck::bytes_of(&uniform), &[source, destination], (x, y, 1))?));
            done += len;
        }
        Ok(steps)
    }

    /// Scratch buffers of the sizes `needs` names (none where it names 0).
    pub(crate) fn scratch(&self, needs: ScratchNeeds) -> Result<Scratch, GpuError> {
        let buffer = |len: usize| (len > 0).then(|| self.output_buffer("scratch", len)).transpose();
        Ok(Scratch { input: buffer(needs.input)?, output: buffer(needs.output)?, residual: buffer(needs.residual)?, value_bytes: self.value_bytes() })
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
                encoder.copy_buffer_to_buffer(&c.from, c.from_offset as u64 * c.value_bytes, &c.to, c.to_offset as u64 * c.value_bytes, c.len as u64 * c.value_bytes);
            }
        }
    }
}
