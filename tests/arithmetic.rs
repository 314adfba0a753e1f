//! The shape arithmetic of docs/ARCHITECTURE.md §1, checked against values computed by hand, and every
//! invalid combination turned into an error that names its numbers.

use atrous::shape::{conv_output_size, conv_transpose_output_size, effective_kernel, valid_taps};
use atrous::{Conv2dParams, ConvTranspose2dParams, Hw, ShapeError};

#[test]
fn effective_kernel_matches_both_forms() {
    for k in 1..8 {
        for d in 1..20 {
            assert_eq!(effective_kernel(k, d), (k - 1) * (d - 1) + k);
        }
    }
    assert_eq!(effective_kernel(3, 1), 3);
    assert_eq!(effective_kernel(3, 2), 5);
    assert_eq!(effective_kernel(3, 6), 13);
}

#[test]
fn conv_output_sizes_by_hand() {
    assert_eq!(conv_output_size(224, 7, 2, 3, 1), Some(112)); // ResNet stem
    assert_eq!(conv_output_size(112, 3, 2, 1, 1), Some(56)); // max-pool
    assert_eq!(conv_output_size(65, 3, 1, 16, 16), Some(65)); // padding = dilation keeps the size
    assert_eq!(conv_output_size(4, 3, 2, 1, 1), Some(2));
    assert_eq!(conv_output_size(5, 3, 1, 0, 2), Some(1)); // kernel that just fits
    assert_eq!(conv_output_size(4, 3, 1, 0, 2), None); // one short
    assert_eq!(conv_output_size(1, 1, 1, 0, 1), Some(1));
    assert_eq!(conv_output_size(3, 3, 1, 4, 4), Some(3)); // dilation larger than the input
}

#[test]
fn transposed_output_sizes_by_hand() {
    assert_eq!(conv_transpose_output_size(2, 2, 2, 0, 1, 0), Some(4));
    assert_eq!(conv_transpose_output_size(16, 64, 32, 16, 1, 0), Some(512)); // FCN-32s upsampling
    assert_eq!(conv_transpose_output_size(33, 4, 2, 1, 1, 0), Some(66));
    assert_eq!(conv_transpose_output_size(1, 2, 1, 0, 2, 0), Some(3));
    assert_eq!(conv_transpose_output_size(2, 1, 2, 0, 1, 1), Some(4));
    assert_eq!(conv_transpose_output_size(1, 1, 1, 1, 1, 0), None); // 0 − 2 + 1 = −1
}

fn conv(stride: usize, padding: usize, dilation: usize, groups: usize) -> Conv2dParams {
    Conv2dParams { stride: Hw::square(stride), padding: Hw::square(padding), dilation: Hw::square(dilation), groups }
}

#[test]
fn geometry_resolves_non_square_everything() {
    let params = Conv2dParams { stride: Hw::new(1, 2), padding: Hw::new(0, 3), dilation: Hw::new(2, 3), groups: 2 };
    let g = params.geometry(&[3, 4, 9, 11], &[6, 2, 3, 2], Some(&[6])).unwrap();
    assert_eq!(g.output_shape(), [3, 6, 5, 7]); // H: 9 − 5 + 1; W: (11 + 6 − 4)/2 + 1
    assert_eq!(g.flops(), 2 * 3 * 5 * 7 * 6 * 2 * 3 * 2);

    let t = ConvTranspose2dParams { stride: Hw::new(2, 3), padding: Hw::new(1, 0), output_padding: Hw::new(1, 2), dilation: Hw::new(1, 2), groups: 2 };
    let g = t.geometry(&[1, 4, 5, 3], &[4, 3, 4, 2], None).unwrap();
    // H: 4·2 − 2 + 4 + 1 = 11; W: 2·3 − 0 + 3 + 2 = 11
    assert_eq!(g.output_shape(), [1, 6, 11, 11]);
    assert_eq!(g.weight_shape(), Some([4, 3, 4, 2]));
    assert_eq!(g.flops(), 2 * 5 * 3 * 4 * 3 * 4 * 2); // over input positions
}

fn message(e: ShapeError) -> String {
    e.to_string()
}

