//! Each format from small fixture files written here.

use std::io::Write;
use std::path::Path;

use super::*;

fn shaping(size: usize, channels: usize) -> Shaping {
    Shaping {
        image_size: size,
        channels,
        strict: false,
    }
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[test]
fn embedded_mnist_has_ten_thousand_labelled_digits() {
    let data = load(EMBEDDED_MNIST, &shaping(28, 1)).expect("embedded");
    assert_eq!(data.len(), 10_000);
    assert_eq!(data.num_classes(), Some(10));
    let labels = data.labels.as_ref().expect("labels");
    assert_eq!(labels.iter().filter(|&&l| l == 1).count(), 1127);
    // Digits are bright strokes on black: mostly zeros, some full-white pixels.
    let zeros = data.pixels.iter().filter(|&&p| p == 0).count() as f64;
    assert!(zeros / data.pixels.len() as f64 > 0.7);
    assert!(data.pixels.contains(&255));
}

#[test]
fn idx_files_load_plain_or_gzipped_with_their_labels() {
    // In a folder whose own name has `images` in it: only the file name maps to the labels'.
    let dir = tempfile::Builder::new()
        .prefix("images-")
        .tempdir()
        .expect("tmp");
    let pixels: Vec<u8> = (0..2 * 4 * 4).map(|i| (i * 8) as u8).collect();
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte.gz"),
        gz(&idx(0x803, &[2, 4, 4], &pixels)),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("train-labels-idx1-ubyte.gz"),
        gz(&idx(0x801, &[2], &[7, 3])),
    )
    .expect("write");
    let data = load(dir.path().to_str().expect("utf8"), &shaping(4, 1)).expect("idx");
    assert_eq!(data.len(), 2);
    assert_eq!(data.labels, Some(vec![7, 3]));
    assert_eq!(data.class_names.len(), 8);
    assert_eq!(data.pixels, pixels);
    // Three channels replicate the gray value.
    let rgb = load(dir.path().to_str().expect("utf8"), &shaping(4, 3)).expect("idx rgb");
    assert_eq!(rgb.pixels[..16], pixels[..16]);
    assert_eq!(rgb.pixels[16..32], pixels[..16]);
}

#[test]
fn corrupt_idx_files_are_refused_with_their_name() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("t10k-images-idx3-ubyte");
    std::fs::write(&path, idx(0x803, &[2, 4, 4], &[0; 20])).expect("write"); // truncated
    let err = format!(
        "{:#}",
        load(path.to_str().expect("utf8"), &shaping(4, 1)).expect_err("truncated")
    );
    assert!(
        err.contains("t10k-images-idx3-ubyte") && err.contains("truncated"),
        "{err}"
    );
    std::fs::write(&path, idx(0x801, &[2], &[0; 2])).expect("write"); // labels, not images
    let err = format!(
        "{:#}",
        load(path.to_str().expect("utf8"), &shaping(4, 1)).expect_err("magic")
    );
    assert!(err.contains("magic"), "{err}");
    let gz_path = dir.path().join("x-images-idx3-ubyte.gz");
    std::fs::write(&gz_path, b"not gzip").expect("write");
    let err = format!(
        "{:#}",
        load(gz_path.to_str().expect("utf8"), &shaping(4, 1)).expect_err("gz")
    );
    assert!(err.contains("gzip"), "{err}");
}

#[test]
fn cifar_batches_load_with_class_names() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut record = vec![4u8];
    record.extend(std::iter::repeat_n(255u8, 1024)); // red plane
    record.extend(std::iter::repeat_n(0u8, 2048)); // green, blue
    let mut batch = record.clone();
    record[0] = 9;
    batch.extend(&record);
    std::fs::write(dir.path().join("data_batch_1.bin"), &batch).expect("write");
    let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    std::fs::write(dir.path().join("batches.meta.txt"), names).expect("write");
    let data = load(dir.path().to_str().expect("utf8"), &shaping(32, 3)).expect("cifar");
    assert_eq!(data.len(), 2);
    assert_eq!(data.labels, Some(vec![4, 9]));
    assert_eq!(data.class_names[4], "deer");
    assert_eq!(data.pixels[0], 255);
    assert_eq!(data.pixels[1024], 0);
    // A file that is not whole records.
    std::fs::write(dir.path().join("data_batch_2.bin"), &batch[..100]).expect("write");
    let err = format!(
        "{:#}",
        load(dir.path().to_str().expect("utf8"), &shaping(32, 3)).expect_err("partial")
    );
    assert!(
        err.contains("data_batch_2.bin") && err.contains("records"),
        "{err}"
    );
}

