//! `atrous bench`: the figures (GFLOP, penalty), the refusal of unresolvable times, the outputs
//! (table, JSON, CSV, PNG) end to end, and the refusal of bad flags with no file left behind.

#[path = "support/cli.rs"]
mod cli;

use std::path::Path;

use cli::{assert_ok, atrous, atrous_with_env, text};

use atrous::bench::{
    self, check_positive_time, fill_penalties, gflop, summarize, BenchConfig, BenchError, BenchReport, Device, ConvOp, Peak, Record, Runner,
    TimingSource, COLUMNS, PEAK_COLUMNS,
};
use atrous::gpu::shaders;
use atrous::Hw;




fn config(ops: Vec<ConvOp>, channels: usize, out_channels: usize, size: Hw, groups: usize, stride: usize) -> BenchConfig {
    BenchConfig { ops, channels, out_channels: Some(out_channels), size, groups, stride, batch: 2, dilations: vec![1, 2, 3], ..Default::default() }
}

#[test]
fn gflop_follows_the_formula() {
    // Forward: 2·N·OH·OW·C_out·(C_in/groups)·k², at every dilation (padding keeps the size).
    for (cin, cout, groups) in [(8, 16, 1), (8, 16, 2), (12, 12, 12)] {
        let cases = config(vec![ConvOp::Conv2d], cin, cout, Hw::new(17, 19), groups, 1).cases().unwrap();
        assert_eq!(cases.len(), 3);
        for case in &cases {
            let g = &case.geometry;
            assert_eq!((g.output.h, g.output.w), (17, 19), "padding = dilation·(k−1)/2 keeps the size");
            assert_eq!(g.padding, Hw::square(case.dilation));
            let expected = 2.0 * (2 * 17 * 19 * cout * (cin / groups) * 9) as f64 / 1e9;
            assert!((gflop(g) - expected).abs() < 1e-15, "{cin}→{cout} groups {groups}: {} vs {expected}", gflop(g));
        }
    }
    // Transposed: counts input positions, 2·N·H·W·C_in·(C_out/groups)·k² — also at stride 2,
    // where the output is larger but no inserted zero is counted.
    for (cin, cout, groups, stride) in [(8, 16, 1, 1), (8, 16, 4, 1), (6, 4, 2, 2)] {
        let cases = config(vec![ConvOp::ConvTranspose2d], cin, cout, Hw::new(9, 11), groups, stride).cases().unwrap();
        for case in &cases {
            let g = &case.geometry;
            if stride == 1 {
                assert_eq!((g.output.h, g.output.w), (9, 11), "the same padding keeps the transposed size");
            } else {
                assert_eq!(g.output.h, 8 * 2 - 2 * case.dilation + 2 * case.dilation + 1);
            }
            let expected = 2.0 * (2 * 9 * 11 * cin * (cout / groups) * 9) as f64 / 1e9;
            assert!((gflop(g) - expected).abs() < 1e-15, "transposed {cin}→{cout} groups {groups}: {} vs {expected}", gflop(g));
        }
    }
}

fn record(op: ConvOp, device: Device, dilation: usize, gflops: f64) -> Record {
    Record {
        op,
        device,
        adapter: "test adapter, with a comma".into(),
        backend: "vulkan".into(),
        timing: "timestamp".into(),
        kernel: "tiled".into(),
        parts: 1,
        batch: 1,
        cin: 8,
        cout: 8,
        h: 17,
        w: 17,
        out_h: 17,
        out_w: 17,
        kernel_size: 3,
        stride: 1,
        padding: dilation,
        dilation,
        groups: 1,
        gflop: 1.0,
        median_ms: 1e3 / gflops,
        min_ms: 1e3 / gflops,
        max_ms: 1e3 / gflops,
        gflops,
        useful_gflop: 1.0,
        useful_gflops: gflops,
        dilation_penalty: None,
        peak_gflops: None,
        fraction_of_peak: None,
        peak_bandwidth_gbs: None,
    }
}

