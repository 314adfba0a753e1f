//! Shared by the tests that check atrous against ONNX Runtime (`tests/independent*.rs`).

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
