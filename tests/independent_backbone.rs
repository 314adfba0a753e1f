//! `atrous backbone --weights W.safetensors`, on `--device gpu` and `--device cpu`, against an
//! independent implementation of the same network: torchvision's ResNet written out as an ONNX
//! graph (Conv, BatchNormalization, Relu, MaxPool, Add, batch-norm left unfolded) by
//! `tests/independent/ort_resnet.py` from torchvision's definition, not from atrous's builder,
//! and run by ONNX Runtime. resnet18 (BasicBlock) and resnet50 (Bottleneck) at output strides
//! 8, 16 and 32, on a square input and a batch-2 non-square one, within 1e-3 relative.
//!
//! The state dicts are complete torchvision-layout files: every parameter and running statistic
//! (seeded by `SeededWeights`), plus the `fc.*` classifier and, for resnet50, the int64
//! `*.num_batches_tracked` counters that real state dicts hold and a backbone must ignore.
//!
//! Needs `python3` with `pip install onnxruntime onnx numpy` (set `PYTHON` to use another
//! interpreter; the .safetensors files are parsed with NumPy alone). Without them the comparison
//! fails when `CI` is set and is skipped, loudly, otherwise. The broken-state-dict test needs no
//! Python.

#[path = "independent/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use atrous::models::resnet::{resnet, Arch, ResNetConfig};
use atrous::npy::{read_npy, write_npy};
use support::{add_num_batches_tracked, json_string, onnx_runtime_available, python, Verdicts};
use atrous::weights::{write_safetensors, SeededWeights};
use atrous::Tensor;

const TOLERANCE: f64 = 1e-3;
const ARCHS: [Arch; 2] = [Arch::ResNet18, Arch::ResNet50];
const OUTPUT_STRIDES: [usize; 3] = [8, 16, 32];
/// A square input, and a batch of two non-square ones (odd sizes: every stride-2 layer rounds).
const INPUTS: [[usize; 4]; 2] = [[1, 3, 65, 65], [2, 3, 33, 49]];
const DEVICES: [&str; 2] = ["gpu", "cpu"];




/// A complete torchvision-layout state dict of `arch` with seeded values, and the classifier
/// (`fc.weight`, `fc.bias`) a backbone must ignore.
fn state_dict(arch: Arch, seed: u64) -> Vec<(String, Tensor)> {
    let mut seeded = SeededWeights::new(seed);
    resnet(&ResNetConfig::new(arch, 32), &mut seeded).unwrap();
    let mut tensors = seeded.generated().to_vec();
    tensors.push(("fc.weight".into(), Tensor::random(vec![1000, arch.out_channels()], seed ^ 0xFC)));
    tensors.push(("fc.bias".into(), Tensor::random(vec![1000], seed ^ 0xFB)));
    tensors
}

/// Layer4's output shape, from torchvision's arithmetic: the stem conv, the max-pool and every
/// stride-2 layer map n to ⌈n/2⌉ (kernel 2p+1, padding p); dilated layers keep n.
fn expected_shape(arch: Arch, output_stride: usize, input: [usize; 4]) -> Vec<usize> {
    let halvings = output_stride.trailing_zeros();
    let size = |mut n: usize| {
        for _ in 0..halvings {
            n = n.div_ceil(2);
        }
        n
    };
    vec![input[0], arch.out_channels(), size(input[2]), size(input[3])]
}

struct Job {
    arch: Arch,
    output_stride: usize,
    input: [usize; 4],
    dir: PathBuf,
    weights: PathBuf,
}

impl Job {
    fn input_path(&self) -> PathBuf {
        self.dir.join("x.npy")
    }

    fn label(&self) -> String {
        let [n, c, h, w] = self.input;
        format!("{} OS {} on {n}x{c}x{h}x{w}", self.arch, self.output_stride)
    }

    fn write(&self, seed: u64) -> PathBuf {
        std::fs::create_dir_all(&self.dir).unwrap();
        write_npy(self.input_path(), &Tensor::random(self.input.to_vec(), seed)).unwrap();
        let json = self.dir.join("job.json");
        let text = format!(
            "{{\"arch\": \"{}\", \"output_stride\": {}, \"weights\": {}, \"input\": {}, \"output\": {}}}",
            self.arch,
            self.output_stride,
            json_string(&self.weights),
            json_string(&self.input_path()),
            json_string(&self.dir.join("ort.npy"))
        );
        std::fs::write(&json, text).unwrap();
        json
    }

    /// Runs `atrous backbone` on `device`; returns layer4's features or why there are none.
    fn run_cli(&self, device: &str) -> Result<Tensor, String> {
        let output = self.dir.join(format!("{device}.npy"));
        let run = backbone(self.arch, self.output_stride, &self.weights, &self.input_path(), &output, device);
        if !run.status.success() {
            return Err(format!("exited with {}:\n{}{}", run.status, String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr)));
        }
        let stderr = String::from_utf8_lossy(&run.stderr);
        if stderr.contains("not used") {
            return Err(format!("a complete state dict left tensors unused:\n{stderr}"));
        }
        read_npy(&output).map_err(|e| e.to_string())
    }
}

fn backbone(arch: Arch, output_stride: usize, weights: &Path, input: &Path, output: &Path, device: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_atrous"))
        .env("ATROUS_AUTOTUNE", "0")
        .args(["backbone", "--arch", &arch.to_string(), "--output-stride", &output_stride.to_string()])
        .arg("--weights")
        .arg(weights)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .args(["--device", device])
        .output()
        .expect("run the atrous binary")
}

