//! The arithmetic of convolution shapes (docs/ARCHITECTURE.md §1), and validated parameter types.
//!
//! Every combination that PyTorch would refuse becomes a [`ShapeError`] whose message names the
//! numbers involved; nothing in here panics on user input.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use thiserror::Error;

/// A per-axis pair of sizes: `h` for height, `w` for width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Hw {
    pub h: usize,
    pub w: usize,
}

impl Hw {
    pub const fn new(h: usize, w: usize) -> Self {
        Hw { h, w }
    }

    /// The same value on both axes.
    pub const fn square(v: usize) -> Self {
        Hw { h: v, w: v }
    }

    fn any_zero(self) -> bool {
        self.h == 0 || self.w == 0
    }
}

impl fmt::Display for Hw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.h == self.w {
            write!(f, "{}", self.h)
        } else {
            write!(f, "{},{}", self.h, self.w)
        }
    }
}

/// Parses `"3"` (both axes) or `"3,2"` (H, W), as the command line takes them.
/// The one spelling of a pair on the command line (sizes, strides, paddings, dilations): `N`
/// for the same value on both axes, or `HxW`, or `H,W`.
impl FromStr for Hw {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parse = |part: &str| part.trim().parse::<usize>().map_err(|_| format!("'{s}' is not a size: expected non-negative integers as {}", Hw::FORMS));
        match s.split_once([',', 'x', 'X']) {
            None => Ok(Hw::square(parse(s)?)),
            Some((h, w)) => Ok(Hw::new(parse(h)?, parse(w)?)),
        }
    }
}

impl Hw {
    /// The spellings [`Hw::from_str`] accepts, for error messages.
    pub const FORMS: &'static str = "N, HxW or H,W (e.g. 65, 65x65 or 65,65)";
}

/// Why a convolution's parameters or tensor shapes cannot work together.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ShapeError {
    #[error("{tensor} must have rank {expected} ({layout}), but its shape is {shape:?}")]
    WrongRank { tensor: &'static str, expected: usize, layout: &'static str, shape: Vec<usize> },
    #[error("{tensor} has a zero-sized dimension (shape {shape:?}); every dimension must be at least 1")]
    EmptyTensor { tensor: &'static str, shape: Vec<usize> },
    #[error("{name} must be at least 1 on each axis, got {value}")]
    ZeroParameter { name: &'static str, value: Hw },
    #[error("groups must be at least 1, got 0")]
    ZeroGroups,
    #[error("groups={groups} does not divide the {which} channels ({channels}); choose groups among the divisors of {channels}")]
    GroupsDontDivide { groups: usize, channels: usize, which: &'static str },
    #[error(
        "weight expects {expected} input channels ({per_group} per group × groups={groups}), but the input has {got} (input shape is NCHW: channels is dimension 1)"
    )]
    ChannelMismatch { expected: usize, per_group: usize, groups: usize, got: usize },
    #[error(
        "input {axis}={size} is too small: with padding {padding}, kernel {kernel} at dilation {dilation} (effective kernel {effective}) and stride {stride}, the output {axis} would be floor(({size} + 2·{padding} − {effective}) / {stride}) + 1 ≤ 0; need {axis} + 2·padding ≥ {effective}"
    )]
    InputTooSmall {
        axis: &'static str,
        size: usize,
        padding: usize,
        kernel: usize,
        dilation: usize,
        effective: usize,
        stride: usize,
    },
    #[error(
        "transposed convolution output {axis} would be ({size} − 1)·{stride} − 2·{padding} + {effective} + {output_padding} = {value} ≤ 0; reduce padding ({padding})"
    )]
    TransposedOutputEmpty {
        axis: &'static str,
        size: usize,
        stride: usize,
        padding: usize,
        effective: usize,
        output_padding: usize,
        value: i128,
    },
    #[error(
        "output_padding {axis}={output_padding} must be smaller than max(stride, dilation) = max({stride}, {dilation}) = {limit}"
    )]
    OutputPaddingTooLarge { axis: &'static str, output_padding: usize, stride: usize, dilation: usize, limit: usize },
    #[error("max-pool padding {axis}={padding} must be at most half the kernel ({kernel}/2)")]
    PoolPaddingTooLarge { axis: &'static str, padding: usize, kernel: usize },
    #[error("bias must be a 1-D tensor of length {expected} (one per output channel), but its shape is {shape:?}")]
    BiasLength { expected: usize, shape: Vec<usize> },
    #[error("{what} = {value} is too large for this tool (limit {limit})")]
    TooLarge { what: &'static str, value: u128, limit: u128 },
}

/// Effective kernel extent of a dilated kernel: `d·(k−1) + 1`.
pub const fn effective_kernel(kernel: usize, dilation: usize) -> usize {
    dilation * (kernel - 1) + 1
}

/// Convolution output size on one axis, `floor((n + 2p − k_eff) / s) + 1`, or `None` when the
/// input (plus padding) is smaller than the effective kernel. `stride` must be ≥ 1.
pub fn conv_output_size(n: usize, kernel: usize, stride: usize, padding: usize, dilation: usize) -> Option<usize> {
    let padded = n + 2 * padding;
    let effective = effective_kernel(kernel, dilation);
    (padded >= effective).then(|| (padded - effective) / stride + 1)
}

/// Transposed-convolution output size on one axis, `(n − 1)·s − 2p + k_eff + output_padding`, or
/// `None` when that is not positive.
pub fn conv_transpose_output_size(
    n: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
    output_padding: usize,
) -> Option<usize> {
    let value = transposed_size_signed(n, kernel, stride, padding, dilation, output_padding);
    (value > 0).then_some(value as usize)
}

fn transposed_size_signed(n: usize, k: usize, s: usize, p: usize, d: usize, op: usize) -> i128 {
    // i128: parameters are bounded by MAX_PARAMETER, so no term can overflow.
    (n as i128 - 1) * s as i128 - 2 * p as i128 + effective_kernel(k, d) as i128 + op as i128
}

/// Parameters of a 2-D convolution (PyTorch's `nn.Conv2d`, `padding_mode="zeros"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dParams {
    pub stride: Hw,
    pub padding: Hw,
    pub dilation: Hw,
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams { stride: Hw::square(1), padding: Hw::square(0), dilation: Hw::square(1), groups: 1 }
    }
}

