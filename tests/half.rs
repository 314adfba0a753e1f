//! The f16 precisions on the GPU (src/gpu/precision.rs), on lavapipe, which has SHADER_F16.
//!
//! Exactness first: on values f16 holds exactly (small integers) whose sums stay small integers,
//! every kernel family in f16 and f16-accumulate must give the f64 reference's results exactly —
//! a wrong conversion, layout or offset shows as a wrong value, never as rounding. Then random
//! values against the reference within the precisions' documented tolerances, the copies at odd
//! offsets of split ops and concatenations, the halved memory, and the refusal of an adapter
//! without SHADER_F16.

mod common;

use atrous::backend::CpuReference;
use atrous::compare::difference;
use atrous::gpu::{Gpu, GpuError, GpuOptions, KernelChoice, Precision, PrecisionChoice, TimingSource};
use atrous::shape::WindowGeometry;
use atrous::models::resnet::{resnet, Arch, ResNetConfig};
use atrous::weights::SeededWeights;
use atrous::net::{Executor, Keep};
use atrous::{conv2d, conv_transpose2d, Conv2dParams, ConvTranspose2dParams, Hw, Tensor};
use proptest::prelude::*;

const F16_PRECISIONS: [Precision; 2] = [Precision::F16, Precision::F16Accumulate];

fn gpu_in(precision: Precision, kernel: KernelChoice, max_binding_bytes: Option<u64>) -> Gpu {
    Gpu::new(&common::rules(GpuOptions { precision: Some(PrecisionChoice::Exactly(precision)), kernel, max_binding_bytes, ..Default::default() }))
        .unwrap_or_else(|e| panic!("the f16 tests need an adapter with SHADER_F16: {e}"))
}

/// Integers in -1..=1: products and sums of a few hundred of them are exact in f16.
fn small_integers(shape: Vec<usize>, seed: u64) -> Tensor {
    let random = Tensor::random(shape.clone(), seed);
    Tensor::new(shape, random.data().iter().map(|v| (v * 1.5).round().clamp(-1.0, 1.0)).collect()).unwrap()
}

/// `kernel`'s output for the convolution `g` of `x` and `w`, once (no bias).
fn run_on(gpu: &Gpu, kernel: KernelChoice, g: &WindowGeometry, x: &Tensor, w: &Tensor) -> Vec<f32> {
    gpu.time_convolution(g, x.data(), w.data(), 0, 1, TimingSource::Wall, kernel).unwrap().output
}

#[test]
fn every_kernel_is_exact_in_f16_on_values_f16_holds() {
    // 100 input channels × 9 taps: sums of at most 900 (exact in f16), odd sizes, batch 2; the
    // GEMM kernels' steps of 8 and 16 channels run whole pairs, then a partial step.
    let x = small_integers(vec![2, 100, 13, 11], 1);
    let w = small_integers(vec![36, 100, 3, 3], 2);
    let p = Conv2dParams { stride: Hw::new(1, 2), padding: Hw::new(2, 1), dilation: Hw::new(2, 1), groups: 1 };
    let forward = p.geometry(x.shape(), w.shape(), None).unwrap();
    let forward_reference = conv2d(&CpuReference, &x, &w, None, &p).unwrap();
    let wt = small_integers(vec![100, 36, 4, 4], 4);
    let pt = ConvTranspose2dParams { stride: Hw::square(2), padding: Hw::new(1, 2), output_padding: Hw::new(1, 0), dilation: Hw::new(1, 2), groups: 1 };
    let transposed = pt.geometry(x.shape(), wt.shape(), None).unwrap();
    let transposed_reference = conv_transpose2d(&CpuReference, &x, &wt, None, &pt).unwrap();
    for precision in F16_PRECISIONS {
        let gpu = gpu_for(precision);
        for kernel in KernelChoice::FORCED {
            assert_eq!(run_on(gpu, kernel, &forward, &x, &w), forward_reference.data(), "{precision} {}: forward", kernel.name());
            assert_eq!(run_on(gpu, kernel, &transposed, &x, &wt), transposed_reference.data(), "{precision} {}: transposed", kernel.name());
        }
    }
    // The bias, on the kernel the rule picks.
    let bias = small_integers(vec![36], 3);
    let got = conv2d(gpu_for(Precision::F16Accumulate), &x, &w, Some(&bias), &p).unwrap();
    assert_eq!(got.data(), conv2d(&CpuReference, &x, &w, Some(&bias), &p).unwrap().data(), "bias");
}

#[test]
fn split_ops_copy_f16_values_at_odd_offsets_exactly() {
    // Rows of 11 values, a binding of a few hundred bytes: bands and blocks whose copies start
    // at odd f16 offsets, which copy_values.wgsl makes.
    for precision in F16_PRECISIONS {
        let gpu = gpu_in(precision, KernelChoice::Auto, Some(1024));
        let x = small_integers(vec![1, 6, 9, 11], 5);
        let w = small_integers(vec![5, 6, 3, 3], 6);
        let p = Conv2dParams { padding: Hw::square(1), ..Default::default() };
        let got = conv2d(&gpu, &x, &w, None, &p).unwrap();
        assert_eq!(got.data(), conv2d(&CpuReference, &x, &w, None, &p).unwrap().data(), "{precision}: split forward");
    }
}

