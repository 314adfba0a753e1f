//! The arithmetic of `atrous profile` (src/profile/, `Network::traffic`, `models::stage`) on a
//! small network whose every number is computed by hand: bytes moved, arithmetic intensity,
//! rates, shares of the peak, stage and network sums, costs relative to the largest output
//! stride, and the CSV's rows.

use atrous::backend::Cpu;
use atrous::bench::stats;
use atrous::models::stage;
use atrous::net::{Layer, Network, Op, Source, Traffic};
use atrous::profile::{rate, set_relative, time_passes, to_csv, Passes, ProfileReport, RunProfile, Summary, CSV_COLUMNS, WARMUP_PASSES};
use atrous::{Conv2dParams, Hw, Pool2dParams, Tensor};

/// An 8×8 RGB input through:
/// 0 `conv1`: 3×3 conv 3→4, padding 1, bias — output 4×8×8;
/// 1 `layer1.0.conv1`: 1×1 conv 4→4 with bias, the residual from layer 0;
/// 2 `layer2.0.pool`: 2×2 max-pool, stride 2 — 4×4×4;
/// 3 `classifier.0.convs.4.broadcast`: bilinear resize back to the input's 8×8 (size only);
/// 4 `classifier.0.concat`: layer 3 with layer 0 — 8×8×8.
fn network() -> Network {
    let conv = |c_in: usize, c_out: usize, k: usize, padding: usize| Op::Conv {
        params: Conv2dParams { padding: Hw::square(padding), ..Default::default() },
        weight: Tensor::random(vec![c_out, c_in, k, k], 1),
        bias: Some(Tensor::random(vec![c_out], 2)),
        relu: false,
    };
    let mut residual = Layer::new("layer1.0.conv1", conv(4, 4, 1, 0), Source::Layer(0));
    residual.residual = Some(Source::Layer(0));
    let pool = Pool2dParams { kernel: Hw::square(2), stride: Hw::square(2), padding: Hw::square(0), dilation: Hw::square(1) };
    Network {
        name: "hand".into(),
        layers: vec![
            Layer::new("conv1", conv(3, 4, 3, 1), Source::Input),
            residual,
            Layer::new("layer2.0.pool", Op::MaxPool(pool), Source::Layer(1)),
            Layer::new("classifier.0.convs.4.broadcast", Op::Resize { size_of: Source::Input }, Source::Layer(2)),
            Layer::new("classifier.0.concat", Op::Concat { more: vec![Source::Layer(0)] }, Source::Layer(3)),
        ],
        extra_outputs: vec![],
    }
}

const INPUT: [usize; 4] = [1, 3, 8, 8];

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1e-12)
}

#[test]
fn bytes_moved_by_hand() {
    let network = network();
    let geometries = network.geometries(&INPUT).unwrap();
    let traffic = network.traffic(&INPUT, &geometries, 4);
    let expected = [
        // weight 4·3·3·3 + bias 4 = 112 floats; input 3·64; output 4·64
        Traffic { weights: 112 * 4, inputs: 192 * 4, output: 256 * 4 },
        // weight 16 + bias 4; input and residual, 256 each; output 256
        Traffic { weights: 20 * 4, inputs: 512 * 4, output: 256 * 4 },
        // no weights; input 256; output 4·16
        Traffic { weights: 0, inputs: 256 * 4, output: 64 * 4 },
        // reads the pooled 64 (the input gives only its size); writes 4·64
        Traffic { weights: 0, inputs: 64 * 4, output: 256 * 4 },
        // both halves, 256 each; writes 8·64
        Traffic { weights: 0, inputs: 512 * 4, output: 512 * 4 },
    ];
    assert_eq!(traffic, expected);
    assert_eq!(traffic[0].total(), 2240);
    assert_eq!(traffic[1].total(), 3152);
    // FLOPs: 2·64·4·3·9 = 13824 for conv1, 2·64·4·4 = 2048 for the 1×1.
    assert_eq!(geometries[0].flops(), 13824);
    assert_eq!(geometries[1].flops(), 2048);
    assert!((traffic[0].intensity(13824) - 13824.0 / 2240.0).abs() < 1e-12);
    assert!((traffic[1].intensity(2048) - 2048.0 / 3152.0).abs() < 1e-12);
    assert_eq!(traffic[2].intensity(0), 0.0);
    assert_eq!(Traffic::default().intensity(100), 0.0, "nothing moved: no intensity, not infinity");
}

