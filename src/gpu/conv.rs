//! Dispatch of the convolution kernels (forward and transposed share the host side: the same
//! uniform, bindings and splitting; only the shader differs).

use wgpu::util::DeviceExt;

use super::context::{Gpu, GpuError};
use super::shaders::{self, Shader};
use crate::shape::{ConvGeometry, ConvKind};

/// Invocations per workgroup for the direct kernels.
const WORKGROUP_SIZE: u32 = 64;

/// The sizes of one convolution as the shaders read them; mirrors `ConvParams` in
/// `shaders/conv_common.wgsl` field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct ConvUniform {
    batch: u32,
    c_in: u32,
    in_h: u32,
    in_w: u32,
    c_out: u32,
    out_h: u32,
    out_w: u32,
    groups: u32,
    k_h: u32,
    k_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_h: u32,
    pad_w: u32,
    dil_h: u32,
    dil_w: u32,
    has_bias: u32,
    _padding: [u32; 3],
}

fn to_u32(what: &'static str, value: usize) -> Result<u32, GpuError> {
    u32::try_from(value).map_err(|_| GpuError::IndexOverflow { what, value: value as u64 })
}

impl ConvUniform {
    fn new(g: &ConvGeometry, has_bias: bool) -> Result<Self, GpuError> {
        // The shaders compute tap coordinates in i32; the largest is below size + 2·padding
        // (forward) or output + padding (transposed).
        let reach = (g.input.h.max(g.output.h) + 2 * g.padding.h).max(g.input.w.max(g.output.w) + 2 * g.padding.w);
        if reach > i32::MAX as usize {
            return Err(GpuError::IndexOverflow { what: "image size plus padding", value: reach as u64 });
        }
        Ok(ConvUniform {
            batch: to_u32("batch", g.batch)?,
            c_in: to_u32("input channels", g.c_in)?,
            in_h: to_u32("input height", g.input.h)?,
            in_w: to_u32("input width", g.input.w)?,
            c_out: to_u32("output channels", g.c_out)?,
            out_h: to_u32("output height", g.output.h)?,
            out_w: to_u32("output width", g.output.w)?,
            groups: to_u32("groups", g.groups)?,
            k_h: to_u32("kernel height", g.kernel.h)?,
            k_w: to_u32("kernel width", g.kernel.w)?,
            stride_h: to_u32("stride", g.stride.h)?,
            stride_w: to_u32("stride", g.stride.w)?,
            pad_h: to_u32("padding", g.padding.h)?,
            pad_w: to_u32("padding", g.padding.w)?,
            dil_h: to_u32("dilation", g.dilation.h)?,
            dil_w: to_u32("dilation", g.dilation.w)?,
            has_bias: has_bias as u32,
            _padding: [0; 3],
        })
    }
}

fn shader_for(kind: ConvKind) -> Shader {
    match kind {
        ConvKind::Forward => shaders::CONV2D,
        ConvKind::Transposed => shaders::CONV_TRANSPOSE2D,
    }
}

impl Gpu {
    /// Runs the convolution described by `geometry` (forward or transposed) on flat NCHW data
    /// and returns the flat NCHW output. The slices must match the geometry's shapes.
    ///
    /// When the batch's input or output exceeds what one buffer may hold, the batch is split
    /// into chunks that fit; a single sample (or the weight) that does not fit is refused with
    /// the adapter's limit named.
    pub fn convolve(&self, geometry: &ConvGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Result<Vec<f32>, GpuError> {
        let shader = shader_for(geometry.kind);
        let pipeline = self.pipeline(shader, &[("WORKGROUP_SIZE", WORKGROUP_SIZE as f64)])?;
        let sample_in = input.len() / geometry.batch;
        let sample_out = geometry.output_shape()[1..].iter().product::<usize>();
        self.check_size("one sample of the input", sample_in as u64 * 4)?;
        self.check_size("one sample of the output", sample_out as u64 * 4)?;
        let per_chunk = (self.max_buffer_bytes() / (4 * sample_in.max(sample_out) as u64)).min(geometry.batch as u64) as usize;

        let weight_buffer = self.storage_buffer("weight", weight)?;
        // A storage binding cannot be empty: without a bias the shader gets one unused zero.
        let bias_buffer = self.storage_buffer("bias", bias.unwrap_or(&[0.0]))?;
        let mut output = Vec::with_capacity(geometry.batch * sample_out);
        for first in (0..geometry.batch).step_by(per_chunk) {
            let chunk = ConvGeometry { batch: per_chunk.min(geometry.batch - first), ..*geometry };
            let chunk_input = &input[first * sample_in..(first + chunk.batch) * sample_in];
            let uniform = ConvUniform::new(&chunk, bias.is_some())?;
            output.extend(self.run_chunk(shader, &pipeline, uniform, chunk_input, &weight_buffer, &bias_buffer, chunk.batch * sample_out)?);
        }
        Ok(output)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_chunk(
        &self,
        shader: Shader,
        pipeline: &wgpu::ComputePipeline,
        uniform: ConvUniform,
        input: &[f32],
        weight: &wgpu::Buffer,
        bias: &wgpu::Buffer,
        output_len: usize,
    ) -> Result<Vec<f32>, GpuError> {
        let workgroups = self.workgroup_grid(output_len)?;
        let output = self.scoped(&format!("running {}", shader.name), || -> Result<wgpu::Buffer, GpuError> {
            let input = self.storage_buffer("input", input)?;
            let output = self.output_buffer("output", output_len)?;
            let params = self.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("conv params"),
                contents: bytemuck::bytes_of(&uniform),
                usage: wgpu::BufferUsages::UNIFORM,
            });
            let bind_group = self.device().create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(shader.name),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &[
                    wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 1, resource: input.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 2, resource: weight.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 3, resource: bias.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 4, resource: output.as_entire_binding() },
                ],
            });
            let mut encoder = self.device().create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(shader.name) });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(shader.name), timestamp_writes: None });
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(workgroups.0, workgroups.1, 1);
            }
            self.queue().submit([encoder.finish()]);
            Ok(output)
        })??;
        self.read_back(&output, output_len)
    }

    /// Workgroups for one invocation per element, spread over x and y when x alone would pass
    /// the device's per-dimension limit.
    fn workgroup_grid(&self, invocations: usize) -> Result<(u32, u32), GpuError> {
        let groups = invocations.div_ceil(WORKGROUP_SIZE as usize) as u64;
        let max = self.limits().max_compute_workgroups_per_dimension as u64;
        let x = groups.min(max);
        let y = groups.div_ceil(x);
        if y > max {
            return Err(GpuError::IndexOverflow { what: "workgroups needed (max_compute_workgroups_per_dimension²)", value: groups });
        }
        Ok((x as u32, y as u32))
    }
}
