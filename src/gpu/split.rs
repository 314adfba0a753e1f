//! Window ops whose tensors are larger than one storage binding, planned as parts.
//!
//! A part is a window op of its own over some samples, a block of output channels (whole groups,
//! or a slice of one group) and a band of output rows. It reads the input channels of its groups
//! and only the input rows its taps reach, dilation and padding included; the caller copies those
//! into a scratch buffer, runs the part, and copies its dense output back (src/gpu/window.rs).
//! The part's geometry moves the padding to where its band starts, so every kernel runs it
//! unchanged and computes exactly the taps of the whole op: a forward band that starts inside the
//! image has no top padding, and its bottom padding is simply the rows it was not given.
//!
//! Channels are blocked only where a block's weights, or one row of the whole, would not fit;
//! then rows are cut into as few bands as fit, of equal depth where that fits too.

use std::ops::Range;

use crate::shape::{ConvKind, Hw, WindowGeometry};

/// Output channels of a part and the input channels they read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChannelBlock {
    pub out: Range<usize>,
    pub input: Range<usize>,
    /// The groups the block spans (1 for a slice of one group).
    pub groups: usize,
}

/// One dispatch of a split window op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WindowPart {
    pub samples: Range<usize>,
    /// Index into the op's channel blocks.
    pub block: usize,
    pub out_rows: Range<usize>,
    pub in_rows: Range<usize>,
    /// The part as a window op of its own, on dense copies of its input and output.
    pub geometry: WindowGeometry,
}

/// What does not fit even when split as finely as the planner can.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unsplittable {
    pub what: &'static str,
    pub values: u64,
}

/// The op restricted to `block`'s channels (all rows): what its weights are packed for.
pub(crate) fn block_geometry(g: &WindowGeometry, block: &ChannelBlock) -> WindowGeometry {
    WindowGeometry { c_in: block.input.len(), c_out: block.out.len(), groups: block.groups, ..*g }
}

/// The blocks of at most `size` output channels: whole groups where a group has no more, else
/// slices of each group.
fn blocks_of(g: &WindowGeometry, size: usize) -> Vec<ChannelBlock> {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    if size >= cog {
        let per_block = size / cog;
        (0..g.groups)
            .step_by(per_block)
            .map(|first| {
                let end = (first + per_block).min(g.groups);
                ChannelBlock { out: first * cog..end * cog, input: first * cig..end * cig, groups: end - first }
            })
            .collect()
    } else {
        (0..g.groups)
            .flat_map(|group| {
                (0..cog).step_by(size).map(move |first| ChannelBlock {
                    out: group * cog + first..group * cog + (first + size).min(cog),
                    input: group * cig..(group + 1) * cig,
                    groups: 1,
                })
            })
            .collect()
    }
}

/// The input rows the output rows `out` read, and the top padding of the band that starts there.
pub(crate) fn band_rows(g: &WindowGeometry, out: &Range<usize>) -> (Range<usize>, usize) {
    let (s, p, d, k, h) = (g.stride.h, g.padding.h, g.dilation.h, g.kernel.h, g.input.h);
    let rows = out.len();
    match g.kind {
        ConvKind::Transposed => {
            // Output row o sums input rows i with i·s = o + p − t·d: from ⌈(o + p − d(k−1))/s⌉
            // to ⌊(o + p)/s⌋. Starting lower (the floor) keeps the band's padding p + o − a·s
            // non-negative; extra rows are never read, as the kernels gather by output.
            let a = ((out.start + p).saturating_sub(d * (k - 1)) / s).min(h - 1);
            let b = ((out.end - 1 + p) / s + 1).clamp(a + 1, h);
            (a..b, p + out.start - a * s)
        }
        _ => {
            // Output row o reads rows o·s − p + t·d, t < k.
            let top = (out.start * s) as i64 - p as i64;
            let bottom = ((out.end - 1) * s + d * (k - 1) + 1) as i64 - p as i64;
            let (a, b) = (top.max(0), bottom.min(h as i64));
            if b > a {
                (a as usize..b as usize, (a - top) as usize)
            } else if top < 0 {
                // Every tap above the image: one row given, all taps land in the padding above it.
                (0..1, (-top) as usize)
            } else {
                // Every tap below the image: padding that puts all taps above the one row given.
                (h - 1..h, (rows - 1) * s + d * (k - 1) + 1)
            }
        }
    }
}