#[test]
fn penalty_is_relative_to_the_dilation_1_row_of_the_same_op_and_device() {
    let mut records = vec![
        record(ConvOp::Conv2d, Device::Gpu, 1, 10.0),
        record(ConvOp::Conv2d, Device::Gpu, 2, 8.0),
        record(ConvOp::Conv2d, Device::Gpu, 4, 2.5),
        record(ConvOp::Conv2d, Device::Cpu, 4, 30.0),
        record(ConvOp::Conv2d, Device::Cpu, 1, 40.0),
        record(ConvOp::ConvTranspose2d, Device::Gpu, 2, 5.0),
        record(ConvOp::ConvTranspose2d, Device::Gpu, 4, 4.0),
    ];
    fill_penalties(&mut records);
    let penalties: Vec<Option<f64>> = records.iter().map(|r| r.dilation_penalty).collect();
    assert_eq!(penalties, [Some(1.0), Some(0.8), Some(0.25), Some(0.75), Some(1.0), None, None]);

    // No dilation-1 row: null in JSON, an empty CSV field.
    let json: serde_json::Value = serde_json::from_str(&bench::to_json(&records)).unwrap();
    assert!(json[5]["dilation_penalty"].is_null());
    assert_eq!(json[1]["dilation_penalty"], 0.8);
    let csv = bench::to_csv(&records);
    let mut lines = csv.lines();
    assert_eq!(lines.next().unwrap(), COLUMNS.join(","));
    let row = lines.nth(5).unwrap();
    assert!(row.starts_with("conv-transpose2d,gpu,\"test adapter, with a comma\",vulkan,timestamp,tiled,"), "{row}");
    assert!(row.ends_with(",5.0,"), "the penalty is the last, empty field: {row}");
}

