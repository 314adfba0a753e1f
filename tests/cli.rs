//! End-to-end tests of the `atrous` binary: bad inputs fail cleanly (non-zero exit, a message
//! that names the problem, no panic, no output file), good inputs give the CPU reference's
//! numbers on every device, and `atrous devices` finds an adapter.
//!
//! The GPU tests need an adapter (lavapipe is enough) and fail, never skip, without one.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use atrous::cpu::{conv2d_reference, conv_transpose2d_reference};
use atrous::npy::{read_npy, write_npy};
use atrous::{Conv2dParams, ConvTranspose2dParams, Hw, Tensor};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Runs the binary with `args` and captures everything.
fn atrous<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    // Autotuning off: short timings, and no user cache written by tests.
    Command::new(env!("CARGO_BIN_EXE_atrous")).args(args).env("ATROUS_AUTOTUNE", "0").output().expect("the atrous binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Panics with both streams when the run did not exit 0.
fn assert_success(out: &Output) {
    assert!(out.status.success(), "atrous failed with {}\n--- stdout\n{}\n--- stderr\n{}", out.status, stdout(out), stderr(out));
}

/// A scratch directory holding the fixtures of one test.
struct Dir(TempDir);

impl Dir {
    fn new() -> Self {
        Dir(tempfile::tempdir().expect("a temporary directory"))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    /// Writes `tensor` as a float32 .npy and returns its path.
    fn npy(&self, name: &str, tensor: &Tensor) -> PathBuf {
        let path = self.path(name);
        write_npy(&path, tensor).expect("writing a fixture");
        path
    }

    /// A random float32 tensor of `shape` written to `name`.
    fn random(&self, name: &str, shape: &[usize], seed: u64) -> PathBuf {
        self.npy(name, &Tensor::random(shape.to_vec(), seed))
    }

    /// Writes raw bytes (a corrupt or hand-made file) and returns the path.
    fn bytes(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, bytes).expect("writing a fixture");
        path
    }

    /// Every file name in the directory, sorted (to spot stray or partial outputs).
    fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(self.0.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }
}

/// A version-1.0 .npy file built by hand: any `descr`, either order, `data` as raw bytes.
fn raw_npy(descr: &str, fortran_order: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let order = if fortran_order { "True" } else { "False" };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape_text}, }}");
    // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of
    // 64 and ended by a newline, as NumPy writes it.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

fn f64_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|&v| (v as f64).to_le_bytes()).collect()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|&v| v.to_le_bytes()).collect()
}

/// Asserts every element of `got` is within `rel_tol` of `want`, relative to
/// `max(|want|, 1e-2 · max|want|)` so that values near zero are judged on the tensor's scale.
fn assert_close(got: &[f32], want: &[f32], rel_tol: f64) {
    assert_eq!(got.len(), want.len(), "element counts differ");
    let scale = want.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
    assert!(scale > 0.0, "the reference is all zeros: a useless fixture");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w as f64).abs() / (w as f64).abs().max(scale * 1e-2);
        assert!(err <= rel_tol, "element {i}: got {g}, want {w} (relative error {err:e} > {rel_tol:e})");
    }
}

