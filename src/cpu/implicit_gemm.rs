//! A packed implicit GEMM for convolutions: `out[co, pixel] += Σ_k A[co, k] · B[k, pixel]` with
//! `k = (tap, input channel)`, where B (the im2col matrix) is never materialised: each block
//! of output pixels packs only its own slice of it, straight from the input planes, into a
//! buffer that stays in the core's L2, and a register-blocked AVX-512 or AVX2 micro-kernel
//! (chosen at run time) multiplies it by the pre-packed weights. A block leaves out the taps
//! that read only padding for all of its pixels (rows of the tap-major K that would be zero).
//!
//! Forward convolutions run on it directly; transposed ones as one such correlation per output
//! phase (`conv_transpose2d.rs`).

use std::mem::MaybeUninit;
use std::ops::Range;

use rayon::prelude::*;

use super::{cache_aligned, Epilogue, SharedWrites, LINE_FLOATS};

/// The micro-kernels: which SIMD the packed GEMM runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmKernel {
    /// 8 output channels × 48 pixels (24 zmm accumulators).
    Avx512,
    /// 6 output channels × 16 pixels (12 ymm accumulators; AVX2 has 16 registers).
    Avx2,
}

impl GemmKernel {
    /// The widest kernel this CPU runs, or `None` (not x86-64, or no AVX2 + FMA): the callers
    /// then use the `gemm` crate's path.
    pub fn detect() -> Option<Self> {
        Self::available().first().copied()
    }

    /// What the fast convolutions use: [`GemmKernel::detect`], unless `$ATROUS_CPU_GEMM` names
    /// one (`avx512`, `avx2`; one this CPU lacks falls back to `detect`) or is `sgemm` (the
    /// `gemm` crate's path): a switch for measuring. Read once.
    pub fn from_env() -> Option<Self> {
        static CHOICE: std::sync::OnceLock<Option<GemmKernel>> = std::sync::OnceLock::new();
        *CHOICE.get_or_init(|| {
            let named = match std::env::var("ATROUS_CPU_GEMM").as_deref() {
                Ok("sgemm") => return None,
                Ok("avx512") => GemmKernel::Avx512,
                Ok("avx2") => GemmKernel::Avx2,
                _ => return Self::detect(),
            };
            if Self::available().contains(&named) {
                Some(named)
            } else {
                Self::detect()
            }
        })
    }

    /// What the CPU's descriptions and records name as its kernel: `implicit-gemm-avx512`,
    /// `implicit-gemm-avx2`, or `im2col+sgemm` (the `gemm` crate's path).
    pub fn name(kernel: Option<Self>) -> &'static str {
        match kernel {
            Some(GemmKernel::Avx512) => "implicit-gemm-avx512",
            Some(GemmKernel::Avx2) => "implicit-gemm-avx2",
            None => "im2col+sgemm",
        }
    }

    /// [`GemmKernel::name`] of the path that computes `g` (a convolution, transposed or not):
    /// `winograd-f2x2+…` where [`conv2d`](super::conv2d) takes Winograd's F(2×2, 3×3) on it,
    /// `winograd-f3x3+…` where the transposed convolution takes F(3×3, 2×2) per phase.
    pub fn name_for(kernel: Option<Self>, g: &crate::shape::WindowGeometry) -> &'static str {
        match kernel {
            Some(GemmKernel::Avx512) if super::winograd_applies(g) => "winograd-f2x2+implicit-gemm-avx512",
            Some(GemmKernel::Avx2) if super::winograd_applies(g) => "winograd-f2x2+implicit-gemm-avx2",
            Some(GemmKernel::Avx512) if super::transposed_winograd_applies(g) => "winograd-f3x3+implicit-gemm-avx512",
            Some(GemmKernel::Avx2) if super::transposed_winograd_applies(g) => "winograd-f3x3+implicit-gemm-avx2",
            _ => Self::name(kernel),
        }
    }

    /// Every kernel this CPU runs, widest first (tests run each).
    pub fn available() -> Vec<Self> {
        let mut kernels = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                kernels.push(GemmKernel::Avx512);
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                kernels.push(GemmKernel::Avx2);
            }
        }
        kernels
    }

    /// Output channels per register tile.
    fn mr(self) -> usize {
        match self {
            GemmKernel::Avx512 => 8,
            GemmKernel::Avx2 => 6,
        }
    }

    /// Pixels per register tile (a *strip*).
    pub(super) fn nr(self) -> usize {
        match self {
            GemmKernel::Avx512 => 48,
            GemmKernel::Avx2 => 16,
        }
    }

    /// `c[rows × cols'] = store(a · b)` for `a` the tile's `mr × kc` weights ([`WeightTile`]),
    /// `b` = `[kc][nr]`, `c` rows `ldc`
    /// apart (and the residual, where `store` has one, laid out as `c`), where `cols'` is `cols`
    /// (at most `nr`) rounded up to whole vectors: a strip's last few pixels (a 65×65 map's last
    /// strip holds one) take one vector's FMAs, not a whole strip's. Of the `mr` rows, the AVX2
    /// kernel computes only the pairs that hold the `rows` stored (a 64-channel layer's last
    /// tile has 4 of its 6), and the AVX-512 kernel all 8.
    ///
    /// # Safety
    /// The pointers must cover those extents (`c` and the residual `rows` rows), and the CPU must
    /// have the kernel's features (`detect`/`available` only return such kernels).
    #[allow(clippy::too_many_arguments)] // the operands' pointers and extents
    unsafe fn tile(self, kc: usize, a: WeightTile, b: *const f32, c: *mut f32, ldc: usize, store: TileStore, (rows, cols): (usize, usize)) {
        #[cfg(target_arch = "x86_64")]
        match a.row_stride {
            None => self.tile_on::<false>(kc, a.at, 0, b, c, ldc, store, (rows, cols)),
            Some(stride) => self.tile_on::<true>(kc, a.at, stride, b, c, ldc, store, (rows, cols)),
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no x86 kernels here ({kc}, {a:?}, {b:?}, {c:?}, {ldc}, {store:?}, {rows}, {cols})")
    }

    /// [`GemmKernel::tile`] for weights packed in tiles (`IN_ROWS` false) or read in place, rows
    /// `row_stride` floats apart.
    #[cfg(target_arch = "x86_64")]
    #[allow(clippy::too_many_arguments)] // as `tile`, the weights' layout spelt out
    unsafe fn tile_on<const IN_ROWS: bool>(self, kc: usize, a: *const f32, row_stride: usize, b: *const f32, c: *mut f32, ldc: usize, store: TileStore, (rows, cols): (usize, usize)) {
        let a = (a, row_stride);
        match (self, rows.div_ceil(2), cols.div_ceil(self.nr() / self.vectors())) {
            (GemmKernel::Avx512, _, 1) => tile_avx512::<1, IN_ROWS>(kc, a, b, c, ldc, store, rows),
            (GemmKernel::Avx512, _, 2) => tile_avx512::<2, IN_ROWS>(kc, a, b, c, ldc, store, rows),
            (GemmKernel::Avx512, _, _) => tile_avx512::<3, IN_ROWS>(kc, a, b, c, ldc, store, rows),
            (GemmKernel::Avx2, 1, 1) => tile_avx2::<2, 1, IN_ROWS>(kc, a, b, c, ldc, store, rows),
            (GemmKernel::Avx2, 1, _) => tile_avx2::<2, 2, IN_ROWS>(kc, a, b, c, ldc, store, rows),
            (GemmKernel::Avx2, 2, 1) => tile_avx2::<4, 1, IN_ROWS>(kc, a, b, c, ldc, store, rows),
            (GemmKernel::Avx2, 2, _) => tile_avx2::<4, 2, IN_ROWS>(kc, a, b, c, ldc, store, rows),
            (GemmKernel::Avx2, _, 1) => tile_avx2::<6, 1, IN_ROWS>(kc, a, b, c, ldc, store, rows),
            (GemmKernel::Avx2, _, _) => tile_avx2::<6, 2, IN_ROWS>(kc, a, b, c, ldc, store, rows),
        }
    }

    /// SIMD vectors per strip row.
    fn vectors(self) -> usize {
        match self {
            GemmKernel::Avx512 => 3,
            GemmKernel::Avx2 => 2,
        }
    }
}

