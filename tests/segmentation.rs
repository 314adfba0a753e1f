//! Segmentation heads: DeepLabv3 and FCN shapes and torchvision names at output stride 8 and 16,
//! bilinear resizing against hand-computed PyTorch values, the weight-free ops (pooling,
//! broadcast, concatenation, cropped transposed convolution) GPU vs CPU on random networks, the
//! FCN bilinear kernel, whole models GPU vs CPU, state dicts, receptive fields and model names.

mod common;

use atrous::backend::{Cpu, CpuReference};
use atrous::compare::{difference, difference_at_scale};
use atrous::imaging::argmax_classes;
use atrous::models::resnet::Arch;
use atrous::models::segmentation::{bilinear_kernel, segmentation, Head, Model, SegmentationConfig, Upsample};
use atrous::net::{receptive_fields, Executor, Keep, Layer, LayerGeometry, Network, Op, Source};
use atrous::weights::{write_safetensors, SafetensorsWeights, SeededWeights, WeightError};
use atrous::{conv_transpose2d, Backend, Conv2dParams, ConvTranspose2dParams, Error, Hw, Tensor};
use common::gpu;
use proptest::prelude::*;

fn config(model: &str, output_stride: usize, upsample: Upsample) -> SegmentationConfig {
    SegmentationConfig { upsample, ..SegmentationConfig::new(model.parse().unwrap(), output_stride) }
}

/// The network and the seeded state dict it was built from.
fn build_seeded(config: &SegmentationConfig, seed: u64) -> (Network, Vec<(String, Tensor)>) {
    let mut weights = SeededWeights::new(seed);
    let network = segmentation(config, &mut weights).unwrap();
    (network, weights.generated().to_vec())
}

fn layer<'a>(network: &'a Network, name: &str) -> (usize, &'a Layer) {
    let index = network.find(name).unwrap_or_else(|| panic!("{} has no layer {name}", network.name));
    (index, &network.layers[index])
}

fn shape_of(network: &Network, geometries: &[LayerGeometry], name: &str) -> [usize; 4] {
    geometries[layer(network, name).0].output_shape()
}

fn conv_params(layer: &Layer) -> Conv2dParams {
    match &layer.op {
        Op::Conv { params, .. } => *params,
        other => panic!("{} is not a convolution: {other:?}", layer.name),
    }
}

