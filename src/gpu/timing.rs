//! Timing GPU work for `atrous bench`: one convolution repeated, and the ALU-bound FMA kernel
//! that measures the device's attainable FP32 rate; and the timestamp queries ([`PassTimestamps`])
//! that this and the network executor's per-layer times (network.rs) are read from.
//!
//! Where the device has `TIMESTAMP_QUERY`, every timed repeat is its own compute pass with
//! timestamp writes at its beginning and end, and its time is the tick difference times the
//! queue's timestamp period; all repeats go into one submission. Without timestamps each repeat
//! is submitted alone and timed by the wall clock around submit + wait. Warm-up runs are
//! submitted (and waited for) before the timed ones and never measured.
//!
//! The times come back raw, one per repeat: a timestamp pair may be equal or even reversed on a
//! device that cannot resolve the work, and judging that is the caller's job
//! ([`crate::bench::check_positive_time`]).

use std::fmt;
use std::time::Instant;


use super::context::{Gpu, GpuError};
use super::shaders;
use super::kernels::KernelChoice;
use super::steps::{Span, Step};
use super::window::to_u32;
use super::window::WindowTensors;
use crate::shape::WindowGeometry;

/// How a GPU time was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimingSource {
    /// Timestamp queries written at the beginning and end of the pass, on the device's clock.
    Timestamp,
    /// The host's clock around submit + wait (includes submission and synchronisation).
    Wall,
}

impl TimingSource {
    /// `"timestamp"` or `"wall"`, as the bench's records name it.
    pub fn name(self) -> &'static str {
        match self {
            TimingSource::Timestamp => "timestamp",
            TimingSource::Wall => "wall",
        }
    }
}

impl fmt::Display for TimingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A convolution timed on the GPU: one duration per timed repeat, and the result, read back
/// once after all of them.
#[derive(Clone, Debug)]
pub struct TimedConvolution {
    pub source: TimingSource,
    /// Seconds per repeat, as measured (not checked for being positive).
    pub seconds: Vec<f64>,
    pub output: Vec<f32>,
    /// Dispatches one run takes (more than 1 where the tensors exceed a binding).
    pub parts: usize,
}

/// Runs of the stream-copy kernel ([`shaders::STREAM_COPY`]).
#[derive(Clone, Debug)]
pub struct BandwidthRuns {
    pub source: TimingSource,
    /// Bytes read and written by one run.
    pub bytes_per_run: u64,
    pub seconds: Vec<f64>,
}

/// Bytes the stream copy reads (and writes): large enough to leave every cache behind.
const STREAM_BYTES: u64 = 64 << 20;

/// Runs of the FMA kernel ([`shaders::FMA_PEAK`]) at a size calibrated to take tens of
/// milliseconds.
#[derive(Clone, Debug)]
pub struct FmaPeakRuns {
    pub source: TimingSource,
    /// Floating-point operations of one run: `2 · 4 · chains · iterations · invocations`.
    pub flops_per_run: u64,
    pub invocations: u64,
    /// FMA steps of each chain (loop trips × the steps unrolled into one trip).
    pub iterations: u64,
    /// Seconds per run, as measured (not checked for being positive).
    pub seconds: Vec<f64>,
}

/// Workgroups of the FMA kernel: with 64 invocations each, 2¹⁸ invocations — a full wave of
/// resident threads on the largest GPUs, and few enough that a CPU driver (lavapipe) spends its
/// time in the loop rather than in per-invocation overhead.
const FMA_WORKGROUPS: u32 = 4_096;
/// Workgroups of the stream copy: enough to fill any GPU, each striding through the buffers.
const STREAM_WORKGROUPS: u32 = 4_096;
const FMA_WORKGROUP_SIZE: u32 = shaders::FMA_PEAK.workgroup_size;
/// One run of the FMA kernel is sized to take at least this long.
const FMA_TARGET_SECONDS: f64 = 0.05;
const FMA_MAX_TRIPS: u32 = 1 << 22;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PeakParams {
    trips: u32,
    /// The angle each pair of chains turns by per step (fma_peak.wgsl).
    rate: f32,
    _pad0: u32,
    _pad1: u32,
}


impl Gpu {
    /// The best timing source this device offers: timestamps where available, else the wall clock.
    pub fn timing_source(&self) -> TimingSource {
        if self.has_timestamps() {
            TimingSource::Timestamp
        } else {
            TimingSource::Wall
        }
    }

