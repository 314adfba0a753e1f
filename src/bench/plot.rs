//! The benchmark as a picture: GFLOP/s against dilation (log₂ axis, a tick at every measured
//! dilation), one panel per device with one line with markers per op, the measured FMA peak as
//! a dashed line.
//!
//! Drawn with plotters' bitmap backend into memory and saved as PNG by [`crate::imaging`]
//! (atomically). Text uses the DejaVu Sans font embedded from `assets/` (plotters' `ab_glyph`
//! feature): no system fonts or fontconfig are needed.

use std::path::Path;
use std::sync::OnceLock;

use image::RgbImage;
use plotters::prelude::*;

use super::{BenchError, BenchReport, Device, ConvOp, TimingSource};
use crate::imaging::save_png;

/// Width of one device's panel, and the picture's height.
const PANEL_WIDTH: u32 = 900;
const HEIGHT: u32 = 680;
pub(crate) const FONT: &str = "sans-serif";
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Registers the embedded font with plotters, once per process.
pub(crate) fn register_font() -> Result<(), BenchError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_ok());
    ok.then_some(()).ok_or_else(|| BenchError::Plot("the embedded font assets/DejaVuSans.ttf could not be loaded".into()))
}

/// One colour per (op, device) series, distinguishable in print.
fn colour(op: ConvOp, device: Device) -> RGBColor {
    match (op, device) {
        (ConvOp::Conv2d, Device::Gpu) => RGBColor(31, 119, 180),
        (ConvOp::ConvTranspose2d, Device::Gpu) => RGBColor(214, 39, 40),
        (ConvOp::Conv2d, Device::Cpu) => RGBColor(44, 160, 44),
        (ConvOp::ConvTranspose2d, Device::Cpu) => RGBColor(148, 103, 189),
    }
}

/// A linear `f64` axis with ticks exactly at `ticks` (plotters' `with_key_points` has no label
/// formatting for `f64`): the bench's x axis, log₂ of the dilation with a tick at every measured
/// one, and the profile's bars, a tick at each.
pub(crate) struct TickedAxis {
    pub(crate) range: std::ops::Range<f64>,
    pub(crate) ticks: Vec<f64>,
}

impl Ranged for TickedAxis {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let fraction = (value - self.range.start) / (self.range.end - self.range.start);
        limit.0 + (fraction * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.range.clone()
    }
}

pub(crate) fn plot_error<E: std::fmt::Display>(e: E) -> BenchError {
    BenchError::Plot(e.to_string())
}

