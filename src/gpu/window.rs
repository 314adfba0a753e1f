//! Dispatch of the sliding-window kernels: convolution (forward and transposed) and pooling.
//! They share the host side — one uniform, one dispatch shape, one way of running in parts what
//! exceeds a binding (src/gpu/split.rs) — and differ only in the shader and its buffers.

use std::borrow::Cow;

use super::context::{explain_out_of_memory, Gpu, GpuError};
use super::kernels::{self, Grid, Kernel, KernelChoice};
use super::shaders;
use super::split::{self, ChannelBlock, WindowPart};
use super::steps::{Dispatch, Scratch, ScratchNeeds, Span, Step};
use crate::net::mib;
use crate::shape::{ConvKind, WindowGeometry, MAX_COLUMN_SEGMENTS};

/// Whether `parts` is the op `g` itself, run on its own tensors.
fn is_whole(parts: &[WindowPart], g: &WindowGeometry) -> bool {
    parts.len() == 1 && parts[0].geometry == *g
}

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
    /// Whether kernels that can skip taps read only in the padding do ([`Gpu::skip_padding_taps`]).
    skip_padding_taps: u32,
    /// The ends of the output's column segments ([`WindowGeometry::column_segments`]), padded
    /// with the output width: the forward lanes and GEMM kernels keep each workgroup within one.
    column_ends: [u32; MAX_COLUMN_SEGMENTS],
}

/// `value` as the shaders' 32-bit index type, or an error naming `what` overflowed.
pub(crate) fn to_u32(what: &'static str, value: usize) -> Result<u32, GpuError> {
    u32::try_from(value).map_err(|_| GpuError::IndexOverflow { what, value: value as u64 })
}

impl WindowUniform {
    fn new(g: &WindowGeometry, epilogue: Epilogue, skip_padding_taps: bool, column_segments: &[usize]) -> Result<Self, GpuError> {
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
            skip_padding_taps: skip_padding_taps as u32,
            column_ends: {
                let mut ends = [to_u32("output width", g.output.w)?; MAX_COLUMN_SEGMENTS];
                for (end, &segment_end) in ends.iter_mut().zip(column_segments) {
                    *end = segment_end as u32;
                }
                ends
            },
        })
    }
}

/// The tensors a window op reads and writes (the weights are prepared with the op).
pub(crate) struct WindowTensors<'a> {
    pub input: &'a Span,
    pub residual: Option<&'a Span>,
    pub output: &'a Span,
}

/// The weight and bias of one channel block, in the layout its kernel reads.
struct BlockWeights {
    weight: Option<wgpu::Buffer>,
    bias: Option<wgpu::Buffer>,
}

/// A window op ready to record on any batch: its kernel, and its channel blocks (all channels
/// unless the weights or one row exceed a binding, src/gpu/split.rs) with their weights uploaded.
pub(crate) struct PreparedWindow {
    choice: KernelChoice,
    blocks: Vec<ChannelBlock>,
    weights: Vec<BlockWeights>,
}