/// Parameters of a 2-D transposed convolution (PyTorch's `nn.ConvTranspose2d`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvTranspose2dParams {
    pub stride: Hw,
    pub padding: Hw,
    pub output_padding: Hw,
    pub dilation: Hw,
    pub groups: usize,
}

impl Default for ConvTranspose2dParams {
    fn default() -> Self {
        ConvTranspose2dParams {
            stride: Hw::square(1),
            padding: Hw::square(0),
            output_padding: Hw::square(0),
            dilation: Hw::square(1),
            groups: 1,
        }
    }
}

/// Parameters of 2-D max pooling (PyTorch's `nn.MaxPool2d`, `ceil_mode=False`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2dParams {
    pub kernel: Hw,
    pub stride: Hw,
    pub padding: Hw,
    pub dilation: Hw,
}

/// Which sliding-window op a geometry describes. They share one geometry (and one GPU uniform)
/// because they share the arithmetic: a max-pool is a depthwise window without weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvKind {
    Forward,
    Transposed,
    MaxPool,
    /// The mean of every window (only whole-image windows are built: global average pooling).
    AvgPool,
}

/// Every size of one sliding-window op (a convolution, forward or transposed, or a pooling),
/// resolved and validated: what both backends execute.
///
/// For a forward convolution the weight is `[c_out, c_in/groups, kernel.h, kernel.w]`; for a
/// transposed one it is `[c_in, c_out/groups, kernel.h, kernel.w]` (PyTorch's layouts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WindowGeometry {
    pub kind: ConvKind,
    pub batch: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub input: Hw,
    pub output: Hw,
    pub kernel: Hw,
    pub stride: Hw,
    pub padding: Hw,
    pub dilation: Hw,
    pub groups: usize,
}

