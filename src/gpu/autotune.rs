//! Which kernel [`KernelChoice::Auto`] stands for on this device: the fastest one measured here
//! for the convolution's shape class (autotuning), or the rule's (`Kernel::for_device` in
//! kernels/mod.rs) where tuning is off.
//!
//! The first time a shape class runs on a [`Gpu`], every kernel that applies to it (direct,
//! tiled, lanes where the device has subgroups, the four GEMM configurations) is timed with
//! [`Gpu::time_convolution`] (timestamp queries where the device has them, else the wall clock)
//! on the geometry that brought the class up (batch 1, rows cut so that it stays under
//! [`MAX_TUNING_FLOP`]), and the fastest median is kept: in memory for the life of the `Gpu` (so
//! that a weight packed at upload and the dispatch recorded later agree), and on disk in
//! `autotune.json` under the cache directory ([`cache_dir`]), keyed by the adapter (name,
//! backend, driver, driver info, subgroups, and the precision where it is not f32) and the shape class ([`shape_class`]). A file that is
//! unreadable, corrupt, of another version or written for other shaders is ignored and
//! rewritten; failing to write it is a warning on stderr, never an error.
//!
//! Tuning a class is bounded: the rule's pick is timed first (1 warm-up and 3 timed runs, or 1
//! when one run takes over [`LONG_RUN_SECONDS`]); every other candidate first runs once on a
//! sixteenth of the rows, and is dropped when that predicts more than [`DROP_FACTOR`]× the best
//! time so far (the direct kernel on 256 channels, the padded kernels on depthwise ones);
//! candidates stop being timed once the class has taken [`CLASS_BUDGET_SECONDS`]. The time spent
//! is accumulated ([`Gpu::tuning`]) so that commands can report it. Once one `Gpu` has spent
//! [`TUNING_BUDGET_SECONDS`] tuning, further classes follow the rule for its life and are left
//! untuned on disk, for a later run.
//!
//! `ATROUS_AUTOTUNE=0` (or [`super::GpuOptions::autotune`] = `Some(false)`) switches tuning
//! off; `ATROUS_CACHE_DIR` (or [`super::GpuOptions::cache_dir`]) moves the cache.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::context::{Gpu, GpuError, GpuOptions};
use super::shaders;
use super::timing::TimingSource;
use super::kernels::KernelChoice;
use super::precision::Precision;
use crate::shape::{conv_output_size, conv_transpose_output_size, ConvKind, WindowGeometry};

/// Version of the cache file's layout; a file of another version is ignored and rewritten.
pub const CACHE_VERSION: u32 = 1;

/// The cache file's name inside [`cache_dir`].
pub const CACHE_FILE: &str = "autotune.json";

/// A problem above this many FLOP is timed on fewer rows (bounded tuning of huge layers).
pub const MAX_TUNING_FLOP: u64 = 8_000_000_000;

/// Above this, one timed run of a candidate is enough (instead of 3).
pub const LONG_RUN_SECONDS: f64 = 0.1;

/// A candidate whose probe predicts more than this many times the best time is not timed further.
pub const DROP_FACTOR: f64 = 3.0;

/// Once tuning a class has taken this long (wall clock, pipeline compilation included), the
/// candidates not yet timed are skipped.
pub const CLASS_BUDGET_SECONDS: f64 = 30.0;

/// Once a [`Gpu`] has spent this long tuning, classes it has not tuned follow the rule (and are
/// tuned by a later run): the first run of a large network on a new device stays bounded.
pub const TUNING_BUDGET_SECONDS: f64 = 30.0;

/// Timed runs of a candidate (after one warm-up).
const REPEATS: usize = 3;

/// Probes run on 1/PROBE_FRACTION of the rows.
const PROBE_FRACTION: usize = 16;

/// Problems this small are timed without a probe.
const PROBE_MIN_FLOP: u64 = 50_000_000;

/// How much tuning a [`Gpu`] has done.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TuningStats {
    /// Shape classes whose candidates were timed.
    pub classes_tuned: usize,
    /// Wall-clock seconds spent timing them (pipeline compilation included).
    pub seconds: f64,
    /// Candidate kernels timed (probes included).
    pub candidates_timed: usize,
    /// Classes whose kernel came from the cache file.
    pub disk_hits: usize,
    /// Resolutions answered from memory.
    pub memory_hits: usize,
    /// Classes left to the rule because [`TUNING_BUDGET_SECONDS`] was spent.
    pub deferred: usize,
}