#[test]
fn backbone_matches_onnx_runtime_resnet_at_output_strides_8_16_32() {
    if !onnx_runtime_available("tests/independent_backbone.rs") {
        return;
    }
    let start = Instant::now();
    let temp = tempfile::TempDir::new().unwrap();
    let mut jobs = Vec::new();
    for (a, arch) in ARCHS.into_iter().enumerate() {
        let weights = temp.path().join(format!("{arch}.safetensors"));
        write_safetensors(&weights, &state_dict(arch, 0x5EED + a as u64)).unwrap();
        if arch == Arch::ResNet50 {
            add_num_batches_tracked(&weights);
        }
        for output_stride in OUTPUT_STRIDES {
            for (i, input) in INPUTS.into_iter().enumerate() {
                let dir = temp.path().join(format!("{arch}_os{output_stride}_{i}"));
                jobs.push(Job { arch, output_stride, input, dir, weights: weights.clone() });
            }
        }
    }
    let jsons: Vec<PathBuf> = jobs.iter().enumerate().map(|(j, job)| job.write(100 + j as u64)).collect();
    let prepared = start.elapsed();

    // One interpreter for every job (ORT takes a while to import).
    let ort_start = Instant::now();
    let ort = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/independent/ort_resnet.py"))
        .args(&jsons)
        .output()
        .expect("run python");
    assert!(ort.status.success(), "ort_resnet.py failed:\n{}{}", String::from_utf8_lossy(&ort.stdout), String::from_utf8_lossy(&ort.stderr));
    let ort_time = ort_start.elapsed();

    // The CLI runs, a few processes at a time.
    let cli_start = Instant::now();
    let runs: Vec<(usize, &str)> = (0..jobs.len()).flat_map(|j| DEVICES.map(|d| (j, d))).collect();
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get()).min(8);
    let results: Vec<Result<Tensor, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (runs, jobs) = (&runs, &jobs);
                scope.spawn(move || runs.iter().enumerate().skip(t).step_by(threads).map(|(r, &(j, d))| (r, jobs[j].run_cli(d))).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<_> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort_by_key(|(r, _)| *r);
        all.into_iter().map(|(_, result)| result).collect()
    });
    let cli_time = cli_start.elapsed();

    let mut verdicts = Verdicts::default();
    for (&(j, device), result) in runs.iter().zip(&results) {
        let job = &jobs[j];
        let reference = read_npy(job.dir.join("ort.npy")).unwrap();
        let expected = expected_shape(job.arch, job.output_stride, job.input);
        verdicts.judge(&format!("{} --device {device}", job.label()), result, &reference, &expected, TOLERANCE);
    }
    println!(
        "{} backbones x {DEVICES:?} against ONNX Runtime in {:.1?} (files {:.1?}, ORT {:.1?}, CLI {:.1?} on {threads} threads), tolerance {TOLERANCE:e}:\n{}",
        jobs.len(),
        start.elapsed(),
        prepared,
        ort_time,
        cli_time,
        verdicts.report.join("\n")
    );
    verdicts.assert_all_agree(temp, TOLERANCE);
}

/// A state dict missing one tensor, or holding one of the wrong shape, is refused: non-zero exit,
/// the tensor's name on stderr, and no --output written.
#[test]
fn broken_state_dicts_are_refused_naming_the_tensor_and_writing_nothing() {
    let temp = tempfile::TempDir::new().unwrap();
    let complete = state_dict(Arch::ResNet50, 77);
    let input = temp.path().join("x.npy");
    write_npy(&input, &Tensor::random(vec![1, 3, 33, 33], 5)).unwrap();

    let missing = "layer3.4.bn2.running_var";
    let reshaped = "layer4.0.downsample.0.weight";
    let without = complete.iter().filter(|(n, _)| n != missing).cloned().collect();
    let mut wrong = complete.clone();
    let entry = wrong.iter_mut().find(|(n, _)| n == reshaped).expect("torchvision's resnet50 has it");
    assert_eq!(entry.1.shape(), [2048, 1024, 1, 1]);
    entry.1 = Tensor::random(vec![2048, 1024, 3, 3], 3);
    // (file stem, state dict, what stderr must name)
    let cases = [("missing", without, vec![missing]), ("wrong-shape", wrong, vec![reshaped, "[2048, 1024, 3, 3]", "[2048, 1024, 1, 1]"])];

    for (what, tensors, needles) in cases {
        let weights = temp.path().join(format!("{what}.safetensors"));
        write_safetensors(&weights, &tensors).unwrap();
        for device in DEVICES {
            for output_stride in [8, 32] {
                let output = temp.path().join(format!("{what}_{device}_{output_stride}.npy"));
                let run = backbone(Arch::ResNet50, output_stride, &weights, &input, &output, device);
                let stderr = String::from_utf8_lossy(&run.stderr);
                let context = format!("{what} state dict, --device {device}, OS {output_stride}: {}\nstderr:\n{stderr}", run.status);
                assert!(!run.status.success(), "{context}");
                for needle in &needles {
                    assert!(stderr.contains(needle), "stderr lacks {needle:?}; {context}");
                }
                assert!(!output.exists(), "{} was written; {context}", output.display());
            }
        }
    }
}
