//! Image loading, normalisation, the built-in picture, heatmap overlays and PNG output.

use atrous::imaging::{heatmap_overlay, image_to_tensor, load_image, save_png, synthetic_image, ImageError, IMAGENET_MEAN, IMAGENET_STD};
use atrous::{Hw, Tensor};
use image::{Rgb, RgbImage};

fn uniform(height: u32, width: u32, colour: [u8; 3]) -> RgbImage {
    RgbImage::from_pixel(width, height, Rgb(colour))
}

fn brightness(p: &Rgb<u8>) -> u32 {
    p.0.iter().map(|&v| v as u32).sum()
}

#[test]
fn image_to_tensor_matches_hand_computed_values() {
    // (row, col): (0,0) red, (0,1) green, (1,0) blue, (1,1) grey 128.
    let mut image = RgbImage::new(2, 2);
    image.put_pixel(0, 0, Rgb([255, 0, 0]));
    image.put_pixel(1, 0, Rgb([0, 255, 0]));
    image.put_pixel(0, 1, Rgb([0, 0, 255]));
    image.put_pixel(1, 1, Rgb([128, 128, 128]));
    let tensor = image_to_tensor(&image);
    assert_eq!(tensor.shape(), &[1, 3, 2, 2]);
    let grey = 128.0 / 255.0;
    #[rustfmt::skip]
    let expected = [
        // R: (1 − .485)/.229, (0 − .485)/.229, …
        2.248_908, -2.117_904, -2.117_904, (grey - 0.485) / 0.229,
        // G: (0 − .456)/.224, (1 − .456)/.224, …
        -2.035_714, 2.428_571, -2.035_714, (grey - 0.456) / 0.224,
        // B: (0 − .406)/.225, …, (1 − .406)/.225 = 2.64
        -1.804_444, -1.804_444, 2.64, (grey - 0.406) / 0.225,
    ];
    for (i, (&got, &want)) in tensor.data().iter().zip(&expected).enumerate() {
        assert!((got - want).abs() < 1e-5, "element {i}: got {got}, expected {want}");
    }
    assert!((0.074_064 - (grey - IMAGENET_MEAN[0]) / IMAGENET_STD[0]).abs() < 1e-5);
}

#[test]
fn png_round_trips_and_resizes_to_the_requested_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scene.png");
    let original = synthetic_image(33, 49);
    save_png(&original, &path).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("scene.png")], "only the PNG is left, no temporary file");

    let loaded = load_image(&path, None).unwrap();
    assert_eq!(loaded, original, "PNG is lossless");

    let resized = load_image(&path, Some(Hw::new(7, 12))).unwrap();
    assert_eq!((resized.height(), resized.width()), (7, 12));
    let upscaled = load_image(&path, Some(Hw::new(64, 50))).unwrap();
    assert_eq!((upscaled.height(), upscaled.width()), (64, 50));
    let same = load_image(&path, Some(Hw::new(33, 49))).unwrap();
    assert_eq!(same, original, "resizing to the image's own size changes nothing");

    let err = load_image(&path, Some(Hw::new(0, 5))).unwrap_err();
    assert!(matches!(err, ImageError::InvalidSize { .. }), "{err:?}");
}

#[test]
fn jpeg_loads_close_to_what_was_encoded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grey.jpg");
    let original = uniform(16, 24, [90, 140, 200]);
    original.save_with_format(&path, image::ImageFormat::Jpeg).unwrap();
    let loaded = load_image(&path, None).unwrap();
    assert_eq!(loaded.dimensions(), (24, 16));
    for p in loaded.pixels() {
        for (got, want) in p.0.iter().zip([90u8, 140, 200]) {
            assert!((*got as i32 - want as i32).abs() <= 4, "{:?}", p.0);
        }
    }
}

