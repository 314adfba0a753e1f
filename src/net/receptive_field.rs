//! Receptive-field arithmetic per layer (DESIGN.md): `r_k = r_{k−1} + (k_eff − 1)·j_{k−1}`,
//! `j_k = j_{k−1}·s_k`, from `r_0 = 1, j_0 = 1`. The jump `j` after the last layer is the
//! network's output stride.

use super::{Network, Source};
use crate::shape::{effective_kernel, ConvGeometry, Hw};

/// What one layer's output pixel sees of the network's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldOfView {
    /// Receptive field: input pixels on each axis that can influence one output pixel.
    pub receptive_field: Hw,
    /// Jump (cumulative stride): input pixels between neighbouring output pixels.
    pub jump: Hw,
}

/// The field of view after each layer. A residual path that sees more widens the field; the
/// jump is that of the layer's main input (shapes already guarantee both paths agree).
pub fn receptive_fields(network: &Network, geometries: &[ConvGeometry]) -> Vec<FieldOfView> {
    let start = FieldOfView { receptive_field: Hw::square(1), jump: Hw::square(1) };
    let mut fields: Vec<FieldOfView> = Vec::with_capacity(network.layers.len());
    for (layer, g) in network.layers.iter().zip(geometries) {
        let of = |source: Source| match source {
            Source::Input => start,
            Source::Layer(i) => fields[i],
        };
        let before = of(layer.input);
        let axis = |r: usize, j: usize, k: usize, d: usize, s: usize| (r + (effective_kernel(k, d) - 1) * j, j * s);
        let (rh, jh) = axis(before.receptive_field.h, before.jump.h, g.kernel.h, g.dilation.h, g.stride.h);
        let (rw, jw) = axis(before.receptive_field.w, before.jump.w, g.kernel.w, g.dilation.w, g.stride.w);
        let mut field = FieldOfView { receptive_field: Hw::new(rh, rw), jump: Hw::new(jh, jw) };
        if let Some(residual) = layer.residual {
            let shortcut = of(residual).receptive_field;
            field.receptive_field = Hw::new(field.receptive_field.h.max(shortcut.h), field.receptive_field.w.max(shortcut.w));
        }
        fields.push(field);
    }
    fields
}
