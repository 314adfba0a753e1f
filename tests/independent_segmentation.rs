//! `atrous segment --weights W.safetensors` against an independent implementation of the same
//! models: torchvision's DeepLabv3 and FCN (backbone, heads, upsampling) written out as ONNX
//! graphs by `tests/independent/ort_segmentation.py` from torchvision's definitions, not from
//! atrous's builder, and run by ONNX Runtime. deeplabv3_resnet50 and fcn_resnet50 at output
//! strides 8 and 16 with bilinear upsampling, and at 8 with the FCN transposed upsampling, on
//! the GPU (and two of them on the CPU), logits within 1e-3 relative.
//!
//! The state dicts are complete torchvision-layout files with seeded values, `aux_classifier.*`
//! (which a model without the auxiliary head must ignore) and int64 `num_batches_tracked`
//! counters. Needs `python3` with `pip install onnxruntime onnx numpy`; without them the test
//! fails when `CI` is set and is skipped, loudly, otherwise.

#[path = "independent/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use atrous::models::segmentation::{segmentation, Head, Model, SegmentationConfig};
use atrous::models::resnet::Arch;
use atrous::npy::{read_npy, write_npy};
use atrous::weights::{write_safetensors, SeededWeights};
use atrous::Tensor;
use support::{add_num_batches_tracked, json_string, onnx_runtime_available, python, Verdicts};

const TOLERANCE: f64 = 1e-3;
/// Non-square and odd, so every stride-2 layer rounds and the upsampling is by a non-integer factor.
const INPUT: [usize; 4] = [1, 3, 57, 73];

/// A complete torchvision-layout state dict of `model` with 21 classes, and the auxiliary head
/// torchvision's segmentation models carry (`aux_classifier.*`, on layer3's 1024 channels).
fn state_dict(model: Model, seed: u64) -> Vec<(String, Tensor)> {
    let mut seeded = SeededWeights::new(seed);
    segmentation(&SegmentationConfig::new(model, 8), &mut seeded).unwrap();
    let mut tensors = seeded.generated().to_vec();
    tensors.push(("aux_classifier.0.weight".into(), Tensor::random(vec![256, 1024, 3, 3], seed ^ 0xA0)));
    tensors.push(("aux_classifier.4.weight".into(), Tensor::random(vec![21, 256, 1, 1], seed ^ 0xA4)));
    tensors
}

struct Job {
    model: Model,
    output_stride: usize,
    upsample: &'static str,
    dir: PathBuf,
    weights: PathBuf,
    input: PathBuf,
}

impl Job {
    fn label(&self) -> String {
        format!("{} OS {} {}", self.model, self.output_stride, self.upsample)
    }

    fn write_json(&self) -> PathBuf {
        std::fs::create_dir_all(&self.dir).unwrap();
        let json = self.dir.join("job.json");
        let text = format!(
            "{{\"model\": \"{}\", \"output_stride\": {}, \"upsample\": \"{}\", \"weights\": {}, \"input\": {}, \"output\": {}}}",
            self.model,
            self.output_stride,
            self.upsample,
            json_string(&self.weights),
            json_string(&self.input),
            json_string(&self.dir.join("ort.npy"))
        );
        std::fs::write(&json, text).unwrap();
        json
    }

    /// Runs `atrous segment` on `device`; returns the logits or why there are none.
    fn run_cli(&self, device: &str) -> Result<Tensor, String> {
        let output = self.dir.join(format!("{device}.npy"));
        let run = Command::new(env!("CARGO_BIN_EXE_atrous"))
            .env("ATROUS_AUTOTUNE", "0")
            .args(["segment", "--model", &self.model.to_string(), "--output-stride", &self.output_stride.to_string()])
            .args(["--upsample", self.upsample, "--device", device])
            .args([Path::new("--weights"), &self.weights, Path::new("--input"), &self.input, Path::new("--output"), &output])
            .output()
            .expect("run the atrous binary");
        let stderr = String::from_utf8_lossy(&run.stderr);
        if !run.status.success() {
            return Err(format!("exited with {}:\n{}{stderr}", run.status, String::from_utf8_lossy(&run.stdout)));
        }
        if stderr.contains("not used") {
            return Err(format!("a complete state dict left tensors unused:\n{stderr}"));
        }
        read_npy(&output).map_err(|e| e.to_string())
    }
}

#[test]
fn segment_matches_onnx_runtime_deeplabv3_and_fcn_at_output_strides_8_and_16() {
    if !onnx_runtime_available("tests/independent_segmentation.rs") {
        return;
    }
    let start = Instant::now();
    let temp = tempfile::TempDir::new().unwrap();
    let input = temp.path().join("x.npy");
    write_npy(&input, &Tensor::random(INPUT.to_vec(), 9)).unwrap();
    let mut jobs = Vec::new();
    for (m, head) in [Head::DeepLabV3, Head::Fcn].into_iter().enumerate() {
        let model = Model { head, arch: Arch::ResNet50 };
        let weights = temp.path().join(format!("{model}.safetensors"));
        write_safetensors(&weights, &state_dict(model, 0x5E6 + m as u64)).unwrap();
        add_num_batches_tracked(&weights);
        for (output_stride, upsample) in [(8, "bilinear"), (16, "bilinear"), (8, "transposed")] {
            let dir = temp.path().join(format!("{model}_os{output_stride}_{upsample}"));
            jobs.push(Job { model, output_stride, upsample, dir, weights: weights.clone(), input: input.clone() });
        }
    }
    let jsons: Vec<PathBuf> = jobs.iter().map(Job::write_json).collect();

    let ort = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/independent/ort_segmentation.py"))
        .args(&jsons)
        .output()
        .expect("run python");
    assert!(ort.status.success(), "ort_segmentation.py failed:\n{}{}", String::from_utf8_lossy(&ort.stdout), String::from_utf8_lossy(&ort.stderr));

    // Every job on the GPU; the OS-8 bilinear ones on the CPU too.
    let runs: Vec<(&Job, &str)> =
        jobs.iter().flat_map(|job| if job.output_stride == 8 && job.upsample == "bilinear" { vec![(job, "gpu"), (job, "cpu")] } else { vec![(job, "gpu")] }).collect();
    let mut verdicts = Verdicts::default();
    for (job, device) in runs.iter().copied() {
        let reference = read_npy(job.dir.join("ort.npy")).unwrap();
        let expected = [INPUT[0], 21, INPUT[2], INPUT[3]];
        verdicts.judge(&format!("{} --device {device}", job.label()), &job.run_cli(device), &reference, &expected, TOLERANCE);
    }
    println!("{} segmentation runs against ONNX Runtime in {:.1?}, tolerance {TOLERANCE:e}:\n{}", runs.len(), start.elapsed(), verdicts.report.join("\n"));
    verdicts.assert_all_agree(temp, TOLERANCE);
}