/// The part over `samples × block × out_rows`, reading `in_rows` with `pad_top` above them.
fn part(g: &WindowGeometry, index: usize, block: &ChannelBlock, samples: Range<usize>, out_rows: Range<usize>, (in_rows, pad_top): (Range<usize>, usize)) -> WindowPart {
    let geometry = WindowGeometry {
        batch: samples.len(),
        input: Hw::new(in_rows.len(), g.input.w),
        output: Hw::new(out_rows.len(), g.output.w),
        padding: Hw::new(pad_top, g.padding.w),
        ..block_geometry(g, block)
    };
    WindowPart { samples, block: index, out_rows, in_rows, geometry }
}

fn values(samples: usize, channels: usize, rows: usize, width: usize) -> u64 {
    (samples * channels * rows * width) as u64
}

/// Bands of output rows as few as fit `limit` for one sample of a block with these
/// channels; `None` when one row does not fit.
fn bands(g: &WindowGeometry, c_in: usize, c_out: usize, limit: u64) -> Option<Vec<Range<usize>>> {
    let fits = |rows: Range<usize>| {
        values(1, c_in, band_rows(g, &rows).0.len(), g.input.w) <= limit && values(1, c_out, rows.len(), g.output.w) <= limit
    };
    let mut bands = Vec::new();
    let mut start = 0;
    while start < g.output.h {
        if !fits(start..start + 1) {
            return None;
        }
        // The deepest band from `start` that fits (the rows read grow with the band).
        let (mut deepest, mut beyond) = (start + 1, g.output.h + 1);
        while beyond - deepest > 1 {
            let mid = (deepest + beyond) / 2;
            if fits(start..mid) {
                deepest = mid;
            } else {
                beyond = mid;
            }
        }
        bands.push(start..deepest);
        start = deepest;
    }
    // As many bands of equal depth where they fit: no thin last band (a dispatch of few rows).
    let depth = g.output.h.div_ceil(bands.len());
    let even: Vec<Range<usize>> = (0..g.output.h).step_by(depth).map(|first| first..(first + depth).min(g.output.h)).collect();
    Some(if even.len() == bands.len() && even.iter().all(|band| fits(band.clone())) { even } else { bands })
}

/// The channel blocks `g` runs in under a binding limit of `limit` values: all channels at once
/// unless a block's weights (`weight_len` of its [`block_geometry`]) or one output row of one
/// sample would not fit, then ever smaller blocks.
pub(crate) fn channel_blocks(g: &WindowGeometry, limit: u64, weight_len: &dyn Fn(&WindowGeometry) -> u64) -> Result<Vec<ChannelBlock>, Unsplittable> {
    let mut size = g.c_out;
    loop {
        let blocks = blocks_of(g, size);
        let fit = |b: &ChannelBlock| weight_len(&block_geometry(g, b)) <= limit && bands(g, b.input.len(), b.out.len(), limit).is_some();
        if blocks.iter().all(fit) {
            return Ok(blocks);
        }
        if size == 1 {
            let block = &blocks[0];
            let weights = weight_len(&block_geometry(g, block));
            return Err(if weights > limit {
                Unsplittable { what: "the weights of one output channel", values: weights }
            } else {
                // A middle row: its band spans the whole dilated kernel.
                let one_row = g.output.h / 2..g.output.h / 2 + 1;
                Unsplittable { what: "the input rows one output row of one channel reads", values: values(1, block.input.len(), band_rows(g, &one_row).0.len(), g.input.w) }
            });
        }
        size = size.div_ceil(2);
    }
}

