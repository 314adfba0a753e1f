//! Dispatch of the sliding-window kernels: convolution (forward and transposed) and pooling.
//! They share the host side — one uniform, one dispatch shape, one splitting rule — and differ
//! only in the shader and its buffers.

use wgpu::util::DeviceExt;

use super::context::{Gpu, GpuError};
use super::kernels::{Grid, Kernel, KernelChoice};
use super::shaders;
use crate::shape::WindowGeometry;

/// What a convolution does to its sum before storing it (the fused epilogue).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Epilogue {
    pub bias: bool,
    pub residual: bool,
    pub relu: bool,
}

/// The sizes of one window op as the shaders read them; mirrors `Window` in
/// `shaders/common.wgsl` field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct WindowUniform {
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
    has_residual: u32,
    relu: u32,
    _padding: u32,
}

/// `value` as the shaders' 32-bit index type, or an error naming `what` overflowed.
pub(crate) fn to_u32(what: &'static str, value: usize) -> Result<u32, GpuError> {
    u32::try_from(value).map_err(|_| GpuError::IndexOverflow { what, value: value as u64 })
}

impl WindowUniform {
    fn new(g: &WindowGeometry, epilogue: Epilogue) -> Result<Self, GpuError> {
        // The shaders compute tap coordinates in i32; the largest is below size + 2·padding
        // (forward) or output + padding (transposed).
        let reach = (g.input.h.max(g.output.h) + 2 * g.padding.h).max(g.input.w.max(g.output.w) + 2 * g.padding.w);
        if reach > i32::MAX as usize {
            return Err(GpuError::IndexOverflow { what: "image size plus padding", value: reach as u64 });
        }
        Ok(WindowUniform {
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
            has_bias: epilogue.bias as u32,
            has_residual: epilogue.residual as u32,
            relu: epilogue.relu as u32,
            _padding: 0,
        })
    }
}

/// The buffers a window op reads and writes. A convolution without bias or residual gets a
/// one-element placeholder there (a storage binding cannot be empty), flagged off in the uniform.
pub(crate) struct WindowBuffers<'a> {
    pub input: &'a wgpu::Buffer,
    pub weight: Option<&'a wgpu::Buffer>,
    pub bias: Option<&'a wgpu::Buffer>,
    pub residual: Option<&'a wgpu::Buffer>,
    pub output: &'a wgpu::Buffer,
}

impl Gpu {
    /// Whether the kernels that use subgroups (of at least [`shaders::SUBGROUP_LANES_NEEDED`]
    /// lanes) can run here: the lanes kernel, and the tiled ones' shared weight loads.
    pub fn subgroups(&self) -> bool {
        self.device().features().contains(wgpu::Features::SUBGROUP) && self.device().adapter_info().subgroup_min_size >= shaders::SUBGROUP_LANES_NEEDED
    }

    /// Whether [`KernelChoice::Auto`]'s rule may take the lanes kernels: on a CPU adapter
    /// (lavapipe, where their tile was tuned) with subgroups, unless
    /// [`super::GpuOptions::without_lanes`]. Their 16 × 32 sums per invocation are far more than
    /// a hardware GPU's registers (they spill on AMD's compiler, BENCHMARKS.md), so there the
    /// rule takes the implicit GEMM.
    pub fn lanes_by_default(&self) -> bool {
        self.subgroups() && !self.without_lanes && self.summary().device_type == wgpu::DeviceType::Cpu
    }

    /// The kernel that runs `geometry` for `choice` on this device.
    pub(crate) fn kernel(&self, geometry: &WindowGeometry, choice: KernelChoice) -> Result<Kernel, GpuError> {
        Kernel::for_device(geometry, self.resolve(geometry, choice)?, self)
    }