fn write_png(path: &Path, rgba: [u8; 4], size: u32) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    image::RgbaImage::from_pixel(size, size, image::Rgba(rgba))
        .save(path)
        .expect("png");
}

#[test]
fn an_image_folder_is_resized_composited_and_labelled_by_subfolder() {
    let dir = tempfile::tempdir().expect("tmp");
    write_png(&dir.path().join("cats/a.png"), [0, 0, 0, 255], 16);
    write_png(&dir.path().join("dogs/deep/b.png"), [0, 0, 0, 0], 8); // transparent → white
    std::fs::write(dir.path().join("dogs/notes.txt"), "not an image").expect("write");
    let data = load(dir.path().to_str().expect("utf8"), &shaping(4, 1)).expect("folder");
    assert_eq!(data.len(), 2);
    assert_eq!(data.class_names, vec!["cats", "dogs"]);
    assert_eq!(data.labels, Some(vec![0, 1]));
    assert!(data.pixels[..16].iter().all(|&p| p == 0));
    assert!(data.pixels[16..].iter().all(|&p| p == 255));
    // --strict passes over the text file but fails on an image file that does not decode.
    let strict = Shaping {
        strict: true,
        ..shaping(4, 1)
    };
    assert_eq!(
        load(dir.path().to_str().expect("utf8"), &strict)
            .expect("strict")
            .len(),
        2
    );
    std::fs::write(dir.path().join("dogs/broken.png"), "not a png").expect("write");
    let err = format!(
        "{:#}",
        load(dir.path().to_str().expect("utf8"), &strict).expect_err("strict")
    );
    assert!(err.contains("broken.png"), "{err}");
    // Images directly in the root: no labels.
    write_png(&dir.path().join("c.png"), [9, 9, 9, 255], 4);
    let data = load(dir.path().to_str().expect("utf8"), &shaping(4, 1)).expect("folder");
    assert_eq!(data.labels, None);
}

fn path_str(dir: &tempfile::TempDir) -> &str {
    dir.path().to_str().expect("utf8")
}

#[test]
fn only_image_files_count_and_only_classes_with_a_decoded_image() {
    let dir = tempfile::tempdir().expect("tmp");
    write_png(&dir.path().join("cats/a.png"), [0, 0, 0, 255], 4);
    write_png(&dir.path().join("dogs/B.PNG"), [255, 255, 255, 255], 4);
    std::fs::write(dir.path().join("README.txt"), "about").expect("write");
    std::fs::create_dir(dir.path().join("zz_notes")).expect("dir");
    std::fs::write(dir.path().join("zz_notes/readme.txt"), "notes").expect("write");
    std::fs::create_dir(dir.path().join("broken")).expect("dir");
    std::fs::write(dir.path().join("broken/x.png"), "not a png").expect("write");
    let data = load(path_str(&dir), &shaping(4, 1)).expect("folder");
    assert_eq!(data.class_names, vec!["cats", "dogs"]);
    assert_eq!(data.labels, Some(vec![0, 1]));
    assert_eq!(data.pixels[0], 0);
    assert_eq!(data.pixels[16], 255);
    // --strict fails on the image that does not decode, not on the READMEs.
    let strict = Shaping {
        strict: true,
        ..shaping(4, 1)
    };
    let err = format!("{:#}", load(path_str(&dir), &strict).expect_err("strict"));
    assert!(err.contains("x.png") && !err.contains("README"), "{err}");
    std::fs::remove_dir_all(dir.path().join("broken")).expect("rm");
    assert_eq!(load(path_str(&dir), &strict).expect("strict").len(), 2);
    // Only text: no images, said so.
    let text = tempfile::tempdir().expect("tmp");
    std::fs::write(text.path().join("a.txt"), "x").expect("write");
    let err = format!(
        "{:#}",
        load(path_str(&text), &shaping(4, 1)).expect_err("text")
    );
    assert!(err.contains("no image files"), "{err}");
}

