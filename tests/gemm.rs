//! The implicit-GEMM kernels (every tile configuration, forward and transposed) against the f64
//! CPU reference: random shapes, strides, paddings, dilations (larger than the input too),
//! groups, batches and output paddings, with enough channels for partial and several tiles along
//! M and K; edge cases by hand; and a whole dilated ResNet, whose fused epilogues (bias from the
//! folded batch norm, residual, ReLU) only networks exercise.

mod common;

use std::sync::OnceLock;

use atrous::backend::{Cpu, CpuReference};
use atrous::compare::difference;
use atrous::gpu::{GemmTile, Gpu, GpuOptions, KernelChoice};
use atrous::models::resnet::{resnet, Arch, ResNetConfig};
use atrous::net::{Executor, Keep};
use atrous::weights::SeededWeights;
use atrous::{conv2d, conv_transpose2d, Conv2dParams, ConvTranspose2dParams, Hw, Tensor};
use common::{gemm_conv_case, gemm_transposed_case, ConvCase, TransposedCase};
use proptest::prelude::*;

const TOLERANCE: f64 = 1e-4;

/// One context per configuration, every convolution forced onto it.
fn gpu_with(tile: GemmTile) -> &'static Gpu {
    static GPUS: OnceLock<Vec<Gpu>> = OnceLock::new();
    let gpus = GPUS.get_or_init(|| {
        GemmTile::ALL
            .iter()
            .map(|&t| Gpu::new(&GpuOptions { kernel: KernelChoice::Gemm(t), ..Default::default() }).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}")))
            .collect()
    });
    &gpus[GemmTile::ALL.iter().position(|&t| t == tile).unwrap()]
}

fn check_conv(tile: GemmTile, case: &ConvCase) -> Result<(), TestCaseError> {
    let gpu = gpu_with(tile);
    let geometry = case.params.geometry(case.input.shape(), case.weight.shape(), case.bias.as_ref().map(Tensor::shape)).unwrap();
    prop_assert_eq!(gpu.kernel_name(&geometry, KernelChoice::Auto).unwrap(), tile.shaders()[0].name);
    let on_gpu = conv2d(gpu, &case.input, &case.weight, case.bias.as_ref(), &case.params).unwrap();
    let exact = conv2d(&CpuReference, &case.input, &case.weight, case.bias.as_ref(), &case.params).unwrap();
    let d = difference(on_gpu.data(), exact.data());
    prop_assert!(d.within(TOLERANCE), "{} {}: {d} for input {:?}, weight {:?}, {:?}", tile.name(), "conv2d", case.input.shape(), case.weight.shape(), case.params);
    Ok(())
}

fn check_transposed(tile: GemmTile, case: &TransposedCase) -> Result<(), TestCaseError> {
    let gpu = gpu_with(tile);
    let geometry = case.params.geometry(case.input.shape(), case.weight.shape(), case.bias.as_ref().map(Tensor::shape)).unwrap();
    prop_assert_eq!(gpu.kernel_name(&geometry, KernelChoice::Auto).unwrap(), tile.shaders()[1].name);
    let on_gpu = conv_transpose2d(gpu, &case.input, &case.weight, case.bias.as_ref(), &case.params).unwrap();
    let exact = conv_transpose2d(&CpuReference, &case.input, &case.weight, case.bias.as_ref(), &case.params).unwrap();
    let d = difference(on_gpu.data(), exact.data());
    prop_assert!(d.within(TOLERANCE), "{}: {d} for input {:?}, weight {:?}, {:?}", tile.name(), case.input.shape(), case.weight.shape(), case.params);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn gemm_conv2d_matches_reference(case in gemm_conv_case(), tile in prop::sample::select(GemmTile::ALL.to_vec())) {
        check_conv(tile, &case)?;
    }

    #[test]
    fn gemm_conv_transpose2d_matches_reference(case in gemm_transposed_case(), tile in prop::sample::select(GemmTile::ALL.to_vec())) {
        check_transposed(tile, &case)?;
    }
}

