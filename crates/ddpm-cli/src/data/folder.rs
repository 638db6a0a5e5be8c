//! A folder of images, searched recursively: the files whose extension names a format this
//! build decodes ([`is_image_name`]); other files are counted and left alone. When every image
//! sits in a sub-folder, the first-level sub-folders holding an image that decodes are the
//! classes.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{Dataset, Shaping, decode, decode_error_message, to_training_pixels};

/// Loads, shapes and labels every image under `root`; images that do not decode are skipped
/// with one warning (or fail the load when `shaping.strict`).
pub(super) fn load(root: &Path, shaping: &Shaping) -> Result<Dataset> {
    let mut found = Found::default();
    walk(root, &mut found)?;
    let Found {
        mut images,
        others,
        linked_folders,
        hidden,
    } = found;
    images.sort();
    if let Some(first) = linked_folders.first() {
        eprintln!(
            "notice: {}: did not follow {} linked folder(s) (first: {})",
            root.display(),
            linked_folders.len(),
            first.display()
        );
    }
    if images.is_empty() {
        if others.is_empty() && hidden > 0 {
            bail!(
                "{}: the folder holds nothing but hidden entries ({hidden}, whose names start with `.`: skipped)",
                root.display()
            );
        }
        if others.is_empty() {
            bail!("{}: the folder holds no files", root.display());
        }
        bail!(
            "{}: the folder holds no image files ({IMAGE_NAMES}), only {} other file(s)",
            root.display(),
            others.len()
        );
    }
    if let Some(first) = others.iter().min() {
        eprintln!(
            "notice: {}: ignored {} file(s) that are not images by their extension (first: {})",
            root.display(),
            others.len(),
            first.display()
        );
    }
    let class_of = |file| class_folder(root, file);
    let loose = images.iter().find(|f| class_of(f).is_none());
    let labelled = loose.is_none();
    if let Some(loose) = loose
        && images.iter().any(|f| class_of(f).is_some())
    {
        eprintln!(
            "notice: {}: lies beside the class folders, so the images get no classes (move it to use the folder names as classes)",
            loose.display()
        );
    }
    // Classes are names: two folders whose names differ only in bytes that are not UTF-8
    // would print alike and merge.
    let mut classes = Vec::with_capacity(if labelled { images.len() } else { 0 });
    if labelled {
        for file in &images {
            let class = class_of(file).context("a file in a class folder")?;
            let Some(name) = class.to_str() else {
                bail!(
                    "{}: the class folder's name is not UTF-8; rename it",
                    root.join(class).display()
                );
            };
            classes.push(name);
        }
    }

    let mut pixels = Vec::new();
    let mut decoded_classes = Vec::new();
    let (mut skipped, mut first_bad) = (0, None);
    for (i, file) in images.iter().enumerate() {
        let image = match decode(file) {
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
        pixels.extend(to_training_pixels(image, shaping));
        if let Some(&class) = classes.get(i) {
            decoded_classes.push(class);
        }
    }
    if let Some(message) = decode_error_message(skipped, first_bad) {
        eprintln!("warning: {}: {message}", root.display());
    }
    if pixels.is_empty() {
        bail!(
            "{}: none of its {} image files decodes",
            root.display(),
            images.len()
        );
    }
    // Only classes with an image: a folder whose images all fail to decode is no class.
    let mut index: BTreeMap<&str, usize> = decoded_classes.iter().map(|&c| (c, 0)).collect();
    for (i, slot) in index.values_mut().enumerate() {
        *slot = i;
    }
    let mut empty: Vec<&str> = classes
        .iter()
        .copied()
        .filter(|c| !index.contains_key(c))
        .collect();
    empty.dedup();
    if !empty.is_empty() {
        eprintln!(
            "notice: {}: no image decodes in class folder(s) {}, so they are no classes",
            root.display(),
            empty.join(", ")
        );
    }
    let labels = decoded_classes.iter().map(|c| index[c]).collect();
    Ok(Dataset {
        pixels,
        channels: shaping.channels,
        size: shaping.image_size,
        labels: labelled.then_some(labels),
        class_names: index.into_keys().map(str::to_owned).collect(),
    })
}

/// The first-level folder below `root` that holds `file`; none for a file directly in `root`.
fn class_folder<'a>(root: &Path, file: &'a Path) -> Option<&'a OsStr> {
    let mut parts = file.strip_prefix(root).ok()?.components();
    let first = parts.next()?;
    parts.next()?;
    Some(first.as_os_str())
}

/// The extensions [`is_image_name`] accepts in the default build, for messages.
const IMAGE_NAMES: &str = ".png .jpg .jpeg .jfif .gif .bmp .webp .tif .tiff";

/// Whether a file's extension (any case) names a format this build of the image crate decodes.
pub(super) fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(image::ImageFormat::from_extension)
        .is_some_and(|format| format.reading_enabled())
}

/// What [`walk`] finds.
#[derive(Default)]
struct Found {
    /// Files named as images.
    images: Vec<PathBuf>,
    /// Other files.
    others: Vec<PathBuf>,
    /// Links to folders, not followed: a link to a folder above would loop.
    linked_folders: Vec<PathBuf>,
    /// Hidden files and folders (`.DS_Store`, `.git`), skipped unread.
    hidden: usize,
}

impl Found {
    fn file(&mut self, path: PathBuf) {
        if is_image_name(&path) {
            self.images.push(path);
        } else {
            self.others.push(path);
        }
    }
}

/// Every non-hidden file under `dir`, following links to files but not to folders.
fn walk(dir: &Path, found: &mut Found) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list the folder", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: cannot list the folder", dir.display()))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            found.hidden += 1;
            continue;
        }
        let path = entry.path();
        // The entry's own type: a link is a link, not what it points to.
        let kind = entry
            .file_type()
            .with_context(|| format!("{}: cannot read its type", path.display()))?;
        if kind.is_dir() {
            walk(&path, found)?;
        } else if kind.is_file() {
            found.file(path);
        } else if kind.is_symlink() {
            match std::fs::metadata(&path) {
                Ok(target) if target.is_dir() => found.linked_folders.push(path),
                Ok(target) if !target.is_file() => {} // a device or a pipe
                // A broken link named as an image fails to decode, with its name.
                _ => found.file(path),
            }
        }
    }
    Ok(())
}