/// The arguments common to a convolution run: `op`, input, weight, output and `extra`.
fn conv_args(op: &str, input: &Path, weight: &Path, output: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        op.to_owned(),
        "--input".into(),
        input.display().to_string(),
        "--weight".into(),
        weight.display().to_string(),
        "--output".into(),
        output.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Runs `args` (which name `output`) twice and checks both runs fail cleanly:
///
/// 1. with no file at `output`: non-zero exit, no panic, stderr holds every `needles` entry,
///    and the directory gains no file at all (no output, no leftover partial file);
/// 2. with a file already at `output`: the same, and that file is left byte-for-byte intact.
///
/// Returns stderr of the first run for any further checks.
fn assert_fails_cleanly(dir: &Dir, args: &[String], output: &Path, needles: &[&str]) -> String {
    assert!(!output.exists(), "the test must start without an output file");
    let before = dir.listing();
    let out = atrous(args);
    let err = stderr(&out);
    let context = format!("args {args:?}\n--- stdout\n{}\n--- stderr\n{err}", stdout(&out));
    assert!(!out.status.success(), "expected failure, got {}; {context}", out.status);
    assert!(out.status.code().is_some(), "killed by a signal; {context}");
    assert!(!err.contains("panicked"), "the binary panicked; {context}");
    assert!(!err.contains("RUST_BACKTRACE"), "the binary panicked; {context}");
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks {needle:?}; {context}");
    }
    assert!(!output.exists(), "an output file was created; {context}");
    assert_eq!(dir.listing(), before, "the failed run left files behind; {context}");

    let sentinel = b"existing output: must survive a failed run".to_vec();
    fs::write(output, &sentinel).unwrap();
    let again = atrous(args);
    assert!(!again.status.success(), "second run succeeded; {context}");
    assert!(!stderr(&again).contains("panicked"), "second run panicked; {context}");
    assert_eq!(fs::read(output).unwrap(), sentinel, "a failed run changed the existing output; {context}");
    fs::remove_file(output).unwrap();
    err
}

/// Writes a valid conv2d fixture (input `[1, 4, 8, 8]`, weight `[6, 4, 3, 3]`) and runs
/// `extra` flags with `input`/`weight` replaced when given; checks a clean failure.
fn conv2d_fails(dir: &Dir, input: Option<PathBuf>, weight: Option<PathBuf>, extra: &[&str], needles: &[&str]) -> String {
    let input = input.unwrap_or_else(|| dir.random("x.npy", &[1, 4, 8, 8], 1));
    let weight = weight.unwrap_or_else(|| dir.random("w.npy", &[6, 4, 3, 3], 2));
    let output = dir.path("y.npy");
    let mut flags = vec!["--device", "cpu"];
    flags.extend_from_slice(extra);
    assert_fails_cleanly(dir, &conv_args("conv2d", &input, &weight, &output, &flags), &output, needles)
}

// ---------------------------------------------------------------------------------------------
// Bad files
// ---------------------------------------------------------------------------------------------

/// A missing input file is reported with its path, not as a panic.
#[test]
fn missing_input_file() {
    let dir = Dir::new();
    let missing = dir.path("does-not-exist.npy");
    conv2d_fails(&dir, Some(missing), None, &[], &["--input", "cannot open", "does-not-exist.npy"]);
}

/// A missing weight file names --weight.
#[test]
fn missing_weight_file() {
    let dir = Dir::new();
    let missing = dir.path("no-weight.npy");
    conv2d_fails(&dir, None, Some(missing), &[], &["--weight", "cannot open", "no-weight.npy"]);
}

/// Random bytes are "not a valid .npy file".
#[test]
fn random_bytes_are_not_npy() {
    let dir = Dir::new();
    let noise: Vec<u8> = (0u32..300).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let input = dir.bytes("noise.npy", &noise);
    conv2d_fails(&dir, Some(input), None, &[], &["--input", "noise.npy", "not a valid .npy file"]);
}

/// An empty file is "not a valid .npy file".
#[test]
fn empty_file_is_not_npy() {
    let dir = Dir::new();
    let input = dir.bytes("empty.npy", b"");
    conv2d_fails(&dir, Some(input), None, &[], &["--input", "empty.npy", "not a valid .npy file"]);
}

/// A valid file cut short in its data is refused, not read as zeros or a panic.
#[test]
fn truncated_data_is_refused() {
    let dir = Dir::new();
    let full = fs::read(dir.random("full.npy", &[1, 4, 8, 8], 1)).unwrap();
    let input = dir.bytes("cut.npy", &full[..full.len() - 10]);
    fs::remove_file(dir.path("full.npy")).unwrap();
    conv2d_fails(&dir, Some(input), None, &[], &["--input", "cut.npy", "not a valid .npy file"]);
}

