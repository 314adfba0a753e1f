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
//!
//! A transposed convolution whose kernel is twice its stride (k4 s2, a decoder's usual
//! upsampling) is, in each output phase, a 2×2 correlation of the input: F(3×3, 2×2), the same
//! 4×4 patches and input transform, 16 multiply-adds per 9 outputs where the direct phase does
//! 36. Its phases' tiles are placed so that all of them read the same patches: one input
//! transform, and GEMMs whose rows are every phase's output channels
//! ([`conv_transpose2d_winograd`]).

use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use super::implicit_gemm::{correlate_packed, GemmKernel, PackedWeights};
use super::{cache_aligned, tap_position, Epilogue, SharedWrites, LINE_FLOATS};
use crate::shape::{ConvKind, Hw, WindowGeometry};

/// Transformed values per tile: a 4×4 patch.
const POINTS: usize = 16;

/// Whether [`conv2d_winograd`] computes `g`, and the fast convolution sends it there: a 3×3
/// stride-1 convolution whose groups have enough channels, and whose maps enough tiles, for the
/// GEMMs to run near their peak, and whose tiles are not mostly past the map or over padding (a
/// dilation near the map's size leaves phase grids of one or two outputs, and the direct path
/// leaves out the taps that read only padding): there the GEMMs do at most this share of the
/// direct path's multiply-adds.
pub fn winograd_applies(g: &WindowGeometry) -> bool {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    if g.kind != ConvKind::Forward || g.kernel != Hw::square(3) || g.stride != Hw::square(1) || cig < MIN_CHANNELS || cog < MIN_CHANNELS || !enabled() {
        return false;
    }
    let tiles = tile_axis(g.output.h, g.input.h, g.dilation.h, g.padding.h).origins.len() * tile_axis(g.output.w, g.input.w, g.dilation.w, g.padding.w).origins.len();
    let products = (g.batch * g.groups * POINTS * cig * cog * tiles * 2) as f64;
    tiles >= MIN_TILES && products <= MAX_SHARE * g.useful_flops() as f64
}

/// Channels per group (in and out) below which the GEMMs' K or M is too short to pay for the
/// transforms' passes over memory: 64 channels ran 0.6–0.9× the direct path, 128 0.93–1.13× (at
/// dilation 2 1.1–1.2×), 256 1.2–1.4× (65×65 maps, BENCHMARKS.md).
const MIN_CHANNELS: usize = 128;
/// Tiles per map below which the GEMMs are too narrow: 81 (a 17×17 map) ran 0.6× the direct
/// path, 289 (33×33) 1.0–1.06×, 441 1.1–1.3×.
const MIN_TILES: usize = 256;
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
/// `patches[i][j]` for `j` in `0..4` (`None`: padding).
struct TileAxis {
    origins: Vec<usize>,
    patches: Vec<[Option<usize>; 4]>,
}