#[test]
fn missing_corrupt_and_foreign_files_give_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("no-such-picture.png");
    let err = load_image(&missing, None).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ImageError::Open { .. }), "{err:?}");
    assert!(message.contains("no-such-picture.png") && message.contains("cannot open"), "{message}");

    let corrupt = dir.path().join("corrupt.png");
    std::fs::write(&corrupt, b"this is not a PNG at all, just some text").unwrap();
    let err = load_image(&corrupt, None).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ImageError::Corrupt { .. }), "{err:?}");
    assert!(message.contains("corrupt.png") && message.contains("not a valid PNG image"), "{message}");

    // A real PNG cut short after its header.
    let truncated = dir.path().join("truncated.png");
    save_png(&synthetic_image(40, 40), &truncated).unwrap();
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_image(&truncated, None).unwrap_err();
    assert!(err.to_string().contains("truncated.png"), "{err}");

    let foreign = dir.path().join("notes.txt");
    std::fs::write(&foreign, b"plain text").unwrap();
    let err = load_image(&foreign, None).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ImageError::UnsupportedFormat { .. }), "{err:?}");
    assert!(message.contains("notes.txt") && message.contains("PNG and JPEG"), "{message}");

    // The library-wide error carries it unchanged.
    let wrapped: atrous::Error = load_image(&missing, None).unwrap_err().into();
    assert!(wrapped.to_string().contains("no-such-picture.png"));
}

