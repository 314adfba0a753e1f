//! Every WGSL shader, exactly as the device receives it, parses and validates with naga.
//! No GPU needed.

use atrous::gpu::shaders::ALL;

#[test]
fn every_shader_parses_and_validates() {
    assert!(!ALL.is_empty());
    for shader in ALL {
        let module = naga::front::wgsl::parse_str(shader.source)
            .unwrap_or_else(|e| panic!("{} does not parse:\n{}", shader.name, e.emit_to_string(shader.source)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::default())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{} does not validate:\n{}", shader.name, e.emit_to_string(shader.source)));
        assert!(
            module.entry_points.iter().any(|e| e.name == shader.entry_point),
            "{} has no entry point '{}'",
            shader.name,
            shader.entry_point
        );
    }
}

#[test]
fn every_shader_file_is_used() {
    // A kernel file in shaders/ that no Shader embeds would escape validation and the GPU tests.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let embedded = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
        assert!(ALL.iter().any(|s| s.source.contains(&embedded)), "shaders/{name} is not part of any shader in gpu::shaders::ALL");
    }
}

#[test]
fn host_and_shader_agree_on_the_tile_size() {
    let declared = format!("const CO_TILE: u32 = {}u;", atrous::gpu::shaders::CONV2D_TILED_CHANNELS);
    assert!(atrous::gpu::shaders::CONV2D_TILED.source.contains(&declared), "conv2d_tiled.wgsl must declare `{declared}`");
}
