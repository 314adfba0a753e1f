//! `atrous profile` end to end: on both devices with a head (the JSON's sums, shares and
//! relative costs consistent, the CSV's rows, both PNGs), on the CPU without a peak (per-layer
//! table rows), and the refusal of bad flags with no file left behind. The GPU run opens the
//! adapter like every command: without one it fails, it does not skip.

#[path = "support/cli.rs"]
mod cli;

use serde_json::Value;

use cli::{assert_ok, assert_refused, atrous};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1e-9)
}

fn f(value: &Value) -> f64 {
    value.as_f64().unwrap_or_else(|| panic!("not a number: {value}"))
}

/// Every consistency the report promises, for one run of one device.
fn check_run(run: &Value, peak: Option<f64>) {
    let layers = run["layers"].as_array().unwrap();
    let total = &run["total"];
    let sum = |key: &str| layers.iter().map(|l| f(&l[key])).sum::<f64>();
    for key in ["gflop", "useful_gflop", "median_ms", "bytes"] {
        assert!(close(sum(key), f(&total[key])), "{key}: layers sum to {} but the total is {}", sum(key), total[key]);
    }
    assert_eq!(total["layers"].as_u64().unwrap() as usize, layers.len());
    let stages = run["stages"].as_array().unwrap();
    for key in ["gflop", "median_ms", "bytes"] {
        let staged: f64 = stages.iter().map(|s| f(&s[key])).sum();
        assert!(close(staged, f(&total[key])), "{key}: stages sum to {staged}, the total is {}", total[key]);
    }
    assert_eq!(stages.iter().map(|s| s["layers"].as_u64().unwrap()).sum::<u64>() as usize, layers.len());
    for l in layers {
        let name = l["name"].as_str().unwrap();
        assert!(f(&l["useful_gflop"]) <= f(&l["gflop"]), "{name}: useful above nominal");
        assert!(f(&l["median_ms"]) >= f(&l["min_ms"]) && f(&l["median_ms"]) <= f(&l["max_ms"]), "{name}");
        let bytes = f(&l["bytes"]);
        assert_eq!(bytes, f(&l["weight_bytes"]) + f(&l["input_bytes"]) + f(&l["output_bytes"]), "{name}");
        assert!(bytes > 0.0, "{name} moves something");
        assert!(close(f(&l["intensity"]), f(&l["gflop"]) * 1e9 / bytes), "{name}: intensity is FLOP per byte");
        if let (Some(gflops), Some(peak)) = (l["gflops"].as_f64(), peak) {
            assert!(close(gflops, f(&l["gflop"]) / (f(&l["median_ms"]) / 1e3)), "{name}");
            assert!(close(f(&l["fraction_of_peak"]), gflops / peak), "{name}");
        }
        if peak.is_none() {
            assert!(l["fraction_of_peak"].is_null(), "{name}: no peak measured");
        }
    }
    assert_eq!(run["output_shape"], layers.last().unwrap()["output_shape"]);
}

#[test]
fn profile_on_both_devices_with_a_head_writes_consistent_reports_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let (json, csv, plots) = (dir.path().join("p.json"), dir.path().join("p.csv"), dir.path().join("plots"));
    let out = atrous(&[
        "profile",
        "--arch",
        "resnet18",
        "--head",
        "deeplabv3",
        "--output-strides",
        "32,16,8",
        "--size",
        "65",
        "--device",
        "both",
        "--repeats",
        "1",
        "--json",
        json.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--plot",
        plots.to_str().unwrap(),
    ]);
    let stdout = assert_ok(&out);
    for expected in ["GPU, output stride 32", "CPU, output stride 8", "GPU, every output stride", "peak FP32 FMA", "aspp", "layer4", "total"] {
        assert!(stdout.contains(expected), "the table lacks '{expected}':\n{stdout}");
    }

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["arch"], "resnet18");
    assert_eq!(report["head"], "deeplabv3");
    assert_eq!(report["input_shape"], serde_json::json!([1, 3, 65, 65]));
    assert_eq!(report["reference_output_stride"], 32);
    assert!(report["bytes_moved"].as_str().unwrap().contains("f32"));
    let devices = report["devices"].as_array().unwrap();
    assert_eq!(devices.iter().map(|d| d["device"].as_str().unwrap()).collect::<Vec<_>>(), ["gpu", "cpu"]);
    let mut rows = 0;
    for device in devices {
        let peak = &device["peak"];
        let peak_gflops = f(&peak["gflops"]);
        assert!(peak_gflops > 0.0 && f(&peak["bandwidth_gbs"]) > 0.0, "{peak}");
        assert!(close(f(&peak["ridge_intensity"]), peak_gflops / f(&peak["bandwidth_gbs"])));
        let runs = device["runs"].as_array().unwrap();
        assert_eq!(runs.iter().map(|r| r["output_stride"].as_u64().unwrap()).collect::<Vec<_>>(), [32, 16, 8]);
        for run in runs {
            check_run(run, Some(peak_gflops));
            rows += run["layers"].as_array().unwrap().len();
            let stages: Vec<&str> = run["stages"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
            assert_eq!(stages, ["stem", "layer1", "layer2", "layer3", "layer4", "aspp", "classifier", "upsample"]);
        }
        let relative = |i: usize, key: &str| f(&runs[i]["relative"][key]);
        assert_eq!((relative(0, "gflop"), relative(0, "time"), relative(0, "bytes")), (1.0, 1.0, 1.0), "output stride 32 is the reference");
        assert!(relative(1, "gflop") > 1.0 && relative(2, "gflop") > relative(1, "gflop"), "deeper output strides cost more FLOPs");
        assert!(relative(2, "useful_gflop") > relative(1, "useful_gflop"));
        // layer4 at output stride 8 dilates by 4 (its first block by 2).
        let dilation = |i: usize, name: &str| runs[i]["layers"].as_array().unwrap().iter().find(|l| l["name"] == name).unwrap()["dilation"].clone();
        assert_eq!(dilation(2, "layer4.1.conv2"), serde_json::json!([4, 4]));
        assert_eq!(dilation(0, "layer4.1.conv2"), serde_json::json!([1, 1]));
    }
    assert_eq!(devices[0]["timing"], "timestamp");

    let csv = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + rows, "a header and one row per (device, output stride, layer)");
    assert!(lines[0].starts_with("device,output_stride,layer,stage,"), "{}", lines[0]);
    assert!(lines[1].starts_with("gpu,32,conv1,stem,conv,"), "{}", lines[1]);

    for name in ["stages.png", "roofline.png"] {
        let image = image::open(plots.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((image.width(), image.height()), (1800, 680), "{name}: one 900-pixel panel per device");
    }
}