/// How a micro-kernel call stores its tile's sums: onto what C holds, or (the first K block of a
/// block of pixels, C not yet written) onto the rows' bias and the residual; on the last K block
/// the ReLU follows. Writing C first instead (the bias in a pass of its own) and adding the
/// residual and ReLU in another streamed a ResNet's tens of MB of outputs through memory twice
/// more.
#[derive(Clone, Copy, Debug)]
struct TileStore {
    start: Start,
    /// The ReLU, on the last K block.
    relu: bool,
    /// Whether the kernel asks the cache for the tiles the store reads and writes (the last K
    /// block's, or the first's where it reads the residual).
    fetch: bool,
}

/// How many K rows before the end of a tile's last K block its kernel asks for the output tile
/// and the residual's, which the store then reads (from memory: a ResNet's outputs and
/// residuals are tens of MB): 32 rows ran the ResNet's conv3 layers (512→2048 with the
/// residual) 7–10% faster, the AVX2 kernel's ResNet 2–3%; in the other K blocks (the outputs in
/// cache) it made no difference.
const STORE_AHEAD_ROWS: usize = 32;

impl TileStore {
    /// The K row at which a kernel of `kc` rows prefetches (`kc`: it does not).
    fn fetch_at(&self, kc: usize) -> usize {
        if self.fetch {
            kc.saturating_sub(STORE_AHEAD_ROWS)
        } else {
            kc
        }
    }

    /// Asks the cache for the `rows × cols` output tile at `c` (rows `ldc` apart) and the tile
    /// the store adds onto, where that is another (the residual's).
    fn prefetch(&self, c: *mut f32, ldc: usize, rows: usize, cols: usize) {
        let from = if let Start::Onto(Some(from), _) = self.start { Some(from) } else { None };
        for i in 0..rows {
            prefetch(c.wrapping_add(i * ldc), cols);
            if let Some(r) = from {
                prefetch(r.wrapping_add(i * ldc), cols);
            }
        }
    }
}

/// What a tile's sums are added onto; the bias is each of the tile's rows' (`mr` values) or
/// zero.
#[derive(Clone, Copy, Debug)]
enum Start {
    /// `c = bias + sums` (C not yet written).
    Bias(Option<*const f32>),
    /// `c = from + bias + sums`, `from` a tile laid out as C: C itself (`None`: a later K block,
    /// no bias; or the first, onto the residual that C holds) or the residual's (the first K
    /// block of a C not yet written). Either way the residual enters with the bias, so a
    /// residual in its own buffer or in C's sums to the same bits.
    Onto(Option<*const f32>, Option<*const f32>),
}

impl Start {
    /// The tile the sums are added onto, where there is one: `from`, or C at `c`.
    fn from(self, c: *const f32) -> Option<*const f32> {
        match self {
            Start::Bias(_) => None,
            Start::Onto(from, _) => Some(from.unwrap_or(c)),
        }
    }

