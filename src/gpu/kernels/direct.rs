//! The direct kernels: one output element per invocation, weights in PyTorch's layout
//! (`shaders/conv2d.wgsl`, `conv_transpose2d.wgsl`, `pool2d.wgsl`), dispatched with
//! [`shaders::WORKGROUP_SIZE`] invocations per workgroup. Every op has one; pooling has only this.

use crate::gpu::shaders::{self, Shader};
use crate::shape::ConvKind;

pub(crate) fn shader(kind: ConvKind) -> Shader {
    match kind {
        ConvKind::Forward => shaders::CONV2D,
        ConvKind::Transposed => shaders::CONV_TRANSPOSE2D,
        ConvKind::MaxPool => shaders::MAX_POOL2D,
        ConvKind::AvgPool => shaders::AVG_POOL2D,
    }
}
