use std::ops::Range;

use rayon::prelude::*;

use super::implicit_gemm::{correlate, Axis, Correlation, GemmKernel, Output, PackedWeights, WeightStrides, Weights};
use super::{intersect, positions_inside, sgemm, sgemm_strided, tap_position, Epilogue, TapSkipping};
use crate::shape::WindowGeometry;

/// Direct-loop convolution accumulating in f64: slow, simple, and the gold standard.
pub fn conv2d_reference(g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let mut out = Vec::with_capacity(g.output_shape().iter().product());
    for n in 0..g.batch {
        for co in 0..g.c_out {
            let group = co / cog;
            for oy in 0..g.output.h {
                for ox in 0..g.output.w {
                    let mut acc = bias.map_or(0.0, |b| b[co] as f64);
                    for ci_local in 0..cig {
                        let ci = group * cig + ci_local;
                        for ky in 0..g.kernel.h {
                            let Some(iy) = tap_position(oy * g.stride.h, ky, g.dilation.h, g.padding.h, g.input.h) else { continue };
                            for kx in 0..g.kernel.w {
                                let Some(ix) = tap_position(ox * g.stride.w, kx, g.dilation.w, g.padding.w, g.input.w) else { continue };
                                let x = input[((n * g.c_in + ci) * g.input.h + iy) * g.input.w + ix];
                                let w = weight[((co * cig + ci_local) * g.kernel.h + ky) * g.kernel.w + kx];
                                acc += x as f64 * w as f64;
                            }
                        }
                    }
                    out.push(acc as f32);
                }
            }
        }
    }
    out
}

/// Where [`TapSkipping::Auto`] computes tap by tap (see [`conv2d`]): where the products with
/// data are at most this share of the nominal ones, on maps of at least this many output pixels
/// (BENCHMARKS.md, "Skipping padding taps on the CPU fast path"). Each tap's product has K = the
/// group's input channels and N = its pixels, so on smaller maps it runs further from the
/// SGEMM's speed than the plain path's one product, and must save more to pay for itself.
pub const SKIP_BELOW: [(usize, f64); 3] = [(1600, 0.9), (800, 0.8), (256, 0.7)];

/// ... and where skipping saves at least this many FLOPs per tap that reads data, in each sample's
/// group: below, the fixed costs of a product per tap (tens of microseconds each) outweigh what
/// they save.
pub const SKIP_MIN_SAVED_PER_TAP: u64 = 8_000_000;

/// A kernel tap and the rectangle of output pixels for which it reads inside the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapRectangle {
    pub ky: usize,
    pub kx: usize,
    pub rows: Range<usize>,
    pub cols: Range<usize>,
}

impl TapRectangle {
    pub fn pixels(&self) -> usize {
        self.rows.len() * self.cols.len()
    }
}

/// The plan of tap skipping: every tap that reads data for some output pixel, with those
/// pixels. Per axis, the positions whose tap lands inside the input are one range (the taps
/// are evenly spaced), so a tap's pixels are a rectangle, and the rectangles add up to exactly
/// the products with data ([`WindowGeometry::useful_flops`]).
pub fn tap_rectangles(g: &WindowGeometry) -> Vec<TapRectangle> {
    let mut plan = Vec::new();
    for ky in 0..g.kernel.h {
        let rows = intersect(&(0..g.output.h), &positions_inside(ky, g.stride.h, g.dilation.h, g.padding.h, g.input.h));
        for kx in 0..g.kernel.w {
            let cols = intersect(&(0..g.output.w), &positions_inside(kx, g.stride.w, g.dilation.w, g.padding.w, g.input.w));
            if !rows.is_empty() && !cols.is_empty() {
                plan.push(TapRectangle { ky, kx, rows: rows.clone(), cols });
            }
        }
    }
    plan
}

/// Whether `skipping` sends `g` tap by tap.
pub fn skips_taps(g: &WindowGeometry, skipping: TapSkipping) -> bool {
    match skipping {
        TapSkipping::Off => false,
        TapSkipping::Always => true,
        TapSkipping::Auto => {
            let pixels = g.output.h * g.output.w;
            let Some(&(_, share)) = SKIP_BELOW.iter().find(|&&(at_least, _)| pixels >= at_least) else { return false };
            let slabs = (g.batch * g.groups) as u64;
            let taps = tap_rectangles(g).len() as u64;
            let saved = g.flops() - g.useful_flops();
            saved >= SKIP_MIN_SAVED_PER_TAP * taps * slabs && g.useful_flops() as f64 <= share * g.flops() as f64
        }
    }
}

