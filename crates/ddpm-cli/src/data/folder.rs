//! A folder of images in any format the `image` crate reads, searched recursively. When every
//! image sits in a sub-folder, the first-level sub-folder names are the classes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{Dataset, Shaping, decode_error_message, to_training_pixels};

/// Loads, shapes and labels every image under `root`; files that do not decode are skipped
/// with one warning (or fail the load when `shaping.strict`).
pub(super) fn load(root: &Path, shaping: &Shaping) -> Result<Dataset> {
    let mut files = Vec::new();
    walk(root, &mut files)?;
    files.sort();
    if files.is_empty() {
        bail!("{}: the folder holds no files", root.display());
    }
    let class_of = |file: &Path| -> Option<String> {
        let relative = file.strip_prefix(root).ok()?;
        let mut parts = relative.components();
        let first = parts.next()?;
        parts.next()?; // a file directly in `root` has no class
        Some(first.as_os_str().to_string_lossy().into_owned())
    };
    let loose = files.iter().find(|f| class_of(f).is_none());
    let labelled = loose.is_none();
    if let Some(loose) = loose
        && files.iter().any(|f| class_of(f).is_some())
    {
        eprintln!(
            "notice: {}: lies beside the class folders, so the images get no classes (move it to use the folder names as classes)",
            loose.display()
        );
    }
    let mut class_names: Vec<String> = if labelled {
        files.iter().filter_map(|f| class_of(f)).collect()
    } else {
        Vec::new()
    };
    class_names.sort();
    class_names.dedup();

    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    let (mut skipped, mut first_bad) = (0, None);
    for file in &files {
        let image = match image::open(file) {
            Ok(image) => image,
            Err(e) if shaping.strict => {
                bail!("{}: cannot decode ({e})", file.display())
            }
            Err(e) => {
                skipped += 1;
                first_bad.get_or_insert_with(|| format!("{} ({e})", file.display()));
                continue;
            }
        };
        pixels.extend(to_training_pixels(&image, shaping));
        if labelled {
            let class = class_of(file).context("labelled file")?;
            labels.push(class_names.binary_search(&class).unwrap_or_default());
        }
    }
    if let Some(message) = decode_error_message(skipped, first_bad) {
        eprintln!("warning: {}: {message}", root.display());
    }
    if pixels.is_empty() {
        bail!(
            "{}: none of its {} files is an image",
            root.display(),
            files.len()
        );
    }
    Ok(Dataset {
        pixels,
        channels: shaping.channels,
        size: shaping.image_size,
        labels: labelled.then_some(labels),
        class_names: if labelled { class_names } else { Vec::new() },
    })
}

/// Every regular, non-hidden file under `dir`.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list the folder", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: cannot list the folder", dir.display()))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, files)?;
        } else if path.is_file() {
            files.push(path);
        }
    }
    Ok(())
}