/// The parts `g` runs in over `blocks` (from [`channel_blocks`] with the same limit): one part,
/// the op itself, when a single block's tensors fit; else groups of whole samples where one
/// sample of every block fits, else bands of rows of one sample. Bands are the same for every
/// block (cut for the largest) and come band by band, each band's blocks in a row: where the
/// blocks read the same input channels (an ungrouped convolution), they read the same copy.
pub(crate) fn window_parts(g: &WindowGeometry, blocks: &[ChannelBlock], limit: u64) -> Vec<WindowPart> {
    let c_in = blocks.iter().map(|b| b.input.len()).max().expect("an op has channels");
    let c_out = blocks.iter().map(|b| b.out.len()).max().expect("an op has channels");
    let sample = values(1, c_in, g.input.h, g.input.w).max(values(1, c_out, g.output.h, g.output.w));
    let mut parts = Vec::new();
    if sample <= limit {
        // All rows, with the op's own padding: a part that is the whole op equals it.
        let per_part = ((limit / sample) as usize).min(g.batch);
        for (index, block) in blocks.iter().enumerate() {
            for first in (0..g.batch).step_by(per_part) {
                let samples = first..(first + per_part).min(g.batch);
                parts.push(part(g, index, block, samples, 0..g.output.h, (0..g.input.h, g.padding.h)));
            }
        }
    } else {
        let bands = bands(g, c_in, c_out, limit).expect("channel_blocks made every block's rows fit");
        for n in 0..g.batch {
            for out_rows in &bands {
                for (index, block) in blocks.iter().enumerate() {
                    parts.push(part(g, index, block, n..n + 1, out_rows.clone(), band_rows(g, out_rows)));
                }
            }
        }
    }
    parts
}

