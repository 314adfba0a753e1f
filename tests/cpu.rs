//! The CPU reference: both forms reproduce the hand-computed cases, and the fast form agrees
//! with the f64 direct loop on random shapes, strides, paddings, dilations and groups.

mod common;

use atrous::backend::{Cpu, CpuReference};
use atrous::compare::difference;
use atrous::cpu::{self, TapSkipping};
use atrous::shape::effective_kernel;
use atrous::{conv2d, conv_transpose2d, Conv2dParams, Hw, Tensor};
use common::{check_hand_computed_cases, conv_case, transposed_case};
use proptest::prelude::*;

#[test]
fn reference_reproduces_hand_computed_cases() {
    check_hand_computed_cases(&CpuReference);
}

#[test]
fn fast_path_reproduces_hand_computed_cases() {
    check_hand_computed_cases(&Cpu);
}

/// The fast path sums in f32 (SGEMM), the reference in f64: a sum of K products can be off by
/// about K·2⁻²⁴ of the sum of their magnitudes, and an output that cancels to 1% of the tensor's
/// scale magnifies that by up to 100 in relative terms. 1e-5 failed, rarely, at 1.02e-5.
const TOLERANCE: f64 = 1e-4;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn fast_conv2d_matches_reference(case in conv_case()) {
        let fast = conv2d(&Cpu, &case.input, &case.weight, case.bias.as_ref(), &case.params).unwrap();
        let exact = conv2d(&CpuReference, &case.input, &case.weight, case.bias.as_ref(), &case.params).unwrap();
        let d = difference(fast.data(), exact.data());
        prop_assert!(d.within(TOLERANCE), "{d} for {:?}", case.params);
    }

    #[test]
    fn fast_conv_transpose2d_matches_reference(case in transposed_case()) {
        let fast = conv_transpose2d(&Cpu, &case.input, &case.weight, case.bias.as_ref(), &case.params).unwrap();
        let exact = conv_transpose2d(&CpuReference, &case.input, &case.weight, case.bias.as_ref(), &case.params).unwrap();
        let d = difference(fast.data(), exact.data());
        prop_assert!(d.within(TOLERANCE), "{d} for {:?}", case.params);
    }
}

/// The fast path keeps its im2col matrix per thread; while a convolution waits for its parallel
/// parts, rayon runs other work on the same thread — other samples of the batch, other
/// callers' convolutions — which must not find that matrix in use.
#[test]
fn concurrent_convolutions_share_the_thread_pool_safely() {
    let x = Tensor::random(vec![4, 6, 23, 19], 61);
    let w = Tensor::random(vec![8, 3, 3, 3], 62);
    let p = Conv2dParams { padding: Hw::square(2), dilation: Hw::square(2), groups: 2, ..Default::default() };
    let expected = conv2d(&Cpu, &x, &w, None, &p).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..10 {
                    let got = conv2d(&Cpu, &x, &w, None, &p).unwrap();
                    assert_eq!(got.data(), expected.data());
                }
            });
        }
    });
}

/// ASPP-like rates as large as the map or larger, where most taps read padding: the fast path
/// still equals the reference.
#[test]
fn dilations_as_large_as_the_map_match_the_reference() {
    for (size, rate, stride) in [(Hw::new(21, 17), 24, 1), (Hw::new(65, 40), 36, 1), (Hw::new(30, 33), 12, 2), (Hw::new(9, 9), 5, 1)] {
        let x = Tensor::random(vec![2, 16, size.h, size.w], 71);
        let w = Tensor::random(vec![8, 8, 3, 3], 72);
        let b = Tensor::random(vec![8], 73);
        let p = Conv2dParams { stride: Hw::square(stride), padding: Hw::new(rate, rate / 2), dilation: Hw::new(rate, rate / 2 + 1), groups: 2 };
        let fast = conv2d(&Cpu, &x, &w, Some(&b), &p).unwrap();
        let exact = conv2d(&CpuReference, &x, &w, Some(&b), &p).unwrap();
        let d = difference(fast.data(), exact.data());
        assert!(d.within(TOLERANCE), "{size:?} rate {rate}: {d}");
    }
}

/// A convolution whose taps often read only padding: rates up to 3× the input, padding chosen
/// per axis independently of the rate (up to whole output rows of padding alone), strides,
/// groups, non-square and 1×1 inputs, batches.
fn padded_conv_case() -> impl Strategy<Value = common::ConvCase> {
    let axis = (1..=12usize, 1..=4usize, 1..=3usize, 0..=14usize, 1..=14usize);
    let sizes = (1..=3usize, 1..=3usize, 1..=4usize, 1..=4usize, any::<u64>(), any::<bool>());
    (axis.clone(), axis, sizes).prop_map(|((h, kh, sh, ph, dh), (w, kw, sw, pw, dw), (batch, groups, cig, cog, seed, with_bias))| {
        let fit = |n: usize, k, d, p: usize| n.max(effective_kernel(k, d).saturating_sub(2 * p)).max(1);
        let (h, w) = (fit(h, kh, dh, ph), fit(w, kw, dw, pw));
        let (c_in, c_out) = (groups * cig, groups * cog);
        common::ConvCase {
            input: Tensor::random(vec![batch, c_in, h, w], seed),
            weight: Tensor::random(vec![c_out, cig, kh, kw], seed ^ 1),
            bias: with_bias.then(|| Tensor::random(vec![c_out], seed ^ 2)),
            params: Conv2dParams { stride: Hw::new(sh, sw), padding: Hw::new(ph, pw), dilation: Hw::new(dh, dw), groups },
        }
    })
}