#[test]
fn every_configuration_handles_the_edge_cases() {
    let square = |n| Hw::square(n);
    let cases = [
        // A 1×1 input, a dilation far larger than the input (only the centre tap lands inside),
        // a kernel that just fits, non-square everything, several tiles along M and K.
        (vec![1, 3, 1, 1], vec![40, 3, 3, 3], Conv2dParams { padding: square(1), ..Default::default() }),
        (vec![2, 17, 9, 7], vec![130, 17, 3, 3], Conv2dParams { padding: square(24), dilation: square(24), ..Default::default() }),
        (vec![1, 9, 5, 11], vec![33, 9, 5, 11], Conv2dParams::default()),
        (vec![1, 20, 13, 10], vec![70, 10, 3, 2], Conv2dParams { stride: Hw { h: 2, w: 3 }, padding: Hw { h: 2, w: 1 }, dilation: Hw { h: 3, w: 2 }, groups: 2 }),
    ];
    for tile in GemmTile::ALL {
        for (seed, (input, weight, params)) in cases.iter().enumerate() {
            let case = ConvCase {
                input: Tensor::random(input.clone(), seed as u64),
                weight: Tensor::random(weight.clone(), seed as u64 + 10),
                bias: Some(Tensor::random(vec![weight[0]], seed as u64 + 20)),
                params: *params,
            };
            check_conv(tile, &case).unwrap();
        }
        // The FCN paper's upsampling (kernel 2f, stride f, padding f/2) and output padding.
        let params = ConvTranspose2dParams { stride: Hw { h: 4, w: 3 }, padding: Hw { h: 2, w: 1 }, output_padding: Hw { h: 1, w: 2 }, dilation: Hw { h: 1, w: 2 }, groups: 1 };
        let case = TransposedCase { input: Tensor::random(vec![2, 12, 5, 6], 7), weight: Tensor::random(vec![12, 70, 8, 6], 8), bias: None, params };
        check_transposed(tile, &case).unwrap();
    }
}

#[test]
fn a_group_never_reads_another_groups_channels() {
    // Channels past a group's last must be zero, not the next group's values times a zero weight:
    // the second group's input is infinite and the first group's output must stay finite. With 3
    // channels per group most of every step (8 or 16 channels, padded to pairs) lies past them;
    // with 100 the last step is partial, and so is the one the second-to-last pair loads.
    for channels in [3, 100] {
        let params = Conv2dParams { padding: Hw::square(1), groups: 2, ..Default::default() };
        let input = Tensor::from_fn(vec![2, 2 * channels, 5, 7], |i| if i[1] >= channels { f32::INFINITY } else { (i[2] * 7 + i[3]) as f32 / 35.0 });
        let weight = Tensor::random(vec![8, channels, 3, 3], 41);
        let exact = conv2d(&CpuReference, &input, &weight, None, &params).unwrap();
        let first_group = |t: &Tensor| -> Vec<f32> { t.data().chunks(4 * 5 * 7).step_by(2).flatten().copied().collect() };
        assert!(first_group(&exact).iter().all(|v| v.is_finite()));
        for tile in GemmTile::ALL {
            let on_gpu = conv2d(gpu_with(tile), &input, &weight, None, &params).unwrap();
            let d = difference(&first_group(&on_gpu), &first_group(&exact));
            assert!(d.within(TOLERANCE), "{} with {channels} channels per group: {d}", tile.name());
        }
    }
}

#[test]
fn every_configuration_runs_a_dilated_resnet_like_the_cpu() {
    let net = resnet(&ResNetConfig::new(Arch::ResNet18, 8), &mut SeededWeights::new(7)).unwrap();
    let input = Tensor::random(vec![2, 3, 33, 41], 11);
    let on_cpu = Cpu.forward(&net, &input, Keep::All).unwrap();
    for tile in GemmTile::ALL {
        let on_gpu = gpu_with(tile).forward(&net, &input, Keep::All).unwrap();
        for (layer, (g, c)) in net.layers.iter().zip(on_gpu.outputs.iter().zip(&on_cpu.outputs)) {
            let d = difference(g.as_ref().unwrap().data(), c.as_ref().unwrap().data());
            assert!(d.within(1e-3), "{} layer {}: {d}", tile.name(), layer.name);
        }
    }
}

#[test]
fn the_gemm_kernels_fold_workgroups_into_a_third_dimension() {
    // Stride 256 on a 1×1 input with output_padding 255: a 256×256 output of 65,536 phases of one
    // pixel each, so 65,536 pixel tiles, one more than a dimension allows. Every phase but the
    // first has no tap and stores the bias.
    let p = ConvTranspose2dParams { stride: Hw::square(256), output_padding: Hw::square(255), ..Default::default() };
    let case = TransposedCase { input: Tensor::random(vec![1, 3, 1, 1], 28), weight: Tensor::random(vec![3, 8, 1, 1], 29), bias: Some(Tensor::random(vec![8], 30)), params: p };
    assert!(256 * 256 > gpu_with(GemmTile::Square).limits().max_compute_workgroups_per_dimension as usize, "the case must need a third dimension");
    check_transposed(GemmTile::Square, &case).unwrap();
}