#[test]
fn every_invalid_combination_is_a_clear_error() {
    let x = [1, 4, 8, 8];
    let w = [8, 4, 3, 3];
    let e = conv(0, 0, 1, 1).geometry(&x, &w, None).unwrap_err();
    assert!(matches!(e, ShapeError::ZeroParameter { name: "stride", .. }), "{e}");
    let e = conv(1, 0, 0, 1).geometry(&x, &w, None).unwrap_err();
    assert!(message(e).contains("dilation must be at least 1"));
    assert_eq!(conv(1, 0, 1, 0).geometry(&x, &w, None).unwrap_err(), ShapeError::ZeroGroups);
    let e = conv(1, 0, 1, 3).geometry(&[1, 6, 8, 8], &[8, 2, 3, 3], None).unwrap_err();
    assert!(message(e.clone()).contains("groups=3 does not divide the output channels (8)"), "{e}");
    let e = conv(1, 0, 1, 1).geometry(&[1, 3, 8, 8], &w, None).unwrap_err();
    assert!(message(e.clone()).contains("expects 4 input channels") && message(e.clone()).contains("has 3"), "{e}");
    let e = conv(1, 0, 3, 1).geometry(&[1, 4, 5, 8], &w, None).unwrap_err();
    let text = message(e);
    assert!(text.contains("input H=5 is too small") && text.contains("effective kernel 7"), "{text}");
    let e = conv(1, 0, 1, 1).geometry(&x, &w, Some(&[7])).unwrap_err();
    assert!(message(e).contains("length 8"));
    let e = conv(1, 0, 1, 1).geometry(&[4, 8, 8], &w, None).unwrap_err();
    assert!(message(e).contains("input must have rank 4"));
    let e = conv(1, 0, 1, 1).geometry(&x, &[8, 4, 3], None).unwrap_err();
    assert!(message(e).contains("weight must have rank 4"));
    let e = conv(1, 0, 1, 1).geometry(&[0, 4, 8, 8], &w, None).unwrap_err();
    assert!(matches!(e, ShapeError::EmptyTensor { tensor: "input", .. }));

    let t = |s: usize, op: usize, d: usize, p: usize| ConvTranspose2dParams {
        stride: Hw::square(s),
        padding: Hw::square(p),
        output_padding: Hw::square(op),
        dilation: Hw::square(d),
        groups: 1,
    };
    let e = t(2, 2, 1, 0).geometry(&x, &[4, 2, 3, 3], None).unwrap_err();
    assert!(message(e).contains("output_padding H=2 must be smaller than max(stride, dilation) = max(2, 1) = 2"));
    assert!(t(1, 1, 2, 0).geometry(&x, &[4, 2, 3, 3], None).is_ok(), "output_padding below the dilation is allowed");
    let e = t(1, 0, 1, 5).geometry(&[1, 4, 1, 1], &[4, 2, 1, 1], None).unwrap_err();
    assert!(matches!(e, ShapeError::TransposedOutputEmpty { value: -9, .. }), "{e}");
    let e = t(1, 0, 1, 0).geometry(&x, &[3, 2, 3, 3], None).unwrap_err();
    assert!(matches!(e, ShapeError::ChannelMismatch { .. }), "{e}");
}

#[test]
fn max_pool_geometry_and_its_refusals() {
    use atrous::Pool2dParams;
    let stem_pool = Pool2dParams { kernel: Hw::square(3), stride: Hw::square(2), padding: Hw::square(1), dilation: Hw::square(1) };
    let g = stem_pool.geometry(&[2, 64, 112, 112]).unwrap();
    assert_eq!(g.output_shape(), [2, 64, 56, 56]);
    assert_eq!((g.flops(), g.weight_shape()), (0, None));
    let e = Pool2dParams { padding: Hw::new(1, 2), ..stem_pool }.geometry(&[1, 1, 9, 9]).unwrap_err();
    assert_eq!(e.to_string(), "max-pool padding W=2 must be at most half the kernel (3/2)");
    let e = Pool2dParams { dilation: Hw::square(4), padding: Hw::square(0), ..stem_pool }.geometry(&[1, 1, 8, 9]).unwrap_err();
    assert!(e.to_string().contains("input H=8 is too small") && e.to_string().contains("effective kernel 9"), "{e}");
}

#[test]
fn valid_taps_by_hand() {
    // 3 taps at dilation 36, padding 36, on 65 rows: output row o reads o − 36, o, o + 36.
    assert_eq!(valid_taps(0, 3, 36, 36, 65), 1..3); // 0 and 36
    assert_eq!(valid_taps(28, 3, 36, 36, 65), 1..3); // 28 and 64
    assert_eq!(valid_taps(29, 3, 36, 36, 65), 1..2); // only 29: 65 is past the end
    assert_eq!(valid_taps(36, 3, 36, 36, 65), 0..2); // 0 and 36
    // A dilation larger than the map: the centre tap alone (DeepLabv3's degenerate case).
    assert_eq!(valid_taps(10, 3, 24, 24, 21), 1..2);
    // All padding: a 1×1 kernel with padding 3 at output 0 reads row −3.
    assert!(valid_taps(0, 1, 1, 3, 2).is_empty());
}