#[test]
fn stages_from_names() {
    assert_eq!(stage("conv1"), "stem");
    assert_eq!(stage("maxpool"), "stem");
    assert_eq!(stage("layer3.2.conv2"), "layer3");
    assert_eq!(stage("layer2.0.downsample.0"), "layer2");
    assert_eq!(stage("classifier.0.convs.1.0"), "aspp");
    assert_eq!(stage("classifier.0.project.0"), "aspp");
    assert_eq!(stage("classifier.0"), "classifier", "FCN's first conv is no ASPP");
    assert_eq!(stage("classifier.4"), "classifier");
    assert_eq!(stage("aux_classifier.0"), "aux_classifier");
    assert_eq!(stage("upsample"), "upsample");
}

#[test]
fn medians_and_rates() {
    assert_eq!(stats(&[3.0, 1.0, 2.0]).median, 2.0);
    let s = stats(&[4.0, 1.0, 3.0, 2.0]);
    assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
    assert_eq!(stats(&[0.0]).median, 0.0, "a zero time is kept, not refused");
    assert_eq!(rate(2.0, 500.0), Some(4.0), "2 GFLOP in half a second");
    assert_eq!(rate(1.0, 0.0), None);
}

/// Passes whose layer `i` takes `ms[i]` (median of three times around it).
fn passes(ms: &[f64]) -> Passes {
    Passes {
        layer_seconds: ms.iter().map(|&t| vec![t * 2e-3, t * 1e-3, t * 0.5e-3]).collect(),
        wall_seconds: vec![0.03, 0.01, 0.02],
        parts: Some(vec![1; ms.len()]),
        value_bytes: 4,
    }
}

#[test]
fn layers_stages_and_totals_by_hand() {
    let network = network();
    let run = RunProfile::new(32, &network, &INPUT, &passes(&[2.0, 1.0, 0.5, 0.0, 0.5]), Some(100.0)).unwrap();
    assert_eq!(run.output_shape, [1, 8, 8, 8]);
    assert!(close(run.wall_ms, 20.0), "{}", run.wall_ms);
    let conv1 = &run.layers[0];
    assert_eq!((conv1.stage.as_str(), conv1.kind), ("stem", "conv"));
    assert!(close(conv1.median_ms, 2.0) && close(conv1.min_ms, 1.0) && close(conv1.max_ms, 4.0), "{conv1:?}");
    assert_eq!(conv1.gflop, 13824e-9);
    // Valid taps per axis with padding 1 on 8: 2 + 6·3 + 2 = 22, so 2·(4·3)·22² useful FLOPs.
    assert_eq!(conv1.useful_gflop, 11616e-9);
    assert!(close(conv1.gflops.unwrap(), 13824e-9 / 2e-3));
    assert!(close(conv1.fraction_of_peak.unwrap(), 13824e-9 / 2e-3 / 100.0));
    assert_eq!((conv1.weight_bytes, conv1.input_bytes, conv1.output_bytes, conv1.bytes), (448, 768, 1024, 2240));
    assert_eq!((conv1.kernel, conv1.stride, conv1.dilation), (Some([3, 3]), Some([1, 1]), Some([1, 1])));
    let resize = &run.layers[3];
    assert_eq!((resize.kind, resize.kernel, resize.gflops), ("bilinear", None, None), "no window; zero time gives no rate");

    assert_eq!(run.stages.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["stem", "layer1", "layer2", "aspp"]);
    let aspp = &run.stages[3];
    assert_eq!((aspp.layers, aspp.bytes, aspp.gflop, aspp.intensity), (2, 1280 + 4096, 0.0, 0.0));
    assert!(close(aspp.median_ms, 0.5) && close(aspp.share_of_time.unwrap(), 0.125), "{aspp:?}");
    let t = &run.total;
    assert_eq!((t.name.as_str(), t.layers, t.bytes), ("total", 5, 2240 + 3152 + 1280 + 1280 + 4096));
    assert!(close(t.median_ms, 4.0) && close(t.gflop, 15872e-9) && close(t.intensity, 15872.0 / 12048.0), "{t:?}");
    assert!(close(t.gflops.unwrap(), 15872e-9 / 4e-3) && close(t.share_of_time.unwrap(), 1.0));
    // The stages partition the layers.
    let parts: Vec<Summary> = run.stages.clone();
    assert_eq!(parts.iter().map(|s| s.layers).sum::<usize>(), t.layers);
    assert_eq!(parts.iter().map(|s| s.bytes).sum::<u64>(), t.bytes);
    assert!(close(parts.iter().map(|s| s.median_ms).sum(), t.median_ms));
}

