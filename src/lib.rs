//! # atrous
//!
//! Dilated (atrous) and transposed 2-D convolutions as WGSL compute shaders on any GPU that
//! wgpu reaches, each checked against a CPU reference. Tensors are NCHW f32 and every parameter
//! follows PyTorch's conventions (`nn.Conv2d`, `nn.ConvTranspose2d`).
//!
//! ```no_run
//! use atrous::{conv2d, Conv2dParams, Hw, Tensor, gpu::{Gpu, GpuOptions}, backend::Cpu};
//! let gpu = Gpu::new(&GpuOptions::default())?;
//! let x = Tensor::random(vec![1, 8, 33, 33], 1);
//! let w = Tensor::random(vec![8, 8, 3, 3], 2);
//! let params = Conv2dParams { padding: Hw::square(4), dilation: Hw::square(4), ..Default::default() };
//! let on_gpu = conv2d(&gpu, &x, &w, None, &params)?;
//! let on_cpu = conv2d(&Cpu, &x, &w, None, &params)?;
//! println!("{}", atrous::compare::difference(on_gpu.data(), on_cpu.data()));
//! # Ok::<(), atrous::Error>(())
//! ```

pub mod atomic_file;
pub mod backend;
pub mod bench;
pub mod compare;
pub mod cpu;
mod error;
pub mod gpu;
pub mod models;
pub mod net;
pub mod imaging;
pub mod npy;
pub mod profile;
pub mod shape;
mod tensor;
pub mod weights;

pub use backend::Backend;
pub use error::Error;
pub use shape::{Conv2dParams, ConvKind, ConvTranspose2dParams, Hw, Pool2dParams, ShapeError, WindowGeometry};
pub use tensor::{LengthMismatch, Tensor};

fn run(backend: &dyn Backend, geometry: WindowGeometry, input: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor, Error> {
    let data = backend.convolve(&geometry, input.data(), weight.data(), bias.map(Tensor::data))?;
    Ok(Tensor::new(geometry.output_shape().to_vec(), data).expect("backends return the geometry's output size"))
}

/// 2-D convolution (PyTorch's `F.conv2d`): input `[N, C_in, H, W]`, weight
/// `[C_out, C_in/groups, kH, kW]`, optional bias `[C_out]`; returns `[N, C_out, OH, OW]`.
pub fn conv2d(backend: &dyn Backend, input: &Tensor, weight: &Tensor, bias: Option<&Tensor>, params: &Conv2dParams) -> Result<Tensor, Error> {
    let geometry = params.geometry(input.shape(), weight.shape(), bias.map(Tensor::shape))?;
    run(backend, geometry, input, weight, bias)
}

/// 2-D transposed convolution (PyTorch's `F.conv_transpose2d`): input `[N, C_in, H, W]`, weight
/// `[C_in, C_out/groups, kH, kW]`, optional bias `[C_out]`; returns `[N, C_out, OH, OW]`.
pub fn conv_transpose2d(
    backend: &dyn Backend,
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    params: &ConvTranspose2dParams,
) -> Result<Tensor, Error> {
    let geometry = params.geometry(input.shape(), weight.shape(), bias.map(Tensor::shape))?;
    run(backend, geometry, input, weight, bias)
}