/// The fast convolution with the given tap skipping.
fn fast_conv2d(case: &common::ConvCase, skipping: TapSkipping) -> Vec<f32> {
    let g = case.params.geometry(case.input.shape(), case.weight.shape(), case.bias.as_ref().map(Tensor::shape)).unwrap();
    cpu::conv2d(&g, case.input.data(), case.weight.data(), case.bias.as_ref().map(Tensor::data), skipping)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Skipping (forced wherever there is a plan, and by the rule) sums the same products as
    /// computing every tap, and matches the f64 reference.
    #[test]
    fn skipping_padding_taps_matches_every_tap_and_the_reference(case in padded_conv_case()) {
        let exact = conv2d(&CpuReference, &case.input, &case.weight, case.bias.as_ref(), &case.params).unwrap();
        let every_tap = fast_conv2d(&case, TapSkipping::Off);
        for skipping in [TapSkipping::Always, TapSkipping::Auto] {
            let skipped = fast_conv2d(&case, skipping);
            let d = difference(&skipped, exact.data());
            prop_assert!(d.within(TOLERANCE), "{skipping:?} against the reference: {d} for {:?}", case.params);
            let d = difference(&skipped, &every_tap);
            prop_assert!(d.within(TOLERANCE), "{skipping:?} against every tap: {d} for {:?}", case.params);
        }
    }
}

/// Rate 2 on a 1×5 row, taps 1 × [100, 10, 1]: pixel ox reads columns ox − 2, ox, ox + 2, so
/// the first two pixels miss tap 0, the last two tap 2. Planned per pixel, those are three runs
/// of taps; all three are short, so the plan merges them into one region whose taps 0 and 2
/// are half valid (the im2col must write zeros where they read padding). At 1×40, rate 8, the
/// runs stay apart and the regions' taps are exact.
#[test]
fn half_valid_taps_read_zeros_hand_computed() {
    let x = Tensor::new(vec![1, 1, 1, 5], vec![1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    let w = Tensor::new(vec![1, 1, 1, 3], vec![100.0, 10.0, 1.0]).unwrap();
    let params = Conv2dParams { padding: Hw::new(0, 2), dilation: Hw::new(1, 2), ..Default::default() };
    let g = params.geometry(x.shape(), w.shape(), None).unwrap();
    let regions = cpu::tap_regions(&g);
    assert_eq!(regions.len(), 1, "{regions:?}");
    assert_eq!((regions[0].ky.clone(), regions[0].kx.clone()), (0..1, 0..3));
    for skipping in [TapSkipping::Off, TapSkipping::Auto, TapSkipping::Always] {
        let got = cpu::conv2d(&g, x.data(), w.data(), None, skipping);
        assert_eq!(got, [13.0, 24.0, 135.0, 240.0, 350.0], "{skipping:?}");
    }

    // 1×40 ramp, rate 8, padding 8: pixel ox reads ox − 8, ox, ox + 8.
    let x = Tensor::from_fn(vec![1, 1, 1, 40], |i| i[3] as f32 + 1.0);
    let params = Conv2dParams { padding: Hw::new(0, 8), dilation: Hw::new(1, 8), ..Default::default() };
    let g = params.geometry(x.shape(), w.shape(), None).unwrap();
    let kx: Vec<_> = cpu::tap_regions(&g).into_iter().map(|r| (r.cols, r.kx)).collect();
    assert_eq!(kx, [(0..8, 1..3), (8..32, 0..3), (32..40, 0..2)]);
    let value = |ox: usize| -> f32 {
        let at = |ix: isize| if (0..40).contains(&ix) { ix as f32 + 1.0 } else { 0.0 };
        let ox = ox as isize;
        100.0 * at(ox - 8) + 10.0 * at(ox) + at(ox + 8)
    };
    let expected: Vec<f32> = (0..40).map(value).collect();
    for skipping in [TapSkipping::Off, TapSkipping::Auto, TapSkipping::Always] {
        assert_eq!(cpu::conv2d(&g, x.data(), w.data(), None, skipping), expected, "{skipping:?}");
    }
}

/// DeepLabv3's ASPP rates on a 65×65 map take the region path; dilation 1 and the dilations of
/// a ResNet at output stride 8 keep the plain one.
#[test]
fn the_rule_skips_taps_where_that_saves_work() {
    let share = |size: usize, rate: usize| {
        let p = Conv2dParams { padding: Hw::square(rate), dilation: Hw::square(rate), ..Default::default() };
        let g = p.geometry(&[1, 8, size, size], &[8, 8, 3, 3], None).unwrap();
        cpu::planned_share(&g, &cpu::tap_regions(&g))
    };
    for (size, rate) in [(65, 12), (65, 24), (65, 36), (21, 24), (21, 36), (33, 12)] {
        assert!(share(size, rate) <= cpu::SKIP_BELOW, "{size}×{size} rate {rate}: {}", share(size, rate));
    }
    for (size, rate) in [(65, 1), (65, 2), (65, 4), (129, 1), (33, 2), (7, 1), (14, 1)] {
        assert_eq!(share(size, rate), 1.0, "{size}×{size} rate {rate}");
    }
}
