//! `atrous segment` end to end: the comparison table, the logits, the paletted mask and the
//! overlay; photo input, JSON, transposed upsampling and the CPU device; state dicts (classes
//! read from the file, refusals naming tensors, the "not used" note); and refusals of bad
//! arguments that leave no output file behind.

#[path = "support/cli.rs"]
mod cli;

use std::path::{Path, PathBuf};

use cli::{assert_ok, assert_refused, atrous, text};

use atrous::backend::Cpu;
use atrous::compare::difference;
use atrous::imaging::{argmax_classes, voc_palette};
use atrous::models::segmentation::{segmentation, SegmentationConfig};
use atrous::net::{Executor, Keep, Network};
use atrous::npy::{read_npy, write_npy};
use atrous::weights::{write_safetensors, SafetensorsWeights, SeededWeights};
use atrous::Tensor;

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The network the binary builds for these options, to know its layer names.
fn network(model: &str, output_stride: usize) -> Network {
    let config = SegmentationConfig::new(model.parse().unwrap(), output_stride);
    segmentation(&config, &mut SeededWeights::new(0)).unwrap()
}

/// Decodes a PNG with the `png` crate, untransformed: (info, pixels).
fn decode_png(path: &Path) -> (png::ColorType, png::BitDepth, u32, u32, Vec<u8>, Vec<u8>) {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    pixels.truncate(frame.buffer_size());
    let info = reader.info();
    let palette = info.palette.as_ref().map(|p| p.to_vec()).unwrap_or_default();
    (info.color_type, info.bit_depth, info.width, info.height, palette, pixels)
}

#[test]
fn segment_compares_and_writes_logits_mask_and_overlay() {
    let dir = tempfile::tempdir().unwrap();
    let (logits_path, mask_path, overlay_path) = (dir.path().join("L.npy"), dir.path().join("M.png"), dir.path().join("O.png"));
    let out = atrous(&[
        "segment", "--model", "deeplabv3_resnet18", "--size", "41x57", "--compare",
        "--output", path_str(&logits_path), "--mask", path_str(&mask_path), "--overlay", path_str(&overlay_path),
    ]);
    let stdout = assert_ok(&out);
    // Every layer has a row, the head's weight-free ones included.
    for layer in &network("deeplabv3_resnet18", 8).layers {
        assert!(stdout.lines().any(|l| l.split_whitespace().next() == Some(layer.name.as_str())), "no row for {}:\n{stdout}", layer.name);
    }
    assert!(stdout.lines().any(|l| l.starts_with("verdict:") && l.contains("agree")), "{stdout}");
    assert!(stdout.contains("arg-max class differs between GPU and CPU at"), "{stdout}");

    let logits = read_npy(&logits_path).unwrap();
    assert_eq!(logits.shape(), [1, 21, 41, 57], "21 VOC classes at the input's size");

    // The mask is VOC's format: 8-bit indexed, pixel value = class, VOC's palette.
    let (color, depth, width, height, palette, pixels) = decode_png(&mask_path);
    assert_eq!((color, depth, width, height), (png::ColorType::Indexed, png::BitDepth::Eight, 57, 41));
    assert_eq!(palette[..9], [0, 0, 0, 128, 0, 0, 0, 128, 0], "background black, 1 maroon, 2 green");
    assert_eq!(palette.len(), 3 * 256);
    let classes: Vec<u8> = argmax_classes(&logits).into_iter().map(|c| c as u8).collect();
    assert_eq!(pixels, classes, "the mask is the arg-max of the written logits");

    let overlay = image::open(&overlay_path).unwrap();
    assert_eq!((overlay.color(), overlay.width(), overlay.height()), (image::ColorType::Rgb8, 57, 41));
}

#[test]
fn segment_overlays_a_photo_at_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let (photo_path, mask_path, overlay_path) = (dir.path().join("photo.png"), dir.path().join("M.png"), dir.path().join("O.png"));
    let photo = atrous::imaging::synthetic_image(30, 44);
    photo.save(&photo_path).unwrap();
    let out = atrous(&[
        "segment", "--model", "fcn_resnet18", "--image", path_str(&photo_path), "--device", "cpu",
        "--mask", path_str(&mask_path), "--overlay", path_str(&overlay_path),
    ]);
    assert_ok(&out);
    let overlay = image::open(&overlay_path).unwrap().into_rgb8();
    assert_eq!(overlay.dimensions(), (44, 30), "the photo's size");
    // Background pixels show the photo; the others are half photo, half the class's colour
    // (rounded up).
    let (.., pixels) = decode_png(&mask_path);
    let palette = voc_palette();
    for (i, (o, p)) in overlay.pixels().zip(photo.pixels()).enumerate() {
        let class = pixels[i] as usize;
        let expected = if class == 0 { p.0 } else { std::array::from_fn(|k| (p.0[k] as u16 + palette[class][k] as u16).div_ceil(2) as u8) };
        assert_eq!(o.0, expected, "pixel {i} of class {class}");
    }
}

