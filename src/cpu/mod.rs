//! The CPU reference, one file per op (mirroring `shaders/`), each in two forms:
//!
//! - `*_reference`: a plain direct loop that accumulates in f64 — the gold standard for tests.
//! - the fast form — what the GPU is compared against on real networks: on CPUs with AVX2 or
//!   AVX-512, a packed implicit GEMM ([`GemmKernel`], `implicit_gemm.rs`; transposed
//!   convolutions one output phase at a time), which wide 3×3 stride-1 layers run as the 16
//!   GEMMs of Winograd's F(2×2, 3×3) and wide k = 2s transposed ones as F(3×3, 2×2) per phase
//!   (`winograd.rs`); elsewhere, and for depthwise or narrow
//!   groups, im2col (or GEMM + col2im) on the `gemm` crate's SGEMM, parallel over batch × groups with
//!   rayon, where a forward convolution whose taps often read only padding runs tap by tap
//!   instead ([`TapSkipping`]).
//!
//! All functions take a validated [`WindowGeometry`](crate::shape::WindowGeometry) and flat NCHW
//! slices whose lengths match it.

use std::ops::Range;

use rayon::prelude::*;

use crate::shape::{ConvKind, WindowGeometry};

mod conv2d;
mod conv_transpose2d;
mod implicit_gemm;
mod pool2d;
mod resample;
mod winograd;

pub use conv2d::{conv2d, conv2d_on, conv2d_onto, conv2d_with_epilogue, conv2d_reference, conv2d_sgemm, uses_implicit_gemm, skips_taps, tap_rectangles, TapRectangle, SKIP_BELOW, SKIP_MIN_SAVED_PER_TAP};
pub use conv_transpose2d::{conv_transpose2d, conv_transpose2d_on, conv_transpose2d_reference, conv_transpose2d_sgemm, skips_transposed_taps, TRANSPOSED_SKIP_BELOW};
pub use implicit_gemm::GemmKernel;
pub use pool2d::{avg_pool2d, avg_pool2d_reference, max_pool2d, max_pool2d_reference};
pub use winograd::{allocate_scratch_per_call, conv2d_winograd, conv2d_winograd_prepared, conv_transpose2d_winograd, conv_transpose2d_winograd_prepared, transposed_winograd_applies, winograd_applies, WinogradWeights};
pub use resample::{bilinear_taps, concat_channels, resize_bilinear};

/// A convolution (or pooling) with its weights made ready for the fast path once, to run on
/// many inputs, as a benchmark's repeats do and as ONNX Runtime's sessions pre-pack theirs: where
/// it takes Winograd, the transformed, packed weights ([`WinogradWeights`]); elsewhere the
/// weights as given, which those paths pack per call.
pub struct PreparedConv<'w> {
    geometry: WindowGeometry,
    weights: PreparedWeights<'w>,
}

enum PreparedWeights<'w> {
    Winograd(WinogradWeights),
    AsGiven(&'w [f32]),
}

impl<'w> PreparedConv<'w> {
    /// `g` with its `weight` ready for [`GemmKernel::from_env`].
    pub fn new(g: &WindowGeometry, weight: &'w [f32]) -> Self {
        // Each test holds for its own kind of convolution only.
        let weights = match GemmKernel::from_env() {
            Some(kernel) if winograd_applies(g) || transposed_winograd_applies(g) => PreparedWeights::Winograd(WinogradWeights::new(g, weight, kernel)),
            _ => PreparedWeights::AsGiven(weight),
        };
        PreparedConv { geometry: *g, weights }
    }

    /// `input` convolved (or pooled) with these weights and `bias`, as [`conv2d`],
    /// [`conv_transpose2d`], [`max_pool2d`] or [`avg_pool2d`] computes it.
    pub fn convolve(&self, input: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
        let g = &self.geometry;
        match (&self.weights, g.kind) {
            (PreparedWeights::Winograd(weights), ConvKind::Forward) => conv2d_winograd_prepared(g, input, weights, bias, Epilogue::NONE),
            (PreparedWeights::Winograd(weights), _) => conv_transpose2d_winograd_prepared(g, input, weights, bias),
            (PreparedWeights::AsGiven(weight), ConvKind::Forward) => conv2d(g, input, weight, bias, TapSkipping::from_env()),
            (PreparedWeights::AsGiven(weight), ConvKind::Transposed) => conv_transpose2d(g, input, weight, bias, TapSkipping::from_env()),
            (_, ConvKind::MaxPool) => max_pool2d(g, input),
            (_, ConvKind::AvgPool) => avg_pool2d(g, input),
        }
    }
}

/// Whether the fast convolution leaves out the products of taps that read only zero padding
/// (the sums are the same either way, up to the order of additions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TapSkipping {
    /// Every tap of every pixel, as PyTorch computes them.
    Off,
    /// Where that saves enough work to pay for itself ([`skips_taps`]); other layers take the
    /// plain path unchanged.
    #[default]
    Auto,
    /// Always, however little it saves (lets tests exercise it).
    Always,
}

impl TapSkipping {
    /// [`TapSkipping::Auto`], or [`TapSkipping::Off`] where `$ATROUS_TAP_SKIPPING` is `0` (the
    /// switch the GPU kernels read too).
    pub fn from_env() -> Self {
        if crate::backend::tap_skipping_from_env() {
            TapSkipping::Auto
        } else {
            TapSkipping::Off
        }
    }
}

