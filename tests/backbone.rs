//! ResNet backbones: shapes at every output stride, torchvision's dilation schedule, the atrous
//! identity that makes output stride worth having, GPU-vs-CPU agreement on whole networks, the
//! weights loader, and memory reuse.

mod common;

use atrous::backend::Cpu;
use atrous::compare::difference;
use atrous::models::resnet::{resnet, Arch, ResNetConfig, OUTPUT_STRIDES};
use atrous::net::{receptive_fields, Executor, Keep, Network, Op};
use atrous::weights::{write_safetensors, SafetensorsWeights, SeededWeights, WeightError};
use atrous::{Error, Tensor};
use common::gpu;

fn build(arch: Arch, output_stride: usize) -> Network {
    resnet(&ResNetConfig::new(arch, output_stride), &mut SeededWeights::new(7)).unwrap()
}

fn dilations(net: &Network, prefix: &str) -> Vec<usize> {
    net.layers
        .iter()
        .filter(|l| l.name.starts_with(prefix) && l.name.ends_with(".conv2"))
        .map(|l| match &l.op {
            Op::Conv { params, .. } => params.dilation.h,
            _ => unreachable!("conv2 is a convolution"),
        })
        .collect()
}

#[test]
fn feature_map_sizes_follow_the_output_stride() {
    for arch in [Arch::ResNet18, Arch::ResNet50, Arch::ResNet101] {
        for os in OUTPUT_STRIDES {
            let net = build(arch, os);
            for size in [321, 513] {
                let g = net.geometries(&[1, 3, size, size]).unwrap();
                let out = g.last().unwrap().output_shape();
                assert_eq!(out, [1, arch.out_channels(), (size - 1) / os + 1, (size - 1) / os + 1], "{arch} OS {os} at {size}");
                let fields = receptive_fields(&net, &g);
                assert_eq!(fields.last().unwrap().jump.h, os, "the jump after the last layer is the output stride");
            }
        }
    }
}

#[test]
fn resnet50_at_output_stride_8_dilates_like_torchvision() {
    let net = build(Arch::ResNet50, 8);
    assert_eq!(dilations(&net, "layer1."), [1, 1, 1]);
    assert_eq!(dilations(&net, "layer2."), [1, 1, 1, 1]);
    assert_eq!(dilations(&net, "layer3."), [1, 2, 2, 2, 2, 2]);
    assert_eq!(dilations(&net, "layer4."), [2, 4, 4]);
    let multi_grid = ResNetConfig { multi_grid: Some(vec![1, 2, 4]), ..ResNetConfig::new(Arch::ResNet50, 16) };
    let net = resnet(&multi_grid, &mut SeededWeights::new(7)).unwrap();
    assert_eq!(dilations(&net, "layer4."), [2, 4, 8], "the DeepLabv3 paper's example: OS 16's rate 2 times the grid (1, 2, 4)");
}

#[test]
fn impossible_output_strides_are_refused_listing_the_possible_ones() {
    let err = resnet(&ResNetConfig::new(Arch::ResNet50, 12), &mut SeededWeights::new(7)).unwrap_err();
    assert!(err.to_string().contains("4, 8, 16 and 32"), "{err}");
    let bad_grid = ResNetConfig { multi_grid: Some(vec![1, 2]), ..ResNetConfig::new(Arch::ResNet50, 16) };
    assert!(resnet(&bad_grid, &mut SeededWeights::new(7)).unwrap_err().to_string().contains("multi-grid"));
}

/// Samples every `step`-th row and column of an NCHW tensor (`x[:, :, ::step, ::step]`).
fn subsample(t: &Tensor, step: usize) -> Tensor {
    let [n, c, h, w] = t.shape().try_into().unwrap();
    let (oh, ow) = ((h - 1) / step + 1, (w - 1) / step + 1);
    Tensor::from_fn(vec![n, c, oh, ow], |i| t.data()[((i[0] * c + i[1]) * h + i[2] * step) * w + i[3] * step])
}

#[test]
fn atrous_features_subsampled_equal_strided_features() {
    // With the same weights and an input of size 32·m + 1, the OS-8 features at every 4th pixel
    // and the OS-16 features at every 2nd pixel equal the OS-32 features (TF-slim's check).
    let input = Tensor::random(vec![1, 3, 65, 65], 3);
    for arch in [Arch::ResNet18, Arch::ResNet50] {
        let features = |os| Cpu.forward(&build(arch, os), &input, Keep::Last).unwrap().outputs.pop().unwrap().unwrap();
        let strided = features(32);
        for (os, step) in [(16, 2), (8, 4), (4, 8)] {
            let d = difference(subsample(&features(os), step).data(), strided.data());
            assert!(d.within(1e-4), "{arch}: OS {os} every {step}th pixel vs OS 32: {d}");
        }
    }
}

#[test]
fn gpu_and_cpu_agree_on_whole_networks() {
    for arch in [Arch::ResNet18, Arch::ResNet50] {
        for os in OUTPUT_STRIDES {
            let net = build(arch, os);
            let input = Tensor::random(vec![2, 3, 33, 41], 11);
            let on_gpu = gpu().forward(&net, &input, Keep::All).unwrap();
            let on_cpu = Cpu.forward(&net, &input, Keep::All).unwrap();
            for (layer, (g, c)) in net.layers.iter().zip(on_gpu.outputs.iter().zip(&on_cpu.outputs)) {
                let d = difference(g.as_ref().unwrap().data(), c.as_ref().unwrap().data());
                assert!(d.within(1e-3), "{arch} OS {os} layer {}: {d}", layer.name);
            }
            assert_eq!(on_gpu.layer_times.map(|t| t.len()), gpu().summary().timestamp_query.then_some(net.layers.len()));
        }
    }
}