/// The fast convolution on CPUs with AVX2 or AVX-512 ([`GemmKernel::from_env`]): Winograd's
/// F(2×2, 3×3) on wide 3×3 stride-1 layers ([`winograd_applies`](super::winograd_applies)),
/// else the packed implicit GEMM where each group has enough output channels to fill its
/// tiles; elsewhere [`conv2d_sgemm`].
pub fn conv2d(g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>, skipping: TapSkipping) -> Vec<f32> {
    conv2d_on(g, input, weight, bias, skipping, GemmKernel::from_env())
}

/// [`conv2d`] on the given micro-kernel, or (`None`) on [`conv2d_sgemm`].
pub fn conv2d_on(g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>, skipping: TapSkipping, kernel: Option<GemmKernel>) -> Vec<f32> {
    conv2d_with_epilogue(g, input, weight, bias, Epilogue::NONE, skipping, kernel)
}

/// [`conv2d_on`] followed by a network's `epilogue` (its residual `g`'s output shape): the
/// implicit GEMM applies it as it stores each tile, Winograd as it transforms each tile's sums
/// back, the SGEMM path in a pass of its own.
pub fn conv2d_with_epilogue(g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>, epilogue: Epilogue, skipping: TapSkipping, kernel: Option<GemmKernel>) -> Vec<f32> {
    match kernel {
        Some(kernel) if super::winograd::winograd_applies(g) => super::winograd::conv2d_winograd(g, input, weight, bias, epilogue, kernel),
        Some(kernel) if uses_implicit_gemm(g, skipping) => conv2d_implicit(kernel, g, input, weight, bias, Destination::Fresh(epilogue), skipping),
        _ => {
            let mut out = conv2d_sgemm(g, input, weight, bias, skipping);
            epilogue.apply(&mut out);
            out
        }
    }
}

/// [`conv2d_with_epilogue`] with the residual `residual` (then the ReLU where `relu`), which
/// the implicit GEMM adds its products onto in the residual's own buffer, returned as the
/// output: a ResNet's last layer of a block, whose residual nothing reads after it. A buffer of
/// its own would be read from memory before each store (tens of MB per layer), as well as the
/// residual.
#[allow(clippy::too_many_arguments)] // the convolution, its operands and the epilogue's
pub fn conv2d_onto(g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>, residual: Vec<f32>, relu: bool, skipping: TapSkipping, kernel: Option<GemmKernel>) -> Vec<f32> {
    assert_eq!(residual.len(), g.output_shape().iter().product::<usize>(), "the residual has the output's shape");
    match kernel {
        Some(kernel) if !super::winograd::winograd_applies(g) && uses_implicit_gemm(g, skipping) => conv2d_implicit(kernel, g, input, weight, bias, Destination::Onto(residual, relu), skipping),
        _ => conv2d_with_epilogue(g, input, weight, bias, Epilogue { residual: Some(&residual), relu }, skipping, kernel),
    }
}

/// Where [`conv2d_implicit`] writes: a new buffer with this epilogue, or onto a residual (then
/// the ReLU where true), in its buffer.
enum Destination<'a> {
    Fresh(Epilogue<'a>),
    Onto(Vec<f32>, bool),
}

/// Whether [`conv2d`] takes the implicit GEMM: where a group's output channels fill most of a
/// tile (depthwise and narrow groups would multiply zeros).
pub fn uses_implicit_gemm(g: &WindowGeometry, _skipping: TapSkipping) -> bool {
    g.c_out_per_group() >= 4
}

