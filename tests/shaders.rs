//! Every WGSL shader, exactly as the device receives it, parses and validates with naga (with
//! subgroup operations only where the shader says it needs them), and its SPIR-V is written
//! with the override constants applied, as wgpu does on Vulkan. No GPU needed.

#[path = "support/wgsl.rs"]
mod wgsl;

use atrous::gpu::shaders::ALL;

#[test]
fn every_shader_parses_and_validates() {
    assert!(!ALL.is_empty());
    for shader in ALL {
        // naga 30 has panicked past validation on valid WGSL (a pointer to part of a variable
        // passed to a function), so the SPIR-V is written as the device would get it.
        let (module, info) = wgsl::processed(shader);
        let pipeline = naga::back::spv::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: shader.entry_point.to_owned() };
        naga::back::spv::write_vec(&module, &info, &naga::back::spv::Options::default(), Some(&pipeline))
            .unwrap_or_else(|e| panic!("{}: writing SPIR-V: {e}", shader.name));
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
fn host_and_shader_agree_on_the_tile_sizes() {
    use atrous::gpu::kernels::{lanes, tiled};
    use atrous::gpu::shaders;
    let tiled_lines = [format!("const CO_TILE: u32 = {}u;", tiled::CHANNELS), format!("const PIXEL_TILE: u32 = {}u;", tiled::PIXELS)];
    for shader in [shaders::CONV2D_TILED, shaders::CONV2D_TILED_SUBGROUP, shaders::CONV_TRANSPOSE2D_TILED, shaders::CONV_TRANSPOSE2D_TILED_SUBGROUP] {
        for line in &tiled_lines {
            assert!(shader.source.contains(line.as_str()), "{} must declare `{line}`", shader.name);
        }
    }
    let lanes_lines = [format!("const LANE_CHANNELS: u32 = {}u;", lanes::CHANNELS), format!("const STRIP: u32 = {}u;", lanes::PIXELS)];
    for shader in [shaders::CONV2D_LANES, shaders::CONV_TRANSPOSE2D_LANES] {
        for line in &lanes_lines {
            assert!(shader.source.contains(line.as_str()), "{} must declare `{line}`", shader.name);
        }
        assert_eq!(lanes::BLOCK, lanes::CHANNELS * shader.workgroup_size as usize);
    }
}

#[test]
fn host_and_shader_agree_on_the_gemm_tiles() {
    use atrous::gpu::GemmTile;
    for tile in GemmTile::ALL {
        for shader in tile.shaders() {
            for line in tile.wgsl_constants() {
                assert!(shader.source.contains(line.as_str()), "{} must declare `{line}`", shader.name);
            }
            assert!(ALL.contains(&shader), "{} is missing from shaders::ALL", shader.name);
        }
    }
}

#[test]
fn every_shader_declares_the_workgroup_size_it_is_dispatched_with() {
    // The host dispatches with Shader::workgroup_size and creates pipelines with the WGSL
    // defaults, which is also what ../shared/tools/isa-stats compiles.
    for shader in ALL {
        let (module, _) = wgsl::processed(shader);
        let entry = module.entry_points.iter().find(|e| e.name == shader.entry_point).unwrap();
        assert_eq!(entry.workgroup_size.iter().product::<u32>(), shader.workgroup_size, "{}", shader.name);
    }
}

#[test]
fn only_the_subgroup_variants_use_subgroups() {
    // A shader not marked `subgroups` must run on devices without them (the fallback).
    for shader in ALL {
        let uses = ["subgroupBroadcast", "subgroup_invocation_id"].iter().any(|s| shader.source.contains(s));
        assert_eq!(uses, shader.subgroups, "{}", shader.name);
    }
}
