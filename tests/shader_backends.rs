//! Metal and DX12 without a Mac or Windows: every shader in `gpu::shaders::ALL`, with its override
//! constants applied, is written as MSL and as HLSL by naga's backends under the options wgpu 30
//! passes on those platforms, subgroup operations included, so a kernel that only the Vulkan
//! (SPIR-V) path accepts fails here. No GPU needed; what Apple's and Microsoft's own compilers
//! then make of the text is not checked.
//!
//! The options mirror wgpu-hal 30.0.1 as `atrous` drives it (`create_shader_module`, so every
//! runtime check on; `PipelineCompilationOptions::default()`, so workgroup memory zeroed; a layout
//! wgpu-core derives from the shader, so only the buffers the entry point uses, sorted by group
//! and binding, and wgpu-core's `FIRST_VERTEX_INSTANCE | NUM_WORK_GROUPS` layout flags):
//! - Metal: `naga::back::msl::Options` and `PipelineOptions` from `Device::load_shader` in
//!   `wgpu-hal/src/metal/device.rs`, buffer slots and the sizes buffer from its
//!   `create_pipeline_layout`, the language versions from the `available!` ladder in
//!   `wgpu-hal/src/metal/adapter.rs` (subgroups need `family_check`, macOS 10.15 / iOS 13, so
//!   MSL 2.2 or later).
//! - DX12: `naga::back::hlsl::Options` from `create_pipeline_layout` in
//!   `wgpu-hal/src/dx12/device.rs` (CBV/SRV/UAV registers, the special-constants buffer), as
//!   `load_shader` there keeps them for checked shaders; the shader models from
//!   `wgpu-hal/src/dx12/adapter.rs` and `shader_compilation.rs`: 5.1 with FXC (no subgroups
//!   then), 6.0 to 6.9 with DXC (subgroups need 6.0 and wave ops).

#[path = "support/wgsl.rs"]
mod wgsl;

use atrous::gpu::shaders::{Shader, ALL};
use naga::back::{hlsl, msl};

/// Every MSL version wgpu-hal's Metal adapter can pick, oldest first.
const MSL_VERSIONS: [(u8, u8); 12] = [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2), (2, 3), (2, 4), (3, 0), (3, 1), (3, 2), (4, 0)];
/// The oldest MSL version on a Metal device that wgpu gives `Features::SUBGROUP`.
const MSL_SUBGROUPS: (u8, u8) = (2, 2);

/// Every shader model wgpu-hal's DX12 adapter can pick: 5.1 with FXC, 6.0 to 6.9 with DXC.
const SHADER_MODELS: [hlsl::ShaderModel; 11] = [
    hlsl::ShaderModel::V5_1,
    hlsl::ShaderModel::V6_0,
    hlsl::ShaderModel::V6_1,
    hlsl::ShaderModel::V6_2,
    hlsl::ShaderModel::V6_3,
    hlsl::ShaderModel::V6_4,
    hlsl::ShaderModel::V6_5,
    hlsl::ShaderModel::V6_6,
    hlsl::ShaderModel::V6_7,
    hlsl::ShaderModel::V6_8,
    hlsl::ShaderModel::V6_9,
];
/// The oldest shader model on a DX12 device that wgpu gives `Features::SUBGROUP`.
const HLSL_SUBGROUPS: hlsl::ShaderModel = hlsl::ShaderModel::V6_0;

/// The file and entry point (two shaders share `pool2d.wgsl`).
fn label(shader: &Shader) -> String {
    format!("{} `{}`", shader.name, shader.entry_point)
}

/// A buffer the entry point uses, as wgpu-core's derived layout describes it.
struct Buffer {
    binding: naga::ResourceBinding,
    uniform: bool,
    /// wgpu-core derives `read_only: access == LOAD`.
    read_only: bool,
}

