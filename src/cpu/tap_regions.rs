//! Which taps of a sliding window read data, as rectangles: the plan that lets the fast CPU
//! convolution leave out the products with zero padding (docs/ARCHITECTURE.md §3, "Taps that
//! read only padding").

use std::ops::Range;

use crate::shape::{valid_taps, ConvKind, WindowGeometry};

/// A rectangle of positions (output pixels of a forward convolution) whose taps inside the
/// input are one rectangle of the kernel, `ky × kx` (empty where every tap reads padding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapRegion {
    pub rows: Range<usize>,
    pub cols: Range<usize>,
    pub ky: Range<usize>,
    pub kx: Range<usize>,
}

impl TapRegion {
    pub fn pixels(&self) -> usize {
        self.rows.len() * self.cols.len()
    }

    pub fn taps(&self) -> usize {
        self.ky.len() * self.kx.len()
    }
}

/// A run of positions on one axis and the taps they compute (a superset of each one's valid
/// taps once runs are merged: the extra taps read padding, which im2col writes as zeros).
type Run = (Range<usize>, Range<usize>);

/// Merges may add at most 1/`MERGE_SHARE` to an axis's tap-visits: that folds the border runs
/// of a dilation-1, 2 or 4 layer back in (1–4.3% at 65×65), so such a layer plans as one region
/// and takes the plain path, while an ASPP rate's border runs stay apart (at 65×65, rate 12's
/// would add 7%, rate 36's middle run 5.7%).
const MERGE_SHARE: usize = 20;

/// Runs shorter than this are merged whatever they add: a rectangle a few pixels wide is a
/// product too small to run near the SGEMM's speed (a 7×7 map's border, say).
const MIN_RUN: usize = 4;

/// The plan of a forward convolution: rectangles covering every output pixel once, row-major.
/// Per axis, the valid taps of a position form one range ([`valid_taps`]) that changes only
/// where the dilated kernel's ends cross the input's edges, so the positions fall into a few
/// runs of equal taps; each rectangle is a run of rows × a run of columns. Runs whose separate
/// treatment saves little are merged first.
pub fn tap_regions(g: &WindowGeometry) -> Vec<TapRegion> {
    assert_eq!(g.kind, ConvKind::Forward, "tap regions are planned for forward convolutions");
    let rows = axis_runs(g.output.h, g.stride.h, g.kernel.h, g.dilation.h, g.padding.h, g.input.h);
    let cols = axis_runs(g.output.w, g.stride.w, g.kernel.w, g.dilation.w, g.padding.w, g.input.w);
    rows.iter()
        .flat_map(|(ry, ky)| cols.iter().map(move |(rx, kx)| TapRegion { rows: ry.clone(), cols: rx.clone(), ky: ky.clone(), kx: kx.clone() }))
        .collect()
}

/// [`TapSkipping::Auto`](super::TapSkipping::Auto) takes the region path where the plan
/// computes at most this share of the nominal products (BENCHMARKS.md, "Skipping padding taps
/// on the CPU fast path"); above it, the plain path.
pub const SKIP_BELOW: f64 = 0.9;

/// The share of the nominal products (every position × every tap) that `regions` compute.
pub fn planned_share(g: &WindowGeometry, regions: &[TapRegion]) -> f64 {
    let planned: usize = regions.iter().map(|r| r.pixels() * r.taps()).sum();
    planned as f64 / (g.output.h * g.output.w * g.kernel.h * g.kernel.w) as f64
}