/// Draws one device's panel: a line per op, its FMA peak as a dashed line where that does not
/// squash the measurements.
fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, plotters::coord::Shift>, report: &BenchReport, device: Device, dilations: &[usize]) -> Result<(), BenchError>
where
    DB::ErrorType: 'static,
{
    // With `--gpu-kernel all` the GPU panel draws the auto choice's records (one line per op).
    let records: Vec<_> = report.records.iter().filter(|r| r.device == device).collect();
    let auto_only = device == Device::Gpu && records.iter().any(|r| r.kernel.starts_with("auto:")) && records.iter().any(|r| !r.kernel.starts_with("auto:"));
    let records: Vec<_> = records.into_iter().filter(|r| !auto_only || r.kernel.starts_with("auto:")).collect();
    let mut ops: Vec<ConvOp> = Vec::new();
    for r in &records {
        if !ops.contains(&r.op) {
            ops.push(r.op);
        }
    }
    let x_of = |d: usize| (d as f64).log2();
    let (x_lo, x_hi) = (x_of(dilations[0]), x_of(*dilations.last().expect("not empty")));
    let x_pad = ((x_hi - x_lo) * 0.06).max(0.25);
    let best = records.iter().map(|r| r.gflops).fold(0.0f64, f64::max);
    let peak = report.peaks.iter().find(|p| p.device == device);
    let drawn_peak = peak.filter(|p| p.gflops <= 6.0 * best);
    let y_hi = drawn_peak.map_or(best, |p| p.gflops.max(best)) * 1.18;

    let runner = report.runners.iter().find(|r| r.device == device);
    let timing = match (device, runner.map(|r| r.timing)) {
        (Device::Gpu, Some(TimingSource::Timestamp)) => "timestamp queries",
        _ => "wall clock",
    };
    let mut caption = format!("{}: {} ({timing})", device.name().to_uppercase(), runner.map_or("", |r| r.name.as_str()));
    if let Some(p) = peak.filter(|_| drawn_peak.is_none()) {
        caption.push_str(&format!("; FMA peak {:.1} GFLOP/s", p.gflops));
    }
    let key_points: Vec<f64> = dilations.iter().map(|&d| x_of(d)).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 17))
        .margin_left(15)
        .margin_right(25)
        .margin_bottom(10)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(TickedAxis { range: (x_lo - x_pad)..(x_hi + x_pad), ticks: key_points }, 0.0..y_hi)
        .map_err(plot_error)?;
    let label_dilation = |x: &f64| {
        let d = 2f64.powf(*x);
        dilations.iter().find(|&&v| (v as f64 - d).abs() < 1e-6 * d.max(1.0)).map_or(String::new(), |v| v.to_string())
    };
    let y_decimals = if y_hi < 5.0 { 1 } else { 0 };
    chart
        .configure_mesh()
        .x_desc("dilation (log₂ scale)")
        .y_desc("GFLOP/s (useful FLOPs / median time)")
        .x_label_formatter(&label_dilation)
        .y_label_formatter(&|y| format!("{y:.*}", y_decimals))
        .axis_desc_style((FONT, 17))
        .label_style((FONT, 15))
        .max_light_lines(0)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(plot_error)?;

    if let Some(p) = drawn_peak {
        let grey = RGBColor(110, 110, 110);
        chart
            .draw_series(DashedLineSeries::new([(x_lo - x_pad, p.gflops), (x_hi + x_pad, p.gflops)], 10, 6, grey.stroke_width(2)))
            .map_err(plot_error)?;
        let label = format!("FP32 FMA peak {:.1} GFLOP/s", p.gflops);
        chart
            .draw_series(std::iter::once(EmptyElement::at((x_lo - x_pad, p.gflops)) + Text::new(label, (8, -22), (FONT, 15).into_font().color(&grey))))
            .map_err(plot_error)?;
    }

    let value = |op: ConvOp, dilation: usize| records.iter().find(|r| r.op == op && r.dilation == dilation).map(|r| r.gflops);
    for &op in &ops {
        let colour = colour(op, device);
        let mut points: Vec<(usize, f64)> = records.iter().filter(|r| r.op == op).map(|r| (r.dilation, r.gflops)).collect();
        points.sort_by_key(|p| p.0);
        chart
            .draw_series(LineSeries::new(points.iter().map(|&(d, y)| (x_of(d), y)), colour.stroke_width(3)))
            .map_err(plot_error)?
            .label(op.name())
            .legend(move |(x, y)| EmptyElement::at((x, y)) + PathElement::new(vec![(0, 0), (28, 0)], colour.stroke_width(3)) + Circle::new((14, 0), 5, colour.filled()));
        chart.draw_series(points.iter().map(|&(d, y)| Circle::new((x_of(d), y), 6, colour.filled()))).map_err(plot_error)?;
        // The value beside each marker: above it where this op is the faster at that dilation,
        // below it otherwise, so that two ops' labels do not collide.
        chart
            .draw_series(points.iter().map(|&(d, y)| {
                let highest = ops.iter().filter_map(|&o| value(o, d)).fold(f64::MIN, f64::max);
                let offset = if y >= highest { -28 } else { 12 };
                let text = if y >= 10.0 { format!("{y:.1}") } else { format!("{y:.2}") };
                EmptyElement::at((x_of(d), y)) + Text::new(text, (-14, offset), (FONT, 15).into_font().color(&colour))
            }))
            .map_err(plot_error)?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    Ok(())
}

/// Draws the series' legend in a corner of `chart`, as every plot of atrous draws it.
pub(crate) fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(chart: &mut ChartContext<'a, DB, CT>, position: SeriesLabelPosition) -> Result<(), BenchError> {
    chart
        .configure_series_labels()
        .position(position)
        .margin(12)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(plot_error)
}

/// Draws the report's records as an RGB image: a title, then one panel per device (each with
/// its own GFLOP/s scale), one line per op.
pub fn plot_png(report: &BenchReport) -> Result<RgbImage, BenchError> {
    register_font()?;
    let records = &report.records;
    if records.is_empty() {
        return Err(BenchError::Plot("there are no measurements to plot".into()));
    }
    let mut dilations: Vec<usize> = records.iter().map(|r| r.dilation).collect();
    dilations.sort_unstable();
    dilations.dedup();
    let mut devices: Vec<Device> = Vec::new();
    for r in records {
        if !devices.contains(&r.device) {
            devices.push(r.device);
        }
    }
    let width = PANEL_WIDTH * devices.len() as u32;
    let mut buffer = vec![0u8; (width * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (top, body) = root.split_vertically(80);
        let main = report.runners.iter().find(|r| r.device == Device::Gpu).or(report.runners.first());
        let title = format!("Convolution throughput vs dilation — {}", main.map_or("unknown device", |r| r.name.as_str()));
        top.draw(&Text::new(title, (20, 12), (FONT, 26).into_font().color(&BLACK))).map_err(plot_error)?;
        let subtitle = format!(
            "{}{}",
            report.config.describe(),
            if devices.len() > 1 { "; each panel has its own scale" } else { "" }
        );        top.draw(&Text::new(subtitle, (20, 50), (FONT, 16).into_font().color(&RGBColor(80, 80, 80)))).map_err(plot_error)?;
        let panels = body.split_evenly((1, devices.len()));
        for (panel, &device) in panels.iter().zip(&devices) {
            draw_panel(panel, report, device, &dilations)?;
        }
        root.present().map_err(plot_error)?;
    }
    RgbImage::from_raw(width, HEIGHT, buffer).ok_or_else(|| BenchError::Plot("the plot buffer has the wrong size".into()))
}

/// Draws the report ([`plot_png`]) and writes it to `path` as PNG, atomically.
pub fn write_plot(path: &Path, report: &BenchReport) -> Result<(), BenchError> {
    let image = plot_png(report)?;
    save_png(&image, path)?;
    Ok(())
}
