//! `atrous demo`: the README's main job, on built-in data only. ResNet-50 at output stride 16
//! and 8 on the GPU, every layer compared with the CPU, and a heatmap of the features over the
//! picture; then DeepLabv3-ResNet50 at output stride 8, compared the same way, with its class
//! mask and overlay. Everything is written to an output folder.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::backbone::{build, ModelArgs};
use super::run::{print_table, run_network, Run};
use super::segment::{argmax_disagreement, write_pictures, SegmentationModelArgs, UpsampleChoice};
use super::{ms, AdapterArgs};
use atrous::imaging::{heatmap_overlay, image_to_tensor, save_png, synthetic_image};
use atrous::models::resnet::Arch;
use atrous::models::segmentation::{Head, Model};
use atrous::npy::write_npy;

#[derive(Args)]
pub struct DemoArgs {
    /// Folder for the pictures and features (created if missing)
    #[arg(long, default_value = "atrous-demo", value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Side of the built-in picture; 32·m + 1 puts feature corners on image corners
    #[arg(long, default_value_t = 161)]
    pub size: usize,
    #[command(flatten)]
    pub adapter: AdapterArgs,
}

/// The output strides the demo compares.
const OUTPUT_STRIDES: [usize; 2] = [16, 8];

/// The largest per-layer max relative error of a compared run.
/// The worst layer's error by the run's precision's measure ([`atrous::gpu::Precision::judged_error`]).
fn worst_error(run: &Run) -> f64 {
    run.differences.as_ref().map_or(0.0, |d| d.iter().fold(0.0f64, |m, d| m.max(run.precision.judged_error(d))))
}

pub fn run(args: &DemoArgs) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.out_dir).with_context(|| format!("creating {}", args.out_dir.display()))?;
    let steps = 1 + 3 * OUTPUT_STRIDES.len() as u64 + 3;
    let progress = ProgressBar::new(steps).with_style(ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}").expect("valid template"));
    progress.set_message("opening the GPU");
    let gpu = args.adapter.open()?;
    let image = synthetic_image(args.size, args.size);
    let input = image_to_tensor(&image);
    save_png(&image, &args.out_dir.join("input.png"))?;
    progress.inc(1);

    let mut all_agree = true;
    let mut summaries = Vec::new();
    for os in OUTPUT_STRIDES {
        progress.set_message(format!("building ResNet-50 at output stride {os}"));
        let model = ModelArgs { arch: Arch::ResNet50, output_stride: os, multi_grid: None };
        let network = build(&model, None, "")?;
        progress.inc(1);
        progress.set_message(format!("output stride {os}"));
        let run = run_network(&network, &input, &gpu, true, &progress)?;
        progress.inc(1);
        progress.set_message(format!("output stride {os}: writing the heatmap"));
        let heatmap = args.out_dir.join(format!("features_os{os}.png"));
        save_png(&heatmap_overlay(&image, run.features()), &heatmap)?;
        write_npy(args.out_dir.join(format!("features_os{os}.npy")), run.features())?;
        progress.inc(1);
        all_agree &= run.agree();
        summaries.push((os, network, run, heatmap));
    }
    progress.set_message("building DeepLabv3-ResNet50 at output stride 8");
    let segmentation_model = SegmentationModelArgs {
        model: Model { head: Head::DeepLabV3, arch: Arch::ResNet50 },
        output_stride: 8,
        rates: None,
        classes: None,
        upsample: UpsampleChoice::Bilinear,
    };
    let segmenter = segmentation_model.build(None, false)?;
    progress.inc(1);
    progress.set_message("DeepLabv3");
    let segmented = run_network(&segmenter, &input, &gpu, true, &progress)?;
    progress.inc(1);
    progress.set_message("DeepLabv3: writing the mask and overlay");
    let (mask, overlay) = (args.out_dir.join("mask.png"), args.out_dir.join("overlay.png"));
    write_pictures(segmented.features(), &image, Some(&mask), Some(&overlay))?;
    write_npy(args.out_dir.join("logits.npy"), segmented.features())?;
    let class_disagreement = argmax_disagreement(segmented.features(), segmented.reference_features().expect("compared"));
    all_agree &= segmented.agree();
    progress.finish_and_clear();

    println!("atrous demo: ResNet-50 (seeded weights) on a built-in {0}x{0} picture, GPU: {1}", args.size, gpu.summary());
    for (os, network, run, heatmap) in &summaries {
        println!("\noutput stride {os}: the last layer of each stage (`atrous backbone --compare` lists every layer)");
        let rows = run.rows(network);
        let stage_ends: Vec<_> = rows
            .into_iter()
            .enumerate()
            .filter(|(i, row)| {
                let next = network.layers.get(i + 1).map(|l| l.name.split('.').next().unwrap_or(""));
                next != Some(row.name.split('.').next().unwrap_or("")) || row.name == "conv1"
            })
            .map(|(_, row)| row)
            .collect();
        print_table(&stage_ends, "GPU ms", run.precision);
        println!(
            "GPU total {} ms (wall clock: uploads and any autotuning included); worst layer's {} error vs CPU {:.2e}: {}",
            ms(run.primary.total_time),
            run.precision.judged_error_name(),
            worst_error(run),
            if run.agree() { "agree" } else { "DISAGREE" }
        );
        println!("heatmap of the features: {}", heatmap.display());
    }
    println!("\n{}: (seeded weights, so the classes are arbitrary; `atrous segment --weights` runs torchvision's)", segmenter.name);
    print_table(&segmented.rows(&segmenter)[segmenter.find("classifier.0.convs.0.0").expect("a DeepLabv3 head")..], "GPU ms", segmented.precision);
    println!(
        "GPU total {} ms (wall clock: uploads and any autotuning included); worst layer's {} error vs CPU {:.2e}: {}; arg-max class differs at {:.3}% of pixels",
        ms(segmented.primary.total_time),
        segmented.precision.judged_error_name(),
        worst_error(&segmented),
        if segmented.agree() { "agree" } else { "DISAGREE" },
        class_disagreement * 100.0
    );
    println!("class mask: {}, overlay: {}", mask.display(), overlay.display());
    println!("{}", gpu.tuning_line());
    println!(
        "\nverdict: {} (every layer of all three networks within {:e} {} error)",
        if all_agree { "GPU and CPU agree" } else { "GPU and CPU DISAGREE" },
        gpu.precision().network_tolerance(),
        gpu.precision().judged_error_name()
    );
    Ok(if all_agree { ExitCode::SUCCESS } else { ExitCode::from(2) })
}
