//! The `atrous` CLI, on `--device gpu` and `--device cpu`, against an independent implementation:
//! ONNX Runtime's `Conv` and `ConvTranspose` (what PyTorch exports these ops to), run by
//! `tests/independent/ort_conv.py` on seeded random cases covering every parameter.
//!
//! Needs `python3` with `pip install onnxruntime onnx numpy` (set `PYTHON` to use another
//! interpreter). Without them the test fails when `CI` is set and is skipped, loudly, otherwise.
//! `tests/independent/check_ort_semantics.py` checks ORT itself against PyTorch's definitions.

#[path = "independent/support.rs"]
mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use atrous::compare::{difference, Difference};
use atrous::npy::{read_npy, write_npy};
use support::{json_string, onnx_runtime_available, python};
use atrous::shape::{conv_output_size, conv_transpose_output_size, effective_kernel};
use atrous::{Hw, Tensor};

const CASES: usize = 40;
const TOLERANCE: f64 = 1e-4;

/// SplitMix64: a small deterministic generator for the cases' parameters.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn hw(&mut self, lo: usize, hi: usize) -> Hw {
        Hw::new(self.range(lo, hi), self.range(lo, hi))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Conv,
    Transpose,
}

/// What a case is made to contain, on top of its random parameters, so every feature is sure to
/// be exercised by both ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavour {
    Anything,
    DilationBeyondInput,
    Depthwise,
    Grouped,
    /// Transposed: output_padding ≥ stride (allowed because it is < dilation). Conv: every
    /// parameter differs between H and W.
    Edge,
}

const FLAVOURS: [Flavour; 5] = [Flavour::Anything, Flavour::DilationBeyondInput, Flavour::Depthwise, Flavour::Grouped, Flavour::Edge];

#[derive(Clone, Debug)]
struct Case {
    index: usize,
    op: Op,
    flavour: Flavour,
    batch: usize,
    c_in: usize,
    c_out: usize,
    groups: usize,
    size: Hw,
    kernel: Hw,
    stride: Hw,
    padding: Hw,
    dilation: Hw,
    output_padding: Hw,
    bias: bool,
}