/// Indices fit in `u32` on the GPU; anything beyond this many elements is refused up front.
const MAX_ELEMENTS: u128 = u32::MAX as u128;

/// Largest stride, padding, dilation, output padding or groups accepted: the GPU computes tap
/// positions in `i32`, and this bound keeps every size formula free of overflow.
pub const MAX_PARAMETER: usize = i32::MAX as usize;

impl WindowGeometry {
    pub fn c_in_per_group(&self) -> usize {
        self.c_in / self.groups
    }

    pub fn c_out_per_group(&self) -> usize {
        self.c_out / self.groups
    }

    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.c_in, self.input.h, self.input.w]
    }

    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.c_out, self.output.h, self.output.w]
    }

    /// The weight's shape; a max-pool has none (`None`).
    pub fn weight_shape(&self) -> Option<[usize; 4]> {
        match self.kind {
            ConvKind::Forward => Some([self.c_out, self.c_in_per_group(), self.kernel.h, self.kernel.w]),
            ConvKind::Transposed => Some([self.c_in, self.c_out_per_group(), self.kernel.h, self.kernel.w]),
            ConvKind::MaxPool | ConvKind::AvgPool => None,
        }
    }

    /// Nominal floating-point operations (what PyTorch computes), `2·N·OH·OW·C_out·(C_in/groups)·kH·kW`
    /// for a forward convolution; a transposed one counts over its *input* positions (no
    /// inserted zeros); a pool counts none.
    pub fn flops(&self) -> u64 {
        let taps = (self.kernel.h * self.kernel.w) as u64;
        match self.kind {
            ConvKind::Forward => {
                2 * (self.batch * self.output.h * self.output.w * self.c_out * self.c_in_per_group()) as u64 * taps
            }
            ConvKind::Transposed => {
                2 * (self.batch * self.input.h * self.input.w * self.c_in * self.c_out_per_group()) as u64 * taps
            }
            ConvKind::MaxPool | ConvKind::AvgPool => 0,
        }
    }

    /// The part of [`WindowGeometry::flops`] whose taps touch data: products with padding left
    /// out. A dilation as large as the map leaves a 3×3 kernel one useful tap in nine.
    pub fn useful_flops(&self) -> u64 {
        // Per axis, the valid taps of each position (output positions forward; input positions
        // transposed, whose taps land in the output); the 2-D count is their product.
        let (from, to, per_position) = match self.kind {
            ConvKind::Forward => (self.output, self.input, self.c_out * self.c_in_per_group()),
            ConvKind::Transposed => (self.input, self.output, self.c_in * self.c_out_per_group()),
            ConvKind::MaxPool | ConvKind::AvgPool => return 0,
        };
        let axis = |positions: usize, stride: usize, kernel: usize, dilation: usize, padding: usize, size: usize| -> u64 {
            (0..positions).map(|i| valid_taps(i * stride, kernel, dilation, padding, size).len() as u64).sum()
        };
        let rows = axis(from.h, self.stride.h, self.kernel.h, self.dilation.h, self.padding.h, to.h);
        let columns = axis(from.w, self.stride.w, self.kernel.w, self.dilation.w, self.padding.w, to.w);
        2 * (self.batch * per_position) as u64 * rows * columns
    }
}

/// At most this many [`WindowGeometry::column_segments`].
pub const MAX_COLUMN_SEGMENTS: usize = 4;

