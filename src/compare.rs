//! How far one result is from another: the numbers `--compare` prints and tests assert on.
//!
//! Floating-point sums come out in a different order on every device, so results are compared
//! with a relative tolerance, never for equality.

use std::fmt;

/// The disagreement between a result and a reference of the same length.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Difference {
    /// Largest `|result − reference|`.
    pub max_abs: f64,
    /// Largest `|result − reference| / max(|reference|, floor)`, where `floor` is
    /// [`RELATIVE_FLOOR`] times the largest `|reference|`: values near zero (which cancellation
    /// produces) are judged against the tensor's scale instead of dividing by almost nothing.
    pub max_rel: f64,
    /// The error's norm over the reference's, `‖result − reference‖₂ / ‖reference‖₂`: the
    /// tensor's relative error as a whole, which judges the f16 precisions (where every value's
    /// rounding shows in [`Difference::max_rel`] at the smallest values).
    pub rms_rel: f64,
    /// Flat index of the element with the largest relative error.
    pub worst_index: usize,
    /// Largest `|reference|`.
    pub reference_scale: f64,
    /// Elements where either side is NaN or infinite while the other is not.
    pub non_finite: usize,
}

/// See [`Difference::max_rel`].
pub const RELATIVE_FLOOR: f64 = 1e-2;

/// Relative tolerance under which one op's GPU and CPU results agree (`conv2d --compare`).
pub const OP_TOLERANCE: f64 = 1e-4;

/// Relative tolerance under which a layer's GPU and CPU outputs agree in a whole network
/// (`backbone --compare`): networks accumulate more rounding than one op.
pub const NETWORK_TOLERANCE: f64 = 1e-3;

/// Compares `result` with `reference` element by element.
///
/// # Panics
/// If the lengths differ: callers compare outputs of one validated geometry.
pub fn difference(result: &[f32], reference: &[f32]) -> Difference {
    difference_at_scale(result, reference, 0.0)
}

/// [`difference`], with the relative floor taken from at least `term_scale`: the magnitude of
/// the values that were summed into the reference. Where an output is all cancellation (a
/// ReLU'd 1×1 convolution of a few channels can come out a thousand times smaller than its
/// inputs), rounding errors follow the terms, not the tiny result.
///
/// # Panics
/// If the lengths differ.
pub fn difference_at_scale(result: &[f32], reference: &[f32], term_scale: f64) -> Difference {
    assert_eq!(result.len(), reference.len(), "compared tensors must have the same length");
    let scale = reference.iter().filter(|v| v.is_finite()).fold(0.0f64, |m, &v| m.max((v as f64).abs()));
    let floor = (scale.max(term_scale) * RELATIVE_FLOOR).max(f64::MIN_POSITIVE);
    let mut d = Difference { max_abs: 0.0, max_rel: 0.0, rms_rel: 0.0, worst_index: 0, reference_scale: scale, non_finite: 0 };
    let (mut error_squares, mut reference_squares) = (0.0f64, 0.0f64);
    for (i, (&a, &b)) in result.iter().zip(reference).enumerate() {
        if !(a.is_finite() && b.is_finite()) {
            if !(a.is_nan() && b.is_nan() || a == b) {
                d.non_finite += 1;
            }
            continue;
        }
        let abs = (a as f64 - b as f64).abs();
        let rel = abs / (b as f64).abs().max(floor);
        d.max_abs = d.max_abs.max(abs);
        if rel > d.max_rel {
            d.max_rel = rel;
            d.worst_index = i;
        }
        error_squares += abs * abs;
        reference_squares += b as f64 * b as f64;
    }
    d.rms_rel = if reference_squares > 0.0 { (error_squares / reference_squares).sqrt() } else if error_squares > 0.0 { f64::INFINITY } else { 0.0 };
    d
}

impl Difference {
    /// Whether every element agrees within `rel_tolerance` (and no finite value became
    /// non-finite or the other way round).
    pub fn within(&self, rel_tolerance: f64) -> bool {
        self.non_finite == 0 && self.max_rel <= rel_tolerance
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "max abs error {:.3e}, max relative error {:.3e} (at flat index {}; reference scale {:.3e}), relative RMS error {:.3e}",
            self.max_abs, self.max_rel, self.worst_index, self.reference_scale, self.rms_rel
        )?;
        if self.non_finite > 0 {
            write!(f, ", {} non-finite mismatches", self.non_finite)?;
        }
        Ok(())
    }
}
