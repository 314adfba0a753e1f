//! The CPU's attainable FP32 FMA rate: independent fused multiply-add chains on every rayon
//! thread at once, in the widest vectors the CPU has (detected at run time): on x86-64 each
//! thread keeps [`CHAINS`] accumulators in flight — 16-lane `_mm512_fmadd_ps` with AVX-512F,
//! else 8-lane `_mm256_fmadd_ps` with AVX2 and FMA — enough to cover the FMA latency on two
//! ports; elsewhere a plain array loop that the compiler vectorises as it can.

use std::hint::black_box;
use std::time::Instant;

/// One run is sized to take at least this long.
const TARGET_SECONDS: f64 = 0.05;
const MAX_ITERATIONS: u64 = 1 << 34;

/// Independent vector accumulators per thread of the x86-64 loops.
pub const CHAINS: u64 = 12;
/// Accumulators of the portable loop.
const PORTABLE_LANES: usize = 64;

/// Timed runs of the CPU's FMA loop (raw wall-clock seconds, not yet checked).
#[derive(Clone, Debug)]
pub struct CpuPeakRuns {
    pub flops_per_run: u64,
    pub seconds: Vec<f64>,
    /// What ran, for the table's header.
    pub method: String,
}

/// The CPU's model name (from `/proc/cpuinfo` on Linux), else its architecture.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name") || l.starts_with("Model") || l.starts_with("Hardware"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| format!("{} CPU", std::env::consts::ARCH))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    Portable,
}

impl Kernel {
    fn detect() -> Kernel {
        // The widest FMA the CPU has: a peak measured with narrower vectors would understate it
        // (AVX-512 doubles AVX2's rate where the core has two 512-bit FMA units).
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            return Kernel::Avx512;
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Kernel::Avx2Fma;
        }
        Kernel::Portable
    }

    /// FLOPs of one iteration on one thread.
    fn flops_per_iteration(self) -> u64 {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => 2 * 16 * CHAINS,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma => 2 * 8 * CHAINS,
            Kernel::Portable => 2 * PORTABLE_LANES as u64,
        }
    }

    fn describe(self, threads: usize) -> String {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => format!("AVX-512: {CHAINS} independent _mm512_fmadd_ps chains on each of {threads} threads"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma => format!("AVX2+FMA: {CHAINS} independent _mm256_fmadd_ps chains on each of {threads} threads"),
            Kernel::Portable => format!("portable loop: {PORTABLE_LANES} independent a·m + c chains on each of {threads} threads"),
        }
    }

    fn run(self, iterations: u64) -> f32 {
        let (m, c) = (black_box(0.999_9f32), black_box(1.0e-4f32));
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: detect() chose this kernel only where the CPU has AVX-512F.
            Kernel::Avx512 => unsafe { avx512(iterations, m, c) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: detect() chose this kernel only where the CPU has AVX2 and FMA.
            Kernel::Avx2Fma => unsafe { avx2_fma(iterations, m, c) },
            Kernel::Portable => portable(iterations, m, c),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_fma(iterations: u64, m: f32, c: f32) -> f32 {
    use std::arch::x86_64::*;
    let (vm, vc) = (_mm256_set1_ps(m), _mm256_set1_ps(c));
    let mut acc = [_mm256_setzero_ps(); CHAINS as usize];
    for (i, a) in acc.iter_mut().enumerate() {
        *a = _mm256_set1_ps(0.5 + i as f32 * 0.01);
    }
    for _ in 0..iterations {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, vm, vc);
        }
    }
    let mut sum = _mm256_setzero_ps();
    for a in acc {
        sum = _mm256_add_ps(sum, a);
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
    lanes.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512(iterations: u64, m: f32, c: f32) -> f32 {
    use std::arch::x86_64::*;
    let (vm, vc) = (_mm512_set1_ps(m), _mm512_set1_ps(c));
    let mut acc = [_mm512_setzero_ps(); CHAINS as usize];
    for (i, a) in acc.iter_mut().enumerate() {
        *a = _mm512_set1_ps(0.5 + i as f32 * 0.01);
    }
    for _ in 0..iterations {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, vm, vc);
        }
    }
    acc.into_iter().map(|a| _mm512_reduce_add_ps(a)).sum()
}