#[test]
fn segment_json_reports_the_head() {
    let out = atrous(&["segment", "--model", "deeplabv3_resnet18", "--size", "41x57", "--compare", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&assert_ok(&out)).expect("stdout is JSON");
    assert_eq!(report["model"], "deeplabv3_resnet18");
    assert_eq!(report["upsample"], "bilinear");
    assert_eq!(report["classes"], 21);
    let share = report["argmax_disagreement"].as_f64().expect("a share with --compare");
    assert!((0.0..0.001).contains(&share), "{share}");
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), network("deeplabv3_resnet18", 8).layers.len());
    let ops: Vec<&str> = layers.iter().map(|l| l["op"].as_str().unwrap()).collect();
    for op in ["concat", "bilinear", "global_avg_pool", "conv", "max_pool"] {
        assert!(ops.contains(&op), "no {op} layer in {ops:?}");
    }
    assert_eq!(layers.last().unwrap()["name"], "upsample");
    assert_eq!(layers.last().unwrap()["output_shape"], serde_json::json!([1, 21, 41, 57]));
}

#[test]
fn segment_upsamples_by_transposed_convolution_on_the_cpu() {
    let out = atrous(&["segment", "--model", "fcn_resnet18", "--size", "41x57", "--output-stride", "16", "--upsample", "transposed", "--device", "cpu", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&assert_ok(&out)).expect("stdout is JSON");
    assert_eq!(report["upsample"], "transposed");
    assert!(report["argmax_disagreement"].is_null(), "no comparison without --compare");
    assert!(report["device"].as_str().unwrap().starts_with("CPU"), "{}", report["device"]);
    let last = report["layers"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["name"].as_str(), last["op"].as_str()), (Some("upsample"), Some("conv_transpose")));
    // Kernel 2f, stride f, padding f/2 with f = 16; the output cut to the input's size.
    assert_eq!(last["kernel"], serde_json::json!([32, 32]));
    assert_eq!(last["stride"], serde_json::json!([16, 16]));
    assert_eq!(last["padding"], serde_json::json!([8, 8]));
    assert_eq!(last["output_shape"], serde_json::json!([1, 21, 41, 57]));
}

/// A torchvision-layout deeplabv3_resnet18 state dict with `classes` classes.
fn state_dict(classes: usize) -> Vec<(String, Tensor)> {
    let config = SegmentationConfig { classes, ..SegmentationConfig::new("deeplabv3_resnet18".parse().unwrap(), 8) };
    let mut weights = SeededWeights::new(9);
    segmentation(&config, &mut weights).unwrap();
    weights.generated().to_vec()
}

fn write(dir: &Path, name: &str, tensors: &[(String, Tensor)]) -> PathBuf {
    let path = dir.join(name);
    write_safetensors(&path, tensors).unwrap();
    path
}

#[test]
fn segment_reads_the_classes_and_weights_from_a_state_dict() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = state_dict(5);
    let weights = write(dir.path(), "five.safetensors", &tensors);
    let input = Tensor::random(vec![1, 3, 41, 57], 4);
    let input_path = dir.path().join("x.npy");
    write_npy(&input_path, &input).unwrap();
    let logits_path = dir.path().join("L.npy");
    let out = atrous(&[
        "segment", "--model", "deeplabv3_resnet18", "--weights", path_str(&weights), "--input", path_str(&input_path),
        "--device", "cpu", "--output", path_str(&logits_path),
    ]);
    assert_ok(&out);
    assert!(!text(&out).1.contains("not used"), "every tensor is used: {}", text(&out).1);
    // 5 channels, from the file's classifier.4.weight; and the file's weights, not seeded ones:
    // the logits are the library's forward pass of the network built from the file.
    let logits = read_npy(&logits_path).unwrap();
    assert_eq!(logits.shape(), [1, 5, 41, 57]);
    let config = SegmentationConfig { classes: 5, ..SegmentationConfig::new("deeplabv3_resnet18".parse().unwrap(), 8) };
    let network = segmentation(&config, &mut SafetensorsWeights::open(&weights).unwrap()).unwrap();
    let expected = Cpu.forward(&network, &input, Keep::Last).unwrap().outputs.pop().unwrap().unwrap();
    let d = difference(logits.data(), expected.data());
    assert!(d.within(1e-5), "{d}");
}