/// Checks the DeepLabv3 and FCN heads on `[1, 3, h, w]`; `size` is the expected feature map
/// (`(h − 1)/OS + 1` per side: the stem and the strided layers each halve with padding).
fn check_heads(output_stride: usize, h: usize, w: usize) {
    let features = Hw::new((h - 1) / output_stride + 1, (w - 1) / output_stride + 1);
    let (fh, fw) = (features.h, features.w);
    let input = [1, 3, h, w];

    // DeepLabv3: 2048-channel features; ASPP rates 96/OS, 192/OS, 288/OS; five 256-channel
    // branches (1×1, three 3×3 atrous, image pooling) concatenated into 5·256 = 1280.
    let (net, state_dict) = build_seeded(&config("deeplabv3_resnet50", output_stride, Upsample::Bilinear), 1);
    let g = net.geometries(&input).unwrap();
    assert_eq!(shape_of(&net, &g, "layer4.2.conv3"), [1, 2048, fh, fw], "backbone features at OS {output_stride}");
    let rates = if output_stride == 8 { [12, 24, 36] } else { [6, 12, 18] };
    for (branch, rate) in (1..=3).zip(rates) {
        let name = format!("classifier.0.convs.{branch}.0");
        let (_, conv) = layer(&net, &name);
        let p = conv_params(conv);
        assert_eq!((p.dilation, p.padding), (Hw::square(rate), Hw::square(rate)), "{name}: a 3×3 at rate {rate} keeps the size");
        assert_eq!(conv.input, Source::Layer(layer(&net, "layer4.2.conv3").0), "{name} reads the backbone features");
        assert_eq!(shape_of(&net, &g, &name), [1, 256, fh, fw], "{name}");
    }
    assert_eq!(conv_params(layer(&net, "classifier.0.convs.0.0").1).dilation, Hw::square(1));
    assert_eq!(shape_of(&net, &g, "classifier.0.convs.0.0"), [1, 256, fh, fw]);
    assert!(matches!(layer(&net, "classifier.0.convs.4.0").1.op, Op::GlobalAvgPool));
    assert_eq!(shape_of(&net, &g, "classifier.0.convs.4.0"), [1, 2048, 1, 1], "image pooling is 1×1");
    assert_eq!(shape_of(&net, &g, "classifier.0.convs.4.1"), [1, 256, 1, 1]);
    assert_eq!(shape_of(&net, &g, "classifier.0.convs.4.broadcast"), [1, 256, fh, fw], "broadcast back to the features");
    let (concat, _) = layer(&net, "classifier.0.concat");
    assert_eq!(g[concat], LayerGeometry::Concat { batch: 1, channels: vec![256; 5], size: features });
    assert_eq!(shape_of(&net, &g, "classifier.0.concat"), [1, 1280, fh, fw]);
    assert_eq!(shape_of(&net, &g, "classifier.0.project.0"), [1, 256, fh, fw]);
    assert_eq!(shape_of(&net, &g, "classifier.1"), [1, 256, fh, fw]);
    assert_eq!(shape_of(&net, &g, "classifier.4"), [1, 21, fh, fw], "logits before upsampling");
    let last = net.layers.last().unwrap();
    assert_eq!(last.name, "upsample");
    assert!(matches!(last.op, Op::Resize { size_of: Source::Input }), "{:?}", last.op);
    assert_eq!(g.last().unwrap().output_shape(), [1, 21, h, w]);
    // Parameters come by torchvision's state-dict names: the backbone under `backbone.`, the
    // batch-norms of the head (folded away as layers) under their own module numbers.
    let names: Vec<&str> = state_dict.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "backbone.layer4.2.conv2.weight",
        "backbone.layer4.2.bn2.running_var",
        "classifier.0.convs.0.0.weight",
        "classifier.0.convs.3.1.running_mean",
        "classifier.0.convs.4.1.weight",
        "classifier.0.convs.4.2.bias",
        "classifier.0.project.1.weight",
        "classifier.2.running_var",
        "classifier.4.bias",
    ] {
        assert!(names.contains(&expected), "no {expected} in {names:?}");
    }
    assert!(names.iter().all(|n| n.starts_with("backbone.") || n.starts_with("classifier.")), "{names:?}");
    assert!(net.find("layer4.2.conv2").is_some() && net.find("backbone.layer4.2.conv2").is_none(), "layers drop the prefix");

    // FCN: a 3×3 conv to 2048/4 = 512 channels, then the 1×1 classifier.
    let (fcn, _) = build_seeded(&config("fcn_resnet50", output_stride, Upsample::Bilinear), 1);
    let g = fcn.geometries(&input).unwrap();
    assert_eq!(shape_of(&fcn, &g, "classifier.0"), [1, 512, fh, fw]);
    assert_eq!(shape_of(&fcn, &g, "classifier.4"), [1, 21, fh, fw]);
    assert_eq!(g.last().unwrap().output_shape(), [1, 21, h, w]);

    // Transposed upsampling: per class (groups 21) kernel 2f, stride f, padding f/2. Its full
    // output, (n − 1)·f − f + 2f = n·f per side, is at least the input (n = ⌈size/f⌉) and is
    // cropped to it.
    for model in ["deeplabv3_resnet50", "fcn_resnet50"] {
        let (net, _) = build_seeded(&config(model, output_stride, Upsample::Transposed), 1);
        let g = net.geometries(&input).unwrap();
        let up = net.layers.last().unwrap();
        assert_eq!(up.name, "upsample");
        let f = output_stride;
        match &up.op {
            Op::ConvTranspose { params, weight, bias, crop_to } => {
                assert_eq!((params.stride, params.padding, params.groups), (Hw::square(f), Hw::square(f / 2), 21), "{model}");
                assert_eq!(weight.shape(), [21, 1, 2 * f, 2 * f], "{model}");
                assert!(bias.is_none() && *crop_to == Some(Source::Input), "{model}");
                let full = params.geometry(&[1, 21, fh, fw], weight.shape(), None).unwrap();
                assert_eq!((full.output.h, full.output.w), (fh * f, fw * f), "{model}: uncropped");
            }
            other => panic!("{model}: upsample is {other:?}"),
        }
        assert_eq!(g.last().unwrap().output_shape(), [1, 21, h, w], "{model}: cropped to the input");
    }
}

