//! IDX files, the format of MNIST and Fashion-MNIST: a big-endian header (magic `0x0000_08TT`
//! with type `0x08` = unsigned byte and the number of dimensions in the last byte, then each
//! dimension), then the bytes. Plain or gzipped.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use image::{DynamicImage, GrayImage};

use super::{RawImages, gunzip, read_maybe_gz};

/// The IDX image file at `path`, or the one inside the folder `path`, if any.
pub(super) fn find(path: &Path) -> Result<Option<PathBuf>> {
    let is_images = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains("idx3-ubyte"))
    };
    if path.is_file() {
        return Ok(is_images(path).then(|| path.to_path_buf()));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("{}: cannot list the folder", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_images(p))
        .collect();
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => bail!(
            "{}: several IDX image files ({}); name one of them",
            path.display(),
            file_names(&found, ", ")
        ),
    }
}

/// The names of `paths`' files, joined by `separator`, for messages.
fn file_names(paths: &[PathBuf], separator: &str) -> String {
    paths
        .iter()
        .filter_map(|p| p.file_name()?.to_str())
        .collect::<Vec<_>>()
        .join(separator)
}

/// Loads an IDX image file and, when present beside it, its labels (`images` → `labels`,
/// `idx3` → `idx1` in the name, gzipped or not whichever the images are).
pub(super) fn load(images: &Path) -> Result<RawImages> {
    let candidates = labels_names(images);
    let labels_path = candidates
        .iter()
        .find(|p| p.is_file() && p.as_path() != images)
        .cloned();
    let image_bytes = read_maybe_gz(images)?;
    let (dims, pixels) = parse(&image_bytes, 3).with_context(|| images.display().to_string())?;
    let label_bytes = match labels_path {
        Some(path) => Some((read_maybe_gz(&path)?, path)),
        None => {
            eprintln!(
                "notice: {}: no labels file beside it ({}), so the images get no classes",
                images.display(),
                file_names(&candidates, " or ")
            );
            None
        }
    };
    let labels = match label_bytes {
        Some((bytes, path)) => {
            let (ldims, labels) = parse(&bytes, 1).with_context(|| path.display().to_string())?;
            if ldims[0] != dims[0] {
                bail!(
                    "{}: {} labels for {} images in {}",
                    path.display(),
                    ldims[0],
                    dims[0],
                    images.display()
                );
            }
            Some(labels.to_vec())
        }
        None => None,
    };
    build(
        dims,
        pixels,
        labels.as_deref(),
        &images.display().to_string(),
    )
}

/// Where the labels of the IDX image file `images` may be: its name with `images` → `labels`
/// and `idx3` → `idx1`, plain and gzipped. Only the file's name changes: a folder called
/// `images` stays where it is.
fn labels_names(images: &Path) -> Vec<PathBuf> {
    let name = images
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .replace("images", "labels")
                .replace("idx3", "idx1")
        })
        .unwrap_or_default();
    let other = match name.strip_suffix(".gz") {
        Some(plain) => plain.to_owned(),
        None => format!("{name}.gz"),
    };
    vec![images.with_file_name(name), images.with_file_name(other)]
}

/// Loads gzipped image and label files held in memory (the embedded MNIST-10k).
pub(super) fn from_bytes(images_gz: &[u8], labels_gz: &[u8], name: &str) -> Result<RawImages> {
    let images = gunzip(images_gz).with_context(|| format!("{name}: images"))?;
    let labels = gunzip(labels_gz).with_context(|| format!("{name}: labels"))?;
    let (dims, pixels) = parse(&images, 3).with_context(|| format!("{name}: images"))?;
    let (_, labels) = parse(&labels, 1).with_context(|| format!("{name}: labels"))?;
    build(dims, pixels, Some(labels), name)
}

fn build(dims: Vec<usize>, pixels: &[u8], labels: Option<&[u8]>, name: &str) -> Result<RawImages> {
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    if n == 0 || h == 0 || w == 0 {
        bail!("{name}: the file holds no images (dimensions {dims:?})");
    }
    let images = pixels
        .chunks(h * w)
        .map(|px| {
            GrayImage::from_raw(w as u32, h as u32, px.to_vec())
                .map(DynamicImage::ImageLuma8)
                .context("image size")
        })
        .collect::<Result<Vec<_>>>()?;
    let labels: Option<Vec<usize>> = labels.map(|l| l.iter().map(|&c| usize::from(c)).collect());
    // Classes are 0 to the largest label (one label byte makes at most 256).
    let num_classes = labels
        .as_ref()
        .map_or(0, |l| l.iter().max().map_or(0, |m| m + 1));
    let empty = labels.as_deref().map(empty_classes).unwrap_or_default();
    if let Some(first) = empty.first() {
        eprintln!(
            "warning: {name}: labels run 0 to {}, but {} of these {num_classes} classes have no images (first: {first})",
            num_classes - 1,
            empty.len(),
        );
    }
    Ok(RawImages {
        images,
        labels,
        class_names: (0..num_classes).map(|c| c.to_string()).collect(),
    })
}

/// The classes below the largest label that no image has.
pub(super) fn empty_classes(labels: &[usize]) -> Vec<usize> {
    let mut seen = vec![false; labels.iter().max().map_or(0, |m| m + 1)];
    for &label in labels {
        seen[label] = true;
    }
    (0..seen.len()).filter(|&c| !seen[c]).collect()
}

/// Checks an IDX header of `rank` unsigned-byte dimensions and returns them with the data.
pub(super) fn parse(bytes: &[u8], rank: usize) -> Result<(Vec<usize>, &[u8])> {
    let word = |i: usize| -> Result<usize> {
        let b = bytes
            .get(4 * i..4 * i + 4)
            .context("truncated IDX header")?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let magic = word(0)?;
    if magic != 0x0800 + rank {
        bail!(
            "not an IDX file of {rank}-dimensional unsigned bytes (magic {magic:#010x}, expected {:#010x})",
            0x0800 + rank
        );
    }
    let dims: Vec<usize> = (1..=rank).map(word).collect::<Result<_>>()?;
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .context("IDX dimensions overflow")?;
    let data = &bytes[4 * (1 + rank)..];
    if data.len() != expected {
        bail!(
            "truncated or padded IDX file: dimensions {dims:?} need {expected} bytes, found {}",
            data.len()
        );
    }
    Ok((dims, data))
}
