use std::process::ExitCode;

use atrous::gpu::{Gpu, GpuOptions};

/// `atrous devices`: every adapter, best first, with the limits that matter here.
pub fn run(options: &GpuOptions) -> anyhow::Result<ExitCode> {
    let adapters = Gpu::enumerate(options)?;
    println!("{} adapter(s), best first (the first is used unless --adapter / WGPU_ADAPTER_NAME says otherwise):", adapters.len());
    for (i, a) in adapters.iter().enumerate() {
        println!("\n[{i}] {}", a.name);
        println!("    backend       {:?}", a.backend);
        println!("    device type   {:?}", a.device_type);
        println!("    driver        {} {}", a.driver, a.driver_info);
        println!("    max storage buffer binding  {} bytes", a.max_storage_buffer_binding_size);
        println!("    max buffer size             {} bytes", a.max_buffer_size);
        println!("    max workgroups / dimension  {}", a.max_compute_workgroups_per_dimension);
        println!("    max invocations / workgroup {}", a.max_compute_invocations_per_workgroup);
        println!("    workgroup shared memory     {} bytes", a.max_compute_workgroup_storage_size);
        println!("    timestamp queries           {}", if a.timestamp_query { "yes" } else { "no" });
        println!("    f16 (SHADER_F16)            {}", if a.shader_f16 { "yes: --precision f16 and f16-accumulate run here" } else { "no: f32 only" });
    }
    Ok(ExitCode::SUCCESS)
}
