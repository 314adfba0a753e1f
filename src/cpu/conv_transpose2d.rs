use rayon::prelude::*;

use super::sgemm;
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

/// SGEMM + col2im transposed convolution, parallel over (batch, group): the GEMM computes every
/// (output channel, tap) contribution of every input pixel, col2im adds them into place.
pub fn conv_transpose2d(g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let in_pixels = g.input.h * g.input.w;
    let out_plane = g.output.h * g.output.w;
    let taps = g.kernel.h * g.kernel.w;
    let rows = cog * taps;
    let mut out = vec![0.0f32; g.output_shape().iter().product()];
    out.par_chunks_mut(cog * out_plane).enumerate().for_each(|(slab, out_slab)| {
        let (n, group) = (slab / g.groups, slab % g.groups);
        let x = &input[(n * g.c_in + group * cig) * in_pixels..][..cig * in_pixels];
        // The group's weight is [cig, cog·kH·kW]; the GEMM reads it transposed.
        let w = &weight[group * cig * rows..][..cig * rows];
        let mut cols = vec![0.0f32; rows * in_pixels];
        sgemm(rows, cig, in_pixels, w, 1, rows, x, &mut cols);
        for (row, col_row) in cols.chunks(in_pixels).enumerate() {
            let kx = row % g.kernel.w;
            let ky = (row / g.kernel.w) % g.kernel.h;
            let co_local = row / taps;
            let dst = &mut out_slab[co_local * out_plane..][..out_plane];
            for iy in 0..g.input.h {
                let Some(oy) = scatter_position(iy, g.stride.h, ky, g.dilation.h, g.padding.h, g.output.h) else { continue };
                for ix in 0..g.input.w {
                    if let Some(ox) = scatter_position(ix, g.stride.w, kx, g.dilation.w, g.padding.w, g.output.w) {
                        dst[oy * g.output.w + ox] += col_row[iy * g.input.w + ix];
                    }
                }
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
