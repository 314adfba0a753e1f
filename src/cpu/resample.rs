//! The weight-free ops of segmentation heads: bilinear resizing and channel concatenation.

use rayon::prelude::*;

use crate::shape::Hw;

/// Where output index `dst` of an axis resized from `from` to `to` samples the input, by
/// PyTorch's rule for `align_corners=False` (in f32, as PyTorch computes it for f32 tensors):
/// `src = max((from/to)·(dst + ½) − ½, 0)`; returns the two neighbours and the weight of the
/// second, `src − ⌊src⌋`. `shaders/bilinear.wgsl` computes the same.
pub fn bilinear_taps(dst: usize, from: usize, to: usize) -> (usize, usize, f32) {
    let scale = from as f32 / to as f32;
    let src = (scale * (dst as f32 + 0.5) - 0.5).max(0.0);
    let first = (src as usize).min(from - 1);
    let second = (first + 1).min(from - 1);
    (first, second, src - first as f32)
}

/// Bilinear interpolation of `planes` images of size `from` (flat, one after another) to size
/// `to` (PyTorch's `F.interpolate(mode="bilinear", align_corners=False)`).
pub fn resize_bilinear(input: &[f32], planes: usize, from: Hw, to: Hw) -> Vec<f32> {
    let rows: Vec<_> = (0..to.h).map(|y| bilinear_taps(y, from.h, to.h)).collect();
    let columns: Vec<_> = (0..to.w).map(|x| bilinear_taps(x, from.w, to.w)).collect();
    let mut out = vec![0.0f32; planes * to.h * to.w];
    out.par_chunks_mut(to.h * to.w).enumerate().for_each(|(plane, dst)| {
        let src = &input[plane * from.h * from.w..][..from.h * from.w];
        for (y, &(y0, y1, ly)) in rows.iter().enumerate() {
            for (x, &(x0, x1, lx)) in columns.iter().enumerate() {
                let at = |yy: usize, xx: usize| src[yy * from.w + xx];
                let top = (1.0 - lx) * at(y0, x0) + lx * at(y0, x1);
                let bottom = (1.0 - lx) * at(y1, x0) + lx * at(y1, x1);
                dst[y * to.w + x] = (1.0 - ly) * top + ly * bottom;
            }
        }
    });
    out
}

/// Concatenates NCHW tensors along channels: `parts` are (data, channels) of tensors that share
/// the batch and the image size, `plane` pixels per channel.
pub fn concat_channels(parts: &[(&[f32], usize)], batch: usize, plane: usize) -> Vec<f32> {
    let total: usize = parts.iter().map(|(_, c)| c).sum();
    let mut out = Vec::with_capacity(batch * total * plane);
    for n in 0..batch {
        for &(data, channels) in parts {
            out.extend_from_slice(&data[n * channels * plane..][..channels * plane]);
        }
    }
    out
}
