//! The GPU kernels against the f64 CPU reference: hand-computed cases, edge cases, random
//! cases of every parameter (property tests), and tensors larger than a buffer may hold.
//! These run on whatever adapter is found (lavapipe in CI) and fail when there is none.

mod common;

use atrous::backend::CpuReference;
use atrous::compare::{difference, Difference};
use std::io::Write as _;

use atrous::gpu::{GemmTile, Gpu, GpuOptions, KernelChoice};
use atrous::{conv2d, conv_transpose2d, Conv2dParams, ConvTranspose2dParams, Hw, Tensor};
use common::{
    check_hand_computed_cases, conv_case, gpu, gpu_without_lanes, gpu_without_subgroups, lanes_conv_case, lanes_transposed_case, transposed_case, wide_conv_case,
    wide_transposed_case,
};
use proptest::prelude::*;

/// GPU sums run in a different order than the f64 reference: compare relatively.
const TOLERANCE: f64 = 1e-4;

/// How far the GPU's conv2d is from the f64 reference.
fn conv_gap(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: &Conv2dParams) -> Difference {
    conv_gap_on(gpu(), x, w, b, p)
}

fn conv_gap_on(gpu: &Gpu, x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: &Conv2dParams) -> Difference {
    let on_gpu = conv2d(gpu, x, w, b, p).unwrap();
    let exact = conv2d(&CpuReference, x, w, b, p).unwrap();
    difference(on_gpu.data(), exact.data())
}

/// How far the GPU's conv_transpose2d is from the f64 reference.
fn transposed_gap(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: &ConvTranspose2dParams) -> Difference {
    transposed_gap_on(gpu(), x, w, b, p)
}

fn transposed_gap_on(gpu: &Gpu, x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: &ConvTranspose2dParams) -> Difference {
    let on_gpu = conv_transpose2d(gpu, x, w, b, p).unwrap();
    let exact = conv_transpose2d(&CpuReference, x, w, b, p).unwrap();
    difference(on_gpu.data(), exact.data())
}

fn assert_conv_matches(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: &Conv2dParams) {
    let d = conv_gap(x, w, b, p);
    assert!(d.within(TOLERANCE), "{d} for input {:?}, weight {:?}, {p:?}", x.shape(), w.shape());
}

fn assert_transposed_matches(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: &ConvTranspose2dParams) {
    let d = transposed_gap(x, w, b, p);
    assert!(d.within(TOLERANCE), "{d} for input {:?}, weight {:?}, {p:?}", x.shape(), w.shape());
}

#[test]
fn gpu_reproduces_hand_computed_cases() {
    check_hand_computed_cases(gpu());
}

#[test]
fn edge_cases() {
    let r = |shape: &[usize], seed| Tensor::random(shape.to_vec(), seed);
    let square = |v| Hw::square(v);
    // 1×1 input, 1×1 kernel.
    assert_conv_matches(&r(&[1, 1, 1, 1], 1), &r(&[1, 1, 1, 1], 2), None, &Conv2dParams::default());
    // A kernel that just fits: 5×5 input, 3×3 kernel at dilation 2 (effective 5).
    let p = Conv2dParams { dilation: square(2), ..Default::default() };
    assert_conv_matches(&r(&[2, 3, 5, 5], 3), &r(&[4, 3, 3, 3], 4), Some(&r(&[4], 5)), &p);
    // Non-square everything.
    let p = Conv2dParams { stride: Hw::new(2, 1), padding: Hw::new(1, 3), dilation: Hw::new(3, 2), groups: 2 };
    assert_conv_matches(&r(&[1, 4, 11, 7], 6), &r(&[6, 2, 2, 3], 7), Some(&r(&[6], 8)), &p);
    // Dilation far larger than the input, reached only through padding.
    let p = Conv2dParams { padding: square(12), dilation: square(12), ..Default::default() };
    assert_conv_matches(&r(&[1, 2, 3, 4], 9), &r(&[3, 2, 3, 3], 10), None, &p);
    // Depthwise with many channels, and a deep reduction (K = 64·3·3) for accumulation error.
    let p = Conv2dParams { padding: square(2), dilation: square(2), groups: 32, ..Default::default() };
    assert_conv_matches(&r(&[1, 32, 17, 17], 11), &r(&[32, 1, 3, 3], 12), None, &p);
    let p = Conv2dParams { padding: square(4), dilation: square(4), ..Default::default() };
    assert_conv_matches(&r(&[1, 64, 20, 20], 13), &r(&[16, 64, 3, 3], 14), Some(&r(&[16], 15)), &p);
    // Transposed: FCN-style upsampling (kernel 2f, stride f, padding f/2) on a 1×1 input.
    let p = ConvTranspose2dParams { stride: square(8), padding: square(4), ..Default::default() };
    assert_transposed_matches(&r(&[1, 3, 1, 1], 16), &r(&[3, 3, 16, 16], 17), None, &p);
    let p = ConvTranspose2dParams { stride: square(2), padding: square(1), ..Default::default() };
    assert_transposed_matches(&r(&[2, 64, 9, 7], 31), &r(&[64, 24, 4, 4], 32), Some(&r(&[24], 33)), &p);
    let p = ConvTranspose2dParams { stride: Hw::new(3, 2), padding: Hw::new(2, 0), output_padding: Hw::new(2, 2), dilation: Hw::new(2, 3), groups: 2 };
    assert_transposed_matches(&r(&[1, 6, 5, 4], 34), &r(&[6, 9, 3, 2], 35), None, &p);
    let p = ConvTranspose2dParams { stride: Hw::new(2, 3), output_padding: Hw::new(1, 4), dilation: Hw::new(1, 5), groups: 3, ..Default::default() };
    assert_transposed_matches(&r(&[2, 6, 4, 3], 18), &r(&[6, 2, 3, 2], 19), Some(&r(&[6], 20)), &p);
}

