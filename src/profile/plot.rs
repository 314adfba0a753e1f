//! The profile as pictures, drawn like the bench's plot (plotters' bitmap backend, the embedded
//! DejaVu Sans font): [`stages_png`], the time of each stage stacked in one bar per output
//! stride, and [`roofline_png`], every layer's GFLOP/s against its arithmetic intensity on
//! log-log axes under the roofline of the measured FMA peak and memory bandwidth. Both have one
//! panel per device, each with its own scale.

use image::RgbImage;
use plotters::prelude::*;

use super::{DeviceProfile, ProfileReport};
use crate::bench::plot::{draw_legend, plot_error, register_font, TickedAxis, FONT};
use crate::bench::BenchError;

const PANEL_WIDTH: u32 = 900;
/// The picture's width at least (room for the title over one panel), and its height.
const MIN_WIDTH: u32 = 1200;
const HEIGHT: u32 = 680;

/// Distinguishable colours (matplotlib's tab10), cycled.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn colour(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

/// A tick label of a log axis: 0.01, 0.5, 3, 2000.
fn tick_label(value: f64) -> String {
    if value >= 1.0 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.6}");
        text.trim_end_matches('0').to_owned()
    }
}

/// Draws `panels` (one per device, side by side) under a title and subtitle, into an RGB image.
fn draw<F>(report: &ProfileReport, title: &str, subtitle: &str, mut panel: F) -> Result<RgbImage, BenchError>
where
    F: FnMut(&DrawingArea<BitMapBackend, plotters::coord::Shift>, &DeviceProfile) -> Result<(), BenchError>,
{
    register_font()?;
    if report.devices.iter().all(|d| d.runs.is_empty()) {
        return Err(BenchError::Plot("there are no measurements to plot".into()));
    }
    let width = (PANEL_WIDTH * report.devices.len() as u32).max(MIN_WIDTH);
    let mut buffer = vec![0u8; (width * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (top, body) = root.split_vertically(80);
        top.draw(&Text::new(title.to_owned(), (20, 12), (FONT, 26).into_font().color(&BLACK))).map_err(plot_error)?;
        top.draw(&Text::new(subtitle.to_owned(), (20, 50), (FONT, 16).into_font().color(&RGBColor(80, 80, 80)))).map_err(plot_error)?;
        for (area, device) in body.split_evenly((1, report.devices.len())).iter().zip(&report.devices) {
            panel(area, device)?;
        }
        root.present().map_err(plot_error)?;
    }
    RgbImage::from_raw(width, HEIGHT, buffer).ok_or_else(|| BenchError::Plot("the plot buffer has the wrong size".into()))
}

/// What was profiled, for the titles.
fn what(report: &ProfileReport) -> String {
    let [n, c, h, w] = report.input_shape;
    let head = report.head.as_ref().map_or(String::new(), |h| format!(" + {h}"));
    format!("{}{head}, {n}x{c}x{h}x{w} input", report.arch)
}

fn caption(device: &DeviceProfile) -> String {
    let timing = if device.timing == "timestamp" { "timestamp queries" } else { "wall clock" };
    let name = device.description.split(" (").next().unwrap_or(&device.description);
    format!("{}: {name} ({timing})", device.device.name().to_uppercase())
}

/// The time of each stage, stacked in one bar per output stride (one panel per device), the
/// bar's total and its cost relative to the largest output stride above it.
pub fn stages_png(report: &ProfileReport) -> Result<RgbImage, BenchError> {
    // Every stage of every run, in the order first met: one colour each across the panels.
    let mut stages: Vec<&str> = Vec::new();
    for run in report.devices.iter().flat_map(|d| &d.runs) {
        for s in &run.stages {
            if !stages.contains(&s.name.as_str()) {
                stages.push(&s.name);
            }
        }
    }
    let title = format!("Time per stage at each output stride — {}", what(report));
    let subtitle = format!(
        "sum of the layers' median times over {}; × = time relative to output stride {}",
        super::passes_text(report.timed_passes),
        report.reference_output_stride
    );
    draw(report, &title, &subtitle, |area, device| {
        let runs = &device.runs;
        let highest = runs.iter().map(|r| r.total.median_ms).fold(0.0f64, f64::max);
        let y_hi = if highest > 0.0 { highest * 1.15 } else { 1.0 };
        let n = runs.len() as f64;
        // A free slot right of the bars holds the legend.
        let axis = TickedAxis { range: -0.6..(n + 0.6), ticks: (0..runs.len()).map(|i| i as f64).collect() };
        let mut chart = ChartBuilder::on(area)
            .caption(caption(device), (FONT, 17))
            .margin_left(15)
            .margin_right(25)
            .margin_bottom(10)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(axis, 0.0..y_hi)
            .map_err(plot_error)?;
        let label = |x: &f64| {
            let i = x.round();
            runs.get(i as usize).filter(|_| (x - i).abs() < 1e-6 && i >= 0.0).map_or(String::new(), |r| format!("OS {}", r.output_stride))
        };
        let y_decimals = if y_hi < 10.0 { 1 } else { 0 };
        chart
            .configure_mesh()
            .x_desc("output stride")
            .y_desc("ms (sum of per-layer median times)")
            .x_label_formatter(&label)
            .y_label_formatter(&|y| format!("{y:.*}", y_decimals))
            .axis_desc_style((FONT, 17))
            .label_style((FONT, 15))
            .max_light_lines(0)
            .disable_x_mesh()
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(plot_error)?;
        let half = 0.32;
        for (index, stage) in stages.iter().enumerate() {
            let colour = colour(index);
            let mut bars = Vec::new();
            for (i, run) in runs.iter().enumerate() {
                let below: f64 = run.stages.iter().take_while(|s| s.name != *stage).map(|s| s.median_ms).sum();
                if let Some(s) = run.stages.iter().find(|s| s.name == *stage) {
                    let x = i as f64;
                    bars.push(Rectangle::new([(x - half, below), (x + half, below + s.median_ms)], colour.filled()));
                }
            }
            chart.draw_series(bars).map_err(plot_error)?.label(*stage).legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled()));
        }
        chart
            .draw_series(runs.iter().enumerate().map(|(i, run)| {
                let relative = run.relative.as_ref().and_then(|r| r.time).map_or(String::new(), |t| format!(", {t:.2}×"));
                let text = format!("{:.1} ms{relative}", run.total.median_ms);
                EmptyElement::at((i as f64, run.total.median_ms)) + Text::new(text, (-40, -22), (FONT, 15).into_font().color(&BLACK))
            }))
            .map_err(plot_error)?;
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
}

/// Powers of ten around `lo..hi` (both positive), at least one decade apart.
fn decades(lo: f64, hi: f64) -> (f64, f64) {
    let lo = 10f64.powf(lo.log10().floor());
    let hi = 10f64.powf(hi.log10().ceil()).max(lo * 10.0);
    (lo, hi)
}

/// A log axis over `lo..hi`, a hair wider, so that rounding keeps the end ticks.
fn log_axis((lo, hi): (f64, f64)) -> LogCoord<f64> {
    (lo * 0.999..hi * 1.001).log_scale().into()
}

/// Layers with less than this share of their nominal FLOPs touching data are drawn hollow.
const MOSTLY_PADDING: f64 = 0.5;

/// Every layer with FLOPs and a time: GFLOP/s (nominal, at the median) against arithmetic
/// intensity (nominal FLOP per byte moved), log-log, coloured by output stride, under the
/// roofline `min(peak, bandwidth × intensity)` where the peak was measured; one panel per device.
pub fn roofline_png(report: &ProfileReport) -> Result<RgbImage, BenchError> {
    let title = format!("Roofline — {}", what(report));
    let subtitle = "a point per layer with FLOPs: nominal GFLOP/s at the median time against nominal FLOP per byte moved (weights + inputs + output, f32)";
    draw(report, &title, subtitle, |area, device| {
        // (run, intensity, GFLOP/s, mostly padding)
        let points: Vec<(usize, f64, f64, bool)> = device
            .runs
            .iter()
            .enumerate()
            .flat_map(|(i, run)| {
                run.layers
                    .iter()
                    .filter(|l| l.intensity > 0.0)
                    .filter_map(move |l| l.gflops.filter(|g| *g > 0.0).map(|g| (i, l.intensity, g, l.useful_gflop < MOSTLY_PADDING * l.gflop)))
            })
            .collect();
        let peak = device.peak.as_ref();
        let (mut x_lo, mut x_hi) = points.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
        let (mut y_lo, mut y_hi) = points.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), p| (lo.min(p.2), hi.max(p.2)));
        if points.is_empty() {
            (x_lo, x_hi, y_lo, y_hi) = (1.0, 10.0, 1.0, 10.0);
        }
        if let Some(p) = peak {
            x_lo = x_lo.min(p.ridge_intensity);
            x_hi = x_hi.max(p.ridge_intensity);
            y_hi = y_hi.max(p.gflops);
        }
        let (x_lo, x_hi) = decades(x_lo, x_hi);
        if let Some(p) = peak {
            y_lo = y_lo.min(p.bandwidth_gbs * x_lo);
        }
        let (y_lo, y_hi) = decades(y_lo, y_hi * 1.5);
        let mut chart = ChartBuilder::on(area)
            .caption(caption(device), (FONT, 17))
            .margin_left(15)
            .margin_right(25)
            .margin_bottom(10)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(log_axis((x_lo, x_hi)), log_axis((y_lo, y_hi)))
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("arithmetic intensity, FLOP per byte moved (log)")
            .y_desc("GFLOP/s (log)")
            .x_labels(8)
            .y_labels(8)
            .x_label_formatter(&|x| tick_label(*x))
            .y_label_formatter(&|y| tick_label(*y))
            .axis_desc_style((FONT, 17))
            .label_style((FONT, 15))
            .max_light_lines(0)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(plot_error)?;
        if let Some(p) = peak {
            let grey = RGBColor(90, 90, 90);
            let roof = [(x_lo, p.bandwidth_gbs * x_lo), (p.ridge_intensity, p.gflops), (x_hi, p.gflops)];
            chart
                .draw_series(LineSeries::new(roof, grey.stroke_width(3)))
                .map_err(plot_error)?
                .label(format!("roofline: FMA peak {:.1} GFLOP/s, bandwidth {:.1} GB/s", p.gflops, p.bandwidth_gbs))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 28, y)], grey.stroke_width(3)));
        }
        for (i, run) in device.runs.iter().enumerate() {
            let colour = colour(i);
            chart
                .draw_series(
                    points
                        .iter()
                        .filter(|p| p.0 == i)
                        .map(|&(_, x, y, padding)| Circle::new((x, y), 5, if padding { colour.stroke_width(2) } else { colour.filled() })),
                )
                .map_err(plot_error)?
                .label(format!("output stride {}", run.output_stride))
                .legend(move |(x, y)| Circle::new((x + 14, y), 5, colour.filled()));
        }
        if points.iter().any(|p| p.3) {
            let grey = RGBColor(90, 90, 90);
            chart
                .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
                .map_err(plot_error)?
                .label("hollow: under half the nominal FLOPs touch data")
                .legend(move |(x, y)| Circle::new((x + 14, y), 5, grey.stroke_width(2)));
        }
        // Above the roof's slope, top left, is where no layer can be.
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_span_whole_decades() {
        let close = |(a, b): (f64, f64), (c, d): (f64, f64)| (a / c - 1.0).abs() < 1e-12 && (b / d - 1.0).abs() < 1e-12;
        assert!(close(decades(3.0, 40.0), (1.0, 100.0)));
        assert!(close(decades(0.2, 0.3), (0.1, 1.0)));
        assert!(close(decades(10.0, 10.0), (10.0, 100.0)), "{:?}", decades(10.0, 10.0));
        assert_eq!(tick_label(1000.0), "1000");
        assert_eq!(tick_label(0.01), "0.01");
    }
}