#[test]
fn the_format_comes_from_the_bytes_and_tiff_decodes() {
    let dir = tempfile::tempdir().expect("tmp");
    let gray = |v| image::GrayImage::from_pixel(4, 4, image::Luma([v]));
    // A PNG named .jpg, and a TIFF with an upper-case extension.
    gray(40)
        .write_to(
            &mut std::fs::File::create(dir.path().join("a.jpg")).expect("create"),
            image::ImageFormat::Png,
        )
        .expect("png");
    gray(90)
        .write_to(
            &mut std::fs::File::create(dir.path().join("b.TIFF")).expect("create"),
            image::ImageFormat::Tiff,
        )
        .expect("tiff");
    let data = load(path_str(&dir), &shaping(4, 1)).expect("folder");
    assert_eq!(data.len(), 2);
    assert!(data.pixels[..16].iter().all(|&p| p == 40));
    assert!(data.pixels[16..].iter().all(|&p| p == 90));
}

#[cfg(unix)]
#[test]
fn links_to_folders_are_not_followed_but_links_to_images_are() {
    let dir = tempfile::tempdir().expect("tmp");
    write_png(&dir.path().join("cats/a.png"), [0, 0, 0, 255], 4);
    write_png(&dir.path().join("dogs/b.png"), [255, 255, 255, 255], 4);
    // A loop back to the root, and a linked image file.
    std::os::unix::fs::symlink("..", dir.path().join("cats/loop")).expect("link");
    std::os::unix::fs::symlink("../cats/a.png", dir.path().join("dogs/c.png")).expect("link");
    let data = load(path_str(&dir), &shaping(4, 1)).expect("folder");
    assert_eq!(data.len(), 3);
    assert_eq!(data.labels, Some(vec![0, 1, 1]));
    assert_eq!(data.pixels[16], 255); // dogs/b.png
    assert_eq!(data.pixels[32], 0); // dogs/c.png → cats/a.png
}

#[cfg(unix)]
#[test]
fn class_folders_whose_names_are_not_utf8_are_refused() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().expect("tmp");
    for (name, file) in [(&b"caf\xe9"[..], "a.png"), (&b"caf\xe8"[..], "b.png")] {
        let folder = dir.path().join(std::ffi::OsStr::from_bytes(name));
        write_png(&folder.join(file), [0, 0, 0, 255], 4);
    }
    let err = format!(
        "{:#}",
        load(path_str(&dir), &shaping(4, 1)).expect_err("names")
    );
    assert!(
        err.contains("caf\u{fffd}") && err.contains("not UTF-8"),
        "{err}"
    );
}

#[test]
fn a_thin_image_is_centre_cropped_before_resizing() {
    // 1×4001 black with one bright pixel in the middle: the centred 1×1 square is that pixel.
    let mut thin = image::GrayImage::new(1, 4001);
    thin.put_pixel(0, 2000, image::Luma([200]));
    let pixels = to_training_pixels(DynamicImage::ImageLuma8(thin), &shaping(8, 1));
    assert_eq!(pixels, vec![200; 64]);
}

#[test]
fn cropping_before_resizing_matches_resizing_then_cropping() {
    // Where image's resize_to_fill (what the loader did before) cuts at a whole source pixel,
    // the result is the same inside and within rounding on the border, where it no longer
    // mixes in pixels from outside the square.
    for (w, h, side) in [(64, 32, 16), (40, 64, 20), (100, 50, 32), (60, 120, 30)] {
        let image = RgbImage::from_fn(w, h, |x, y| {
            let (x, y) = (x as f32 / w as f32, y as f32 / h as f32);
            image::Rgb([
                (255.0 * x) as u8,
                (255.0 * y) as u8,
                (127.0 + 120.0 * (6.0 * x * y).sin()) as u8,
            ])
        });
        let image = DynamicImage::ImageRgb8(image);
        let before = image
            .resize_to_fill(side, side, FilterType::Triangle)
            .into_rgb8();
        let now = to_training_pixels(image, &shaping(side as usize, 3));
        let plane = (side * side) as usize;
        for (x, y, px) in before.enumerate_pixels() {
            let border = x == 0 || y == 0 || x + 1 == side || y + 1 == side;
            for c in 0..3 {
                let diff = px[c].abs_diff(now[c * plane + (y * side + x) as usize]);
                assert!(
                    diff <= if border { 2 } else { 0 },
                    "{w}×{h} → {side}: ({x}, {y}) channel {c} off by {diff}"
                );
            }
        }
    }
}

