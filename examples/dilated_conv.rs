//! Runs a dilated convolution on the GPU and checks it against the CPU reference.
//!
//! `cargo run --example dilated_conv`

use atrous::backend::{Cpu, CpuReference};
use atrous::compare::difference;
use atrous::gpu::{Gpu, GpuOptions};
use atrous::{conv2d, Conv2dParams, Hw, Tensor};

fn main() -> Result<(), atrous::Error> {
    // Picks the best adapter (WGPU_BACKEND / WGPU_ADAPTER_NAME are honoured).
    let gpu = Gpu::new(&GpuOptions::default())?;
    println!("GPU: {}", gpu.summary());

    // A 3×3 kernel at dilation 4 sees a 9×9 window; padding 4 keeps the 33×33 size.
    let input = Tensor::random(vec![2, 16, 33, 33], 1);
    let weight = Tensor::random(vec![32, 16, 3, 3], 2);
    let bias = Tensor::random(vec![32], 3);
    let params = Conv2dParams { padding: Hw::square(4), dilation: Hw::square(4), ..Default::default() };

    let on_gpu = conv2d(&gpu, &input, &weight, Some(&bias), &params)?;
    let on_cpu = conv2d(&Cpu, &input, &weight, Some(&bias), &params)?;
    let exact = conv2d(&CpuReference, &input, &weight, Some(&bias), &params)?;
    println!("output shape {:?}", on_gpu.shape());
    println!("GPU vs f64 reference:      {}", difference(on_gpu.data(), exact.data()));
    println!("fast CPU vs f64 reference: {}", difference(on_cpu.data(), exact.data()));
    let agreement = difference(on_gpu.data(), exact.data());
    println!("{}", if agreement.within(1e-4) { "GPU agrees with the CPU reference" } else { "GPU DISAGREES with the CPU reference" });
    Ok(())
}