/// The implicit GEMM, group by group (weights packed once per group) and sample by sample,
/// each correlation split over the threads and writing its own slab of the output (bias,
/// products and epilogue in one store per element).
fn conv2d_implicit(kernel: GemmKernel, g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>, destination: Destination, skipping: TapSkipping) -> Vec<f32> {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let taps = g.kernel.h * g.kernel.w;
    let (in_plane, pixels) = (g.input.h * g.input.w, g.output.h * g.output.w);
    let len = g.batch * g.c_out * pixels;
    let (mut out, epilogue, onto) = match destination {
        Destination::Fresh(epilogue) => (Vec::with_capacity(len), epilogue, false),
        Destination::Onto(residual, relu) => (residual, Epilogue { residual: None, relu }, true),
    };
    let rows = Axis::forward(g.kernel.h, g.stride.h, g.dilation.h, g.padding.h, g.input.h, g.output.h);
    let cols = Axis::forward(g.kernel.w, g.stride.w, g.dilation.w, g.padding.w, g.input.w, g.output.w);
    // K is tap-major (all channels of one tap, then the next), so that a tap skipped is a run of K.
    let all_taps: Vec<usize> = (0..taps).collect();
    let strides = WeightStrides { row: cig * taps, tap: 1, channel: taps };
    for group in 0..g.groups {
        let w = &weight[group * cog * cig * taps..][..cog * cig * taps];
        let packed;
        // A 1×1 kernel's weights `[cog, cig]` are A as it is, read in place.
        let a = if taps == 1 {
            Weights::Rows { data: w, m: cog, k: cig }
        } else {
            packed = PackedWeights::new(kernel, cog, cig, &all_taps, w, strides);
            Weights::Packed(&packed)
        };
        for n in 0..g.batch {
            let c = Correlation {
                rows: rows.clone(),
                cols: cols.clone(),
                channels: cig,
                input: &input[(n * g.c_in + group * cig) * in_plane..][..cig * in_plane],
                skip_padding: skipping != TapSkipping::Off,
            };
            let slab = (n * g.c_out + group * cog) * pixels..(n * g.c_out + (group + 1) * cog) * pixels;
            let group_bias = bias.map(|b| &b[group * cog..][..cog]);
            let residual = epilogue.residual.map(|r| &r[slab.clone()]);
            let slab = if onto { Output::Onto(&mut out[slab]) } else { Output::Fresh(&mut out.spare_capacity_mut()[slab]) };
            correlate(kernel, &c, a, group_bias, Epilogue { residual, ..epilogue }, slab);
        }
    }
    if !onto {
        // SAFETY: the slabs of all (sample, group) pairs cover the output, and `correlate`
        // writes every element of its slab.
        unsafe { out.set_len(len) };
    }
    out
}

/// im2col + SGEMM convolution, parallel over (batch, group). With `skipping`, a convolution
/// whose taps often read only padding (a dilation large next to the map) runs tap by tap
/// instead: one SGEMM per tap over the pixels it reads data for ([`tap_rectangles`]).
pub fn conv2d_sgemm(g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>, skipping: TapSkipping) -> Vec<f32> {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let in_plane = g.input.h * g.input.w;
    let pixels = g.output.h * g.output.w;
    let taps = g.kernel.h * g.kernel.w;
    let depth = cig * taps; // the GEMM's K
    let pointwise = taps == 1 && g.stride == crate::shape::Hw::square(1) && g.padding == crate::shape::Hw::square(0);
    let plan = skips_taps(g, skipping).then(|| tap_rectangles(g));
    // Tap by tap, each tap's weights `[cog, cig]` are read many times by its SGEMM: from a
    // tap-major copy those reads are contiguous (the SGEMMs measured ~10% faster), where the
    // products are many enough next to the weights to pay for the copy; else in place, strided.
    let tap_major = plan
        .as_ref()
        .filter(|plan| plan.iter().map(TapRectangle::pixels).sum::<usize>() * g.batch >= REORDER_PIXELS_PER_TAP * plan.len())
        .map(|_| tap_major_weights(g, weight, TAP_MAJOR.take()));
    let mut out = vec![0.0f32; g.output_shape().iter().product()];
    out.par_chunks_mut(cog * pixels).enumerate().for_each(|(slab, out_slab)| {
        let (n, group) = (slab / g.groups, slab % g.groups);
        let x = &input[(n * g.c_in + group * cig) * in_plane..][..cig * in_plane];
        let w = &weight[group * cog * depth..][..cog * depth];
        if let Some(plan) = &plan {
            let weights = match &tap_major {
                Some(t) => TapWeights::TapMajor(&t[group * cog * depth..][..cog * depth]),
                None => TapWeights::InPlace(w),
            };
            conv2d_by_tap(g, plan, x, weights, out_slab);
        } else if pointwise {
            // A 1×1 stride-1 unpadded conv is already a GEMM on the input plane.
            sgemm(cog, depth, pixels, w, depth, 1, x, out_slab);
        } else {
            // Taken out, not borrowed: while im2col and the GEMM wait for their parallel parts,
            // rayon may run another slab on this thread, which then takes its own matrix.
            let mut cols = COLUMNS.take();
            im2col(g, x, cig, &mut cols);
            sgemm(cog, depth, pixels, w, depth, 1, &cols, out_slab);
            COLUMNS.set(cols);
        }
        if let Some(b) = bias {
            for (co_local, row) in out_slab.chunks_mut(pixels).enumerate() {
                let value = b[group * cog + co_local];
                row.iter_mut().for_each(|v| *v += value);
            }
        }
    });
    if let Some(t) = tap_major {
        TAP_MAJOR.set(t);
    }
    out
}

