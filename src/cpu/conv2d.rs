use rayon::prelude::*;

use super::{sgemm, tap_position};
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

/// im2col + SGEMM convolution, parallel over (batch, group).
pub fn conv2d(g: &WindowGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let in_plane = g.input.h * g.input.w;
    let pixels = g.output.h * g.output.w;
    let taps = g.kernel.h * g.kernel.w;
    let depth = cig * taps; // the GEMM's K
    let pointwise = taps == 1 && g.stride == crate::shape::Hw::square(1) && g.padding == crate::shape::Hw::square(0);
    let mut out = vec![0.0f32; g.output_shape().iter().product()];
    out.par_chunks_mut(cog * pixels).enumerate().for_each(|(slab, out_slab)| {
        let (n, group) = (slab / g.groups, slab % g.groups);
        let x = &input[(n * g.c_in + group * cig) * in_plane..][..cig * in_plane];
        let w = &weight[group * cog * depth..][..cog * depth];
        if pointwise {
            // A 1×1 stride-1 unpadded conv is already a GEMM on the input plane.
            sgemm(cog, depth, pixels, w, depth, 1, x, out_slab);
        } else {
            // Taken out, not borrowed: while im2col and the GEMM wait for their parallel parts,
            // rayon may run another slab on this thread, which then takes its own matrix.
            let mut cols = COLUMNS.take();
            im2col(g, x, cig, &mut cols);
            sgemm(cog, depth, pixels, w, depth, 1, &cols, out_slab);
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

thread_local! {
    /// The im2col matrix, kept per thread between calls: allocating (and faulting in) tens of
    /// megabytes for every convolution cost as much as the arithmetic.
    static COLUMNS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
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
        for (oy, dst) in col_row.chunks_mut(g.output.w).enumerate() {
            let Some(iy) = tap_position(oy * g.stride.h, ky, g.dilation.h, g.padding.h, g.input.h) else {
                dst.fill(0.0);
                continue;
            };
            for (ox, d) in dst.iter_mut().enumerate() {
                *d = tap_position(ox * g.stride.w, kx, g.dilation.w, g.padding.w, g.input.w).map_or(0.0, |ix| plane[iy * g.input.w + ix]);
            }
        }
    });
}