    /// Times `repeats` runs of one convolution (forward or transposed, no bias) on the kernel
    /// `kernel` picks, after `warmup` untimed ones, with `source` (timestamps are used only when
    /// the device has them: asking for them elsewhere gives wall-clock times, and the result
    /// says which). Input and weight are uploaded once; the output is read back once, after the
    /// timed runs.
    #[allow(clippy::too_many_arguments)] // each is one knob of `atrous bench`
    pub fn time_convolution(
        &self,
        geometry: &WindowGeometry,
        input: &[f32],
        weight: &[f32],
        warmup: usize,
        repeats: usize,
        source: TimingSource,
        kernel: KernelChoice,
    ) -> Result<TimedConvolution, GpuError> {
        assert!(geometry.weight_shape().is_some(), "time_convolution times convolutions");
        let source = if self.has_timestamps() { source } else { TimingSource::Wall };
        let out_len = geometry.output_shape().iter().product::<usize>();
        self.scoped("timing a convolution", || -> Result<TimedConvolution, GpuError> {
            let input = self.upload("input", input)?;
            let prepared = self.prepare_window(geometry, Some(weight), None, kernel, "the convolution")?;
            let output = self.tensor_storage("output", out_len)?;
            let parts = self.window_parts(&prepared, geometry);
            let scratch = self.scratch(Gpu::window_scratch(&parts, geometry, false))?;
            let tensors = WindowTensors { input: &input, residual: None, output: &output };
            let steps = self.window_steps(&prepared, geometry, &parts, &tensors, false, &scratch)?;
            let parts = parts.len();
            let seconds = self.time_steps(warmup, repeats, source, &steps)?;
            let output = self.read_tensor(&output)?;
            Ok(TimedConvolution { source, seconds, output, parts })
        })?
    }

    /// Times `runs` runs of the stream copy over two buffers of up to 64 MiB each (less where a
    /// binding is smaller), after one untimed run. Timing as in [`Gpu::time_convolution`].
    pub fn time_bandwidth(&self, runs: usize, source: TimingSource) -> Result<BandwidthRuns, GpuError> {
        let source = if self.has_timestamps() { source } else { TimingSource::Wall };
        let count = (STREAM_BYTES.min(self.max_binding_bytes()) / 16) as usize;
        self.scoped("measuring the memory bandwidth", || -> Result<BandwidthRuns, GpuError> {
            // The measuring kernels are f32 in every precision.
            let from = Span::new(&self.raw_buffer("stream source", 16 * count as u64)?, 4 * count, 4);
            let to = Span::new(&self.raw_buffer("stream sink", 16 * count as u64)?, 4 * count, 4);
            let params = [to_u32("stream length", count)?, 0, 0, 0];
            let steps = [Step::Dispatch(self.dispatch(shaders::STREAM_COPY, bytemuck::bytes_of(&params), &[from.binding(), to.binding()], (STREAM_WORKGROUPS, 1, 1))?)];
            let seconds = self.time_steps(1, runs, source, &steps)?;
            Ok(BandwidthRuns { source, bytes_per_run: 2 * 16 * count as u64, seconds })
        })?
    }

    /// Runs the FMA kernel, first calibrating its loop count so that one run takes at least
    /// 50 ms, then `runs` timed runs. Timing as in [`Gpu::time_convolution`].
    pub fn time_fma_peak(&self, runs: usize, source: TimingSource) -> Result<FmaPeakRuns, GpuError> {
        let source = if self.has_timestamps() { source } else { TimingSource::Wall };
        let invocations = FMA_WORKGROUPS as u64 * FMA_WORKGROUP_SIZE as u64;
        self.scoped("measuring the FMA peak", || -> Result<FmaPeakRuns, GpuError> {
            let sink = self.raw_buffer("FMA sink", invocations * 16)?;
            let timed = |trips: u32, warmup: usize, repeats: usize| -> Result<Vec<f64>, GpuError> {
                let params = PeakParams { trips, rate: 1.0e-3, _pad0: 0, _pad1: 0 };
                let steps = [Step::Dispatch(self.dispatch(shaders::FMA_PEAK, bytemuck::bytes_of(&params), &[sink.as_entire_binding()], (FMA_WORKGROUPS, 1, 1))?)];
                self.time_steps(warmup, repeats, source, &steps)
            };
            // Calibrate: grow the loop until one run takes FMA_TARGET_SECONDS (a run the clock
            // cannot resolve counts as very short).
            let mut trips = 64u32;
            let mut warmup = 1;
            loop {
                let seconds = timed(trips, warmup, 1)?[0];
                warmup = 0;
                if seconds >= FMA_TARGET_SECONDS || trips >= FMA_MAX_TRIPS {
                    break;
                }
                let factor = if seconds > 0.0 { (1.2 * FMA_TARGET_SECONDS / seconds).clamp(2.0, 64.0) } else { 64.0 };
                trips = ((trips as f64 * factor).ceil() as u64).min(FMA_MAX_TRIPS as u64) as u32;
            }
            let seconds = timed(trips, 0, runs)?;
            let iterations = trips as u64 * shaders::FMA_PEAK_STEPS_PER_TRIP;
            let flops_per_run = 2 * 4 * shaders::FMA_PEAK_CHAINS * iterations * invocations;
            Ok(FmaPeakRuns { source, flops_per_run, invocations, iterations, seconds })
        })?
    }

