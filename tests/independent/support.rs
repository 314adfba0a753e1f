//! Shared by the tests that check atrous against ONNX Runtime (`tests/independent*.rs`).
#![allow(dead_code)] // each test binary uses its own subset

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

pub const PIP_HINT: &str = "pip install onnxruntime onnx numpy";

/// The Python interpreter: `PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Whether ONNX Runtime is importable. When it is not, this fails under CI (`CI` set) and
/// otherwise says loudly, uncaptured, that `test` is skipped.
pub fn onnx_runtime_available(test: &str) -> bool {
    let ok = Command::new(python()).args(["-c", "import onnxruntime, onnx, numpy"]).output().is_ok_and(|o| o.status.success());
    if ok {
        return true;
    }
    let message = format!("`{} -c \"import onnxruntime, onnx, numpy\"` failed: the independent ONNX Runtime check needs `{PIP_HINT}`", python());
    if std::env::var_os("CI").is_some() {
        panic!("{message} (CI is set, so this is a failure, not a skip)");
    }
    let banner = "*".repeat(100);
    let _ = writeln!(std::io::stderr(), "\n{banner}\nSKIPPING {test}: {message}\n{banner}\n");
    false
}

/// A path as a JSON string literal.
pub fn json_string(path: &Path) -> String {
    serde_json::to_string(path.to_str().expect("temporary paths are UTF-8")).expect("a string is JSON")
}

/// Rewrites the `.safetensors` file at `path` with an int64 scalar `num_batches_tracked` next to
/// every batch-norm's `running_var`, as in a state dict saved from PyTorch.
pub fn add_num_batches_tracked(path: &Path) {
    use safetensors::{tensor::TensorView, Dtype, SafeTensors};
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut entries: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> =
        file.iter().map(|(name, view)| (name.to_owned(), view.dtype(), view.shape().to_vec(), view.data().to_vec())).collect();
    let counters: Vec<String> =
        entries.iter().filter_map(|(name, ..)| name.strip_suffix(".running_var")).map(|bn| format!("{bn}.num_batches_tracked")).collect();
    assert!(!counters.is_empty());
    for (i, name) in counters.into_iter().enumerate() {
        entries.push((name, Dtype::I64, vec![], (1000 + i as i64).to_le_bytes().to_vec()));
    }
    let views: Vec<(&str, TensorView)> =
        entries.iter().map(|(name, dtype, shape, data)| (name.as_str(), TensorView::new(*dtype, shape.clone(), data).unwrap())).collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// CLI runs judged against ONNX Runtime's outputs: a report line for each run that could be
/// compared, and why each failing run failed.
#[derive(Default)]
pub struct Verdicts {
    pub report: Vec<String>,
    pub failures: Vec<String>,
    runs: usize,
}

impl Verdicts {
    /// Judges the run `label`: its `result` against ORT's `reference`, both of shape `expected`,
    /// within `tolerance` relative.
    pub fn judge(&mut self, label: &str, result: &Result<atrous::Tensor, String>, reference: &atrous::Tensor, expected: &[usize], tolerance: f64) {
        self.runs += 1;
        let failure = match result {
            Err(e) => Some(format!("the CLI failed: {e}")),
            Ok(_) if reference.shape() != expected => Some(format!("ORT's output shape {:?} is not the expected {expected:?}", reference.shape())),
            Ok(r) if r.shape() != expected => Some(format!("output shape {:?}, expected {expected:?}", r.shape())),
            Ok(r) => {
                let diff = atrous::compare::difference(r.data(), reference.data());
                self.report.push(format!("  {label:<52} max rel {:.3e}, max abs {:.3e} (scale {:.3e})", diff.max_rel, diff.max_abs, diff.reference_scale));
                (!diff.within(tolerance)).then(|| format!("{diff}"))
            }
        };
        if let Some(why) = failure {
            self.failures.push(format!("{label}: {why}"));
        }
    }

    /// Panics, naming every failure and keeping the files in `temp`, when some run failed.
    pub fn assert_all_agree(&self, temp: tempfile::TempDir, tolerance: f64) {
        if !self.failures.is_empty() {
            let kept = temp.keep();
            panic!(
                "{} of {} runs disagree with ONNX Runtime beyond {tolerance:e} (files kept in {}):\n\n{}",
                self.failures.len(),
                self.runs,
                kept.display(),
                self.failures.join("\n\n")
            );
        }
    }
}
