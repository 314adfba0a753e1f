use std::ops::Range;

use rayon::prelude::*;

use super::tap_regions::{planned_share, tap_regions, TapRegion, SKIP_BELOW};
use super::{sgemm, sgemm_with, tap_position, TapSkipping};
use crate::shape::WindowGeometry;

/// Direct-loop convolution accumulating in f64: slow, simple, and the gold standard.
pub fn conv2d_reference(g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let mut out = Vec::with_capacity(g.output_shape().iter().product());
    for n in 0..g.batch {
        for co in 0..g.c_out {
            let group = co / cog;
            for oy in 0..g.output.h {
                for ox in 0..g.output.w {
                    let mut acc = bias.map_or(0.0, |b| b[co] as f64);
                    for ci_local in 0..cig {
                        let ci = group * cig + ci_local;
                        for ky in 0..g.kernel.h {
                            let Some(iy) = tap_position(oy * g.stride.h, ky, g.dilation.h, g.padding.h, g.input.h) else { continue };
                            for kx in 0..g.kernel.w {
                                let Some(ix) = tap_position(ox * g.stride.w, kx, g.dilation.w, g.padding.w, g.input.w) else { continue };
                                let x = input[((n * g.c_in + ci) * g.input.h + iy) * g.input.w + ix];
                                let w = weight[((co * cig + ci_local) * g.kernel.h + ky) * g.kernel.w + kx];
                                acc += x as f64 * w as f64;
                            }
                        }
                    }
                    out.push(acc as f32);
                }
            }
        }
    }
    out
}

/// im2col + SGEMM convolution, parallel over (batch, group). With `skipping`, a convolution
/// whose taps often read only padding (a dilation large next to the map) runs region by region
/// ([`conv2d_regions`]).
pub fn conv2d(g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>, skipping: TapSkipping) -> Vec<f32> {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let in_plane = g.input.h * g.input.w;
    let pixels = g.output.h * g.output.w;
    let taps = g.kernel.h * g.kernel.w;
    let depth = cig * taps; // the GEMM's K
    let pointwise = taps == 1 && g.stride == crate::shape::Hw::square(1) && g.padding == crate::shape::Hw::square(0);
    let regions = match skipping {
        TapSkipping::Off => None,
        TapSkipping::Auto => Some(tap_regions(g)).filter(|r| !pointwise && planned_share(g, r) <= SKIP_BELOW),
        TapSkipping::Always => Some(tap_regions(g)),
    };
    // Tap-major weights only where a region takes several taps of a kernel row (conv2d_regions).
    let t = std::time::Instant::now();
    let tap_major = regions.as_ref().filter(|r| r.iter().any(|r| r.kx.len() > 1)).map(|_| tap_major_weights(g, weight));
    if std::env::var("ATROUS_CPU_PROFILE").is_ok() {
        eprintln!("reorder {:?}", t.elapsed());
    }
    let mut out = vec![0.0f32; g.output_shape().iter().product()];
    out.par_chunks_mut(cog * pixels).enumerate().for_each(|(slab, out_slab)| {
        let (n, group) = (slab / g.groups, slab % g.groups);
        let x = &input[(n * g.c_in + group * cig) * in_plane..][..cig * in_plane];
        let w = &weight[group * cog * depth..][..cog * depth];
        if let Some(regions) = &regions {
            let tap_major = tap_major.as_ref().map(|t| &t[group * cog * depth..][..cog * depth]);
            conv2d_regions(g, regions, x, w, tap_major, out_slab);
        } else if pointwise {
            // A 1×1 stride-1 unpadded conv is already a GEMM on the input plane.
            sgemm(cog, depth, pixels, w, depth, 1, x, out_slab);
        } else {
            // Taken out, not borrowed: while im2col and the GEMM wait for their parallel parts,
            // rayon may run another slab on this thread, which then takes its own matrix.
            let mut cols = COLUMNS.take();
            let t0 = std::time::Instant::now();
            im2col(g, x, cig, &mut cols);
            let t1 = std::time::Instant::now();
            sgemm(cog, depth, pixels, w, depth, 1, &cols, out_slab);
            if std::env::var("ATROUS_CPU_PROFILE").is_ok() {
                eprintln!("plain im2col {:?} gemm {:?}", t1 - t0, t1.elapsed());
            }
            COLUMNS.set(cols);
        }
        if let Some(b) = bias {
            for (co_local, row) in out_slab.chunks_mut(pixels).enumerate() {
                let value = b[group * cog + co_local];
                row.iter_mut().for_each(|v| *v += value);
            }
        }
    });
    out
}

/// The weight `[C_out, C_in/groups, kH, kW]` reordered to `[C_out, kH, kW, C_in/groups]`: with K
/// tap-major, the taps `kx0..kx1` of one kernel row are one contiguous range of K.
fn tap_major_weights(g: &WindowGeometry, weight: &[f32]) -> Vec<f32> {
    let (cig, taps) = (g.c_in_per_group(), g.kernel.h * g.kernel.w);
    let mut reordered = vec![0.0f32; weight.len()];
    reordered.par_chunks_mut(cig * taps).zip(weight.par_chunks(cig * taps)).for_each(|(dst, src)| {
        for (ci, per_tap) in src.chunks(taps).enumerate() {
            for (t, &v) in per_tap.iter().enumerate() {
                dst[t * cig + ci] = v;
            }
        }
    });
    reordered
}