#[test]
fn profile_on_the_cpu_without_a_peak_prints_every_layer() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("p.json");
    let out = atrous(&[
        "profile",
        "--arch",
        "resnet18",
        "--output-strides",
        "8,16",
        "--size",
        "33x41",
        "--batch",
        "2",
        "--device",
        "cpu",
        "--no-peak",
        "--layers",
        "--repeats",
        "2",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = assert_ok(&out);
    assert!(stdout.contains("relative to output stride 16"), "{stdout}");
    assert!(!stdout.contains("% of peak"), "no peak, no share of it:\n{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("layer4.1.conv2 ")), "--layers prints each layer:\n{stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["input_shape"], serde_json::json!([2, 3, 33, 41]));
    assert_eq!((report["head"].clone(), report["timed_passes"].clone()), (Value::Null, serde_json::json!(2)));
    let device = &report["devices"][0];
    assert_eq!((device["device"].as_str(), device["timing"].as_str()), (Some("cpu"), Some("wall")));
    assert!(device["peak"].is_null());
    let runs = device["runs"].as_array().unwrap();
    for run in runs {
        check_run(run, None);
        assert_eq!(run["layers"].as_array().unwrap().len(), 21, "conv1, maxpool, 3 downsamples and 16 block convs");
    }
    assert_eq!(runs[1]["relative"]["gflop"], 1.0, "16 is the largest output stride given");
    assert!(f(&runs[0]["relative"]["gflop"]) > 1.0);
    assert_eq!(runs[0]["output_shape"], serde_json::json!([2, 512, 5, 6]));
}

#[test]
fn profile_refuses_bad_flags_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("p.json");
    let plots = dir.path().join("plots");
    let a_file = dir.path().join("a-file");
    std::fs::write(&a_file, "x").unwrap();
    // Small and on the CPU unless `extra` says otherwise, writing JSON and plots.
    let with_outputs = |extra: &[&str]| {
        let mut args = vec!["profile", "--json", json.to_str().unwrap(), "--plot", plots.to_str().unwrap()];
        args.extend_from_slice(extra);
        for (flag, value) in [("--arch", "resnet18"), ("--size", "33"), ("--device", "cpu")] {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        atrous(&args)
    };
    assert_refused(&with_outputs(&["--output-strides", "32,12"]), &["--output-strides", "12", "4, 8, 16, 32"]);
    assert_refused(&with_outputs(&["--output-strides", "16,16"]), &["--output-strides", "16 is listed twice"]);
    assert_refused(&with_outputs(&["--output-strides", "16,x"]), &["--output-strides", "comma-separated"]);
    assert_refused(&with_outputs(&["--repeats", "0"]), &["--repeats", "at least 1"]);
    assert_refused(&with_outputs(&["--batch", "0"]), &["--batch", "at least 1"]);
    assert_refused(&with_outputs(&["--head", "unet"]), &["--head", "deeplabv3"]);
    assert_refused(&with_outputs(&["--arch", "resnet20"]), &["--arch", "resnet50"]);
    assert_refused(&with_outputs(&["--device", "tpu"]), &["--device", "both"]);
    assert_refused(&with_outputs(&["--size", "0x5"]), &["--size", "at least 1"]);
    assert_refused(&with_outputs(&["--csv", dir.path().join("no/such/folder/p.csv").to_str().unwrap()]), &["--csv", "does not exist"]);
    assert_refused(&with_outputs(&["--csv", dir.path().to_str().unwrap()]), &["--csv", "names no file"]);
    let out = atrous(&["profile", "--arch", "resnet18", "--size", "33", "--device", "cpu", "--plot", a_file.to_str().unwrap()]);
    assert_refused(&out, &["--plot", "not a folder"]);
    let out = atrous(&["profile", "--arch", "resnet18", "--size", "33", "--device", "cpu", "--plot", dir.path().join("no/plots").to_str().unwrap()]);
    assert_refused(&out, &["--plot", "does not exist"]);
    assert!(!json.exists() && !plots.exists(), "a refused run writes nothing");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, [std::ffi::OsString::from("a-file")], "no partial files either");
}
