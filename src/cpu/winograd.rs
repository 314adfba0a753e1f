//! Winograd's minimal filtering F(2×2, 3×3) for 3×3 stride-1 convolutions at any dilation.
//!
//! A convolution dilated by `d` is an undilated one on each of its phase grids: outputs `p, p +
//! d, p + 2d, …` read inputs `p − padding + j·d`. So a *tile* of 2×2 outputs `d` apart comes
//! from a 4×4 input *patch* `d` apart. Each patch (per input channel) is transformed into 16
//! values, each output channel's 3×3 weights (per input channel) into 16 more; the 16
//! element-wise products, summed over the input channels, are 16 GEMMs (`C_out × C_in` by `C_in
//! × tiles`) on the packed implicit GEMM, and each tile's 16 sums are transformed back into its
//! 2×2 outputs. That is 16 multiply-adds per 4 outputs and input channel where the direct
//! convolution does 36; the transforms are additions, per tile and channel.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::implicit_gemm::{correlate, Axis, Correlation, GemmKernel, PackedWeights, WeightStrides};
use super::Epilogue;
use crate::shape::{ConvKind, Hw, WindowGeometry};

/// Transformed values per tile: a 4×4 patch.
const POINTS: usize = 16;

/// Whether [`conv2d_winograd`] computes `g`, and the fast convolution sends it there: a 3×3
/// stride-1 convolution whose groups have enough channels for the GEMMs to run near their peak,
/// and whose tiles are not mostly past the map or over padding (a dilation near the map's size
/// leaves phase grids of one or two outputs, and the direct path leaves out the taps that read
/// only padding): there the GEMMs do at most this share of the direct path's multiply-adds.
pub fn winograd_applies(g: &WindowGeometry) -> bool {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    if g.kind != ConvKind::Forward || g.kernel != Hw::square(3) || g.stride != Hw::square(1) || cig < MIN_CHANNELS || cog < MIN_CHANNELS || !enabled() {
        return false;
    }
    let tiles = (tile_axis(g.output.h, g.input.h, g.dilation.h, g.padding.h).origins.len() * tile_axis(g.output.w, g.input.w, g.dilation.w, g.padding.w).origins.len()) as u64;
    let products = (g.batch * g.groups * POINTS * cig * cog) as u64 * tiles * 2;
    (products as f64) <= MAX_SHARE * g.useful_flops() as f64
}

/// Channels per group (in and out) below which the GEMMs' K or M is too short to pay for the
/// transforms' passes over memory.
const MIN_CHANNELS: usize = 256;
/// The largest share of the direct path's useful multiply-adds that the GEMMs may do.
const MAX_SHARE: f64 = 0.7;

/// `$ATROUS_CPU_WINOGRAD=0` sends every convolution to the direct paths (a switch for
/// measuring). Read once.
fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("ATROUS_CPU_WINOGRAD").as_deref() != Ok("0"))
}

/// One axis's tiles, phase grid by phase grid: tile `i` covers outputs `origins[i]` and
/// `origins[i] + dilation` (the second may lie past the map) and reads the inputs
/// `patches[i][j]` for `j` in `0..4`, where `input` (one past the row) stands for padding.
struct TileAxis {
    origins: Vec<usize>,
    patches: Vec<[usize; 4]>,
}

fn tile_axis(output: usize, input: usize, dilation: usize, padding: usize) -> TileAxis {
    let origins: Vec<usize> = (0..dilation.min(output)).flat_map(|phase| (phase..output).step_by(2 * dilation)).collect();
    let patches = origins
        .iter()
        .map(|&o| std::array::from_fn(|j| (o + j * dilation).checked_sub(padding).filter(|&i| i < input).unwrap_or(input)))
        .collect();
    TileAxis { origins, patches }
}

/// `Bᵀ·v` for the four values of a patch's row or column.
#[inline(always)]
fn transform_patch([v0, v1, v2, v3]: [f32; 4]) -> [f32; 4] {
    [v0 - v2, v1 + v2, v2 - v1, v1 - v3]
}

/// `G·w` for the three weights of a kernel's row or column.
fn transform_weights([w0, w1, w2]: [f32; 3]) -> [f32; 4] {
    [w0, 0.5 * (w0 + w1 + w2), 0.5 * (w0 - w1 + w2), w2]
}

/// `Aᵀ·m`: the two outputs of four sums.
#[inline(always)]
fn transform_sums([m0, m1, m2, m3]: [f32; 4]) -> [f32; 2] {
    [m0 + m1 + m2, m1 - m2 - m3]
}