/// The report line of [`Gpu::tuning_line`] for tuning `enabled` with `stats`.
pub fn tuning_line(enabled: bool, stats: &TuningStats, cache_file: Option<&Path>) -> String {
    if !enabled {
        return "autotuning: off (ATROUS_AUTOTUNE=0 or a forced kernel): auto follows the rule".to_owned();
    }
    let cache = cache_file.map_or_else(|| "(none: no cache directory)".to_owned(), |p| p.display().to_string());
    let deferred = match stats.deferred {
        0 => String::new(),
        n => format!("; {n} left to the rule until a later run (the tuning budget was spent)"),
    };
    format!(
        "autotuning: {} shape classes tuned in {:.2} s ({} candidate runs), {} taken from the cache {cache}{deferred}",
        stats.classes_tuned, stats.seconds, stats.candidates_timed, stats.disk_hits
    )
}

/// One timed candidate of a tuning, for reports.
#[derive(Clone, Debug, PartialEq)]
pub struct TunedCandidate {
    pub kernel: KernelChoice,
    /// Median seconds on the tuning geometry, or the probe's prediction when `dropped`.
    pub seconds: f64,
    /// Dropped after its probe predicted far more than the best.
    pub dropped: bool,
}

/// The autotuning state of one [`Gpu`].
pub(crate) struct Tuner {
    enabled: bool,
    cache_file: Option<PathBuf>,
    /// [`super::GpuOptions::tuning_budget`].
    budget: f64,
    choices: Mutex<HashMap<String, KernelChoice>>,
    /// Held while a class is tuned, so two threads never tune the same class twice.
    tuning: Mutex<()>,
    stats: Mutex<TuningStats>,
    last: Mutex<Vec<TunedCandidate>>,
}

/// Serialises the writes of the cache file within this process (the atomic writer's temporary
/// name is per process).
static CACHE_WRITE: Mutex<()> = Mutex::new(());

impl Tuner {
    pub(crate) fn new(options: &GpuOptions) -> Tuner {
        let enabled = options.autotune.unwrap_or_else(|| std::env::var("ATROUS_AUTOTUNE").map_or(true, |v| v.trim() != "0"));
        let cache_file = options.cache_dir.clone().or_else(cache_dir).map(|dir| dir.join(CACHE_FILE));
        let budget = options.tuning_budget.unwrap_or(TUNING_BUDGET_SECONDS);
        Tuner { enabled, cache_file, budget, choices: Mutex::default(), tuning: Mutex::new(()), stats: Mutex::default(), last: Mutex::default() }
    }
}

/// The cache directory: `$ATROUS_CACHE_DIR`, else `atrous` under the user's cache directory
/// (`$XDG_CACHE_HOME` or `~/.cache` on Linux and other Unixes, `~/Library/Caches` on macOS,
/// `%LOCALAPPDATA%` on Windows); `None` when none is known.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("ATROUS_CACHE_DIR") {
        return Some(dir);
    }
    let base = if cfg!(windows) {
        var("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        var("HOME").map(|home| home.join("Library").join("Caches"))
    } else {
        var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|home| home.join(".cache")))
    };
    base.map(|dir| dir.join("atrous"))
}

/// The shape class of a convolution, the key its tuned kernel is stored under: op, kernel size,
/// stride, dilation rounded up to a power of two, how the channels are grouped (`dense`,
/// `depthwise` where each group has one input channel, else `grouped`), input and output
/// channels per group and output pixels per sample each rounded up to a power of two, and the
/// batch rounded up to a power of two. E.g. `conv2d k3x3 s1x1 d2x2 dense cin256 cout256 px8192 n1`.
pub fn shape_class(g: &WindowGeometry) -> String {
    let op = match g.kind {
        ConvKind::Forward => "conv2d",
        ConvKind::Transposed => "conv-transpose2d",
        ConvKind::MaxPool => "max-pool2d",
        ConvKind::AvgPool => "avg-pool2d",
    };
    let grouping = if g.groups == 1 {
        "dense"
    } else if g.c_in_per_group() == 1 {
        "depthwise"
    } else {
        "grouped"
    };
    let p2 = |n: usize| n.max(1).next_power_of_two();
    format!(
        "{op} k{}x{} s{}x{} d{}x{} {grouping} cin{} cout{} px{} n{}",
        g.kernel.h,
        g.kernel.w,
        g.stride.h,
        g.stride.w,
        p2(g.dilation.h),
        p2(g.dilation.w),
        p2(g.c_in_per_group()),
        p2(g.c_out_per_group()),
        p2(g.output.h * g.output.w),
        p2(g.batch)
    )
}

