//! Pictures in and out of the network: PNG/JPEG loading, ImageNet normalisation into NCHW
//! tensors, a built-in test picture, feature-map heatmaps over an image, segmentation masks
//! (class indices with the Pascal VOC palette) and their overlay, and PNG output.
//!
//! Writing is atomic, as for `.npy` files: the PNG goes to a temporary file beside the target,
//! which is renamed over it only once complete, so a failed run never leaves a half-written
//! picture behind.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{ImageDecoder, ImageEncoder, ImageFormat, ImageReader, RgbImage};
use thiserror::Error;

use crate::atomic_file::write_atomically;
use crate::shape::Hw;
use crate::tensor::Tensor;

/// Per-channel (R, G, B) mean of ImageNet, as torchvision's `transforms.Normalize` uses it.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// Per-channel (R, G, B) standard deviation of ImageNet, as torchvision's `transforms.Normalize` uses it.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Why a picture could not be read, resized or written.
#[derive(Debug, Error)]
pub enum ImageError {
    #[error("cannot open image {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path} is {found}; atrous reads only PNG and JPEG images")]
    UnsupportedFormat { path: PathBuf, found: String },
    #[error("{path} is not a valid {format} image (corrupt or truncated): {reason}")]
    Corrupt { path: PathBuf, format: String, reason: String },
    #[error("{path} is too large to decode: {reason}")]
    TooLarge { path: PathBuf, reason: String },
    #[error("cannot resize {path} to {}×{} pixels (height×width): both sides must be at least 1", .size.h, .size.w)]
    InvalidSize { path: PathBuf, size: Hw },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Reads a PNG or JPEG file as 8-bit RGB (grey is expanded, alpha dropped, 16-bit reduced,
/// EXIF orientation applied), optionally resized to exactly `resize` (height, width) with an
/// antialiasing triangle (bilinear) filter, as torchvision's `Resize` does.
pub fn load_image(path: &Path, resize: Option<Hw>) -> Result<RgbImage, ImageError> {
    let open = |source| ImageError::Open { path: path.to_owned(), source };
    if let Some(size) = resize {
        if size.h == 0 || size.w == 0 {
            return Err(ImageError::InvalidSize { path: path.to_owned(), size });
        }
    }
    let reader = ImageReader::open(path).map_err(open)?.with_guessed_format().map_err(open)?;
    let format = match reader.format() {
        Some(format @ (ImageFormat::Png | ImageFormat::Jpeg)) => format,
        Some(other) => return Err(ImageError::UnsupportedFormat { path: path.to_owned(), found: format!("a {} image", format!("{other:?}").to_uppercase()) }),
        None => {
            return Err(ImageError::UnsupportedFormat { path: path.to_owned(), found: "not an image in any format atrous recognises".into() })
        }
    };
    let decode_err = |e: image::ImageError| match e {
        image::ImageError::Limits(limit) => ImageError::TooLarge { path: path.to_owned(), reason: limit.to_string() },
        other => ImageError::Corrupt { path: path.to_owned(), format: format!("{format:?}").to_uppercase(), reason: other.to_string() },
    };
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    let orientation = decoder.orientation().map_err(decode_err)?;
    let mut decoded = image::DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    decoded.apply_orientation(orientation);
    let rgb = decoded.into_rgb8();
    Ok(match resize {
        Some(Hw { h, w }) if (h as u32, w as u32) != (rgb.height(), rgb.width()) => {
            image::imageops::resize(&rgb, w as u32, h as u32, FilterType::Triangle)
        }
        _ => rgb,
    })
}

/// The image as a `[1, 3, H, W]` tensor of `(pixel / 255 - mean) / std` per channel, with
/// [`IMAGENET_MEAN`] and [`IMAGENET_STD`]: torchvision's `ToTensor` followed by `Normalize`.
pub fn image_to_tensor(image: &RgbImage) -> Tensor {
    let (height, width) = (image.height() as usize, image.width() as usize);
    let mut data = vec![0.0f32; 3 * height * width];
    let plane = height * width;
    for (i, pixel) in image.pixels().enumerate() {
        for c in 0..3 {
            data[c * plane + i] = (pixel.0[c] as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    Tensor::new(vec![1, 3, height, width], data).expect("three planes of height × width values")
}

/// A deterministic built-in test picture of any size, needing no files: a sky fading to the
/// horizon with a sun and a cloud, a house with a roof, door and window, a tree, and a
/// striped field in perspective. Shapes keep their proportions at any aspect ratio (the scene
/// is laid out in a centred square of side `min(height, width)`); edges are 4× supersampled.
pub fn synthetic_image(height: usize, width: usize) -> RgbImage {
    let scale = height.min(width).max(1) as f32;
    let (cx, cy) = (width as f32 / 2.0, height as f32 / 2.0);
    const SUBSAMPLES: [(f32, f32); 4] = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)];
    RgbImage::from_fn(width as u32, height as u32, |col, row| {
        let mut sum = [0.0f32; 3];
        for (dx, dy) in SUBSAMPLES {
            let x = (col as f32 + dx - cx) / scale + 0.5;
            let y = (row as f32 + dy - cy) / scale + 0.5;
            let c = scene(x, y);
            for k in 0..3 {
                sum[k] += c[k];
            }
        }
        image::Rgb(sum.map(|v| (v / SUBSAMPLES.len() as f32 * 255.0).round().clamp(0.0, 255.0) as u8))
    })
}

const HORIZON: f32 = 0.62;

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

fn rgb(hex: u32) -> [f32; 3] {
    [((hex >> 16) & 0xff) as f32 / 255.0, ((hex >> 8) & 0xff) as f32 / 255.0, (hex & 0xff) as f32 / 255.0]
}

/// The scene's colour at `(x, y)`, in units of the centred square (`y` grows downwards).
fn scene(x: f32, y: f32) -> [f32; 3] {
    let in_box = |x0: f32, x1: f32, y0: f32, y1: f32| (x0..x1).contains(&x) && (y0..y1).contains(&y);
    let dist = |px: f32, py: f32| ((x - px).powi(2) + (y - py).powi(2)).sqrt();

    // House: walls, a triangular roof with a chimney, a door and a four-pane window.
    let (wall_l, wall_r, wall_t, wall_b) = (0.12, 0.48, 0.44, HORIZON + 0.06);
    let roof_apex = (0.30, 0.28);
    if in_box(wall_l, wall_r, wall_t, wall_b) {
        if in_box(0.17, 0.26, 0.53, wall_b) {
            return if dist(0.245, 0.60) < 0.008 { rgb(0xe8c547) } else { rgb(0x5a3418) }; // door, knob
        }
        if in_box(0.31, 0.43, 0.50, 0.59) {
            let frame = (x - 0.37).abs() < 0.006 || (y - 0.545).abs() < 0.006 || !in_box(0.317, 0.423, 0.507, 0.583);
            return if frame { rgb(0xffffff) } else { mix(rgb(0x9fd4f0), rgb(0x4f8fc0), (y - 0.50) / 0.09) };
        }
        let brick = ((y - wall_t) / 0.03).floor() as i32 % 2 == 0;
        return if brick { rgb(0xead9b0) } else { rgb(0xe0cc9f) };
    }
    let roof_half_width = (wall_r - wall_l) / 2.0 + 0.04;
    let roof_depth = wall_t - roof_apex.1;
    if y >= roof_apex.1 && y < wall_t && (x - roof_apex.0).abs() <= roof_half_width * (y - roof_apex.1) / roof_depth {
        let tiles = ((y - roof_apex.1) / 0.035).floor() as i32 % 2 == 0;
        return if tiles { rgb(0xb2352b) } else { rgb(0x982b23) };
    }
    if in_box(0.38, 0.43, 0.27, 0.37) {
        return rgb(0x7a4a32); // chimney
    }

    // Tree: a round crown, darker towards its lower edge, over a trunk.
    let crown = dist(0.715, 0.43);
    if crown < 0.11 {
        return mix(rgb(0x3f9a3a), rgb(0x1f5e23), (y - 0.36) / 0.16 + crown);
    }
    if in_box(0.695, 0.735, 0.50, HORIZON + 0.09) {
        return rgb(0x6b4424);
    }

    if y >= HORIZON {
        // Field: furrows converging on a vanishing point on the horizon, darker near the viewer.
        let depth = (y - HORIZON).max(1e-4);
        let furrow = ((x - 0.5) / depth * 1.6).floor() as i64 % 2 == 0;
        let base = mix(rgb(0x8cc63f), rgb(0x3f7f2a), depth / 0.5);
        // Furrows fade out towards the horizon, where they would be finer than a pixel.
        return if furrow { base } else { mix(base, rgb(0x2c5a1e), 0.35 * (depth / 0.06).min(1.0)) };
    }

    // Sky: deep blue overhead to pale near the horizon, a sun with a soft glow, one cloud.
    let mut sky = mix(rgb(0x2f6fc4), rgb(0xcfe8f7), (y + 0.2) / (HORIZON + 0.2));
    let sun = dist(0.80, 0.16);
    if sun < 0.085 {
        return rgb(0xffd83a);
    }
    sky = mix(sky, rgb(0xfff2b0), 0.6 * (1.0 - (sun - 0.085) / 0.12));
    let cloud = [(0.20, 0.15, 0.055), (0.27, 0.12, 0.07), (0.34, 0.15, 0.055), (0.27, 0.17, 0.05)];
    if cloud.iter().any(|&(px, py, r)| dist(px, py) < r) && y < 0.19 {
        return mix(rgb(0xffffff), rgb(0xd5dde6), (y - 0.08) / 0.11);
    }
    sky
}

/// The feature map's magnitude as a heatmap over `image`: the per-position L2 norm over
/// channels of `features` (`[N, C, h, w]`, of which sample 0 is shown, `[C, h, w]` or
/// `[h, w]`), scaled to [0, 1] by its minimum and maximum (a constant map is all 0),
/// upsampled bilinearly to the image's size with `align_corners=True` (the map's corner
/// positions sit on the image's corner pixels, as for inputs of 32·m + 1 pixels), coloured
/// with the "inferno" colormap and blended 55 % heat over 45 % image.
///
/// # Panics
/// If `features` has another rank, no samples, or an empty height or width.
pub fn heatmap_overlay(image: &RgbImage, features: &Tensor) -> RgbImage {
    let (channels, h, w) = match *features.shape() {
        [n, c, h, w] => {
            assert!(n > 0, "heatmap_overlay: the feature tensor {:?} holds no sample", features.shape());
            (c, h, w)
        }
        [c, h, w] => (c, h, w),
        [h, w] => (1, h, w),
        _ => panic!("heatmap_overlay: features must be [N, C, h, w], [C, h, w] or [h, w], not {:?}", features.shape()),
    };
    assert!(h > 0 && w > 0, "heatmap_overlay: the feature map {:?} is empty", features.shape());
    let plane = h * w;
    let sample = &features.data()[..channels * plane];
    let mut norms: Vec<f32> = (0..plane).map(|i| (0..channels).map(|c| sample[c * plane + i].powi(2)).sum::<f32>().sqrt()).collect();
    let finite = norms.iter().copied().filter(|v| v.is_finite());
    let (low, high) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let range = high - low;
    for v in &mut norms {
        *v = if range > 0.0 && range.is_finite() {
            let t = (*v - low) / range;
            if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) }
        } else {
            0.0
        };
    }

    // align_corners=True: output pixel i sits at input position i·(in − 1)/(out − 1).
    let source = |i: u32, out: u32, len: usize| -> (usize, usize, f32) {
        let pos = if out > 1 { i as f32 * (len - 1) as f32 / (out - 1) as f32 } else { 0.0 };
        let lo = (pos.floor() as usize).min(len - 1);
        (lo, (lo + 1).min(len - 1), pos - lo as f32)
    };
    let (out_w, out_h) = image.dimensions();
    let columns: Vec<_> = (0..out_w).map(|x| source(x, out_w, w)).collect();
    RgbImage::from_fn(out_w, out_h, |x, y| {
        let (y0, y1, fy) = source(y, out_h, h);
        let (x0, x1, fx) = columns[x as usize];
        let at = |yy: usize, xx: usize| norms[yy * w + xx];
        let top = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * fx;
        let bottom = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * fx;
        let heat = inferno(top + (bottom - top) * fy);
        let under = image.get_pixel(x, y).0;
        image::Rgb(std::array::from_fn(|k| (HEAT_ALPHA * heat[k] + (1.0 - HEAT_ALPHA) * under[k] as f32).round().clamp(0.0, 255.0) as u8))
    })
}

const HEAT_ALPHA: f32 = 0.55;

/// Matplotlib's "inferno" at eleven evenly spaced stops (black, purple, red, orange, pale
/// yellow), interpolated linearly; `t` in [0, 1], result in 0–255.
fn inferno(t: f32) -> [f32; 3] {
    const STOPS: [[f32; 3]; 11] = [
        [0.0, 0.0, 4.0],
        [22.0, 11.0, 57.0],
        [66.0, 10.0, 104.0],
        [106.0, 23.0, 110.0],
        [147.0, 38.0, 103.0],
        [188.0, 55.0, 84.0],
        [221.0, 81.0, 58.0],
        [243.0, 120.0, 25.0],
        [252.0, 165.0, 10.0],
        [246.0, 215.0, 70.0],
        [252.0, 255.0, 164.0],
    ];
    let pos = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (pos.floor() as usize).min(STOPS.len() - 2);
    let f = pos - i as f32;
    std::array::from_fn(|k| STOPS[i][k] + (STOPS[i + 1][k] - STOPS[i][k]) * f)
}

/// The arg-max class of every pixel of `[N, classes, H, W]` logits, `[N, H, W]` flat; the first
/// class wins a tie (as `torch.argmax`), and NaN never wins.
pub fn argmax_classes(logits: &Tensor) -> Vec<usize> {
    let [n, classes, h, w] = logits.shape().try_into().expect("logits are [N, classes, H, W]");
    let plane = h * w;
    let mut best = vec![0usize; n * plane];
    for sample in 0..n {
        let at = |c: usize, i: usize| logits.data()[(sample * classes + c) * plane + i];
        for (i, winner) in best[sample * plane..][..plane].iter_mut().enumerate() {
            for c in 1..classes {
                if at(c, i) > at(*winner, i) || at(*winner, i).is_nan() && !at(c, i).is_nan() {
                    *winner = c;
                }
            }
        }
    }
    best
}

/// The Pascal VOC colour map: class `i`'s colour spreads the bits of `i` over the high bits of
/// R, G and B (background black, 1 maroon, 2 green, …, 255 the "void" outline colour).
pub fn voc_palette() -> [[u8; 3]; 256] {
    std::array::from_fn(|class| {
        let mut rgb = [0u8; 3];
        let mut bits = class;
        for shift in (0..8).rev() {
            for (channel, value) in rgb.iter_mut().enumerate() {
                *value |= (((bits >> channel) & 1) as u8) << shift;
            }
            bits >>= 3;
        }
        rgb
    })
}

/// Writes a class-index mask (`classes[y·width + x]`, each below 256) as an 8-bit paletted PNG
/// with the VOC palette, as VOC's own `SegmentationClass` files are: the pixel values are the
/// class indices, the palette shows them in colour. Atomic (see the module documentation).
pub fn save_mask_png(classes: &[usize], height: usize, width: usize, path: &Path) -> Result<(), ImageError> {
    let write_err = |source| ImageError::Write { path: path.to_owned(), source };
    assert_eq!(classes.len(), height * width, "one class per pixel");
    if let Some(&too_many) = classes.iter().find(|&&c| c > 255) {
        return Err(write_err(std::io::Error::other(format!("a paletted PNG holds classes 0–255; this mask has class {too_many}"))));
    }
    let (w, h) = (u32::try_from(width), u32::try_from(height));
    let (Ok(w), Ok(h)) = (w, h) else { return Err(write_err(std::io::Error::other("the mask is too large for a PNG"))) };
    let pixels: Vec<u8> = classes.iter().map(|&c| c as u8).collect();
    let palette: Vec<u8> = voc_palette().into_iter().flatten().collect();
    write_atomically(path, |file| {
        let mut encoder = png::Encoder::new(file, w, h);
        encoder.set_color(png::ColorType::Indexed);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_palette(palette);
        let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
        writer.write_image_data(&pixels).map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    })
    .map_err(write_err)
}

/// The mask's colours over `image` (same size): every pixel of a class other than 0 (the
/// background) is blended half and half with its VOC colour; background pixels are left as
/// they are.
pub fn mask_overlay(image: &RgbImage, classes: &[usize]) -> RgbImage {
    let palette = voc_palette();
    let width = image.width() as usize;
    assert_eq!(classes.len(), width * image.height() as usize, "one class per pixel of the image");
    RgbImage::from_fn(image.width(), image.height(), |x, y| {
        let under = image.get_pixel(x, y).0;
        match classes[y as usize * width + x as usize] {
            0 => image::Rgb(under),
            class => {
                let colour = palette[class % 256];
                image::Rgb(std::array::from_fn(|k| (under[k] as u16 + colour[k] as u16).div_ceil(2) as u8))
            }
        }
    })
}

/// Undoes [`image_to_tensor`] on sample `sample` of an `[N, 3, H, W]` tensor: the picture a
/// normalised input shows (values outside 0–255 clipped).
pub fn tensor_to_image(tensor: &Tensor, sample: usize) -> RgbImage {
    let [_, channels, h, w] = tensor.shape().try_into().expect("an [N, 3, H, W] tensor");
    assert_eq!(channels, 3, "a picture has 3 channels");
    let plane = h * w;
    let data = &tensor.data()[sample * 3 * plane..][..3 * plane];
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        image::Rgb(std::array::from_fn(|c| ((data[c * plane + i] * IMAGENET_STD[c] + IMAGENET_MEAN[c]) * 255.0).round().clamp(0.0, 255.0) as u8))
    })
}

/// Writes `image` as a PNG file, atomically (see the module documentation).
pub fn save_png(image: &RgbImage, path: &Path) -> Result<(), ImageError> {
    let write_err = |source| ImageError::Write { path: path.to_owned(), source };
    if image.width() == 0 || image.height() == 0 {
        let (w, h) = image.dimensions();
        return Err(write_err(std::io::Error::other(format!("a PNG cannot hold an empty ({h}×{w}) image"))));
    }
    write_atomically(path, |file| {
        image::codecs::png::PngEncoder::new(file)
            .write_image(image.as_raw(), image.width(), image.height(), image::ExtendedColorType::Rgb8)
            .map_err(|e| match e {
                image::ImageError::IoError(io) => io,
                other => std::io::Error::other(other.to_string()),
            })
    })
    .map_err(write_err)
}