#[test]
fn large_outputs_use_a_two_dimensional_dispatch() {
    // 1·4·260·260 = 270,400 outputs / 64 per workgroup = 4,225 workgroups: fine in one
    // dimension, so force a second with a grid this test can afford: 70 channels × 256².
    let x = Tensor::random(vec![1, 1, 256, 256], 21);
    let w = Tensor::random(vec![70, 1, 1, 1], 22);
    let groups_needed = (70 * 256 * 256usize).div_ceil(64);
    assert!(groups_needed > gpu().limits().max_compute_workgroups_per_dimension as usize, "the case must need a 2-D grid");
    assert_conv_matches(&x, &w, None, &Conv2dParams::default());
}

#[test]
fn the_tiled_kernels_fold_pixels_into_a_third_dimension() {
    // The transposed tiled kernel pads every phase's quads to whole workgroups of 64. Stride 256
    // on a 1×1 input with output_padding 255 makes a 256×256 output of 65,536 phases, each one
    // pixel: 65,536 workgroups, one more than a dimension allows. Eight output channels (the
    // tiled kernels' minimum) keep the output at 2 MiB; every phase but the first has no tap
    // and stores the bias.
    let x = Tensor::random(vec![1, 3, 1, 1], 28);
    let w = Tensor::random(vec![3, 8, 1, 1], 29);
    let p = ConvTranspose2dParams { stride: Hw::square(256), output_padding: Hw::square(255), ..Default::default() };
    let workgroups = 256 * 256usize;
    assert!(workgroups > gpu().limits().max_compute_workgroups_per_dimension as usize, "the case must need a third dimension");
    assert_transposed_matches(&x, &w, Some(&Tensor::random(vec![8], 30)), &p);
}

#[test]
fn the_tiled_kernels_handle_partial_quads_and_tiles() {
    let r = |shape: &[usize], seed| Tensor::random(shape.to_vec(), seed);
    // Phase grids 5 and 3 wide (quads of 4 cut short), output channels 20 per group (a 32-channel
    // tile cut short), two groups, dilation 2, a padding that makes some taps miss the input.
    let p = ConvTranspose2dParams { stride: Hw::new(3, 2), padding: Hw::new(1, 2), output_padding: Hw::new(1, 1), dilation: Hw::square(2), groups: 2 };
    assert_transposed_matches(&r(&[2, 6, 4, 5], 36), &r(&[6, 20, 3, 3], 37), Some(&r(&[40], 38)), &p);
    // Forward: 7 columns (a quad of 3 at the end), 40 channels per group, stride 2.
    let p = Conv2dParams { stride: Hw::square(2), padding: Hw::square(1), dilation: Hw::new(1, 2), groups: 2 };
    assert_conv_matches(&r(&[1, 4, 9, 15], 39), &r(&[80, 2, 3, 3], 40), Some(&r(&[80], 41)), &p);
    // The lanes kernel's blocks of 128 output channels: 128 per group (one block), 256 (two), 500
    // (four, the last cut short) and 1000 (eight); strips of 32 pixels that run across rows and
    // into the next sample.
    let p = Conv2dParams { stride: Hw::new(1, 2), padding: Hw::square(3), dilation: Hw::square(3), groups: 2 };
    assert_conv_matches(&r(&[2, 6, 7, 11], 42), &r(&[256, 3, 3, 3], 43), Some(&r(&[256], 44)), &p);
    let p = Conv2dParams { padding: Hw::square(1), ..Default::default() };
    assert_conv_matches(&r(&[2, 5, 6, 9], 45), &r(&[256, 5, 3, 3], 46), None, &p);
    assert_conv_matches(&r(&[1, 2, 5, 7], 50), &r(&[500, 2, 3, 3], 51), Some(&r(&[500], 52)), &p);
    assert_conv_matches(&r(&[1, 2, 6, 5], 53), &r(&[1000, 2, 3, 3], 54), Some(&r(&[1000], 55)), &p);
    let p = ConvTranspose2dParams { stride: Hw::new(2, 3), padding: Hw::square(1), output_padding: Hw::new(1, 0), dilation: Hw::new(2, 1), groups: 2 };
    assert_transposed_matches(&r(&[2, 4, 5, 6], 47), &r(&[4, 128, 3, 4], 48), Some(&r(&[256], 49)), &p);
}