#[test]
fn gpu_memory_stays_within_weights_plus_four_largest_activations() {
    let net = build(Arch::ResNet50, 8);
    let input = Tensor::random(vec![1, 3, 65, 65], 5);
    let forward = gpu().forward(&net, &input, Keep::Last).unwrap();
    let memory = forward.memory.unwrap();
    assert_eq!(memory.weights, net.weight_bytes(4));
    assert!(memory.activations <= 4 * memory.largest_activation, "{memory:?}");
    let on_cpu = Cpu.forward(&net, &input, Keep::Last).unwrap();
    let d = difference(forward.outputs.last().unwrap().as_ref().unwrap().data(), on_cpu.outputs.last().unwrap().as_ref().unwrap().data());
    assert!(d.within(1e-3), "{d}");
}

#[test]
fn weights_round_trip_through_safetensors_and_broken_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = ResNetConfig::new(Arch::ResNet18, 16);
    let mut seeded = SeededWeights::new(21);
    let from_seed = resnet(&config, &mut seeded).unwrap();
    let mut state_dict: Vec<(String, Tensor)> = seeded.generated().to_vec();
    state_dict.push(("fc.weight".into(), Tensor::random(vec![10, 512], 1))); // ignored
    let path = dir.path().join("resnet18.safetensors");
    write_safetensors(&path, &state_dict).unwrap();

    let mut loaded = SafetensorsWeights::open(&path).unwrap();
    let from_file = resnet(&config, &mut loaded).unwrap();
    assert_eq!(loaded.unused("", &[]), ["fc.weight"], "only the classifier is left over");
    assert!(loaded.unused("", &["fc."]).is_empty());
    for (a, b) in from_seed.layers.iter().zip(&from_file.layers) {
        if let (Op::Conv { weight: wa, bias: ba, .. }, Op::Conv { weight: wb, bias: bb, .. }) = (&a.op, &b.op) {
            assert_eq!((wa, ba), (wb, bb), "layer {}", a.name);
        }
    }

    // A missing tensor and a tensor of the wrong shape are refused, naming them.
    let without: Vec<_> = state_dict.iter().filter(|(n, _)| n != "layer3.1.bn2.running_var").cloned().collect();
    write_safetensors(&path, &without).unwrap();
    let err = resnet(&config, &mut SafetensorsWeights::open(&path).unwrap()).unwrap_err();
    assert!(matches!(&err, Error::Weights(WeightError::Missing { name, .. }) if name == "layer3.1.bn2.running_var"), "{err}");
    let mut reshaped = state_dict.clone();
    let entry = reshaped.iter_mut().find(|(n, _)| n == "layer2.0.downsample.0.weight").unwrap();
    entry.1 = Tensor::random(vec![128, 64, 3, 3], 1);
    write_safetensors(&path, &reshaped).unwrap();
    let err = resnet(&config, &mut SafetensorsWeights::open(&path).unwrap()).unwrap_err().to_string();
    assert!(err.contains("layer2.0.downsample.0.weight") && err.contains("[128, 64, 3, 3]") && err.contains("[128, 64, 1, 1]"), "{err}");
}

#[test]
fn an_integer_parameter_is_refused_as_such_not_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("int.safetensors");
    let bytes: Vec<u8> = (0..16i32).flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::I32, vec![16], &bytes).unwrap();
    let counter = 0i64.to_le_bytes();
    let count = safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![], &counter).unwrap();
    std::fs::write(&path, safetensors::serialize([("bn1.bias", view), ("bn1.num_batches_tracked", count)], None).unwrap()).unwrap();
    let err = SafetensorsWeights::open(&path).err().expect("an I32 parameter cannot be read");
    assert!(matches!(&err, WeightError::UnsupportedDtype { name, .. } if name == "bn1.bias"), "{err}");
}

#[test]
fn miswired_layers_are_refused_naming_the_layer_and_the_wiring() {
    use atrous::net::{Layer, NetworkError, Source};
    let network = |layers: Vec<Layer>| Network { name: "wiring".into(), layers, extra_outputs: Vec::new() };
    let later = network(vec![Layer::new("up", Op::Resize { size_of: Source::Layer(1) }, Source::Input), Layer::new("up2", Op::GlobalAvgPool, Source::Input)]);
    let error = later.geometries(&[1, 3, 8, 8]).unwrap_err();
    assert!(matches!(&error, Error::Network { layer, source: NetworkError::ReadsLaterLayer(1) } if layer == "up"), "{error:?}");
    assert_eq!(error.to_string(), "layer up: reads layer 1, which does not run before it");
    let mut pool = Layer::new("pool", Op::GlobalAvgPool, Source::Input);
    pool.residual = Some(Source::Input);
    let error = network(vec![pool]).geometries(&[1, 3, 8, 8]).unwrap_err();
    assert_eq!(error.to_string(), "layer pool: only convolutions take a residual, not a global_avg_pool");
}

#[test]
fn progress_counts_every_layer_prepared_and_run() {
    let network = build(Arch::ResNet18, 32);
    let input = Tensor::random(vec![2, 3, 33, 33], 1);
    let layers = network.layers.len();
    // The GPU counts each layer prepared, then run; the CPU each layer run.
    for (executor, total) in [(gpu() as &dyn Executor, 2 * layers), (&Cpu as &dyn Executor, layers)] {
        let seen = std::cell::RefCell::new(Vec::new());
        let record = |done: usize, of: usize| seen.borrow_mut().push((done, of));
        executor.forward_with_progress(&network, &input, Keep::Last, Some(&record)).unwrap();
        let expected: Vec<(usize, usize)> = (1..=total).map(|done| (done, total)).collect();
        assert_eq!(seen.into_inner(), expected, "{}", executor.describe());
    }
}
