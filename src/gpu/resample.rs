//! The weight-free ops of segmentation heads: bilinear resizing (`shaders/bilinear.wgsl`, in
//! blocks of whole planes where the tensors exceed a binding) and channel concatenation (buffer
//! copies). Global average pooling is a window op (`window.rs`).

use std::ops::Range;

use super::context::{Gpu, GpuError};
use super::shaders;
use super::steps::{Dispatch, Scratch, ScratchNeeds, Span, Step};
use super::window::to_u32;
use crate::shape::Hw;

/// Mirrors `Resize` in `shaders/bilinear.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ResizeUniform {
    planes: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
}

/// The blocks of whole planes a resize of `planes` planes runs in under `limit` values per
/// binding: all at once when they fit; `None` when one plane does not.
fn plane_blocks(planes: usize, plane_in: usize, plane_out: usize, limit: u64) -> Option<Vec<Range<usize>>> {
    let per_block = (limit / plane_in.max(plane_out) as u64) as usize;
    (per_block > 0).then(|| (0..planes).step_by(per_block).map(|first| first..(first + per_block).min(planes)).collect())
}

impl Gpu {
    /// The blocks of planes a resize of `planes` planes from `from` to `to` runs in (one block,
    /// all of them, when they fit a binding).
    pub(crate) fn resize_parts(&self, planes: usize, from: Hw, to: Hw) -> Result<Vec<Range<usize>>, GpuError> {
        plane_blocks(planes, from.h * from.w, to.h * to.w, self.binding_values())
            .ok_or_else(|| self.binding_too_large("one plane of a resize", (from.h * from.w).max(to.h * to.w) as u64 * self.value_bytes()))
    }

    /// The scratch a resize in `parts` ([`Gpu::resize_parts`]) copies through (none when it
    /// runs whole).
    pub(crate) fn resize_scratch(parts: &[Range<usize>], from: Hw, to: Hw) -> ScratchNeeds {
        let most = parts.iter().map(Range::len).max().unwrap_or(0);
        if parts.len() == 1 { ScratchNeeds::default() } else { ScratchNeeds { input: most * from.h * from.w, output: most * to.h * to.w, residual: 0 } }
    }

    /// The steps of a bilinear resize from `from` to `to` in `parts` (blocks of planes,
    /// [`Gpu::resize_parts`]): one dispatch, or per block a copy in, a dispatch and a copy out
    /// through `scratch`.
    pub(crate) fn resize_steps(&self, parts: &[Range<usize>], from: Hw, to: Hw, input: &Span, output: &Span, scratch: &Scratch) -> Result<Vec<Step>, GpuError> {
        let (plane_in, plane_out) = (from.h * from.w, to.h * to.w);
        if let [all] = parts {
            return Ok(vec![Step::Dispatch(self.resize_dispatch(all.len(), from, to, input, output)?)]);
        }
        let mut steps = Vec::new();
        for block in parts.iter().cloned() {
            let (part_in, part_out) = (scratch.input(block.len() * plane_in), scratch.output(block.len() * plane_out));
            steps.extend(self.merged_copies(input, &part_in, [(block.start * plane_in, 0, part_in.len)])?);
            steps.push(Step::Dispatch(self.resize_dispatch(block.len(), from, to, &part_in, &part_out)?));
            steps.extend(self.merged_copies(&part_out, output, [(0, block.start * plane_out, part_out.len)])?);
        }
        Ok(steps)
    }

    fn resize_dispatch(&self, planes: usize, from: Hw, to: Hw, input: &Span, output: &Span) -> Result<Dispatch, GpuError> {
        let uniform = ResizeUniform {
            planes: to_u32("channels × batch", planes)?,
            in_h: to_u32("input height", from.h)?,
            in_w: to_u32("input width", from.w)?,
            out_h: to_u32("output height", to.h)?,
            out_w: to_u32("output width", to.w)?,
        };
        let (x, y) = self.workgroup_grid(planes * to.h * to.w)?;
        self.dispatch(shaders::BILINEAR, bytemuck::bytes_of(&uniform), &[input.binding(), output.binding()], (x, y, 1))
    }

    /// The copies of a concatenation along channels: `parts` are (tensor, channels) with `batch`
    /// samples of `plane` pixels per channel. Copies bind nothing, so no size needs splitting.
    pub(crate) fn concat_steps(&self, parts: &[(&Span, usize)], batch: usize, plane: usize, output: &Span) -> Result<Vec<Step>, GpuError> {
        let total: usize = parts.iter().map(|(_, c)| c).sum();
        let mut offset = 0;
        let mut steps = Vec::new();
        for &(input, channels) in parts {
            let runs = (0..batch).map(|n| (n * channels * plane, (n * total + offset) * plane, channels * plane));
            steps.extend(self.merged_copies(input, output, runs)?);
            offset += channels;
        }
        Ok(steps)
    }

    /// Bilinear interpolation of `planes` images of size `from` (flat, one after another) to
    /// size `to`: the GPU twin of [`crate::cpu::resize_bilinear`].
    pub fn resize_bilinear(&self, input: &[f32], planes: usize, from: Hw, to: Hw) -> Result<Vec<f32>, GpuError> {
        assert_eq!(input.len(), planes * from.h * from.w, "the input holds `planes` images of size `from`");
        let len = planes * to.h * to.w;
        self.scoped("resizing", || -> Result<Vec<f32>, GpuError> {
            let source = self.upload("input", input)?;
            let output = self.tensor_storage("output", len)?;
            let parts = self.resize_parts(planes, from, to)?;
            let scratch = self.scratch(Gpu::resize_scratch(&parts, from, to))?;
            self.submit_steps("resize", &self.resize_steps(&parts, from, to, &source, &output, &scratch)?, 1);
            self.read_tensor(&output)
        })?
    }
}
