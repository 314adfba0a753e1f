//! The CPU reference: both forms reproduce the hand-computed cases, and the fast form agrees
//! with the f64 direct loop on random shapes, strides, paddings, dilations and groups.

mod common;

use atrous::backend::{Cpu, CpuReference};
use atrous::compare::difference;
use atrous::cpu::{self, TapSkipping};
use atrous::shape::effective_kernel;
use atrous::{conv2d, conv_transpose2d, Conv2dParams, ConvTranspose2dParams, Hw, Tensor};
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
/// per axis, independently of the rate (up to whole output rows of padding alone) or "same",
/// strides, groups, non-square and 1×1 inputs, batches.
fn padded_conv_case() -> impl Strategy<Value = common::ConvCase> {
    // Padding: any, or "same" (d·(k − 1)/2, the map's size kept at stride 1: then the centre
    // column's taps read whole input rows, which the tap-by-tap path reads in place).
    let axis = (1..=12usize, 1..=4usize, 1..=3usize, prop_oneof![0..=14usize, Just(usize::MAX)], 1..=14usize)
        .prop_map(|(n, k, s, p, d)| (n, k, s, if p == usize::MAX { d * (k - 1) / 2 } else { p }, d));
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

/// Tap by tap with 32 input channels per group (K as in real layers): "same" padding, whose
/// centre column is read in place, also at stride 2 down the rows; rates beyond the map; a batch
/// and groups; asymmetric padding; maps large enough for the tap-major weights.
#[test]
fn tap_by_tap_matches_the_reference_on_wide_layers() {
    for (size, rate, stride, padding, groups, batch) in [
        (Hw::new(13, 11), Hw::square(6), Hw::new(2, 1), None, 1, 1),
        (Hw::new(9, 12), Hw::new(12, 5), Hw::square(1), None, 2, 2),
        (Hw::new(10, 10), Hw::square(4), Hw::new(1, 3), Some(Hw::new(6, 2)), 1, 1),
        (Hw::new(7, 21), Hw::new(24, 36), Hw::new(3, 1), None, 1, 1),
        // Over 1024 pixels per tap: the weights are read from a tap-major copy.
        (Hw::new(40, 45), Hw::new(4, 6), Hw::square(1), None, 1, 1),
        (Hw::new(24, 26), Hw::square(3), Hw::square(1), Some(Hw::new(2, 4)), 2, 2),
    ] {
        let padding = padding.unwrap_or(rate);
        let x = Tensor::random(vec![batch, 32 * groups, size.h, size.w], 81);
        let w = Tensor::random(vec![6 * groups, 32, 3, 3], 82);
        let b = Tensor::random(vec![6 * groups], 83);
        let case = common::ConvCase { input: x, weight: w, bias: Some(b), params: Conv2dParams { stride, padding, dilation: rate, groups } };
        let g = case.params.geometry(case.input.shape(), case.weight.shape(), Some(&[6 * groups])).unwrap();
        assert!(!cpu::tap_rectangles(&g).is_empty());
        let exact = conv2d(&CpuReference, &case.input, &case.weight, case.bias.as_ref(), &case.params).unwrap();
        let d = difference(&fast_conv2d(&case, TapSkipping::Always), exact.data());
        assert!(d.within(TOLERANCE), "{d} for {:?}", case.params);
    }
}

/// Rate 2 on a 1×5 row, taps 1 × [100, 10, 1]: pixel ox reads columns ox − 2, ox, ox + 2, so
/// tap 0 reads data for pixels 2..5 only, tap 2 for 0..3 only. Computed by hand:
/// ox 0: 10·1 + 1·3; 1: 10·2 + 4; 2: 100·1 + 10·3 + 5; 3: 100·2 + 10·4; 4: 100·3 + 10·5.
/// At 1×40, rate 8, pixels 0..8 miss tap 0 and 32..40 tap 2.
#[test]
fn taps_valid_for_part_of_the_row_hand_computed() {
    let x = Tensor::new(vec![1, 1, 1, 5], vec![1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    let w = Tensor::new(vec![1, 1, 1, 3], vec![100.0, 10.0, 1.0]).unwrap();
    let params = Conv2dParams { padding: Hw::new(0, 2), dilation: Hw::new(1, 2), ..Default::default() };
    let g = params.geometry(x.shape(), w.shape(), None).unwrap();
    let plan: Vec<_> = cpu::tap_rectangles(&g).into_iter().map(|r| (r.kx, r.rows, r.cols)).collect();
    assert_eq!(plan, [(0, 0..1, 2..5), (1, 0..1, 0..5), (2, 0..1, 0..3)]);
    for skipping in [TapSkipping::Off, TapSkipping::Auto, TapSkipping::Always] {
        let got = cpu::conv2d(&g, x.data(), w.data(), None, skipping);
        assert_eq!(got, [13.0, 24.0, 135.0, 240.0, 350.0], "{skipping:?}");
    }

    // 1×40 ramp, rate 8, padding 8: pixel ox reads ox − 8, ox, ox + 8.
    let x = Tensor::from_fn(vec![1, 1, 1, 40], |i| i[3] as f32 + 1.0);
    let params = Conv2dParams { padding: Hw::new(0, 8), dilation: Hw::new(1, 8), ..Default::default() };
    let g = params.geometry(x.shape(), w.shape(), None).unwrap();
    let plan: Vec<_> = cpu::tap_rectangles(&g).into_iter().map(|r| (r.kx, r.cols)).collect();
    assert_eq!(plan, [(0, 8..40), (1, 0..40), (2, 0..32)]);
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

/// A tap's rectangle is exactly the pixels whose tap reads inside the input, on random shapes;
/// together the rectangles are the useful products.
#[test]
fn tap_rectangles_are_the_pixels_that_read_data() {
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(&padded_conv_case(), |case| {
            let g = case.params.geometry(case.input.shape(), case.weight.shape(), None).unwrap();
            let plan = cpu::tap_rectangles(&g);
            for ky in 0..g.kernel.h {
                for kx in 0..g.kernel.w {
                    let rect = plan.iter().find(|r| (r.ky, r.kx) == (ky, kx));
                    for oy in 0..g.output.h {
                        for ox in 0..g.output.w {
                            let iy = (oy * g.stride.h + ky * g.dilation.h).checked_sub(g.padding.h).filter(|&i| i < g.input.h);
                            let ix = (ox * g.stride.w + kx * g.dilation.w).checked_sub(g.padding.w).filter(|&i| i < g.input.w);
                            let planned = rect.is_some_and(|r| r.rows.contains(&oy) && r.cols.contains(&ox));
                            prop_assert_eq!(planned, iy.is_some() && ix.is_some(), "tap ({}, {}) at ({}, {}) of {:?}", ky, kx, oy, ox, g);
                        }
                    }
                }
            }
            let products: usize = plan.iter().map(|r| r.pixels()).sum();
            let per_product = 2 * g.batch * g.c_out * g.c_in_per_group();
            prop_assert_eq!((products * per_product) as u64, g.useful_flops());
            Ok(())
        })
        .unwrap();
}

/// DeepLabv3's ASPP rates take the tap-by-tap path (at output stride 8 and 16 of a 513×513
/// picture, and 21×21); dilation 1, a ResNet's dilations at those output strides, 1×1
/// convolutions, rates that save little on small maps and small convolutions whose taps each
/// save little keep the plain one.
#[test]
fn the_rule_skips_taps_where_that_saves_work() {
    let skips = |c_in: usize, size: usize, kernel: usize, rate: usize| {
        let p = Conv2dParams { padding: Hw::square(rate * (kernel - 1) / 2), dilation: Hw::square(rate), ..Default::default() };
        let g = p.geometry(&[1, c_in, size, size], &[256, c_in, kernel, kernel], None).unwrap();
        cpu::skips_taps(&g, TapSkipping::Auto)
    };
    for (size, rate) in [(65, 12), (65, 24), (65, 36), (33, 6), (33, 12), (33, 18), (21, 12), (21, 24), (21, 36), (41, 4)] {
        assert!(skips(2048, size, 3, rate), "{size}×{size} rate {rate}");
    }
    for (size, kernel, rate) in [(65, 3, 1), (65, 3, 2), (65, 3, 4), (129, 3, 1), (33, 3, 2), (33, 3, 4), (21, 3, 2), (21, 3, 4), (65, 1, 1), (15, 3, 12)] {
        assert!(!skips(512, size, kernel, rate), "{size}×{size} kernel {kernel} rate {rate}");
    }
    assert!(skips(16, 21, 3, 24), "one tap, saving much");
    assert!(!skips(16, 21, 3, 12), "nine taps, each saving little");
    assert!(!skips(2, 21, 3, 24), "tiny");
}

/// A transposed convolution whose padding crops the output to where few taps land: padding up to
/// the most the output allows, dilations up to 14, strides, output_padding, groups, batches.
fn cropped_transposed_case() -> impl Strategy<Value = common::TransposedCase> {
    let axis = (1..=10usize, 1..=4usize, 1..=3usize, 1..=14usize, any::<prop::sample::Index>(), any::<prop::sample::Index>()).prop_map(
        |(n, k, s, d, padding, output_padding)| {
            let op = output_padding.index(s.max(d));
            // The output, (n − 1)·s − 2p + d·(k − 1) + 1 + op, keeps at least one position.
            let p = padding.index(((n - 1) * s + d * (k - 1) + op) / 2 + 1);
            (n, k, s, d, p, op)
        },
    );
    let sizes = (1..=2usize, 1..=2usize, 1..=4usize, 1..=4usize, any::<u64>(), any::<bool>());
    (axis.clone(), axis, sizes).prop_map(|((h, kh, sh, dh, ph, oph), (w, kw, sw, dw, pw, opw), (batch, groups, cig, cog, seed, with_bias))| {
        common::TransposedCase {
            input: Tensor::random(vec![batch, groups * cig, h, w], seed),
            weight: Tensor::random(vec![groups * cig, cog, kh, kw], seed ^ 1),
            bias: with_bias.then(|| Tensor::random(vec![groups * cog], seed ^ 2)),
            params: ConvTranspose2dParams { stride: Hw::new(sh, sw), padding: Hw::new(ph, pw), output_padding: Hw::new(oph, opw), dilation: Hw::new(dh, dw), groups },
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The transposed convolution tap by tap (forced, and by the rule) sums the same products as
    /// computing every tap, and matches the f64 reference.
    #[test]
    fn transposed_skipping_matches_every_tap_and_the_reference(case in cropped_transposed_case()) {
        let exact = conv_transpose2d(&CpuReference, &case.input, &case.weight, case.bias.as_ref(), &case.params).unwrap();
        let g = case.params.geometry(case.input.shape(), case.weight.shape(), case.bias.as_ref().map(Tensor::shape)).unwrap();
        let fast = |skipping| cpu::conv_transpose2d(&g, case.input.data(), case.weight.data(), case.bias.as_ref().map(Tensor::data), skipping);
        let every_tap = fast(TapSkipping::Off);
        for skipping in [TapSkipping::Always, TapSkipping::Auto] {
            let skipped = fast(skipping);
            let d = difference(&skipped, exact.data());
            prop_assert!(d.within(TOLERANCE), "{skipping:?} against the reference: {d} for {:?}", case.params);
            let d = difference(&skipped, &every_tap);
            prop_assert!(d.within(TOLERANCE), "{skipping:?} against every tap: {d} for {:?}", case.params);
        }
    }
}

/// The rule: DeepLabv3-like transposed shapes (FCN's upsampler, kernel twice the stride) keep
/// the one product; a dilation as large as the map goes tap by tap.
#[test]
fn transposed_taps_are_skipped_where_most_land_outside() {
    let t = |size: usize, kernel: usize, stride: usize, padding: usize, dilation: usize| {
        let p = ConvTranspose2dParams { stride: Hw::square(stride), padding: Hw::square(padding), dilation: Hw::square(dilation), ..Default::default() };
        p.geometry(&[1, 64, size, size], &[64, 64, kernel, kernel], None).unwrap()
    };
    assert!(!cpu::skips_transposed_taps(&t(33, 4, 2, 1, 1), TapSkipping::Auto));
    assert!(!cpu::skips_transposed_taps(&t(65, 3, 1, 1, 1), TapSkipping::Auto));
    // 65×65 at rate 12: 0.77 of the products land inside; on 21×21 at rate 12 0.38, too much on
    // a map that small; at rate 24 0.11.
    assert!(cpu::skips_transposed_taps(&t(65, 3, 1, 12, 12), TapSkipping::Auto));
    assert!(!cpu::skips_transposed_taps(&t(21, 3, 1, 12, 12), TapSkipping::Auto));
    assert!(cpu::skips_transposed_taps(&t(21, 3, 1, 24, 24), TapSkipping::Auto));
    assert!(!cpu::skips_transposed_taps(&t(21, 3, 1, 24, 24), TapSkipping::Off));
}

/// Runs `check` with every packed-GEMM micro-kernel this CPU has (none on CPUs without AVX2,
/// where the fast path is the `gemm` crate's) and every tap skipping.
fn for_each_kernel(mut check: impl FnMut(cpu::GemmKernel, TapSkipping) -> Result<(), TestCaseError>) -> Result<(), TestCaseError> {
    for kernel in cpu::GemmKernel::available() {
        for skipping in [TapSkipping::Off, TapSkipping::Auto, TapSkipping::Always] {
            check(kernel, skipping)?;
        }
    }
    Ok(())
}

/// Convolutions large enough for the implicit GEMM's blocking: maps up to 60×60 (several
/// blocks of pixels, shared out over the threads, partial strips), up to 40 input channels per
/// group with up to 3×3 taps (K past one block of 256), 4 to 40 output channels per group
/// (partial tiles), any stride, padding and dilation per axis (dilations beyond the map), 1×1
/// and non-square inputs, groups and batches.
fn blocked_conv_case() -> impl Strategy<Value = common::ConvCase> {
    let axis = (1..=60usize, 1..=3usize, 1..=3usize, 0..=6usize, 1..=24usize);
    let sizes = (1..=2usize, 1..=2usize, 1..=40usize, 4..=40usize, any::<u64>(), any::<bool>());
    (axis.clone(), axis, sizes).prop_map(|((h, kh, sh, ph, dh), (w, kw, sw, pw, dw), (batch, groups, cig, cog, seed, with_bias))| {
        let fit = |n: usize, k, d, p: usize| n.max(effective_kernel(k, d).saturating_sub(2 * p)).max(1);
        let (h, w) = (fit(h, kh, dh, ph), fit(w, kw, dw, pw));
        common::ConvCase {
            input: Tensor::random(vec![batch, groups * cig, h, w], seed),
            weight: Tensor::random(vec![groups * cog, cig, kh, kw], seed ^ 1),
            bias: with_bias.then(|| Tensor::random(vec![groups * cog], seed ^ 2)),
            params: Conv2dParams { stride: Hw::new(sh, sw), padding: Hw::new(ph, pw), dilation: Hw::new(dh, dw), groups },
        }
    })
}

/// Stride-1 convolutions whose output is as wide as their input (`2·padding = dilation·(k − 1)`
/// across, any padding down), which the micro-kernels pack as shifted runs of each plane under
/// lane masks: widths below and above a strip's 48 pixels (strips across several output
/// rows), odd and even kernels, dilations up to past the map, K past one block of 256.
fn same_width_conv_case() -> impl Strategy<Value = common::ConvCase> {
    let across = (1..=70usize, 1..=5usize, 1..=8usize);
    let down = (1..=40usize, 1..=3usize, 0..=4usize, 1..=12usize);
    let sizes = (1..=2usize, 1..=2usize, 1..=40usize, 4..=40usize, any::<u64>(), any::<bool>());
    (across, down, sizes).prop_map(|((w, kw, dw), (h, kh, ph, dh), (batch, groups, cig, cog, seed, with_bias))| {
        // An even kernel needs an even dilation for the padding to keep the width.
        let dw = if dw * (kw - 1) % 2 == 1 { dw + 1 } else { dw };
        let h = h.max(effective_kernel(kh, dh).saturating_sub(2 * ph)).max(1);
        common::ConvCase {
            input: Tensor::random(vec![batch, groups * cig, h, w], seed),
            weight: Tensor::random(vec![groups * cog, cig, kh, kw], seed ^ 1),
            bias: with_bias.then(|| Tensor::random(vec![groups * cog], seed ^ 2)),
            params: Conv2dParams { stride: Hw::square(1), padding: Hw::new(ph, dw * (kw - 1) / 2), dilation: Hw::new(dh, dw), groups },
        }
    })
}

/// The implicit GEMM on each micro-kernel, with and without leaving out padding taps, against
/// the f64 reference.
fn implicit_gemm_matches_reference(case: &common::ConvCase) -> Result<(), TestCaseError> {
    let g = case.params.geometry(case.input.shape(), case.weight.shape(), case.bias.as_ref().map(Tensor::shape)).unwrap();
    let exact = conv2d(&CpuReference, &case.input, &case.weight, case.bias.as_ref(), &case.params).unwrap();
    for_each_kernel(|kernel, skipping| {
        let fast = cpu::conv2d_on(&g, case.input.data(), case.weight.data(), case.bias.as_ref().map(Tensor::data), skipping, Some(kernel));
        let d = difference(&fast, exact.data());
        prop_assert!(d.within(TOLERANCE), "{kernel:?} {skipping:?}: {d} for {:?}", case.params);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// The implicit GEMM on each micro-kernel, with and without leaving out padding taps,
    /// matches the f64 reference.
    #[test]
    fn implicit_gemm_conv2d_matches_reference(case in prop_oneof![common::gemm_conv_case(), blocked_conv_case()]) {
        implicit_gemm_matches_reference(&case)?;
    }

    /// The same for the convolutions that keep their width, packed as shifted runs of each
    /// plane.
    #[test]
    fn implicit_gemm_same_width_conv2d_matches_reference(case in same_width_conv_case()) {
        implicit_gemm_matches_reference(&case)?;
    }

    /// The transposed convolution phase by phase (strides, dilations, output_padding, groups)
    /// on each micro-kernel matches the f64 reference.
    #[test]
    fn implicit_gemm_conv_transpose2d_matches_reference(case in common::gemm_transposed_case()) {
        let g = case.params.geometry(case.input.shape(), case.weight.shape(), case.bias.as_ref().map(Tensor::shape)).unwrap();
        let exact = conv_transpose2d(&CpuReference, &case.input, &case.weight, case.bias.as_ref(), &case.params).unwrap();
        for_each_kernel(|kernel, skipping| {
            let fast = cpu::conv_transpose2d_on(&g, case.input.data(), case.weight.data(), case.bias.as_ref().map(Tensor::data), skipping, Some(kernel));
            let d = difference(&fast, exact.data());
            prop_assert!(d.within(TOLERANCE), "{kernel:?} {skipping:?}: {d} for {:?}", case.params);
            Ok(())
        })?;
    }
}

/// K longer than two blocks of the widest K block (512 rows where a core has 2 MB of L2, else
/// 256): 130 channels × 3×3 taps = 1170 rows, so that the first, middle and last K blocks all
/// store (onto the bias, onto what they stored before, with the residual and ReLU), at stride 1
/// (shifted packing) and 2, with and without leaving out padding taps, on each micro-kernel.
#[test]
fn implicit_gemm_runs_k_longer_than_two_blocks() {
    let x = Tensor::random(vec![1, 130, 23, 19], 141);
    let w = Tensor::random(vec![20, 130, 3, 3], 142);
    let b = Tensor::random(vec![20], 143);
    for stride in [1, 2] {
        let p = Conv2dParams { stride: Hw::square(stride), padding: Hw::square(2), dilation: Hw::square(2), ..Default::default() };
        let g = p.geometry(x.shape(), w.shape(), Some(b.shape())).unwrap();
        assert!(!cpu::winograd_applies(&g) && cpu::uses_implicit_gemm(&g, TapSkipping::Auto));
        let residual = Tensor::random(g.output_shape().to_vec(), 144);
        let exact = reference_with_epilogue(&conv2d(&CpuReference, &x, &w, Some(&b), &p).unwrap(), &residual, true);
        for_each_kernel(|kernel, skipping| {
            let epilogue = cpu::Epilogue { residual: Some(residual.data()), relu: true };
            let fast = cpu::conv2d_with_epilogue(&g, x.data(), w.data(), Some(b.data()), epilogue, skipping, Some(kernel));
            let d = difference(&fast, &exact);
            prop_assert!(d.within(TOLERANCE), "{kernel:?} {skipping:?} stride {stride}: {d}");
            Ok(())
        })
        .unwrap();
    }
}

/// Winograd's GEMMs (K = the input channels) past two K blocks, forward and transposed, on each
/// micro-kernel: 1100 channels = 512 + 512 + 76 rows (or four blocks of 256 and one of 76), on
/// maps of more tiles than a strip holds (whole strips and a partial one).
#[test]
fn winograd_gemms_run_k_longer_than_two_blocks() {
    let x = Tensor::random(vec![1, 1100, 14, 15], 151);
    let forward = Conv2dParams { padding: Hw::square(1), ..Default::default() };
    let w = Tensor::random(vec![8, 1100, 3, 3], 152);
    let g = forward.geometry(x.shape(), w.shape(), None).unwrap();
    let exact = conv2d(&CpuReference, &x, &w, None, &forward).unwrap();
    let transposed = ConvTranspose2dParams { stride: Hw::square(2), padding: Hw::square(1), ..Default::default() };
    let wt = Tensor::random(vec![1100, 8, 4, 4], 153);
    let gt = transposed.geometry(x.shape(), wt.shape(), None).unwrap();
    let exact_t = conv_transpose2d(&CpuReference, &x, &wt, None, &transposed).unwrap();
    for kernel in cpu::GemmKernel::available() {
        let d = difference(&cpu::conv2d_winograd(&g, x.data(), w.data(), None, cpu::Epilogue::NONE, kernel), exact.data());
        assert!(d.within(TOLERANCE), "{kernel:?} forward: {d}");
        let d = difference(&cpu::conv_transpose2d_winograd(&gt, x.data(), wt.data(), None, kernel), exact_t.data());
        assert!(d.within(TOLERANCE), "{kernel:?} transposed: {d}");
    }
}

/// A Winograd layer wide enough to take its map in two chunks (600 channels: at most 480 tiles a
/// chunk; a 45×47 map's 552 tiles as 288 + 264), on each micro-kernel, with the residual and
/// ReLU.
#[test]
fn winograd_takes_wide_layers_in_chunks() {
    let x = Tensor::random(vec![1, 600, 45, 47], 171);
    let w = Tensor::random(vec![16, 600, 3, 3], 172);
    let b = Tensor::random(vec![16], 173);
    let p = Conv2dParams { padding: Hw::square(1), ..Default::default() };
    let g = p.geometry(x.shape(), w.shape(), Some(b.shape())).unwrap();
    let residual = Tensor::random(g.output_shape().to_vec(), 174);
    let exact = reference_with_epilogue(&conv2d(&CpuReference, &x, &w, Some(&b), &p).unwrap(), &residual, true);
    for kernel in cpu::GemmKernel::available() {
        let epilogue = cpu::Epilogue { residual: Some(residual.data()), relu: true };
        let d = difference(&cpu::conv2d_winograd(&g, x.data(), w.data(), Some(b.data()), epilogue, kernel), &exact);
        assert!(d.within(TOLERANCE), "{kernel:?}: {d}");
    }
}

/// Transposed convolutions as networks use them (k4 s2, k3 s2 with output_padding, stride 3,
/// dilated, 1×1 inputs), wide enough for several tiles, blocks and K blocks per phase.
#[test]
fn implicit_gemm_conv_transpose2d_matches_reference_on_wide_layers() {
    for (size, kernel, stride, padding, output_padding, dilation, cig, cog, groups) in [
        (Hw::new(17, 13), 4, 2, 1, 0, 1, 40, 24, 1),
        (Hw::new(9, 11), 3, 2, 1, 1, 1, 70, 12, 2),
        (Hw::new(7, 6), 3, 3, 0, 2, 2, 16, 9, 1),
        (Hw::new(1, 1), 4, 2, 1, 0, 1, 300, 8, 1),
        (Hw::new(5, 30), 3, 1, 2, 0, 3, 20, 20, 1),
    ] {
        let x = Tensor::random(vec![2, groups * cig, size.h, size.w], 81);
        let w = Tensor::random(vec![groups * cig, cog, kernel, kernel], 82);
        let b = Tensor::random(vec![groups * cog], 83);
        let p = ConvTranspose2dParams {
            stride: Hw::square(stride),
            padding: Hw::square(padding),
            output_padding: Hw::square(output_padding),
            dilation: Hw::square(dilation),
            groups,
        };
        let g = p.geometry(x.shape(), w.shape(), Some(b.shape())).unwrap();
        let exact = conv_transpose2d(&CpuReference, &x, &w, Some(&b), &p).unwrap();
        for kernel in cpu::GemmKernel::available() {
            let fast = cpu::conv_transpose2d_on(&g, x.data(), w.data(), Some(b.data()), TapSkipping::Auto, Some(kernel));
            let d = difference(&fast, exact.data());
            assert!(d.within(TOLERANCE), "{kernel:?}: {d} for {p:?} on {size:?}");
        }
    }
}

/// 1×1 stride-1 convolutions, whose packing copies the input planes' strips as they are and
/// whose weights the kernels read in place: maps smaller than a strip, partial last strips,
/// several blocks, groups, batches, output channels that fill no kernel's last tile (5, 9, 13),
/// K past one block and past two (1100 = 512 + 512 + 76), with the residual and ReLU.
#[test]
fn implicit_gemm_pointwise_matches_reference() {
    for (size, cig, cog, groups, batch) in [
        (Hw::new(1, 1), 3, 5, 1, 1),
        (Hw::new(5, 7), 17, 9, 2, 2),
        (Hw::new(33, 31), 300, 12, 1, 1),
        (Hw::new(29, 29), 8, 40, 3, 2),
        (Hw::new(9, 11), 1100, 13, 1, 1),
    ] {
        let x = Tensor::random(vec![batch, groups * cig, size.h, size.w], 91);
        let w = Tensor::random(vec![groups * cog, cig, 1, 1], 92);
        let b = Tensor::random(vec![groups * cog], 93);
        let p = Conv2dParams { groups, ..Default::default() };
        let g = p.geometry(x.shape(), w.shape(), Some(b.shape())).unwrap();
        let residual = Tensor::random(g.output_shape().to_vec(), 94);
        let exact = reference_with_epilogue(&conv2d(&CpuReference, &x, &w, Some(&b), &p).unwrap(), &residual, true);
        for kernel in cpu::GemmKernel::available() {
            let epilogue = cpu::Epilogue { residual: Some(residual.data()), relu: true };
            let fast = cpu::conv2d_with_epilogue(&g, x.data(), w.data(), Some(b.data()), epilogue, TapSkipping::Auto, Some(kernel));
            let d = difference(&fast, &exact);
            assert!(d.within(TOLERANCE), "{kernel:?}: {d} for {cig}→{cog} ×{groups} on {size:?}");
        }
    }
}

/// `conv2d_onto`, the products added onto the residual in the residual's buffer, against the
/// reference plus the residual and ReLU, and bitwise against the residual in a buffer of its
/// own: 1×1 (weights read in place) and 3×3, strided and padded
/// (a ring of pixels that no tap reads, partial tiles and strips), groups, batches, K past two
/// blocks, on each kernel and tap skipping; and where it falls back to a fresh buffer (the
/// SGEMM path).
#[test]
fn conv2d_onto_adds_onto_the_residual() {
    for (batch, c_in, c_out, size, side, stride, padding, dilation, groups) in [
        (2, 40, 20, Hw::new(13, 11), 1, 1, 0, 1, 1),
        (1, 1100, 13, Hw::new(9, 7), 1, 1, 0, 1, 1),
        (1, 6, 18, Hw::new(7, 9), 1, 2, 2, 1, 2),
        (2, 24, 12, Hw::new(15, 10), 3, 2, 3, 2, 3),
    ] {
        let x = Tensor::random(vec![batch, c_in, size.h, size.w], 161);
        let w = Tensor::random(vec![c_out, c_in / groups, side, side], 162);
        let b = Tensor::random(vec![c_out], 163);
        let p = Conv2dParams { stride: Hw::square(stride), padding: Hw::square(padding), dilation: Hw::square(dilation), groups };
        let g = p.geometry(x.shape(), w.shape(), Some(b.shape())).unwrap();
        assert!(!cpu::winograd_applies(&g) && cpu::uses_implicit_gemm(&g, TapSkipping::Auto));
        let residual = Tensor::random(g.output_shape().to_vec(), 164);
        let exact = reference_with_epilogue(&conv2d(&CpuReference, &x, &w, Some(&b), &p).unwrap(), &residual, true);
        let onto = |skipping, kernel| cpu::conv2d_onto(&g, x.data(), w.data(), Some(b.data()), residual.data().to_vec(), true, skipping, kernel);
        let epilogue = cpu::Epilogue { residual: Some(residual.data()), relu: true };
        for_each_kernel(|kernel, skipping| {
            let fast = onto(skipping, Some(kernel));
            let d = difference(&fast, &exact);
            prop_assert!(d.within(TOLERANCE), "{kernel:?} {skipping:?} {c_in}→{c_out} k{side} s{stride}: {d}");
            // The same bits as with the residual in a buffer of its own (a network keeping every
            // layer's output lends no buffer).
            let apart = cpu::conv2d_with_epilogue(&g, x.data(), w.data(), Some(b.data()), epilogue, skipping, Some(kernel));
            prop_assert!(fast == apart, "{kernel:?} {skipping:?} {c_in}→{c_out} k{side} s{stride}: in place differs");
            Ok(())
        })
        .unwrap();
        let d = difference(&onto(TapSkipping::Auto, None), &exact);
        assert!(d.within(TOLERANCE), "SGEMM {c_in}→{c_out} k{side} s{stride}: {d}");
    }
}

/// Strided convolutions as a ResNet's stem and downsampling layers run them, on maps whose
/// output rows are 1 to 17 pixels wide: the packing's row segments then take every length
/// (whole vectors, a vector and a tail, tails alone) at every place in a strip, and at stride 2
/// each reaches the input row's last float.
#[test]
fn implicit_gemm_strided_packing_matches_reference() {
    for width in 1..=17 {
        for (kernel_size, stride, padding) in [(7, 2, 3), (1, 2, 0), (3, 2, 1), (3, 3, 0)] {
            let input = Hw::new(5, (width - 1) * stride + kernel_size - 2 * padding);
            let x = Tensor::random(vec![1, 3, input.h, input.w], 95);
            let w = Tensor::random(vec![13, 3, kernel_size, kernel_size], 96);
            let p = Conv2dParams { stride: Hw::square(stride), padding: Hw::square(padding), ..Default::default() };
            let g = p.geometry(x.shape(), w.shape(), None).unwrap();
            assert_eq!(g.output.w, width);
            let exact = conv2d(&CpuReference, &x, &w, None, &p).unwrap();
            for kernel in cpu::GemmKernel::available() {
                let fast = cpu::conv2d_on(&g, x.data(), w.data(), None, TapSkipping::Off, Some(kernel));
                let d = difference(&fast, exact.data());
                assert!(d.within(TOLERANCE), "{kernel:?}: {d} for {kernel_size}×{kernel_size} stride {stride} on {input:?}");
            }
        }
    }
}

/// `epilogue(reference)`: the f64 reference's output plus `residual`, then ReLU where `relu`.
fn reference_with_epilogue(exact: &Tensor, residual: &Tensor, relu: bool) -> Vec<f32> {
    exact.data().iter().zip(residual.data()).map(|(&v, &r)| if relu { (v + r).max(0.0) } else { v + r }).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// A network's epilogue (residual, then ReLU) applied as the implicit GEMM stores its sums,
    /// on each micro-kernel and tap skipping, and after the SGEMM path, matches the f64
    /// reference followed by the epilogue.
    #[test]
    fn fused_epilogue_matches_reference(case in prop_oneof![common::gemm_conv_case(), blocked_conv_case()], relu in any::<bool>(), seed in any::<u64>()) {
        let g = case.params.geometry(case.input.shape(), case.weight.shape(), case.bias.as_ref().map(Tensor::shape)).unwrap();
        let exact = conv2d(&CpuReference, &case.input, &case.weight, case.bias.as_ref(), &case.params).unwrap();
        let residual = Tensor::random(exact.shape().to_vec(), seed);
        let expected = reference_with_epilogue(&exact, &residual, relu);
        let epilogue = cpu::Epilogue { residual: Some(residual.data()), relu };
        let fused = |skipping, kernel| cpu::conv2d_with_epilogue(&g, case.input.data(), case.weight.data(), case.bias.as_ref().map(Tensor::data), epilogue, skipping, kernel);
        let d = difference(&fused(TapSkipping::Auto, None), &expected);
        prop_assert!(d.within(TOLERANCE), "SGEMM path: {d} for {:?}", case.params);
        for_each_kernel(|kernel, skipping| {
            let d = difference(&fused(skipping, Some(kernel)), &expected);
            prop_assert!(d.within(TOLERANCE), "{kernel:?} {skipping:?}: {d} for {:?}", case.params);
            Ok(())
        })?;
    }
}

/// Pixels that no tap reads data for (a 1×1 convolution's padding ring, whole blocks of it
/// left without products when padding taps are skipped) still get the bias and the epilogue.
#[test]
fn fused_epilogue_reaches_pixels_without_products() {
    let x = Tensor::random(vec![1, 40, 50, 50], 71);
    let w = Tensor::random(vec![20, 40, 1, 1], 72);
    let b = Tensor::random(vec![20], 73);
    let p = Conv2dParams { padding: Hw::square(6), ..Default::default() };
    let g = p.geometry(x.shape(), w.shape(), Some(b.shape())).unwrap();
    let exact = conv2d(&CpuReference, &x, &w, Some(&b), &p).unwrap();
    let residual = Tensor::random(exact.shape().to_vec(), 74);
    for relu in [false, true] {
        let expected = reference_with_epilogue(&exact, &residual, relu);
        for kernel in cpu::GemmKernel::available() {
            let fast = cpu::conv2d_with_epilogue(&g, x.data(), w.data(), Some(b.data()), cpu::Epilogue { residual: Some(residual.data()), relu }, TapSkipping::Always, Some(kernel));
            let d = difference(&fast, &expected);
            assert!(d.within(TOLERANCE), "{kernel:?} relu {relu}: {d}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The separable pooling folds the same taps as the direct loop: max pooling exactly, the
    /// average up to the order of its f64 sums. Windows up to 4×4 per axis, any stride,
    /// dilation and padding up to half the window, maps from 1 pixel.
    #[test]
    fn separable_pooling_matches_the_direct_loop(
        (kh, kw) in (1..=4usize, 1..=4usize), (sh, sw) in (1..=3usize, 1..=3usize), (dh, dw) in (1..=3usize, 1..=3usize),
        (ph, pw) in (0..=2usize, 0..=2usize), (h, w) in (1..=20usize, 1..=20usize), planes in 1..=3usize, seed in any::<u64>(),
    ) {
        let params = atrous::Pool2dParams { kernel: Hw::new(kh, kw), stride: Hw::new(sh, sw), padding: Hw::new(ph.min(kh / 2), pw.min(kw / 2)), dilation: Hw::new(dh, dw) };
        let (h, w) = (h.max(effective_kernel(kh, dh)), w.max(effective_kernel(kw, dw)));
        let x = Tensor::random(vec![1, planes, h, w], seed);
        let g = params.geometry(x.shape()).unwrap();
        prop_assert_eq!(cpu::max_pool2d(&g, x.data()), cpu::max_pool2d_reference(&g, x.data()));
        let d = difference(&cpu::avg_pool2d(&g, x.data()), &cpu::avg_pool2d_reference(&g, x.data()));
        prop_assert!(d.within(1e-6), "{d} for {params:?} on {h}x{w}");
    }
}

/// 3×3 stride-1 convolutions for Winograd's F(2×2, 3×3), at any channel count (the fast path
/// takes it only on wide layers; these call it directly): maps from 1×1 to 40×40, non-square,
/// paddings up to 6 and dilations up to 12 per axis (phase grids of one output, patches wholly
/// in padding), groups and batches, with a bias and an epilogue.
fn winograd_case() -> impl Strategy<Value = (common::ConvCase, bool, u64)> {
    let axis = (1..=40usize, 0..=6usize, 1..=12usize);
    let sizes = (1..=2usize, 1..=2usize, 1..=24usize, 1..=24usize, any::<u64>(), any::<bool>());
    (axis.clone(), axis, sizes, any::<bool>()).prop_map(|((h, ph, dh), (w, pw, dw), (batch, groups, cig, cog, seed, with_bias), relu)| {
        let fit = |n: usize, d: usize, p: usize| n.max(effective_kernel(3, d).saturating_sub(2 * p)).max(1);
        let (h, w) = (fit(h, dh, ph), fit(w, dw, pw));
        let case = common::ConvCase {
            input: Tensor::random(vec![batch, groups * cig, h, w], seed),
            weight: Tensor::random(vec![groups * cog, cig, 3, 3], seed ^ 1),
            bias: with_bias.then(|| Tensor::random(vec![groups * cog], seed ^ 2)),
            params: Conv2dParams { stride: Hw::square(1), padding: Hw::new(ph, pw), dilation: Hw::new(dh, dw), groups },
        };
        (case, relu, seed ^ 3)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]

    /// Winograd's F(2×2, 3×3), its GEMMs on each micro-kernel, with the fused epilogue,
    /// matches the f64 reference followed by the epilogue.
    #[test]
    fn winograd_matches_reference((case, relu, seed) in winograd_case()) {
        let g = case.params.geometry(case.input.shape(), case.weight.shape(), case.bias.as_ref().map(Tensor::shape)).unwrap();
        let exact = conv2d(&CpuReference, &case.input, &case.weight, case.bias.as_ref(), &case.params).unwrap();
        let residual = Tensor::random(exact.shape().to_vec(), seed);
        let expected = reference_with_epilogue(&exact, &residual, relu);
        for kernel in cpu::GemmKernel::available() {
            let epilogue = cpu::Epilogue { residual: Some(residual.data()), relu };
            let fast = cpu::conv2d_winograd(&g, case.input.data(), case.weight.data(), case.bias.as_ref().map(Tensor::data), epilogue, kernel);
            let d = difference(&fast, &expected);
            prop_assert!(d.within(TOLERANCE), "{kernel:?}: {d} for {:?} on {:?}", case.params, case.input.shape());
        }
    }
}

/// Winograd on hand-computed sums: 3×3 ones over the values 1..=9 (padding 1: each output is
/// the sum of its neighbourhood), and over 1..=25 at dilation 2 (padding 2: the corner reads
/// 1, 3, 11, 13; the centre the nine values at even rows and columns, 117).
#[test]
fn winograd_reproduces_hand_computed_sums() {
    let ones = Tensor::new(vec![1, 1, 3, 3], vec![1.0; 9]).unwrap();
    let cases = [
        (3, 1, 1, vec![12.0, 21.0, 16.0, 27.0, 45.0, 33.0, 24.0, 39.0, 28.0]),
        (5, 2, 2, vec![28.0, 32.0, 48.0, 32.0, 36.0, 48.0, 52.0, 78.0, 52.0, 56.0, 72.0, 78.0, 117.0, 78.0, 84.0, 48.0, 52.0, 78.0, 52.0, 56.0, 68.0, 72.0, 108.0, 72.0, 76.0]),
    ];
    for (size, padding, dilation, want) in cases {
        let x = Tensor::new(vec![1, 1, size, size], (1..=size * size).map(|v| v as f32).collect()).unwrap();
        let p = Conv2dParams { padding: Hw::square(padding), dilation: Hw::square(dilation), ..Default::default() };
        let g = p.geometry(x.shape(), ones.shape(), None).unwrap();
        for kernel in cpu::GemmKernel::available() {
            let got = cpu::conv2d_winograd(&g, x.data(), ones.data(), None, cpu::Epilogue::NONE, kernel);
            assert_eq!(got, want, "{kernel:?}: {size}×{size} at dilation {dilation}");
        }
    }
}

/// The fast path takes Winograd on wide 3×3 stride-1 layers whose tiles are many and mostly
/// hold outputs (and agrees with the reference there), and not on narrow, small, strided,
/// transposed or mostly-padding ones.
#[test]
fn the_fast_path_takes_winograd_on_wide_3x3_layers() {
    let g = |c: usize, size: usize, k: usize, stride: usize, rate: usize| {
        let p = Conv2dParams { stride: Hw::square(stride), padding: Hw::square(rate * (k / 2)), dilation: Hw::square(rate), groups: 1 };
        p.geometry(&[1, c, size, size], &[c, c, k, k], None).unwrap()
    };
    assert!(cpu::winograd_applies(&g(256, 65, 3, 1, 1)));
    assert!(cpu::winograd_applies(&g(512, 65, 3, 1, 4)));
    assert!(cpu::winograd_applies(&g(128, 65, 3, 1, 2)));
    assert!(!cpu::winograd_applies(&g(64, 65, 3, 1, 1)), "narrow");
    assert!(!cpu::winograd_applies(&g(512, 17, 3, 1, 1)), "few tiles");
    assert!(!cpu::winograd_applies(&g(256, 65, 3, 2, 1)), "strided");
    assert!(!cpu::winograd_applies(&g(256, 65, 1, 1, 1)), "1×1");
    assert!(!cpu::winograd_applies(&g(256, 65, 3, 1, 48)), "tiles mostly past the map or over padding");
    let t = ConvTranspose2dParams { padding: Hw::square(1), ..Default::default() }.geometry(&[1, 256, 65, 65], &[256, 256, 3, 3], None).unwrap();
    assert!(!cpu::winograd_applies(&t), "transposed");

    let x = Tensor::random(vec![1, 128, 33, 31], 81);
    let w = Tensor::random(vec![128, 128, 3, 3], 82);
    let b = Tensor::random(vec![128], 83);
    let p = Conv2dParams { padding: Hw::new(1, 2), dilation: Hw::new(1, 2), ..Default::default() };
    assert!(cpu::winograd_applies(&p.geometry(x.shape(), w.shape(), Some(b.shape())).unwrap()));
    let d = difference(conv2d(&Cpu, &x, &w, Some(&b), &p).unwrap().data(), conv2d(&CpuReference, &x, &w, Some(&b), &p).unwrap().data());
    assert!(d.within(TOLERANCE), "{d}");
}

/// A map of more tiles than one chunk (1152): the chunks' patches, GEMMs and outputs each
/// cover their own tiles, the last chunk a partial one.
#[test]
fn winograd_goes_chunk_by_chunk_on_large_maps() {
    let x = Tensor::random(vec![2, 3, 75, 103], 91);
    let w = Tensor::random(vec![5, 3, 3, 3], 92);
    let b = Tensor::random(vec![5], 93);
    for (dilation, padding) in [(Hw::square(1), Hw::square(1)), (Hw::new(2, 3), Hw::new(1, 3))] {
        let p = Conv2dParams { padding, dilation, ..Default::default() };
        let g = p.geometry(x.shape(), w.shape(), Some(b.shape())).unwrap();
        let exact = conv2d(&CpuReference, &x, &w, Some(&b), &p).unwrap();
        let residual = Tensor::random(exact.shape().to_vec(), 94);
        let expected = reference_with_epilogue(&exact, &residual, true);
        for kernel in cpu::GemmKernel::available() {
            let fast = cpu::conv2d_winograd(&g, x.data(), w.data(), Some(b.data()), cpu::Epilogue { residual: Some(residual.data()), relu: true }, kernel);
            let d = difference(&fast, &expected);
            assert!(d.within(TOLERANCE), "{kernel:?} dilation {dilation}: {d}");
        }
    }
}

/// Undilated transposed convolutions whose kernel is twice their stride (any stride 1–3 per
/// axis), for F(3×3, 2×2) per phase: maps from 1×1 to 24×24, non-square, paddings up to the
/// kernel less one (outputs whose taps read only padding), output padding, groups and batches.
fn transposed_winograd_case() -> impl Strategy<Value = common::TransposedCase> {
    let axis = (1..=24usize, 1..=3usize, 0..=5usize, 0..=2usize);
    let sizes = (1..=2usize, 1..=2usize, 1..=20usize, 1..=20usize, any::<u64>(), any::<bool>());
    (axis.clone(), axis, sizes).prop_map(|((h, sh, ph, oph), (w, sw, pw, opw), (batch, groups, cig, cog, seed, with_bias))| {
        let (kh, kw) = (2 * sh, 2 * sw);
        // Valid: padding below the kernel, output padding below the stride, an output left.
        let (ph, pw, oph, opw) = (ph.min(kh - 1), pw.min(kw - 1), oph.min(sh - 1), opw.min(sw - 1));
        let fit = |n: usize, s: usize, k: usize, p: usize| n.max((2 * p + 2).saturating_sub(k).div_ceil(s) + 1);
        let (h, w) = (fit(h, sh, kh, ph), fit(w, sw, kw, pw));
        common::TransposedCase {
            input: Tensor::random(vec![batch, groups * cig, h, w], seed),
            weight: Tensor::random(vec![groups * cig, cog, kh, kw], seed ^ 1),
            bias: with_bias.then(|| Tensor::random(vec![groups * cog], seed ^ 2)),
            params: ConvTranspose2dParams { stride: Hw::new(sh, sw), padding: Hw::new(ph, pw), output_padding: Hw::new(oph, opw), dilation: Hw::square(1), groups },
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]

    /// F(3×3, 2×2) per output phase, its GEMMs on each micro-kernel, matches the f64 reference.
    #[test]
    fn transposed_winograd_matches_reference(case in transposed_winograd_case()) {
        let g = case.params.geometry(case.input.shape(), case.weight.shape(), case.bias.as_ref().map(Tensor::shape)).unwrap();
        let exact = conv_transpose2d(&CpuReference, &case.input, &case.weight, case.bias.as_ref(), &case.params).unwrap();
        for kernel in cpu::GemmKernel::available() {
            let fast = cpu::conv_transpose2d_winograd(&g, case.input.data(), case.weight.data(), case.bias.as_ref().map(Tensor::data), kernel);
            let d = difference(&fast, exact.data());
            prop_assert!(d.within(TOLERANCE), "{kernel:?}: {d} for {:?} on {:?}", case.params, case.input.shape());
        }
    }
}

/// F(3×3, 2×2) on hand-computed sums. A 2×2 kernel at stride 1 scatters each input times the
/// kernel: input 1, 2, 3 in a row, kernel rows (1, 10) and (100, 1000) give the rows 1, 12, 23,
/// 30 and 100 times them. A 4×4 kernel at stride 2, padding 1, from a single 1: the output is
/// the kernel's middle 2×2 (taps 1 and 2 of each axis).
#[test]
fn transposed_winograd_reproduces_hand_computed_sums() {
    let cases = [
        (vec![1, 1, 1, 3], vec![1.0, 2.0, 3.0], vec![1.0, 10.0, 100.0, 1000.0], 1, 0, vec![1.0, 12.0, 23.0, 30.0, 100.0, 1200.0, 2300.0, 3000.0]),
        (vec![1, 1, 1, 1], vec![1.0], (1..=16).map(|v| v as f32).collect(), 2, 1, vec![6.0, 7.0, 10.0, 11.0]),
    ];
    for (shape, x, w, stride, padding, expected) in cases {
        let k = 2 * stride;
        let x = Tensor::new(shape, x).unwrap();
        let w = Tensor::new(vec![1, 1, k, k], w).unwrap();
        let p = ConvTranspose2dParams { stride: Hw::square(stride), padding: Hw::square(padding), ..Default::default() };
        let g = p.geometry(x.shape(), w.shape(), None).unwrap();
        for kernel in cpu::GemmKernel::available() {
            let got = cpu::conv_transpose2d_winograd(&g, x.data(), w.data(), None, kernel);
            assert_eq!(got, expected, "{kernel:?} at stride {stride}");
        }
    }
}

/// The fast transposed path takes F(3×3, 2×2) on wide undilated layers whose kernel is twice
/// the stride (and agrees with the reference there), not on narrow, small, dilated or other
/// kernels.
#[test]
fn the_fast_path_takes_winograd_on_wide_k4_s2_transposed_layers() {
    let g = |c: usize, size: usize, k: usize, stride: usize, dilation: usize| {
        let p = ConvTranspose2dParams { stride: Hw::square(stride), padding: Hw::square(1), dilation: Hw::square(dilation), ..Default::default() };
        p.geometry(&[1, c, size, size], &[c, c, k, k], None).unwrap()
    };
    assert!(cpu::transposed_winograd_applies(&g(256, 33, 4, 2, 1)));
    assert!(cpu::transposed_winograd_applies(&g(128, 65, 4, 2, 1)));
    assert!(cpu::transposed_winograd_applies(&g(256, 33, 2, 1, 1)));
    assert!(!cpu::transposed_winograd_applies(&g(64, 33, 4, 2, 1)), "narrow");
    assert!(!cpu::transposed_winograd_applies(&g(256, 9, 4, 2, 1)), "few tiles");
    assert!(!cpu::transposed_winograd_applies(&g(256, 33, 4, 2, 2)), "dilated");
    assert!(!cpu::transposed_winograd_applies(&g(256, 33, 3, 2, 1)), "kernel not twice the stride");
    assert!(!cpu::winograd_applies(&g(256, 33, 4, 2, 1)), "the forward Winograd's");

    let x = Tensor::random(vec![1, 128, 29, 27], 101);
    let w = Tensor::random(vec![128, 128, 4, 6], 102);
    let b = Tensor::random(vec![128], 103);
    let p = ConvTranspose2dParams { stride: Hw::new(2, 3), padding: Hw::new(1, 2), output_padding: Hw::new(1, 0), ..Default::default() };
    assert!(cpu::transposed_winograd_applies(&p.geometry(x.shape(), w.shape(), Some(b.shape())).unwrap()));
    let d = difference(conv_transpose2d(&Cpu, &x, &w, Some(&b), &p).unwrap().data(), conv_transpose2d(&CpuReference, &x, &w, Some(&b), &p).unwrap().data());
    assert!(d.within(TOLERANCE), "{d}");
}

/// On a layer as wide as a decoder's (256→256 k4 s2 on 33×33, whose sums run over 256 channels
/// and whose transform-domain values are several times the outputs), F(3×3, 2×2) stays within
/// the tolerance to which `--compare` holds a GPU's single op against this path (it measures
/// about 7e-5 against the f64 reference; the phase path 3e-5).
#[test]
fn transposed_winograd_stays_within_the_op_tolerance_on_a_wide_layer() {
    let x = Tensor::random(vec![1, 256, 33, 33], 111);
    let w = Tensor::random(vec![256, 256, 4, 4], 112);
    let b = Tensor::random(vec![256], 113);
    let p = ConvTranspose2dParams { stride: Hw::square(2), padding: Hw::square(1), ..Default::default() };
    let g = p.geometry(x.shape(), w.shape(), Some(b.shape())).unwrap();
    let exact = conv_transpose2d(&CpuReference, &x, &w, Some(&b), &p).unwrap();
    for kernel in cpu::GemmKernel::available() {
        let fast = cpu::conv_transpose2d_winograd(&g, x.data(), w.data(), Some(b.data()), kernel);
        let d = difference(&fast, exact.data());
        assert!(d.within(atrous::compare::OP_TOLERANCE), "{kernel:?}: {d}");
    }
}

/// Weights made ready once give what the per-call path gives, bit for bit, call after call: on
/// wide layers that take Winograd (forward and transposed, whose transformed weights it keeps)
/// and on one that does not (a 1×1 layer, its weights kept as given). Winograd's are made for a
/// convolution at any batch size.
#[test]
fn prepared_weights_give_the_per_call_results() {
    let forward = Conv2dParams { padding: Hw::square(2), dilation: Hw::square(2), ..Default::default() };
    let transposed = ConvTranspose2dParams { stride: Hw::square(2), padding: Hw::square(1), ..Default::default() };
    let cases = [
        (forward.geometry(&[1, 128, 33, 33], &[128, 128, 3, 3], Some(&[128])).unwrap(), true),
        (transposed.geometry(&[1, 128, 24, 24], &[128, 128, 4, 4], Some(&[128])).unwrap(), true),
        (Conv2dParams::default().geometry(&[1, 64, 17, 17], &[32, 64, 1, 1], Some(&[32])).unwrap(), false),
    ];
    for (g, takes_winograd) in cases {
        let w = Tensor::random(g.weight_shape().unwrap().to_vec(), 121);
        let b = Tensor::random(vec![g.c_out], 122);
        assert_eq!(cpu::winograd_applies(&g) || cpu::transposed_winograd_applies(&g), takes_winograd, "{g:?}");
        let prepared = cpu::PreparedConv::new(&g, w.data());
        for seed in [123, 124] {
            let x = Tensor::random(g.input_shape().to_vec(), seed);
            let per_call = atrous::backend::Backend::convolve(&Cpu, &g, x.data(), w.data(), Some(b.data())).unwrap();
            assert_eq!(prepared.convolve(x.data(), Some(b.data())), per_call, "{g:?}");
        }
        if takes_winograd {
            let kernel = cpu::GemmKernel::available()[0];
            let weights = cpu::WinogradWeights::new(&g, w.data(), kernel);
            let g = atrous::shape::WindowGeometry { batch: 2, ..g };
            let x = Tensor::random(g.input_shape().to_vec(), 125);
            let (once, per_call) = match g.kind {
                atrous::shape::ConvKind::Forward => (
                    cpu::conv2d_winograd_prepared(&g, x.data(), &weights, Some(b.data()), cpu::Epilogue::NONE),
                    cpu::conv2d_winograd(&g, x.data(), w.data(), Some(b.data()), cpu::Epilogue::NONE, kernel),
                ),
                _ => (cpu::conv_transpose2d_winograd_prepared(&g, x.data(), &weights, Some(b.data())), cpu::conv_transpose2d_winograd(&g, x.data(), w.data(), Some(b.data()), kernel)),
            };
            assert_eq!(once, per_call, "{g:?} at batch 2");
        }
    }
}

/// Winograd's prepared weights are refused on a convolution they were not made for.
#[test]
#[should_panic(expected = "Winograd weights made for")]
fn winograd_weights_are_refused_on_another_convolution() {
    let made_for = Conv2dParams { padding: Hw::square(1), ..Default::default() }.geometry(&[1, 8, 9, 9], &[8, 8, 3, 3], None).unwrap();
    let other = Conv2dParams { padding: Hw::square(2), dilation: Hw::square(2), ..Default::default() }.geometry(&[1, 8, 9, 9], &[8, 8, 3, 3], None).unwrap();
    let w = Tensor::random(vec![8, 8, 3, 3], 131);
    let kernel = cpu::GemmKernel::available()[0];
    let weights = cpu::WinogradWeights::new(&made_for, w.data(), kernel);
    cpu::conv2d_winograd_prepared(&other, Tensor::random(vec![1, 8, 9, 9], 132).data(), &weights, None, cpu::Epilogue::NONE);
}