/// `g` on `rows` input rows (at least one; the output follows), or `g` itself where that would
/// not be a valid convolution.
fn with_input_rows(g: &WindowGeometry, rows: usize) -> WindowGeometry {
    let rows = rows.clamp(1, g.input.h);
    let output = match g.kind {
        ConvKind::Forward => (rows..=g.input.h).find_map(|r| conv_output_size(r, g.kernel.h, g.stride.h, g.padding.h, g.dilation.h).map(|o| (r, o))),
        ConvKind::Transposed => {
            let full = conv_transpose_output_size(g.input.h, g.kernel.h, g.stride.h, g.padding.h, g.dilation.h, 0);
            let output_padding = full.map_or(0, |f| g.output.h.saturating_sub(f));
            (rows..=g.input.h).find_map(|r| conv_transpose_output_size(r, g.kernel.h, g.stride.h, g.padding.h, g.dilation.h, output_padding).map(|o| (r, o)))
        }
        ConvKind::MaxPool | ConvKind::AvgPool => None,
    };
    match output {
        Some((r, o)) => WindowGeometry { input: crate::Hw::new(r, g.input.w), output: crate::Hw::new(o, g.output.w), ..*g },
        None => *g,
    }
}

/// The geometry a class is timed on: `g` at batch 1, its rows cut to stay under
/// [`MAX_TUNING_FLOP`].
fn tuning_geometry(g: &WindowGeometry) -> WindowGeometry {
    let one = WindowGeometry { batch: 1, ..*g };
    let flop = one.flops();
    if flop <= MAX_TUNING_FLOP {
        return one;
    }
    with_input_rows(&one, (one.input.h as u128 * MAX_TUNING_FLOP as u128 / flop as u128) as usize)
}

/// Deterministic, cheap data for timing (the kernels' speed does not depend on the values).
fn filler(len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 7 + 3) % 17) as f32 * 0.0625 - 0.5).collect()
}

/// FNV-1a of every shader's source, computed once: a cache written for other kernels is stale.
fn shaders_fingerprint() -> &'static str {
    static FINGERPRINT: OnceLock<String> = OnceLock::new();
    FINGERPRINT.get_or_init(|| {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for shader in shaders::ALL {
            for byte in shader.name.bytes().chain(shader.source.bytes()) {
                hash ^= byte as u64;
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        format!("{hash:016x}")
    })
}

/// The cache file's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// [`shaders_fingerprint`] of the build that wrote it.
    shaders: String,
    /// Adapter key → shape class → kernel name.
    adapters: BTreeMap<String, BTreeMap<String, String>>,
}

impl CacheFile {
    /// The file at `path` if it is readable, valid, of this version and for these shaders.
    fn read(path: &Path) -> Option<CacheFile> {
        let text = std::fs::read_to_string(path).ok()?;
        let file: CacheFile = serde_json::from_str(&text).ok()?;
        (file.version == CACHE_VERSION && file.shaders == shaders_fingerprint()).then_some(file)
    }
}

