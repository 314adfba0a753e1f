use rayon::prelude::*;

use super::tap_position;
use crate::shape::ConvGeometry;

/// Max pooling (PyTorch's `max_pool2d`, `ceil_mode=False`): padding never wins, as if −∞.
/// Exact in any precision, so one form serves as both reference and fast path.
pub fn max_pool2d(g: &ConvGeometry, input: &[f32]) -> Vec<f32> {
    let in_plane = g.input.h * g.input.w;
    let mut out = vec![0.0f32; g.output_shape().iter().product()];
    out.par_chunks_mut(g.output.h * g.output.w).enumerate().for_each(|(plane, dst)| {
        let src = &input[plane * in_plane..][..in_plane];
        for oy in 0..g.output.h {
            for ox in 0..g.output.w {
                let mut best = f32::NEG_INFINITY;
                for ky in 0..g.kernel.h {
                    let Some(iy) = tap_position(oy * g.stride.h, ky, g.dilation.h, g.padding.h, g.input.h) else { continue };
                    for kx in 0..g.kernel.w {
                        if let Some(ix) = tap_position(ox * g.stride.w, kx, g.dilation.w, g.padding.w, g.input.w) {
                            best = best.max(src[iy * g.input.w + ix]);
                        }
                    }
                }
                dst[oy * g.output.w + ox] = best;
            }
        }
    });
    out
}