/// A file cut short inside its header is refused too.
#[test]
fn truncated_header_is_refused() {
    let dir = Dir::new();
    let full = fs::read(dir.random("full.npy", &[6, 4, 3, 3], 2)).unwrap();
    let weight = dir.bytes("cut.npy", &full[..40]);
    fs::remove_file(dir.path("full.npy")).unwrap();
    conv2d_fails(&dir, None, Some(weight), &[], &["--weight", "cut.npy", "not a valid .npy file"]);
}

/// An int32 array is refused with its dtype named and the fix suggested.
#[test]
fn int32_dtype_is_refused() {
    let dir = Dir::new();
    let data: Vec<u8> = (0..4 * 8 * 8).flat_map(|i: i32| i.to_le_bytes()).collect();
    let input = dir.bytes("ints.npy", &raw_npy("<i4", false, &[1, 4, 8, 8], &data));
    conv2d_fails(&dir, Some(input), None, &[], &["--input", "ints.npy", "<i4", "float32"]);
}

/// A Fortran-ordered array is refused (reading it as C order would scramble it silently).
#[test]
fn fortran_order_is_refused() {
    let dir = Dir::new();
    let values = Tensor::random(vec![1, 4, 8, 8], 1);
    let input = dir.bytes("fortran.npy", &raw_npy("<f4", true, &[1, 4, 8, 8], &f32_bytes(values.data())));
    conv2d_fails(&dir, Some(input), None, &[], &["--input", "fortran.npy", "Fortran order"]);
}

/// The hand-made writer itself is sound: the same file in C order is accepted.
#[test]
fn hand_made_c_order_file_is_accepted() {
    let dir = Dir::new();
    let values = Tensor::random(vec![1, 4, 8, 8], 1);
    let path = dir.bytes("c.npy", &raw_npy("<f4", false, &[1, 4, 8, 8], &f32_bytes(values.data())));
    assert_eq!(read_npy(&path).unwrap(), values);
}

// ---------------------------------------------------------------------------------------------
// Bad shapes and parameters
// ---------------------------------------------------------------------------------------------

/// A 3-D input is refused, naming the expected rank and the shape found.
#[test]
fn input_of_rank_3() {
    let dir = Dir::new();
    let input = dir.random("x3.npy", &[4, 8, 8], 1);
    conv2d_fails(&dir, Some(input), None, &[], &["input must have rank 4", "[4, 8, 8]"]);
}

/// A 3-D weight is refused, naming the expected rank and the shape found.
#[test]
fn weight_of_rank_3() {
    let dir = Dir::new();
    let weight = dir.random("w3.npy", &[6, 4, 3], 2);
    conv2d_fails(&dir, None, Some(weight), &[], &["weight must have rank 4", "[6, 4, 3]"]);
}

/// A tensor with a zero-sized dimension is refused.
#[test]
fn zero_sized_input() {
    let dir = Dir::new();
    let input = dir.npy("x0.npy", &Tensor::zeros(vec![1, 4, 0, 8]));
    conv2d_fails(&dir, Some(input), None, &[], &["zero-sized", "[1, 4, 0, 8]"]);
}

/// Stride 0 (on either axis) is refused.
#[test]
fn stride_zero() {
    let dir = Dir::new();
    conv2d_fails(&dir, None, None, &["--stride", "0"], &["stride must be at least 1"]);
    conv2d_fails(&dir, None, None, &["--stride", "1,0"], &["stride must be at least 1"]);
}

/// Dilation 0 is refused.
#[test]
fn dilation_zero() {
    let dir = Dir::new();
    conv2d_fails(&dir, None, None, &["--dilation", "0"], &["dilation must be at least 1"]);
}

/// groups 0 is refused.
#[test]
fn groups_zero() {
    let dir = Dir::new();
    conv2d_fails(&dir, None, None, &["--groups", "0"], &["groups must be at least 1"]);
}

/// groups=3 does not divide 4 input channels: the message names both numbers.
#[test]
fn groups_not_dividing_input_channels() {
    let dir = Dir::new();
    conv2d_fails(&dir, None, None, &["--groups", "3"], &["groups=3", "input channels (4)"]);
}