/// A block's slice of a weight in PyTorch's layout (forward `[C_out, C_in/g, kH, kW]`: its output
/// rows; transposed `[C_in, C_out/g, kH, kW]`: its input rows, each cut to its output channels).
fn block_weight<'w>(g: &WindowGeometry, block: &ChannelBlock, weight: &'w [f32]) -> Cow<'w, [f32]> {
    let taps = g.kernel.h * g.kernel.w;
    match g.kind {
        ConvKind::Transposed if block.out.len() / block.groups < g.c_out_per_group() => {
            let (cog, first) = (g.c_out_per_group(), block.out.start % g.c_out_per_group());
            Cow::Owned(block.input.clone().flat_map(|ci| &weight[(ci * cog + first) * taps..(ci * cog + first + block.out.len()) * taps]).copied().collect())
        }
        ConvKind::Transposed => Cow::Borrowed(&weight[block.input.start * g.c_out_per_group() * taps..block.input.end * g.c_out_per_group() * taps]),
        _ => Cow::Borrowed(&weight[block.out.start * g.c_in_per_group() * taps..block.out.end * g.c_in_per_group() * taps]),
    }
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

    /// Prepares the window op `g` (its `weight` and `bias` in PyTorch's layout; none for
    /// pooling) on the kernel `choice` picks, uploading the weights of each channel block;
    /// `what` names the op in errors.
    pub(crate) fn prepare_window(&self, g: &WindowGeometry, weight: Option<&[f32]>, bias: Option<&[f32]>, choice: KernelChoice, what: &str) -> Result<PreparedWindow, GpuError> {
        // One concrete kernel for every part, so each block's weights are packed once for it.
        let choice = match self.resolve(g, choice)? {
            KernelChoice::Auto => kernels::rule(g, self),
            concrete => concrete,
        };
        let weight_len = |choice: KernelChoice| {
            move |block: &WindowGeometry| match (g.weight_shape(), Kernel::for_device(block, choice, self)) {
                (Some(_), Ok(kernel)) => kernel.weight_len(block) as u64,
                _ => 0,
            }
        };
        let limit = self.binding_values();
        // The tiled kernels pad a block's weights to their channel tile; where even one
        // channel's padded weights exceed a binding, the direct kernel (no padding) runs it.
        let plan = |choice: KernelChoice| split::channel_blocks(g, limit, &weight_len(choice)).map(|blocks| (choice, blocks));
        let (choice, blocks) = plan(choice)
            .or_else(|e| if choice == KernelChoice::Direct { Err(e) } else { plan(KernelChoice::Direct) })
            .map_err(|e| self.binding_too_large(&format!("{what}: {}", e.what), e.values * self.value_bytes()))?;
        let weights = blocks
            .iter()
            .map(|block| -> Result<BlockWeights, GpuError> {
                let block_g = split::block_geometry(g, block);
                let weight = match weight.filter(|_| g.weight_shape().is_some()) {
                    Some(w) => Some(self.storage_buffer(&format!("{what} weight"), &Kernel::for_device(&block_g, choice, self)?.weights(&block_g, &block_weight(g, block, w)))?),
                    None => None,
                };
                let bias = bias.map(|b| self.storage_buffer(&format!("{what} bias"), &b[block.out.clone()])).transpose()?;
                Ok(BlockWeights { weight, bias })
            })
            .collect::<Result<_, _>>()?;
        Ok(PreparedWindow { choice, blocks, weights })
    }

    /// The parts `prepared` runs in on `g`'s batch: one (the op itself) when it fits a binding.
    pub(crate) fn window_parts(&self, prepared: &PreparedWindow, g: &WindowGeometry) -> Vec<WindowPart> {
        split::window_parts(g, &prepared.blocks, self.binding_values())
    }

    /// The scratch that `parts` ([`Gpu::window_parts`] of `g`) copy through (none when they
    /// are the whole op).
    pub(crate) fn window_scratch(parts: &[WindowPart], g: &WindowGeometry, residual: bool) -> ScratchNeeds {
        if is_whole(parts, g) {
            return ScratchNeeds::default();
        }
        parts.iter().fold(ScratchNeeds::default(), |needs, part| {
            let output = part.geometry.output_shape().iter().product();
            needs.max(ScratchNeeds { input: part.geometry.input_shape().iter().product(), output, residual: if residual { output } else { 0 } })
        })
    }

    /// The steps that run `prepared` on `g`'s batch in `parts` ([`Gpu::window_parts`]) over
    /// `tensors`, with `relu` fused: one dispatch when the part is the whole op, else per part
    /// the copies of its input (and residual) rows into `scratch`, its dispatch, and the copy of
    /// its output back.
    pub(crate) fn window_steps(&self, prepared: &PreparedWindow, g: &WindowGeometry, parts: &[WindowPart], tensors: &WindowTensors, relu: bool, scratch: &Scratch) -> Result<Vec<Step>, GpuError> {
        if is_whole(parts, g) {
            let dispatch = self.window_dispatch(g, prepared.choice, &prepared.weights[0], tensors, relu)?;
            return Ok(vec![Step::Dispatch(dispatch)]);
        }
        let mut steps = Vec::new();
        let mut in_scratch = None;
        for part in parts {
            let block = &prepared.blocks[part.block];
            let (input_len, output_len) = (part.geometry.input_shape().iter().product(), part.geometry.output_shape().iter().product());
            let gathered = scratch.input(input_len);
            // The blocks of a band that read the same input channels share one copy of it.
            let input = (part.samples.clone(), block.input.clone(), part.in_rows.clone());
            if in_scratch.as_ref() != Some(&input) {
                let runs = split::block_runs(g.input_shape(), input.0.clone(), input.1.clone(), input.2.clone());
                steps.extend(self.merged_copies(tensors.input, &gathered, runs)?);
                in_scratch = Some(input);
            }
            let output_runs = || split::block_runs(g.output_shape(), part.samples.clone(), block.out.clone(), part.out_rows.clone());
            let residual = match tensors.residual {
                Some(r) => {
                    let gathered = scratch.residual(output_len);
                    steps.extend(self.merged_copies(r, &gathered, output_runs())?);
                    Some(gathered)
                }
                None => None,
            };
            let output = scratch.output(output_len);
            let part_tensors = WindowTensors { input: &gathered, residual: residual.as_ref(), output: &output };
            steps.push(Step::Dispatch(self.window_dispatch(&part.geometry, prepared.choice, &prepared.weights[part.block], &part_tensors, relu)?));
            steps.extend(self.merged_copies(&output, tensors.output, output_runs().map(|(at, dense, len)| (dense, at, len)))?);
        }
        Ok(steps)
    }

    /// One dispatch of the window op `geometry` on the kernel `choice` names.
    fn window_dispatch(&self, geometry: &WindowGeometry, choice: KernelChoice, weights: &BlockWeights, tensors: &WindowTensors, relu: bool) -> Result<Dispatch, GpuError> {
        let kernel = Kernel::for_device(geometry, choice, self)?;
        // The grid and the uniform must agree on the segments: found once, given to both.
        let segments = kernel.column_segments(geometry);
        let workgroups = match kernel.grid(geometry, &segments) {
            Grid::Elements(invocations) => {
                let (x, y) = self.workgroup_grid(invocations)?;
                (x, y, 1)
            }
            Grid::Tiles { pixel_workgroups, channel_tiles } => {
                let (x, z) = self.spread(pixel_workgroups as u64)?;
                (x, self.channel_grid(channel_tiles)?, z)
            }
        };
        let epilogue = Epilogue { bias: weights.bias.is_some(), residual: tensors.residual.is_some(), relu };
        let uniform = WindowUniform::new(geometry, epilogue, self.skip_padding_taps, &segments)?;
        let placeholder = self.placeholder().as_entire_binding();
        let mut bindings = vec![tensors.input.binding()];
        if geometry.weight_shape().is_some() {
            bindings.push(weights.weight.as_ref().map_or(placeholder.clone(), |w| w.as_entire_binding()));
            bindings.push(weights.bias.as_ref().map_or(placeholder.clone(), |b| b.as_entire_binding()));
            bindings.push(tensors.residual.map_or(placeholder, Span::binding));
        }
        bindings.push(tensors.output.binding());
        self.dispatch(kernel.shader(), bytemuck::bytes_of(&uniform), &bindings, workgroups)
    }

    /// Runs one window op (a convolution, forward or transposed, or a pooling, whose `weight`
    /// is ignored) on flat NCHW data and returns the flat NCHW output. The slices must match the
    /// geometry's shapes.
    ///
    /// Tensors larger than one binding run in parts (src/gpu/split.rs), and tensors larger than
    /// one buffer are stored in several.
    pub fn convolve(&self, geometry: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Result<Vec<f32>, GpuError> {
        let prepared = self.prepare_window(geometry, Some(weight), bias, KernelChoice::Auto, "the op")?;
        let out_len = geometry.output_shape().iter().product();
        self.scoped("running a window op", || -> Result<Vec<f32>, GpuError> {
            let input = self.upload("input", input)?;
            let output = self.tensor_storage("output", out_len)?;
            let parts = self.window_parts(&prepared, geometry);
            let scratch = self.scratch(Gpu::window_scratch(&parts, geometry, false))?;
            let tensors = WindowTensors { input: &input, residual: None, output: &output };
            self.submit_steps("window op", &self.window_steps(&prepared, geometry, &parts, &tensors, false, &scratch)?, 1);
            self.read_tensor(&output)
        })
        .map_err(|e| {
            explain_out_of_memory(e, || {
                format!(
                    "running a window op (input {} + output {}; ways out: a smaller input or batch, or the CPU: --device cpu)",
                    mib(input.len() as u64 * self.value_bytes()),
                    mib(out_len as u64 * self.value_bytes())
                )
            })
        })?
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
