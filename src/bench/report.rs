//! The benchmark's outputs as text: the table on stdout, JSON and CSV files (written atomically).

use std::io::Write;
use std::path::Path;

use super::{BenchError, BenchReport, Device, Record};
use crate::atomic_file::write_atomically;
use crate::gpu::tuning_line;

/// The keys of every record, in order (JSON keys and CSV columns).
pub const COLUMNS: [&str; 27] = [
    "op",
    "device",
    "adapter",
    "backend",
    "timing",
    "kernel",
    "parts",
    "batch",
    "cin",
    "cout",
    "h",
    "w",
    "out_h",
    "out_w",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "groups",
    "gflop",
    "median_ms",
    "min_ms",
    "max_ms",
    "gflops",
    "useful_gflop",
    "useful_gflops",
    "dilation_penalty",
];

/// The keys added when a peak was measured.
pub const PEAK_COLUMNS: [&str; 3] = ["peak_gflops", "fraction_of_peak", "peak_bandwidth_gbs"];

/// The records as a pretty-printed JSON list.
pub fn to_json(records: &[Record]) -> String {
    serde_json::to_string_pretty(records).expect("records serialise")
}

pub(crate) fn csv_field(value: &serde_json::Value) -> String {
    let text = match value {
        serde_json::Value::Null => return String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The records as CSV: a header of [`COLUMNS`] (plus [`PEAK_COLUMNS`] when any record has a
/// peak), one line per record; an absent value (no dilation-1 row) is an empty field.
pub fn to_csv(records: &[Record]) -> String {
    let with_peak = records.iter().any(|r| r.peak_gflops.is_some());
    let columns: Vec<&str> = COLUMNS.iter().chain(if with_peak { &PEAK_COLUMNS[..] } else { &[] }).copied().collect();
    let mut out = columns.join(",");
    out.push('\n');
    for record in records {
        let value = serde_json::to_value(record).expect("records serialise");
        let fields: Vec<String> = columns.iter().map(|c| csv_field(value.get(*c).unwrap_or(&serde_json::Value::Null))).collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

pub(crate) fn write_text(path: &Path, text: &str) -> Result<(), BenchError> {
    write_atomically(path, |file| file.write_all(text.as_bytes())).map_err(|source| BenchError::Write { path: path.display().to_string(), source })
}

/// Writes [`to_json`] to `path`, atomically.
pub fn write_json(path: &Path, records: &[Record]) -> Result<(), BenchError> {
    write_text(path, &(to_json(records) + "\n"))
}

/// Writes [`to_csv`] to `path`, atomically.
pub fn write_csv(path: &Path, records: &[Record]) -> Result<(), BenchError> {
    write_text(path, &to_csv(records))
}

/// `value` with four significant digits (at least three decimals): 4.984, 0.0003329.
pub(crate) fn significant(value: f64) -> String {
    let decimals = if value > 0.0 { (3 - value.log10().floor() as i32).clamp(3, 9) } else { 3 };
    format!("{value:.*}", decimals as usize)
}

fn join<T: std::fmt::Display>(values: &[T]) -> String {
    values.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

/// The human-readable report: header lines (what was measured, on which adapter, with which
/// timing source, the peaks, the GPU-vs-CPU checks), then one row per record.
pub fn format_table(report: &BenchReport) -> String {
    let c = &report.config;
    let mut out = String::new();
    let ops: Vec<&str> = c.ops.iter().map(|o| o.name()).collect();
    out.push_str(&format!("atrous bench: {} at dilations {} — {}\n", ops.join(" and "), join(&c.dilations), c.describe()));
    for runner in &report.runners {
        let timing = match (runner.device, runner.timing) {
            (Device::Gpu, super::TimingSource::Timestamp) => "timestamp queries around each dispatch",
            (Device::Gpu, super::TimingSource::Wall) => "wall clock around submit + wait",
            (Device::Cpu, _) => "wall clock around each convolution, its weights prepared once before",
        };
        out.push_str(&format!("{}: {} — timing: {} ({timing})\n", runner.device.name().to_uppercase(), runner.description, runner.timing));
    }
    for kernel in &report.kernels {
        let which = match c.gpu_kernel {
            super::GpuKernels::All => format!("all, {}", kernel.kernel),
            super::GpuKernels::One(_) => c.gpu_kernel.name().to_owned(),
        };
        out.push_str(&format!("GPU kernel for {} (--gpu-kernel {which}): {}\n", kernel.op, kernel.shader));
    }
    if let Some(tuning) = &report.tuning {
        out.push_str(&tuning_line(tuning.enabled, &tuning.stats, tuning.cache_file.as_deref().map(Path::new)));
        out.push('\n');
    }
    for peak in &report.peaks {
        let device = peak.device.name().to_uppercase();
        out.push_str(&format!("{device} peak FP32 FMA: {:.1} GFLOP/s ({}; {} timing)\n", peak.gflops, peak.method, peak.timing));
        out.push_str(&format!("{device} memory bandwidth: {:.1} GB/s ({}; {} timing)\n", peak.bandwidth_gbs, peak.bandwidth_method, peak.timing));
    }
    for check in &report.checks {
        out.push_str(&format!(
            "check: GPU vs CPU, {} at dilation {} ({}): {} — agree within {:e} {} error\n",
            check.op, check.dilation, check.kernel, check.difference, check.tolerance, check.measure
        ));
    }
    out.push('\n');

    let with_peak = report.records.iter().any(|r| r.fraction_of_peak.is_some());
    let mut header = vec!["op", "device", "kernel", "dilation", "out size", "GFLOP", "median ms", "min ms", "max ms", "GFLOP/s", "penalty"];
    if with_peak {
        header.push("% of peak");
    }
    // Where padding takes a share of the taps, the rate of the taps that touch data as well.
    let skipped = report.records.iter().any(|r| r.useful_gflop < r.gflop);
    if skipped {
        header.push("useful GFLOP/s");
    }
    let split = report.records.iter().any(|r| r.parts > 1);
    if split {
        header.push("parts");
    }
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in &report.records {
        let mut row = vec![
            r.op.to_string(),
            r.device.to_string(),
            r.kernel.clone(),
            r.dilation.to_string(),
            format!("{}x{}", r.out_h, r.out_w),
            significant(r.gflop),
            format!("{:.3}", r.median_ms),
            format!("{:.3}", r.min_ms),
            format!("{:.3}", r.max_ms),
            format!("{:.2}", r.gflops),
            r.dilation_penalty.map_or("—".to_owned(), |p| format!("{p:.2}×")),
        ];
        if with_peak {
            row.push(r.fraction_of_peak.map_or("—".to_owned(), |f| format!("{:.1}%", 100.0 * f)));
        }
        if skipped {
            row.push(format!("{:.2}", r.useful_gflops));
        }
        if split {
            row.push(r.parts.to_string());
        }
        rows.push(row);
    }
    out.push_str(&aligned(&rows, 3));
    out
}

/// `rows` (the first one the header) as lines of columns two spaces apart: the first
/// `text_columns` left-aligned, the others (numbers) right-aligned.
pub(crate) fn aligned(rows: &[Vec<String>], text_columns: usize) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns).map(|i| rows.iter().filter_map(|row| row.get(i)).map(|cell| cell.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let pad = " ".repeat(widths[i] - cell.chars().count());
                if i < text_columns { format!("{cell}{pad}") } else { format!("{pad}{cell}") }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