#[test]
fn segment_refuses_state_dicts_that_do_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = state_dict(5);
    let run = |weights: &Path| atrous(&["segment", "--model", "deeplabv3_resnet18", "--weights", path_str(weights), "--size", "41x57", "--device", "cpu"]);

    let five = write(dir.path(), "five.safetensors", &tensors);
    let out = atrous(&["segment", "--model", "deeplabv3_resnet18", "--weights", path_str(&five), "--classes", "7", "--size", "41x57", "--device", "cpu"]);
    assert_refused(&out, &["--classes 7", "5 classes", "classifier.4.weight"]);

    let without: Vec<_> = tensors.iter().filter(|(n, _)| n != "classifier.0.project.0.weight").cloned().collect();
    assert_eq!(without.len(), tensors.len() - 1);
    assert_refused(&run(&write(dir.path(), "without.safetensors", &without)), &["classifier.0.project.0.weight"]);

    // torchvision's auxiliary head is expected and ignored; any other leftover is reported.
    let mut with_aux = tensors.clone();
    with_aux.push(("aux_classifier.0.weight".into(), Tensor::random(vec![64, 256, 3, 3], 1)));
    let out = run(&write(dir.path(), "aux.safetensors", &with_aux));
    assert_ok(&out);
    assert!(!text(&out).1.contains("not used"), "{}", text(&out).1);
    let mut with_extra = tensors.clone();
    with_extra.push(("classifier.9.weight".into(), Tensor::random(vec![5, 5, 1, 1], 1)));
    let out = run(&write(dir.path(), "extra.safetensors", &with_extra));
    assert_ok(&out);
    let stderr = text(&out).1;
    assert!(stderr.contains("not used") && stderr.contains("classifier.9.weight"), "{stderr}");
}

/// `--aux` runs torchvision's auxiliary head from the file and writes its logits; a file
/// without it is refused naming the first tensor it lacks.
#[test]
fn segment_runs_the_auxiliary_head_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let config = SegmentationConfig { classes: 5, aux: true, ..SegmentationConfig::new("deeplabv3_resnet18".parse().unwrap(), 8) };
    let mut seeded = SeededWeights::new(11);
    segmentation(&config, &mut seeded).unwrap();
    let with_aux = write(dir.path(), "aux.safetensors", seeded.generated());
    let aux_path = dir.path().join("A.npy");
    let out = atrous(&["segment", "--model", "deeplabv3_resnet18", "--weights", path_str(&with_aux), "--size", "41x57", "--aux", path_str(&aux_path)]);
    assert_ok(&out);
    assert!(!text(&out).1.contains("not used"), "the auxiliary head uses aux_classifier.*: {}", text(&out).1);
    assert_eq!(read_npy(&aux_path).unwrap().shape(), [1, 5, 41, 57]);

    let without = write(dir.path(), "plain.safetensors", &state_dict(5));
    let aux_path = dir.path().join("B.npy");
    let out = atrous(&["segment", "--model", "deeplabv3_resnet18", "--weights", path_str(&without), "--size", "41x57", "--aux", path_str(&aux_path)]);
    assert_refused(&out, &["aux_classifier.0.weight"]);
    assert!(!aux_path.exists());
}

#[test]
fn segment_refuses_bad_arguments_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (logits, mask) = (dir.path().join("L.npy"), dir.path().join("M.png"));
    let run = |args: &[&str]| {
        let mut all = vec!["segment", "--size", "41x57", "--output", path_str(&logits), "--mask", path_str(&mask)];
        all.extend(args);
        let out = atrous(&all);
        assert!(!logits.exists() && !mask.exists(), "a refused run left an output behind: {args:?}");
        out
    };
    // An unknown model is a usage error: status 1 like every refusal (2 means "GPU and CPU disagree").
    assert_refused(&run(&["--model", "deeplab_resnet50"]), &["deeplab_resnet50", "deeplabv3_resnetNN", "fcn_resnetNN"]);
    // An unreadable weights file is named, with its cause said once.
    let out = run(&["--weights", "/nonexistent/w.safetensors"]);
    assert_refused(&out, &["/nonexistent/w.safetensors"]);
    assert_eq!(text(&out).1.matches("(os error 2)").count(), 1, "{}", text(&out).1);
    // A paletted PNG holds 256 classes: refused before anything runs, so no logits are left either.
    assert_refused(&run(&["--model", "fcn_resnet18", "--classes", "300"]), &["300", "256", "--mask"]);

    assert_refused(&run(&["--model", "fcn_resnet18", "--rates", "1,2,3"]), &["--rates", "ASPP", "fcn_resnet18"]);
    assert_refused(&run(&["--model", "deeplabv3_resnet18", "--batch", "2"]), &["batch", "2"]);
    assert_refused(&run(&["--model", "deeplabv3_resnet18", "--output-stride", "12"]), &["output stride 12", "4, 8, 16 and 32"]);
    assert_refused(&run(&["--model", "deeplabv3_resnet18", "--rates", "0,6,12"]), &["ASPP", "positive", "[0, 6, 12]"]);
}