impl WindowGeometry {
    /// The output columns of a forward convolution cut where the column taps that read inside
    /// the input change, as the end of each segment (the last is the output width): within a
    /// segment every column reads the same taps, so a kernel whose workgroups (of
    /// `workgroup_pixels` pixels) keep within one segment can skip whole taps exactly where a
    /// dilation as large as the map sends them into the padding. Each segment's last workgroup
    /// may be partly empty, so neighbours are merged (their columns then visit the taps of both)
    /// while that lowers the work, counted as pixels of whole workgroups times column taps, and
    /// while there are more than [`MAX_COLUMN_SEGMENTS`]. One segment for other ops.
    pub fn column_segments(&self, workgroup_pixels: usize) -> Vec<usize> {
        if self.kind != ConvKind::Forward {
            return vec![self.output.w];
        }
        let taps = |ox: usize| valid_taps(ox * self.stride.w, self.kernel.w, self.dilation.w, self.padding.w, self.input.w);
        // (end, first tap, end of taps) per segment; a segment's taps span those of its columns.
        let mut segments: Vec<(usize, usize, usize)> = Vec::new();
        for ox in 0..self.output.w {
            let t = taps(ox);
            match segments.last_mut() {
                Some(last) if (last.1, last.2) == (t.start, t.end) => last.0 = ox + 1,
                _ => segments.push((ox + 1, t.start, t.end)),
            }
        }
        let rows = self.batch * self.output.h;
        let work = |start: usize, (end, first, last): (usize, usize, usize)| (rows * (end - start)).div_ceil(workgroup_pixels) * workgroup_pixels * (last - first);
        let merged = |a: (usize, usize, usize), b: (usize, usize, usize)| (b.0, a.1.min(b.1), a.2.max(b.2));
        while segments.len() > 1 {
            let start = |i: usize| if i == 0 { 0 } else { segments[i - 1].0 };
            let change = |i: usize| work(start(i), merged(segments[i], segments[i + 1])) as i64 - (work(start(i), segments[i]) + work(start(i + 1), segments[i + 1])) as i64;
            let best = (0..segments.len() - 1).min_by_key(|&i| change(i)).unwrap();
            if change(best) >= 0 && segments.len() <= MAX_COLUMN_SEGMENTS {
                break;
            }
            segments[best] = merged(segments[best], segments[best + 1]);
            segments.remove(best + 1);
        }
        segments.into_iter().map(|(end, _, _)| end).collect()
    }
}

/// The taps `t < kernel` whose position `base + t·dilation − padding` lies in `0..size`: one
/// range, as the taps are evenly spaced; empty where every tap lands in the padding.
pub fn valid_taps(base: usize, kernel: usize, dilation: usize, padding: usize, size: usize) -> Range<usize> {
    let first = if base >= padding { 0 } else { (padding - base).div_ceil(dilation) }.min(kernel);
    let end = if size + padding > base { ((size - 1 + padding - base) / dilation + 1).min(kernel) } else { 0 };
    first..end.max(first)
}

fn rank4(tensor: &'static str, shape: &[usize], layout: &'static str) -> Result<[usize; 4], ShapeError> {
    let dims: [usize; 4] = shape
        .try_into()
        .map_err(|_| ShapeError::WrongRank { tensor, expected: 4, layout, shape: shape.to_vec() })?;
    if dims.contains(&0) {
        return Err(ShapeError::EmptyTensor { tensor, shape: shape.to_vec() });
    }
    if dims.iter().map(|&d| d as u128).product::<u128>() > MAX_ELEMENTS {
        let value = dims.iter().map(|&d| d as u128).product();
        return Err(ShapeError::TooLarge { what: "number of elements", value, limit: MAX_ELEMENTS });
    }
    Ok(dims)
}

fn check_nonzero(name: &'static str, value: Hw) -> Result<(), ShapeError> {
    if value.any_zero() {
        return Err(ShapeError::ZeroParameter { name, value });
    }
    check_magnitude(name, value)
}

fn check_magnitude(what: &'static str, value: Hw) -> Result<(), ShapeError> {
    match value.h.max(value.w) {
        v if v > MAX_PARAMETER => Err(ShapeError::TooLarge { what, value: v as u128, limit: MAX_PARAMETER as u128 }),
        _ => Ok(()),
    }
}

fn check_groups(groups: usize, c_in: usize, c_out: usize) -> Result<(), ShapeError> {
    for (channels, which) in [(c_in, "input"), (c_out, "output")] {
        if channels % groups != 0 {
            return Err(ShapeError::GroupsDontDivide { groups, channels, which });
        }
    }
    Ok(())
}

fn check_groups_range(groups: usize) -> Result<(), ShapeError> {
    if groups == 0 {
        return Err(ShapeError::ZeroGroups);
    }
    check_magnitude("groups", Hw::square(groups))
}