    fn bias(self) -> Option<*const f32> {
        match self {
            Start::Bias(bias) | Start::Onto(_, bias) => bias,
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const VECTORS: usize, const IN_ROWS: bool>(kc: usize, (a, row_stride): (*const f32, usize), b: *const f32, c: *mut f32, ldc: usize, store: TileStore, rows: usize) {
    use std::arch::x86_64::*;
    let (offsets, k_step) = weight_offsets::<8, IN_ROWS>(8, row_stride, rows);
    let mut acc = [[_mm512_setzero_ps(); VECTORS]; 8];
    // `n` K rows from `ap` and `bp` on, in a loop that only steps the two pointers.
    let steps = |acc: &mut [[__m512; VECTORS]; 8], mut ap: *const f32, mut bp: *const f32, n: usize| {
        for _ in 0..n {
            // The strip streams from L2 (a tile's weights hold L1); asking for it 8 K rows ahead
            // ran the 3×3 and 1×1 layers 1–9% faster in this machine's slow phases, level in its
            // fast ones.
            let ahead = bp.wrapping_add(8 * 48);
            for v in 0..VECTORS {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(16 * v).cast());
            }
            let bv: [__m512; VECTORS] = std::array::from_fn(|v| _mm512_loadu_ps(bp.add(16 * v)));
            for (row, &offset) in acc.iter_mut().zip(&offsets) {
                let ai = _mm512_set1_ps(*ap.add(offset));
                for (sum, &bv) in row.iter_mut().zip(&bv) {
                    *sum = _mm512_fmadd_ps(ai, bv, *sum);
                }
            }
            ap = ap.add(k_step);
            bp = bp.add(48);
        }
    };
    let fetch_at = store.fetch_at(kc);
    steps(&mut acc, a, b, fetch_at);
    if fetch_at < kc {
        store.prefetch(c, ldc, rows, 16 * VECTORS);
        steps(&mut acc, a.add(fetch_at * k_step), b.add(fetch_at * 48), kc - fetch_at);
    }
    let zero = _mm512_setzero_ps();
    for (i, row) in acc.iter().enumerate().take(rows) {
        let bias = store.start.bias().map(|bias| _mm512_set1_ps(*bias.add(i)));
        let from = store.start.from(c);
        for (j, &sums) in row.iter().enumerate() {
            let at = i * ldc + j * 16;
            let prior = match (from, bias) {
                (Some(from), Some(bias)) => _mm512_add_ps(_mm512_loadu_ps(from.add(at)), bias),
                (Some(from), None) => _mm512_loadu_ps(from.add(at)),
                (None, bias) => bias.unwrap_or(zero),
            };
            let mut v = _mm512_add_ps(prior, sums);
            if store.relu {
                v = _mm512_max_ps(v, zero);
            }
            _mm512_storeu_ps(c.add(at), v);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const ROWS: usize, const VECTORS: usize, const IN_ROWS: bool>(kc: usize, (a, row_stride): (*const f32, usize), b: *const f32, c: *mut f32, ldc: usize, store: TileStore, rows: usize) {
    use std::arch::x86_64::*;
    let (offsets, k_step) = weight_offsets::<ROWS, IN_ROWS>(6, row_stride, rows);
    // 6 × 2 accumulators, 2 for B and 1 broadcast: 15 of the 16 ymm registers (4 × 3 needed a
    // 17th, and the accumulator spilled to the stack every step ran at half the peak). A tile's
    // last rows past the output channels are left out two by two.
    let mut acc = [[_mm256_setzero_ps(); VECTORS]; ROWS];
    let steps = |acc: &mut [[__m256; VECTORS]; ROWS], mut ap: *const f32, mut bp: *const f32, n: usize| {
        for _ in 0..n {
            let bv: [__m256; VECTORS] = std::array::from_fn(|v| _mm256_loadu_ps(bp.add(8 * v)));
            for (row, &offset) in acc.iter_mut().zip(&offsets) {
                let ai = _mm256_set1_ps(*ap.add(offset));
                for (sum, &bv) in row.iter_mut().zip(&bv) {
                    *sum = _mm256_fmadd_ps(ai, bv, *sum);
                }
            }
            ap = ap.add(k_step);
            bp = bp.add(16);
        }
    };
    let fetch_at = store.fetch_at(kc);
    steps(&mut acc, a, b, fetch_at);
    if fetch_at < kc {
        store.prefetch(c, ldc, rows, 8 * VECTORS);
        steps(&mut acc, a.add(fetch_at * k_step), b.add(fetch_at * 16), kc - fetch_at);
    }
    let zero = _mm256_setzero_ps();
    for (i, row) in acc.iter().enumerate().take(rows) {
        let bias = store.start.bias().map(|bias| _mm256_set1_ps(*bias.add(i)));
        let from = store.start.from(c);
        for (j, &sums) in row.iter().enumerate() {
            let at = i * ldc + j * 8;
            let prior = match (from, bias) {
                (Some(from), Some(bias)) => _mm256_add_ps(_mm256_loadu_ps(from.add(at)), bias),
                (Some(from), None) => _mm256_loadu_ps(from.add(at)),
                (None, bias) => bias.unwrap_or(zero),
            };
            let mut v = _mm256_add_ps(prior, sums);
            if store.relu {
                v = _mm256_max_ps(v, zero);
            }
            _mm256_storeu_ps(c.add(at), v);
        }
    }
}

/// Where a micro-kernel computing `R` rows finds row `i`'s weight of a K row: `offsets[i]`
/// floats past that K row's, the next K row `k_step` floats on. Packed (`[kc][mr]`) that is `i`
/// and `mr`; in place, rows `row_stride` apart, `i · row_stride` and 1, where rows past `rows`
/// (a last tile's, computed but never stored) read row 0's rather than past the matrix.
#[inline(always)]
fn weight_offsets<const R: usize, const IN_ROWS: bool>(mr: usize, row_stride: usize, rows: usize) -> ([usize; R], usize) {
    if IN_ROWS {
        (std::array::from_fn(|i| if i < rows { i * row_stride } else { 0 }), 1)
    } else {
        (std::array::from_fn(|i| i), mr)
    }
}

/// One tile's weights from K row `k0` on, as [`GemmKernel::tile`] reads them: at `at`, packed
/// (`row_stride` `None`) or row-major in place, rows `row_stride` floats apart.
#[derive(Clone, Copy, Debug)]
struct WeightTile {
    at: *const f32,
    row_stride: Option<usize>,
}

/// The weights `A[m × k]` as the micro-kernels read them.
#[derive(Clone, Copy)]
pub(super) enum Weights<'a> {
    /// In tiles of the kernel's rows ([`PackedWeights`]).
    Packed(&'a PackedWeights),
    /// Row-major, `k` floats a row, read in place: a 1×1 convolution's `[C_out, C_in]` as it is
    /// given. Packing it anew in every call (its 1×1 layers hold most of a ResNet-50's
    /// weights) made passes 3% slower; the kernels read the rows' weights as they read a packed
    /// tile's, from L1 after its first strip.
    Rows { data: &'a [f32], m: usize, k: usize },
}

impl Weights<'_> {
    fn m(&self) -> usize {
        match self {
            Weights::Packed(packed) => packed.m,
            Weights::Rows { m, .. } => *m,
        }
    }

    fn k(&self) -> usize {
        match self {
            Weights::Packed(packed) => packed.k,
            Weights::Rows { k, .. } => *k,
        }
    }

    /// Tile `tile`'s weights (rows `tile · mr` on) from K row `k0` on.
    fn tile(&self, mr: usize, tile: usize, k0: usize) -> WeightTile {
        match self {
            Weights::Packed(packed) => WeightTile { at: packed.data[(tile * packed.k + k0) * mr..].as_ptr(), row_stride: None },
            Weights::Rows { data, k, .. } => WeightTile { at: data[tile * mr * k + k0..].as_ptr(), row_stride: Some(*k) },
        }
    }
}

/// K rows per packed block: a tile's weights (`mr × k_block()`) stay in L1 while it sweeps the
/// block, and the block's `k_block() × BLOCK_PIXELS` floats of B in L2. 512 rows where a core
/// has 2 MB of L2 or more (B's 768 KB beside the outputs): 1–5% faster there than 256 on 1×1
/// and 3×3 layers with either kernel; with 1 MB of L2 (the AMD VMs) 512 was level.
fn k_block() -> usize {
    static ROWS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *ROWS.get_or_init(|| if l2_bytes().is_some_and(|bytes| bytes >= 2 << 20) { 512 } else { 256 })
}

/// One core's L2 cache in bytes, as CPUID's extended leaf 0x8000_0006 gives it (Intel and AMD
/// both fill it), or `None`.
fn l2_bytes() -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        // Leaf 0x8000_0006 only where the highest extended leaf reaches it.
        let kilobytes = (__cpuid(0x8000_0000).eax >= 0x8000_0006).then(|| __cpuid(0x8000_0006).ecx >> 16);
        kilobytes.filter(|&kb| kb > 0).map(|kb| kb as usize * 1024)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// Pixels per packed block (at most): `k_block() × BLOCK_PIXELS` floats of B stay in L2, and each
/// tile's weights (in L1) serve 8 strips. Whatever the output channels: fewer pixels where a
/// block's outputs would not fit in L2 beside it (at most 64 K floats, as before the stores
/// were fused) ran 512→2048 1×1 17% slower and 512→512 3×3 3% (BENCHMARKS.md).
const BLOCK_PIXELS: usize = 384;

/// One axis of a correlation: output position `o` reads input position `o·stride + offsets[t]`
/// for tap `t`, where that lies in `0..input` (else zero padding).
#[derive(Clone, Debug)]
pub(super) struct Axis {
    pub stride: usize,
    pub input: usize,
    pub output: usize,
    pub offsets: Vec<isize>,
}

impl Axis {
    /// A forward convolution's axis: tap `t` reads `o·stride + t·dilation − padding`.
    pub fn forward(kernel: usize, stride: usize, dilation: usize, padding: usize, input: usize, output: usize) -> Self {
        Axis { stride, input, output, offsets: (0..kernel).map(|t| (t * dilation) as isize - padding as isize).collect() }
    }

    /// The output positions whose tap `t` reads inside the input (one range: taps are linear).
    fn inside(&self, t: usize) -> Range<usize> {
        let offset = self.offsets[t];
        let first = if offset >= 0 { 0 } else { offset.unsigned_abs().div_ceil(self.stride) };
        let end = if (self.input as isize) > offset { (self.input as isize - offset) as usize } else { 0 };
        let (first, end) = (first.min(self.output), end.div_ceil(self.stride).min(self.output));
        first..end.max(first)
    }
}

/// The weights `A[m × k]` in tiles of the kernel's `mr` rows: `[m / mr][k][mr]`, rows past `m`
/// zero, so that a tile reads its `mr` weights of each `k` contiguously.
pub(super) struct PackedWeights {
    m: usize,
    k: usize,
    data: Vec<f32>,
}

/// Where a weight lies in a convolution's weight tensor: `row · row + tap · tap + channel ·
/// channel` floats in (a forward convolution's `[C_out, C_in/groups, kH, kW]` is `(C_in/groups
/// · taps, 1, taps)`, a transposed one's `[C_in, C_out/groups, kH, kW]` `(taps, 1, C_out/groups
/// · taps)`).
#[derive(Clone, Copy, Debug)]
pub(super) struct WeightStrides {
    pub row: usize,
    pub tap: usize,
    pub channel: usize,
}

impl PackedWeights {
    /// Rows (the product's M).
    pub fn m(&self) -> usize {
        self.m
    }

    /// Packs `A[row, (j, c)] = weight(row, taps[j], c)` (K = `taps.len() · channels`,
    /// tap-major), read from `source` with `strides`. Row by row, each tap's weights of a row
    /// read in one sweep and written every `mr` floats of the tile's packing, which stays in L1:
    /// element by element instead (the tile's `mr` rows at once) and into a buffer zeroed
    /// first, the packing of a ResNet-50 pass's weights (its 1×1 layers' then included) took 13
    /// ms rather than 8.
    pub fn new(kernel: GemmKernel, m: usize, channels: usize, taps: &[usize], source: &[f32], strides: WeightStrides) -> Self {
        let (mr, k) = (kernel.mr(), taps.len() * channels);
        let len = m.div_ceil(mr) * mr * k;
        // The kept buffer, its old contents dropped rather than grown into (`resize` zeroed
        // megabytes that the packing then wrote again).
        let mut data = PACKED_A.take();
        data.clear();
        data.reserve(len);
        data.spare_capacity_mut()[..len].par_chunks_mut(k * mr).enumerate().for_each(|(tile, dst)| {
            let rows = tile * mr..((tile + 1) * mr).min(m);
            if rows.len() < mr {
                // The rows past `m`.
                dst.fill(MaybeUninit::new(0.0));
            }
            for (j, &tap) in taps.iter().enumerate() {
                let dst = &mut dst[j * channels * mr..][..channels * mr];
                for (i, row) in rows.clone().enumerate() {
                    let from = &source[row * strides.row + tap * strides.tap..];
                    let column = dst[i..].iter_mut().step_by(mr);
                    if strides.channel == 1 {
                        column.zip(&from[..channels]).for_each(|(d, &v)| _ = d.write(v));
                    } else {
                        column.zip(from.iter().step_by(strides.channel)).for_each(|(d, &v)| _ = d.write(v));
                    }
                }
            }
        });
        // SAFETY: every tile wrote each of its `k × mr` elements (rows past `m` as zero).
        unsafe { data.set_len(len) };
        PackedWeights { m, k, data }
    }

    /// `N` packings of `m × k` weights at once, in parallel over the tiles: element `(row, k)`
    /// of packing `p` is `values(row, k)[p]` (Winograd's transformed weights, one packing per
    /// point, computed together from one kernel's taps).
    pub fn many<const N: usize>(kernel: GemmKernel, m: usize, k: usize, values: impl Fn(usize, usize) -> [f32; N] + Sync) -> [Self; N] {
        let mr = kernel.mr();
        let tiles = m.div_ceil(mr);
        let len = tiles * mr * k;
        let mut data: [Vec<f32>; N] = std::array::from_fn(|_| Vec::with_capacity(len));
        let dsts: [SharedWrites; N] = std::array::from_fn(|p| SharedWrites(data[p].as_mut_ptr()));
        (0..tiles).into_par_iter().for_each(|tile| {
            for kk in 0..k {
                for i in 0..mr {
                    let row = tile * mr + i;
                    let v = if row < m { values(row, kk) } else { [0.0; N] };
                    for (dst, v) in dsts.iter().zip(v) {
                        // SAFETY: within the capacity; this task alone writes its tile's elements.
                        unsafe { dst.at((tile * k + kk) * mr + i).write(v) };
                    }
                }
            }
        });
        data.map(|mut data| {
            // SAFETY: the tiles wrote every element, rows past `m` included.
            unsafe { data.set_len(len) };
            PackedWeights { m, k, data }
        })
    }
}

impl Drop for PackedWeights {
    fn drop(&mut self) {
        PACKED_A.set(std::mem::take(&mut self.data));
    }
}

/// A correlation of `channels` input planes with the taps of `rows × cols` (tap `t` = `(t /
/// cols taps, t % cols taps)`, K index `t · channels + c`).
pub(super) struct Correlation<'a> {
    pub rows: Axis,
    pub cols: Axis,
    pub channels: usize,
    /// `channels` planes of `rows.input × cols.input`.
    pub input: &'a [f32],
    /// Leave out, per block of pixels, the taps that read only padding there.
    pub skip_padding: bool,
}

impl Correlation<'_> {
    /// A 1×1 correlation at stride 1 without padding: B is the input planes as they are.
    fn is_pointwise(&self) -> bool {
        let plain = |a: &Axis| a.stride == 1 && a.offsets == [0] && a.input == a.output;
        plain(&self.rows) && plain(&self.cols)
    }
}

/// Where [`correlate`] writes: `out[m × pixels]`, each element `bias[row] + Σ` (added onto
/// what `out` holds where `onto`), then the epilogue (its residual laid out as `out`). Shared by
/// the tasks, which write disjoint tiles.
#[derive(Clone, Copy)]
struct Target<'a> {
    out: *mut f32,
    pixels: usize,
    bias: Option<&'a [f32]>,
    epilogue: Epilogue<'a>,
    onto: bool,
}
// SAFETY: each task writes only its own (rows, pixels) tiles (see `correlate`); the rest is read.
unsafe impl Send for Target<'_> {}
unsafe impl Sync for Target<'_> {}

impl Target<'_> {
    /// The micro-kernel's store for the whole tile at (`row`, `col`), in the first and/or last
    /// K block of its block of pixels.
    fn tile_store(&self, row: usize, col: usize, first: bool, last: bool) -> TileStore {
        let bias = self.bias.map(|b| b[row..].as_ptr());
        let residual = self.epilogue.residual.map(|r| r[row * self.pixels + col..].as_ptr());
        let start = match (first, self.onto, residual) {
            (true, false, None) => Start::Bias(bias),
            (true, false, Some(residual)) => Start::Onto(Some(residual), bias),
            (true, true, _) => Start::Onto(None, bias),
            (false, ..) => Start::Onto(None, None),
        };
        TileStore { start, relu: last && self.epilogue.relu, fetch: last || (first && residual.is_some()) }
    }

    /// The same store element by element, for partial tiles and for pixels that no tap reads
    /// data for (`sum` 0).
    ///
    /// # Safety
    /// `(row, col)` lies in `out`, and unless `first` and not `onto` this task has written it
    /// already.
    unsafe fn store(&self, row: usize, col: usize, sum: f32, first: bool, last: bool) {
        let at = row * self.pixels + col;
        let p = self.out.add(at);
        // As the kernels store: the residual (in its buffer or in C's) with the bias.
        let onto = match (first, self.onto, self.epilogue.residual) {
            (true, false, None) => None,
            (true, false, Some(residual)) => Some(residual[at]),
            (true, true, _) | (false, ..) => Some(*p),
        };
        let bias = if first { self.bias.map(|b| b[row]) } else { None };
        let prior = match (onto, bias) {
            (Some(onto), Some(bias)) => onto + bias,
            (Some(onto), None) => onto,
            (None, bias) => bias.unwrap_or(0.0),
        };
        let v = prior + sum;
        *p = if last && self.epilogue.relu { v.max(0.0) } else { v };
    }
}

thread_local! {
    /// The packed block of B, per thread, and the packed weights (on the calling thread), kept
    /// between calls: on this VM, mapping, faulting in and unmapping megabytes per call (with
    /// the TLB shootdowns that unmapping sends the other core) cost more than the packing.
    static PACKED_B: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    static PACKED_A: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Where [`correlate`] writes.
pub(super) enum Output<'a> {
    /// A buffer that the products fill, uninitialised until then.
    Fresh(&'a mut [MaybeUninit<f32>]),
    /// Values that the products add onto: a residual, computed on in its own buffer.
    Onto(&'a mut [f32]),
}

/// `out[m planes of rows.output × cols.output] = epilogue(bias + A · B(correlation))`, every
/// element written (`out` may start uninitialised; [`Output::Onto`]: added onto what it holds),
/// in tasks of a block of pixels (and a share of the output channels where the blocks are few)
/// over rayon's threads. `bias` has `m` values, the epilogue's residual `out`'s shape.
pub(super) fn correlate(kernel: GemmKernel, c: &Correlation, a: Weights, bias: Option<&[f32]>, epilogue: Epilogue, out: Output) {
    let onto = matches!(out, Output::Onto(_));
    let (out, len) = match out {
        Output::Fresh(out) => (out.as_mut_ptr().cast::<f32>(), out.len()),
        Output::Onto(out) => (out.as_mut_ptr(), out.len()),
    };
    let taps = c.rows.offsets.len() * c.cols.offsets.len();
    assert_eq!(a.k(), taps * c.channels);
    if let Weights::Rows { data, m, k } = a {
        assert_eq!(data.len(), m * k);
    }
    let pixels = c.rows.output * c.cols.output;
    assert_eq!(len, a.m() * pixels);
    assert_eq!(c.input.len(), c.channels * c.rows.input * c.cols.input);
    assert!(bias.is_none_or(|b| b.len() == a.m()) && epilogue.residual.is_none_or(|r| r.len() == len));
    if pixels == 0 || a.m() == 0 {
        return;
    }
    let tasks = tasks(kernel, a.m(), pixels);
    let target = Target { out, pixels, bias, epilogue, onto };
    tasks.into_par_iter().for_each(|(tile_range, strip_range)| {
        PACKED_B.with_borrow_mut(|packed| correlate_part(kernel, c, a, target, tile_range, strip_range, packed));
    });
}

/// `out[m × pixels] = A · B` for a B packed as [`correlate`] packs its blocks, but whole: strip
/// `s` (`nr` pixels, the last padded with zeros) holds its K rows of `nr` floats at `s · K ·
/// nr`. Winograd's input transform writes its patches so, and its GEMMs pack nothing.
pub(super) fn correlate_packed(kernel: GemmKernel, b: &[f32], pixels: usize, a: &PackedWeights, out: &mut [MaybeUninit<f32>]) {
    let nr = kernel.nr();
    assert_eq!(b.len(), pixels.div_ceil(nr) * a.k * nr);
    assert_eq!(out.len(), a.m * pixels);
    if a.k == 0 {
        // No products: every sum is zero.
        out.fill(MaybeUninit::new(0.0));
        return;
    }
    if pixels == 0 || a.m == 0 {
        return;
    }
    let target = Target { out: out.as_mut_ptr().cast::<f32>(), pixels, bias: None, epilogue: Epilogue::NONE, onto: false };
    tasks(kernel, a.m, pixels).into_par_iter().for_each(|(tile_range, block)| {
        let mut scratch = vec![0.0f32; kernel.mr() * nr];
        let kc = k_block();
        for k0 in (0..a.k).step_by(kc) {
            let ks = k0..(k0 + kc).min(a.k);
            let (first, last) = (k0 == 0, ks.end == a.k);
            let strips = b[(block.start * a.k + k0) * nr..].as_ptr();
            // SAFETY: the block's strips lie in `b` (asserted above), `K × nr` floats apart.
            unsafe { multiply_block(kernel, Weights::Packed(a), target, tile_range.clone(), block.clone(), ks, strips, a.k * nr, (first, last), &mut scratch) };
        }
    });
}

/// The tasks of a product with `m` rows and `pixels` columns: (tiles, strips) pairs.
fn tasks(kernel: GemmKernel, m: usize, pixels: usize) -> Vec<(Range<usize>, Range<usize>)> {
    let (mr, nr) = (kernel.mr(), kernel.nr());
    let strips = pixels.div_ceil(nr);
    let tiles = m.div_ceil(mr);
    // One task per block of pixels, taken by whichever thread is free (a core that the VM or
    // another process slows down takes fewer). Blocks of at most BLOCK_PIXELS, as many as a
    // multiple of the threads, the strips shared out evenly: a 65×65 map in 11 blocks of 8
    // strips left one of two threads idle for the last block's time, a twelfth of the layer.
    // Where there are too few blocks to keep every thread busy to the end, the output channels
    // are split too, each task packing B for itself.
    let threads = rayon::current_num_threads().max(1);
    let blocks = strips.div_ceil(BLOCK_PIXELS.div_ceil(nr)).next_multiple_of(threads).min(strips);
    let tile_chunks = if blocks >= 2 * threads { 1 } else { tiles.min((2 * threads).div_ceil(blocks)) };
    (0..tile_chunks)
        .flat_map(|i| {
            let tile_range = tiles * i / tile_chunks..tiles * (i + 1) / tile_chunks;
            (0..blocks).map(move |b| (tile_range.clone(), strips * b / blocks..strips * (b + 1) / blocks))
        })
        .filter(|(t, s)| !t.is_empty() && !s.is_empty())
        .collect()
}

/// One task of [`correlate`]: the tiles `tile_range` × the strips `block`.
fn correlate_part(kernel: GemmKernel, c: &Correlation, a: Weights, out: Target, tile_range: Range<usize>, block: Range<usize>, packed: &mut Vec<f32>) {
    let (mr, nr) = (kernel.mr(), kernel.nr());
    let (taps_w, taps) = (c.cols.offsets.len(), c.rows.offsets.len() * c.cols.offsets.len());
    let pixels = c.rows.output * c.cols.output;
    let mut scratch = vec![0.0f32; mr * nr];
    let block_pixels = block.start * nr..(block.end * nr).min(pixels);
    // The taps that read data for some pixel of the block, as runs of consecutive K rows.
    let block_rows = block_pixels.start / c.cols.output..(block_pixels.end - 1) / c.cols.output + 1;
    let reads_data = |t: usize| {
        let rows = c.rows.inside(t / taps_w);
        !c.skip_padding || (rows.start < block_rows.end && block_rows.start < rows.end && !c.cols.inside(t % taps_w).is_empty())
    };
    let mut runs: Vec<Range<usize>> = Vec::new();
    for t in (0..taps).filter(|&t| reads_data(t)) {
        match runs.last_mut() {
            Some(run) if run.end == t * c.channels => run.end += c.channels,
            _ => runs.push(t * c.channels..(t + 1) * c.channels),
        }
    }
    let lanes = ShiftedLanes::new(kernel, c, block.clone());
    let kc = k_block();
    let k_blocks: Vec<Range<usize>> = runs.iter().flat_map(|run| run.clone().step_by(kc).map(|k0| k0..(k0 + kc).min(run.end))).collect();
    if k_blocks.is_empty() {
        // No tap reads data here: the bias and the epilogue alone.
        for row in tile_range.start * mr..(tile_range.end * mr).min(a.m()) {
            for col in block_pixels.clone() {
                // SAFETY: this task's own outputs, first and last written here.
                unsafe { out.store(row, col, 0.0, true, true) };
            }
        }
    }
    for (index, ks) in k_blocks.iter().enumerate() {
        let (first, last) = (index == 0, index + 1 == k_blocks.len());
        let kc = ks.len();
        // Grown, never shrunk: a last, shorter K block (576 rows as 512 + 64) shrank it, and
        // the next block's growth zeroed hundreds of KB again.
        let len = block.len() * kc * nr;
        if packed.len() < len + LINE_FLOATS {
            packed.resize(len + LINE_FLOATS, 0.0);
        }
        let packed = &mut cache_aligned(packed)[..len];
        match &lanes {
            Some(lanes) => pack_shifted_on(kernel, c, ks.clone(), block.clone(), lanes, packed),
            None => pack_block_on(kernel, c, ks.clone(), block.clone(), packed),
        }
        // SAFETY: `packed` holds the block's strips of this K block, `kc × nr` floats apart.
        unsafe { multiply_block(kernel, a, out, tile_range.clone(), block.clone(), ks.clone(), packed.as_ptr(), kc * nr, (first, last), &mut scratch) };
    }
}

/// Multiplies the tiles `tile_range` by one K block `ks` of B over the strips `block`, strip `i`
/// of the block at `b + i · strip_stride` (`ks.len() × nr` floats), storing per whether it is
/// the first and/or last K block of these outputs.
///
/// # Safety
/// `b` holds those strips.
#[allow(clippy::too_many_arguments)] // one K block's operands
unsafe fn multiply_block(kernel: GemmKernel, a: Weights, out: Target, tile_range: Range<usize>, block: Range<usize>, ks: Range<usize>, b: *const f32, strip_stride: usize, (first, last): (bool, bool), scratch: &mut [f32]) {
    let (mr, nr) = (kernel.mr(), kernel.nr());
    let kc = ks.len();
    let pixels = out.pixels;
    for tile in tile_range.clone() {
        let rows = tile * mr..((tile + 1) * mr).min(a.m());
        let a_tile = a.tile(mr, tile, ks.start);
        for (i, strip) in block.clone().enumerate() {
            let cols = strip * nr..((strip + 1) * nr).min(pixels);
            let b_strip = b.add(i * strip_stride);
            // SAFETY: `a_tile` holds this tile's weights of the `kc` K rows, `b_strip` `kc × nr`;
            // a tile of whole strips writes its rows (inside `m`) of `nr` pixels of `out` (`m ×
            // pixels`), which this task alone writes, and reads them only after its first K
            // block wrote them; a strip past the map's end goes through `scratch`.
            unsafe {
                if cols.len() == nr {
                    let dst = out.out.add(rows.start * pixels + cols.start);
                    kernel.tile(kc, a_tile, b_strip, dst, pixels, out.tile_store(rows.start, cols.start, first, last), (rows.len(), nr));
                } else {
                    // The sums alone, over whatever `scratch` holds: zeroing it first was a
                    // `memset` per call, 1.5% of a ResNet pass's samples.
                    let sums_only = TileStore { start: Start::Bias(None), relu: false, fetch: false };
                    kernel.tile(kc, a_tile, b_strip, scratch.as_mut_ptr(), nr, sums_only, (rows.len(), cols.len()));
                    for (row, sums) in rows.clone().zip(scratch.chunks(nr)) {
                        for (col, &sum) in cols.clone().zip(sums) {
                            out.store(row, col, sum, first, last);
                        }
                    }
                }
            }
        }
    }
}

/// [`pack_block`] for a 1×1 stride-1 unpadded correlation, where row `k` of B is plane `k`
/// itself: each strip is one copy of `NR` contiguous floats, its length known to the compiler so
/// that it is a few vector moves rather than a call to `memmove` (most of the packing's time on
/// a ResNet's 1×1 layers).
fn pack_pointwise<const NR: usize>(input: &[f32], pixels: usize, ks: Range<usize>, strips: Range<usize>, packed: &mut [f32]) {
    let kc = ks.len();
    for (kk, k) in ks.enumerate() {
        let plane = &input[k * pixels..][..pixels];
        for (i, strip) in strips.clone().enumerate() {
            let dst = &mut packed[(i * kc + kk) * NR..][..NR];
            let src = &plane[strip * NR..];
            if src.len() >= NR {
                let dst: &mut [f32; NR] = dst.try_into().expect("NR floats");
                *dst = src[..NR].try_into().expect("NR floats");
            } else {
                dst[..src.len()].copy_from_slice(src);
                dst[src.len()..].fill(0.0);
            }
        }
    }
}

/// Which lanes of each strip of a block read inside the input, per tap, for a stride-1
/// correlation whose output is as wide as its input (a convolution padded to keep its size, or a
/// transposed one's output phase): there output pixel `q` (row-major) reads input element
/// `q + shift` of its plane for tap shift `offset_y · width + offset_x`, so each strip's K row
/// is one run of `nr` consecutive input floats, loaded under these masks, wherever the strip
/// crosses output rows. Copying it row segment by row segment instead (a few per strip, each
/// clipped to the padding) was a third of a 64→64 3×3 layer's time.
struct ShiftedLanes {
    taps_w: usize,
    /// Per strip and kernel row: the lanes (bit `l` for pixel `l` of the strip) whose input row
    /// lies inside the input; lanes past the map clear.
    rows: Vec<u64>,
    /// Per strip and kernel column: the lanes whose input column lies inside the input.
    cols: Vec<u64>,
}

impl ShiftedLanes {
    /// The masks for the strips `strips`, where the correlation allows it.
    fn new(kernel: GemmKernel, c: &Correlation, strips: Range<usize>) -> Option<Self> {
        let (nr, width) = (kernel.nr(), c.cols.input);
        if c.is_pointwise() || c.rows.stride != 1 || c.cols.stride != 1 || c.cols.output != width {
            return None;
        }
        let (taps_h, taps_w) = (c.rows.offsets.len(), c.cols.offsets.len());
        let pixels = c.rows.output * width;
        let mut lanes = ShiftedLanes { taps_w, rows: vec![0; strips.len() * taps_h], cols: vec![0; strips.len() * taps_w] };
        let (rows_inside, cols_inside): (Vec<_>, Vec<_>) = ((0..taps_h).map(|t| c.rows.inside(t)).collect(), (0..taps_w).map(|t| c.cols.inside(t)).collect());
        for (i, strip) in strips.enumerate() {
            for lane in 0..nr.min(pixels - strip * nr) {
                let (y, x) = ((strip * nr + lane) / width, (strip * nr + lane) % width);
                for (t, inside) in rows_inside.iter().enumerate() {
                    if inside.contains(&y) {
                        lanes.rows[i * taps_h + t] |= 1 << lane;
                    }
                }
                for (t, inside) in cols_inside.iter().enumerate() {
                    if inside.contains(&x) {
                        lanes.cols[i * taps_w + t] |= 1 << lane;
                    }
                }
            }
        }
        Some(lanes)
    }
}

/// [`pack_block`] for the correlations [`ShiftedLanes`] describes, compiled for the kernel's
/// instruction set: each strip's K row is a few masked loads from its plane at the tap's shift
/// (masked-off lanes, the padding, are not read, and are packed as zero).
fn pack_shifted_on(kernel: GemmKernel, c: &Correlation, ks: Range<usize>, strips: Range<usize>, lanes: &ShiftedLanes, packed: &mut [f32]) {
    assert!(packed.len() >= strips.len() * ks.len() * kernel.nr() && c.input.len() >= c.channels * c.rows.input * c.cols.input);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a kernel exists only on CPUs with its features; the extents are checked above.
    unsafe {
        match kernel {
            GemmKernel::Avx512 => pack_shifted_avx512(c, ks, strips, lanes, packed),
            GemmKernel::Avx2 => pack_shifted_avx2(c, ks, strips, lanes, packed),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no x86 kernels here ({kernel:?}, {ks:?}, {strips:?}, {}, {})", lanes.taps_w, packed.len())
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_shifted_avx512(c: &Correlation, ks: Range<usize>, strips: Range<usize>, lanes: &ShiftedLanes, packed: &mut [f32]) {
    use std::arch::x86_64::*;
    pack_shifted(c, ks, strips, lanes, packed, GemmKernel::Avx512.nr(), |mask, src, dst| {
        for j in 0..3 {
            // SAFETY: a lane is set only where its input element lies inside the plane, and
            // masked-off lanes are not read; `dst` holds the strip's 48 floats.
            unsafe {
                let v = _mm512_maskz_loadu_ps((mask >> (16 * j)) as u16, src.wrapping_add(16 * j));
                _mm512_storeu_ps(dst.add(16 * j), v);
            }
        }
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pack_shifted_avx2(c: &Correlation, ks: Range<usize>, strips: Range<usize>, lanes: &ShiftedLanes, packed: &mut [f32]) {
    use std::arch::x86_64::*;
    let bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    pack_shifted(c, ks, strips, lanes, packed, GemmKernel::Avx2.nr(), |mask, src, dst| {
        for j in 0..2 {
            // SAFETY: as in the AVX-512 version: only lanes inside the plane are read; `dst`
            // holds the strip's 16 floats.
            unsafe {
                let bits = _mm256_set1_epi32((mask >> (8 * j)) as i32 & 0xff);
                let lanes = _mm256_cmpeq_epi32(_mm256_and_si256(bits, bit), bit);
                _mm256_storeu_ps(dst.add(8 * j), _mm256_maskload_ps(src.wrapping_add(8 * j), lanes));
            }
        }
    })
}

/// The loop of [`pack_shifted_on`]: `copy(mask, src, dst)` moves one strip's `nr` floats under
/// `mask` (bit `l` for lane `l`), zeros where it is clear.
#[inline(always)]
fn pack_shifted(c: &Correlation, ks: Range<usize>, strips: Range<usize>, lanes: &ShiftedLanes, packed: &mut [f32], nr: usize, copy: impl Fn(u64, *const f32, *mut f32)) {
    let (width, plane) = (c.cols.input, c.rows.input * c.cols.input);
    let (taps_h, kc) = (c.rows.offsets.len(), ks.len());
    for (kk, k) in ks.enumerate() {
        let (tap, channel) = (k / c.channels, k % c.channels);
        let (ty, tx) = (tap / lanes.taps_w, tap % lanes.taps_w);
        let shift = c.rows.offsets[ty] * width as isize + c.cols.offsets[tx];
        let source = c.input[channel * plane..].as_ptr().wrapping_offset(shift);
        let ahead = channel + PREFETCH_CHANNELS < c.channels;
        for (i, strip) in strips.clone().enumerate() {
            let src = source.wrapping_add(strip * nr);
            copy(lanes.rows[i * taps_h + ty] & lanes.cols[i * lanes.taps_w + tx], src, packed[(i * kc + kk) * nr..][..nr].as_mut_ptr());
            if ahead {
                prefetch(src.wrapping_add(PREFETCH_CHANNELS * plane), nr);
            }
        }
    }
}

/// How far ahead the packing asks for its input: the same pixels this many K rows (input planes)
/// on. Each K row reads a different plane, a few segments of a few hundred bytes, which the
/// hardware prefetchers do not see coming; asked for 4 rows ahead, 512→512 3×3 at dilation 4
/// ran 5–9% faster, 256→256 2–4% (a 1×1 layer's packing copies whole strips, which they see).
const PREFETCH_CHANNELS: usize = 4;

/// Asks the cache for the `len` floats from `start`, which may lie anywhere (a prefetch never
/// faults).
#[inline(always)]
fn prefetch(start: *const f32, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // A cache line is 16 floats: one request per line, and the last one.
        for offset in (0..len).step_by(16).chain(len.checked_sub(1)) {
            // SAFETY: prefetching is a hint, valid for any address (`wrapping_add` computes it
            // without dereferencing).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
}

/// Packs `B[ks, strips' pixels]` as `[strip][k][nr]`, pixels past the map zero: row `k` of B is
/// what tap `k / channels` reads from plane `k % channels`, row segment by row segment.
/// [`pack_block`] compiled for the kernel's instruction set, so that its short row segments
/// are copied with vector moves (masked on AVX-512) where a call to `memmove` per segment of a
/// few dozen floats was most of the packing's time (on AVX2 at stride 2, a scalar gather: 40%
/// of a ResNet stem's).
fn pack_block_on(kernel: GemmKernel, c: &Correlation, ks: Range<usize>, strips: Range<usize>, packed: &mut [f32]) {
    match kernel {
        // SAFETY: `GemmKernel::Avx512` exists only where the CPU has AVX-512F.
        #[cfg(target_arch = "x86_64")]
        GemmKernel::Avx512 => unsafe { pack_block_avx512(c, ks, strips, packed) },
        // SAFETY: `GemmKernel::Avx2` exists only where the CPU has AVX2.
        #[cfg(target_arch = "x86_64")]
        GemmKernel::Avx2 => unsafe { pack_block_avx2(c, ks, strips, packed) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => pack_block(c, ks, strips, kernel.nr(), packed, copy_segment),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_block_avx512(c: &Correlation, ks: Range<usize>, strips: Range<usize>, packed: &mut [f32]) {
    pack_block(c, ks, strips, GemmKernel::Avx512.nr(), packed, |dst, src, stride| {
        // SAFETY: this function runs only on CPUs with AVX-512F.
        unsafe { copy_segment_avx512(dst, src, stride) }
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pack_block_avx2(c: &Correlation, ks: Range<usize>, strips: Range<usize>, packed: &mut [f32]) {
    pack_block(c, ks, strips, GemmKernel::Avx2.nr(), packed, |dst, src, stride| {
        // SAFETY: this function runs only on CPUs with AVX2.
        unsafe { copy_segment_avx2(dst, src, stride) }
    })
}

/// `dst[i] = src[i · stride]`.
#[inline(always)]
fn copy_segment(dst: &mut [f32], src: &[f32], stride: usize) {
    if stride == 1 {
        dst.copy_from_slice(&src[..dst.len()]);
    } else {
        dst.iter_mut().zip(src.iter().step_by(stride)).for_each(|(d, &v)| *d = v);
    }
}

/// [`copy_segment`] in masked 16-float moves (masked-off lanes are neither read nor written);
/// at stride 2 (a ResNet's stem and downsampling layers) each 16 outputs are the even lanes of
/// two such loads, picked by one permute, where the scalar gather was most of those layers'
/// packing.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn copy_segment_avx512(dst: &mut [f32], src: &[f32], stride: usize) {
    use std::arch::x86_64::*;
    let n = dst.len();
    assert!(n == 0 || src.len() > (n - 1) * stride);
    let mask = |lanes: usize| -> __mmask16 { ((1u32 << lanes) - 1) as u16 };
    match stride {
        1 => {
            for i in (0..n).step_by(16) {
                let lanes = mask((n - i).min(16));
                let v = _mm512_maskz_loadu_ps(lanes, src.as_ptr().add(i));
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add(i), lanes, v);
            }
        }
        2 => {
            let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            for i in (0..n).step_by(16) {
                let lanes = (n - i).min(16);
                // The source floats these outputs read: 2·lanes − 1 from 2i.
                let reach = 2 * lanes - 1;
                let from = src.as_ptr().add(2 * i);
                let low = _mm512_maskz_loadu_ps(mask(reach.min(16)), from);
                let high = _mm512_maskz_loadu_ps(mask(reach.saturating_sub(16)), from.wrapping_add(16));
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add(i), mask(lanes), _mm512_permutex2var_ps(low, even, high));
            }
        }
        _ => copy_segment(dst, src, stride),
    }
}

/// [`copy_segment_avx512`] in AVX2's 8-float moves, the last few floats through a masked load
/// and stored one by one (AMD's masked stores are slow): at stride 2 each 8 outputs are the
/// even lanes of two loads, picked by a shuffle and a permute.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn copy_segment_avx2(dst: &mut [f32], src: &[f32], stride: usize) {
    use std::arch::x86_64::*;
    let n = dst.len();
    assert!(n == 0 || src.len() > (n - 1) * stride);
    // Lanes `0..lanes` on.
    let mask = |lanes: usize| _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    let mut store = |at: usize, lanes: usize, v: __m256| {
        if lanes == 8 {
            _mm256_storeu_ps(dst.as_mut_ptr().add(at), v);
        } else {
            let mut tail = [0.0f32; 8];
            _mm256_storeu_ps(tail.as_mut_ptr(), v);
            dst[at..at + lanes].copy_from_slice(&tail[..lanes]);
        }
    };
    match stride {
        1 => {
            for i in (0..n).step_by(8) {
                let lanes = (n - i).min(8);
                let v = if lanes == 8 { _mm256_loadu_ps(src.as_ptr().add(i)) } else { _mm256_maskload_ps(src.as_ptr().add(i), mask(lanes)) };
                store(i, lanes, v);
            }
        }
        2 => {
            for i in (0..n).step_by(8) {
                let lanes = (n - i).min(8);
                // The source floats these outputs read: 2·lanes − 1 from 2i.
                let reach = 2 * lanes - 1;
                let from = src.as_ptr().add(2 * i);
                let low = if reach >= 8 { _mm256_loadu_ps(from) } else { _mm256_maskload_ps(from, mask(reach)) };
                let high = _mm256_maskload_ps(from.wrapping_add(8), mask(reach.saturating_sub(8)));
                // [l0 l2 h0 h2 | l4 l6 h4 h6], its 64-bit quarters reordered to 0, 2, 1, 3.
                let evens = _mm256_shuffle_ps::<0b10_00_10_00>(low, high);
                store(i, lanes, _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(evens))));
            }
        }
        _ => copy_segment(dst, src, stride),
    }
}

#[inline(always)]
fn pack_block(c: &Correlation, ks: Range<usize>, strips: Range<usize>, nr: usize, packed: &mut [f32], copy: impl Fn(&mut [f32], &[f32], usize)) {
    let (ow, taps_w) = (c.cols.output, c.cols.offsets.len());
    let (ih, iw) = (c.rows.input, c.cols.input);
    let pixels = c.rows.output * ow;
    let kc = ks.len();
    if c.is_pointwise() {
        match nr {
            48 => pack_pointwise::<48>(c.input, pixels, ks, strips, packed),
            16 => pack_pointwise::<16>(c.input, pixels, ks, strips, packed),
            _ => unreachable!("the kernels' strips are 48 or 16 pixels"),
        }
        return;
    }
    // Each strip's pieces of output rows (the same for every K row): strip, place in the strip,
    // output row and columns; working them out per K row (two divisions a piece) cost 3×3
    // layers 1–6% of their time (BENCHMARKS.md).
    let mut segments: Vec<(usize, usize, usize, Range<usize>)> = Vec::new();
    for (i, strip) in strips.clone().enumerate() {
        let (start, end) = (strip * nr, ((strip + 1) * nr).min(pixels));
        let mut p = start;
        while p < end {
            let (oy, ox0) = (p / ow, p % ow);
            let ox1 = ow.min(ox0 + end - p);
            segments.push((i, p - start, oy, ox0..ox1));
            p += ox1 - ox0;
        }
    }
    // Pixels past the map, in the last strip.
    let last = (strips.len() - 1, (pixels - (strips.end - 1) * nr).min(nr));
    for (kk, k) in ks.enumerate() {
        let (tap, channel) = (k / c.channels, k % c.channels);
        let (ty, tx) = (tap / taps_w, tap % taps_w);
        let plane = &c.input[channel * ih * iw..][..ih * iw];
        let (offset_y, offset_x) = (c.rows.offsets[ty], c.cols.offsets[tx]);
        let inside_x = c.cols.inside(tx);
        let sx = c.cols.stride;
        packed[(last.0 * kc + kk) * nr..][last.1..nr].fill(0.0);
        for (i, at, oy, ox) in &segments {
            let seg = &mut packed[(i * kc + kk) * nr + at..][..ox.len()];
            let iy = (oy * c.rows.stride) as isize + offset_y;
            if iy < 0 || iy >= ih as isize {
                seg.fill(0.0);
                continue;
            }
            let row = &plane[iy as usize * iw..][..iw];
            let lo = inside_x.start.clamp(ox.start, ox.end);
            let hi = inside_x.end.clamp(lo, ox.end);
            seg[..lo - ox.start].fill(0.0);
            seg[hi - ox.start..].fill(0.0);
            let inner = &mut seg[lo - ox.start..hi - ox.start];
            if inner.is_empty() {
                continue;
            }
            let first = (lo * sx) as isize + offset_x;
            let src = &row[first as usize..];
            if channel + PREFETCH_CHANNELS < c.channels {
                // The same tap's row segment, `PREFETCH_CHANNELS` planes on.
                prefetch(src.as_ptr().wrapping_add(PREFETCH_CHANNELS * ih * iw), inner.len() * sx);
            }
            copy(inner, src, sx);
        }
    }
}