/// A weight made for 2 input channels against an input with 3.
#[test]
fn weight_channels_do_not_match_input() {
    let dir = Dir::new();
    let input = dir.random("x.npy", &[1, 3, 8, 8], 1);
    let weight = dir.random("w.npy", &[6, 2, 3, 3], 2);
    conv2d_fails(&dir, Some(input), Some(weight), &[], &["weight expects 2 input channels", "the input has 3"]);
}

/// 5×5 input, 3×3 kernel at dilation 3: the effective kernel is 7, the input too small.
#[test]
fn input_too_small_for_dilated_kernel() {
    let dir = Dir::new();
    let input = dir.random("x.npy", &[1, 4, 5, 5], 1);
    conv2d_fails(&dir, Some(input), None, &["--dilation", "3"], &["too small", "H=5", "effective kernel 7"]);
}

/// A bias whose length is not C_out.
#[test]
fn bias_of_wrong_length() {
    let dir = Dir::new();
    let bias = dir.random("b.npy", &[5], 3);
    let b = bias.display().to_string();
    conv2d_fails(&dir, None, None, &["--bias", &b], &["bias", "length 6", "[5]"]);
}

/// A malformed size like "2,x" or "-1" is rejected by the argument parser, quoting the text.
#[test]
fn malformed_stride() {
    let dir = Dir::new();
    conv2d_fails(&dir, None, None, &["--stride", "2,x"], &["--stride", "'2,x'", "not a size"]);
    // A negative size (written with '=' so that clap does not take "-1" for a flag).
    conv2d_fails(&dir, None, None, &["--padding=-1"], &["--padding", "'-1'", "not a size"]);
    conv2d_fails(&dir, None, None, &["--dilation", "2x"], &["--dilation", "'2x'", "not a size", "N, HxW or H,W"]);
}

/// conv-transpose2d refuses output_padding ≥ max(stride, dilation), and names the limit.
#[test]
fn conv_transpose_output_padding_too_large() {
    let dir = Dir::new();
    let input = dir.random("x.npy", &[1, 4, 5, 5], 1);
    let weight = dir.random("w.npy", &[4, 3, 3, 3], 2);
    let output = dir.path("y.npy");
    let args = |extra: &[&str]| {
        let mut flags = vec!["--device", "cpu"];
        flags.extend_from_slice(extra);
        conv_args("conv-transpose2d", &input, &weight, &output, &flags)
    };
    // stride 2, dilation 1: the limit is 2.
    assert_fails_cleanly(&dir, &args(&["--stride", "2", "--output-padding", "2"]), &output, &["output_padding", "max(2, 1) = 2"]);
    // stride 1, dilation 1: any output_padding is too large.
    assert_fails_cleanly(&dir, &args(&["--output-padding", "0,1"]), &output, &["output_padding W=1", "max(1, 1) = 1"]);
}

/// conv-transpose2d checks its weight layout `[C_in, C_out/groups, kH, kW]` against the input.
#[test]
fn conv_transpose_channel_mismatch() {
    let dir = Dir::new();
    let input = dir.random("x.npy", &[1, 4, 5, 5], 1);
    let weight = dir.random("w.npy", &[3, 4, 3, 3], 2);
    let output = dir.path("y.npy");
    let args = conv_args("conv-transpose2d", &input, &weight, &output, &["--device", "cpu"]);
    assert_fails_cleanly(&dir, &args, &output, &["weight expects 3 input channels", "the input has 4"]);
}

/// A transposed convolution whose padding swallows the whole output is refused.
#[test]
fn conv_transpose_output_empty() {
    let dir = Dir::new();
    let input = dir.random("x.npy", &[1, 4, 1, 1], 1);
    let weight = dir.random("w.npy", &[4, 3, 3, 3], 2);
    let output = dir.path("y.npy");
    // (1 − 1)·1 − 2·2 + 3 + 0 = −1.
    let args = conv_args("conv-transpose2d", &input, &weight, &output, &["--device", "cpu", "--padding", "2"]);
    assert_fails_cleanly(&dir, &args, &output, &["transposed convolution output", "-1", "padding"]);
}