/// A raw pointer that the tasks of the input transform share, each writing its own channel's
/// rows of the transformed patches.
#[derive(Clone, Copy)]
struct Patches(*mut f32);
// SAFETY: see `transform_input`: every task writes disjoint elements, and nothing reads them
// until all tasks are done.
unsafe impl Send for Patches {}
unsafe impl Sync for Patches {}

thread_local! {
    /// The transformed patches and the GEMMs' sums, kept between calls (as the implicit GEMM
    /// keeps its packed blocks): tens of MB that would be faulted in afresh on every call.
    static BUFFERS: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// The 3×3 stride-1 convolution `g` with its bias and `epilogue` (residual laid out as the
/// output) by Winograd's F(2×2, 3×3), the GEMMs on `kernel`, group by group and sample by
/// sample. [`conv2d`](super::conv2d) sends here the convolutions [`winograd_applies`] to; this
/// takes any channel count (tests use few).
///
/// # Panics
/// If `g` is not a 3×3 stride-1 convolution.
pub fn conv2d_winograd(g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>, epilogue: Epilogue, kernel: GemmKernel) -> Vec<f32> {
    assert!(
        g.kind == ConvKind::Forward && g.kernel == Hw::square(3) && g.stride == Hw::square(1),
        "Winograd F(2×2, 3×3) computes forward 3×3 stride-1 convolutions, not a {}×{} kernel at stride {}",
        g.kernel.h,
        g.kernel.w,
        g.stride
    );
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let (in_plane, pixels) = (g.input.h * g.input.w, g.output.h * g.output.w);
    let rows = tile_axis(g.output.h, g.input.h, g.dilation.h, g.padding.h);
    let cols = tile_axis(g.output.w, g.input.w, g.dilation.w, g.padding.w);
    let tiles = rows.origins.len() * cols.origins.len();
    let len = g.batch * g.c_out * pixels;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    // The 16 GEMMs see the tiles as the pixels of a 1×1 convolution.
    let pointwise = |n: usize| Axis { stride: 1, input: n, output: n, offsets: vec![0] };
    // Taken out of the thread-local, not borrowed: a rayon worker waiting on these GEMMs may
    // run another convolution's task meanwhile.
    let (mut patches, mut sums) = BUFFERS.take();
    let (patches_used, sums_used) = (POINTS * cig * tiles, POINTS * cog * tiles);
    grow(&mut patches, patches_used);
    grow(&mut sums, sums_used);
    for group in 0..g.groups {
        let transformed = transform_weights_of(&weight[group * cog * cig * 9..][..cog * cig * 9]);
        for n in 0..g.batch {
            let x = &input[(n * g.c_in + group * cig) * in_plane..][..cig * in_plane];
            transform_input(kernel, x, g.input.h, g.input.w, &rows, &cols, cig, &mut patches[..patches_used]);
            // The 16 GEMMs at once, so that the threads share out their blocks evenly.
            let patches = &patches[..patches_used];
            sums[..sums_used].par_chunks_exact_mut(cog * tiles).enumerate().for_each(|(point, point_sums)| {
                let a = PackedWeights::new(kernel, cog, cig, &[0], &transformed[point..], WeightStrides { row: cig * POINTS, tap: 0, channel: POINTS });
                let c = Correlation { rows: pointwise(1), cols: pointwise(tiles), channels: cig, input: &patches[point * cig * tiles..][..cig * tiles], skip_padding: false };
                // SAFETY: `f32` and `MaybeUninit<f32>` share their layout, and every value
                // written is initialised.
                let point_sums = unsafe { &mut *(point_sums as *mut [f32] as *mut [MaybeUninit<f32>]) };
                correlate(kernel, &c, &a, None, Epilogue::NONE, point_sums);
            });
            let slab = (n * g.c_out + group * cog) * pixels..(n * g.c_out + (group + 1) * cog) * pixels;
            let group_bias = bias.map(|b| &b[group * cog..][..cog]);
            let residual = epilogue.residual.map(|r| &r[slab.clone()]);
            let outputs = Outputs { out: g.output, rows: &rows, cols: &cols, dilation: g.dilation };
            outputs.transform(kernel, &sums[..sums_used], group_bias, Epilogue { residual, ..epilogue }, &mut out.spare_capacity_mut()[slab]);
        }
    }
    BUFFERS.set((patches, sums));
    // SAFETY: the slabs of all (sample, group) pairs cover the output, and `Outputs::transform`
    // writes every element of its slab.
    unsafe { out.set_len(len) };
    out
}

/// Grows (never shrinks) a kept buffer to `len`.
fn grow(buffer: &mut Vec<f32>, len: usize) {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
}

/// `U[co][ci][point] = (G·w[co][ci]·Gᵀ)[point]` for a group's `[cog, cig, 3, 3]` weights.
fn transform_weights_of(weight: &[f32]) -> Vec<f32> {
    let mut transformed = vec![0.0f32; weight.len() / 9 * POINTS];
    transformed.par_chunks_exact_mut(POINTS).zip(weight.par_chunks_exact(9)).for_each(|(u, w)| {
        // Along the kernel's columns, then its rows.
        let columns: [[f32; 4]; 3] = std::array::from_fn(|kx| transform_weights([w[kx], w[3 + kx], w[6 + kx]]));
        for a in 0..4 {
            u[a * 4..][..4].copy_from_slice(&transform_weights([columns[0][a], columns[1][a], columns[2][a]]));
        }
    });
    transformed
}

/// Tiles per step of the transforms: their arithmetic runs on arrays this long, which the
/// compiler turns into vector instructions as wide as the caller enables.
const LANES: usize = 16;

/// `V[point][c][tile] = (Bᵀ·patch·B)[point]` for each of `channels` planes of `x` (`height ×
/// width`), in parallel over the channels.
#[allow(clippy::too_many_arguments)] // the planes, their tiling and the destination
fn transform_input(kernel: GemmKernel, x: &[f32], height: usize, width: usize, rows: &TileAxis, cols: &TileAxis, channels: usize, patches: &mut [f32]) {
    let tiles = rows.origins.len() * cols.origins.len();
    assert_eq!(patches.len(), POINTS * channels * tiles);
    assert_eq!(x.len(), channels * height * width);
    let dst = Patches(patches.as_mut_ptr());
    x.par_chunks_exact(height * width).enumerate().for_each(|(c, plane)| {
        let dst = dst;
        let plane = PlaneTiles { plane, height, width, rows, cols };
        // SAFETY: `kernel` runs on this CPU; the plane writes only its own channel's values.
        unsafe {
            match kernel {
                GemmKernel::Avx512 => plane.transform_avx512(dst, c, channels),
                GemmKernel::Avx2 => plane.transform_avx2(dst, c, channels),
            }
        }
    });
}

/// One input plane and its tiles.
struct PlaneTiles<'a> {
    plane: &'a [f32],
    height: usize,
    width: usize,
    rows: &'a TileAxis,
    cols: &'a TileAxis,
}