impl Gpu {
    /// The kernel `choice` stands for on this device: itself when forced, else
    /// [`super::GpuOptions::kernel`] for a convolution where that is forced, else the tuned
    /// kernel of the shape class (see the module's documentation), else (tuning off, or nothing
    /// could be timed) [`KernelChoice::Auto`], the rule's choice in `Kernel::for_device`. The answer for
    /// one shape class never changes during the life of the `Gpu`.
    pub fn resolve(&self, geometry: &WindowGeometry, choice: KernelChoice) -> Result<KernelChoice, GpuError> {
        let convolution = matches!(geometry.kind, ConvKind::Forward | ConvKind::Transposed);
        if choice != KernelChoice::Auto || !convolution {
            return Ok(choice);
        }
        if self.kernel != KernelChoice::Auto || !self.tuner.enabled {
            return Ok(self.kernel);
        }
        let class = shape_class(geometry);
        let remembered = || {
            let kernel = self.tuner.choices.lock().unwrap().get(&class).copied();
            if kernel.is_some() {
                self.tuner.stats.lock().unwrap().memory_hits += 1;
            }
            kernel
        };
        if let Some(kernel) = remembered() {
            return Ok(kernel);
        }
        // Checked again once this thread holds the tuning lock: another may have tuned the class.
        let _tuning = self.tuner.tuning.lock().unwrap();
        if let Some(kernel) = remembered() {
            return Ok(kernel);
        }
        let kernel = match self.cached_choice(geometry, &class) {
            Some(kernel) => {
                self.tuner.stats.lock().unwrap().disk_hits += 1;
                kernel
            }
            // Past the budget of one Gpu the rule decides, for this Gpu only: the class is left
            // untuned on disk, for a later run to tune.
            None if self.tuning().seconds >= self.tuner.budget => {
                self.tuner.stats.lock().unwrap().deferred += 1;
                KernelChoice::Auto
            }
            None => {
                let kernel = self.tune(geometry);
                if kernel != KernelChoice::Auto {
                    self.store_choice(&class, kernel);
                }
                kernel
            }
        };
        self.tuner.choices.lock().unwrap().insert(class, kernel);
        Ok(kernel)
    }

    /// Whether [`KernelChoice::Auto`] is autotuned on this `Gpu` (else it follows the rule).
    pub fn autotunes(&self) -> bool {
        self.tuner.enabled && self.kernel == KernelChoice::Auto
    }

    /// How much tuning this `Gpu` has done so far.
    pub fn tuning(&self) -> TuningStats {
        *self.tuner.stats.lock().unwrap()
    }

    /// One line on what tuning did (`autotuning: N shape classes tuned in X s …`), or that it is
    /// off, for the commands' reports.
    pub fn tuning_line(&self) -> String {
        tuning_line(self.autotunes(), &self.tuning(), self.autotune_cache_file())
    }

    /// The candidates of the latest tuning, with their times (empty before any).
    pub fn last_tuning(&self) -> Vec<TunedCandidate> {
        self.tuner.last.lock().unwrap().clone()
    }

    /// The cache file tuned kernels are kept in (`None`: no cache directory is known).
    pub fn autotune_cache_file(&self) -> Option<&Path> {
        self.tuner.cache_file.as_deref()
    }

    /// The kernel the rule picks for `geometry` (what Auto runs with tuning off).
    pub fn rule_choice(&self, geometry: &WindowGeometry) -> KernelChoice {
        super::kernels::rule(geometry, self)
    }

    /// The kernels tuning times for `geometry` (and `atrous bench --gpu-kernel all`): every
    /// forced one that applies (the lanes one only where Auto may take it; neither lanes nor the
    /// GEMMs below [`super::TILED_MIN_CHANNELS`] output channels per group), the rule's pick first.
    pub fn tuning_candidates(&self, geometry: &WindowGeometry) -> Vec<KernelChoice> {
        let rule = self.rule_choice(geometry);
        // Below TILED_MIN_CHANNELS output channels per group (depthwise convs) the lanes and GEMM
        // kernels compute ≥ 94% padding; on lavapipe a GEMM there took minutes per run.
        let padded = |k: KernelChoice| matches!(k, KernelChoice::Lanes | KernelChoice::Gemm(_));
        let few = geometry.c_out_per_group() < super::kernels::TILED_MIN_CHANNELS;
        let applies = |k: KernelChoice| self.kernel_name(geometry, k).is_ok() && (k != KernelChoice::Lanes || !self.without_lanes) && !(few && padded(k));
        let mut candidates = vec![rule];
        candidates.extend(KernelChoice::FORCED.into_iter().filter(|&k| k != rule && applies(k)));
        candidates
    }

    /// The key of this adapter in the cache file.
    fn adapter_key(&self) -> String {
        let s = self.summary();
        let key = format!("{} | {:?} | {} | {} | subgroups {}", s.name, s.backend, s.driver, s.driver_info, self.subgroups());
        // Each precision runs its own kernels, which may rank differently (f32 keeps the keys it had).
        match self.precision() {
            Precision::F32 => key,
            precision => format!("{key} | {precision}"),
        }
    }

