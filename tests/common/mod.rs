//! Shared by the CPU and GPU test files: hand-computed cases any backend must reproduce,
//! random-case strategies for property tests, and the one GPU context per test binary.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::Write;
use std::sync::OnceLock;

use atrous::gpu::{Gpu, GpuOptions};
use atrous::shape::{conv_transpose_output_size, effective_kernel};
use atrous::{conv2d, conv_transpose2d, Backend, Conv2dParams, ConvTranspose2dParams, Hw, Tensor};
use proptest::prelude::*;

/// `options` with autotuning off: the shared contexts pick kernels by rule, deterministically
/// (tests/autotune.rs tests the tuning).
pub fn rules(options: GpuOptions) -> GpuOptions {
    GpuOptions { autotune: Some(false), ..options }
}

/// The GPU every test in a binary shares (kernels by rule, see [`rules`]). With no adapter the tests fail (never skip), and the
/// adapter in use is printed once, uncaptured, so every test log says what it ran on.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        let gpu = Gpu::new(&rules(GpuOptions::default())).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"));
        let _ = writeln!(std::io::stderr(), "GPU tests run on: {}", gpu.summary());
        gpu
    })
}

/// The GPU as it runs without the lanes kernels: the tiled ones, with subgroup weights where the
/// adapter has subgroups.
pub fn gpu_without_lanes() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| Gpu::new(&rules(GpuOptions { without_lanes: true, ..Default::default() })).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}")))
}

/// A second context on the same adapter with subgroup operations left off: the tiled kernels as
/// a device without subgroups runs them.
pub fn gpu_without_subgroups() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| Gpu::new(&rules(GpuOptions { without_subgroups: true, ..Default::default() })).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}")))
}

fn tensor(shape: &[usize], values: &[f32]) -> Tensor {
    Tensor::new(shape.to_vec(), values.to_vec()).unwrap()
}

fn assert_values(got: &Tensor, shape: &[usize], expected: &[f32], what: &str) {
    assert_eq!(got.shape(), shape, "{what}: shape");
    for (i, (&g, &e)) in got.data().iter().zip(expected).enumerate() {
        assert!((g - e).abs() <= 1e-5 * e.abs().max(1.0), "{what}: element {i} is {g}, expected {e}\n got {:?}", got.data());
    }
}