/// An output path in a directory that does not exist: the run fails at the write, cleanly.
#[test]
fn unwritable_output() {
    let dir = Dir::new();
    let input = dir.random("x.npy", &[1, 4, 8, 8], 1);
    let weight = dir.random("w.npy", &[6, 4, 3, 3], 2);
    let output = dir.path("no-such-dir").join("y.npy");
    let out = atrous(&conv_args("conv2d", &input, &weight, &output, &["--device", "cpu"]));
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("cannot write") && err.contains("y.npy"), "{err}");
    assert_eq!(dir.listing(), ["w.npy", "x.npy"]);
}

// ---------------------------------------------------------------------------------------------
// Happy paths
// ---------------------------------------------------------------------------------------------

/// A CLI fixture: the op, its tensors and flags, and the f64 reference's result.
struct CliCase {
    op: &'static str,
    input: Tensor,
    weight: Tensor,
    bias: Tensor,
    flags: Vec<&'static str>,
    reference: (Vec<usize>, Vec<f32>),
}

/// conv2d exercising every parameter: groups, non-square stride/padding/dilation, bias.
fn conv2d_case() -> CliCase {
    let (input, weight, bias) = (Tensor::random(vec![2, 4, 13, 11], 11), Tensor::random(vec![6, 2, 3, 3], 12), Tensor::random(vec![6], 13));
    let params = Conv2dParams { stride: Hw::new(2, 1), padding: Hw::new(2, 1), dilation: Hw::new(2, 3), groups: 2 };
    let g = params.geometry(input.shape(), weight.shape(), Some(bias.shape())).unwrap();
    let reference = (g.output_shape().to_vec(), conv2d_reference(&g, input.data(), weight.data(), Some(bias.data())));
    let flags = vec!["--stride", "2,1", "--padding", "2,1", "--dilation", "2,3", "--groups", "2"];
    CliCase { op: "conv2d", input, weight, bias, flags, reference }
}

/// conv-transpose2d: groups, stride 2/3, dilation, output_padding, bias.
fn conv_transpose_case() -> CliCase {
    let (input, weight, bias) = (Tensor::random(vec![2, 4, 5, 6], 21), Tensor::random(vec![4, 3, 3, 4], 22), Tensor::random(vec![6], 23));
    let params = ConvTranspose2dParams { stride: Hw::new(2, 3), padding: Hw::new(1, 0), output_padding: Hw::new(1, 2), dilation: Hw::new(2, 1), groups: 2 };
    let g = params.geometry(input.shape(), weight.shape(), Some(bias.shape())).unwrap();
    let reference = (g.output_shape().to_vec(), conv_transpose2d_reference(&g, input.data(), weight.data(), Some(bias.data())));
    let flags = vec!["--stride", "2,3", "--padding", "1,0", "--output-padding", "1,2", "--dilation", "2,1", "--groups", "2"];
    CliCase { op: "conv-transpose2d", input, weight, bias, flags, reference }
}

impl CliCase {
    fn expected(&self) -> (Vec<usize>, Vec<f32>) {
        self.reference.clone()
    }

    /// Writes the fixtures and runs `atrous <op>` with `device_flags`; returns output and run.
    fn run(&self, dir: &Dir, device_flags: &[&str]) -> (PathBuf, Output) {
        let input = dir.npy("x.npy", &self.input);
        let weight = dir.npy("w.npy", &self.weight);
        let bias = dir.npy("b.npy", &self.bias).display().to_string();
        let output = dir.path("y.npy");
        let mut flags: Vec<&str> = self.flags.clone();
        flags.extend(["--bias", &bias]);
        flags.extend_from_slice(device_flags);
        let out = atrous(&conv_args(self.op, &input, &weight, &output, &flags));
        (output, out)
    }
}

/// Reads the output file and checks shape and values against the reference.
fn assert_output_matches(output: &Path, (shape, values): (Vec<usize>, Vec<f32>), rel_tol: f64) {
    let got = read_npy(output).expect("the output is a valid .npy");
    assert_eq!(got.shape(), &shape[..], "output shape");
    assert_close(got.data(), &values, rel_tol);
}