#[test]
fn save_png_into_a_missing_directory_fails_naming_the_path_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent").join("out.png");
    let err = save_png(&synthetic_image(8, 8), &path).unwrap_err();
    assert!(matches!(err, ImageError::Write { .. }), "{err:?}");
    assert!(err.to_string().contains("out.png"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let err = save_png(&RgbImage::new(0, 4), &dir.path().join("empty.png")).unwrap_err();
    assert!(err.to_string().contains("empty.png"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn heatmap_overlay_has_the_image_size_in_every_layout() {
    let image = synthetic_image(37, 53);
    for features in [Tensor::random(vec![2, 4, 5, 7], 1), Tensor::random(vec![4, 5, 7], 2), Tensor::random(vec![5, 7], 3)] {
        let overlay = heatmap_overlay(&image, &features);
        assert_eq!(overlay.dimensions(), image.dimensions(), "{:?}", features.shape());
    }
    // Only sample 0 of a batch is shown.
    let first = Tensor::random(vec![1, 4, 5, 7], 1);
    let mut batch = first.data().to_vec();
    batch.extend(Tensor::random(vec![1, 4, 5, 7], 9).data());
    let batch = Tensor::new(vec![2, 4, 5, 7], batch).unwrap();
    assert_eq!(heatmap_overlay(&image, &batch), heatmap_overlay(&image, &first));
    // A single-pixel image and a single-position map.
    assert_eq!(heatmap_overlay(&uniform(1, 1, [9, 9, 9]), &Tensor::random(vec![3, 4, 4], 4)).dimensions(), (1, 1));
    assert_eq!(heatmap_overlay(&image, &Tensor::random(vec![1, 3, 1, 1], 5)).dimensions(), image.dimensions());
}

#[test]
fn a_constant_feature_map_gives_one_uniform_cold_colour() {
    let image = uniform(20, 30, [100, 150, 200]);
    let constant = heatmap_overlay(&image, &Tensor::from_fn(vec![1, 8, 6, 6], |_| 3.5));
    let zeros = heatmap_overlay(&image, &Tensor::zeros(vec![1, 8, 6, 6]));
    let first = *constant.get_pixel(0, 0);
    assert!(constant.pixels().all(|p| *p == first), "a constant map must give a uniform overlay");
    assert_eq!(constant, zeros, "a constant map is all zero heat, whatever its value");
    assert_ne!(first, Rgb([100, 150, 200]), "the heat is blended in");
    // Zero heat is the colormap's dark end: darker than the image under it.
    assert!(brightness(&first) < brightness(&Rgb([100, 150, 200])));
}

#[test]
fn a_hot_corner_makes_that_corner_of_the_overlay_the_hottest_colour() {
    let image = uniform(9, 9, [0, 0, 0]);
    let cold = *heatmap_overlay(&image, &Tensor::zeros(vec![1, 1, 2, 2])).get_pixel(0, 0);
    let hot_corner = Tensor::new(vec![1, 1, 2, 2], vec![1.0, 0.0, 0.0, 0.0]).unwrap();
    let overlay = heatmap_overlay(&image, &hot_corner);
    let corner = *overlay.get_pixel(0, 0);
    assert!(overlay.enumerate_pixels().all(|(x, y, p)| (x, y) == (0, 0) || brightness(p) < brightness(&corner)), "the corner is the one hottest pixel");
    // align_corners=True: heat falls off from the very first pixel (with half-pixel sampling the
    // corner would be a flat plateau) and the opposite corner carries the map's cold corner.
    assert!(brightness(overlay.get_pixel(1, 0)) < brightness(&corner));
    assert!(brightness(overlay.get_pixel(0, 1)) < brightness(&corner));
    assert_eq!(*overlay.get_pixel(8, 8), cold);
    assert_eq!(*overlay.get_pixel(8, 0), cold);
    // The hottest colour is the same wherever the hot position is.
    let hot_opposite = Tensor::new(vec![1, 1, 2, 2], vec![0.0, 0.0, 0.0, 1.0]).unwrap();
    assert_eq!(*heatmap_overlay(&image, &hot_opposite).get_pixel(8, 8), corner);
}

#[test]
fn feature_positions_land_on_pixels_a_stride_apart_for_inputs_of_32m_plus_1() {
    // An 11×11 map over a 161×161 image (stride 16): position (i, j) sits on pixel (16i, 16j).
    let image = synthetic_image(161, 161);
    let mut features = Tensor::zeros(vec![1, 2, 11, 11]);
    features.data_mut()[3 * 11 + 7] = 2.0;
    features.data_mut()[121 + 3 * 11 + 7] = -1.0;
    let overlay = heatmap_overlay(&uniform(161, 161, [0, 0, 0]), &features);
    let hottest = overlay.enumerate_pixels().max_by_key(|(_, _, p)| brightness(p)).unwrap();
    assert_eq!((hottest.0, hottest.1), (7 * 16, 3 * 16), "hot position (row 3, col 7) lands on pixel (48, 112)");
    let peak = *hottest.2;
    assert_eq!(overlay.pixels().filter(|p| **p == peak).count(), 1);
    // Over a real picture the overlay differs from the picture but keeps its size.
    let over_scene = heatmap_overlay(&image, &features);
    assert_eq!(over_scene.dimensions(), (161, 161));
    assert_ne!(over_scene, image);
}

#[test]
fn synthetic_image_is_deterministic_and_not_uniform() {
    let a = synthetic_image(161, 161);
    assert_eq!(a.dimensions(), (161, 161));
    assert_eq!(a, synthetic_image(161, 161));
    let first = *a.get_pixel(0, 0);
    let distinct: std::collections::HashSet<_> = a.pixels().map(|p| p.0).collect();
    assert!(distinct.len() > 50, "only {} distinct colours", distinct.len());
    assert!(a.pixels().any(|p| *p != first));
    // Sky above, ground below: the top row is bluer than it is green, the bottom row greener.
    let top = a.get_pixel(5, 0).0;
    let bottom = a.get_pixel(80, 160).0;
    assert!(top[2] > top[1] && top[2] > top[0], "sky {top:?}");
    assert!(bottom[1] > bottom[0] && bottom[1] > bottom[2], "field {bottom:?}");
    // Any size, including non-square and tiny ones.
    assert_eq!(synthetic_image(33, 97).dimensions(), (97, 33));
    assert_eq!(synthetic_image(1, 1).dimensions(), (1, 1));
    assert_eq!(synthetic_image(0, 4).dimensions(), (4, 0));
}