#[test]
fn heads_have_torchvision_shapes_at_output_stride_8_and_16() {
    for output_stride in [8, 16] {
        check_heads(output_stride, 513, 513);
    }
}

#[test]
fn heads_follow_a_non_square_input() {
    // 97×129 at OS 8: features 13×17; at OS 16: 7×9.
    for output_stride in [8, 16] {
        check_heads(output_stride, 97, 129);
    }
}

fn assert_close(got: &[f32], expected: &[f32], what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: length");
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        assert!((g - e).abs() <= 1e-5 * e.abs().max(1.0), "{what}: element {i} is {g}, expected {e}\n got {got:?}");
    }
}

/// Runs a resize on the CPU and the GPU and checks both against `expected`.
fn check_resize(input: &[f32], planes: usize, from: Hw, to: Hw, expected: &[f32], what: &str) {
    assert_close(&atrous::cpu::resize_bilinear(input, planes, from, to), expected, &format!("CPU: {what}"));
    assert_close(&gpu().resize_bilinear(input, planes, from, to).unwrap(), expected, &format!("GPU: {what}"));
}

#[test]
fn bilinear_resize_reproduces_pytorch_by_hand() {
    // PyTorch's align_corners=False rule: src = max((in/out)·(dst + ½) − ½, 0), the two
    // neighbours ⌊src⌋ and ⌊src⌋ + 1 (clamped to the last pixel), weight src − ⌊src⌋.

    // 2×2 [[1,2],[3,4]] → 4×4, scale ½: dst 0..3 → src max(−¼,0)=0, ¼, ¾, 1¼ (→ pixel 1 only).
    // Rows interpolate 1↔3 at weights 0, ¼, ¾, 1: 1, 1.5, 2.5, 3; columns add 0, ¼, ¾, 1 of
    // the step 2−1 = 1. This is F.interpolate's known output.
    let expected = [1.0, 1.25, 1.75, 2.0, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3.0, 3.25, 3.75, 4.0];
    check_resize(&[1.0, 2.0, 3.0, 4.0], 1, Hw::new(2, 2), Hw::new(4, 4), &expected, "2x2 to 4x4");

    // 1×3 ramp [0,10,20] → 1×5, scale 0.6: src = max(−0.2,0)=0, 0.4, 1.0, 1.6, 2.2 (→ pixel 2):
    // 0, 4, 10, 16, 20. (The single row maps onto itself: scale 1, src 0.)
    check_resize(&[0.0, 10.0, 20.0], 1, Hw::new(1, 3), Hw::new(1, 5), &[0.0, 4.0, 10.0, 16.0, 20.0], "ramp 1x3 to 1x5");

    // Downsampling 1×4 [0,1,2,3] → 1×2, scale 2: src = 2·0.5 − 0.5 = 0.5 and 2·1.5 − 0.5 = 2.5:
    // the means of pixels 0,1 and 2,3 (no antialiasing, as PyTorch).
    check_resize(&[0.0, 1.0, 2.0, 3.0], 1, Hw::new(1, 4), Hw::new(1, 2), &[0.5, 2.5], "1x4 to 1x2");

    // 1×1 → 3×4: every src clamps to pixel 0, so each plane becomes a constant (the ASPP
    // image-pooling broadcast). Two planes with different values check the plane offsets.
    let mut expected = vec![7.0; 12];
    expected.extend([-2.0; 12]);
    check_resize(&[7.0, -2.0], 2, Hw::square(1), Hw::new(3, 4), &expected, "1x1 to 3x4");
}