#[test]
fn idx_labels_are_found_plain_or_gzipped_and_gaps_are_found() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte.gz"),
        gz(&idx(0x803, &[2, 4, 4], &[0; 32])),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("train-labels-idx1-ubyte"),
        idx(0x801, &[2], &[1, 3]),
    )
    .expect("write");
    let data = load(path_str(&dir), &shaping(4, 1)).expect("idx");
    assert_eq!(data.labels, Some(vec![1, 3]));
    assert_eq!(idx::empty_classes(&[1, 3]), vec![0, 2]);
    assert_eq!(idx::empty_classes(&[0, 1, 2]), Vec::<usize>::new());
}

#[test]
fn missing_and_empty_sources_are_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let err = format!(
        "{:#}",
        load(dir.path().to_str().expect("utf8"), &shaping(8, 1)).expect_err("empty")
    );
    assert!(err.contains("no files"), "{err}");
    std::fs::write(dir.path().join(".hidden.png"), b"x").expect("write");
    let err = format!(
        "{:#}",
        load(dir.path().to_str().expect("utf8"), &shaping(8, 1)).expect_err("hidden only")
    );
    assert!(err.contains("nothing but hidden entries (1,"), "{err}");
    let missing = dir.path().join("nope");
    let err = format!(
        "{:#}",
        load(missing.to_str().expect("utf8"), &shaping(8, 1)).expect_err("missing")
    );
    assert!(
        err.contains("nope") && err.contains("does not exist"),
        "{err}"
    );
    let err = format!(
        "{:#}",
        load(EMBEDDED_MNIST, &shaping(28, 2)).expect_err("channels")
    );
    assert!(err.contains("channels"), "{err}");
}

#[test]
fn batch_order_is_a_permutation_per_epoch_and_resumes_exactly() {
    let mut order = BatchOrder::new(3);
    let (first, _) = order.next(&Visits::once(10), 6, 0.0);
    let (second, _) = order.next(&Visits::once(10), 6, 0.0); // 4 from epoch 0, 2 from epoch 1
    let mut epoch0: Vec<usize> = first.iter().chain(&second[..4]).copied().collect();
    epoch0.sort();
    assert_eq!(epoch0, (0..10).collect::<Vec<_>>());
    let saved = order.clone();
    let (a, fa) = order.next(&Visits::once(10), 5, 0.5);
    let mut resumed = saved;
    let (b, fb) = resumed.next(&Visits::once(10), 5, 0.5);
    assert_eq!((a, fa), (b, fb));
}

#[test]
fn colour_becomes_gray_as_pil_makes_it() {
    // `tests/fixtures/pil/make.py`: PIL's `convert('L')` of 128 colours (16×8), what
    // lucidrains' `Dataset` gives a one-channel model.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pil");
    let colours = decode(&fixtures.join("colours.png")).expect("colours.png");
    let pil = decode(&fixtures.join("colours-L.png")).expect("colours-L.png");
    let DynamicImage::ImageLuma8(pil) = pil else {
        panic!("colours-L.png is not 8-bit gray");
    };
    let ours: Vec<u8> = colours.to_rgb8().pixels().map(|px| luma(px.0)).collect();
    assert_eq!(ours, pil.as_raw()[..]);
    // Through the loader: the middle 8×8, no resizing.
    let middle: Vec<u8> = (0..64).map(|i| pil[(4 + i % 8, i / 8)][0]).collect();
    assert_eq!(to_training_pixels(colours, &shaping(8, 1)), middle);
}
