//! The backbone commands end to end: `rf`, `backbone` (table, JSON, image input, features file,
//! comparison) and `demo`, and their refusals of bad input.

#[path = "support/cli.rs"]
mod cli;

use std::path::Path;

use cli::{assert_ok, assert_refused, atrous, atrous_with_env, text};

use atrous::npy::read_npy;




#[test]
fn rf_prints_the_receptive_field_arithmetic() {
    let stdout = assert_ok(&atrous(&["rf", "--arch", "resnet50", "--output-stride", "8", "--size", "513"]));
    assert!(stdout.contains("output stride 8"), "{stdout}");
    // layer4.2.conv2 is a 3×3 at dilation 4: effective kernel 9, feature map 65×65.
    let line = stdout.lines().find(|l| l.starts_with("layer4.2.conv2")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[1..], ["3x3", "9x9", "1", "4", "8", "427x427", "65x65"], "{line}");
}

#[test]
fn backbone_compares_every_layer_and_writes_features() {
    let dir = tempfile::tempdir().unwrap();
    let features = dir.path().join("f.npy");
    let out = atrous(&["backbone", "--arch", "resnet18", "--output-stride", "8", "--size", "33x41", "--batch", "2", "--compare", "--output", features.to_str().unwrap()]);
    let stdout = assert_ok(&out);
    assert!(stdout.contains("verdict: GPU and CPU agree"), "{stdout}");
    assert!(stdout.lines().filter(|l| l.starts_with("layer")).count() > 10);
    assert_eq!(read_npy(&features).unwrap().shape(), [2, 512, 5, 6]);
}

#[test]
fn backbone_json_report_has_every_layer() {
    let out = atrous(&["backbone", "--arch", "resnet18", "--output-stride", "16", "--size", "65", "--device", "cpu", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&assert_ok(&out)).expect("stdout is JSON");
    assert_eq!(report["output_shape"], serde_json::json!([1, 512, 5, 5]));
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 21, "conv1, maxpool, 3 downsamples and 16 block convs");
    let last = layers.last().unwrap();
    assert_eq!(last["name"], "layer4.1.conv2");
    assert_eq!(last["dilation"], serde_json::json!([2, 2]));
    assert_eq!(last["jump"], serde_json::json!([16, 16]));
}

#[test]
fn a_forced_binding_limit_splits_layers_and_says_so() {
    // 200 KB: conv1's 64×33×33 output (279 KB) and layer4's 512 channels at 9×9 (166 KB, but its
    // 9.4 MB weights) run in parts; the JSON and the table say how many.
    let args = ["backbone", "--arch", "resnet18", "--output-stride", "8", "--size", "65", "--compare", "--json"];
    let out = atrous_with_env(&args, &[("ATROUS_AUTOTUNE", "0"), ("ATROUS_MAX_BINDING_BYTES", "200000")]);
    let report: serde_json::Value = serde_json::from_str(&assert_ok(&out)).expect("stdout is JSON");
    assert_eq!(report["agree"], true);
    let layers = report["layers"].as_array().unwrap();
    let parts = |name: &str| layers.iter().find(|l| l["name"] == name).unwrap()["parts"].as_u64().unwrap();
    assert!(parts("conv1") > 1 && parts("layer4.1.conv2") > 1, "{layers:?}");
    assert!(layers.iter().all(|l| l["parts"].as_u64().unwrap() >= 1));

    let table = assert_ok(&atrous_with_env(&args[..args.len() - 1], &[("ATROUS_AUTOTUNE", "0"), ("ATROUS_MAX_BINDING_BYTES", "200000")]));
    assert!(table.lines().any(|l| l.starts_with("layer ") && l.contains("parts")), "{table}");

    let bad = atrous_with_env(&args, &[("ATROUS_AUTOTUNE", "0"), ("ATROUS_MAX_BINDING_BYTES", "lots")]);
    assert_refused(&bad, &["ATROUS_MAX_BINDING_BYTES=lots", "byte count"]);
}

#[test]
fn backbone_reads_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("photo.png");
    atrous::imaging::save_png(&atrous::imaging::synthetic_image(40, 50), &photo).unwrap();
    let out = atrous(&["backbone", "--arch", "resnet18", "--output-stride", "32", "--image", photo.to_str().unwrap(), "--size", "33x65"]);
    let stdout = assert_ok(&out);
    assert!(stdout.contains("[1, 3, 33, 65]"), "the image is resized to --size: {stdout}");
}

#[test]
fn backbone_refuses_bad_input() {
    assert_refused(&atrous(&["backbone", "--output-stride", "12", "--size", "65"]), &["output stride 12", "4, 8, 16 and 32"]);
    assert_refused(&atrous(&["backbone", "--multi-grid", "1,2", "--size", "65"]), &["multi-grid", "3"]);
    assert_refused(&atrous(&["backbone", "--arch", "resnet18"]), &["--input", "--image", "--size"]);
    assert_refused(&atrous(&["backbone", "--size", "65", "--weights", "/nonexistent/w.safetensors"]), &["/nonexistent/w.safetensors"]);
    assert_refused(&atrous(&["backbone", "--image", "/nonexistent/p.jpg"]), &["/nonexistent/p.jpg"]);
    // A four-channel input does not fit the stem, which is named.
    let dir = tempfile::tempdir().unwrap();
    let rgba = dir.path().join("x.npy");
    atrous::npy::write_npy(&rgba, &atrous::Tensor::random(vec![1, 4, 33, 33], 1)).unwrap();
    assert_refused(&atrous(&["backbone", "--input", rgba.to_str().unwrap()]), &["layer conv1", "expects 3 input channels", "has 4"]);
    let out = atrous(&["backbone", "--arch", "resnet7", "--size", "65"]);
    assert!(!out.status.success() && text(&out).1.contains("resnet50"), "{:?}", text(&out));
}

#[test]
fn demo_runs_on_built_in_data() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = assert_ok(&atrous(&["demo", "--size", "65", "--out-dir", dir.path().to_str().unwrap()]));
    assert!(stdout.contains("verdict: GPU and CPU agree"), "{stdout}");
    for file in ["input.png", "features_os16.png", "features_os8.png", "features_os16.npy", "features_os8.npy"] {
        assert!(Path::new(&dir.path().join(file)).is_file(), "demo wrote no {file}");
    }
    assert_eq!(read_npy(dir.path().join("features_os8.npy")).unwrap().shape(), [1, 2048, 9, 9]);
}