#[test]
fn a_time_that_is_not_positive_is_an_error() {
    for bad in [0.0, -0.0, -1e-6, f64::NAN, f64::INFINITY] {
        let error = check_positive_time("GPU conv2d at dilation 4", TimingSource::Timestamp, bad).unwrap_err();
        assert!(matches!(error, BenchError::NonPositiveTime { .. }));
        let message = error.to_string();
        assert!(message.contains("GPU conv2d at dilation 4") && message.contains("not positive") && message.contains("timestamp"), "{message}");
    }
    assert_eq!(check_positive_time("x", TimingSource::Wall, 1e-9).unwrap(), 1e-9);
    // One unresolved repeat spoils the summary rather than becoming an infinite GFLOP/s.
    assert!(summarize("x", TimingSource::Timestamp, &[1e-3, 0.0, 2e-3]).is_err());
    assert!(summarize("x", TimingSource::Timestamp, &[1e-3, -5e-4]).is_err());
    assert!(summarize("x", TimingSource::Wall, &[]).is_err());
    let stats = summarize("x", TimingSource::Wall, &[3.0, 1.0, 2.0]).unwrap();
    assert_eq!((stats.median, stats.min, stats.max), (2.0, 1.0, 3.0));
    assert_eq!(summarize("x", TimingSource::Wall, &[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
}

#[test]
fn configurations_are_validated_before_anything_runs() {
    let refused = |c: BenchConfig, words: &[&str]| {
        let message = c.cases().expect_err("refused").to_string();
        for word in words {
            assert!(message.contains(word), "'{message}' lacks '{word}'");
        }
    };
    let base = BenchConfig { channels: 8, size: Hw::square(17), ..Default::default() };
    refused(BenchConfig { dilations: vec![1, 0], ..base.clone() }, &["dilation", "at least 1"]);
    refused(BenchConfig { dilations: vec![1, 2, 2], ..base.clone() }, &["dilation 2", "twice"]);
    refused(BenchConfig { dilations: vec![], ..base.clone() }, &["dilations"]);
    refused(BenchConfig { groups: 3, ..base.clone() }, &["groups=3", "8"]);
    refused(BenchConfig { out_channels: Some(10), groups: 4, ops: vec![ConvOp::ConvTranspose2d], ..base.clone() }, &["groups=4", "10", "output"]);
    refused(BenchConfig { groups: 0, ..base.clone() }, &["groups"]);
    refused(BenchConfig { repeats: 0, ..base.clone() }, &["repeats"]);
    refused(BenchConfig { kernel: 0, ..base.clone() }, &["kernel"]);
    refused(BenchConfig { stride: 0, ..base.clone() }, &["stride"]);
    refused(BenchConfig { channels: 0, ..base.clone() }, &["zero-sized"]);
    // An even kernel pads by ⌊dilation·(k−1)/2⌋; a 1×1 input is then too small for a 4×4 kernel.
    refused(BenchConfig { kernel: 4, dilations: vec![1], size: Hw::square(1), ..base.clone() }, &["dilation 1", "too small"]);
    assert_eq!(base.cases().unwrap().len(), 5);
}

#[test]
fn the_fma_kernel_declares_its_chains() {
    // Each step of a chain is `a = b * r + a` (or `* q +`, the opposite turn).
    let fmas = (shaders::FMA_PEAK.source.matches(" * r + a").count() + shaders::FMA_PEAK.source.matches(" * q + a").count()) as u64;
    assert_eq!(fmas, shaders::FMA_PEAK_CHAINS * shaders::FMA_PEAK_STEPS_PER_TRIP, "the constants must count the shader's FMAs (they set the FLOPs)");
}

#[test]
fn the_plot_draws_without_system_fonts() {
    let mut records = vec![record(ConvOp::Conv2d, Device::Gpu, 1, 10.0), record(ConvOp::Conv2d, Device::Gpu, 2, 7.0), record(ConvOp::Conv2d, Device::Gpu, 16, 3.0)];
    fill_penalties(&mut records);
    let runner = Runner { device: Device::Gpu, name: "test adapter".into(), description: "test adapter".into(), backend: "vulkan".into(), timing: TimingSource::Timestamp };
    let peak = Peak { device: Device::Gpu, gflops: 20.0, timing: TimingSource::Timestamp, method: "test".into(), bandwidth_gbs: 50.0, bandwidth_method: "test".into() };
    let report = BenchReport { config: BenchConfig::default(), kernels: vec![], records, runners: vec![runner], peaks: vec![peak], checks: vec![], tuning: None };
    let image = bench::plot_png(&report).unwrap();
    assert!(image.width() >= 800 && image.height() >= 500);
    let coloured = image.pixels().filter(|p| p.0[2] > 150 && p.0[0] < 80).count();
    assert!(coloured > 500, "the conv2d GPU line is drawn in blue ({coloured} pixels)");
    let table = bench::format_table(&report);
    assert!(table.contains("test adapter") && table.contains("timestamp"), "{table}");
}

fn keys(record: &serde_json::Value) -> Vec<String> {
    record.as_object().expect("a record is an object").keys().cloned().collect()
}

fn sorted(columns: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = columns.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn bench_writes_table_json_csv_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (json, csv, png) = (path("f.json"), path("f.csv"), path("f.png"));
    let stdout = assert_ok(&atrous(&[
        "bench", "--device", "both", "--dilations", "1,2", "--channels", "8", "--size", "17", "--repeats", "3", "--warmup", "1", "--json", &json,
        "--csv", &csv, "--plot", &png,
    ]));
    assert!(stdout.contains("GPU: ") && stdout.contains("CPU: "), "the header names the adapter and the CPU: {stdout}");
    assert!(stdout.contains("timing: timestamp") || stdout.contains("timing: wall"), "{stdout}");
    assert!(stdout.contains("check: GPU vs CPU, conv2d at dilation 1"), "{stdout}");
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("conv2d ")).collect();
    assert_eq!(rows.len(), 4, "{stdout}");

    let records: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let records = records.as_array().expect("a JSON list");
    assert_eq!(records.len(), 4);
    for r in records {
        let mut k = keys(r);
        k.sort();
        assert_eq!(k, sorted(&COLUMNS), "exactly the listed keys");
        assert_eq!((r["op"].as_str(), r["cin"].as_u64(), r["h"].as_u64(), r["out_h"].as_u64()), (Some("conv2d"), Some(8), Some(17), Some(17)));
        assert!(["timestamp", "wall"].contains(&r["timing"].as_str().unwrap()));
        let gflop = 2.0 * (17 * 17 * 8 * 8 * 9) as f64 / 1e9;
        assert!((r["gflop"].as_f64().unwrap() - gflop).abs() < 1e-12);
        let (median, gflops) = (r["median_ms"].as_f64().unwrap(), r["gflops"].as_f64().unwrap());
        assert!(median > 0.0 && r["min_ms"].as_f64().unwrap() <= median && median <= r["max_ms"].as_f64().unwrap());
        assert!((gflops - gflop / (median / 1e3)).abs() <= 1e-9 * gflops);
        assert!(r["dilation_penalty"].as_f64().unwrap() > 0.0);
        assert_eq!(r["padding"], r["dilation"]);
    }
    let devices: Vec<&str> = records.iter().map(|r| r["device"].as_str().unwrap()).collect();
    assert_eq!(devices, ["gpu", "gpu", "cpu", "cpu"]);
    assert_eq!(records[0]["dilation_penalty"], 1.0);

    let csv = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(csv.lines().next().unwrap(), COLUMNS.join(","));
    assert_eq!(csv.lines().count(), 5);

    let image = image::open(&png).expect("the plot decodes as an image").to_rgb8();
    assert!(image.width() >= 800 && image.height() >= 500);
    let non_white = image.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    assert!(non_white > 10_000, "the plot has content ({non_white} non-white pixels)");
}

#[test]
fn bench_peak_adds_the_fraction_of_peak() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("p.json");
    let stdout = assert_ok(&atrous(&[
        "bench", "--op", "conv-transpose2d", "--device", "both", "--dilations", "1,3", "--channels", "4", "--out-channels", "6", "--groups", "2",
        "--size", "9x13", "--repeats", "2", "--warmup", "0", "--peak", "--timing", "wall", "--json", json.to_str().unwrap(),
    ]));
    assert!(stdout.contains("GPU peak FP32 FMA") && stdout.contains("CPU peak FP32 FMA") && stdout.contains("% of peak"), "{stdout}");
    assert!(stdout.contains("GPU memory bandwidth") && stdout.contains("CPU memory bandwidth"), "{stdout}");
    assert!(stdout.contains("timing: wall (wall clock around submit + wait)"), "--timing wall is honoured: {stdout}");
    let records: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(records.len(), 4);
    let mut all: Vec<&str> = COLUMNS.to_vec();
    all.extend(PEAK_COLUMNS);
    for r in &records {
        let mut k = keys(r);
        k.sort();
        assert_eq!(k, sorted(&all));
        assert_eq!((r["op"].as_str(), r["cout"].as_u64(), r["groups"].as_u64(), r["w"].as_u64()), (Some("conv-transpose2d"), Some(6), Some(2), Some(13)));
        assert_eq!(r["timing"], "wall");
        let (gflops, peak, fraction) = (r["gflops"].as_f64().unwrap(), r["peak_gflops"].as_f64().unwrap(), r["fraction_of_peak"].as_f64().unwrap());
        assert!(peak > 0.0 && (fraction - gflops / peak).abs() < 1e-12);
        assert!(r["peak_bandwidth_gbs"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn bench_can_force_the_gpu_kernel() {
    // Four output channels: auto picks the direct kernel; the tiled one can still be forced, and
    // both agree with the CPU (the bench checks the first dilation).
    let run = |kernel: &str| {
        assert_ok(&atrous(&[
            "bench", "--op", "both", "--channels", "4", "--size", "11", "--stride", "2", "--dilations", "1,2", "--repeats", "1", "--warmup", "0",
            "--gpu-kernel", kernel,
        ]))
    };
    for (kernel, forward, transposed) in [
        ("auto", "conv2d.wgsl", "conv_transpose2d.wgsl"),
        ("direct", "conv2d.wgsl", "conv_transpose2d.wgsl"),
        ("tiled", "conv2d_tiled.wgsl", "conv_transpose2d_tiled.wgsl"),
    ] {
        let stdout = run(kernel);
        for (op, shader) in [("conv2d", forward), ("conv-transpose2d", transposed)] {
            let line = format!("GPU kernel for {op} (--gpu-kernel {kernel}): {shader}");
            assert!(stdout.lines().any(|l| l.starts_with(&line)), "lacks '{line}':\n{stdout}");
        }
        assert!(stdout.contains("check: GPU vs CPU, conv-transpose2d at dilation 1"), "{stdout}");
    }
    let out = atrous(&["bench", "--gpu-kernel", "fast"]);
    assert!(!out.status.success() && text(&out).1.contains("direct"), "{:?}", text(&out));
}

#[test]
fn bench_times_every_kernel_and_the_tuned_auto_choice() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let json = dir.path().join("all.json");
    let stdout = assert_ok(&atrous_with_env(
        &[
            "bench", "--channels", "8", "--out-channels", "16", "--size", "9", "--dilations", "1,2", "--repeats", "1", "--warmup", "0",
            "--gpu-kernel", "all", "--json", json.to_str().unwrap(),
        ],
        &[("ATROUS_AUTOTUNE", "1"), ("ATROUS_CACHE_DIR", cache.to_str().unwrap())],
    ));
    assert!(stdout.contains("autotuning: 2 shape classes tuned in "), "{stdout}");
    assert!(cache.join(atrous::gpu::CACHE_FILE).is_file(), "the tuning is cached under ATROUS_CACHE_DIR");
    // A first run says why it is slow before it is; once measured, it does not.
    let again = atrous_with_env(
        &["bench", "--channels", "8", "--out-channels", "16", "--size", "9", "--dilations", "1", "--repeats", "1", "--warmup", "0"],
        &[("ATROUS_AUTOTUNE", "1"), ("ATROUS_CACHE_DIR", cache.to_str().unwrap())],
    );
    assert!(!text(&again).1.contains("nothing measured on this machine yet"), "{:?}", text(&again));
    let fresh = dir.path().join("fresh");
    let first = atrous_with_env(
        &["bench", "--channels", "8", "--out-channels", "16", "--size", "9", "--dilations", "1", "--repeats", "1", "--warmup", "0"],
        &[("ATROUS_AUTOTUNE", "1"), ("ATROUS_CACHE_DIR", fresh.to_str().unwrap())],
    );
    assert!(text(&first).1.contains("autotuning: nothing measured on this machine yet"), "{:?}", text(&first));
    let records: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let forced: Vec<&str> = atrous::gpu::KernelChoice::FORCED.iter().map(|k| k.name()).collect();
    for dilation in [1, 2] {
        let kernels: Vec<&str> = records.iter().filter(|r| r["dilation"] == dilation).map(|r| r["kernel"].as_str().unwrap()).collect();
        // direct, tiled and the GEMMs always apply; lanes where the adapter has subgroups.
        assert!(kernels.len() == forced.len() + 1 || kernels.len() == forced.len(), "{kernels:?}");
        let (auto, rest) = kernels.split_last().unwrap();
        let picked = auto.strip_prefix("auto:").unwrap_or_else(|| panic!("the last record is auto's: {kernels:?}"));
        assert!(rest.contains(&picked), "auto picked one of the kernels timed: {kernels:?}");
        assert!(rest.iter().all(|k| forced.contains(k)) && rest.contains(&"direct") && rest.contains(&"gemm64x64"), "{kernels:?}");
        assert!(stdout.contains(&format!("conv2d  gpu     {auto}")), "the table names the kernel: {stdout}");
    }
    // Every kernel is checked against the CPU.
    assert_eq!(stdout.matches("check: GPU vs CPU, conv2d at dilation 1 (").count(), records.len() / 2, "{stdout}");

    let out = atrous(&["bench", "--gpu-kernel", "nonsense"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "{stderr}");
    for name in ["nonsense", "auto", "all", "direct", "tiled", "lanes", "gemm128x128", "gemm64x64", "gemm32x128", "gemm128x32"] {
        assert!(stderr.contains(name), "the error names '{name}': {stderr}");
    }
}

fn assert_refused(args: &[&str], words: &[&str], dir: &Path) {
    let out = atrous(args);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for word in words {
        assert!(stderr.contains(word), "{args:?}: stderr lacks '{word}':\n{stderr}");
    }
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0, "{args:?} left a file behind");
}

#[test]
fn bench_refuses_bad_flags_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let json = json.to_str().unwrap();
    // Small and quick when they do run; --size and --repeats are given by the cases that test them.
    let small = ["bench", "--channels", "8", "--warmup", "0", "--json", json];
    fn join<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<&'a str> {
        a.iter().chain(b).copied().collect()
    }
    let with = |extra: &[&'static str]| {
        let mut args = join(&small, extra);
        for (flag, value) in [("--size", "17"), ("--repeats", "1")] {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        args
    };
    assert_refused(&with(&["--dilations", "1,0"]), &["dilation", "at least 1"], dir.path());
    assert_refused(&with(&["--dilations", "1,4,4"]), &["dilation 4 is listed twice"], dir.path());
    assert_refused(&with(&["--groups", "3"]), &["groups=3", "does not divide"], dir.path());
    assert_refused(&with(&["--repeats", "0", "--size", "17"]), &["repeats"], dir.path());
    assert_refused(&with(&["--stride", "0"]), &["stride"], dir.path());
    assert_refused(&with(&["--size", "1", "--kernel", "4", "--dilations", "1"]), &["too small"], dir.path());
    assert_refused(&with(&["--plot", "/nonexistent-dir/p.png"]), &["--plot", "/nonexistent-dir", "does not exist"], dir.path());
    let jpg = dir.path().join("p.jpg");
    assert_refused(&join(&small, &["--size", "17", "--plot", jpg.to_str().unwrap()]), &["--plot", ".png"], dir.path());
    let out = atrous(&with(&["--dilations", "1,x"]));
    assert!(!out.status.success() && text(&out).1.contains("1,x"), "{:?}", text(&out));
    let out = atrous(&with(&["--op", "conv3d"]));
    assert!(!out.status.success() && text(&out).1.contains("conv-transpose2d"), "{:?}", text(&out));
}

#[test]
fn a_disagreement_names_its_numbers() {
    let difference = atrous::compare::difference(&[1.0, 2.5], &[1.0, 2.0]);
    let error = BenchError::Mismatch { op: ConvOp::ConvTranspose2d, dilation: 4, shape: [1, 8, 17, 17], difference, tolerance: bench::AGREEMENT_TOLERANCE };
    let message = error.to_string();
    for word in ["conv-transpose2d", "dilation 4", "[1, 8, 17, 17]", "max abs error 5.000e-1", "max relative error 2.500e-1", "1e-3"] {
        assert!(message.contains(word), "'{message}' lacks '{word}'");
    }
}