/// A random small network using every weight-free op of the heads: image pooling and its
/// broadcast (Resize from 1×1), a downsampling Resize of the input, a Concat of 2–4 sources of
/// different channel counts, an upsampling Resize to the input, a cropped transposed
/// convolution, and a final Concat that also joins the network input.
#[derive(Clone, Debug)]
struct HeadCase {
    network: Network,
    input: Tensor,
}

fn head_case() -> impl Strategy<Value = HeadCase> {
    (
        (1..=2usize, 1..=3usize, 1..=9usize, 1..=9usize),
        (1..=3usize, 1..=3usize, prop::collection::vec(1..=5usize, 3), 1..=4usize),
        (prop::sample::subsequence(vec![0usize, 1, 2], 1..=3), any::<bool>(), any::<bool>(), any::<u64>()),
    )
        .prop_map(|((batch, c_in, h, w), (stride, dilation, widths, classes), (joined, depthwise, with_bias, seed))| {
            let random = |shape: Vec<usize>, salt: u64| Tensor::random(shape, seed ^ salt);
            let conv = |c_out: usize, c_in: usize, k: usize, params: Conv2dParams, relu: bool, salt: u64| Op::Conv {
                params,
                weight: random(vec![c_out, c_in, k, k], salt),
                bias: Some(random(vec![c_out], salt ^ 0x100)),
                relu,
            };
            let same = |d: usize, s: usize| Conv2dParams { stride: Hw::square(s), padding: Hw::square(d), dilation: Hw::square(d), groups: 1 };
            let c0 = widths[0];
            let mut layers = vec![
                // 0: a strided 3×3 conv: the "features" at (size − 1)/stride + 1.
                Layer::new("features", conv(c0, c_in, 3, same(1, stride), true, 1), Source::Input),
                // 1–3: image pooling, a 1×1 conv, broadcast back to the features.
                Layer::new("pool", Op::GlobalAvgPool, Source::Layer(0)),
                Layer::new("pool.conv", conv(widths[1], c0, 1, Conv2dParams::default(), true, 2), Source::Layer(1)),
                Layer::new("pool.broadcast", Op::Resize { size_of: Source::Layer(0) }, Source::Layer(2)),
                // 4: an atrous branch; 5: the input resized down to the features.
                Layer::new("atrous", conv(widths[2], c0, 3, same(dilation, 1), false, 3), Source::Layer(0)),
                Layer::new("input.resized", Op::Resize { size_of: Source::Layer(0) }, Source::Input),
            ];
            let branches = [Source::Layer(3), Source::Layer(4), Source::Layer(5)];
            let more: Vec<Source> = joined.iter().map(|&i| branches[i]).collect();
            let joined_channels = c0 + joined.iter().map(|&i| [widths[1], widths[2], c_in][i]).sum::<usize>();
            layers.push(Layer::new("concat", Op::Concat { more }, Source::Layer(0))); // 6
            layers.push(Layer::new("project", conv(classes, joined_channels, 1, Conv2dParams::default(), false, 4), Source::Layer(6))); // 7
            layers.push(Layer::new("upsample.bilinear", Op::Resize { size_of: Source::Input }, Source::Layer(7))); // 8
            // Kernel 2s, stride s, padding ⌊s/2⌋ makes at least n·s ≥ the input size, so the crop
            // to the input is always possible.
            let (groups, per_group) = if depthwise { (classes, 1) } else { (1, classes) };
            let params = ConvTranspose2dParams { stride: Hw::square(stride), padding: Hw::square(stride / 2), groups, ..Default::default() };
            let transposed = Op::ConvTranspose {
                params,
                weight: random(vec![classes, per_group, 2 * stride, 2 * stride], 5),
                bias: with_bias.then(|| random(vec![classes], 6)),
                crop_to: Some(Source::Input),
            };
            layers.push(Layer::new("upsample.transposed", transposed, Source::Layer(7))); // 9
            layers.push(Layer::new("join", Op::Concat { more: vec![Source::Layer(9), Source::Input] }, Source::Layer(8))); // 10
            HeadCase { network: Network { name: "random head".into(), layers, ..Default::default() }, input: random(vec![batch, c_in, h, w], 7) }
        })
}

