//! Dispatch of the weight-free ops of segmentation heads: bilinear resizing
//! (`shaders/bilinear.wgsl`) and channel concatenation (`shaders/concat.wgsl`, one dispatch per
//! part). Global average pooling is a window op (`window.rs`).

use wgpu::util::DeviceExt;

use super::context::{Gpu, GpuError};
use super::shaders::{self, Shader};
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

/// Mirrors `Part` in `shaders/concat.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PartUniform {
    batch: u32,
    channels: u32,
    plane: u32,
    total_channels: u32,
    offset: u32,
}

impl Gpu {
    /// Records one dispatch of a kernel with bindings (uniform, input, output) and one
    /// invocation per element.
    fn record_elementwise(
        &self,
        pass: &mut wgpu::ComputePass,
        shader: Shader,
        uniform: &[u8],
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
        elements: usize,
    ) -> Result<(), GpuError> {
        let pipeline = self.pipeline(shader)?;
        let params = self.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(shader.name),
            contents: uniform,
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let bind_group = self.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(shader.name),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: input.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: output.as_entire_binding() },
            ],
        });
        let (x, y) = self.workgroup_grid(elements)?;
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(x, y, 1);
        Ok(())
    }

    /// Records a bilinear resize of `planes` images from `from` to `to`.
    pub(crate) fn record_resize(&self, pass: &mut wgpu::ComputePass, planes: usize, from: Hw, to: Hw, input: &wgpu::Buffer, output: &wgpu::Buffer) -> Result<(), GpuError> {
        let uniform = ResizeUniform {
            planes: to_u32("channels × batch", planes)?,
            in_h: to_u32("input height", from.h)?,
            in_w: to_u32("input width", from.w)?,
            out_h: to_u32("output height", to.h)?,
            out_w: to_u32("output width", to.w)?,
        };
        self.record_elementwise(pass, shaders::BILINEAR, bytemuck::bytes_of(&uniform), input, output, planes * to.h * to.w)
    }

    /// Records a concatenation along channels: `parts` are (buffer, channels) of tensors with
    /// `batch` samples of `plane` pixels per channel.
    pub(crate) fn record_concat(&self, pass: &mut wgpu::ComputePass, parts: &[(&wgpu::Buffer, usize)], batch: usize, plane: usize, output: &wgpu::Buffer) -> Result<(), GpuError> {
        let total: usize = parts.iter().map(|(_, c)| c).sum();
        let mut offset = 0;
        for &(input, channels) in parts {
            let uniform = PartUniform {
                batch: to_u32("batch", batch)?,
                channels: to_u32("channels", channels)?,
                plane: to_u32("pixels per channel", plane)?,
                total_channels: to_u32("channels", total)?,
                offset: to_u32("channels", offset)?,
            };
            self.record_elementwise(pass, shaders::CONCAT, bytemuck::bytes_of(&uniform), input, output, batch * channels * plane)?;
            offset += channels;
        }
        Ok(())
    }

    /// Bilinear interpolation of `planes` images of size `from` (flat, one after another) to
    /// size `to`: the GPU twin of [`crate::cpu::resize_bilinear`].
    pub fn resize_bilinear(&self, input: &[f32], planes: usize, from: Hw, to: Hw) -> Result<Vec<f32>, GpuError> {
        assert_eq!(input.len(), planes * from.h * from.w, "the input holds `planes` images of size `from`");
        let len = planes * to.h * to.w;
        let output = self.scoped("resizing", || -> Result<wgpu::Buffer, GpuError> {
            let source = self.storage_buffer("input", input)?;
            let output = self.output_buffer("output", len)?;
            self.submit_passes("resize", 1, |pass| self.record_resize(pass, planes, from, to, &source, &output))?;
            Ok(output)
        })??;
        self.read_back(&output, len)
    }
}
