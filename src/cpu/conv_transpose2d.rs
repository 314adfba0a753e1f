use std::ops::Range;

use rayon::prelude::*;

use super::implicit_gemm::{correlate, Axis, Correlation, GemmKernel, Output, PackedWeights, WeightStrides, Weights};
use super::{intersect, positions_inside, sgemm, sgemm_strided, Epilogue, TapSkipping};
use crate::shape::WindowGeometry;

/// The output position that input position `i` and kernel tap `tap` contribute to, if any:
/// `i·stride + tap·dilation − padding`, within `0..size`.
#[inline]
fn scatter_position(i: usize, stride: usize, tap: usize, dilation: usize, padding: usize, size: usize) -> Option<usize> {
    (i * stride + tap * dilation).checked_sub(padding).filter(|&o| o < size)
}

/// Direct-loop transposed convolution accumulating in f64: every input pixel scatters its
/// kernel-weighted value into the output (the definition, no inserted zeros).
pub fn conv_transpose2d_reference(g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let plane = g.output.h * g.output.w;
    let mut acc = vec![0.0f64; g.output_shape().iter().product()];
    for n in 0..g.batch {
        for ci in 0..g.c_in {
            let group = ci / cig;
            for iy in 0..g.input.h {
                for ix in 0..g.input.w {
                    let x = input[((n * g.c_in + ci) * g.input.h + iy) * g.input.w + ix] as f64;
                    for co_local in 0..cog {
                        let co = group * cog + co_local;
                        for ky in 0..g.kernel.h {
                            let Some(oy) = scatter_position(iy, g.stride.h, ky, g.dilation.h, g.padding.h, g.output.h) else { continue };
                            for kx in 0..g.kernel.w {
                                let Some(ox) = scatter_position(ix, g.stride.w, kx, g.dilation.w, g.padding.w, g.output.w) else { continue };
                                let w = weight[((ci * cog + co_local) * g.kernel.h + ky) * g.kernel.w + kx] as f64;
                                acc[(n * g.c_out + co) * plane + oy * g.output.w + ox] += x * w;
                            }
                        }
                    }
                }
            }
        }
    }
    acc.chunks(plane)
        .enumerate()
        .flat_map(|(nc, row)| {
            let b = bias.map_or(0.0, |b| b[nc % g.c_out] as f64);
            row.iter().map(move |v| (v + b) as f32)
        })
        .collect()
}

/// The fast transposed convolution: output phase by output phase on the packed implicit GEMM
/// ([`GemmKernel::from_env`]) where a group has enough output channels to fill its tiles and
/// [`skips_transposed_taps`] does not send it tap by tap, else [`conv_transpose2d_sgemm`].
pub fn conv_transpose2d(g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>, skipping: TapSkipping) -> Vec<f32> {
    conv_transpose2d_on(g, input, weight, bias, skipping, GemmKernel::from_env())
}

/// [`conv_transpose2d`] on the given micro-kernel, or (`None`) on [`conv_transpose2d_sgemm`].
pub fn conv_transpose2d_on(g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>, skipping: TapSkipping, kernel: Option<GemmKernel>) -> Vec<f32> {
    match kernel {
        Some(kernel) if super::winograd::transposed_winograd_applies(g) => super::winograd::conv_transpose2d_winograd(g, input, weight, bias, kernel),
        Some(kernel) if g.c_out_per_group() >= 4 && !skips_transposed_taps(g, skipping) => conv_transpose2d_by_phase(kernel, g, input, weight, bias, skipping),
        _ => conv_transpose2d_sgemm(g, input, weight, bias, skipping),
    }
}

/// One output phase of one axis: the output positions `phase + stride·q` (the phase axis's
/// outputs `q`) receive, from tap `taps[j]`, input position `q + axis.offsets[j]` — a forward
/// correlation at stride 1 with the taps whose `tap·dilation` is congruent to `phase + padding`.
struct Phase {
    phase: usize,
    taps: Vec<usize>,
    axis: Axis,
}