#[test]
fn useful_flops_count_the_taps_that_touch_data() {
    // DeepLabv3's ASPP at 513×513, output stride 8: 65×65 features, rates 12, 24, 36 — 0.77,
    // 0.57 and 0.40 of the nominal work touch the image.
    for (rate, share) in [(12, 0.77), (24, 0.57), (36, 0.40)] {
        let p = Conv2dParams { padding: Hw::square(rate), dilation: Hw::square(rate), ..Default::default() };
        let g = p.geometry(&[1, 2048, 65, 65], &[256, 2048, 3, 3], None).unwrap();
        let measured = g.useful_flops() as f64 / g.flops() as f64;
        assert!((measured - share).abs() < 0.005, "rate {rate}: {measured}");
    }
    // Transposed k4 s2 p1 on 4×4: each input row's 4 taps land in 0..8 but at the borders, where
    // rows 0 and 3 lose one: (3 + 4 + 4 + 3)² of 16² per channel pair.
    let t = ConvTranspose2dParams { stride: Hw::square(2), padding: Hw::square(1), ..Default::default() };
    let g = t.geometry(&[1, 1, 4, 4], &[1, 1, 4, 4], None).unwrap();
    assert_eq!((g.useful_flops(), g.flops()), (2 * 14 * 14, 2 * 16 * 16));
}

#[test]
fn column_segments_by_hand() {
    let conv = |shape: [usize; 4], kernel: usize, stride: usize, rate: usize| {
        let p = Conv2dParams { stride: Hw::square(stride), padding: Hw::square(rate), dilation: Hw::square(rate), ..Default::default() };
        p.geometry(&shape, &[8, shape[1], kernel, kernel], None).unwrap()
    };
    // Rate 36 on 65 columns: 0..29 read taps 1–2, 29..36 tap 1 alone, 36..65 taps 0–1.
    assert_eq!(conv([1, 8, 65, 65], 3, 1, 36).column_segments(32), vec![29, 36, 65]);
    // Rate 12: 0..12 read taps 1–2, 12..53 all three, 53..65 taps 0–1.
    assert_eq!(conv([1, 8, 65, 65], 3, 1, 12).column_segments(32), vec![12, 53, 65]);
    // Rate 24 on 21 columns: every column reads the centre tap alone — nothing to cut.
    assert_eq!(conv([1, 8, 21, 21], 3, 1, 24).column_segments(32), vec![21]);
    // Rate 64, as large as the map: the middle 63 columns read the centre tap alone, the
    // borders one more.
    assert_eq!(conv([1, 8, 65, 65], 3, 1, 64).column_segments(32), vec![1, 64, 65]);
    // Rate 1 on a single row with workgroups of 128 pixels: the one-column borders would each
    // take a workgroup of their own, more work than their one skipped tap saves: merged.
    assert_eq!(conv([1, 8, 1, 65], 3, 1, 1).column_segments(128), vec![65]);
    // Workgroups of 128 pixels at rate 12: the 12-column borders (780 pixels) are worth keeping.
    assert_eq!(conv([1, 8, 65, 65], 3, 1, 12).column_segments(128), vec![12, 53, 65]);
    // A 7-wide kernel at dilation 4, padding 12, on 33 columns: tap t reads ox + 4t − 12, so
    // the taps change at 4, 8, 12 (left) and 21, 25, 29 (right): seven segments of 4, 5, 6, 7, 6,
    // 5 and 4 taps. Each merge adds work (4 columns' extra tap), the cheapest first (the first of
    // equals), until four remain.
    let p = Conv2dParams { padding: Hw::new(0, 12), dilation: Hw::square(4), ..Default::default() };
    let wide = p.geometry(&[1, 8, 64, 33], &[8, 8, 1, 7], None).unwrap();
    assert_eq!(wide.column_segments(1), vec![8, 25, 29, 33]);
    // Transposed and pooling ops are not cut.
    let t = ConvTranspose2dParams { padding: Hw::square(24), dilation: Hw::square(24), ..Default::default() };
    assert_eq!(t.geometry(&[1, 8, 21, 21], &[8, 8, 3, 3], None).unwrap().column_segments(1), vec![21]);
}
