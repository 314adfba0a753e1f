//! The fast CPU convolution with tap skipping off and on, alternating run by run in one process
//! (so that a busy machine slows both alike): median milliseconds of each, and the median of the
//! per-pair ratios.
//!
//!     cargo run --release --example cpu_tap_skipping -- [--repeats N] [--always] [IN:OUT:SIZE:RATE[:STRIDE] ...]
//!
//! Padding is the rate (a 3×3 kernel keeps the map's size). Without cases: DeepLabv3-ResNet50's
//! ASPP branches at 65×65 and 21×21, and dilation-1 layers that must take the plain path.
//! "On" is the rule's choice ([`TapSkipping::Auto`]); `--always` skips on every shape
//! ([`TapSkipping::Always`]), to find where skipping stops paying.

use std::time::Instant;

use atrous::cpu::{conv2d, TapSkipping};
use atrous::{Conv2dParams, Hw, Tensor};

const DEFAULT_CASES: &[&str] = &[
    "2048:256:65:12",
    "2048:256:65:24",
    "2048:256:65:36",
    "2048:256:21:24",
    "2048:256:21:36",
    "256:256:65:1",
    "64:64:129:1",
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let mut repeats = 7;
    let mut skipping = TapSkipping::Auto;
    let mut cases: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--repeats" {
            repeats = args.next().and_then(|v| v.parse().ok()).expect("--repeats N");
        } else if arg == "--always" {
            skipping = TapSkipping::Always;
        } else {
            cases.push(arg);
        }
    }
    if cases.is_empty() {
        cases = DEFAULT_CASES.iter().map(|s| s.to_string()).collect();
    }
    println!("{:>22} {:>7} {:>9} {:>9} {:>7} {:>11}", "in:out:size:rate", "useful", "off ms", "on ms", "off/on", "pair ratio");
    for case in &cases {
        let v: Vec<usize> = case.split(':').map(|p| p.parse().expect("IN:OUT:SIZE:RATE[:STRIDE]")).collect();
        let (c_in, c_out, size, rate) = (v[0], v[1], v[2], v[3]);
        let stride = v.get(4).copied().unwrap_or(1);
        let x = Tensor::random(vec![1, c_in, size, size], 1);
        let w = Tensor::random(vec![c_out, c_in, 3, 3], 2);
        let params = Conv2dParams { stride: Hw::square(stride), padding: Hw::square(rate), dilation: Hw::square(rate), groups: 1 };
        let g = params.geometry(x.shape(), w.shape(), None).unwrap();
        let time = |setting| {
            let start = Instant::now();
            std::hint::black_box(conv2d(&g, x.data(), w.data(), None, setting));
            start.elapsed().as_secs_f64() * 1e3
        };
        // Warm-up: page in both paths' buffers.
        time(TapSkipping::Off);
        time(skipping);
        let (mut off, mut on, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..repeats {
            let (a, b) = if i % 2 == 0 {
                let a = time(TapSkipping::Off);
                (a, time(skipping))
            } else {
                let b = time(skipping);
                (time(TapSkipping::Off), b)
            };
            off.push(a);
            on.push(b);
            ratios.push(a / b);
        }
        let useful = g.useful_flops() as f64 / g.flops() as f64;
        let (off, on) = (median(off), median(on));
        println!("{case:>22} {useful:>7.2} {off:>9.2} {on:>9.2} {:>6.2}× {:>10.2}×", off / on, median(ratios));
    }
}
