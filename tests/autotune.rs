//! Autotuning (src/gpu/autotune.rs): the kernel tuned for a shape class is one of its candidates
//! and is reused, from memory and from the cache file; a corrupt cache is ignored and rewritten;
//! tuning off gives the rule's kernel; a tuned convolution agrees with the CPU reference.
//!
//! Every `Gpu` here names its own cache directory ([`GpuOptions::cache_dir`]) and whether it
//! tunes ([`GpuOptions::autotune`]), so the tests neither read nor write the user's cache and do
//! not depend on `ATROUS_AUTOTUNE`.

use std::path::Path;

use atrous::backend::CpuReference;
use atrous::gpu::{shape_class, Gpu, GpuOptions, KernelChoice, CACHE_FILE, CACHE_VERSION};
use atrous::shape::WindowGeometry;
use atrous::{conv2d, conv_transpose2d, Conv2dParams, ConvTranspose2dParams, Hw, Tensor};

/// A tuning `Gpu` without the per-run budget (on a cold shader cache, compiling the candidates of
/// one class can take longer than that).
fn tuning_gpu(cache: &Path) -> Gpu {
    Gpu::new(&GpuOptions { autotune: Some(true), cache_dir: Some(cache.to_path_buf()), tuning_budget: Some(f64::INFINITY), ..Default::default() }).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"))
}

/// A small dense conv: 16→32 channels, 3×3 at dilation 2 on 12×12.
fn dense() -> (Tensor, Tensor, Conv2dParams, WindowGeometry) {
    let x = Tensor::random(vec![1, 16, 12, 12], 5);
    let w = Tensor::random(vec![32, 16, 3, 3], 6);
    let p = Conv2dParams { padding: Hw::square(2), dilation: Hw::square(2), ..Default::default() };
    let g = p.geometry(x.shape(), w.shape(), None).unwrap();
    (x, w, p, g)
}

fn close(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    let scale = want.data().iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.data().iter().zip(want.data()).enumerate() {
        assert!((g - w).abs() <= 1e-4 * scale, "{what}: element {i}: {g} vs {w}");
    }
}

#[test]
fn tuning_picks_a_candidate_keeps_it_and_reuses_the_cache_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(CACHE_FILE);
    // A corrupt cache is ignored, and rewritten by the first tuning.
    std::fs::write(&file, "{ not json").unwrap();
    let gpu = tuning_gpu(dir.path());
    assert!(gpu.autotunes());
    assert_eq!(gpu.autotune_cache_file(), Some(file.as_path()));
    let (x, w, p, g) = dense();

    let candidates = gpu.tuning_candidates(&g);
    assert!(candidates.contains(&KernelChoice::Direct) && candidates.contains(&KernelChoice::Tiled), "{candidates:?}");
    assert!(candidates.iter().all(|&k| k != KernelChoice::Auto && gpu.kernel_name(&g, k).is_ok()));
    let picked = gpu.resolve(&g, KernelChoice::Auto).unwrap();
    assert!(candidates.contains(&picked), "{picked:?} is not among {candidates:?}");
    let stats = gpu.tuning();
    assert_eq!(stats.classes_tuned, 1);
    assert!(stats.candidates_timed >= 2 && stats.seconds > 0.0, "{stats:?}");
    assert!(gpu.tuning().seconds < 60.0, "tuning a small class is quick: {stats:?}");
    let timed = gpu.last_tuning();
    assert!(timed.iter().any(|c| c.kernel == picked && !c.dropped), "{timed:?}");

    // Again: a memory hit, nothing timed; what Auto runs is what was picked.
    assert_eq!(gpu.resolve(&g, KernelChoice::Auto).unwrap(), picked);
    assert_eq!(gpu.kernel_name(&g, KernelChoice::Auto).unwrap(), gpu.kernel_name(&g, picked).unwrap());
    let again = gpu.tuning();
    assert_eq!((again.classes_tuned, again.candidates_timed), (stats.classes_tuned, stats.candidates_timed));
    assert!(again.memory_hits > stats.memory_hits);

    // The same class at another size within its buckets: the same kernel, no timing.
    let x2 = Tensor::random(vec![1, 16, 11, 12], 7);
    let g2 = p.geometry(x2.shape(), w.shape(), None).unwrap();
    assert_eq!(shape_class(&g2), shape_class(&g));
    assert_eq!(gpu.resolve(&g2, KernelChoice::Auto).unwrap(), picked);
    assert_eq!(gpu.tuning().classes_tuned, 1);

    // The tuned convolution agrees with the reference (weights packed and dispatched alike).
    close(&conv2d(&gpu, &x, &w, None, &p).unwrap(), &conv2d(&CpuReference, &x, &w, None, &p).unwrap(), "tuned conv2d");
    close(&conv2d(&gpu, &x2, &w, None, &p).unwrap(), &conv2d(&CpuReference, &x2, &w, None, &p).unwrap(), "tuned conv2d, same class");

    // The corrupt file was rewritten with the entry.
    let text = std::fs::read_to_string(&file).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).expect("the cache is JSON again");
    assert_eq!(json["version"], CACHE_VERSION);
    let entries = json["adapters"].as_object().unwrap();
    assert_eq!(entries.len(), 1, "{text}");
    let (adapter, classes) = entries.iter().next().unwrap();
    assert!(adapter.contains(&gpu.summary().name), "{adapter}");
    assert_eq!(classes[shape_class(&g)], picked.name(), "{text}");

    // A second context on the same cache takes the kernel from the file without timing.
    let second = tuning_gpu(dir.path());
    assert_eq!(second.resolve(&g, KernelChoice::Auto).unwrap(), picked);
    let s = second.tuning();
    assert_eq!((s.classes_tuned, s.candidates_timed, s.disk_hits), (0, 0, 1), "{s:?}");

    // An entry naming a kernel that does not exist is ignored: the class is tuned again.
    let stale = text.replace(&format!("\"{}\"", picked.name()), "\"warp-drive\"");
    std::fs::write(&file, stale).unwrap();
    let third = tuning_gpu(dir.path());
    assert!(candidates.contains(&third.resolve(&g, KernelChoice::Auto).unwrap()));
    assert_eq!(third.tuning().classes_tuned, 1);
    // A file of another version is ignored too.
    std::fs::write(&file, text.replace(&format!("\"version\": {CACHE_VERSION}"), "\"version\": 999")).unwrap();
    let fourth = tuning_gpu(dir.path());
    fourth.resolve(&g, KernelChoice::Auto).unwrap();
    assert_eq!(fourth.tuning().disk_hits, 0);
    let rewritten: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(rewritten["version"], CACHE_VERSION);
}