/// `conv2d --device cpu` writes the reference's result, with the shape announced on stdout.
#[test]
fn conv2d_on_cpu_matches_reference() {
    let dir = Dir::new();
    let case = conv2d_case();
    let (output, out) = case.run(&dir, &["--device", "cpu"]);
    assert_success(&out);
    let expected = case.expected();
    // (13 + 4 − 5) / 2 + 1 = 7 and (11 + 2 − 7) / 1 + 1 = 7.
    assert_eq!(expected.0, [2, 6, 7, 7]);
    assert!(stdout(&out).contains("[2, 6, 7, 7]"), "{}", stdout(&out));
    assert_output_matches(&output, expected, 1e-5);
}

/// Every pair flag takes `HxW` as well as `H,W`: the same case spelt with `x` gives the same result.
#[test]
fn pair_flags_take_x_as_well_as_a_comma() {
    let dir = Dir::new();
    let mut case = conv2d_case();
    case.flags = vec!["--stride", "2x1", "--padding", "2X1", "--dilation", "2x3", "--groups", "2"];
    let (output, out) = case.run(&dir, &["--device", "cpu"]);
    assert_success(&out);
    assert_output_matches(&output, case.expected(), 1e-5);
}

/// `--size` takes `N`, `HxW` and `H,W` alike, and refuses anything else naming the flag and the
/// spellings it takes (`atrous rf` computes nothing: the feature-map sizes tell the size read).
#[test]
fn size_takes_n_hxw_and_h_comma_w() {
    let rf = |size: &str| atrous(&["rf", "--arch", "resnet18", "--size", size]);
    let square = rf("65");
    assert_success(&square);
    assert!(stdout(&square).contains("with a 65x65 input"), "{}", stdout(&square));
    for spelling in ["65x65", "65,65"] {
        let out = rf(spelling);
        assert_success(&out);
        assert_eq!(stdout(&out), stdout(&square), "--size {spelling}");
    }
    let out = rf("65,33");
    assert_success(&out);
    assert!(stdout(&out).contains("with a 65x33 input"), "{}", stdout(&out));
    for bad in ["65;65", "65x", "0x65"] {
        let out = rf(bad);
        assert_eq!(out.status.code(), Some(1), "--size {bad}: {}", stderr(&out));
        let err = stderr(&out);
        for needle in ["--size", &format!("'{bad}'"), "not a size", "N, HxW or H,W"] {
            assert!(err.contains(needle), "--size {bad}: stderr lacks {needle:?}:\n{err}");
        }
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// `conv-transpose2d --device cpu` writes the reference's result.
#[test]
fn conv_transpose2d_on_cpu_matches_reference() {
    let dir = Dir::new();
    let case = conv_transpose_case();
    let (output, out) = case.run(&dir, &["--device", "cpu"]);
    assert_success(&out);
    let expected = case.expected();
    // H: (5 − 1)·2 − 2 + 5 + 1 = 12; W: (6 − 1)·3 − 0 + 4 + 2 = 21.
    assert_eq!(expected.0, [2, 6, 12, 21]);
    assert_output_matches(&output, expected, 1e-5);
}

/// A float64 input (and weight) .npy is accepted and converted to f32.
#[test]
fn float64_input_is_accepted() {
    let dir = Dir::new();
    let input = Tensor::random(vec![1, 3, 9, 9], 31);
    let weight = Tensor::random(vec![2, 3, 3, 3], 32);
    let x = dir.bytes("x64.npy", &raw_npy("<f8", false, input.shape(), &f64_bytes(input.data())));
    let w = dir.bytes("w64.npy", &raw_npy("<f8", false, weight.shape(), &f64_bytes(weight.data())));
    let output = dir.path("y.npy");
    let out = atrous(&conv_args("conv2d", &x, &w, &output, &["--device", "cpu", "--dilation", "2", "--padding", "2"]));
    assert_success(&out);
    let params = Conv2dParams { dilation: Hw::square(2), padding: Hw::square(2), ..Default::default() };
    let g = params.geometry(input.shape(), weight.shape(), None).unwrap();
    let want = conv2d_reference(&g, input.data(), weight.data(), None);
    assert_output_matches(&output, (vec![1, 2, 9, 9], want), 1e-5);
}

/// Without --output the run still succeeds and writes nothing.
#[test]
fn no_output_flag_writes_nothing() {
    let dir = Dir::new();
    let x = dir.random("x.npy", &[1, 2, 6, 6], 1);
    let w = dir.random("w.npy", &[2, 2, 3, 3], 2);
    let out = atrous(&["conv2d", "--device", "cpu", "--input", x.to_str().unwrap(), "--weight", w.to_str().unwrap()]);
    assert_success(&out);
    assert_eq!(dir.listing(), ["w.npy", "x.npy"]);
}

/// An existing output file is replaced by a successful run.
#[test]
fn successful_run_replaces_existing_output() {
    let dir = Dir::new();
    let case = conv2d_case();
    fs::write(dir.path("y.npy"), b"old contents").unwrap();
    let (output, out) = case.run(&dir, &["--device", "cpu"]);
    assert_success(&out);
    assert_output_matches(&output, case.expected(), 1e-5);
    assert_eq!(dir.listing(), ["b.npy", "w.npy", "x.npy", "y.npy"], "no partial file left behind");
}

// ---------------------------------------------------------------------------------------------
// GPU (lavapipe suffices; these fail without an adapter)
// ---------------------------------------------------------------------------------------------

/// GPU results are compared with the tool's own agreement tolerance.
const GPU_TOLERANCE: f64 = 1e-4;

/// `conv2d --device gpu` writes the reference's result.
#[test]
fn conv2d_on_gpu_matches_reference() {
    let dir = Dir::new();
    let case = conv2d_case();
    let (output, out) = case.run(&dir, &["--device", "gpu"]);
    assert_success(&out);
    assert!(stderr(&out).contains("GPU:"), "the adapter is named on stderr: {}", stderr(&out));
    assert_output_matches(&output, case.expected(), GPU_TOLERANCE);
}

/// `conv-transpose2d --device gpu` writes the reference's result.
#[test]
fn conv_transpose2d_on_gpu_matches_reference() {
    let dir = Dir::new();
    let case = conv_transpose_case();
    let (output, out) = case.run(&dir, &["--device", "gpu"]);
    assert_success(&out);
    assert_output_matches(&output, case.expected(), GPU_TOLERANCE);
}

/// `conv2d --compare` runs both devices, reports agreement, and exits 0.
#[test]
fn conv2d_compare_agrees() {
    let dir = Dir::new();
    let case = conv2d_case();
    let (output, out) = case.run(&dir, &["--compare"]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains("compare GPU vs CPU"), "{text}");
    assert!(text.contains("verdict: agree"), "{text}");
    assert_output_matches(&output, case.expected(), GPU_TOLERANCE);
}

/// `conv2d --precision f16 --compare` runs in f16, says so, judges by the relative RMS error
/// and agrees; the output file holds the f16 GPU's result, close to the reference.
#[test]
fn conv2d_compare_in_f16_agrees() {
    let dir = Dir::new();
    let case = conv2d_case();
    let (output, out) = case.run(&dir, &["--compare", "--precision", "f16"]);
    assert_success(&out);
    assert!(stderr(&out).contains("precision: f16"), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("verdict: agree") && text.contains("relative RMS"), "{text}");
    // Element by element, an f16 value is a few half-steps (2^-11 of its size) off, which
    // near 1% of the tensor's scale is a few percent.
    assert_output_matches(&output, case.expected(), 5e-2);
}

/// f16 on an adapter without SHADER_F16 (lavapipe's GL one) is refused, naming the feature
/// and the way out; a misspelt precision lists the accepted ones.
#[test]
fn f16_without_shader_f16_and_a_bad_precision_fail_cleanly() {
    let dir = Dir::new();
    let (input, weight, output) = (dir.random("x.npy", &[1, 4, 8, 8], 1), dir.random("w.npy", &[6, 4, 3, 3], 2), dir.path("y.npy"));
    let gl = conv_args("conv2d", &input, &weight, &output, &["--precision", "f16", "--backend", "gl"]);
    assert_fails_cleanly(&dir, &gl, &output, &["SHADER_F16", "--precision f32"]);
    let bad = conv_args("conv2d", &input, &weight, &output, &["--precision", "half"]);
    assert_fails_cleanly(&dir, &bad, &output, &["f16-accumulate", "fastest"]);
}

/// `conv-transpose2d --compare --device cpu` agrees too, and writes the CPU result.
#[test]
fn conv_transpose2d_compare_agrees() {
    let dir = Dir::new();
    let case = conv_transpose_case();
    let (output, out) = case.run(&dir, &["--compare", "--device", "cpu"]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains("verdict: agree"), "{text}");
    assert_output_matches(&output, case.expected(), 1e-5);
}

/// `atrous devices` exits 0 and lists at least one adapter.
#[test]
fn devices_lists_an_adapter() {
    let out = atrous(&["devices"]);
    assert_success(&out);
    let text = stdout(&out);
    let count: usize = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no adapter count on the first line:\n{text}"));
    assert!(count >= 1, "no adapter found:\n{text}");
    assert!(text.contains("[0] "), "{text}");
    assert!(text.contains("backend"), "{text}");
}

/// An unknown --backend is a clear error on the GPU path, not a panic.
#[test]
fn unknown_backend_fails_cleanly() {
    let dir = Dir::new();
    let input = dir.random("x.npy", &[1, 4, 8, 8], 1);
    let weight = dir.random("w.npy", &[6, 4, 3, 3], 2);
    let output = dir.path("y.npy");
    let args = conv_args("conv2d", &input, &weight, &output, &["--device", "gpu", "--backend", "nonsense"]);
    assert_fails_cleanly(&dir, &args, &output, &["unknown backend", "nonsense"]);
}

// ---------------------------------------------------------------------------------------------
// Absurdly large numbers: refused with the parameter named, never an arithmetic overflow.
// ---------------------------------------------------------------------------------------------

/// A header whose shape's element count overflows 64 bits is refused, not a panic.
#[test]
fn npy_shape_overflowing_u64() {
    let dir = Dir::new();
    let input = dir.bytes("huge.npy", &raw_npy("<f4", false, &[1 << 32, 1 << 32, 1 << 32], &[0; 64]));
    conv2d_fails(&dir, Some(input), None, &[], &["--input", "huge.npy"]);
}

/// conv2d parameters near usize::MAX are refused with the parameter named, not a panic.
#[test]
fn conv2d_huge_parameters() {
    let dir = Dir::new();
    conv2d_fails(&dir, None, None, &["--padding", "18446744073709551615"], &["padding"]);
    conv2d_fails(&dir, None, None, &["--padding", "9223372036854775807"], &["padding"]);
    let weight = dir.random("w4.npy", &[6, 4, 4, 4], 2);
    conv2d_fails(&dir, None, Some(weight), &["--dilation", "9223372036854775807"], &["dilation"]);
}

/// conv-transpose2d parameters near usize::MAX are refused with the parameter named.
#[test]
fn conv_transpose2d_huge_parameters() {
    let dir = Dir::new();
    let input = dir.random("x.npy", &[1, 4, 8, 8], 1);
    let weight = dir.random("w.npy", &[4, 6, 3, 3], 2);
    let output = dir.path("y.npy");
    for (flag, value) in [
        ("--groups", "18446744073709551615"),
        ("--padding", "9223372036854775807"),
        ("--stride", "9223372036854775807"),
        ("--dilation", "9223372036854775807"),
    ] {
        let args = conv_args("conv-transpose2d", &input, &weight, &output, &["--device", "cpu", flag, value]);
        assert_fails_cleanly(&dir, &args, &output, &[flag.trim_start_matches("--")]);
    }
}