    /// The kernel the cache file holds for `class`, if it is there and still runs `geometry`.
    fn cached_choice(&self, geometry: &WindowGeometry, class: &str) -> Option<KernelChoice> {
        let file = CacheFile::read(self.tuner.cache_file.as_deref()?)?;
        let name = file.adapters.get(&self.adapter_key())?.get(class)?;
        let kernel = KernelChoice::from_name(name).filter(|&k| k != KernelChoice::Auto)?;
        self.tuning_candidates(geometry).contains(&kernel).then_some(kernel)
    }

    /// Adds `class → kernel` to the cache file (rewriting one that is unusable); a failure is a
    /// warning on stderr.
    fn store_choice(&self, class: &str, kernel: KernelChoice) {
        let Some(path) = self.tuner.cache_file.as_deref() else { return };
        let _writing = CACHE_WRITE.lock().unwrap_or_else(|e| e.into_inner());
        let mut file = CacheFile::read(path).unwrap_or_else(|| CacheFile { version: CACHE_VERSION, shaders: shaders_fingerprint().to_owned(), ..Default::default() });
        file.adapters.entry(self.adapter_key()).or_default().insert(class.to_owned(), kernel.name().to_owned());
        let text = serde_json::to_string_pretty(&file).expect("the cache serialises") + "\n";
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| crate::atomic_file::write_atomically(path, |out| out.write_all(text.as_bytes())));
        if let Err(e) = written {
            let _ = writeln!(std::io::stderr(), "atrous: warning: could not write the autotuning cache {}: {e}", path.display());
        }
    }

    /// Times the candidates for `geometry`'s class and returns the fastest
    /// ([`KernelChoice::Auto`], the rule, when none could be timed).
    fn tune(&self, geometry: &WindowGeometry) -> KernelChoice {
        let start = Instant::now();
        let g = tuning_geometry(geometry);
        let weight_len = g.weight_shape().map_or(0, |s| s.iter().product());
        let (input, weight) = (filler(g.input_shape().iter().product()), filler(weight_len));
        let probe = with_input_rows(&g, g.input.h.div_ceil(PROBE_FRACTION));
        let (probe_input, probe_weight) = (filler(probe.input_shape().iter().product()), &weight);
        let mut timed = 0;
        let mut results: Vec<TunedCandidate> = Vec::new();
        let mut best: Option<(KernelChoice, f64)> = None;
        let median = |seconds: &[f64]| -> Option<f64> {
            let mut s: Vec<f64> = seconds.iter().copied().filter(|t| t.is_finite() && *t > 0.0).collect();
            s.sort_by(f64::total_cmp);
            (!s.is_empty()).then(|| s[s.len() / 2])
        };
        for kernel in self.tuning_candidates(geometry) {
            if best.is_some() && start.elapsed().as_secs_f64() > CLASS_BUDGET_SECONDS {
                break;
            }
            // A probe on a few rows first, unless the problem is small or nothing is timed yet.
            if let Some((_, best_seconds)) = best {
                if g.flops() > PROBE_MIN_FLOP && probe.flops() < g.flops() {
                    timed += 1;
                    let Ok(run) = self.time_convolution(&probe, &probe_input, probe_weight, 0, 1, TimingSource::Timestamp, kernel) else { continue };
                    let Some(seconds) = median(&run.seconds) else { continue };
                    let predicted = seconds * g.flops() as f64 / probe.flops() as f64;
                    if predicted > DROP_FACTOR * best_seconds {
                        results.push(TunedCandidate { kernel, seconds: predicted, dropped: true });
                        continue;
                    }
                }
            }
            timed += 1;
            let repeats = if best.is_some_and(|(_, s)| s > LONG_RUN_SECONDS) { 1 } else { REPEATS };
            let Ok(run) = self.time_convolution(&g, &input, &weight, 1, repeats, TimingSource::Timestamp, kernel) else { continue };
            let Some(seconds) = median(&run.seconds) else { continue };
            results.push(TunedCandidate { kernel, seconds, dropped: false });
            if best.is_none_or(|(_, b)| seconds < b) {
                best = Some((kernel, seconds));
            }
        }
        let mut stats = self.tuner.stats.lock().unwrap();
        stats.classes_tuned += 1;
        stats.candidates_timed += timed;
        stats.seconds += start.elapsed().as_secs_f64();
        *self.tuner.last.lock().unwrap() = results;
        best.map_or(KernelChoice::Auto, |(kernel, _)| kernel)
    }
}