fn portable(iterations: u64, m: f32, c: f32) -> f32 {
    let mut acc = [0f32; PORTABLE_LANES];
    for (i, a) in acc.iter_mut().enumerate() {
        *a = 0.5 + i as f32 * 0.01;
    }
    for _ in 0..iterations {
        for a in acc.iter_mut() {
            *a = *a * m + c;
        }
    }
    acc.iter().sum()
}

/// Wall-clock seconds of `iterations` of `kernel` on every rayon thread at once.
fn timed(kernel: Kernel, iterations: u64) -> f64 {
    let start = Instant::now();
    let sums = rayon::broadcast(|_| kernel.run(iterations));
    let seconds = start.elapsed().as_secs_f64();
    black_box(sums);
    seconds
}

/// Calibrates the loop so that one run takes at least 50 ms, then times `runs` runs on every
/// rayon thread at once.
pub fn cpu_fma_peak(runs: usize) -> CpuPeakRuns {
    let kernel = Kernel::detect();
    let threads = rayon::current_num_threads();
    let mut iterations = 1u64 << 12;
    timed(kernel, iterations); // wakes the thread pool
    loop {
        let seconds = timed(kernel, iterations);
        if seconds >= TARGET_SECONDS || iterations >= MAX_ITERATIONS {
            break;
        }
        let factor = if seconds > 0.0 { (1.2 * TARGET_SECONDS / seconds).clamp(2.0, 64.0) } else { 64.0 };
        iterations = ((iterations as f64 * factor).ceil() as u64).min(MAX_ITERATIONS);
    }
    let seconds = (0..runs).map(|_| timed(kernel, iterations)).collect();
    CpuPeakRuns { flops_per_run: kernel.flops_per_iteration() * iterations * threads as u64, seconds, method: kernel.describe(threads) }
}

/// Timed runs of a parallel copy between two buffers (raw wall-clock seconds).
#[derive(Clone, Debug)]
pub struct CpuBandwidthRuns {
    /// Bytes read and written by one run.
    pub bytes_per_run: u64,
    pub seconds: Vec<f64>,
}

/// f32s in each buffer of the CPU's copy: 128 MiB, well past any cache.
const COPY_LEN: usize = 32 << 20;

/// The CPU's attainable memory bandwidth: `runs` copies of 128 MiB on every rayon thread at
/// once (in chunks of 1 MiB), after one untimed copy that faults the pages in.
pub fn cpu_bandwidth(runs: usize) -> CpuBandwidthRuns {
    use rayon::prelude::*;
    let source = vec![1.0f32; COPY_LEN];
    let mut sink = vec![0.0f32; COPY_LEN];
    let mut copy = || {
        let start = Instant::now();
        sink.par_chunks_mut(1 << 18).zip(source.par_chunks(1 << 18)).for_each(|(to, from)| to.copy_from_slice(from));
        black_box(&sink);
        start.elapsed().as_secs_f64()
    };
    copy();
    let seconds = (0..runs).map(|_| copy()).collect();
    CpuBandwidthRuns { bytes_per_run: 2 * 4 * COPY_LEN as u64, seconds }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_runs_and_counts_its_flops() {
        assert_eq!(Kernel::Portable.flops_per_iteration(), 128);
        assert!(Kernel::Portable.run(1000).is_finite());
        let detected = Kernel::detect();
        assert!(detected.run(1000).is_finite());
        let runs = cpu_fma_peak(1);
        assert_eq!(runs.seconds.len(), 1);
        assert!(runs.flops_per_run > 0 && runs.seconds[0] > 0.0, "{runs:?}");
    }

    #[test]
    fn the_copy_counts_what_it_reads_and_writes() {
        let runs = cpu_bandwidth(2);
        assert_eq!((runs.seconds.len(), runs.bytes_per_run), (2, 256 << 20));
        assert!(runs.seconds.iter().all(|&s| s > 0.0));
    }
}