    /// Submits and times `repeats` runs of `steps`, after `warmup` untimed ones.
    fn time_steps(&self, warmup: usize, repeats: usize, source: TimingSource, steps: &[Step]) -> Result<Vec<f64>, GpuError> {
        if warmup > 0 {
            self.submit_steps("warm-up", steps, warmup);
            self.wait_for_timing()?;
        }
        match source {
            TimingSource::Timestamp => {
                let mut seconds = Vec::with_capacity(repeats);
                let mut left = repeats;
                while left > 0 {
                    let count = left.min(MAX_TIMED_PASSES);
                    seconds.extend(self.time_with_timestamps(count, steps)?);
                    left -= count;
                }
                Ok(seconds)
            }
            TimingSource::Wall => (0..repeats)
                .map(|_| {
                    let commands = self.encode_steps("timed", [("timed", steps)], None).finish();
                    let start = Instant::now();
                    self.queue().submit([commands]);
                    self.wait_for_timing()?;
                    Ok(start.elapsed().as_secs_f64())
                })
                .collect(),
        }
    }

    /// `count` runs of `steps` in one submission, each between its own pair of timestamps.
    fn time_with_timestamps(&self, count: usize, steps: &[Step]) -> Result<Vec<f64>, GpuError> {
        let timestamps = self.pass_timestamps(count).expect("callers check has_timestamps and MAX_TIMED_PASSES");
        let mut encoder = self.encode_steps("timed", std::iter::repeat_n(("timed", steps), count), Some(&timestamps));
        let staged = timestamps.resolve(self, &mut encoder);
        self.queue().submit([encoder.finish()]);
        Ok(PassTimestamps::seconds(self, &self.map_all(&[staged])?.remove(0)))
    }

    /// Blocks until everything submitted so far has run.
    fn wait_for_timing(&self) -> Result<(), GpuError> {
        self.device().poll(wgpu::PollType::wait_indefinitely()).map(|_| ()).map_err(|e| GpuError::ReadBack(e.to_string()))
    }
}

/// wgpu's cap on the queries in one query set: at most half as many timed passes.
pub(crate) const MAX_TIMED_PASSES: usize = 4096 / 2;

/// Timestamp queries around each of a number of compute passes, on the device's clock.
pub(crate) struct PassTimestamps {
    query_set: wgpu::QuerySet,
    passes: u32,
}

impl PassTimestamps {
    /// Where op `index`'s first pass writes its beginning timestamp and its last pass its end
    /// (`first`, `last`: whether this pass is that one).
    pub(crate) fn writes(&self, index: usize, first: bool, last: bool) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.query_set,
            beginning_of_pass_write_index: first.then_some(2 * index as u32),
            end_of_pass_write_index: last.then_some(2 * index as u32 + 1),
        }
    }

    /// Records the resolution of every timestamp into a mappable buffer (see [`Gpu::map_all`]).
    pub(crate) fn resolve(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder) -> wgpu::Buffer {
        let bytes = 16 * self.passes as u64;
        let resolved = gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("resolved timestamps"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        encoder.resolve_query_set(&self.query_set, 0..2 * self.passes, &resolved, 0);
        gpu.stage(encoder, &resolved, bytes)
    }

    /// Seconds per pass from the resolved bytes. Signed: a reversed pair (a clock that cannot
    /// resolve the work) comes out as the negative time it is, for the caller to judge.
    pub(crate) fn seconds(gpu: &Gpu, resolved: &[u8]) -> Vec<f64> {
        let period_ns = gpu.queue().get_timestamp_period() as f64;
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(resolved);
        ticks.chunks(2).map(|pair| (pair[1] as i128 - pair[0] as i128) as f64 * period_ns * 1e-9).collect()
    }
}

impl Gpu {
    /// Whether this device can time passes with timestamp queries.
    pub fn has_timestamps(&self) -> bool {
        self.device().features().contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Timestamp queries for `passes` passes (at most [`MAX_TIMED_PASSES`]), where the device
    /// has them.
    pub(crate) fn pass_timestamps(&self, passes: usize) -> Option<PassTimestamps> {
        (self.has_timestamps() && passes <= MAX_TIMED_PASSES).then(|| PassTimestamps {
            query_set: self.device().create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("pass times"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * passes as u32,
            }),
            passes: passes as u32,
        })
    }
}