/// The runs of one axis: `positions` outputs at `i·stride`, each computing the taps that read
/// `0..size`; neighbours merged (their taps joined), cheapest first, while one of them is
/// shorter than [`MIN_RUN`] or the merges add at most 1/[`MERGE_SHARE`] of the axis's
/// tap-visits.
fn axis_runs(positions: usize, stride: usize, kernel: usize, dilation: usize, padding: usize, size: usize) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for i in 0..positions {
        let taps = normalized(valid_taps(i * stride, kernel, dilation, padding, size));
        match runs.last_mut() {
            Some((run, t)) if *t == taps => run.end = i + 1,
            _ => runs.push((i..i + 1, taps)),
        }
    }
    let cost = |(run, taps): &Run| run.len() * taps.len();
    let budget = runs.iter().map(cost).sum::<usize>() * (MERGE_SHARE + 1);
    loop {
        let merged = |j: usize| -> Run { (runs[j - 1].0.start..runs[j].0.end, hull(&runs[j - 1].1, &runs[j].1)) };
        let extra = |j: usize| cost(&merged(j)) - cost(&runs[j - 1]) - cost(&runs[j]);
        let planned: usize = runs.iter().map(cost).sum();
        let short = |j: usize| runs[j - 1].0.len().min(runs[j].0.len()) < MIN_RUN;
        let Some(j) = (1..runs.len()).filter(|&j| short(j) || (planned + extra(j)) * MERGE_SHARE <= budget).min_by_key(|&j| extra(j)) else {
            break;
        };
        runs[j - 1] = merged(j);
        runs.remove(j);
    }
    runs
}

/// Empty ranges compare equal only as `0..0`.
fn normalized(taps: Range<usize>) -> Range<usize> {
    if taps.is_empty() {
        0..0
    } else {
        taps
    }
}

/// The smallest range holding both.
fn hull(a: &Range<usize>, b: &Range<usize>) -> Range<usize> {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.clone(),
        (_, true) => a.clone(),
        _ => a.start.min(b.start)..a.end.max(b.end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::Conv2dParams;
    use crate::Hw;

    fn geometry(size: Hw, rate: usize, stride: usize) -> WindowGeometry {
        let p = Conv2dParams { stride: Hw::square(stride), padding: Hw::square(rate), dilation: Hw::square(rate), groups: 1 };
        p.geometry(&[1, 1, size.h, size.w], &[1, 1, 3, 3], None).unwrap()
    }

    #[test]
    fn aspp_rates_plan_their_border_runs() {
        // Rate 12 on 65: rows 0..12 miss tap 0, rows 53..65 miss tap 2.
        let runs = axis_runs(65, 1, 3, 12, 12, 65);
        assert_eq!(runs, vec![(0..12, 1..3), (12..53, 0..3), (53..65, 0..2)]);
        // Rate 36: rows 29..36 see the centre tap only.
        let runs = axis_runs(65, 1, 3, 36, 36, 65);
        assert_eq!(runs, vec![(0..29, 1..3), (29..36, 1..2), (36..65, 0..2)]);
        let regions = tap_regions(&geometry(Hw::square(65), 24, 1));
        assert_eq!(regions.len(), 9);
        assert!((planned_share(&geometry(Hw::square(65), 24, 1), &regions) - 0.57).abs() < 0.01);
    }

    #[test]
    fn small_dilations_plan_one_region() {
        for (size, rate, stride) in [(65, 1, 1), (65, 2, 1), (65, 4, 1), (129, 1, 1), (65, 1, 2), (7, 1, 1), (14, 1, 1)] {
            let g = geometry(Hw::square(size), rate, stride);
            let regions = tap_regions(&g);
            assert_eq!(regions.len(), 1, "{size} rate {rate} stride {stride}: {regions:?}");
            assert_eq!(planned_share(&g, &regions), 1.0);
        }
    }

    #[test]
    fn regions_cover_every_pixel_and_its_valid_taps() {
        for (size, rate, stride) in [(Hw::new(21, 17), 24, 1), (Hw::new(9, 30), 5, 2), (Hw::new(1, 1), 3, 1), (Hw::new(65, 40), 36, 3)] {
            let g = geometry(size, rate, stride);
            let mut seen = vec![0; g.output.h * g.output.w];
            for r in tap_regions(&g) {
                for (y, x) in r.rows.clone().flat_map(|y| r.cols.clone().map(move |x| (y, x))) {
                    seen[y * g.output.w + x] += 1;
                    let ky = valid_taps(y * stride, 3, rate, rate, size.h);
                    let kx = valid_taps(x * stride, 3, rate, rate, size.w);
                    assert!(ky.is_empty() || (r.ky.start <= ky.start && ky.end <= r.ky.end), "{r:?} at row {y}: {ky:?}");
                    assert!(kx.is_empty() || (r.kx.start <= kx.start && kx.end <= r.kx.end), "{r:?} at column {x}: {kx:?}");
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{size:?} rate {rate}");
        }
    }
}