fn check_bias(bias: Option<&[usize]>, c_out: usize) -> Result<(), ShapeError> {
    match bias {
        Some(shape) if shape != [c_out] => Err(ShapeError::BiasLength { expected: c_out, shape: shape.to_vec() }),
        _ => Ok(()),
    }
}

const AXES: [&str; 2] = ["H", "W"];

fn axes(v: Hw) -> [usize; 2] {
    [v.h, v.w]
}

fn check_output_elements(geometry: &WindowGeometry) -> Result<(), ShapeError> {
    let value = geometry.output_shape().iter().map(|&d| d as u128).product::<u128>();
    if value > MAX_ELEMENTS {
        return Err(ShapeError::TooLarge { what: "number of output elements", value, limit: MAX_ELEMENTS });
    }
    Ok(())
}

/// Output size of a sliding window (convolution or pooling) on both axes, or the error that
/// names the axis whose input is too small for the dilated kernel.
fn window_output(size: Hw, kernel: Hw, stride: Hw, padding: Hw, dilation: Hw) -> Result<Hw, ShapeError> {
    let axis = |name, n, k, s, p, d| {
        conv_output_size(n, k, s, p, d).ok_or(ShapeError::InputTooSmall {
            axis: name,
            size: n,
            padding: p,
            kernel: k,
            dilation: d,
            effective: effective_kernel(k, d),
            stride: s,
        })
    };
    Ok(Hw::new(
        axis("H", size.h, kernel.h, stride.h, padding.h, dilation.h)?,
        axis("W", size.w, kernel.w, stride.w, padding.w, dilation.w)?,
    ))
}

impl Conv2dParams {
    /// Validates these parameters against an NCHW input, a `[C_out, C_in/groups, kH, kW]`
    /// weight and an optional `[C_out]` bias, and resolves every size.
    pub fn geometry(&self, input: &[usize], weight: &[usize], bias: Option<&[usize]>) -> Result<WindowGeometry, ShapeError> {
        let [batch, c_in, in_h, in_w] = rank4("input", input, "N, C, H, W")?;
        let [c_out, per_group, k_h, k_w] = rank4("weight", weight, "C_out, C_in/groups, kH, kW")?;
        check_nonzero("stride", self.stride)?;
        check_nonzero("dilation", self.dilation)?;
        check_magnitude("padding", self.padding)?;
        check_groups_range(self.groups)?;
        check_groups(self.groups, c_in, c_out)?;
        if per_group * self.groups != c_in {
            return Err(ShapeError::ChannelMismatch { expected: per_group * self.groups, per_group, groups: self.groups, got: c_in });
        }
        check_bias(bias, c_out)?;
        let size = Hw::new(in_h, in_w);
        let kernel = Hw::new(k_h, k_w);
        let output = window_output(size, kernel, self.stride, self.padding, self.dilation)?;
        let geometry = WindowGeometry {
            kind: ConvKind::Forward,
            batch,
            c_in,
            c_out,
            input: size,
            output,
            kernel,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            groups: self.groups,
        };
        check_output_elements(&geometry)?;
        Ok(geometry)
    }
}