/// Where [`conv2d_by_tap`] reads each tap's weights from.
#[derive(Clone, Copy)]
enum TapWeights<'a> {
    /// PyTorch's `[cog, cig, kH, kW]`: a tap's weights one every kH·kW floats.
    InPlace(&'a [f32]),
    /// [`tap_major_weights`]' `[cog, kH, kW, cig]`: a tap's weights contiguous per channel.
    TapMajor(&'a [f32]),
}

/// The tap-major copy of the weights pays from this many pixels per tap (of all samples): at
/// 65×65 (ASPP) it saves more than it costs, for the 21×21 ASPP's centre tap alone it would
/// double the time.
const REORDER_PIXELS_PER_TAP: usize = 1024;

/// The weight `[C_out, C_in/groups, kH, kW]` reordered to `[C_out, kH, kW, C_in/groups]`.
/// Written into `reordered`, a buffer kept per thread (faulting in a fresh one cost as much as
/// the copy).
fn tap_major_weights(g: &WindowGeometry, weight: &[f32], mut reordered: Vec<f32>) -> Vec<f32> {
    let (cig, taps) = (g.c_in_per_group(), g.kernel.h * g.kernel.w);
    reordered.resize(weight.len(), 0.0);
    reordered.par_chunks_mut(cig * taps).zip(weight.par_chunks(cig * taps)).for_each(|(dst, src)| {
        for (t, dst) in dst.chunks_mut(cig).enumerate() {
            dst.iter_mut().zip(src[t..].iter().step_by(taps)).for_each(|(d, &v)| *d = v);
        }
    });
    reordered
}

/// One sample's group, tap by tap: for each tap of `plan`, `out[:, its pixels] += W[:, :, ky, kx]
/// · x[:, what it reads]`, an SGEMM with K = the group's input channels over that tap's
/// rectangle alone. At stride 1 down the rows, the taps of one kernel column read the same input
/// columns, so their inputs are consecutive rows of one copy of those columns (every input row
/// of them, gathered once per kernel column), or of the planes themselves where the column
/// reads every input column in order (a "same" convolution's centre column); at other strides
/// each tap's rectangle is unfolded on its own (its im2col). The products go straight into the
/// output where the rectangle is whole output rows, else into a scratch matrix added into place.
fn conv2d_by_tap(g: &WindowGeometry, plan: &[TapRectangle], x: &[f32], weights: TapWeights, out_slab: &mut [f32]) {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let taps = g.kernel.h * g.kernel.w;
    let depth = cig * taps;
    let (pixels, in_plane) = (g.output.h * g.output.w, g.input.h * g.input.w);
    let threads = gemm::Parallelism::Rayon(0);
    let mut gathered = COLUMNS.take();
    let mut results = RESULTS.take();
    for kx in 0..g.kernel.w {
        let column: Vec<&TapRectangle> = plan.iter().filter(|r| r.kx == kx).collect();
        let Some(first) = column.first() else { continue };
        // Every tap of the column reads data for the same output columns.
        let cols = first.cols.clone();
        let gather = ColumnGather::new(g, kx, cols.clone());
        let by_rows = g.stride.h == 1;
        let in_place = g.stride.w == 1 && g.input.w == g.output.w && kx * g.dilation.w == g.padding.w;
        if by_rows && !in_place {
            gathered.resize(cig * g.input.h * cols.len(), 0.0);
            gathered.par_chunks_mut(g.input.h * cols.len()).enumerate().for_each(|(ci, dst)| {
                let plane = &x[ci * in_plane..][..in_plane];
                for (row, d) in plane.chunks(g.input.w).zip(dst.chunks_mut(cols.len())) {
                    gather.row(row, d);
                }
            });
        }
        for r in column {
            let n = r.pixels();
            let (b, b_row_stride) = if by_rows {
                let iy = r.rows.start + r.ky * g.dilation.h - g.padding.h;
                if in_place {
                    (&x[iy * g.input.w..], in_plane)
                } else {
                    (&gathered[iy * cols.len()..], g.input.h * cols.len())
                }
            } else {
                gathered.resize(cig * n, 0.0);
                gathered.par_chunks_mut(n).enumerate().for_each(|(ci, dst)| {
                    let plane = &x[ci * in_plane..][..in_plane];
                    for (oy, d) in r.rows.clone().zip(dst.chunks_mut(cols.len())) {
                        let iy = oy * g.stride.h + r.ky * g.dilation.h - g.padding.h;
                        gather.row(&plane[iy * g.input.w..][..g.input.w], d);
                    }
                });
                (&gathered[..], n)
            };
            let tap = r.ky * g.kernel.w + r.kx;
            let a = match weights {
                TapWeights::InPlace(w) => (&w[tap..], depth, taps),
                TapWeights::TapMajor(w) => (&w[tap * cig..], depth, 1),
            };
            if cols == (0..g.output.w) {
                let dst = &mut out_slab[r.rows.start * g.output.w..];
                sgemm_strided(cog, cig, n, a, (b, b_row_stride), (dst, pixels), true, threads);
            } else {
                results.resize(cog * n, 0.0);
                sgemm_strided(cog, cig, n, a, (b, b_row_stride), (&mut results, n), false, threads);
                out_slab.par_chunks_mut(pixels).zip(results.par_chunks(n)).for_each(|(plane, src)| {
                    for (y, row) in r.rows.clone().zip(src.chunks(cols.len())) {
                        let dst = &mut plane[y * g.output.w + cols.start..][..cols.len()];
                        dst.iter_mut().zip(row).for_each(|(o, v)| *o += v);
                    }
                });
            }
        }
    }
    COLUMNS.set(gathered);
    RESULTS.set(results);
}

/// Where tap column `kx` reads one input row for the output columns `cols`: `row` gives the
/// positions inside the input, zeros the others (padding).
struct ColumnGather {
    /// Output columns before the first, and how many, whose tap lands inside the row.
    before: usize,
    len: usize,
    /// The input column of the first of them.
    first: usize,
    stride: usize,
}

impl ColumnGather {
    fn new(g: &WindowGeometry, kx: usize, cols: Range<usize>) -> Self {
        let inside = intersect(&cols, &positions_inside(kx, g.stride.w, g.dilation.w, g.padding.w, g.input.w));
        // Only used where `inside` is not empty.
        let first = (inside.start * g.stride.w + kx * g.dilation.w).wrapping_sub(g.padding.w);
        ColumnGather { before: inside.start - cols.start, len: inside.len(), first, stride: g.stride.w }
    }

    /// Fills `dst` (one output row's columns) from input row `row`.
    fn row(&self, row: &[f32], dst: &mut [f32]) {
        if self.len == 0 {
            dst.fill(0.0);
            return;
        }
        dst[..self.before].fill(0.0);
        dst[self.before + self.len..].fill(0.0);
        let (d, src) = (&mut dst[self.before..self.before + self.len], &row[self.first..]);
        if self.stride == 1 {
            d.copy_from_slice(&src[..self.len]);
        } else {
            d.iter_mut().enumerate().for_each(|(i, v)| *v = src[i * self.stride]);
        }
    }
}


/// One im2col row: what tap `(ky, kx)` reads from `plane` for the output pixels `rows × cols`,
/// row by row into `dst`; pixels whose tap lands in the padding get zeros.
fn gather_tap(g: &WindowGeometry, plane: &[f32], ky: usize, kx: usize, rows: Range<usize>, cols: Range<usize>, dst: &mut [f32]) {
    let inside_rows = intersect(&rows, &positions_inside(ky, g.stride.h, g.dilation.h, g.padding.h, g.input.h));
    let gather = ColumnGather::new(g, kx, cols.clone());
    for (oy, d) in rows.zip(dst.chunks_mut(cols.len())) {
        if inside_rows.contains(&oy) {
            let iy = oy * g.stride.h + ky * g.dilation.h - g.padding.h;
            gather.row(&plane[iy * g.input.w..][..g.input.w], d);
        } else {
            d.fill(0.0);
        }
    }
}

thread_local! {
    /// The im2col matrix, kept per thread between calls: allocating (and faulting in) tens of
    /// megabytes for every convolution cost as much as the arithmetic.
    static COLUMNS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The tap-major copy of the weights (on the thread that calls the convolution).
    static TAP_MAJOR: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The tap-by-tap path's products of one tap, before they are added into place.
    static RESULTS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Unfolds one sample's group of channels into `cols`, a `[cig·kH·kW, OH·OW]` matrix, rows in
/// parallel; every element is written (taps that fall into the padding are zero).
fn im2col(g: &WindowGeometry, x: &[f32], cig: usize, cols: &mut Vec<f32>) {
    let pixels = g.output.h * g.output.w;
    cols.resize(cig * g.kernel.h * g.kernel.w * pixels, 0.0);
    cols.par_chunks_mut(pixels).enumerate().for_each(|(row, col_row)| {
        let kx = row % g.kernel.w;
        let ky = (row / g.kernel.w) % g.kernel.h;
        let ci = row / (g.kernel.w * g.kernel.h);
        let plane = &x[ci * g.input.h * g.input.w..][..g.input.h * g.input.w];
        gather_tap(g, plane, ky, kx, 0..g.output.h, 0..g.output.w, col_row);
    });
}
