//! Which kernel [`KernelChoice::Auto`] stands for on this device.

use super::context::{Gpu, GpuError};
use super::window::KernelChoice;
use crate::shape::{ConvGeometry, ConvKind};

impl Gpu {
    /// The kernel `choice` stands for on this device: itself when forced, else
    /// [`super::GpuOptions::kernel`] for a convolution where that is forced, else
    /// [`KernelChoice::Auto`] (the rule's choice, in `kernel_for`).
    pub fn resolve(&self, geometry: &ConvGeometry, choice: KernelChoice) -> Result<KernelChoice, GpuError> {
        let convolution = matches!(geometry.kind, ConvKind::Forward | ConvKind::Transposed);
        Ok(match choice {
            KernelChoice::Auto if convolution => self.kernel,
            other => other,
        })
    }
}
