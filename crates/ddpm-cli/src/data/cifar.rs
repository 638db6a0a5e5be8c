//! CIFAR-10's binary batches: records of one label byte and 32×32 RGB planes (R, then G, then B),
//! 3,073 bytes each; `batches.meta.txt` beside them names the classes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use image::{DynamicImage, RgbImage};

use super::RawImages;

const SIDE: usize = 32;
const RECORD: usize = 1 + 3 * SIDE * SIDE;

/// The batch file `path`, or the training batches (`data_batch_*.bin`, else `test_batch.bin`)
/// in the folder `path`, if any.
pub(super) fn find(path: &Path) -> Result<Option<Vec<PathBuf>>> {
    if path.is_file() {
        return Ok(path
            .extension()
            .is_some_and(|e| e == "bin")
            .then(|| vec![path.to_path_buf()]));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("{}: cannot list the folder", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let named = |prefix: &str| -> Vec<PathBuf> {
        files
            .iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".bin"))
            })
            .cloned()
            .collect()
    };
    let train = named("data_batch_");
    if !train.is_empty() {
        return Ok(Some(train));
    }
    let test = named("test_batch");
    Ok((!test.is_empty()).then_some(test))
}

/// Loads the batches and the class names (`batches.meta.txt`, else `0`–`9`).
pub(super) fn load(batches: &[PathBuf]) -> Result<RawImages> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for path in batches {
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        if bytes.is_empty() || bytes.len() % RECORD != 0 {
            bail!(
                "{}: {} bytes is not a whole number of CIFAR-10 records ({RECORD} bytes each)",
                path.display(),
                bytes.len()
            );
        }
        for (i, record) in bytes.chunks(RECORD).enumerate() {
            let label = usize::from(record[0]);
            if label > 9 {
                bail!("{}: record {i} has label {label}, not 0–9", path.display());
            }
            let planes = &record[1..];
            let plane = SIDE * SIDE;
            let interleaved: Vec<u8> = (0..plane)
                .flat_map(|p| [planes[p], planes[plane + p], planes[2 * plane + p]])
                .collect();
            let image = RgbImage::from_raw(SIDE as u32, SIDE as u32, interleaved)
                .context("CIFAR-10 record size")?;
            images.push(DynamicImage::ImageRgb8(image));
            labels.push(label);
        }
    }
    let meta = batches
        .first()
        .and_then(|p| p.parent())
        .map(|dir| dir.join("batches.meta.txt"));
    let names: Vec<String> = meta
        .and_then(|m| std::fs::read_to_string(m).ok())
        .map(|text| {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .filter(|names: &Vec<String>| names.len() == 10)
        .unwrap_or_else(|| (0..10).map(|c| c.to_string()).collect());
    Ok(RawImages {
        images,
        labels: Some(labels),
        class_names: names,
    })
}
