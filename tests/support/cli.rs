//! Running the `atrous` binary from integration tests (shared by `tests/cli_backbone.rs` and
//! `tests/bench.rs`).

use std::process::{Command, Output};

/// Runs `atrous` with `args` and captures everything it prints.
pub fn atrous(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_atrous")).args(args).output().expect("run atrous")
}

/// (stdout, stderr) as text.
pub fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Asserts a successful exit (showing both streams if not) and returns stdout.
pub fn assert_ok(out: &Output) -> String {
    let (stdout, stderr) = text(out);
    assert!(out.status.success(), "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    stdout
}