impl PlaneTiles<'_> {
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
    unsafe fn transform_avx512(&self, dst: Patches, c: usize, channels: usize) {
        self.transform(dst, c, channels)
    }

    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
    unsafe fn transform_avx2(&self, dst: Patches, c: usize, channels: usize) {
        self.transform(dst, c, channels)
    }

    /// Writes this plane's (channel `c` of `channels`) transformed patches into `dst`, laid out
    /// `[point][channel][tile]`.
    ///
    /// # Safety
    /// `dst` holds `POINTS × channels × tiles` floats.
    #[inline(always)]
    unsafe fn transform(&self, dst: Patches, c: usize, channels: usize) {
        let (width, columns) = (self.width, self.cols.origins.len());
        let tiles = self.rows.origins.len() * columns;
        // A row of tiles' four patch rows, each with a zero past its end for the columns that
        // read padding (and all zeros for rows that do).
        let mut padded = vec![0.0f32; 4 * (width + 1)];
        for (ry, patch_rows) in self.rows.patches.iter().enumerate() {
            for (i, &y) in patch_rows.iter().enumerate() {
                let row = &mut padded[i * (width + 1)..][..width];
                if y < self.height {
                    row.copy_from_slice(&self.plane[y * width..][..width]);
                } else {
                    row.fill(0.0);
                }
            }
            for start in (0..columns).step_by(LANES) {
                let len = LANES.min(columns - start);
                let mut d = [[0.0f32; LANES]; POINTS];
                for (lane, xs) in self.cols.patches[start..start + len].iter().enumerate() {
                    for i in 0..4 {
                        for j in 0..4 {
                            d[i * 4 + j][lane] = padded[i * (width + 1) + xs[j]];
                        }
                    }
                }
                let mut v = [[0.0f32; LANES]; POINTS];
                for lane in 0..LANES {
                    // Along the patch's columns (i), then its rows (j).
                    let along_i: [[f32; 4]; 4] = std::array::from_fn(|j| transform_patch(std::array::from_fn(|i| d[i * 4 + j][lane])));
                    for a in 0..4 {
                        let along_j = transform_patch(std::array::from_fn(|j| along_i[j][a]));
                        for b in 0..4 {
                            v[a * 4 + b][lane] = along_j[b];
                        }
                    }
                }
                for (point, v) in v.iter().enumerate() {
                    std::ptr::copy_nonoverlapping(v.as_ptr(), dst.0.add((point * channels + c) * tiles + ry * columns + start), len);
                }
            }
        }
    }
}

