//! Files a command writes for the user (pictures, weights, cards, reports): an existing file is
//! replaced only with `--force`, and a write that fails leaves the old file whole.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Refuses to go on when one of `paths` exists and `force` is not set: checked before any work,
/// so that a long run never ends in a refusal.
pub fn refuse_existing<'a>(
    paths: impl IntoIterator<Item = &'a PathBuf>,
    force: bool,
) -> Result<()> {
    if force {
        return Ok(());
    }
    match paths.into_iter().find(|p| p.exists()) {
        Some(path) => bail!("{}: exists; pass --force to overwrite it", path.display()),
        None => Ok(()),
    }
}

/// The first path given twice: two outputs of one command on one path would overwrite what was
/// just written.
pub fn repeated(paths: &[PathBuf]) -> Option<&PathBuf> {
    paths
        .iter()
        .enumerate()
        .find_map(|(i, p)| paths[..i].contains(p).then_some(p))
}

/// Writes `bytes` to `path` (refusing to replace a file unless `force`), through a temporary
/// file renamed into place.
pub fn write_new(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    refuse_existing([&path.to_path_buf()], force)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create", parent.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("{}: cannot write", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_file_is_kept_without_force_and_replaced_with_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("sub").join("a.json");
        write_new(&path, b"one", false).expect("new file");
        let err = write_new(&path, b"two", false).expect_err("exists");
        assert_eq!(
            err.to_string(),
            format!("{}: exists; pass --force to overwrite it", path.display())
        );
        assert_eq!(std::fs::read(&path).expect("read"), b"one");
        write_new(&path, b"two", true).expect("forced");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        assert!(refuse_existing([&dir.path().join("other")], false).is_ok());
    }
}