#[test]
fn costs_relative_to_the_largest_output_stride() {
    let network = network();
    let fast = RunProfile::new(32, &network, &INPUT, &passes(&[1.0, 1.0, 0.0, 0.0, 0.0]), None).unwrap();
    let slow = RunProfile::new(8, &network, &INPUT, &passes(&[3.0, 3.0, 0.0, 0.0, 0.0]), None).unwrap();
    let mut runs = vec![slow, fast];
    assert_eq!(set_relative(&mut runs), Some(32));
    let (slow, fast) = (runs[0].relative.as_ref().unwrap(), runs[1].relative.as_ref().unwrap());
    assert_eq!((fast.output_stride, fast.gflop, fast.time, fast.bytes), (32, 1.0, Some(1.0), 1.0));
    assert!(close(slow.time.unwrap(), 3.0), "{slow:?}");
    assert_eq!(slow.gflop, 1.0, "the same network: the same FLOPs");
    assert!(runs[0].total.fraction_of_peak.is_none(), "no peak, no share of it");
    assert_eq!(set_relative(&mut []), None);

    let report = ProfileReport {
        arch: "hand".into(),
        head: None,
        input_shape: INPUT,
        warmup_passes: 1,
        timed_passes: 3,
        output_strides: vec![8, 32],
        reference_output_stride: 32,
        bytes_moved: atrous::profile::BYTES_MOVED,
        devices: vec![atrous::profile::DeviceProfile {
            device: atrous::backend::Device::Cpu,
            description: "test CPU".into(),
            timing: "wall",
            peak: None,
            notes: vec![],
            runs,
        }],
    };
    let csv = to_csv(&report);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], CSV_COLUMNS.join(","));
    assert_eq!(lines.len(), 1 + 2 * 5, "one row per (device, output stride, layer)");
    assert!(lines[1].starts_with("cpu,8,conv1,stem,conv,1,4,8,8,3,1,1,"), "{}", lines[1]);
    assert!(lines.iter().all(|l| l.split(',').count() == CSV_COLUMNS.len()), "{csv}");
}

#[test]
fn timed_passes_take_turns_after_a_warm_up_each() {
    let (a, b) = (network(), network());
    let input = Tensor::random(INPUT.to_vec(), 3);
    let calls = std::sync::Mutex::new(Vec::new());
    let record = |done: usize, network: usize, what: &str| calls.lock().unwrap().push((done, network, what.split(',').next().unwrap().to_owned()));
    let passes = time_passes(&Cpu, &[&a, &b], &input, 2, &record).unwrap();
    assert_eq!(passes.len(), 2);
    for p in &passes {
        assert_eq!(p.layer_seconds.len(), 5);
        assert!(p.layer_seconds.iter().all(|times| times.len() == 2), "{p:?}");
        assert_eq!(p.wall_seconds.len(), 2);
        assert!(p.parts.is_none(), "the CPU does not split layers");
    }
    assert!(time_passes(&Cpu, &[&a], &input, 0, &record).is_err(), "no timed pass is refused");
    // The timed passes alternate a, b, a, b after the warm-ups, counted as they start.
    let timed: Vec<(usize, usize, String)> = calls.into_inner().unwrap().into_iter().filter(|c| c.2.starts_with("timed")).collect();
    let expected = [(2, 0, "timed pass 1/2"), (3, 1, "timed pass 1/2"), (4, 0, "timed pass 2/2"), (5, 1, "timed pass 2/2")];
    assert_eq!(timed, expected.map(|(d, n, w)| (d, n, w.to_owned())));
    assert_eq!(WARMUP_PASSES, 1);
}
