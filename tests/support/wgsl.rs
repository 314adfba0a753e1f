//! Each shader as a backend receives it (shared by `tests/shaders.rs` and
//! `tests/shader_backends.rs`): parsed and validated by naga, with subgroup operations and f16 only
//! where the shader says it needs them, and the override constants applied for its entry point.
#![allow(dead_code)] // each test binary uses its own subset

use atrous::gpu::shaders::Shader;

/// The module with its override constants applied (their WGSL defaults, as atrous creates every
/// pipeline), and its validation info: what wgpu hands a backend writer. Panics naming the shader
/// on any error.
pub fn processed(shader: &Shader) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(shader.source)
        .unwrap_or_else(|e| panic!("{} does not parse:\n{}", shader.name, e.emit_to_string(shader.source)));
    let mut capabilities = naga::valid::Capabilities::default();
    if shader.subgroups {
        capabilities |= naga::valid::Capabilities::SUBGROUP;
    }
    if shader.precision.needs_f16() {
        // What wgpu grants with SHADER_F16.
        capabilities |= naga::valid::Capabilities::SHADER_FLOAT16;
    }
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{} does not validate:\n{}", shader.name, e.emit_to_string(shader.source)));
    let constants = naga::back::PipelineConstants::default();
    let stage = Some((naga::ShaderStage::Compute, shader.entry_point));
    let (module, info) = naga::back::pipeline_constants::process_overrides(&module, &info, stage, &constants)
        .unwrap_or_else(|e| panic!("{}: override constants: {e}", shader.name));
    (module.into_owned(), info.into_owned())
}