    /// The shader that runs `geometry` with the kernel `choice` picks on this device (for reports).
    pub fn kernel_name(&self, geometry: &WindowGeometry, choice: KernelChoice) -> Result<&'static str, GpuError> {
        Ok(self.kernel(geometry, choice)?.shader().name)
    }

    /// Uploads a conv weight in the layout its kernel reads.
    pub(crate) fn weight_buffer(&self, geometry: &WindowGeometry, what: &str, weight: &[f32]) -> Result<wgpu::Buffer, GpuError> {
        self.weight_buffer_for(geometry, what, weight, KernelChoice::Auto)
    }

    /// [`Gpu::weight_buffer`] for the kernel `choice` picks.
    pub(crate) fn weight_buffer_for(&self, geometry: &WindowGeometry, what: &str, weight: &[f32], choice: KernelChoice) -> Result<wgpu::Buffer, GpuError> {
        let kernel = self.kernel(geometry, choice)?;
        self.storage_buffer(what, &kernel.weights(geometry, weight))
    }

    /// Records one window op into `pass`: `geometry` over `buffers`, with `relu` fused.
    pub(crate) fn record_window(&self, pass: &mut wgpu::ComputePass, geometry: &WindowGeometry, buffers: &WindowBuffers, relu: bool) -> Result<(), GpuError> {
        self.record_window_for(pass, geometry, buffers, relu, KernelChoice::Auto)
    }

    /// [`Gpu::record_window`] with the kernel `choice` picks; the weight must come from
    /// [`Gpu::weight_buffer_for`] with the same choice.
    pub(crate) fn record_window_for(
        &self,
        pass: &mut wgpu::ComputePass,
        geometry: &WindowGeometry,
        buffers: &WindowBuffers,
        relu: bool,
        choice: KernelChoice,
    ) -> Result<(), GpuError> {
        let kernel = self.kernel(geometry, choice)?;
        let shader = kernel.shader();
        let workgroups = match kernel.grid(geometry) {
            Grid::Elements(invocations) => {
                let (x, y) = self.workgroup_grid(invocations)?;
                (x, y, 1)
            }
            Grid::Tiles { pixel_workgroups, channel_tiles } => {
                let (x, z) = self.spread(pixel_workgroups as u64)?;
                (x, self.channel_grid(channel_tiles)?, z)
            }
        };
        let pipeline = self.pipeline(shader)?;
        let epilogue = Epilogue { bias: buffers.bias.is_some(), residual: buffers.residual.is_some(), relu };
        let uniform = WindowUniform::new(geometry, epilogue)?;
        let params = self.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("window params"),
            contents: bytemuck::bytes_of(&uniform),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let placeholder = self.placeholder();
        let mut bound = vec![params.as_entire_binding(), buffers.input.as_entire_binding()];
        if geometry.weight_shape().is_some() {
            for optional in [buffers.weight, buffers.bias, buffers.residual] {
                bound.push(optional.unwrap_or(placeholder).as_entire_binding());
            }
        }
        bound.push(buffers.output.as_entire_binding());
        let entries: Vec<wgpu::BindGroupEntry> =
            bound.into_iter().enumerate().map(|(binding, resource)| wgpu::BindGroupEntry { binding: binding as u32, resource }).collect();
        let bind_group = self.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(shader.name),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(workgroups.0, workgroups.1, workgroups.2);
        Ok(())
    }

    /// Runs one window op (a convolution, forward or transposed, or a max-pool, whose `weight`
    /// is ignored) on flat NCHW data and returns the flat NCHW output. The slices must match the
    /// geometry's shapes.
    ///
    /// When the batch's input or output exceeds what one buffer may hold, the batch is split
    /// into chunks that fit; a single sample (or the weight) that does not fit is refused with
    /// the adapter's limit named.
    pub fn convolve(&self, geometry: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Result<Vec<f32>, GpuError> {
        let sample_in = input.len() / geometry.batch;
        let sample_out = geometry.output_shape()[1..].iter().product::<usize>();
        self.check_size("one sample of the input", sample_in as u64 * 4)?;
        self.check_size("one sample of the output", sample_out as u64 * 4)?;
        let per_chunk = (self.max_buffer_bytes() / (4 * sample_in.max(sample_out) as u64)).min(geometry.batch as u64) as usize;

        let has_weight = geometry.weight_shape().is_some();
        let weight = has_weight.then(|| self.weight_buffer(geometry, "weight", weight)).transpose()?;
        let bias = bias.map(|b| self.storage_buffer("bias", b)).transpose()?;
        let mut output = Vec::with_capacity(geometry.batch * sample_out);
        for first in (0..geometry.batch).step_by(per_chunk) {
            let chunk = WindowGeometry { batch: per_chunk.min(geometry.batch - first), ..*geometry };
            let out_len = chunk.batch * sample_out;
            let out_buffer = self.scoped("running a window op", || -> Result<wgpu::Buffer, GpuError> {
                let input = self.storage_buffer("input", &input[first * sample_in..(first + chunk.batch) * sample_in])?;
                let out_buffer = self.output_buffer("output", out_len)?;
                let buffers = WindowBuffers { input: &input, weight: weight.as_ref(), bias: bias.as_ref(), residual: None, output: &out_buffer };
                self.submit_passes("window op", 1, |pass| self.record_window(pass, &chunk, &buffers, false))?;
                Ok(out_buffer)
            })??;
            output.extend(self.read_back(&out_buffer, out_len)?);
        }
        Ok(output)
    }

    /// The y extent of a grid whose y spreads the channel tiles of all groups.
    fn channel_grid(&self, tiles: usize) -> Result<u32, GpuError> {
        if tiles > self.limits().max_compute_workgroups_per_dimension as usize {
            return Err(GpuError::IndexOverflow { what: "channel tiles (max_compute_workgroups_per_dimension)", value: tiles as u64 });
        }
        Ok(tiles as u32)
    }

    /// Workgroups for one invocation per element, spread over x and y when x alone would pass
    /// the device's per-dimension limit.
    pub(crate) fn workgroup_grid(&self, invocations: usize) -> Result<(u32, u32), GpuError> {
        self.spread(invocations.div_ceil(shaders::WORKGROUP_SIZE as usize) as u64)
    }

    /// `groups` workgroups as an x × y grid, y > 1 only when x alone would pass the device's limit.
    fn spread(&self, groups: u64) -> Result<(u32, u32), GpuError> {
        let max = self.limits().max_compute_workgroups_per_dimension as u64;
        let x = groups.min(max);
        let y = groups.div_ceil(x);
        if y > max {
            return Err(GpuError::IndexOverflow { what: "workgroups needed (max_compute_workgroups_per_dimension²)", value: groups });
        }
        Ok((x as u32, y as u32))
    }
}