impl Case {
    fn generate(index: usize) -> Case {
        let op = if index.is_multiple_of(2) { Op::Conv } else { Op::Transpose };
        let flavour = FLAVOURS[(index / 2) % FLAVOURS.len()];
        let mut rng = Rng(0xA7_0005 ^ (index as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        loop {
            let case = Case::sample(&mut rng, index, op, flavour);
            if case.output().is_some() && case.has_flavour() {
                return case;
            }
        }
    }

    fn sample(rng: &mut Rng, index: usize, op: Op, flavour: Flavour) -> Case {
        let (c_in, c_out, groups) = match (flavour, rng.range(0, 2)) {
            (Flavour::Depthwise, _) | (Flavour::Anything, 0) => {
                let groups = rng.range(2, 5);
                (groups, groups * rng.range(1, 2), groups)
            }
            (Flavour::Grouped, _) | (Flavour::Anything, 1) => {
                let groups = rng.range(2, 3);
                (groups * rng.range(1, 3), groups * rng.range(1, 3), groups)
            }
            _ => (rng.range(1, 5), rng.range(1, 5), 1),
        };
        let stride = rng.hw(1, 3);
        let dilation = if rng.chance(30) { Hw::square(1) } else { rng.hw(1, 5) };
        let output_padding = match op {
            Op::Transpose if rng.chance(60) => {
                Hw::new(rng.range(0, stride.h.max(dilation.h) - 1), rng.range(0, stride.w.max(dilation.w) - 1))
            }
            _ => Hw::square(0),
        };
        Case {
            index,
            op,
            flavour,
            batch: rng.range(1, 3),
            c_in,
            c_out,
            groups,
            size: if op == Op::Conv { rng.hw(1, 10) } else { rng.hw(1, 6) },
            kernel: rng.hw(1, 4),
            stride,
            padding: rng.hw(0, 4),
            dilation,
            output_padding,
            bias: rng.chance(50),
        }
    }

    /// The output's spatial size, computed here from the formulas (not by the crate's geometry),
    /// or `None` when the parameters are invalid.
    fn output(&self) -> Option<Hw> {
        let axis = |n, k, s, p, d, op| match self.op {
            Op::Conv => conv_output_size(n, k, s, p, d),
            Op::Transpose => {
                let value = (n as i64 - 1) * s as i64 - 2 * p as i64 + (d * (k - 1) + 1) as i64 + op as i64;
                let expected = (value > 0).then_some(value as usize);
                assert_eq!(conv_transpose_output_size(n, k, s, p, d, op), expected);
                expected
            }
        };
        let (s, k, st, p, d, op) = (self.size, self.kernel, self.stride, self.padding, self.dilation, self.output_padding);
        Some(Hw::new(axis(s.h, k.h, st.h, p.h, d.h, op.h)?, axis(s.w, k.w, st.w, p.w, d.w, op.w)?))
    }

    fn has_flavour(&self) -> bool {
        let differs = |v: Hw| v.h != v.w;
        match self.flavour {
            Flavour::Anything => true,
            Flavour::DilationBeyondInput => {
                (self.dilation.h > self.size.h && self.kernel.h > 1) || (self.dilation.w > self.size.w && self.kernel.w > 1)
            }
            Flavour::Depthwise => self.groups == self.c_in,
            Flavour::Grouped => self.c_in / self.groups > 1,
            Flavour::Edge => match self.op {
                Op::Transpose => {
                    (self.output_padding.h > 0 && self.output_padding.h >= self.stride.h)
                        || (self.output_padding.w > 0 && self.output_padding.w >= self.stride.w)
                }
                Op::Conv => [self.size, self.kernel, self.stride, self.padding, self.dilation].into_iter().all(differs),
            },
        }
    }

    fn weight_shape(&self) -> Vec<usize> {
        match self.op {
            Op::Conv => vec![self.c_out, self.c_in / self.groups, self.kernel.h, self.kernel.w],
            Op::Transpose => vec![self.c_in, self.c_out / self.groups, self.kernel.h, self.kernel.w],
        }
    }

    fn output_shape(&self) -> Vec<usize> {
        let out = self.output().expect("generated cases are valid");
        vec![self.batch, self.c_out, out.h, out.w]
    }

    fn cli_args(&self) -> Vec<String> {
        let mut args = vec![
            match self.op {
                Op::Conv => "conv2d",
                Op::Transpose => "conv-transpose2d",
            }
            .to_string(),
        ];
        let hw = |v: Hw| format!("{},{}", v.h, v.w);
        for (flag, value) in [("--stride", self.stride), ("--padding", self.padding), ("--dilation", self.dilation)] {
            args.extend([flag.to_string(), hw(value)]);
        }
        args.extend(["--groups".to_string(), self.groups.to_string()]);
        if self.op == Op::Transpose {
            args.extend(["--output-padding".to_string(), hw(self.output_padding)]);
        }
        args
    }

    fn json(&self, dir: &Path) -> String {
        let pair = |v: Hw| format!("[{}, {}]", v.h, v.w);
        let path = |name: &str| json_string(&dir.join(name));
        let mut s = String::from("{");
        let op = match self.op {
            Op::Conv => "conv",
            Op::Transpose => "conv_transpose",
        };
        write!(s, "\"op\": \"{op}\", \"strides\": {}, \"pads\": {}, ", pair(self.stride), pair(self.padding)).unwrap();
        write!(s, "\"dilations\": {}, \"group\": {}, \"output_padding\": {}, ", pair(self.dilation), self.groups, pair(self.output_padding)).unwrap();
        write!(s, "\"input\": {}, \"weight\": {}, \"output\": {}, ", path("x.npy"), path("w.npy"), path("ort.npy")).unwrap();
        write!(s, "\"bias\": {}}}", if self.bias { path("b.npy") } else { "null".to_string() }).unwrap();
        s
    }

    /// Writes this case's tensors and description into `dir`; returns the description's path.
    fn write(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let seed = 1000 * self.index as u64;
        write_npy(dir.join("x.npy"), &Tensor::random(vec![self.batch, self.c_in, self.size.h, self.size.w], seed + 1)).unwrap();
        write_npy(dir.join("w.npy"), &Tensor::random(self.weight_shape(), seed + 2)).unwrap();
        if self.bias {
            write_npy(dir.join("b.npy"), &Tensor::random(vec![self.c_out], seed + 3)).unwrap();
        }
        let json = dir.join("case.json");
        std::fs::write(&json, self.json(dir)).unwrap();
        json
    }

    /// Runs the CLI on `device`; returns its result or why there is none.
    fn run_cli(&self, dir: &Path, device: &str) -> Result<Tensor, String> {
        let output = dir.join(format!("{device}.npy"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_atrous"));
        command.env("ATROUS_AUTOTUNE", "0");
        command.args(self.cli_args()).arg("--input").arg(dir.join("x.npy")).arg("--weight").arg(dir.join("w.npy"));
        if self.bias {
            command.arg("--bias").arg(dir.join("b.npy"));
        }
        command.arg("--output").arg(&output).args(["--device", device]);
        let run = command.output().map_err(|e| format!("cannot run {command:?}: {e}"))?;
        if !run.status.success() {
            return Err(format!(
                "{command:?} exited with {}:\n{}{}",
                run.status,
                String::from_utf8_lossy(&run.stdout),
                String::from_utf8_lossy(&run.stderr)
            ));
        }
        read_npy(&output).map_err(|e| e.to_string())
    }
}




#[test]
fn cli_matches_onnx_runtime() {
    if !onnx_runtime_available("tests/independent.rs") {
        return;
    }
    let start = Instant::now();
    let cases: Vec<Case> = (0..CASES).map(Case::generate).collect();
    assert_coverage(&cases);

    let temp = tempfile::TempDir::new().unwrap();
    let dirs: Vec<PathBuf> = cases.iter().map(|c| temp.path().join(format!("case{:02}", c.index))).collect();
    let jsons: Vec<PathBuf> = cases.iter().zip(&dirs).map(|(c, d)| c.write(d)).collect();

    // One interpreter for every case (ORT takes a while to import).
    let ort = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/independent/ort_conv.py"))
        .args(&jsons)
        .output()
        .expect("run python");
    assert!(ort.status.success(), "ort_conv.py failed:\n{}", String::from_utf8_lossy(&ort.stderr));

    // The CLI runs, a few processes at a time.
    let devices = ["gpu", "cpu"];
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get()).min(8);
    let jobs: Vec<(usize, &str)> = (0..cases.len()).flat_map(|i| devices.map(|d| (i, d))).collect();
    let results: Vec<Result<Tensor, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (jobs, cases, dirs) = (&jobs, &cases, &dirs);
                scope.spawn(move || {
                    jobs.iter().enumerate().skip(t).step_by(threads).map(|(j, &(i, d))| (j, cases[i].run_cli(&dirs[i], d))).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<_> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort_by_key(|(j, _)| *j);
        all.into_iter().map(|(_, r)| r).collect()
    });

    let mut failures = Vec::new();
    let mut worst = [0.0f64; 2];
    for (&(i, device), result) in jobs.iter().zip(&results) {
        let case = &cases[i];
        let reference = read_npy(dirs[i].join("ort.npy")).unwrap();
        let failure = match result {
            Err(e) => Some(format!("the CLI failed: {e}")),
            Ok(_) if reference.shape() != case.output_shape() => {
                Some(format!("ORT's output shape {:?} is not the expected {:?}", reference.shape(), case.output_shape()))
            }
            Ok(r) if r.shape() != reference.shape() => Some(format!("output shape {:?}, ORT's {:?}", r.shape(), reference.shape())),
            Ok(r) => {
                let diff: Difference = difference(r.data(), reference.data());
                let slot = &mut worst[devices.iter().position(|&d| d == device).unwrap()];
                *slot = slot.max(diff.max_rel);
                (!diff.within(TOLERANCE)).then(|| format!("{diff}"))
            }
        };
        if let Some(why) = failure {
            failures.push(format!(
                "case {i} on --device {device}: {why}\n  {case:?}\n  input [{}, {}, {}, {}] weight {:?} -> {:?}\n  atrous {}",
                case.batch,
                case.c_in,
                case.size.h,
                case.size.w,
                case.weight_shape(),
                case.output_shape(),
                case.cli_args().join(" ")
            ));
        }
    }
    println!(
        "{} cases x {devices:?} against ONNX Runtime in {:.1?}: largest relative error gpu {:.3e}, cpu {:.3e} (tolerance {TOLERANCE:e})",
        cases.len(),
        start.elapsed(),
        worst[0],
        worst[1]
    );
    if !failures.is_empty() {
        // Keep the files of failing cases for a look by hand.
        let kept = temp.keep();
        panic!(
            "{} of {} runs disagree with ONNX Runtime beyond {TOLERANCE:e} (case files kept in {}):\n\n{}",
            failures.len(),
            jobs.len(),
            kept.display(),
            failures.join("\n\n")
        );
    }
}

/// The random cases really cover every parameter (a guard against a generator that drifts).
fn assert_coverage(cases: &[Case]) {
    for op in [Op::Conv, Op::Transpose] {
        let of_op: Vec<&Case> = cases.iter().filter(|c| c.op == op).collect();
        let any = |what: &str, f: &dyn Fn(&Case) -> bool| assert!(of_op.iter().any(|c| f(c)), "no {op:?} case has {what}");
        any("stride > 1", &|c| c.stride.h > 1 || c.stride.w > 1);
        any("padding > 0", &|c| c.padding.h > 0 || c.padding.w > 0);
        any("dilation > 1", &|c| c.dilation.h > 1 || c.dilation.w > 1);
        any("dilated kernel larger than the input", &|c| {
            effective_kernel(c.kernel.h, c.dilation.h) > c.size.h || effective_kernel(c.kernel.w, c.dilation.w) > c.size.w
        });
        any("dilation larger than the input", &|c| c.dilation.h > c.size.h || c.dilation.w > c.size.w);
        any("depthwise groups", &|c| c.groups > 1 && c.groups == c.c_in);
        any("groups with several channels each", &|c| c.groups > 1 && c.c_in / c.groups > 1 && c.c_out / c.groups > 1);
        any("bias", &|c| c.bias);
        any("no bias", &|c| !c.bias);
        any("batch > 1", &|c| c.batch > 1);
        any("non-square input", &|c| c.size.h != c.size.w);
        any("non-square kernel", &|c| c.kernel.h != c.kernel.w);
        any("different strides", &|c| c.stride.h != c.stride.w);
        any("different paddings", &|c| c.padding.h != c.padding.w);
        any("different dilations", &|c| c.dilation.h != c.dilation.w);
        any("1x1 kernel axis", &|c| c.kernel.h == 1 || c.kernel.w == 1);
        if op == Op::Transpose {
            any("output_padding > 0", &|c| c.output_padding.h > 0 || c.output_padding.w > 0);
            any("output_padding >= stride", &|c| {
                (c.output_padding.h > 0 && c.output_padding.h >= c.stride.h) || (c.output_padding.w > 0 && c.output_padding.w >= c.stride.w)
            });
            any("different output paddings", &|c| c.output_padding.h != c.output_padding.w);
        }
    }
}

/// The ORT workaround above (output_padding ≥ stride) and ORT itself, against PyTorch's
/// definitions written out as plain loops.
#[test]
fn onnx_runtime_follows_pytorch_semantics() {
    if !onnx_runtime_available("tests/independent.rs") {
        return;
    }
    let check = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/independent/check_ort_semantics.py"))
        .output()
        .expect("run python");
    assert!(
        check.status.success(),
        "check_ort_semantics.py failed:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