fn channel_block() -> usize {
    std::env::var("ATROUS_CPU_MBLOCK").ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// One sample's group through `regions`. Each region has its own im2col, of its taps alone,
/// with K ordered (ky, kx, ci): a kernel row's taps are then one range of K, in the im2col and
/// in the tap-major weight, so each kernel row of the region is one SGEMM, accumulating (one
/// SGEMM for the region where it takes whole kernel rows). A single tap's weights are read in
/// place, with a stride, from `w` (`[cog, cig, kH, kW]`); several taps' from `tap_major`. The
/// products go to a scratch matrix per region, then into place.
fn conv2d_regions(g: &WindowGeometry, regions: &[TapRegion], x: &[f32], w: &[f32], tap_major: Option<&[f32]>, out_slab: &mut [f32]) {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let (kw, taps) = (g.kernel.w, g.kernel.h * g.kernel.w);
    let depth = cig * taps;
    let pixels = g.output.h * g.output.w;
    let profile = std::env::var("ATROUS_CPU_PROFILE").is_ok();
    let t0 = std::time::Instant::now();
    let mut cols = COLUMNS.take();
    let mut results = RESULTS.take();
    cols.resize(regions.iter().map(|r| r.taps() * cig * r.pixels()).sum(), 0.0);
    results.resize(cog * pixels, 0.0);
    regions_im2col(g, regions, x, cig, &mut cols);
    let t1 = std::time::Instant::now();

    let block = match channel_block() {
        0 => cog,
        b => b.min(cog),
    };
    let threads = if block == cog { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
    let mut tasks: Vec<(&TapRegion, usize, &[f32], &mut [f32])> = Vec::new();
    let (mut cols_rest, mut results_rest) = (&cols[..], &mut results[..]);
    for r in regions {
        let (b, tail) = cols_rest.split_at(r.taps() * cig * r.pixels());
        cols_rest = tail;
        let (dst, tail) = results_rest.split_at_mut(cog * r.pixels());
        results_rest = tail;
        if r.pixels() > 0 {
            for (i, dst_block) in dst.chunks_mut(block * r.pixels()).enumerate() {
                tasks.push((r, i * block, b, dst_block));
            }
        }
    }
    let run = |(r, co0, b, dst): (&TapRegion, usize, &[f32], &mut [f32])| {
        let (n, m) = (r.pixels(), dst.len() / r.pixels());
        if r.taps() == 0 {
            dst.fill(0.0);
        } else if r.kx.len() == 1 {
            for (i, ky) in r.ky.clone().enumerate() {
                let a = &w[co0 * depth + ky * kw + r.kx.start..];
                sgemm_with(m, cig, n, a, depth, taps, &b[i * cig * n..][..cig * n], dst, i > 0, threads);
            }
        } else {
            let a = &tap_major.expect("tap-major weights where a region takes several taps of a row")[co0 * depth..];
            if r.kx.len() == kw {
                // Whole kernel rows: the region's K is one range.
                sgemm_with(m, r.taps() * cig, n, &a[r.ky.start * kw * cig..], depth, 1, b, dst, false, threads);
            } else {
                let k = r.kx.len() * cig;
                for (i, ky) in r.ky.clone().enumerate() {
                    let a = &a[(ky * kw + r.kx.start) * cig..];
                    sgemm_with(m, k, n, a, depth, 1, &b[i * k * n..][..k * n], dst, i > 0, threads);
                }
            }
        }
    };
    if block == cog {
        tasks.into_iter().for_each(run);
    } else {
        tasks.into_par_iter().for_each(run);
    }
    let t2 = std::time::Instant::now();

    // Into place: each output channel's plane gathers its rows from every region.
    out_slab.par_chunks_mut(pixels).enumerate().for_each(|(co, plane)| {
        let mut offset = 0;
        for r in regions {
            let src = &results[offset + co * r.pixels()..][..r.pixels()];
            offset += cog * r.pixels();
            for (y, row) in r.rows.clone().zip(src.chunks(r.cols.len())) {
                plane[y * g.output.w + r.cols.start..][..r.cols.len()].copy_from_slice(row);
            }
        }
    });
    if profile {
        eprintln!("regions {} im2col {:?} gemm {:?} scatter {:?}", regions.len(), t1 - t0, t2 - t1, t2.elapsed());
    }
    COLUMNS.set(cols);
    RESULTS.set(results);
}

/// Input channels per im2col task of the region path.
const IM2COL_CHANNELS: usize = 8;

/// Every region's im2col, one after the other in `cols`: `[taps·cig, pixels]` matrices, rows
/// ordered (ky, kx, ci) over the region's taps, columns its pixels row by row. The tasks are
/// blocks of input channels, so each plane is read once, while it is in cache, for every
/// region and tap (rows in K order would read a new plane for every row).
fn regions_im2col(g: &WindowGeometry, regions: &[TapRegion], x: &[f32], cig: usize, cols: &mut [f32]) {
    let blocks = cig.div_ceil(IM2COL_CHANNELS);
    let mut tasks: Vec<Vec<(&TapRegion, usize, usize, &mut [f32])>> = (0..blocks).map(|_| Vec::new()).collect();
    let mut rest = cols;
    for r in regions {
        let (part, tail) = rest.split_at_mut(r.taps() * cig * r.pixels());
        rest = tail;
        if part.is_empty() {
            continue;
        }
        for (tap, per_tap) in part.chunks_mut(cig * r.pixels()).enumerate() {
            let (ky, kx) = (r.ky.start + tap / r.kx.len(), r.kx.start + tap % r.kx.len());
            for (block, rows) in per_tap.chunks_mut(IM2COL_CHANNELS * r.pixels()).enumerate() {
                tasks[block].push((r, ky, kx, rows));
            }
        }
    }
    let in_plane = g.input.h * g.input.w;
    tasks.into_par_iter().enumerate().for_each(|(block, mut pieces)| {
        for ci in block * IM2COL_CHANNELS..((block + 1) * IM2COL_CHANNELS).min(cig) {
            let plane = &x[ci * in_plane..][..in_plane];
            for (r, ky, kx, rows) in pieces.iter_mut() {
                let row = &mut rows[(ci % IM2COL_CHANNELS) * r.pixels()..][..r.pixels()];
                gather_tap(g, plane, *ky, *kx, r.rows.clone(), r.cols.clone(), row);
            }
        }
    });
}

/// The output positions `o` (on one axis) whose tap reads inside the input:
/// `o·stride + tap·dilation − padding` in `0..size`.
fn positions_inside(tap: usize, stride: usize, dilation: usize, padding: usize, size: usize) -> Range<usize> {
    let offset = tap * dilation;
    let first = if offset >= padding { 0 } else { (padding - offset).div_ceil(stride) };
    let end = if size + padding > offset { (size - 1 + padding - offset) / stride + 1 } else { 0 };
    first..end.max(first)
}

fn intersect(a: &Range<usize>, b: &Range<usize>) -> Range<usize> {
    let start = a.start.max(b.start);
    start..a.end.min(b.end).max(start)
}

/// One im2col row: what tap `(ky, kx)` reads from `plane` for the output pixels `rows × cols`,
/// row by row into `dst`; pixels whose tap lands in the padding get zeros.
fn gather_tap(g: &WindowGeometry, plane: &[f32], ky: usize, kx: usize, rows: Range<usize>, cols: Range<usize>, dst: &mut [f32]) {
    let inside_rows = intersect(&rows, &positions_inside(ky, g.stride.h, g.dilation.h, g.padding.h, g.input.h));
    let inside = intersect(&cols, &positions_inside(kx, g.stride.w, g.dilation.w, g.padding.w, g.input.w));
    let (before, len) = (inside.start - cols.start, inside.len());
    // The input column of the first pixel inside.
    let first_ix = (inside.start * g.stride.w + kx * g.dilation.w).wrapping_sub(g.padding.w);
    for (oy, d) in rows.zip(dst.chunks_mut(cols.len())) {
        if !inside_rows.contains(&oy) || len == 0 {
            d.fill(0.0);
            continue;
        }
        let iy = oy * g.stride.h + ky * g.dilation.h - g.padding.h;
        let src = &plane[iy * g.input.w + first_ix..];
        d[..before].fill(0.0);
        d[before + len..].fill(0.0);
        let d = &mut d[before..before + len];
        if g.stride.w == 1 {
            d.copy_from_slice(&src[..len]);
        } else {
            d.iter_mut().enumerate().for_each(|(i, v)| *v = src[i * g.stride.w]);
        }
    }
}

thread_local! {
    /// The im2col matrix, kept per thread between calls: allocating (and faulting in) tens of
    /// megabytes for every convolution cost as much as the arithmetic.
    static COLUMNS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The region path's products, region after region, before they are copied into place.
    static RESULTS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Unfolds one sample's group of channels into `cols`, a `[cig·kH·kW, OH·OW]` matrix, rows in
/// parallel; every element is written (taps that fall into the padding are zero).
fn im2col(g: &WindowGeometry, x: &[f32], cig: usize, cols: &mut Vec<f32>) {
    let pixels = g.output.h * g.output.w;
    cols.resize(cig * g.kernel.h * g.kernel.w * pixels, 0.0);
    cols.par_chunks_mut(pixels).enumerate().for_each(|(row, col_row)| {
        let kx = row % g.kernel.w;
        let ky = (row / g.kernel.w) % g.kernel.h;
        let ci = row / (g.kernel.w * g.kernel.h);
        let plane = &x[ci * g.input.h * g.input.w..][..g.input.h * g.input.w];
        gather_tap(g, plane, ky, kx, 0..g.output.h, 0..g.output.w, col_row);
    });
}
