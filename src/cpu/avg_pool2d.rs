use rayon::prelude::*;

use super::tap_position;
use crate::shape::ConvGeometry;

/// Average pooling: the mean of each window, padding counted as zeros (PyTorch's
/// `count_include_pad=True`); accumulated in f64, so one form serves as reference and fast path.
/// Networks use it with one whole-image window ([`global_average_pool`](crate::shape::global_average_pool)).
pub fn avg_pool2d(g: &ConvGeometry, input: &[f32]) -> Vec<f32> {
    let in_plane = g.input.h * g.input.w;
    let taps = (g.kernel.h * g.kernel.w) as f64;
    let mut out = vec![0.0f32; g.output_shape().iter().product()];
    out.par_chunks_mut(g.output.h * g.output.w).enumerate().for_each(|(plane, dst)| {
        let src = &input[plane * in_plane..][..in_plane];
        for oy in 0..g.output.h {
            for ox in 0..g.output.w {
                let mut sum = 0.0f64;
                for ky in 0..g.kernel.h {
                    let Some(iy) = tap_position(oy * g.stride.h, ky, g.dilation.h, g.padding.h, g.input.h) else { continue };
                    for kx in 0..g.kernel.w {
                        if let Some(ix) = tap_position(ox * g.stride.w, kx, g.dilation.w, g.padding.w, g.input.w) {
                            sum += src[iy * g.input.w + ix] as f64;
                        }
                    }
                }
                dst[oy * g.output.w + ox] = (sum / taps) as f32;
            }
        }
    });
    out
}