/// The epilogue of a network's convolution: add `residual` (the output's shape), then ReLU. The
/// packed implicit GEMM adds the residual with the bias as it first stores each tile and applies
/// the ReLU as it stores the last sums ([`conv2d_with_epilogue`]), the residual in its own buffer
/// or in the output's ([`conv2d_onto`]) alike; the other paths in a pass of their own
/// ([`Epilogue::apply`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    pub residual: Option<&'a [f32]>,
    pub relu: bool,
}

impl Epilogue<'_> {
    /// None: the sums as they are.
    pub const NONE: Epilogue<'static> = Epilogue { residual: None, relu: false };

    /// The epilogue of output element `at` whose sum is `value`.
    #[inline]
    fn finish(&self, value: f32, at: usize) -> f32 {
        let v = self.residual.map_or(value, |r| value + r[at]);
        if self.relu {
            v.max(0.0)
        } else {
            v
        }
    }

    /// Applies the epilogue to a whole output, in parallel (a ResNet's outputs are tens of MB,
    /// which one core alone takes milliseconds to stream while the other waits).
    pub fn apply(&self, values: &mut [f32]) {
        const CHUNK: usize = 1 << 16;
        if self.residual.is_none() && !self.relu {
            return;
        }
        values.par_chunks_mut(CHUNK).enumerate().for_each(|(chunk, values)| {
            values.iter_mut().enumerate().for_each(|(i, v)| *v = self.finish(*v, chunk * CHUNK + i));
        });
    }
}

/// `c[m×n] = a[m×k] · b[k×n]`, `b` and `c` row-major, `a` with the given row and column strides
/// so that a transposed `a` needs no copy. The `gemm` crate picks the widest SIMD the CPU has
/// (AVX-512 included) at run time and splits the product over rayon's threads.
#[allow(clippy::too_many_arguments)]
fn sgemm(m: usize, k: usize, n: usize, a: &[f32], a_row_stride: usize, a_col_stride: usize, b: &[f32], c: &mut [f32]) {
    sgemm_strided(m, k, n, (a, a_row_stride, a_col_stride), (b, n), (c, n), false, gemm::Parallelism::Rayon(0));
}

/// `c = a · b`, or `c += a · b` where `accumulate`, on the given threads, for matrices inside
/// larger ones: `a` is `(data, row stride, column stride)`, `b` and `c` `(data, row stride)` with
/// their columns contiguous.
#[allow(clippy::too_many_arguments)]
fn sgemm_strided(
    m: usize,
    k: usize,
    n: usize,
    (a, a_row_stride, a_col_stride): (&[f32], usize, usize),
    (b, b_row_stride): (&[f32], usize),
    (c, c_row_stride): (&mut [f32], usize),
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    assert!(m > 0 && k > 0 && n > 0 && c_row_stride >= n);
    assert!(a.len() > (m - 1) * a_row_stride + (k - 1) * a_col_stride);
    assert!(b.len() >= (k - 1) * b_row_stride + n && c.len() >= (m - 1) * c_row_stride + n);
    // SAFETY: the asserts above keep every strided access within `a`, `b` and `c`; the rows of
    // `c` do not overlap, and `c` (a unique borrow) aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            c_row_stride as isize,
            accumulate,
            a.as_ptr(),
            a_col_stride as isize,
            a_row_stride as isize,
            b.as_ptr(),
            1,
            b_row_stride as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Floats per cache line.
const LINE_FLOATS: usize = 16;

/// `buffer` from its first cache-line boundary on: a buffer made [`LINE_FLOATS`] longer than it
/// needs holds its contents there, so that the micro-kernels' vector loads of a packed operand
/// never straddle two lines. glibc's large blocks start 16 bytes past a page, and with every
/// load of the packed B split, the GEMMs ran 5–8% slower (BENCHMARKS.md).
fn cache_aligned<T>(buffer: &mut [T]) -> &mut [T] {
    let offset = buffer.as_ptr().align_offset(LINE_FLOATS * 4).min(buffer.len());
    &mut buffer[offset..]
}

/// A raw pointer that parallel tasks share, each writing its own elements of the buffer (in
/// Winograd's layouts a task's elements are runs far apart, not one slice).
#[derive(Clone, Copy)]
struct SharedWrites(*mut f32);
// SAFETY: see the users: every task writes disjoint elements, and nothing reads them until all
// tasks are done.
unsafe impl Send for SharedWrites {}
unsafe impl Sync for SharedWrites {}

impl SharedWrites {
    /// The element `at` (a method, so that closures capture the whole wrapper, not its
    /// pointer).
    fn at(self, at: usize) -> *mut f32 {
        self.0.wrapping_add(at)
    }
}

/// Index of `base + tap·dilation − padding` if it lies in `0..size`.
#[inline]
fn tap_position(base: usize, tap: usize, dilation: usize, padding: usize, size: usize) -> Option<usize> {
    (base + tap * dilation).checked_sub(padding).filter(|&i| i < size)
}

/// The positions `i` (on one axis) whose tap lands inside `0..size`: `i·stride + tap·dilation −
/// padding` there. Forward: the output positions whose tap reads inside the input; transposed:
/// the input positions whose tap scatters inside the output.
fn positions_inside(tap: usize, stride: usize, dilation: usize, padding: usize, size: usize) -> Range<usize> {
    let offset = tap * dilation;
    let first = if offset >= padding { 0 } else { (padding - offset).div_ceil(stride) };
    let end = if size + padding > offset { (size - 1 + padding - offset) / stride + 1 } else { 0 };
    first..end.max(first)
}

fn intersect(a: &Range<usize>, b: &Range<usize>) -> Range<usize> {
    let start = a.start.max(b.start);
    start..a.end.min(b.end).max(start)
}
