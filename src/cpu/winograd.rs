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

use super::implicit_gemm::{correlate_packed, GemmKernel, PackedWeights, WeightStrides};
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

/// A raw pointer that parallel tasks share, each writing its own elements of the buffer (in
/// the transforms' `[point][channel][…]` layouts, a channel's are 16 runs far apart).
#[derive(Clone, Copy)]
struct SharedWrites(*mut f32);
// SAFETY: see the users: every task writes disjoint elements, and nothing reads them until all
// tasks are done.
unsafe impl Send for SharedWrites {}
unsafe impl Sync for SharedWrites {}

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
    let tiling = Tiling::new(g);
    let tiles = tiling.tiles;
    let len = g.batch * g.c_out * pixels;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    // Taken out of the thread-local, not borrowed: a rayon worker waiting on these GEMMs may
    // run another convolution's task meanwhile.
    let (mut patches, mut sums) = BUFFERS.take();
    // Each point's patches as its GEMM's packed B: strips of the kernel's width over the tiles.
    let point_patches = tiles.div_ceil(kernel.nr()) * kernel.nr() * cig;
    let (patches_used, sums_used) = (POINTS * point_patches, POINTS * cog * tiles);
    grow(&mut patches, patches_used);
    grow(&mut sums, sums_used);
    for group in 0..g.groups {
        let transformed = transform_weights_of(&weight[group * cog * cig * 9..][..cog * cig * 9], cog, cig);
        for n in 0..g.batch {
            let x = &input[(n * g.c_in + group * cig) * in_plane..][..cig * in_plane];
            transform_input(kernel, x, &tiling, cig, &mut patches[..patches_used]);
            // The 16 GEMMs at once, so that the threads share out their blocks evenly.
            let patches = &patches[..patches_used];
            sums[..sums_used].par_chunks_exact_mut(cog * tiles).enumerate().for_each(|(point, point_sums)| {
                let a = PackedWeights::new(kernel, cog, cig, &[0], &transformed[point * cog * cig..][..cog * cig], WeightStrides { row: cig, tap: 0, channel: 1 });
                // SAFETY: `f32` and `MaybeUninit<f32>` share their layout, and every value
                // written is initialised.
                let point_sums = unsafe { &mut *(point_sums as *mut [f32] as *mut [MaybeUninit<f32>]) };
                correlate_packed(kernel, &patches[point * point_patches..][..point_patches], tiles, &a, point_sums);
            });
            let slab = (n * g.c_out + group * cog) * pixels..(n * g.c_out + (group + 1) * cog) * pixels;
            let group_bias = bias.map(|b| &b[group * cog..][..cog]);
            let residual = epilogue.residual.map(|r| &r[slab.clone()]);
            transform_output(kernel, g, &tiling, &sums[..sums_used], group_bias, Epilogue { residual, ..epilogue }, &mut out.spare_capacity_mut()[slab]);
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

/// `U[point][co][ci] = (G·w[co][ci]·Gᵀ)[point]` for a group's `[cog, cig, 3, 3]` weights, in
/// parallel over the output channels.
fn transform_weights_of(weight: &[f32], cog: usize, cig: usize) -> Vec<f32> {
    let mut transformed = vec![0.0f32; POINTS * cog * cig];
    let dst = SharedWrites(transformed.as_mut_ptr());
    weight.par_chunks_exact(cig * 9).enumerate().for_each(|(co, w)| {
        let dst = dst;
        for (ci, w) in w.chunks_exact(9).enumerate() {
            // Along the kernel's columns, then its rows.
            let columns: [[f32; 4]; 3] = std::array::from_fn(|kx| transform_weights([w[kx], w[3 + kx], w[6 + kx]]));
            for a in 0..4 {
                for (b, u) in transform_weights([columns[0][a], columns[1][a], columns[2][a]]).into_iter().enumerate() {
                    // SAFETY: `(point, co, ci)` lies in `transformed`, and only this task
                    // (output channel `co`) writes it.
                    unsafe { *dst.0.add(((a * 4 + b) * cog + co) * cig + ci) = u };
                }
            }
        }
    });
    transformed
}

/// Tiles per step of the transforms: their arithmetic runs on arrays this long, which the
/// compiler turns into vector instructions as wide as the caller enables. A divisor of every
/// kernel's strip, so that a step's patches go to one strip of the packed B.
const LANES: usize = 16;

/// The tiling of one map: per tile, where its patch reads and where its outputs go.
struct Tiling {
    /// Tiles, row of tiles by row of tiles.
    tiles: usize,
    /// Per tile, then on to whole strips of the widest kernel: the patch's 16 input positions
    /// (row-major) in a plane with a zero appended, which the positions over padding (and
    /// every position of the tiles past the last) read.
    patches: Vec<[u32; POINTS]>,
    /// Per tile, its first output (row, column); the others lie a dilation down and across.
    origins: Vec<(usize, usize)>,
}

impl Tiling {
    fn new(g: &WindowGeometry) -> Self {
        let rows = tile_axis(g.output.h, g.input.h, g.dilation.h, g.padding.h);
        let cols = tile_axis(g.output.w, g.input.w, g.dilation.w, g.padding.w);
        let tiles = rows.origins.len() * cols.origins.len();
        let zero = g.input.h * g.input.w;
        let position = |y: usize, x: usize| if y < g.input.h && x < g.input.w { y * g.input.w + x } else { zero };
        let mut patches: Vec<[u32; POINTS]> = rows
            .patches
            .iter()
            .flat_map(|ys| cols.patches.iter().map(move |xs| std::array::from_fn(|k| position(ys[k / 4], xs[k % 4]) as u32)))
            .collect();
        patches.resize(tiles.next_multiple_of(GemmKernel::Avx512.nr().max(GemmKernel::Avx2.nr())), [zero as u32; POINTS]);
        let origins = rows.origins.iter().flat_map(|&y| cols.origins.iter().map(move |&x| (y, x))).collect();
        Tiling { tiles, patches, origins }
    }
}

/// `V[point][c][tile] = (Bᵀ·patch·B)[point]` for each of `channels` planes of `x`, in parallel
/// over the channels, each point's laid out as its GEMM's packed B ([`PatchLayout`]).
fn transform_input(kernel: GemmKernel, x: &[f32], tiling: &Tiling, channels: usize, patches: &mut [f32]) {
    let layout = PatchLayout { tiles: tiling.tiles, channels, nr: kernel.nr() };
    assert_eq!(patches.len(), POINTS * layout.point_len());
    let plane_len = x.len() / channels;
    assert!(tiling.patches.len() >= layout.tiles.next_multiple_of(layout.nr) && tiling.patches.iter().flatten().all(|&i| i as usize <= plane_len));
    let dst = SharedWrites(patches.as_mut_ptr());
    x.par_chunks_exact(plane_len).enumerate().for_each_init(Vec::new, |extended, (c, plane)| {
        let dst = dst;
        extended.clear();
        extended.extend_from_slice(plane);
        extended.push(0.0);
        // SAFETY: `kernel` runs on this CPU; the plane writes only its own channel's values,
        // and reads only `extended` (every position checked above).
        unsafe {
            match kernel {
                GemmKernel::Avx512 => transform_plane_avx512(extended, tiling, dst, c, &layout),
                GemmKernel::Avx2 => transform_plane_avx2(extended, tiling, dst, c, &layout),
            }
        }
    });
}

/// Where the transformed patches lie: point `p`'s as the packed B of its GEMM (K = the
/// channels, the pixels = the tiles), `[p][strip][channel][nr]`, the last strip's lanes past
/// the tiles zero.
struct PatchLayout {
    tiles: usize,
    channels: usize,
    nr: usize,
}

impl PatchLayout {
    fn point_len(&self) -> usize {
        self.tiles.div_ceil(self.nr) * self.channels * self.nr
    }

    /// Where `(point, channel, tile)` lies; tiles `tile..` of the same strip follow it.
    fn at(&self, point: usize, channel: usize, tile: usize) -> usize {
        point * self.point_len() + (tile / self.nr * self.channels + channel) * self.nr + tile % self.nr
    }
}

#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
unsafe fn transform_plane_avx512(plane: &[f32], tiling: &Tiling, dst: SharedWrites, c: usize, layout: &PatchLayout) {
    transform_plane(plane, tiling, dst, c, layout)
}

#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
unsafe fn transform_plane_avx2(plane: &[f32], tiling: &Tiling, dst: SharedWrites, c: usize, layout: &PatchLayout) {
    transform_plane(plane, tiling, dst, c, layout)
}

/// Writes channel `c`'s transformed patches (from `plane`, with its zero appended) into `dst`,
/// laid out as `layout`, the last strip's lanes past the tiles included (their patches all
/// zero).
///
/// # Safety
/// `dst` holds `POINTS × layout.point_len()` floats; every position of `tiling` lies in `plane`.
#[inline(always)]
unsafe fn transform_plane(plane: &[f32], tiling: &Tiling, dst: SharedWrites, c: usize, layout: &PatchLayout) {
    for first in (0..layout.tiles.next_multiple_of(layout.nr)).step_by(LANES) {
        let mut d = [[0.0f32; LANES]; POINTS];
        for (lane, positions) in tiling.patches[first..first + LANES].iter().enumerate() {
            for (k, &at) in positions.iter().enumerate() {
                d[k][lane] = *plane.get_unchecked(at as usize);
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
            // A step lies in one strip: a few vector moves.
            dst.0.add(layout.at(point, c, first)).cast::<[f32; LANES]>().write_unaligned(*v);
        }
    }
}

/// `out[co] = epilogue(bias[co] + Aᵀ·M[co]·A)` from the sums `M[point][co][tile]`, every pixel
/// of each of the output planes (`out.len() / pixels` of them) written, in parallel over the
/// planes.
fn transform_output(kernel: GemmKernel, g: &WindowGeometry, tiling: &Tiling, sums: &[f32], bias: Option<&[f32]>, epilogue: Epilogue, out: &mut [MaybeUninit<f32>]) {
    let pixels = g.output.h * g.output.w;
    let planes = out.len() / pixels;
    assert_eq!(sums.len(), POINTS * planes * tiling.tiles);
    out.par_chunks_exact_mut(pixels).enumerate().for_each(|(co, plane)| {
        let sums = OutputSums { sums, planes, co, bias: bias.map_or(0.0, |b| b[co]), epilogue };
        // SAFETY: `kernel` runs on this CPU.
        unsafe {
            match kernel {
                GemmKernel::Avx512 => output_plane_avx512(g, tiling, &sums, plane),
                GemmKernel::Avx2 => output_plane_avx2(g, tiling, &sums, plane),
            }
        }
    });
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

#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
unsafe fn output_plane_avx512(g: &WindowGeometry, tiling: &Tiling, sums: &OutputSums, plane: &mut [MaybeUninit<f32>]) {
    output_plane(g, tiling, sums, plane)
}

#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
unsafe fn output_plane_avx2(g: &WindowGeometry, tiling: &Tiling, sums: &OutputSums, plane: &mut [MaybeUninit<f32>]) {
    output_plane(g, tiling, sums, plane)
}

/// Output plane `sums.co`, every pixel written.
#[inline(always)]
fn output_plane(g: &WindowGeometry, tiling: &Tiling, sums: &OutputSums, plane: &mut [MaybeUninit<f32>]) {
    let (tiles, pixels) = (tiling.tiles, plane.len());
    for first in (0..tiles).step_by(LANES) {
        let len = LANES.min(tiles - first);
        let mut m = [[0.0f32; LANES]; POINTS];
        for (point, m) in m.iter_mut().enumerate() {
            let from = &sums.sums[(point * sums.planes + sums.co) * tiles + first..];
            if len == LANES {
                *m = from[..LANES].try_into().expect("LANES sums");
            } else {
                m[..len].copy_from_slice(&from[..len]);
            }
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
        for (lane, &(oy, ox)) in tiling.origins[first..first + len].iter().enumerate() {
            for r in 0..2 {
                let oy = oy + r * g.dilation.h;
                for s in 0..2 {
                    let ox = ox + s * g.dilation.w;
                    if oy < g.output.h && ox < g.output.w {
                        let at = oy * g.output.w + ox;
                        plane[at].write(sums.epilogue.finish(y[r * 2 + s][lane], sums.co * pixels + at));
                    }
                }
            }
        }
    }
}