/// The phases of one axis (`stride` of them; a phase beyond the output, or without taps, has no
/// outputs or only the bias).
fn phases(kernel: usize, stride: usize, dilation: usize, padding: usize, input: usize, output: usize) -> Vec<Phase> {
    (0..stride.min(output))
        .map(|phase| {
            // o = i·stride + t·dilation − padding, so i = q + (phase + padding − t·dilation) / stride.
            let taps: Vec<usize> = (0..kernel).filter(|t| (phase + padding + kernel * dilation * stride - t * dilation).is_multiple_of(stride)).collect();
            let offsets = taps.iter().map(|&t| (phase as isize + padding as isize - (t * dilation) as isize).div_euclid(stride as isize)).collect();
            Phase { phase, taps, axis: Axis { stride: 1, input, output: (output - phase).div_ceil(stride), offsets } }
        })
        .collect()
}

/// The transposed convolution as one forward correlation per output phase (`stride.h ×
/// stride.w` of them, computed at once), no col2im: each phase's pixels are computed by the
/// implicit GEMM into dense planes (straight into the output at stride 1) and then laid into
/// their places.
fn conv_transpose2d_by_phase(kernel: GemmKernel, g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>, skipping: TapSkipping) -> Vec<f32> {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let taps = g.kernel.h * g.kernel.w;
    let (in_pixels, out_plane) = (g.input.h * g.input.w, g.output.h * g.output.w);
    let row_phases = phases(g.kernel.h, g.stride.h, g.dilation.h, g.padding.h, g.input.h, g.output.h);
    let col_phases = phases(g.kernel.w, g.stride.w, g.dilation.w, g.padding.w, g.input.w, g.output.w);
    let in_place = g.stride == crate::shape::Hw::square(1);
    // Every output element is written once: by the one phase's correlation at stride 1, else by
    // laying the phases' sums (and the bias) into place.
    let len = g.batch * g.c_out * out_plane;
    let mut out = Vec::with_capacity(len);
    for group in 0..g.groups {
        let w = &weight[group * cig * cog * taps..][..cig * cog * taps];
        // The group's weight is [cig, cog, kH, kW]: row co, channel ci.
        let strides = WeightStrides { row: taps, tap: 1, channel: cog * taps };
        let phase_pairs: Vec<(&Phase, &Phase)> = row_phases.iter().flat_map(|r| col_phases.iter().map(move |c| (r, c))).filter(|(r, c)| !r.taps.is_empty() && !c.taps.is_empty()).collect();
        let correlation = |rows: &Phase, cols: &Phase, n: usize| Correlation {
            rows: rows.axis.clone(),
            cols: cols.axis.clone(),
            channels: cig,
            input: &input[(n * g.c_in + group * cig) * in_pixels..][..cig * in_pixels],
            skip_padding: skipping != TapSkipping::Off,
        };
        let packed = |rows: &Phase, cols: &Phase| {
            let phase_taps: Vec<usize> = rows.taps.iter().flat_map(|ky| cols.taps.iter().map(move |kx| ky * g.kernel.w + kx)).collect();
            PackedWeights::new(kernel, cog, cig, &phase_taps, w, strides)
        };
        if in_place {
            // Stride 1: one phase (every tap), the output itself.
            assert_eq!(phase_pairs.len(), 1, "at stride 1 every tap is in phase 0");
            for &(rows, cols) in &phase_pairs {
                let a = packed(rows, cols);
                for n in 0..g.batch {
                    let slab = &mut out.spare_capacity_mut()[(n * g.c_out + group * cog) * out_plane..][..cog * out_plane];
                    let group_bias = bias.map(|b| &b[group * cog..][..cog]);
                    correlate(kernel, &correlation(rows, cols, n), Weights::Packed(&a), group_bias, Epilogue::NONE, Output::Fresh(slab));
                }
            }
        } else {
            // The phases at once (each correlation's blocks are rayon tasks too): one after the
            // other, each phase's few blocks left a core idle at its end.
            let dense: Vec<Vec<f32>> = phase_pairs
                .par_iter()
                .map(|&(rows, cols)| {
                    let a = packed(rows, cols);
                    let phase_pixels = rows.axis.output * cols.axis.output;
                    let mut planes = Vec::with_capacity(g.batch * cog * phase_pixels);
                    for (n, slab) in planes.spare_capacity_mut().chunks_mut(cog * phase_pixels).enumerate() {
                        correlate(kernel, &correlation(rows, cols, n), Weights::Packed(&a), None, Epilogue::NONE, Output::Fresh(slab));
                    }
                    // SAFETY: `correlate` wrote every element of each sample's slab.
                    unsafe { planes.set_len(g.batch * cog * phase_pixels) };
                    planes
                })
                .collect();
            // Each output element lies in one row phase and one column phase: it is the bias
            // plus that pair's sum (the bias alone where the pair has no taps). Written once,
            // row by row, where filling the bias first and adding each phase into it after
            // read and wrote the output twice more (a sixth of a k4 s2 layer's time).
            let mut pair_sums: Vec<Option<&[f32]>> = vec![None; row_phases.len() * col_phases.len()];
            for (&(rows, cols), planes) in phase_pairs.iter().zip(&dense) {
                pair_sums[rows.phase * col_phases.len() + cols.phase] = Some(planes);
            }
            out.spare_capacity_mut().par_chunks_mut(out_plane).enumerate().filter(|(plane, _)| plane / cog % g.groups == group).for_each(|(plane, dst)| {
                let (n, co) = (plane / g.c_out, plane % cog);
                let b = bias.map_or(0.0, |b| b[plane % g.c_out]);
                for rows in &row_phases {
                    for cols in &col_phases {
                        let phase_w = cols.axis.output;
                        let sums = pair_sums[rows.phase * col_phases.len() + cols.phase].map(|planes| &planes[(n * cog + co) * rows.axis.output * phase_w..][..rows.axis.output * phase_w]);
                        for q in 0..rows.axis.output {
                            let line = &mut dst[(rows.phase + q * g.stride.h) * g.output.w..][..g.output.w];
                            let outputs = line[cols.phase..].iter_mut().step_by(g.stride.w);
                            match sums {
                                Some(sums) => outputs.zip(&sums[q * phase_w..][..phase_w]).for_each(|(o, v)| {
                                    o.write(b + v);
                                }),
                                None => outputs.for_each(|o| {
                                    o.write(b);
                                }),
                            }
                        }
                    }
                }
            });
        }
    }
    // SAFETY: every (sample, group) slab was written whole above: by `correlate` at stride 1,
    // else every plane element by the phase it lies in.
    unsafe { out.set_len(len) };
    out
}