/// Cases computed by hand from the formulas in docs/ARCHITECTURE.md §1; every backend must reproduce them.
pub fn check_hand_computed_cases(backend: &dyn Backend) {
    // 4×4 input of h+w, 3×3 kernel of h+w, stride 2, padding 1 → 2×2:
    // (0,0) = 0·2 + 1·3 + 1·3 + 2·4 = 14; (0,1) = (1 + 4 + 9) + (4 + 9 + 16) = 43 = (1,0);
    // (1,1) = Σ (2 + i + j)(i + j) over the full window = 84.
    let x = Tensor::from_fn(vec![1, 1, 4, 4], |i| (i[2] + i[3]) as f32);
    let w = Tensor::from_fn(vec![1, 1, 3, 3], |i| (i[2] + i[3]) as f32);
    let p = Conv2dParams { stride: Hw::square(2), padding: Hw::square(1), ..Default::default() };
    assert_values(&conv2d(backend, &x, &w, None, &p).unwrap(), &[1, 1, 2, 2], &[14.0, 43.0, 43.0, 84.0], "h+w conv");

    // Dilation 2 on a 5×5 input of 5h+w with a 3×3 kernel of ones: the taps are rows and
    // columns 0, 2, 4, so the single output is 3·5·(0+2+4) + 3·(0+2+4) = 108; with bias 0.5.
    let x = Tensor::from_fn(vec![1, 1, 5, 5], |i| (5 * i[2] + i[3]) as f32);
    let ones = tensor(&[1, 1, 3, 3], &[1.0; 9]);
    let p = Conv2dParams { dilation: Hw::square(2), ..Default::default() };
    let bias = tensor(&[1], &[0.5]);
    assert_values(&conv2d(backend, &x, &ones, Some(&bias), &p).unwrap(), &[1, 1, 1, 1], &[108.5], "dilated conv");

    // Dilation larger than the input: 3×3 input, 3×3 kernel at dilation 4, padding 4. Only the
    // centre tap ever lands inside the input, so the output is the input times that tap.
    let x = Tensor::from_fn(vec![1, 1, 3, 3], |i| (3 * i[2] + i[3] + 1) as f32);
    let w = Tensor::from_fn(vec![1, 1, 3, 3], |i| if i[2] == 1 && i[3] == 1 { 2.0 } else { 100.0 });
    let p = Conv2dParams { padding: Hw::square(4), dilation: Hw::square(4), ..Default::default() };
    let expected: Vec<f32> = x.data().iter().map(|v| 2.0 * v).collect();
    assert_values(&conv2d(backend, &x, &w, None, &p).unwrap(), &[1, 1, 3, 3], &expected, "dilation beyond the input");

    // Depthwise (groups = channels): each channel only sees its own kernel.
    let x = tensor(&[1, 2, 1, 2], &[1.0, 2.0, 3.0, 4.0]);
    let w = tensor(&[2, 1, 1, 2], &[1.0, 10.0, 100.0, 1000.0]);
    let p = Conv2dParams { groups: 2, ..Default::default() };
    assert_values(&conv2d(backend, &x, &w, None, &p).unwrap(), &[1, 2, 1, 1], &[21.0, 4300.0], "depthwise");

    // Max-pool 2×2 stride 2 with padding 1 on a 3×3 ramp: padding never wins, even against
    // negative values.
    let x = Tensor::from_fn(vec![1, 1, 3, 3], |i| (3 * i[2] + i[3]) as f32 - 10.0);
    let pool = atrous::Pool2dParams { kernel: Hw::square(2), stride: Hw::square(2), padding: Hw::square(1), dilation: Hw::square(1) };
    let g = pool.geometry(x.shape()).unwrap();
    let pooled = backend.convolve(&g, x.data(), &[], None).unwrap();
    assert_values(&Tensor::new(g.output_shape().to_vec(), pooled).unwrap(), &[1, 1, 2, 2], &[-10.0, -8.0, -4.0, -2.0], "max-pool");

    // Transposed, stride 1: [[1,2],[3,4]] scattered through [[1,2],[3,4]] (no flip).
    let x = tensor(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let w = tensor(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let expected = [1.0, 4.0, 4.0, 6.0, 20.0, 16.0, 9.0, 24.0, 16.0];
    let out = conv_transpose2d(backend, &x, &w, None, &ConvTranspose2dParams::default()).unwrap();
    assert_values(&out, &[1, 1, 3, 3], &expected, "transposed stride 1");

    // Transposed, stride 2, 2×2 kernel of ones: every input pixel becomes a 2×2 block.
    let ones = tensor(&[1, 1, 2, 2], &[1.0; 4]);
    let p = ConvTranspose2dParams { stride: Hw::square(2), ..Default::default() };
    let expected = [1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0];
    assert_values(&conv_transpose2d(backend, &x, &ones, None, &p).unwrap(), &[1, 1, 4, 4], &expected, "transposed stride 2");

    // Transposed, dilation 2: a single 5 lands on the kernel's taps, 2 apart.
    let five = tensor(&[1, 1, 1, 1], &[5.0]);
    let p = ConvTranspose2dParams { dilation: Hw::square(2), ..Default::default() };
    let expected = [5.0, 0.0, 5.0, 0.0, 0.0, 0.0, 5.0, 0.0, 5.0];
    assert_values(&conv_transpose2d(backend, &five, &ones, None, &p).unwrap(), &[1, 1, 3, 3], &expected, "transposed dilation 2");

    // Transposed, stride 2, output_padding 1, bias 1: (2−1)·2 + 1 + 1 = 4; the extra row and
    // column hold only the bias.
    let one = tensor(&[1, 1, 1, 1], &[1.0]);
    let p = ConvTranspose2dParams { stride: Hw::square(2), output_padding: Hw::square(1), ..Default::default() };
    let bias = tensor(&[1], &[1.0]);
    let expected = [2.0, 1.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 4.0, 1.0, 5.0, 1.0, 1.0, 1.0, 1.0, 1.0];
    assert_values(&conv_transpose2d(backend, &x, &one, Some(&bias), &p).unwrap(), &[1, 1, 4, 4], &expected, "output_padding");
}

/// A random convolution: tensors plus parameters, always valid.
#[derive(Clone, Debug)]
pub struct ConvCase {
    pub input: Tensor,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub params: Conv2dParams,
}

/// A random transposed convolution, always valid.
#[derive(Clone, Debug)]
pub struct TransposedCase {
    pub input: Tensor,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub params: ConvTranspose2dParams,
}

fn hw(max: usize, min: usize) -> impl Strategy<Value = Hw> {
    (min..=max, min..=max).prop_map(|(h, w)| Hw::new(h, w))
}

/// Batch, groups, channels per group (in, out), seed, with bias.
fn sizes() -> impl Strategy<Value = (usize, usize, usize, usize, u64, bool)> {
    (1..=3usize, 1..=3usize, 1..=3usize, 1..=3usize, any::<u64>(), any::<bool>())
}

pub fn conv_case() -> impl Strategy<Value = ConvCase> {
    conv_case_with(sizes())
}

/// Convolutions with enough output channels per group (8 to 40, rarely a multiple of the tile)
/// that the GPU runs its register-tiled kernel.
pub fn wide_conv_case() -> impl Strategy<Value = ConvCase> {
    conv_case_with((1..=2usize, 1..=2usize, 1..=4usize, 8..=40usize, any::<u64>(), any::<bool>()))
}

fn conv_case_with(sizes: impl Strategy<Value = (usize, usize, usize, usize, u64, bool)>) -> impl Strategy<Value = ConvCase> {
    (sizes, hw(4, 1), hw(3, 1), hw(4, 0), hw(6, 1), hw(10, 1)).prop_map(
        |((batch, groups, cig, cog, seed, with_bias), kernel, stride, padding, dilation, mut size)| {
            // Grow the input just enough when the dilated kernel would not fit: dilations larger
            // than the input stay possible through the padding.
            size.h = size.h.max((effective_kernel(kernel.h, dilation.h)).saturating_sub(2 * padding.h).max(1));
            size.w = size.w.max((effective_kernel(kernel.w, dilation.w)).saturating_sub(2 * padding.w).max(1));
            let (c_in, c_out) = (groups * cig, groups * cog);
            ConvCase {
                input: Tensor::random(vec![batch, c_in, size.h, size.w], seed),
                weight: Tensor::random(vec![c_out, cig, kernel.h, kernel.w], seed ^ 1),
                bias: with_bias.then(|| Tensor::random(vec![c_out], seed ^ 2)),
                params: Conv2dParams { stride, padding, dilation, groups },
            }
        },
    )
}

pub fn transposed_case() -> impl Strategy<Value = TransposedCase> {
    transposed_case_with(sizes())
}

/// Transposed convolutions wide enough (8 to 40 output channels per group) for the GPU's tiled,
/// phase-decomposed kernel.
pub fn wide_transposed_case() -> impl Strategy<Value = TransposedCase> {
    transposed_case_with((1..=2usize, 1..=2usize, 1..=4usize, 8..=40usize, any::<u64>(), any::<bool>()))
}

/// Convolutions for the implicit-GEMM kernels: up to 20 input channels per group (partial and
/// several K steps of 8 and 16) and up to 150 output channels per group (partial and several
/// channel tiles of 32, 64 and 128).
pub fn gemm_conv_case() -> impl Strategy<Value = ConvCase> {
    conv_case_with((1..=2usize, 1..=2usize, 1..=20usize, 1..=150usize, any::<u64>(), any::<bool>()))
}

/// Transposed convolutions for the implicit-GEMM kernels, sized as [`gemm_conv_case`].
pub fn gemm_transposed_case() -> impl Strategy<Value = TransposedCase> {
    transposed_case_with((1..=2usize, 1..=2usize, 1..=20usize, 1..=150usize, any::<u64>(), any::<bool>()))
}

/// Output channels per group that fill two thirds of the lanes kernels' blocks of 128 (one block
/// or two), so that devices with subgroups run those kernels; rarely whole blocks.
fn lanes_channels() -> impl Strategy<Value = usize> {
    prop_oneof![86..=128usize, 171..=256usize]
}

/// Convolutions that the GPU runs with its lanes kernel where it has subgroups.
pub fn lanes_conv_case() -> impl Strategy<Value = ConvCase> {
    conv_case_with((1..=2usize, 1..=2usize, 1..=3usize, lanes_channels(), any::<u64>(), any::<bool>()))
}

/// Transposed convolutions that the GPU runs with its lanes kernel where it has subgroups.
pub fn lanes_transposed_case() -> impl Strategy<Value = TransposedCase> {
    transposed_case_with((1..=2usize, 1..=2usize, 1..=3usize, lanes_channels(), any::<u64>(), any::<bool>()))
}

fn transposed_case_with(sizes: impl Strategy<Value = (usize, usize, usize, usize, u64, bool)>) -> impl Strategy<Value = TransposedCase> {
    (sizes, hw(4, 1), hw(3, 1), hw(4, 0), hw(4, 1), hw(6, 1), any::<(u8, u8)>()).prop_map(
        |((batch, groups, cig, cog, seed, with_bias), kernel, stride, mut padding, dilation, size, (oph, opw))| {
            let output_padding = Hw::new(oph as usize % stride.h.max(dilation.h), opw as usize % stride.w.max(dilation.w));
            // Shrink the padding until the output is non-empty.
            while conv_transpose_output_size(size.h, kernel.h, stride.h, padding.h, dilation.h, output_padding.h).is_none() {
                padding.h -= 1;
            }
            while conv_transpose_output_size(size.w, kernel.w, stride.w, padding.w, dilation.w, output_padding.w).is_none() {
                padding.w -= 1;
            }
            let (c_in, c_out) = (groups * cig, groups * cog);
            TransposedCase {
                input: Tensor::random(vec![batch, c_in, size.h, size.w], seed),
                weight: Tensor::random(vec![c_in, cog, kernel.h, kernel.w], seed ^ 1),
                bias: with_bias.then(|| Tensor::random(vec![c_out], seed ^ 2)),
                params: ConvTranspose2dParams { stride, padding, output_padding, dilation, groups },
            }
        },
    )
}