#[test]
fn a_batch_larger_than_a_buffer_runs_in_chunks() {
    // Cap buffers at 4 KiB: one sample's input is 2·8·8·4 = 512 B and its output 3·8·8·4 = 768 B,
    // so the 13-sample batch (6.5 KiB in, 10 KiB out) runs as chunks of 5.
    let small = Gpu::new(&GpuOptions { max_buffer_bytes: Some(4096), autotune: Some(false), ..Default::default() }).unwrap();
    let x = Tensor::random(vec![13, 2, 8, 8], 23);
    let w = Tensor::random(vec![3, 2, 3, 3], 24);
    let b = Tensor::random(vec![3], 25);
    let p = Conv2dParams { padding: Hw::square(1), ..Default::default() };
    let on_gpu = conv2d(&small, &x, &w, Some(&b), &p).unwrap();
    let exact = conv2d(&CpuReference, &x, &w, Some(&b), &p).unwrap();
    assert!(difference(on_gpu.data(), exact.data()).within(TOLERANCE));

    let wt = Tensor::random(vec![2, 3, 2, 2], 26);
    let pt = ConvTranspose2dParams { stride: Hw::square(2), ..Default::default() };
    let on_gpu = conv_transpose2d(&small, &Tensor::random(vec![9, 2, 4, 4], 27), &wt, None, &pt).unwrap();
    let exact = conv_transpose2d(&CpuReference, &Tensor::random(vec![9, 2, 4, 4], 27), &wt, None, &pt).unwrap();
    assert!(difference(on_gpu.data(), exact.data()).within(TOLERANCE));
}