/// SGEMM + col2im transposed convolution, parallel over (batch, group): the GEMM computes every
/// (output channel, tap) contribution of every input pixel, col2im adds them into place. With
/// `skipping`, where many taps scatter outside the output (a dilation large next to the map;
/// [`skips_transposed_taps`]), it runs tap by tap instead ([`conv_transpose2d_by_tap`]).
pub fn conv_transpose2d_sgemm(g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>, skipping: TapSkipping) -> Vec<f32> {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let in_pixels = g.input.h * g.input.w;
    let out_plane = g.output.h * g.output.w;
    let taps = g.kernel.h * g.kernel.w;
    let rows = cog * taps;
    let by_tap = skips_transposed_taps(g, skipping);
    let mut out = vec![0.0f32; g.output_shape().iter().product()];
    out.par_chunks_mut(cog * out_plane).enumerate().for_each(|(slab, out_slab)| {
        let (n, group) = (slab / g.groups, slab % g.groups);
        let x = &input[(n * g.c_in + group * cig) * in_pixels..][..cig * in_pixels];
        // The group's weight is [cig, cog·kH·kW]; the GEMM reads it transposed.
        let w = &weight[group * cig * rows..][..cig * rows];
        if by_tap {
            conv_transpose2d_by_tap(g, x, w, out_slab);
        } else {
            let mut cols = vec![0.0f32; rows * in_pixels];
            sgemm(rows, cig, in_pixels, w, 1, rows, x, &mut cols);
            for (row, col_row) in cols.chunks(in_pixels).enumerate() {
                let dst = &mut out_slab[row / taps * out_plane..][..out_plane];
                let tap = row % taps;
                scatter_tap(g, tap / g.kernel.w, tap % g.kernel.w, 0..g.input.h, col_row, dst);
            }
        }
        if let Some(b) = bias {
            for (co_local, plane) in out_slab.chunks_mut(out_plane).enumerate() {
                let value = b[group * cog + co_local];
                plane.iter_mut().for_each(|v| *v += value);
            }
        }
    });
    out
}

