//! Running the `atrous` binary from integration tests (shared by `tests/cli_backbone.rs`,
//! `tests/cli_segment.rs` and `tests/bench.rs`).
#![allow(dead_code)] // each test binary uses its own subset

use std::process::{Command, Output};

/// Runs `atrous` with `args` and captures everything it prints. Autotuning is off
/// (`ATROUS_AUTOTUNE=0`): the tests' timings stay short and no user cache is written; see
/// [`atrous_with_env`].
pub fn atrous(args: &[&str]) -> Output {
    atrous_with_env(args, &[("ATROUS_AUTOTUNE", "0")])
}

/// Runs `atrous` with `args` and the environment variables `env` set.
pub fn atrous_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_atrous"));
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run atrous")
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

/// Asserts a refusal: exit status 1, no panic, and every one of `words` in the message.
pub fn assert_refused(out: &Output, words: &[&str]) {
    let (_, stderr) = text(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for word in words {
        assert!(stderr.contains(word), "stderr lacks '{word}':\n{stderr}");
    }
}