#[test]
fn a_sample_larger_than_a_buffer_is_stored_in_pieces() {
    // A 64 KiB buffer cap: one 1×3×129×129 sample (200 KB) lives in four buffers, and so does
    // its output; the binding limit follows the buffer cap, so the op runs in parts.
    let small = Gpu::new(&GpuOptions { max_buffer_bytes: Some(65536), autotune: Some(false), ..Default::default() }).unwrap();
    assert_eq!(small.max_binding_bytes(), 65536);
    let x = Tensor::random(vec![1, 3, 129, 129], 31);
    let w = Tensor::random(vec![3, 3, 3, 3], 32);
    let p = Conv2dParams { padding: Hw::square(2), dilation: Hw::square(2), ..Default::default() };
    let on_gpu = conv2d(&small, &x, &w, None, &p).unwrap();
    let exact = conv2d(&CpuReference, &x, &w, None, &p).unwrap();
    let d = difference(on_gpu.data(), exact.data());
    assert!(d.within(TOLERANCE), "{d}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn gpu_conv2d_matches_reference(case in conv_case()) {
        let d = conv_gap(&case.input, &case.weight, case.bias.as_ref(), &case.params);
        prop_assert!(d.within(TOLERANCE), "{d} for input {:?}, weight {:?}, {:?}", case.input.shape(), case.weight.shape(), case.params);
    }

    #[test]
    fn gpu_tiled_conv2d_matches_reference(case in wide_conv_case()) {
        let geometry = case.params.geometry(case.input.shape(), case.weight.shape(), None).unwrap();
        let kernel = gpu().kernel_name(&geometry, KernelChoice::Auto).unwrap();
        prop_assert_eq!(kernel, tiled_kernel_name("conv2d"));
        let d = conv_gap(&case.input, &case.weight, case.bias.as_ref(), &case.params);
        prop_assert!(d.within(TOLERANCE), "{d} for input {:?}, weight {:?}, {:?}", case.input.shape(), case.weight.shape(), case.params);
    }

    #[test]
    fn gpu_conv_transpose2d_matches_reference(case in transposed_case()) {
        let d = transposed_gap(&case.input, &case.weight, case.bias.as_ref(), &case.params);
        prop_assert!(d.within(TOLERANCE), "{d} for input {:?}, weight {:?}, {:?}", case.input.shape(), case.weight.shape(), case.params);
    }

    #[test]
    fn gpu_tiled_conv_transpose2d_matches_reference(case in wide_transposed_case()) {
        let geometry = case.params.geometry(case.input.shape(), case.weight.shape(), None).unwrap();
        let kernel = gpu().kernel_name(&geometry, KernelChoice::Auto).unwrap();
        prop_assert_eq!(kernel, tiled_kernel_name("conv_transpose2d"));
        let d = transposed_gap(&case.input, &case.weight, case.bias.as_ref(), &case.params);
        prop_assert!(d.within(TOLERANCE), "{d} for input {:?}, weight {:?}, {:?}", case.input.shape(), case.weight.shape(), case.params);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]

    #[test]
    fn gpu_lanes_kernels_match_reference(case in lanes_conv_case(), transposed in lanes_transposed_case()) {
        let geometry = case.params.geometry(case.input.shape(), case.weight.shape(), None).unwrap();
        let kernel = gpu().kernel_name(&geometry, KernelChoice::Auto).unwrap();
        prop_assert_eq!(kernel, if gpu().lanes_by_default() { "conv2d_lanes.wgsl".to_owned() } else { tiled_kernel_name("conv2d") });
        let d = conv_gap(&case.input, &case.weight, case.bias.as_ref(), &case.params);
        prop_assert!(d.within(TOLERANCE), "{d} for input {:?}, weight {:?}, {:?}", case.input.shape(), case.weight.shape(), case.params);
        let t = &transposed;
        let geometry = t.params.geometry(t.input.shape(), t.weight.shape(), None).unwrap();
        let kernel = gpu().kernel_name(&geometry, KernelChoice::Auto).unwrap();
        prop_assert_eq!(kernel, if gpu().lanes_by_default() { "conv_transpose2d_lanes.wgsl".to_owned() } else { tiled_kernel_name("conv_transpose2d") });
        let d = transposed_gap(&t.input, &t.weight, t.bias.as_ref(), &t.params);
        prop_assert!(d.within(TOLERANCE), "{d} for input {:?}, weight {:?}, {:?}", t.input.shape(), t.weight.shape(), t.params);
    }
}

/// The context without subgroups really runs the plain tiled kernels, so the property tests below
/// cover them.
#[test]
fn without_subgroups_the_plain_tiled_kernels_run() {
    let geometry = Conv2dParams::default().geometry(&[1, 16, 9, 9], &[16, 16, 3, 3], None).unwrap();
    let plain = gpu_without_subgroups().kernel_name(&geometry, KernelChoice::Auto).unwrap();
    assert_eq!(plain, "conv2d_tiled.wgsl");
    let default = gpu().kernel_name(&geometry, KernelChoice::Auto).unwrap();
    let _ = writeln!(std::io::stderr(), "tiled kernel with subgroups allowed: {default}; without: {plain}");
}

/// Without the lanes kernels the default runs the tiled ones, with subgroup weights where the
/// adapter has subgroups, even where the lanes kernel would run, so the property test below
/// covers them at those widths.
#[test]
fn without_lanes_the_tiled_kernels_run() {
    let geometry = Conv2dParams::default().geometry(&[1, 16, 9, 9], &[128, 16, 3, 3], None).unwrap();
    let tiled = gpu_without_lanes().kernel_name(&geometry, KernelChoice::Auto).unwrap();
    assert_eq!(tiled, tiled_kernel_name("conv2d"));
    let default = gpu().kernel_name(&geometry, KernelChoice::Auto).unwrap();
    assert_eq!(default, if gpu().lanes_by_default() { "conv2d_lanes.wgsl" } else { tiled });
}