/// Where the output transform writes: a map of `out` pixels tiled by `rows` × `cols`.
struct Outputs<'a> {
    out: Hw,
    rows: &'a TileAxis,
    cols: &'a TileAxis,
    dilation: Hw,
}

impl Outputs<'_> {
    /// `out[co] = epilogue(bias[co] + Aᵀ·M[co]·A)` from the sums `M[point][co][tile]`, every
    /// pixel of each of the `out.len() / pixels` planes written, in parallel over the planes.
    fn transform(&self, kernel: GemmKernel, sums: &[f32], bias: Option<&[f32]>, epilogue: Epilogue, out: &mut [MaybeUninit<f32>]) {
        let pixels = self.out.h * self.out.w;
        let tiles = self.rows.origins.len() * self.cols.origins.len();
        let planes = out.len() / pixels;
        assert_eq!(sums.len(), POINTS * planes * tiles);
        out.par_chunks_exact_mut(pixels).enumerate().for_each(|(co, plane)| {
            let sums = OutputSums { sums, planes, co, bias: bias.map_or(0.0, |b| b[co]), epilogue };
            // SAFETY: `kernel` runs on this CPU.
            unsafe {
                match kernel {
                    GemmKernel::Avx512 => self.plane_avx512(&sums, plane),
                    GemmKernel::Avx2 => self.plane_avx2(&sums, plane),
                }
            }
        });
    }

    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
    unsafe fn plane_avx512(&self, sums: &OutputSums, plane: &mut [MaybeUninit<f32>]) {
        self.plane(sums, plane)
    }

    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
    unsafe fn plane_avx2(&self, sums: &OutputSums, plane: &mut [MaybeUninit<f32>]) {
        self.plane(sums, plane)
    }

    /// Output plane `sums.co`, every pixel written.
    #[inline(always)]
    fn plane(&self, sums: &OutputSums, plane: &mut [MaybeUninit<f32>]) {
        let columns = self.cols.origins.len();
        let tiles = self.rows.origins.len() * columns;
        let pixels = plane.len();
        for (ry, &oy) in self.rows.origins.iter().enumerate() {
            for start in (0..columns).step_by(LANES) {
                let len = LANES.min(columns - start);
                let mut m = [[0.0f32; LANES]; POINTS];
                for (point, m) in m.iter_mut().enumerate() {
                    m[..len].copy_from_slice(&sums.sums[(point * sums.planes + sums.co) * tiles + ry * columns + start..][..len]);
                }
                // y[r · 2 + s]: the tile's output (r, s).
                let mut y = [[0.0f32; LANES]; 4];
                for lane in 0..LANES {
                    // Along the patch's rows (a), then its columns (b).
                    let along_a: [[f32; 2]; 4] = std::array::from_fn(|b| transform_sums(std::array::from_fn(|a| m[a * 4 + b][lane])));
                    for r in 0..2 {
                        let along_b = transform_sums(std::array::from_fn(|b| along_a[b][r]));
                        for s in 0..2 {
                            y[r * 2 + s][lane] = along_b[s] + sums.bias;
                        }
                    }
                }
                for (lane, &ox) in self.cols.origins[start..start + len].iter().enumerate() {
                    for r in 0..2 {
                        let oy = oy + r * self.dilation.h;
                        for s in 0..2 {
                            let ox = ox + s * self.dilation.w;
                            if oy < self.out.h && ox < self.out.w {
                                let at = oy * self.out.w + ox;
                                plane[at].write(sums.epilogue.finish(y[r * 2 + s][lane], sums.co * pixels + at));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One output plane's share of the GEMMs' sums `[point][planes][tile]`, with its bias and the
/// epilogue.
struct OutputSums<'a> {
    sums: &'a [f32],
    planes: usize,
    co: usize,
    bias: f32,
    epilogue: Epilogue<'a>,
}