fn gpu_matches_cpu_layer_by_layer(network: &Network, input: &Tensor, tolerance: f64) -> Result<(), String> {
    let on_gpu = gpu().forward(network, input, Keep::All).map_err(|e| e.to_string())?;
    let on_cpu = Cpu.forward(network, input, Keep::All).map_err(|e| e.to_string())?;
    let mut term_scales = Vec::with_capacity(network.layers.len());
    for (layer, (g, c)) in network.layers.iter().zip(on_gpu.outputs.iter().zip(&on_cpu.outputs)) {
        let (g, c) = (g.as_ref().unwrap(), c.as_ref().unwrap());
        if g.shape() != c.shape() {
            return Err(format!("layer {}: GPU shape {:?}, CPU shape {:?}", layer.name, g.shape(), c.shape()));
        }
        // Judged at the scale of what went into the layer as well, carried down the chain: a
        // 1×1 convolution of few channels after a ReLU can cancel down to far below the values
        // it summed, and a broadcast of it inherits the error.
        let max_abs = |t: &Tensor| t.data().iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
        let term_scale = match layer.input {
            Source::Input => max_abs(input),
            Source::Layer(i) => max_abs(on_cpu.outputs[i].as_ref().unwrap()).max(term_scales[i]),
        };
        term_scales.push(term_scale);
        let d = difference_at_scale(g.data(), c.data(), term_scale);
        if !d.within(tolerance) {
            return Err(format!("layer {}: {d}", layer.name));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Up and down, non-square, 1-pixel sides: the shader computes PyTorch's taps as the CPU does.
    #[test]
    fn gpu_resize_matches_cpu(planes in 1..=4usize, from in (1..=12usize, 1..=12usize), to in (1..=20usize, 1..=20usize), seed in any::<u64>()) {
        let (from, to) = (Hw::new(from.0, from.1), Hw::new(to.0, to.1));
        let input = Tensor::random(vec![planes * from.h * from.w], seed);
        let on_cpu = atrous::cpu::resize_bilinear(input.data(), planes, from, to);
        let on_gpu = gpu().resize_bilinear(input.data(), planes, from, to).unwrap();
        let d = difference(&on_gpu, &on_cpu);
        prop_assert!(d.within(1e-5), "{planes} planes {from:?} → {to:?}: {d}");
    }

    /// Pooling, broadcast, concatenation, resizing and the cropped transposed convolution,
    /// wired as in a head, agree between the GPU executor and the CPU one at every layer.
    #[test]
    fn gpu_runs_random_heads_like_the_cpu(case in head_case()) {
        let result = gpu_matches_cpu_layer_by_layer(&case.network, &case.input, 1e-4);
        prop_assert!(result.is_ok(), "{} on {:?}: {}", case.network.name, case.input.shape(), result.unwrap_err());
    }
}

#[test]
fn the_bilinear_kernel_upsamples_a_constant_to_a_constant() {
    for f in [2, 4, 8] {
        let kernel = bilinear_kernel(3, f);
        assert_eq!(kernel.shape(), [3, 1, 2 * f, 2 * f]);
        // Output pixel o takes kernel taps k ≡ o + f/2 (mod f) of two input pixels: one tap
        // per axis from {r, r + f}. The tent 1 − |k − (f − ½)|/f gives r and r + f weights
        // summing to 2 − ((f − ½ − r) + (r + f − (f − ½)))/f = 1, for every phase r, so each
        // 2-D phase (4 taps) sums to 1 in every channel.
        let at = |c: usize, i: usize, j: usize| kernel.data()[(c * 2 * f + i) * 2 * f + j];
        for c in 0..3 {
            for ry in 0..f {
                for rx in 0..f {
                    let sum: f32 = [ry, ry + f].iter().flat_map(|&i| [rx, rx + f].map(|j| at(c, i, j))).sum();
                    assert!((sum - 1.0).abs() < 1e-6, "f {f} channel {c} phase ({ry}, {rx}) sums to {sum}");
                }
            }
        }

        let (h, w) = (5, 7);
        let input = Tensor::from_fn(vec![1, 3, h, w], |_| 2.5);
        let params = ConvTranspose2dParams { stride: Hw::square(f), padding: Hw::square(f / 2), groups: 3, ..Default::default() };
        let backends: [(&str, &dyn Backend); 3] = [("CPU reference", &CpuReference), ("CPU", &Cpu), ("GPU", gpu())];
        for (name, backend) in backends {
            let out = conv_transpose2d(backend, &input, &kernel, None, &params).unwrap();
            // (n − 1)·f − 2·(f/2) + 2f = n·f per side.
            assert_eq!(out.shape(), [1, 3, h * f, w * f], "{name} f {f}");
            let (oh, ow) = (h * f, w * f);
            let value = |c: usize, y: usize, x: usize| out.data()[(c * oh + y) * ow + x];
            // Input pixels sit at the centres of f×f cells, output positions i·f + f/2 − ½; from the
            // first centre to the last, every pixel lies between two of them: rows and columns
            // f/2 .. n·f − f/2.
            for c in 0..3 {
                for y in f / 2..oh - f / 2 {
                    for x in f / 2..ow - f / 2 {
                        let v = value(c, y, x);
                        assert!((v - 2.5).abs() < 1e-5, "{name} f {f}: ({c}, {y}, {x}) is {v}");
                    }
                }
            }
            // The corner sees only pixel (0, 0), through tap f/2 on each axis, of weight
            // 1 − (f/2 − ½)/f = ½ + 1/(2f): the border is not constant, so the range above is tight.
            let edge = 0.5 + 0.5 / f as f32;
            assert!((value(0, 0, 0) - 2.5 * edge * edge).abs() < 1e-5, "{name} f {f}: corner {}", value(0, 0, 0));
        }
    }
}

#[test]
fn whole_models_agree_between_gpu_and_cpu() {
    // 41×57 is neither square nor 32·m + 1; the batch-2 case checks the per-sample offsets of
    // concatenation and resizing.
    let mut cases = Vec::new();
    for model in ["deeplabv3_resnet18", "fcn_resnet18"] {
        for output_stride in [8, 16] {
            for upsample in [Upsample::Bilinear, Upsample::Transposed] {
                cases.push((config(model, output_stride, upsample), 1));
            }
        }
    }
    cases.push((config("deeplabv3_resnet18", 16, Upsample::Bilinear), 2));
    for (config, batch) in cases {
        let (net, _) = build_seeded(&config, 3);
        let input = Tensor::random(vec![batch, 3, 41, 57], 17);
        let on_gpu = gpu().forward(&net, &input, Keep::All).unwrap();
        let on_cpu = Cpu.forward(&net, &input, Keep::All).unwrap();
        for (layer, (g, c)) in net.layers.iter().zip(on_gpu.outputs.iter().zip(&on_cpu.outputs)) {
            let d = difference(g.as_ref().unwrap().data(), c.as_ref().unwrap().data());
            assert!(d.within(1e-3), "{} batch {batch}, layer {}: {d}", net.name, layer.name);
        }
        let logits = |f: &atrous::net::Forward| f.outputs.last().unwrap().clone().unwrap();
        let (g, c) = (logits(&on_gpu), logits(&on_cpu));
        assert_eq!(g.shape(), [batch, 21, 41, 57]);
        let (a, b) = (argmax_classes(&g), argmax_classes(&c));
        let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert!((differing as f64) < 0.001 * a.len() as f64, "{}: arg-max differs at {differing} of {} pixels", net.name, a.len());
    }
}

/// A layer's name with its (folded) weight and bias.
type Parameters<'a> = (&'a str, Option<(&'a Tensor, Option<&'a Tensor>)>);

fn folded_parameters(net: &Network) -> Vec<Parameters<'_>> {
    net.layers.iter().map(|l| (l.name.as_str(), l.parameters())).collect()
}

