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
    // --strict fails on the text file, naming it.
    let strict = Shaping {
        strict: true,
        ..shaping(4, 1)
    };
    let err = format!(
        "{:#}",
        load(dir.path().to_str().expect("utf8"), &strict).expect_err("strict")
    );
    assert!(err.contains("notes.txt"), "{err}");
    // Images directly in the root: no labels.
    write_png(&dir.path().join("c.png"), [9, 9, 9, 255], 4);
    let data = load(dir.path().to_str().expect("utf8"), &shaping(4, 1)).expect("folder");
    assert_eq!(data.labels, None);
}

#[test]
fn missing_and_empty_sources_are_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let err = format!(
        "{:#}",
        load(dir.path().to_str().expect("utf8"), &shaping(8, 1)).expect_err("empty")
    );
    assert!(err.contains("no files"), "{err}");
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
    let (first, _) = order.next(10, 6, 0.0);
    let (second, _) = order.next(10, 6, 0.0); // 4 from epoch 0, 2 from epoch 1
    let mut epoch0: Vec<usize> = first.iter().chain(&second[..4]).copied().collect();
    epoch0.sort();
    assert_eq!(epoch0, (0..10).collect::<Vec<_>>());
    let saved = order.clone();
    let (a, fa) = order.next(10, 5, 0.5);
    let mut resumed = saved;
    let (b, fb) = resumed.next(10, 5, 0.5);
    assert_eq!((a, fa), (b, fb));
}