/// The buffers the entry point uses, sorted by group and binding (as the derived bind group
/// layouts list them). Only buffers are laid out: a texture or sampler fails the test until its
/// rules from wgpu-hal are added here.
fn buffers(shader: &Shader, module: &naga::Module, info: &naga::valid::ModuleInfo) -> Vec<Buffer> {
    let index = module
        .entry_points
        .iter()
        .position(|e| e.stage == naga::ShaderStage::Compute && e.name == shader.entry_point)
        .unwrap_or_else(|| panic!("{} is not a compute entry point", label(shader)));
    let uses = info.get_entry_point(index);
    let mut buffers: Vec<Buffer> = module
        .global_variables
        .iter()
        .filter(|&(handle, var)| var.binding.is_some() && !uses[handle].is_empty())
        .map(|(_, var)| {
            let (uniform, read_only) = match var.space {
                naga::AddressSpace::Uniform => (true, true),
                naga::AddressSpace::Storage { access } => (false, access == naga::StorageAccess::LOAD),
                other => panic!("{}: {:?} is bound in {other:?}; lay it out here as wgpu-hal does", label(shader), var.name),
            };
            Buffer { binding: var.binding.unwrap(), uniform, read_only }
        })
        .collect();
    buffers.sort_by_key(|b| (b.binding.group, b.binding.binding));
    buffers
}

/// wgpu-hal fills these from the device limits; a device without mesh shaders has zeros.
fn task_dispatch_limits() -> Option<naga::back::TaskDispatchLimits> {
    let limits = wgpu::Limits::default();
    Some(naga::back::TaskDispatchLimits {
        max_mesh_workgroups_per_dim: limits.max_mesh_workgroups_per_dimension,
        max_mesh_workgroups_total: limits.max_mesh_workgroup_total_count,
    })
}

/// `wgpu-hal/src/metal/device.rs`: `load_shader` (options) and `create_pipeline_layout` (one
/// buffer slot per buffer in layout order, then the sizes buffer when any storage buffer is bound).
fn msl_options(shader: &Shader, buffers: &[Buffer], lang_version: (u8, u8)) -> (msl::Options, msl::PipelineOptions) {
    let mut resources = msl::BindingMap::default();
    let mut slot: msl::Slot = 0;
    for buffer in buffers {
        resources.insert(buffer.binding, msl::BindTarget { buffer: Some(slot), mutable: !buffer.read_only, ..Default::default() });
        slot += 1;
    }
    let sizes_buffer = buffers.iter().any(|b| !b.uniform).then_some(slot);
    let entry_point = msl::EntryPointResources { resources, immediates_buffer: None, sizes_buffer };
    // `runtime_checks.bounds_checks` is on for `create_shader_module`.
    let policy = naga::proc::BoundsCheckPolicy::Restrict;
    let options = msl::Options {
        lang_version,
        inline_samplers: Default::default(),
        spirv_cross_compatibility: false,
        fake_missing_bindings: false,
        per_entry_point_map: msl::EntryPointResourceMap::from([(shader.entry_point.to_owned(), entry_point)]),
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index: policy,
            buffer: policy,
            image_load: policy,
            binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
        },
        zero_initialize_workgroup_memory: true,
        force_loop_bounding: true,
        task_dispatch_limits: task_dispatch_limits(),
        mesh_shader_primitive_indices_clamp: true,
        emit_int_div_checks: true,
        ray_query_initialization_tracking: true,
    };
    let pipeline = msl::PipelineOptions {
        entry_point: Some((naga::ShaderStage::Compute, shader.entry_point.to_owned())),
        // `MTLPrimitiveTopologyClass::Unspecified` for compute pipelines.
        allow_and_force_point_size: false,
        vertex_pulling_transform: true,
        vertex_buffer_mappings: Vec::new(),
        binding_array_length_map: Default::default(),
    };
    (options, pipeline)
}

