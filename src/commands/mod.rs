//! One module per subcommand, each a thin layer over the library; shared flags live here, the
//! running and reporting of a network in [`run`], and the parsers of flag values in [`parse`].

pub mod backbone;
pub mod bench;
pub mod conv;
pub mod demo;
pub mod devices;
pub mod parse;
pub mod profile;
pub mod run;
pub mod segment;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Args;

use atrous::gpu::{Gpu, GpuOptions, Precision, PrecisionChoice};

#[derive(Args, Clone)]
pub struct AdapterArgs {
    /// GPU backend(s) to use: vulkan, metal, dx12, gl (comma-separated); default: WGPU_BACKEND, else all
    #[arg(long, value_name = "NAME")]
    pub backend: Option<String>,
    /// Use the adapter whose name contains this text; default: WGPU_ADAPTER_NAME, else the best one
    #[arg(long, value_name = "TEXT")]
    pub adapter: Option<String>,
    /// How the GPU stores tensors and sums: f32; f16 (tensors and weights stored in f16, half
    /// the memory, products summed in f32); f16-accumulate (f16 arithmetic too: fastest on GPUs
    /// with packed half math, least exact); fastest (f16-accumulate on a GPU with
    /// SHADER_F16, else f32 with a warning saying why). f16 needs wgpu's SHADER_F16. Default: ATROUS_PRECISION, else f32
    #[arg(long, value_parser = PossibleValuesParser::new(PrecisionChoice::NAMES).map(|name| name.parse::<PrecisionChoice>().expect("one of the possible values")), value_name = "PRECISION")]
    pub precision: Option<PrecisionChoice>,
}

impl AdapterArgs {
    pub fn options(&self) -> GpuOptions {
        GpuOptions { backend: self.backend.clone(), adapter_name: self.adapter.clone(), precision: self.precision, ..Default::default() }
    }

    /// Opens the GPU and says which adapter was chosen.
    pub fn open(&self) -> anyhow::Result<Gpu> {
        self.open_with(&self.options())
    }

    /// [`AdapterArgs::open`] with `options` (which should start from [`AdapterArgs::options`]).
    pub fn open_with(&self, options: &GpuOptions) -> anyhow::Result<Gpu> {
        let gpu = Gpu::new(options)?;
        eprintln!("GPU: {}", gpu.summary());
        if let Some(note) = gpu.precision_note() {
            eprintln!("warning: {note}");
        }
        if gpu.precision() != Precision::F32 {
            let precision = gpu.precision();
            eprintln!(
                "precision: {precision} ({} bytes a value on the GPU; --compare judges each layer against the f32 CPU path within {:e} {} error)",
                precision.element_bytes(),
                precision.network_tolerance(),
                precision.judged_error_name()
            );
        }
        if let Some(cache) = gpu.autotune_cache_file().filter(|path| gpu.autotunes() && !path.exists()) {
            // Say why a first run is slow before it is.
            eprintln!(
                "autotuning: nothing measured on this machine yet ({} does not exist): the first convolution of each shape class times the candidate kernels (bounded; ATROUS_AUTOTUNE=0 skips it)",
                cache.display()
            );
        }
        Ok(gpu)
    }
}

pub use atrous::backend::Device;

/// `--device`'s parser: the library's [`Device`] by name, its values listed in `--help` and in
/// the error for a wrong one as a `ValueEnum` would (the library does not depend on clap's traits).
pub fn device_parser() -> impl TypedValueParser<Value = Device> {
    PossibleValuesParser::new(Device::ALL.map(Device::name)).map(|name| name.parse::<Device>().expect("one of the possible values"))
}

/// Refuses an output path that is a folder or whose folder does not exist, before anything is
/// measured.
pub fn check_output(flag: &str, path: &std::path::Path) -> anyhow::Result<()> {
    if path.file_name().is_none() || path.is_dir() {
        anyhow::bail!("{flag} {}: names no file", path.display());
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if !parent.is_dir() {
        anyhow::bail!("{flag} {}: the folder {} does not exist", path.display(), parent.display());
    }
    Ok(())
}

/// Milliseconds with three decimals, for tables.
pub fn ms(d: std::time::Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