/// The name of the tiled kernel of `op` (`conv2d` or `conv_transpose2d`) that runs on this
/// adapter by default.
fn tiled_kernel_name(op: &str) -> String {
    format!("{op}_tiled.wgsl{}", if gpu().subgroups() { " (subgroup weights)" } else { "" })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn gpu_tiled_kernels_with_subgroups_match_reference(case in lanes_conv_case(), transposed in lanes_transposed_case()) {
        let d = conv_gap_on(gpu_without_lanes(), &case.input, &case.weight, case.bias.as_ref(), &case.params);
        prop_assert!(d.within(TOLERANCE), "{d} for input {:?}, weight {:?}, {:?}", case.input.shape(), case.weight.shape(), case.params);
        let t = &transposed;
        let d = transposed_gap_on(gpu_without_lanes(), &t.input, &t.weight, t.bias.as_ref(), &t.params);
        prop_assert!(d.within(TOLERANCE), "{d} for input {:?}, weight {:?}, {:?}", t.input.shape(), t.weight.shape(), t.params);
    }

    #[test]
    fn gpu_tiled_kernels_without_subgroups_match_reference(case in wide_conv_case(), transposed in wide_transposed_case()) {
        let d = conv_gap_on(gpu_without_subgroups(), &case.input, &case.weight, case.bias.as_ref(), &case.params);
        prop_assert!(d.within(TOLERANCE), "{d} for input {:?}, weight {:?}, {:?}", case.input.shape(), case.weight.shape(), case.params);
        let t = &transposed;
        let d = transposed_gap_on(gpu_without_subgroups(), &t.input, &t.weight, t.bias.as_ref(), &t.params);
        prop_assert!(d.within(TOLERANCE), "{d} for input {:?}, weight {:?}, {:?}", t.input.shape(), t.weight.shape(), t.params);
    }
}

/// Every kernel family but the direct one skips the taps that every pixel of a workgroup (or of
/// a lanes kernel's group of eight pixels) reads outside the input: rates as large as the map
/// (DeepLabv3's ASPP), workgroups within a row, across rows and across samples, forward and
/// transposed. The skipped products were all zero, so the sums are those with skipping off.
#[test]
fn kernels_skip_padding_taps_exactly() {
    let kernels = [KernelChoice::Tiled, KernelChoice::Lanes, KernelChoice::Gemm(GemmTile::Wide), KernelChoice::Gemm(GemmTile::Square), KernelChoice::Gemm(GemmTile::Narrow), KernelChoice::Gemm(GemmTile::Tall)];
    for kernel in kernels {
        let skipping = Gpu::new(&GpuOptions { kernel, autotune: Some(false), skip_padding_taps: Some(true), ..Default::default() }).unwrap();
        let every_tap = Gpu::new(&GpuOptions { kernel, autotune: Some(false), skip_padding_taps: Some(false), ..Default::default() }).unwrap();
        let w = Tensor::random(vec![16, 8, 3, 3], 82);
        for (size, rate, stride) in [(Hw::new(21, 21), 24, 1), (Hw::new(65, 40), 36, 1), (Hw::new(30, 33), 12, 2), (Hw::new(5, 70), 4, 1), (Hw::new(3, 3), 36, 1)] {
            let x = Tensor::random(vec![2, 8, size.h, size.w], 81);
            let p = Conv2dParams { stride: Hw::square(stride), padding: Hw::new(rate, rate / 2), dilation: Hw::new(rate, rate / 2 + 1), ..Default::default() };
            let on_gpu = conv2d(&skipping, &x, &w, None, &p).unwrap();
            let d = difference(on_gpu.data(), conv2d(&CpuReference, &x, &w, None, &p).unwrap().data());
            assert!(d.within(TOLERANCE), "{} {size:?} rate {rate}: {d}", kernel.name());
            let unskipped = conv2d(&every_tap, &x, &w, None, &p).unwrap();
            assert!(difference(unskipped.data(), on_gpu.data()).max_abs == 0.0, "{} {size:?} rate {rate}: skipping changed the sums", kernel.name());
        }
        // Transposed: a large padding crops the output to where few taps reach the input.
        let w = Tensor::random(vec![8, 16, 3, 3], 83);
        for (size, rate, stride, padding) in [(Hw::new(9, 12), 8, 2, 8), (Hw::new(21, 21), 24, 1, 24), (Hw::new(40, 7), 5, 3, 9), (Hw::new(2, 3), 30, 2, 29)] {
            let x = Tensor::random(vec![2, 8, size.h, size.w], 84);
            let p = ConvTranspose2dParams { stride: Hw::square(stride), padding: Hw::new(padding, padding / 2), dilation: Hw::new(rate, rate / 2 + 1), ..Default::default() };
            let on_gpu = conv_transpose2d(&skipping, &x, &w, None, &p).unwrap();
            let d = difference(on_gpu.data(), conv_transpose2d(&CpuReference, &x, &w, None, &p).unwrap().data());
            assert!(d.within(TOLERANCE), "{} transposed {size:?} rate {rate}: {d}", kernel.name());
            let unskipped = conv_transpose2d(&every_tap, &x, &w, None, &p).unwrap();
            assert!(difference(unskipped.data(), on_gpu.data()).max_abs == 0.0, "{} transposed {size:?} rate {rate}: skipping changed the sums", kernel.name());
        }
    }
}