#[test]
fn state_dicts_load_and_broken_ones_are_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deeplabv3_resnet18.safetensors");
    let config = config("deeplabv3_resnet18", 8, Upsample::Bilinear);
    let (from_seed, mut state_dict) = build_seeded(&config, 5);
    // torchvision's checkpoints carry an auxiliary FCN head on layer3, which is not built.
    state_dict.push(("aux_classifier.0.weight".into(), Tensor::random(vec![64, 256, 3, 3], 1)));
    write_safetensors(&path, &state_dict).unwrap();

    let mut loaded = SafetensorsWeights::open(&path).unwrap();
    let from_file = segmentation(&config, &mut loaded).unwrap();
    assert_eq!(loaded.unused("", &[]), ["aux_classifier.0.weight"], "everything else is used");
    assert!(loaded.unused("", &["aux_classifier."]).is_empty());
    assert_eq!(from_seed.layers.len(), from_file.layers.len());
    for (a, b) in folded_parameters(&from_seed).into_iter().zip(folded_parameters(&from_file)) {
        assert!(a == b, "layer {} differs from the seeded one", a.0);
    }

    let write_without = |missing: &str| {
        let without: Vec<_> = state_dict.iter().filter(|(n, _)| n != missing).cloned().collect();
        assert_eq!(without.len(), state_dict.len() - 1, "{missing} was in the state dict");
        write_safetensors(&path, &without).unwrap();
    };
    for missing in ["classifier.0.convs.2.1.running_var", "classifier.4.bias"] {
        write_without(missing);
        let err = segmentation(&config, &mut SafetensorsWeights::open(&path).unwrap()).unwrap_err();
        assert!(matches!(&err, Error::Weights(WeightError::Missing { name, .. }) if name == missing), "{err}");
        assert!(err.to_string().contains(missing), "{err}");
    }

    let mut reshaped = state_dict.clone();
    reshaped.iter_mut().find(|(n, _)| n == "classifier.1.weight").unwrap().1 = Tensor::random(vec![256, 256, 1, 1], 2);
    write_safetensors(&path, &reshaped).unwrap();
    let err = segmentation(&config, &mut SafetensorsWeights::open(&path).unwrap()).unwrap_err().to_string();
    assert!(err.contains("classifier.1.weight") && err.contains("[256, 256, 1, 1]") && err.contains("[256, 256, 3, 3]"), "{err}");
}

