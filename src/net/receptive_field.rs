//! Receptive-field arithmetic per layer (docs/ARCHITECTURE.md §1): `r_k = r_{k−1} + (k_eff − 1)·j_{k−1}`,
//! `j_k = j_{k−1}·s_k`, from `r_0 = 1, j_0 = 1`. The jump `j` after the last layer is the
//! network's output stride.

use super::{LayerGeometry, Network, Source};
use crate::shape::{effective_kernel, ConvKind, Hw};

/// What one layer's output pixel sees of the network's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldOfView {
    /// Receptive field: input pixels on each axis that can influence one output pixel.
    pub receptive_field: Hw,
    /// Jump (cumulative stride): input pixels between neighbouring output pixels.
    pub jump: Hw,
}

/// The field of view after each layer. Where a layer reads several tensors (a residual, a
/// concatenation) the widest field counts; the jump is that of the layer's main input (shapes
/// already guarantee the paths agree).
///
/// A window op follows the formula above; a transposed convolution divides the jump by its
/// stride (rounded to the nearest pixel, at least 1). A bilinear resize mixes two neighbouring pixels on
/// each axis, so it widens the field by one jump; its new jump, `j·in/out`, is rounded to the
/// nearest whole pixel (at least 1), the one approximation here.
pub fn receptive_fields(network: &Network, geometries: &[LayerGeometry]) -> Vec<FieldOfView> {
    let start = FieldOfView { receptive_field: Hw::square(1), jump: Hw::square(1) };
    let mut fields: Vec<FieldOfView> = Vec::with_capacity(network.layers.len());
    for (layer, geometry) in network.layers.iter().zip(geometries) {
        let of = |source: Source| match source {
            Source::Input => start,
            Source::Layer(i) => fields[i],
        };
        let before = of(layer.input);
        let (r, j) = (before.receptive_field, before.jump);
        let mut field = match geometry {
            LayerGeometry::Window(g) => {
                let axis = |r: usize, j: usize, k: usize, d: usize, s: usize| {
                    let reach = effective_kernel(k, d) - 1;
                    match g.kind {
                        // An output pixel gathers input pixels at most ⌊reach/s⌋ apart; the
                        // stride divides the jump.
                        ConvKind::Transposed => (r + reach / s * j, ((j + s / 2) / s).max(1)),
                        _ => (r + reach * j, j * s),
                    }
                };
                let (rh, jh) = axis(r.h, j.h, g.kernel.h, g.dilation.h, g.stride.h);
                let (rw, jw) = axis(r.w, j.w, g.kernel.w, g.dilation.w, g.stride.w);
                FieldOfView { receptive_field: Hw::new(rh, rw), jump: Hw::new(jh, jw) }
            }
            LayerGeometry::Resize { input, output, .. } => {
                let jump = |j: usize, from: usize, to: usize| ((j * from + to / 2) / to).max(1);
                FieldOfView { receptive_field: Hw::new(r.h + j.h, r.w + j.w), jump: Hw::new(jump(j.h, input.h, output.h), jump(j.w, input.w, output.w)) }
            }
            LayerGeometry::Concat { .. } => before,
        };
        for other in layer.reads().skip(1) {
            let seen = of(other).receptive_field;
            field.receptive_field = Hw::new(field.receptive_field.h.max(seen.h), field.receptive_field.w.max(seen.w));
        }
        fields.push(field);
    }
    fields
}
