use rayon::prelude::*;

use super::tap_position;
use crate::shape::WindowGeometry;

/// Max pooling (PyTorch's `max_pool2d`, `ceil_mode=False`): padding never wins, as if −∞.
/// Exact in any precision, so one form serves as both reference and fast path.
pub fn max_pool2d(g: &WindowGeometry, input: &[f32]) -> Vec<f32> {
    pool(g, input, f32::NEG_INFINITY, f32::max, |max| max)
}

/// Average pooling: the mean of each window, padding counted as zeros (PyTorch's
/// `count_include_pad=True`), accumulated in f64. Networks use it with one whole-image window
/// ([`global_average_pool`](crate::shape::global_average_pool)).
pub fn avg_pool2d(g: &WindowGeometry, input: &[f32]) -> Vec<f32> {
    let taps = (g.kernel.h * g.kernel.w) as f64;
    pool(g, input, 0.0f64, |sum, v| sum + v as f64, |sum| (sum / taps) as f32)
}

/// Each output element folds the input values its window covers (taps in padding left out)
/// into `start` with `step`, then `finish`es; one plane per rayon task.
fn pool<A: Copy + Send + Sync>(g: &WindowGeometry, input: &[f32], start: A, step: impl Fn(A, f32) -> A + Sync, finish: impl Fn(A) -> f32 + Sync) -> Vec<f32> {
    let in_plane = g.input.h * g.input.w;
    let mut out = vec![0.0f32; g.output_shape().iter().product()];
    out.par_chunks_mut(g.output.h * g.output.w).enumerate().for_each(|(plane, dst)| {
        let src = &input[plane * in_plane..][..in_plane];
        for oy in 0..g.output.h {
            for ox in 0..g.output.w {
                let mut acc = start;
                for ky in 0..g.kernel.h {
                    let Some(iy) = tap_position(oy * g.stride.h, ky, g.dilation.h, g.padding.h, g.input.h) else { continue };
                    for kx in 0..g.kernel.w {
                        if let Some(ix) = tap_position(ox * g.stride.w, kx, g.dilation.w, g.padding.w, g.input.w) {
                            acc = step(acc, src[iy * g.input.w + ix]);
                        }
                    }
                }
                dst[oy * g.output.w + ox] = finish(acc);
            }
        }
    });
    out
}