#[test]
fn receptive_fields_run_through_the_head() {
    let (net, _) = build_seeded(&config("deeplabv3_resnet50", 8, Upsample::Bilinear), 1);
    let g = net.geometries(&[1, 3, 513, 513]).unwrap();
    let fields = receptive_fields(&net, &g);
    let field = |name: &str| fields[layer(&net, name).0];
    assert_eq!(field("classifier.4").jump, Hw::square(8), "the head keeps the output stride");
    // 65 → 513: the jump 8·65/513 ≈ 1.01 rounds to 1.
    assert_eq!(field("upsample").jump, Hw::square(1));
    // A 3×3 at rate r on a jump of 8 adds (3 − 1)·r·8 input pixels.
    let backbone = field("layer4.2.conv3").receptive_field;
    let rate_12 = field("classifier.0.convs.1.0").receptive_field;
    let rate_36 = field("classifier.0.convs.3.0").receptive_field;
    assert_eq!(rate_12, Hw::square(backbone.h + 2 * 12 * 8));
    assert_eq!(rate_36.h - rate_12.h, (36 - 12) * 2 * 8);
    assert_eq!(rate_36.w - rate_12.w, (36 - 12) * 2 * 8);
}

#[test]
fn model_names_parse_and_display_like_torchvision() {
    let model: Model = "deeplabv3_resnet101".parse().unwrap();
    assert_eq!(model, Model { head: Head::DeepLabV3, arch: Arch::ResNet101 });
    assert_eq!(model.to_string(), "deeplabv3_resnet101");
    let fcn: Model = "fcn_resnet50".parse().unwrap();
    assert_eq!((fcn.head, fcn.arch, fcn.to_string().as_str()), (Head::Fcn, Arch::ResNet50, "fcn_resnet50"));
    for bad in ["deeplab_resnet50", "fcn_resnet51", "deeplabv3", "resnet50"] {
        let err = bad.parse::<Model>().unwrap_err();
        assert!(err.contains(bad) && err.contains("deeplabv3_resnetNN") && err.contains("fcn_resnetNN") && err.contains("18, 34, 50, 101, 152"), "{bad}: {err}");
    }
}

