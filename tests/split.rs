//! Ops and networks whose tensors exceed a storage binding run in parts (src/gpu/split.rs):
//! with a forced small binding limit, every op on every kernel agrees with the CPU, and whole
//! networks agree with their unsplit runs.

mod common;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use atrous::backend::{Cpu, CpuReference};
use atrous::compare::difference;
use atrous::gpu::{Gpu, GpuError, GpuOptions, KernelChoice};
use atrous::models::resnet::{resnet, Arch, ResNetConfig};
use atrous::models::segmentation::{segmentation, SegmentationConfig, Upsample};
use atrous::net::{Executor, Forward, Keep, Layer, Network, Op, Source};
use atrous::shape::Pool2dParams;
use atrous::weights::SeededWeights;
use atrous::{conv2d, Conv2dParams, ConvTranspose2dParams, Error, Hw, Tensor};
use common::{gpu, rules};
use proptest::prelude::*;

/// A context whose bindings are capped at `limit` bytes, running every convolution on `kernel`;
/// one per (kernel, limit), shared by the tests of this binary.
fn split_gpu(kernel: KernelChoice, limit: u64) -> &'static Gpu {
    static GPUS: OnceLock<Mutex<HashMap<(KernelChoice, u64), &'static Gpu>>> = OnceLock::new();
    let mut gpus = GPUS.get_or_init(Mutex::default).lock().unwrap();
    gpus.entry((kernel, limit)).or_insert_with(|| {
        let options = rules(GpuOptions { kernel, max_binding_bytes: Some(limit), ..Default::default() });
        Box::leak(Box::new(Gpu::new(&options).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"))))
    })
}

/// The binding limit the tests force for `kernel`: the kernels that pad their weights to
/// 128-channel tiles need a 1-channel block of a 3×3 weight (up to 16 input channels) to fit.
fn limit_for(kernel: KernelChoice) -> u64 {
    if kernel == KernelChoice::Direct { 4096 } else { 256 * 1024 }
}

fn one_layer(op: Op, residual: bool) -> Network {
    let mut layers = Vec::new();
    if residual {
        // Layer 0 is the residual: the input itself, passed through a 1×1 max-pool.
        layers.push(Layer::new("shortcut", Op::MaxPool(Pool2dParams { kernel: Hw::square(1), stride: Hw::square(1), padding: Hw::square(0), dilation: Hw::square(1) }), Source::Input));
    }
    let mut layer = Layer::new("op", op, Source::Input);
    layer.residual = residual.then_some(Source::Layer(0));
    layers.push(layer);
    Network { name: "one op".into(), layers, ..Default::default() }
}

/// Runs `network` on the split context and the CPU and checks they agree; a case whose last
/// layer ran in one part is rejected (the network tests below assert how many layers split).
fn check_split(gpu: &Gpu, network: &Network, input: &Tensor, tolerance: f64) -> Result<(), TestCaseError> {
    let on_gpu = gpu.forward(network, input, Keep::Last).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    let on_cpu = Cpu.forward(network, input, Keep::Last).unwrap();
    // One part can still be a split: a band that skips input rows no output reads.
    let parts = *on_gpu.layer_parts.as_ref().unwrap().last().unwrap();
    prop_assume!(parts > 1, "ran in one part");
    let (g, c) = (output(&on_gpu), output(&on_cpu));
    prop_assert_eq!(g.shape(), c.shape());
    let d = difference(g.data(), c.data());
    prop_assert!(d.within(tolerance), "{} parts: {d}", parts);
    Ok(())
}

fn output(f: &Forward) -> Tensor {
    f.outputs.last().unwrap().clone().unwrap()
}

fn largest_bytes(network: &Network, input: &Tensor) -> u64 {
    let geometries = network.geometries(input.shape()).unwrap();
    geometries.iter().map(|g| g.output_shape().iter().product::<usize>()).chain([input.len()]).max().unwrap() as u64 * 4
}

#[derive(Clone, Debug)]
struct ConvCase {
    kernel: KernelChoice,
    transposed: bool,
    batch: usize,
    c_in: usize,
    c_out: usize,
    groups: usize,
    size: Hw,
    k: Hw,
    stride: Hw,
    padding: Hw,
    dilation: Hw,
    output_padding: Hw,
    residual: bool,
    relu: bool,
    seed: u64,
}

fn conv_case() -> impl Strategy<Value = ConvCase> {
    let kernels = prop::sample::select(KernelChoice::FORCED.to_vec());
    (kernels, any::<bool>(), 1..=2usize, prop::sample::select(vec![1usize, 2, 4]), (1..=4usize, 1..=8usize))
        .prop_flat_map(|(kernel, transposed, batch, groups, (cig, cog))| {
            // Direct runs at a 4 KiB limit on small maps; the tiled families at 256 KiB on larger ones.
            let (side, scale) = if kernel == KernelChoice::Direct { (6..=24usize, 1) } else { (24..=64usize, 4) };
            (
                Just((kernel, transposed, batch, groups, cig * groups, cog * groups * scale)),
                (side.clone(), side),
                (1..=3usize, 1..=3usize),
                (1..=3usize, 1..=2usize),
                (0..=4usize, 0..=3usize),
                (1..=4usize, 1..=3usize),
                (any::<bool>(), any::<bool>(), any::<u64>()),
            )
        })
        .prop_map(|((kernel, transposed, batch, groups, c_in, c_out), (h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw), (residual, relu, seed))| {
            // PyTorch's output_padding must be smaller than the stride or the dilation.
            let output_padding = if transposed { Hw::new((seed as usize % 7) % sh.max(dh), 0) } else { Hw::square(0) };
            ConvCase {
                kernel,
                transposed,
                batch,
                c_in,
                c_out,
                groups,
                size: Hw::new(h, w),
                k: Hw::new(kh, kw),
                stride: Hw::new(sh, sw),
                padding: Hw::new(ph, pw),
                dilation: Hw::new(dh, dw),
                output_padding,
                residual,
                relu,
                seed,
            }
        })
}

impl ConvCase {
    fn network(&self) -> Option<Network> {
        let random = |shape: Vec<usize>, salt: u64| Tensor::random(shape, self.seed ^ salt);
        let op = if self.transposed {
            let params = ConvTranspose2dParams { stride: self.stride, padding: self.padding, output_padding: self.output_padding, dilation: self.dilation, groups: self.groups };
            params.geometry(&[self.batch, self.c_in, self.size.h, self.size.w], &[self.c_in, self.c_out / self.groups, self.k.h, self.k.w], None).ok()?;
            Op::ConvTranspose { params, weight: random(vec![self.c_in, self.c_out / self.groups, self.k.h, self.k.w], 1), bias: Some(random(vec![self.c_out], 2)), crop_to: None }
        } else {
            let params = Conv2dParams { stride: self.stride, padding: self.padding, dilation: self.dilation, groups: self.groups };
            params.geometry(&[self.batch, self.c_in, self.size.h, self.size.w], &[self.c_out, self.c_in / self.groups, self.k.h, self.k.w], None).ok()?;
            Op::Conv { params, weight: random(vec![self.c_out, self.c_in / self.groups, self.k.h, self.k.w], 1), bias: Some(random(vec![self.c_out], 2)), relu: self.relu }
        };
        // A residual needs the output shaped like the input.
        let residual = self.residual && !self.transposed && self.c_in == self.c_out && self.stride == Hw::square(1) && {
            let geometry = one_layer(op.clone(), false).geometries(&[self.batch, self.c_in, self.size.h, self.size.w]).ok()?;
            geometry[0].output_shape()[2..] == [self.size.h, self.size.w]
        };
        Some(one_layer(op, residual))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Forward and transposed convolutions on every kernel, cut into channel blocks and row
    /// bands that cross the dilated halo, agree with the CPU.
    #[test]
    fn split_convolutions_match_the_cpu(case in conv_case()) {
        let Some(network) = case.network() else { return Err(TestCaseError::reject("not a valid convolution")) };
        let input = Tensor::random(vec![case.batch, case.c_in, case.size.h, case.size.w], case.seed ^ 3);
        let limit = limit_for(case.kernel);
        prop_assume!(largest_bytes(&network, &input) > limit, "fits one binding");
        check_split(split_gpu(case.kernel, limit), &network, &input, 1e-4)?;
    }

    /// Max pooling, global average pooling and bilinear resizing, split into blocks of
    /// channels and bands of rows.
    #[test]
    fn split_pooling_and_resizing_match_the_cpu(
        (batch, channels, h, w) in (1..=2usize, 1..=6usize, 8..=40usize, 8..=40usize),
        (k, stride, dilation) in (1..=3usize, 1..=2usize, 1..=2usize),
        which in 0..3usize,
        seed in any::<u64>(),
    ) {
        let op = match which {
            0 => Op::MaxPool(Pool2dParams { kernel: Hw::square(k), stride: Hw::square(stride), padding: Hw::square(k / 2), dilation: Hw::square(dilation) }),
            1 => Op::GlobalAvgPool,
            _ => Op::Resize { size_of: Source::Layer(0) },
        };
        let mut network = one_layer(op, false);
        if which == 2 {
            // Resize the input to the size of a strided copy of itself.
            let shrink = Op::MaxPool(Pool2dParams { kernel: Hw::square(1), stride: Hw::square(stride + 1), padding: Hw::square(0), dilation: Hw::square(1) });
            network.layers.insert(0, Layer::new("size", shrink, Source::Input));
        }
        let input = Tensor::random(vec![batch, channels, h, w], seed);
        // Global pooling and resizing split by whole planes: one must fit.
        let limit = ((h * w * 4) as u64).next_power_of_two().max(2048);
        prop_assume!(largest_bytes(&network, &input) > limit && network.geometries(input.shape()).is_ok());
        check_split(split_gpu(KernelChoice::Direct, limit), &network, &input, 1e-4)?;
    }
}

/// A forward and a transposed convolution run in parts through `conv2d` (the library's op API)
/// as well as through networks.
#[test]
fn the_op_api_splits_too() {
    let small = split_gpu(KernelChoice::Auto, 64 * 1024);
    let x = Tensor::random(vec![2, 8, 61, 67], 1);
    let w = Tensor::random(vec![16, 8, 3, 3], 2);
    let p = Conv2dParams { padding: Hw::square(3), dilation: Hw::square(3), ..Default::default() };
    let on_gpu = conv2d(small, &x, &w, None, &p).unwrap();
    let exact = conv2d(&CpuReference, &x, &w, None, &p).unwrap();
    let d = difference(on_gpu.data(), exact.data());
    assert!(d.within(1e-4), "{d}");
}

#[test]
fn what_cannot_be_split_finely_enough_is_refused_naming_the_limit() {
    // 64 bytes cannot hold one row of one channel of a 5-row 3×3 band over 32 columns.
    let tiny = split_gpu(KernelChoice::Direct, 64);
    let err = conv2d(tiny, &Tensor::zeros(vec![1, 1, 5, 32]), &Tensor::zeros(vec![1, 1, 3, 3]), None, &Conv2dParams::default()).unwrap_err();
    let Error::Gpu(GpuError::TooLarge { limit, limit_name, .. }) = &err else { panic!("expected TooLarge, got {err}") };
    assert_eq!(*limit, 64);
    assert!(limit_name.contains("ATROUS_MAX_BINDING_BYTES"), "{err}");
}

/// Every layer of `network` on `split` against the unsplit shared context: same values, and
/// the layers larger than the limit really split.
fn check_network_splits(network: &Network, input: &Tensor, split: &Gpu, tolerance: f64) {
    let whole = gpu().forward(network, input, Keep::All).unwrap();
    let parted = split.forward(network, input, Keep::All).unwrap();
    let parts = parted.layer_parts.as_ref().unwrap();
    assert!(parts.iter().filter(|&&p| p > 1).count() > network.layers.len() / 4, "too few layers split: {parts:?}");
    for (index, layer) in network.layers.iter().enumerate() {
        let (a, b) = (whole.outputs[index].as_ref().unwrap(), parted.outputs[index].as_ref().unwrap());
        let d = difference(b.data(), a.data());
        assert!(d.within(tolerance), "{}: layer {} in {} parts: {d}", network.name, layer.name, parts[index]);
    }
    let memory = parted.memory.unwrap();
    assert!(memory.activations > 0);
}

#[test]
fn tensors_larger_than_a_buffer_live_in_pieces() {
    // Buffers of at most 96 KiB and bindings of 32 KiB: conv1's 64×29×23 output (171 KB) and
    // the network input's pieces are reached by copies only.
    let options = rules(GpuOptions { kernel: KernelChoice::Direct, max_buffer_bytes: Some(96 * 1024), max_binding_bytes: Some(32 * 1024), ..Default::default() });
    let pieces = Gpu::new(&options).unwrap();
    let network = resnet(&ResNetConfig::new(Arch::ResNet18, 16), &mut SeededWeights::new(5)).unwrap();
    check_network_splits(&network, &Tensor::random(vec![2, 3, 57, 45], 6), &pieces, 1e-3);
    // Six 100×70 planes (168 KB) in two buffers, resized in blocks of planes that fit a binding.
    let planes = 3 * 2;
    let input = Tensor::random(vec![planes * 100 * 70], 7);
    let (from, to) = (Hw::new(100, 70), Hw::new(61, 90));
    let d = difference(&pieces.resize_bilinear(input.data(), planes, from, to).unwrap(), &atrous::cpu::resize_bilinear(input.data(), planes, from, to));
    assert!(d.within(1e-5), "{d}");
}

#[test]
fn a_backbone_split_into_parts_matches_its_unsplit_run() {
    let network = resnet(&ResNetConfig::new(Arch::ResNet18, 8), &mut SeededWeights::new(5)).unwrap();
    // At 97×81 layer4 (512 channels, dilation 4) is 13×11: 292 KB, and one output row's band
    // reads 9 rows of all channels, 202 KB, under the 256 KiB limit.
    let input = Tensor::random(vec![1, 3, 97, 81], 6);
    check_network_splits(&network, &input, split_gpu(KernelChoice::Direct, 256 * 1024), 1e-3);
}

#[test]
fn a_segmentation_model_split_into_parts_matches_its_unsplit_run() {
    for upsample in [Upsample::Bilinear, Upsample::Transposed] {
        let config = SegmentationConfig { upsample, ..SegmentationConfig::new("deeplabv3_resnet18".parse().unwrap(), 8) };
        let network = segmentation(&config, &mut SeededWeights::new(9)).unwrap();
        let input = Tensor::random(vec![2, 3, 41, 37], 10);
        check_network_splits(&network, &input, split_gpu(KernelChoice::Direct, 64 * 1024), 1e-3);
    }
}