/// [`TapSkipping::Auto`] runs tap by tap where the products that land inside the output are at
/// most this share of the nominal ones, on outputs of at least this many pixels (BENCHMARKS.md,
/// "Skipping padding taps in the CPU's transposed convolution"): on small maps the per-tap
/// products (K = the group's input channels) run further from the SGEMM's speed.
pub const TRANSPOSED_SKIP_BELOW: [(usize, f64); 2] = [(1600, 0.8), (256, 0.3)];

/// Whether `skipping` sends the transposed convolution `g` tap by tap.
pub fn skips_transposed_taps(g: &WindowGeometry, skipping: TapSkipping) -> bool {
    match skipping {
        TapSkipping::Off => false,
        TapSkipping::Always => true,
        TapSkipping::Auto => {
            let pixels = g.output.h * g.output.w;
            let share = TRANSPOSED_SKIP_BELOW.iter().find(|&&(at_least, _)| pixels >= at_least).map_or(0.0, |&(_, share)| share);
            g.useful_flops() as f64 <= share * g.flops() as f64
        }
    }
}

/// One sample's group, tap by tap: each tap multiplies only the input rows it scatters from into
/// the output (a band of whole rows, read in place) and scatters those of its columns that land
/// inside; a tap whose every contribution lands outside is left out.
fn conv_transpose2d_by_tap(g: &WindowGeometry, x: &[f32], w: &[f32], out_slab: &mut [f32]) {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let taps = g.kernel.h * g.kernel.w;
    let (in_pixels, out_plane) = (g.input.h * g.input.w, g.output.h * g.output.w);
    let mut results = Vec::new();
    for ky in 0..g.kernel.h {
        let rows = intersect(&(0..g.input.h), &positions_inside(ky, g.stride.h, g.dilation.h, g.padding.h, g.output.h));
        for kx in 0..g.kernel.w {
            let cols = intersect(&(0..g.input.w), &positions_inside(kx, g.stride.w, g.dilation.w, g.padding.w, g.output.w));
            if rows.is_empty() || cols.is_empty() {
                continue;
            }
            let n = rows.len() * g.input.w;
            results.resize(cog * n, 0.0);
            // Row co of the tap's weights: w[ci, co, ky, kx] for every ci, taps apart in co.
            let a = (&w[ky * g.kernel.w + kx..], taps, cog * taps);
            sgemm_strided(cog, cig, n, a, (&x[rows.start * g.input.w..], in_pixels), (&mut results, n), false, gemm::Parallelism::Rayon(0));
            out_slab.par_chunks_mut(out_plane).zip(results.par_chunks(n)).for_each(|(dst, src)| {
                scatter_tap(g, ky, kx, rows.clone(), src, dst);
            });
        }
    }
}

/// Adds one tap's contributions `src` (input rows `rows`, whole rows) into the output plane
/// `dst`, those that land inside it.
fn scatter_tap(g: &WindowGeometry, ky: usize, kx: usize, rows: Range<usize>, src: &[f32], dst: &mut [f32]) {
    for (iy, src_row) in rows.zip(src.chunks(g.input.w)) {
        let Some(oy) = scatter_position(iy, g.stride.h, ky, g.dilation.h, g.padding.h, g.output.h) else { continue };
        for (ix, &v) in src_row.iter().enumerate() {
            if let Some(ox) = scatter_position(ix, g.stride.w, kx, g.dilation.w, g.padding.w, g.output.w) {
                dst[oy * g.output.w + ox] += v;
            }
        }
    }
}