impl ConvTranspose2dParams {
    /// Validates these parameters against an NCHW input, a `[C_in, C_out/groups, kH, kW]`
    /// weight and an optional `[C_out]` bias, and resolves every size.
    pub fn geometry(&self, input: &[usize], weight: &[usize], bias: Option<&[usize]>) -> Result<WindowGeometry, ShapeError> {
        let [batch, c_in, in_h, in_w] = rank4("input", input, "N, C, H, W")?;
        let [w_in, per_group, k_h, k_w] = rank4("weight", weight, "C_in, C_out/groups, kH, kW")?;
        check_nonzero("stride", self.stride)?;
        check_nonzero("dilation", self.dilation)?;
        check_magnitude("padding", self.padding)?;
        check_magnitude("output_padding", self.output_padding)?;
        check_groups_range(self.groups)?;
        let c_out = per_group * self.groups;
        check_groups(self.groups, c_in, c_out)?;
        if w_in != c_in {
            return Err(ShapeError::ChannelMismatch { expected: w_in, per_group: w_in / self.groups, groups: self.groups, got: c_in });
        }
        check_bias(bias, c_out)?;
        let size = Hw::new(in_h, in_w);
        let kernel = Hw::new(k_h, k_w);
        let mut out = [0; 2];
        for axis in 0..2 {
            let (n, k, s, p, d, op) = (
                axes(size)[axis],
                axes(kernel)[axis],
                axes(self.stride)[axis],
                axes(self.padding)[axis],
                axes(self.dilation)[axis],
                axes(self.output_padding)[axis],
            );
            let limit = s.max(d);
            if op >= limit {
                return Err(ShapeError::OutputPaddingTooLarge { axis: AXES[axis], output_padding: op, stride: s, dilation: d, limit });
            }
            out[axis] = conv_transpose_output_size(n, k, s, p, d, op).ok_or(ShapeError::TransposedOutputEmpty {
                axis: AXES[axis],
                size: n,
                stride: s,
                padding: p,
                effective: effective_kernel(k, d),
                output_padding: op,
                value: transposed_size_signed(n, k, s, p, d, op),
            })?;
        }
        let geometry = WindowGeometry {
            kind: ConvKind::Transposed,
            batch,
            c_in,
            c_out,
            input: size,
            output: Hw::new(out[0], out[1]),
            kernel,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            groups: self.groups,
        };
        check_output_elements(&geometry)?;
        Ok(geometry)
    }
}

impl Pool2dParams {
    /// Validates these parameters against an NCHW input and resolves every size. Like PyTorch,
    /// padding may be at most half the kernel, so no window lies wholly in padding.
    pub fn geometry(&self, input: &[usize]) -> Result<WindowGeometry, ShapeError> {
        let [batch, channels, in_h, in_w] = rank4("input", input, "N, C, H, W")?;
        check_nonzero("kernel", self.kernel)?;
        check_nonzero("stride", self.stride)?;
        check_nonzero("dilation", self.dilation)?;
        check_magnitude("padding", self.padding)?;
        for (axis, padding, kernel) in [("H", self.padding.h, self.kernel.h), ("W", self.padding.w, self.kernel.w)] {
            if padding > kernel / 2 {
                return Err(ShapeError::PoolPaddingTooLarge { axis, padding, kernel });
            }
        }
        let size = Hw::new(in_h, in_w);
        let output = window_output(size, self.kernel, self.stride, self.padding, self.dilation)?;
        Ok(WindowGeometry {
            kind: ConvKind::MaxPool,
            batch,
            c_in: channels,
            c_out: channels,
            input: size,
            output,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            groups: channels,
        })
    }
}

/// Global average pooling (PyTorch's `AdaptiveAvgPool2d(1)`) as a window op: one window, the
/// whole image, per channel; the output is `[N, C, 1, 1]`.
pub fn global_average_pool(input: &[usize]) -> Result<WindowGeometry, ShapeError> {
    let [batch, channels, in_h, in_w] = rank4("input", input, "N, C, H, W")?;
    let size = Hw::new(in_h, in_w);
    Ok(WindowGeometry {
        kind: ConvKind::AvgPool,
        batch,
        c_in: channels,
        c_out: channels,
        input: size,
        output: Hw::square(1),
        kernel: size,
        stride: size,
        padding: Hw::square(0),
        dilation: Hw::square(1),
        groups: channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hw_parses_one_or_two_numbers() {
        assert_eq!("3".parse::<Hw>(), Ok(Hw::square(3)));
        assert_eq!("2, 5".parse::<Hw>(), Ok(Hw::new(2, 5)));
        assert!("2,x".parse::<Hw>().is_err());
        assert!("-1".parse::<Hw>().is_err());
        assert_eq!("65x33".parse::<Hw>(), Ok(Hw::new(65, 33)));
        assert_eq!("65X33".parse::<Hw>(), Ok(Hw::new(65, 33)));
        assert!("65x".parse::<Hw>().is_err());
        assert!("6,5x3".parse::<Hw>().is_err());
    }
}