#[test]
fn tuning_off_gives_the_rule_and_times_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gpu = Gpu::new(&GpuOptions { autotune: Some(false), cache_dir: Some(dir.path().to_path_buf()), ..Default::default() }).unwrap();
    assert!(!gpu.autotunes());
    let (_, _, _, g) = dense();
    assert_eq!(gpu.resolve(&g, KernelChoice::Auto).unwrap(), KernelChoice::Auto);
    let rule = gpu.rule_choice(&g);
    assert_ne!(rule, KernelChoice::Auto);
    assert_eq!(gpu.kernel_name(&g, KernelChoice::Auto).unwrap(), gpu.kernel_name(&g, rule).unwrap());
    // Forced kernels stay forced.
    assert_eq!(gpu.resolve(&g, KernelChoice::Direct).unwrap(), KernelChoice::Direct);
    assert_eq!(gpu.tuning().classes_tuned, 0);
    assert!(!dir.path().join(CACHE_FILE).exists(), "nothing written without tuning");
}

#[test]
fn a_forced_kernel_option_is_not_tuned() {
    let dir = tempfile::tempdir().unwrap();
    let gpu = Gpu::new(&GpuOptions { autotune: Some(true), kernel: KernelChoice::Tiled, cache_dir: Some(dir.path().to_path_buf()), ..Default::default() }).unwrap();
    let (_, _, _, g) = dense();
    assert_eq!(gpu.resolve(&g, KernelChoice::Auto).unwrap(), KernelChoice::Tiled);
    assert_eq!(gpu.tuning().classes_tuned, 0);
}

#[test]
fn a_tuned_transposed_and_depthwise_conv_agree_with_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let gpu = tuning_gpu(dir.path());
    // Transposed, k4 s2 (the decoder's upsampling), 8→16 channels on 7×7.
    let x = Tensor::random(vec![1, 8, 7, 7], 11);
    let w = Tensor::random(vec![8, 16, 4, 4], 12);
    let p = ConvTranspose2dParams { stride: Hw::square(2), padding: Hw::square(1), ..Default::default() };
    close(&conv_transpose2d(&gpu, &x, &w, None, &p).unwrap(), &conv_transpose2d(&CpuReference, &x, &w, None, &p).unwrap(), "tuned transposed");
    // Depthwise 8 channels.
    let x = Tensor::random(vec![2, 8, 9, 9], 13);
    let w = Tensor::random(vec![8, 1, 3, 3], 14);
    let p = Conv2dParams { padding: Hw::square(1), groups: 8, ..Default::default() };
    close(&conv2d(&gpu, &x, &w, None, &p).unwrap(), &conv2d(&CpuReference, &x, &w, None, &p).unwrap(), "tuned depthwise");
    assert_eq!(gpu.tuning().classes_tuned, 2);
}

#[test]
fn past_the_budget_classes_follow_the_rule_until_a_later_run() {
    let dir = tempfile::tempdir().unwrap();
    let options = GpuOptions { autotune: Some(true), cache_dir: Some(dir.path().to_path_buf()), tuning_budget: Some(0.0), ..Default::default() };
    let spent = Gpu::new(&options).unwrap();
    let (x, w, p, g) = dense();
    assert_eq!(spent.resolve(&g, KernelChoice::Auto).unwrap(), KernelChoice::Auto, "no budget left: the rule");
    assert_eq!(spent.tuning().deferred, 1);
    assert_eq!(spent.tuning().classes_tuned, 0);
    assert!(spent.tuning_line().contains("1 left to the rule until a later run"), "{}", spent.tuning_line());
    close(&conv2d(&spent, &x, &w, None, &p).unwrap(), &conv2d(&CpuReference, &x, &w, None, &p).unwrap(), "deferred class");
    // Nothing was stored, so a run with budget left tunes the class.
    let later = tuning_gpu(dir.path());
    assert_ne!(later.resolve(&g, KernelChoice::Auto).unwrap(), KernelChoice::Auto);
    assert_eq!(later.tuning().classes_tuned, 1);
}