/// With `aux`, torchvision's auxiliary FCN head reads layer3 (256 channels in resnet18, a quarter
/// of them inside the head) and its upsampled logits are an extra output: a pass that keeps only
/// the outputs returns it beside the main logits, and GPU and CPU agree on both.
#[test]
fn the_auxiliary_head_is_an_extra_output() {
    let with_aux = SegmentationConfig { aux: true, ..config("fcn_resnet18", 8, Upsample::Bilinear) };
    let (net, state_dict) = build_seeded(&with_aux, 5);
    assert!(state_dict.iter().any(|(name, t)| name == "aux_classifier.0.weight" && t.shape() == [64, 256, 3, 3]));
    let (aux, _) = layer(&net, "aux_upsample");
    assert_eq!(net.extra_outputs, [aux]);
    let (layer3, _) = layer(&net, "layer3.1.conv2");
    assert_eq!(layer(&net, "aux_classifier.0").1.input, Source::Layer(layer3), "the head reads layer3's output");
    let input = Tensor::random(vec![1, 3, 41, 57], 3);
    let on_gpu = gpu().forward(&net, &input, Keep::Last).unwrap();
    let on_cpu = Cpu.forward(&net, &input, Keep::Last).unwrap();
    let last = net.layers.len() - 1;
    for (i, (g, c)) in on_gpu.outputs.iter().zip(&on_cpu.outputs).enumerate() {
        assert_eq!(g.is_some(), i == aux || i == last, "layer {} kept", net.layers[i].name);
        assert_eq!(c.is_some(), i == aux || i == last, "layer {} kept on the CPU", net.layers[i].name);
        if let (Some(g), Some(c)) = (g, c) {
            assert_eq!(g.shape(), [1, 21, 41, 57]);
            let d = difference(g.data(), c.data());
            assert!(d.within(1e-3), "{}: {d}", net.layers[i].name);
        }
    }
    let (plain, plain_dict) = build_seeded(&config("fcn_resnet18", 8, Upsample::Bilinear), 5);
    assert!(plain.extra_outputs.is_empty() && !plain_dict.iter().any(|(name, _)| name.starts_with("aux_classifier.")));
}