#[test]
fn a_network_in_f16_stores_half_the_bytes_and_stays_close_to_the_cpu() {
    // ResNet-18 at output stride 8 on 33×33: dilated layers, residual adds, pooling, and
    // concatenation-free; every layer's output compared with the CPU's.
    let network = resnet(&ResNetConfig::new(Arch::ResNet18, 8), &mut SeededWeights::new(7)).unwrap();
    let input = Tensor::random(vec![1, 3, 33, 33], 8);
    let cpu = atrous::backend::Cpu.forward(&network, &input, Keep::Last).unwrap();
    let cpu_features = cpu.outputs.last().unwrap().as_ref().unwrap();
    let f32_memory = gpu_in(Precision::F32, KernelChoice::Auto, None).forward(&network, &input, Keep::Last).unwrap().memory.unwrap();
    for precision in F16_PRECISIONS {
        let gpu = gpu_in(precision, KernelChoice::Auto, None);
        let forward = gpu.forward(&network, &input, Keep::Last).unwrap();
        let memory = forward.memory.unwrap();
        assert_eq!(memory.weights * 2, f32_memory.weights, "{precision}: weights");
        assert!(memory.activations * 2 <= f32_memory.activations + 64, "{precision}: activations {} against {} in f32", memory.activations, f32_memory.activations);
        // A second pass compiles nothing: each kernel's f16 pipeline is cached once.
        let compiled = gpu.compiled_pipelines();
        gpu.forward(&network, &input, Keep::Last).unwrap();
        assert_eq!(gpu.compiled_pipelines(), compiled, "{precision}: a second pass compiled pipelines again");
        let features = forward.outputs.last().unwrap().as_ref().unwrap();
        let d = difference(features.data(), cpu_features.data());
        assert!(precision.agrees(&d, precision.network_tolerance()), "{precision}: features {d}");
    }
}

#[test]
fn an_adapter_without_shader_f16_refuses_f16_and_fastest_falls_back_to_f32() {
    // lavapipe's GL adapter has no SHADER_F16.
    let options = |precision| GpuOptions { backend: Some("gl".into()), precision: Some(precision), autotune: Some(false), ..Default::default() };
    match Gpu::new(&options(PrecisionChoice::Exactly(Precision::F16))) {
        Err(e @ GpuError::NoShaderF16 { .. }) => assert!(e.to_string().contains("SHADER_F16") && e.to_string().contains("--precision f32"), "{e}"),
        Err(e) => panic!("expected the SHADER_F16 refusal, got: {e}"),
        Ok(gpu) => assert!(gpu.summary().shader_f16, "an adapter without SHADER_F16 opened in f16"),
    }
    let fastest = Gpu::new(&options(PrecisionChoice::Fastest)).unwrap();
    if !fastest.summary().shader_f16 {
        assert_eq!(fastest.precision(), Precision::F32);
        assert!(fastest.precision_note().is_some_and(|n| n.contains("SHADER_F16") || n.contains("CPU adapter")));
    }
    // lavapipe's Vulkan adapter has SHADER_F16 but emulates f16 arithmetic: fastest is f32 there.
    let fastest = Gpu::new(&GpuOptions { precision: Some(PrecisionChoice::Fastest), autotune: Some(false), ..Default::default() }).unwrap();
    if fastest.summary().device_type == wgpu::DeviceType::Cpu {
        assert_eq!(fastest.precision(), Precision::F32);
        assert!(fastest.precision_note().is_some_and(|n| n.contains("CPU adapter")), "{:?}", fastest.precision_note());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Random values in random geometries: within the precision's tolerance of the f64
    /// reference, on the kernel the rule picks for them.
    #[test]
    fn f16_convolutions_stay_within_their_tolerance(
        c_in in 1usize..40, c_out in 1usize..40, h in 1usize..20, w in 1usize..20,
        k in 1usize..4, stride in 1usize..3, dilation in 1usize..5, padding in 0usize..5, accumulate in any::<bool>(),
    ) {
        let precision = if accumulate { Precision::F16Accumulate } else { Precision::F16 };
        let gpu = gpu_for(precision);
        let x = Tensor::random(vec![1, c_in, h, w], 9);
        let weight = Tensor::random(vec![c_out, c_in, k, k], 10);
        let p = Conv2dParams { stride: Hw::square(stride), padding: Hw::square(padding), dilation: Hw::square(dilation), groups: 1 };
        if let Ok(want) = conv2d(&CpuReference, &x, &weight, None, &p) {
            let got = conv2d(gpu, &x, &weight, None, &p).unwrap();
            let d = difference(got.data(), want.data());
            prop_assert!(precision.agrees(&d, precision.op_tolerance()), "{precision}: {d}");
        }
    }
}

/// One context per f16 precision for the property test.
fn gpu_for(precision: Precision) -> &'static Gpu {
    use std::sync::OnceLock;
    static F16: OnceLock<Gpu> = OnceLock::new();
    static F16_ACCUMULATE: OnceLock<Gpu> = OnceLock::new();
    let slot = if precision == Precision::F16 { &F16 } else { &F16_ACCUMULATE };
    slot.get_or_init(|| gpu_in(precision, KernelChoice::Auto, None))
}
