//! The CPU reference: both forms reproduce the hand-computed cases, and the fast form agrees
//! with the f64 direct loop on random shapes, strides, paddings, dilations and groups.

mod common;

use atrous::backend::{Cpu, CpuReference};
use atrous::compare::difference;
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