/// `wgpu-hal/src/dx12/device.rs`: `create_pipeline_layout`, whose options `load_shader` uses
/// unchanged when every runtime check is on and workgroup memory is zeroed.
fn hlsl_options(buffers: &[Buffer], shader_model: hlsl::ShaderModel) -> hlsl::Options {
    let target = |register| hlsl::BindTarget {
        space: 0,
        register,
        binding_array_size: None,
        dynamic_storage_buffer_offsets_index: None,
        restrict_indexing: false,
    };
    let (mut cbv, mut srv, mut uav) = (0, 0, 0);
    let mut binding_map = hlsl::BindingMap::default();
    for buffer in buffers {
        let register = match (buffer.uniform, buffer.read_only) {
            (true, _) => &mut cbv,
            (false, true) => &mut srv,
            (false, false) => &mut uav,
        };
        binding_map.insert(buffer.binding, target(*register));
        *register += 1;
    }
    hlsl::Options {
        shader_model,
        binding_map,
        fake_missing_bindings: false,
        // wgpu-core always asks for FIRST_VERTEX_INSTANCE | NUM_WORK_GROUPS: the next CBV.
        special_constants_binding: Some(target(cbv)),
        immediates_target: None,
        dynamic_storage_buffer_offsets_targets: Default::default(),
        zero_initialize_workgroup_memory: true,
        restrict_indexing: true,
        sampler_heap_target: hlsl::SamplerHeapBindTargets { standard_samplers: target(0), comparison_samplers: target(2048) },
        sampler_buffer_binding_map: Default::default(),
        external_texture_binding_map: Default::default(),
        force_loop_bounding: true,
        task_dispatch_limits: task_dispatch_limits(),
        mesh_shader_primitive_indices_clamp: true,
        ray_query_initialization_tracking: true,
    }
}

#[test]
fn every_shader_translates_to_msl_with_wgpu_metal_options() {
    assert!(!ALL.is_empty());
    for shader in ALL {
        let (module, info) = wgsl::processed(shader);
        let buffers = buffers(shader, &module, &info);
        for lang_version in MSL_VERSIONS.into_iter().filter(|&v| !shader.subgroups || v >= MSL_SUBGROUPS) {
            let (options, pipeline) = msl_options(shader, &buffers, lang_version);
            let (source, translation) = msl::write_string(&module, &info, &options, &pipeline)
                .unwrap_or_else(|e| panic!("{}: MSL {}.{}: {e:?}", label(shader), lang_version.0, lang_version.1));
            assert_eq!(translation.entry_point_names.len(), 1, "{}: MSL {lang_version:?}", label(shader));
            if let Err(e) = &translation.entry_point_names[0] {
                panic!("{}: MSL {}.{}: entry point: {e}", label(shader), lang_version.0, lang_version.1);
            }
            // Metal's subgroups are SIMD-groups: `simd_broadcast`, `thread_index_in_simdgroup`, ...
            assert_eq!(
                shader.subgroups,
                source.contains("simd_") || source.contains("simdgroup"),
                "{}: MSL {lang_version:?}: SIMD-group operations",
                label(shader)
            );
        }
    }
}

#[test]
fn every_shader_translates_to_hlsl_with_wgpu_dx12_options() {
    assert!(!ALL.is_empty());
    for shader in ALL {
        let (module, info) = wgsl::processed(shader);
        let buffers = buffers(shader, &module, &info);
        for shader_model in SHADER_MODELS.into_iter().filter(|&m| !shader.subgroups || m >= HLSL_SUBGROUPS) {
            let options = hlsl_options(&buffers, shader_model);
            let pipeline = hlsl::PipelineOptions { entry_point: Some((naga::ShaderStage::Compute, shader.entry_point.to_owned())) };
            let mut source = String::new();
            let reflection = hlsl::Writer::new(&mut source, &options, &pipeline)
                .write(&module, &info, None)
                .unwrap_or_else(|e| panic!("{}: HLSL SM {}: {e:?}", label(shader), shader_model.to_str()));
            assert_eq!(reflection.entry_point_names.len(), 1, "{}: HLSL SM {}", label(shader), shader_model.to_str());
            if let Err(e) = &reflection.entry_point_names[0] {
                panic!("{}: HLSL SM {}: entry point: {e}", label(shader), shader_model.to_str());
            }
            // HLSL's subgroups are waves: `WaveReadLaneAt`, `WaveGetLaneIndex`, ...
            assert_eq!(shader.subgroups, source.contains("Wave"), "{}: HLSL SM {}: wave operations", label(shader), shader_model.to_str());
        }
    }
}