fn tile_axis(output: usize, input: usize, dilation: usize, padding: usize) -> TileAxis {
    let origins: Vec<usize> = (0..dilation.min(output)).flat_map(|phase| (phase..output).step_by(2 * dilation)).collect();
    // Patch element `j` is where tap `j` of output `o` reads.
    let patches = origins.iter().map(|&o| std::array::from_fn(|j| tap_position(o, j, dilation, padding, input))).collect();
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

/// `G'·g` for the two weights of a phase's kernel row or column (F(3, 2): its G is F(2, 3)'s
/// output transform, its output transform F(2, 3)'s G; the halves moved here from the sums).
fn transform_phase_weights([g0, g1]: [f32; 2]) -> [f32; 4] {
    [g0, 0.5 * (g0 + g1), 0.5 * (g0 - g1), -g1]
}

/// `A'ᵀ·m`: F(3, 2)'s three outputs of four sums.
#[inline(always)]
fn transform_phase_sums([m0, m1, m2, m3]: [f32; 4]) -> [f32; 3] {
    [m0 + m1 + m2, m1 - m2, m1 + m2 + m3]
}

/// Tiles per chunk (at most): the transforms and GEMMs go chunk by chunk, so that the
/// transformed patches and sums (16 × channels × tiles each) stay a few tens of MB whatever the
/// map. Smaller chunks, in the caches between the steps, ran the GEMMs slower: 192 tiles 4–15%,
/// 768 3% (BENCHMARKS.md). A multiple of every kernel's strip; a 65×65 map's 1089 tiles are
/// one chunk up to 256 channels ([`chunk_tiles`]).
const CHUNK_TILES: usize = 1152;

/// Tiles per chunk for `rows` floats a tile (input channels, or rows of sums, whichever is more):
/// at most [`CHUNK_TILES`], and at most as many floats a point as `CHUNK_TILES` tiles of 256
/// channels, the tiles shared out evenly in whole strips. A dilated ResNet-50's 512-channel
/// layers then take their 65×65 maps in two chunks, in the 23 MB of scratch its 256-channel
/// layers used rather than 45 MB more: one pass 1.3–2.5% faster (the pages faulted in), warm
/// passes level, the layer alone level.
fn chunk_tiles(tiles: usize, rows: usize) -> usize {
    let strip = GemmKernel::Avx512.nr().max(GemmKernel::Avx2.nr());
    let most = (CHUNK_TILES * 256 / rows.max(1)).clamp(strip, CHUNK_TILES) / strip * strip;
    tiles.div_ceil(tiles.div_ceil(most).max(1)).next_multiple_of(strip).clamp(strip, most)
}

/// GEMMs run at once ([`point_products`]); a divisor of 16. Two and four ran ResNet-50
/// passes 1.02–1.03× as fast as all 16 at once (BENCHMARKS.md), one slower.
const WAVE: usize = 4;

/// A buffer that each step writes in full before the next reads it: never filled first.
type Scratch = Vec<MaybeUninit<f32>>;

/// Whether the scratch is allocated afresh per call rather than kept per thread: see
/// [`allocate_scratch_per_call`].
static SCRATCH_PER_CALL: AtomicBool = AtomicBool::new(false);

/// Has Winograd allocate its scratch per call rather than keep it per thread: for processes
/// whose allocator keeps freed memory (the `atrous` binary has glibc do so, `main.rs`), where the
/// scratch then reuses the pages that a network's earlier layers freed, and its later layers
/// reuse the scratch's; kept, it pinned tens of MB that a ResNet-50 pass's later outputs faulted
/// in afresh. Elsewhere glibc maps and unmaps buffers this large on every call, faulting them
/// in each time, which made a 128-channel 65×65 layer 0.55× the direct path's speed.
pub fn allocate_scratch_per_call(per_call: bool) {
    SCRATCH_PER_CALL.store(per_call, Ordering::Relaxed);
}

thread_local! {
    /// The transformed patches and the GEMMs' sums of a chunk, kept between calls (as the
    /// implicit GEMM keeps its packed blocks) unless [`allocate_scratch_per_call`].
    static SCRATCH: std::cell::RefCell<Scratch> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `buffer` with room for `len` elements, its contents undefined: the kept one, replaced where
/// it is short (dropped first, not copied), or (per call) a fresh one.
fn with_len(mut buffer: Scratch, len: usize) -> Scratch {
    if SCRATCH_PER_CALL.load(Ordering::Relaxed) || buffer.len() < len {
        drop(buffer);
        buffer = Vec::with_capacity(len);
        // SAFETY: within the capacity, and `MaybeUninit` needs no initialisation.
        unsafe { buffer.set_len(len) };
    }
    buffer
}

/// The 3×3 stride-1 convolution `g` with its bias and `epilogue` (residual laid out as the
/// output) by Winograd's F(2×2, 3×3), the GEMMs on `kernel`, group by group and sample by
/// sample. [`conv2d`](super::conv2d) sends here the convolutions [`winograd_applies`] to; this
/// takes any channel count (tests use few).
///
/// # Panics
/// If `g` is not a 3×3 stride-1 convolution.
pub fn conv2d_winograd(g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>, epilogue: Epilogue, kernel: GemmKernel) -> Vec<f32> {
    conv2d_winograd_prepared(g, input, &WinogradWeights::new(g, weight, kernel), bias, epilogue)
}

/// [`conv2d_winograd`] with its weights transformed and packed already.
///
/// # Panics
/// If `weights` were not made for `g`.
pub fn conv2d_winograd_prepared(g: &WindowGeometry, input: &[f32], weights: &WinogradWeights, bias: Option<&[f32]>, epilogue: Epilogue) -> Vec<f32> {
    weights.check(g);
    let (kernel, cog) = (weights.kernel, g.c_out_per_group());
    let tiling = Tiling::new(g);
    let finish = |group: usize, slab: Range<usize>, chunk: Range<usize>, sums: &[f32], slot: usize, out: &mut [MaybeUninit<f32>]| {
        let group_bias = bias.map(|b| &b[group * cog..][..cog]);
        let residual = epilogue.residual.map(|r| &r[slab]);
        transform_output(kernel, g, &tiling, chunk, sums, slot, group_bias, Epilogue { residual, ..epilogue }, out);
    };
    winograd_passes(kernel, g, input, &weights.groups, (&tiling.patches, tiling.tiles), cog, finish)
}

/// A convolution's weights as Winograd's GEMMs multiply by them, group by group: for a forward
/// 3×3 stride-1 convolution F(2×2, 3×3)'s `G·w·Gᵀ`, for a transposed one (kernel twice the
/// stride, undilated) F(3×3, 2×2)'s per phase, each point's packed for `kernel`. Made once per
/// call by [`conv2d_winograd`] and [`conv_transpose2d_winograd`], or once for many calls
/// ([`PreparedConv`](super::PreparedConv)): a transposed 256-channel layer's are 17 MB, a fifth
/// of its time on a 33×33 map.
pub struct WinogradWeights {
    kernel: GemmKernel,
    geometry: WindowGeometry,
    groups: Vec<[PackedWeights; POINTS]>,
}

impl WinogradWeights {
    /// # Panics
    /// If `g` is neither a forward 3×3 stride-1 convolution nor a transposed one whose kernel is
    /// twice its stride, undilated.
    pub fn new(g: &WindowGeometry, weight: &[f32], kernel: GemmKernel) -> Self {
        if g.kind == ConvKind::Forward {
            assert!(
                g.kernel == Hw::square(3) && g.stride == Hw::square(1),
                "Winograd F(2×2, 3×3) computes forward 3×3 stride-1 convolutions, not a {}×{} kernel at stride {}",
                g.kernel.h,
                g.kernel.w,
                g.stride
            );
        } else {
            assert!(
                computes_phase_pairs(g),
                "F(3×3, 2×2) per phase computes undilated transposed convolutions whose kernel is twice the stride, not a {}×{} kernel at stride {} and dilation {}",
                g.kernel.h,
                g.kernel.w,
                g.stride,
                g.dilation
            );
        }
        let pack = |w: &[f32]| if g.kind == ConvKind::Forward { forward_weights(g, w, kernel) } else { transposed_weights(g, w, kernel) };
        let groups = weight.chunks_exact(weight.len() / g.groups).map(pack).collect();
        WinogradWeights { kernel, geometry: *g, groups }
    }

    /// Panics unless these weights were made for `g` (at any batch size).
    fn check(&self, g: &WindowGeometry) {
        assert!(WindowGeometry { batch: g.batch, ..self.geometry } == *g, "Winograd weights made for {:?} used on {g:?}", self.geometry);
    }
}

/// One group's forward weights `w` (`[cog, cig, 3, 3]`) transformed and packed. Packed as they
/// are transformed: through a `[point][co][ci]` buffer first, the weights of a 512-channel
/// layer made 16 MB more to write and read: 10–15% of its time.
fn forward_weights(g: &WindowGeometry, w: &[f32], kernel: GemmKernel) -> [PackedWeights; POINTS] {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    PackedWeights::many(kernel, cog, cig, |co, ci| transformed_weights(&w[(co * cig + ci) * 9..][..9]))
}

/// Whether [`conv_transpose2d_winograd`] computes `g` and the fast transposed convolution sends
/// it there: kernel twice the stride on both axes, no dilation, and groups wide enough for the
/// GEMMs (as [`winograd_applies`]) over enough tiles.
pub fn transposed_winograd_applies(g: &WindowGeometry) -> bool {
    computes_phase_pairs(g)
        && g.c_in_per_group() >= MIN_CHANNELS
        && g.c_out_per_group() >= MIN_CHANNELS
        && g.input.h * g.input.w >= MIN_TRANSPOSED_PIXELS
        && enabled()
}

/// Whether `g` is a transposed convolution that [`conv_transpose2d_winograd`] computes: kernel
/// twice the stride on both axes (two taps per phase), undilated.
fn computes_phase_pairs(g: &WindowGeometry) -> bool {
    g.kind == ConvKind::Transposed && g.kernel.h == 2 * g.stride.h && g.kernel.w == 2 * g.stride.w && g.dilation == Hw::square(1)
}

/// Input pixels below which the transposed GEMMs are too narrow (a tile per 9 of them): 17×17
/// ran 0.86–1.0× the phase path, 33×33 1.03× at 128 channels, 1.3–1.4× at 256 and 512.
const MIN_TRANSPOSED_PIXELS: usize = 24 * 24;

/// One axis of a transposed convolution whose kernel is twice its stride, undilated: output
/// phase `r` (outputs `r + stride·j`) takes input `j + offset` times tap `taps[0]` plus input
/// `j + offset + 1` times tap `taps[1]`. Its tiles (3 outputs of every phase) read patches of 4
/// inputs from `starts[t]`, 3 apart: phase `r`'s tile `t` computes its outputs `starts[t] −
/// offset + 0..3`, those inside `0..outputs`.
struct PhaseAxis {
    phases: Vec<AxisPhase>,
    starts: Vec<isize>,
}

struct AxisPhase {
    phase: usize,
    offset: isize,
    taps: [usize; 2],
    outputs: usize,
}

fn phase_axis(kernel: usize, stride: usize, padding: usize, output: usize) -> PhaseAxis {
    debug_assert_eq!(kernel, 2 * stride);
    let phases: Vec<AxisPhase> = (0..stride.min(output))
        .map(|phase| {
            // Output o = i·stride + t − padding: in phase r the taps t ≡ r + padding (mod
            // stride), t0 and t0 + stride, read inputs j + q and j + q − 1.
            let t0 = (phase + padding) % stride;
            let q = ((phase + padding - t0) / stride) as isize;
            AxisPhase { phase, offset: q - 1, taps: [t0 + stride, t0], outputs: (output - phase).div_ceil(stride) }
        })
        .collect();
    let first = phases.iter().map(|p| p.offset).min().unwrap_or(0);
    let tiles = phases.iter().map(|p| (p.outputs as isize + p.offset - first).max(0) as usize).max().unwrap_or(0).div_ceil(3);
    PhaseAxis { phases, starts: (0..tiles).map(|t| first + 3 * t as isize).collect() }
}

/// The transposed convolution `g` (kernel twice its stride, undilated) with its bias by
/// F(3×3, 2×2) in each output phase, the phases' GEMMs at once on `kernel` ([`winograd_passes`]:
/// a GEMM's rows are every phase's output channels, its columns the shared patches), group by
/// group and sample by sample. The fast transposed convolution sends here the convolutions
/// [`transposed_winograd_applies`] to; this takes any channel count (tests use few).
///
/// # Panics
/// If `g` is not such a transposed convolution.
pub fn conv_transpose2d_winograd(g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>, kernel: GemmKernel) -> Vec<f32> {
    conv_transpose2d_winograd_prepared(g, input, &WinogradWeights::new(g, weight, kernel), bias)
}

/// [`conv_transpose2d_winograd`] with its weights transformed and packed already.
///
/// # Panics
/// If `weights` were not made for `g`.
pub fn conv_transpose2d_winograd_prepared(g: &WindowGeometry, input: &[f32], weights: &WinogradWeights, bias: Option<&[f32]>) -> Vec<f32> {
    weights.check(g);
    let kernel = weights.kernel;
    let cog = g.c_out_per_group();
    let rows = phase_axis(g.kernel.h, g.stride.h, g.padding.h, g.output.h);
    let cols = phase_axis(g.kernel.w, g.stride.w, g.padding.w, g.output.w);
    let phases: Vec<(&AxisPhase, &AxisPhase)> = rows.phases.iter().flat_map(|r| cols.phases.iter().map(move |c| (r, c))).collect();
    let tiles = rows.starts.len() * cols.starts.len();
    let patches = |starts: &[isize], size: usize| -> Vec<[Option<usize>; 4]> {
        starts.iter().map(|&start| std::array::from_fn(|i| usize::try_from(start + i as isize).ok().filter(|&p| p < size))).collect()
    };
    let positions = patch_positions(&patches(&rows.starts, g.input.h), &patches(&cols.starts, g.input.w), g.input);
    let finish = |group: usize, _: Range<usize>, chunk: Range<usize>, sums: &[f32], slot: usize, out: &mut [MaybeUninit<f32>]| {
        let pixels = g.output.h * g.output.w;
        let tiles_w = cols.starts.len();
        let starts: Vec<(isize, isize)> = chunk.clone().map(|t| (rows.starts[t / tiles_w], cols.starts[t % tiles_w])).collect();
        out.par_chunks_exact_mut(pixels).enumerate().for_each(|(co, plane)| {
            let bias = bias.map_or(0.0, |b| b[group * cog + co]);
            for (index, (rp, cp)) in phases.iter().enumerate() {
                let sums = PhaseSums { sums, slot, row: co * phases.len() + index, tiles: chunk.len(), bias };
                // SAFETY: `kernel` runs on this CPU.
                unsafe {
                    match kernel {
                        GemmKernel::Avx512 => phase_output_avx512(g, &starts, (rp, cp), &sums, plane),
                        GemmKernel::Avx2 => phase_output_avx2(g, &starts, (rp, cp), &sums, plane),
                    }
                }
            }
        });
    };
    winograd_passes(kernel, g, input, &weights.groups, (&positions, tiles), phases.len() * cog, finish)
}

/// One group's transposed weights `w` (`[cig, cog, kH, kW]`) transformed per phase and packed,
/// GEMM row `co · phases + phase`.
fn transposed_weights(g: &WindowGeometry, w: &[f32], kernel: GemmKernel) -> [PackedWeights; POINTS] {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let rows = phase_axis(g.kernel.h, g.stride.h, g.padding.h, g.output.h);
    let cols = phase_axis(g.kernel.w, g.stride.w, g.padding.w, g.output.w);
    let phases: Vec<(&AxisPhase, &AxisPhase)> = rows.phases.iter().flat_map(|r| cols.phases.iter().map(move |c| (r, c))).collect();
    let taps = g.kernel.h * g.kernel.w;
    // Per phase, where its 2×2 weights lie in a kernel.
    let phase_taps: Vec<[usize; 4]> = phases.iter().map(|(rp, cp)| std::array::from_fn(|uv| rp.taps[uv / 2] * g.kernel.w + cp.taps[uv % 2])).collect();
    // GEMM row `co · phases + phase`: a tile's rows are the phases of one or two output
    // channels, which read the same kernel. Worked out once, not per weight (two divisions).
    let gemm_rows: Vec<(usize, usize)> = (0..cog).flat_map(|co| (0..phases.len()).map(move |phase| (co, phase))).collect();
    // The group's weight [cig, cog, kH, kW] as [cog, cig, kH, kW] first, so that a tile reads
    // its kernels in order, channel after channel: read in place, each a cache line 16 KB
    // from the next, they were most of the packing's time.
    let mut by_output = Vec::with_capacity(w.len());
    by_output.spare_capacity_mut().par_chunks_exact_mut(cig * taps).enumerate().for_each(|(co, dst)| {
        for (ci, d) in dst.chunks_exact_mut(taps).enumerate() {
            for (d, &v) in d.iter_mut().zip(&w[(ci * cog + co) * taps..][..taps]) {
                d.write(v);
            }
        }
    });
    // SAFETY: the loop above wrote every element.
    unsafe { by_output.set_len(w.len()) };
    PackedWeights::many(kernel, gemm_rows.len(), cig, |row, ci| {
        let (co, phase) = gemm_rows[row];
        let kernel = &by_output[(co * cig + ci) * taps..][..taps];
        let [a, b, c, d] = phase_taps[phase].map(|t| kernel[t]);
        transformed_phase_weights([[a, b], [c, d]])
    })
}

/// `(G'·g·G'ᵀ)[point]` for each of the 16 points of one phase's 2×2 weights `g` (of one output
/// and input channel): along the kernel's columns, then its rows.
fn transformed_phase_weights(g: [[f32; 2]; 2]) -> [f32; POINTS] {
    let columns = [transform_phase_weights(g[0]), transform_phase_weights(g[1])];
    let mut points = [0.0; POINTS];
    for b in 0..4 {
        let rows = transform_phase_weights([columns[0][b], columns[1][b]]);
        for a in 0..4 {
            points[a * 4 + b] = rows[a];
        }
    }
    points
}

/// One output channel's and phase's share of the GEMMs' sums: row `row` of each point's
/// `[rows][tiles]`, the points `slot` floats apart.
struct PhaseSums<'a> {
    sums: &'a [f32],
    slot: usize,
    row: usize,
    tiles: usize,
    bias: f32,
}

#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
unsafe fn phase_output_avx512(g: &WindowGeometry, starts: &[(isize, isize)], phase: (&AxisPhase, &AxisPhase), sums: &PhaseSums, plane: &mut [MaybeUninit<f32>]) {
    phase_output(g, starts, phase, sums, plane)
}

#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
unsafe fn phase_output_avx2(g: &WindowGeometry, starts: &[(isize, isize)], phase: (&AxisPhase, &AxisPhase), sums: &PhaseSums, plane: &mut [MaybeUninit<f32>]) {
    phase_output(g, starts, phase, sums, plane)
}

/// The outputs of one phase `(rows, cols)` in one output plane from the tiles of `sums`, whose
/// patches start at `starts`: each tile's 3×3, `A'ᵀ·M·A'`, plus the bias, where it lies inside
/// the phase.
#[inline(always)]
fn phase_output(g: &WindowGeometry, starts: &[(isize, isize)], (rp, cp): (&AxisPhase, &AxisPhase), sums: &PhaseSums, plane: &mut [MaybeUninit<f32>]) {
    let (sy, sx) = (g.stride.h, g.stride.w);
    for first in (0..starts.len()).step_by(LANES) {
        let len = LANES.min(starts.len() - first);
        let m = lanes_of_sums(sums.sums, sums.slot, sums.row * sums.tiles + first, len);
        // y[a · 3 + b]: the tile's output (a, b).
        let mut y = [[0.0f32; LANES]; 9];
        for lane in 0..LANES {
            let along_a: [[f32; 3]; 4] = std::array::from_fn(|b| transform_phase_sums(std::array::from_fn(|a| m[a * 4 + b][lane])));
            for a in 0..3 {
                let along_b = transform_phase_sums(std::array::from_fn(|b| along_a[b][a]));
                for b in 0..3 {
                    y[a * 3 + b][lane] = along_b[b] + sums.bias;
                }
            }
        }
        for (lane, &(y0, x0)) in starts[first..first + len].iter().enumerate() {
            let (jy, jx) = (y0 - rp.offset, x0 - cp.offset);
            if jy >= 0 && jx >= 0 && jy as usize + 3 <= rp.outputs && jx as usize + 3 <= cp.outputs {
                // All nine inside the phase (most tiles): no checks.
                let at = (rp.phase + jy as usize * sy) * g.output.w + cp.phase + jx as usize * sx;
                let plane = &mut plane[at..][..2 * sy * g.output.w + 2 * sx + 1];
                for a in 0..3 {
                    for b in 0..3 {
                        plane[a * sy * g.output.w + b * sx].write(y[a * 3 + b][lane]);
                    }
                }
                continue;
            }
            for a in 0..3 {
                let Some(jy) = usize::try_from(jy + a as isize).ok().filter(|&j| j < rp.outputs) else { continue };
                let oy = rp.phase + jy * sy;
                for b in 0..3 {
                    if let Some(jx) = usize::try_from(jx + b as isize).ok().filter(|&j| j < cp.outputs) {
                        plane[oy * g.output.w + cp.phase + jx * sx].write(y[a * 3 + b][lane]);
                    }
                }
            }
        }
    }
}

/// What both Winograd convolutions do, group by group (the group's packed `weights`, the 16
/// GEMMs' `m` rows), sample by sample and chunk by chunk of
/// the `tiles` tiles: the input transform of the patches at `positions` ([`Tiling::patches`]),
/// the GEMMs, and `finish(group, slab, chunk, sums, slot, out)`, which writes every output of
/// the chunk's tiles into `out`, the sample's and group's slab `slab` of the output, from the
/// chunk's sums (a point's `slot` floats apart). Every output lies in some tile.
#[allow(clippy::too_many_arguments)] // the convolution, its tiles and its two steps
fn winograd_passes(
    kernel: GemmKernel,
    g: &WindowGeometry,
    input: &[f32],
    weights: &[[PackedWeights; POINTS]],
    (positions, tiles): (&[[u32; POINTS]], usize),
    m: usize,
    finish: impl Fn(usize, Range<usize>, Range<usize>, &[f32], usize, &mut [MaybeUninit<f32>]),
) -> Vec<f32> {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let (in_plane, pixels) = (g.input.h * g.input.w, g.output.h * g.output.w);
    let len = g.batch * g.c_out * pixels;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let chunk_layout = |tiles: usize| PatchLayout::new(tiles, cig, kernel.nr(), m * tiles);
    // Taken out of the thread-local, not borrowed: a rayon worker waiting on these GEMMs may
    // run another convolution's task meanwhile.
    let chunk_tiles = chunk_tiles(tiles, cig.max(m));
    let mut scratch = with_len(SCRATCH.take(), (POINTS + WAVE) * chunk_layout(chunk_tiles.min(tiles)).slot + LINE_FLOATS);
    let slots = cache_aligned(&mut scratch);
    for (group, packed) in weights.iter().enumerate() {
        for n in 0..g.batch {
            let x = &input[(n * g.c_in + group * cig) * in_plane..][..cig * in_plane];
            let slab = (n * g.c_out + group * cog) * pixels..(n * g.c_out + (group + 1) * cog) * pixels;
            for first in (0..tiles).step_by(chunk_tiles) {
                let chunk = first..(first + chunk_tiles).min(tiles);
                let layout = chunk_layout(chunk.len());
                let slots = &mut slots[..(POINTS + WAVE) * layout.slot];
                transform_input(kernel, x, positions, chunk.clone(), &layout, &mut slots[WAVE * layout.slot..]);
                point_products(kernel, &layout, packed, slots);
                // SAFETY: each GEMM wrote every element of its point's sums.
                let sums = unsafe { written(&slots[..POINTS * layout.slot]) };
                finish(group, slab.clone(), chunk, sums, layout.slot, &mut out.spare_capacity_mut()[slab.clone()]);
            }
        }
    }
    if !SCRATCH_PER_CALL.load(Ordering::Relaxed) {
        SCRATCH.set(scratch);
    }
    // SAFETY: the slabs of all (sample, group) pairs cover the output, and `finish` writes
    // every output of a slab's chunks, which cover it.
    unsafe { out.set_len(len) };
    out
}

/// `buffer` as the floats a step wrote into it.
///
/// # Safety
/// Every element of `buffer` is initialised.
unsafe fn written(buffer: &[MaybeUninit<f32>]) -> &[f32] {
    &*(buffer as *const [MaybeUninit<f32>] as *const [f32])
}

/// The 16 GEMMs of a chunk, WAVE at a time: `slots` holds the transformed patches of point `p`
/// in slot `WAVE + p` ([`PatchLayout`]), and the GEMM of point `p` writes its sums into slot
/// `p`, which held the patches of point `p − WAVE`, whose GEMM ran in the wave before. So the
/// patches and sums share 16 + WAVE slots rather than taking 32 (a 512-channel 65×65 layer's
/// scratch 45 MB, not 72), and the GEMMs of a wave still share out the threads.
fn point_products(kernel: GemmKernel, layout: &PatchLayout, packed: &[PackedWeights; POINTS], slots: &mut [MaybeUninit<f32>]) {
    assert_eq!(slots.len(), (POINTS + WAVE) * layout.slot);
    let sums_len = packed[0].m() * layout.tiles;
    for first in (0..POINTS).step_by(WAVE) {
        let (sums, patches) = slots[first * layout.slot..].split_at_mut(WAVE * layout.slot);
        // SAFETY: the input transform wrote every element of the patches' slots.
        let patches = unsafe { written(&patches[..WAVE * layout.slot]) };
        sums.par_chunks_exact_mut(layout.slot).zip(patches.par_chunks_exact(layout.slot)).zip(&packed[first..first + WAVE]).for_each(|((sums, b), a)| {
            correlate_packed(kernel, &b[..layout.patches_len()], layout.tiles, a, &mut sums[..sums_len]);
        });
    }
}

/// `(G·w·Gᵀ)[point]` for each of the 16 points of one output and input channel's 3×3 weights
/// `w` (row-major).
fn transformed_weights(w: &[f32]) -> [f32; POINTS] {
    // Along the kernel's columns, then its rows.
    let columns: [[f32; 4]; 3] = std::array::from_fn(|kx| transform_weights([w[kx], w[3 + kx], w[6 + kx]]));
    let rows: [[f32; 4]; 4] = std::array::from_fn(|a| transform_weights([columns[0][a], columns[1][a], columns[2][a]]));
    std::array::from_fn(|point| rows[point / 4][point % 4])
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
    /// (row-major) in its plane, or the plane's size where it reads padding (as every position
    /// of the tiles past the last does).
    patches: Vec<[u32; POINTS]>,
    /// Per tile, its first output (row, column); the others lie a dilation down and across.
    origins: Vec<(usize, usize)>,
}

impl Tiling {
    fn new(g: &WindowGeometry) -> Self {
        let rows = tile_axis(g.output.h, g.input.h, g.dilation.h, g.padding.h);
        let cols = tile_axis(g.output.w, g.input.w, g.dilation.w, g.padding.w);
        let tiles = rows.origins.len() * cols.origins.len();
        let patches = patch_positions(&rows.patches, &cols.patches, g.input);
        let origins = rows.origins.iter().flat_map(|&y| cols.origins.iter().map(move |&x| (y, x))).collect();
        Tiling { tiles, patches, origins }
    }
}

/// The gather table of the patches `rows × cols` (row-major; per axis the input positions a
/// patch reads, `None` for padding) of an `input`-sized plane, as [`Tiling::patches`]: padding
/// and the tiles past the last, up to whole strips of the widest kernel, read position
/// `input.h · input.w`.
fn patch_positions(rows: &[[Option<usize>; 4]], cols: &[[Option<usize>; 4]], input: Hw) -> Vec<[u32; POINTS]> {
    let zero = input.h * input.w;
    let position = |y: Option<usize>, x: Option<usize>| y.zip(x).map_or(zero, |(y, x)| y * input.w + x) as u32;
    let mut patches: Vec<[u32; POINTS]> = rows.iter().flat_map(|ys| cols.iter().map(move |xs| std::array::from_fn(|k| position(ys[k / 4], xs[k % 4])))).collect();
    patches.resize((rows.len() * cols.len()).next_multiple_of(GemmKernel::Avx512.nr().max(GemmKernel::Avx2.nr())), [zero as u32; POINTS]);
    patches
}

/// `V[point][c][tile] = (Bᵀ·patch·B)[point]` for the tiles `chunk` of each plane of `x` (patch
/// positions as [`Tiling::patches`]), in parallel over the planes, laid out as `layout` (its
/// tiles the chunk's).
fn transform_input(kernel: GemmKernel, x: &[f32], positions: &[[u32; POINTS]], chunk: Range<usize>, layout: &PatchLayout, patches: &mut [MaybeUninit<f32>]) {
    assert!(patches.len() >= POINTS * layout.slot);
    assert_eq!(chunk.len(), layout.tiles);
    let plane_len = x.len() / layout.channels;
    let steps = chunk.start..chunk.start + chunk.len().next_multiple_of(layout.nr);
    assert!(positions.len() >= steps.end && positions[steps.clone()].iter().flatten().all(|&i| i as usize <= plane_len));
    let dst = SharedWrites(patches.as_mut_ptr().cast::<f32>());
    x.par_chunks_exact(plane_len).enumerate().for_each(|(c, plane)| {
        // SAFETY: `kernel` runs on this CPU; the plane writes only its own channel's values,
        // and reads only positions checked above.
        unsafe {
            match kernel {
                GemmKernel::Avx512 => transform_plane_avx512(plane, &positions[steps.clone()], dst, c, layout),
                GemmKernel::Avx2 => transform_plane_avx2(plane, &positions[steps.clone()], dst, c, layout),
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
    /// Floats per point: a point's patches or its sums, whichever is longer, in whole cache
    /// lines (each point's slot starts on one).
    slot: usize,
}

impl PatchLayout {
    /// `tiles` tiles of `channels` input channels in strips of `nr`, in slots that also hold
    /// `sums` floats.
    fn new(tiles: usize, channels: usize, nr: usize, sums: usize) -> Self {
        let layout = PatchLayout { tiles, channels, nr, slot: 0 };
        PatchLayout { slot: layout.patches_len().max(sums).next_multiple_of(LINE_FLOATS), ..layout }
    }

    /// Floats of one point's patches: whole strips.
    fn patches_len(&self) -> usize {
        self.tiles.div_ceil(self.nr) * self.channels * self.nr
    }

    /// Where `(point, channel, tile)` lies; tiles `tile..` of the same strip follow it.
    fn at(&self, point: usize, channel: usize, tile: usize) -> usize {
        point * self.slot + (tile / self.nr * self.channels + channel) * self.nr + tile % self.nr
    }
}

#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
unsafe fn transform_plane_avx512(plane: &[f32], patches: &[[u32; POINTS]], dst: SharedWrites, c: usize, layout: &PatchLayout) {
    transform_plane(plane, patches, dst, c, layout)
}

#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
unsafe fn transform_plane_avx2(plane: &[f32], patches: &[[u32; POINTS]], dst: SharedWrites, c: usize, layout: &PatchLayout) {
    transform_plane(plane, patches, dst, c, layout)
}

/// Writes channel `c`'s transformed `patches` (positions in `plane`, `plane.len()` for
/// padding) into `dst`, laid out as `layout`, the last strip's lanes past the tiles included.
///
/// # Safety
/// `dst` holds `POINTS × layout.slot` floats; `patches` covers the layout's strips, and
/// its positions are at most `plane.len()`.
#[inline(always)]
unsafe fn transform_plane(plane: &[f32], patches: &[[u32; POINTS]], dst: SharedWrites, c: usize, layout: &PatchLayout) {
    let last = plane.len().saturating_sub(1);
    for first in (0..layout.tiles.next_multiple_of(layout.nr)).step_by(LANES) {
        let mut d = [[0.0f32; LANES]; POINTS];
        for (lane, positions) in patches[first..first + LANES].iter().enumerate() {
            for (k, &at) in positions.iter().enumerate() {
                // Padding reads zero: a select, not a branch.
                let at = at as usize;
                let v = *plane.get_unchecked(at.min(last));
                d[k][lane] = if at < plane.len() { v } else { 0.0 };
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
            dst.at(layout.at(point, c, first)).cast::<[f32; LANES]>().write_unaligned(*v);
        }
    }
}

/// `out[co] = epilogue(bias[co] + Aᵀ·M[co]·A)` for the tiles `chunk`, from their sums
/// `M[point][co][tile]`: every pixel of theirs in each of the output planes (`out.len() /
/// pixels` of them), in parallel over the planes.
#[allow(clippy::too_many_arguments)] // the map, the chunk, its sums and where they go
fn transform_output(kernel: GemmKernel, g: &WindowGeometry, tiling: &Tiling, chunk: Range<usize>, sums: &[f32], slot: usize, bias: Option<&[f32]>, epilogue: Epilogue, out: &mut [MaybeUninit<f32>]) {
    let pixels = g.output.h * g.output.w;
    let planes = out.len() / pixels;
    assert!(slot >= planes * chunk.len() && sums.len() == POINTS * slot);
    let origins = &tiling.origins[chunk];
    out.par_chunks_exact_mut(pixels).enumerate().for_each(|(co, plane)| {
        let sums = OutputSums { sums, slot, co, bias: bias.map_or(0.0, |b| b[co]), epilogue };
        // SAFETY: `kernel` runs on this CPU.
        unsafe {
            match kernel {
                GemmKernel::Avx512 => output_plane_avx512(g, origins, &sums, plane),
                GemmKernel::Avx2 => output_plane_avx2(g, origins, &sums, plane),
            }
        }
    });
}

/// One output plane's share of the GEMMs' sums `[point][planes][tile]`, with its bias and the
/// epilogue.
struct OutputSums<'a> {
    sums: &'a [f32],
    /// Floats from one point's sums to the next's.
    slot: usize,
    co: usize,
    bias: f32,
    epilogue: Epilogue<'a>,
}

#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
unsafe fn output_plane_avx512(g: &WindowGeometry, origins: &[(usize, usize)], sums: &OutputSums, plane: &mut [MaybeUninit<f32>]) {
    output_plane(g, origins, sums, plane)
}

#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
unsafe fn output_plane_avx2(g: &WindowGeometry, origins: &[(usize, usize)], sums: &OutputSums, plane: &mut [MaybeUninit<f32>]) {
    output_plane(g, origins, sums, plane)
}

/// `m[point][lane]`: the `len` (at most LANES) sums from `at` on of each point (`slot` floats
/// apart in `sums`), the rest zero.
#[inline(always)]
fn lanes_of_sums(sums: &[f32], slot: usize, at: usize, len: usize) -> [[f32; LANES]; POINTS] {
    let mut m = [[0.0f32; LANES]; POINTS];
    for (point, m) in m.iter_mut().enumerate() {
        let from = &sums[point * slot + at..];
        if len == LANES {
            *m = from[..LANES].try_into().expect("LANES sums");
        } else {
            m[..len].copy_from_slice(&from[..len]);
        }
    }
    m
}

/// Output plane `sums.co`: every pixel of the tiles at `origins` (those of the sums).
#[inline(always)]
fn output_plane(g: &WindowGeometry, origins: &[(usize, usize)], sums: &OutputSums, plane: &mut [MaybeUninit<f32>]) {
    let (tiles, pixels) = (origins.len(), plane.len());
    for first in (0..tiles).step_by(LANES) {
        let len = LANES.min(tiles - first);
        let m = lanes_of_sums(sums.sums, sums.slot, sums.co * tiles + first, len);
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
        for (lane, &(oy, ox)) in origins[first..first + len].iter().enumerate() {
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