/// Runs `(offset in the tensor, offset in the dense block, length)` of the block of an NCHW
/// tensor of `shape` at `samples × channels × rows` (all columns), in the dense block's order.
pub(crate) fn block_runs(shape: [usize; 4], samples: Range<usize>, channels: Range<usize>, rows: Range<usize>) -> impl Iterator<Item = (usize, usize, usize)> {
    let [_, c, h, w] = shape;
    let (channel_count, row_count) = (channels.len(), rows.len());
    samples.enumerate().flat_map(move |(i, n)| {
        let rows = rows.clone();
        channels.clone().enumerate().map(move |(j, ch)| (((n * c + ch) * h + rows.start) * w, ((i * channel_count + j) * row_count) * w, row_count * w))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::{Conv2dParams, ConvTranspose2dParams};

    fn forward(c_in: usize, c_out: usize, size: Hw, k: usize, p: Conv2dParams) -> WindowGeometry {
        p.geometry(&[1, c_in, size.h, size.w], &[c_out, c_in / p.groups, k, k], None).unwrap()
    }

    /// Every output row's taps, in image rows: from the part, shifted by where its band starts,
    /// they are the same as from the whole op.
    fn taps(g: &WindowGeometry, o: usize) -> Vec<i64> {
        (0..g.kernel.h as i64).map(|t| (o * g.stride.h) as i64 - g.padding.h as i64 + t * g.dilation.h as i64).collect()
    }

    #[test]
    fn a_forward_band_reads_what_its_rows_reach_with_the_padding_moved() {
        // 3×3, dilation 2, padding 2, 20 rows: output row o reads o−2, o, o+2.
        let g = forward(1, 1, Hw::new(20, 5), 3, Conv2dParams { padding: Hw::square(2), dilation: Hw::square(2), ..Default::default() });
        assert_eq!(band_rows(&g, &(0..5)), (0..7, 2));
        assert_eq!(band_rows(&g, &(5..10)), (3..12, 0));
        assert_eq!(band_rows(&g, &(15..20)), (13..20, 0));
        for band in [0..5, 5..10, 15..20, 7..8] {
            let (rows, pad) = band_rows(&g, &band);
            let part = WindowGeometry { input: Hw::new(rows.len(), 5), output: Hw::new(band.len(), 5), padding: Hw::new(pad, 2), ..g };
            for o in band.clone() {
                let whole: Vec<i64> = taps(&g, o).into_iter().filter(|&r| (0..20).contains(&r)).collect();
                let shifted: Vec<i64> = taps(&part, o - band.start).into_iter().filter(|&r| (0..rows.len() as i64).contains(&r)).map(|r| r + rows.start as i64).collect();
                assert_eq!(whole, shifted, "band {band:?}, output row {o}");
            }
        }
    }

    #[test]
    fn bands_whose_taps_all_miss_the_image_read_one_row_in_the_padding() {
        // A 1×1 kernel with padding 3 on 2 rows: output rows 0–2 and 5–7 read only padding.
        let g = forward(1, 1, Hw::new(2, 2), 1, Conv2dParams { padding: Hw::square(3), ..Default::default() });
        assert_eq!(g.output.h, 8);
        assert_eq!(band_rows(&g, &(0..3)), (0..1, 3));
        let (rows, pad) = band_rows(&g, &(5..8));
        assert_eq!(rows, 1..2);
        // Its rows read 0 − pad … 2 − pad relative to the one row given: all above it.
        assert_eq!(pad, 3);
    }

    #[test]
    fn a_transposed_band_starts_at_the_lowest_input_row_it_gathers() {
        // k 4, stride 2, padding 1: output o gathers inputs i with 2i = o + 1 − t, t < 4.
        let p = ConvTranspose2dParams { stride: Hw::square(2), padding: Hw::square(1), ..Default::default() };
        let g = p.geometry(&[1, 1, 10, 3], &[1, 1, 4, 4], None).unwrap();
        assert_eq!(g.output.h, 20);
        let (rows, pad) = band_rows(&g, &(6..10));
        // o = 6 needs i ≥ ⌈(7 − 3)/2⌉ = 2; o = 9 needs i ≤ ⌊10/2⌋ = 5.
        assert!(rows.start <= 2 && rows.end == 6, "{rows:?}");
        assert_eq!(pad, 1 + 6 - rows.start * 2);
    }

    #[test]
    fn blocks_are_whole_groups_or_slices_of_one() {
        let g = forward(8, 12, Hw::square(4), 3, Conv2dParams { groups: 4, ..Default::default() });
        let b = blocks_of(&g, 6);
        assert_eq!(b.len(), 2);
        assert_eq!((b[1].out.clone(), b[1].input.clone(), b[1].groups), (6..12, 4..8, 2));
        let b = blocks_of(&g, 2);
        assert_eq!(b.len(), 8);
        assert_eq!((b[1].out.clone(), b[1].input.clone(), b[1].groups), (2..3, 0..2, 1));
    }

    #[test]
    fn parts_cover_every_output_once_and_fit_the_limit() {
        let p = Conv2dParams { stride: Hw::square(2), padding: Hw::square(3), dilation: Hw::square(3), groups: 2 };
        let g = p.geometry(&[3, 8, 37, 11], &[16, 4, 3, 3], None).unwrap();
        let limit = 512;
        let weight_len = |b: &WindowGeometry| (b.c_out * b.c_in_per_group() * 9) as u64;
        let blocks = channel_blocks(&g, limit, &weight_len).unwrap();
        let parts = window_parts(&g, &blocks, limit);
        let mut covered = vec![0; g.output_shape().iter().product()];
        for part in &parts {
            let block = &blocks[part.block];
            assert!(values(part.samples.len(), block.input.len(), part.in_rows.len(), g.input.w) <= limit);
            assert!(values(part.samples.len(), block.out.len(), part.out_rows.len(), g.output.w) <= limit);
            for (offset, _, len) in block_runs(g.output_shape(), part.samples.clone(), block.out.clone(), part.out_rows.clone()) {
                covered[offset..offset + len].iter_mut().for_each(|c| *c += 1);
            }
        }
        assert!(covered.iter().all(|&c| c == 1));
        assert!(parts.len() > 3);
    }
}
