//! Files a command writes for the user (pictures, weights, cards, reports): an existing file is
//! replaced only with `--force`, and a write that fails leaves the old file whole.

use std::io::Write;
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
        // --force would not help: a folder is never replaced by a file.
        Some(path) if path.is_dir() => bail!("{}: is a folder; name a file", path.display()),
        Some(path) => bail!("{}: exists; pass --force to overwrite it", path.display()),
        None => Ok(()),
    }
}

/// The folder `path` is in (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    parent.unwrap_or(Path::new("."))
}

/// Makes the folders that `files` go into and the folders `dirs`, refusing a file that is a
/// folder and a folder that is a file: called once the inputs are known good and before the
/// work, so that a bad output path stops a command before anything is computed or written.
pub fn prepare(files: &[PathBuf], dirs: &[PathBuf]) -> Result<()> {
    let folders: Vec<PathBuf> = dirs
        .iter()
        .cloned()
        .chain(files.iter().map(|f| folder_of(f).to_path_buf()))
        .collect();
    // Every check first, so that a refusal leaves no folder made for the other outputs.
    if let Some(file) = files.iter().find(|f| f.is_dir()) {
        bail!("{}: is a folder; name a file", file.display());
    }
    for folder in &folders {
        // The nearest part of the path that exists must be a folder to create the rest in.
        let existing = folder
            .ancestors()
            .find(|a| a.exists() || a.as_os_str().is_empty());
        if let Some(file) = existing.filter(|a| !a.as_os_str().is_empty() && !a.is_dir()) {
            bail!("{}: is a file, not a folder", file.display());
        }
    }
    for folder in &folders {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("{}: cannot create", folder.display()))?;
    }
    Ok(())
}

/// The first path given twice, however it is spelled (`./a.png` and `a.png`, a folder through
/// a link): two outputs of one command on one file would overwrite what was just written.
pub fn repeated(paths: &[PathBuf]) -> Option<&PathBuf> {
    let files: Vec<PathBuf> = paths.iter().map(|p| identity(p)).collect();
    (0..paths.len()).find_map(|i| files[..i].contains(&files[i]).then_some(&paths[i]))
}

/// Refuses an output that is one of the command's `inputs` or inside one that is a folder,
/// however either is spelled, with or without `--force`: writing it would destroy what the
/// command reads.
pub fn refuse_inputs(outputs: &[PathBuf], inputs: &[&PathBuf]) -> Result<()> {
    let inputs: Vec<(&PathBuf, PathBuf)> = inputs.iter().map(|p| (*p, identity(p))).collect();
    for output in outputs {
        let file = identity(output);
        match inputs.iter().find(|(_, input)| file.starts_with(input)) {
            Some((_, input)) if *input == file => bail!(
                "{}: is also an input of this command; name another output file",
                output.display()
            ),
            Some((folder, _)) => bail!(
                "{}: is inside {}, which this command reads; name another output file",
                output.display(),
                folder.display()
            ),
            None => {}
        }
    }
    Ok(())
}

/// The file `path` names: itself resolved where it exists, else its folder resolved (as far as
/// it exists) and its name as given.
fn identity(path: &Path) -> PathBuf {
    if let Ok(file) = path.canonicalize() {
        return file;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (absolute.parent(), absolute.file_name()) {
        (Some(dir), Some(name)) => identity(dir).join(name),
        _ => absolute,
    }
}

/// Writes `bytes` to `path` (refusing to replace a file unless `force`) through a temporary
/// file of its own in the same folder (`.NAME.XXXXXX.tmp`, never a name a user's file may
/// have), synced and renamed into place: a failed or interrupted write leaves the old file
/// whole.
pub fn write_new(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    refuse_existing([&path.to_path_buf()], force)?;
    let parent = folder_of(path);
    std::fs::create_dir_all(parent)
        .with_context(|| format!("{}: cannot create", parent.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let prefix = format!(".{}.", name.unwrap_or_default());
    // tempfile makes its files private (0600); an output gets what a plain write would give
    // it: the file's own permissions when it is replaced, else 0666 less the umask.
    let replaced = std::fs::metadata(path).ok().map(|m| m.permissions());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let new_file = || std::fs::Permissions::from_mode(0o666);
        builder.permissions(replaced.clone().unwrap_or_else(new_file));
    }
    let written = builder.tempfile_in(parent).and_then(|mut tmp| {
        if let Some(permissions) = replaced {
            // Set again: creating the file applied the umask to them.
            tmp.as_file().set_permissions(permissions)?;
        }
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        // A plain rename: tempfile's no-clobber one needs hard links where the kernel lacks
        // RENAME_NOREPLACE, which some filesystems a user may write to (FAT) do not have.
        tmp.persist(path).map_err(|e| e.error)
    });
    // A temporary file that was not persisted is removed when dropped, on every error path.
    written
        .map(drop)
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// Writes `text` to standard output. A reader that went away (`ddpm info … | head`) ends the
/// output quietly, as it ends `cat`'s; `println!` would panic there.
pub fn print(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => written.context("cannot write to standard output"),
    }
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
        let err = refuse_existing([&dir.path().join("sub")], false).expect_err("a folder");
        assert!(
            err.to_string().ends_with("sub: is a folder; name a file"),
            "{err}"
        );
        // A user's file with the old fixed temporary name is not touched, and no temporary
        // file is left behind.
        let user = dir.path().join("sub").join("a.json.tmp");
        std::fs::write(&user, b"mine").expect("write");
        write_new(&path, b"three", true).expect("forced");
        assert_eq!(std::fs::read(&user).expect("read"), b"mine");
        let mut left: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["a.json", "a.json.tmp"]);
    }

    #[test]
    fn an_input_or_a_file_inside_an_input_folder_is_refused_as_an_output() {
        let dir = tempfile::tempdir().expect("tmp");
        let at = |p: &str| dir.path().join(p);
        std::fs::create_dir_all(at("run/checkpoints/step-1")).expect("dirs");
        std::fs::write(at("model.bpk"), b"x").expect("write");
        let (model, checkpoints) = (at("model.bpk"), at("run/checkpoints"));
        let inputs = [&model, &checkpoints];
        let err = |out: PathBuf| {
            refuse_inputs(&[out], &inputs)
                .expect_err("an input")
                .to_string()
        };
        assert!(
            err(at("./model.bpk"))
                .ends_with("model.bpk: is also an input of this command; name another output file")
        );
        // Also one that does not exist yet: a checkpoint's file is replaced all the same.
        let inside = err(at("run/checkpoints/../checkpoints/step-1/ema.bpk"));
        assert!(
            inside.contains("ema.bpk: is inside ")
                && inside
                    .ends_with("checkpoints, which this command reads; name another output file"),
            "{inside}"
        );
        // Beside them is fine: the run folder itself is not an input, and a name that only
        // starts like an input's is another file.
        for out in [
            "run/samples.png",
            "model.bpk.png",
            "run/checkpoints-old/a.bpk",
        ] {
            assert!(refuse_inputs(&[at(out)], &inputs).is_ok(), "{out}");
        }
    }

    #[test]
    fn bad_output_paths_are_refused_before_any_folder_is_made() {
        let dir = tempfile::tempdir().expect("tmp");
        let at = |p: &str| dir.path().join(p);
        std::fs::write(at("file"), b"x").expect("write");
        std::fs::create_dir(at("folder")).expect("dir");
        let refused = |files: &[&str], dirs: &[&str]| {
            let list = |v: &[&str]| v.iter().map(|p| at(p)).collect::<Vec<_>>();
            prepare(&list(files), &list(dirs))
                .expect_err("refused")
                .to_string()
        };
        let made = at("new");
        assert!(
            refused(&["new/a.png", "file/b.png"], &[]).ends_with("file: is a file, not a folder")
        );
        assert!(
            refused(&["new/a.png"], &["file/deeper"]).ends_with("file: is a file, not a folder")
        );
        assert!(
            refused(&["new/a.png", "folder"], &[]).ends_with("folder: is a folder; name a file")
        );
        assert!(!made.exists(), "a folder was made for a refused command");
        prepare(&[at("new/deep/a.png")], &[at("pngs")]).expect("good paths");
        assert!(at("new/deep").is_dir() && at("pngs").is_dir());
    }

    #[cfg(unix)]
    #[test]
    fn outputs_get_the_permissions_a_plain_write_gives() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        // A new file: 0666 less the umask, as `std::fs::write` makes one (not tempfile's 0600).
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"x").expect("write");
        let path = dir.path().join("card.json");
        write_new(&path, b"one", false).expect("new");
        assert_eq!(mode(&path), mode(&plain));
        assert_ne!(mode(&path), 0o600, "private to its owner");
        // A replaced file keeps its own.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        write_new(&path, b"two", true).expect("forced");
        assert_eq!(mode(&path), 0o640);
    }

    #[test]
    fn one_file_spelled_two_ways_is_repeated() {
        let dir = tempfile::tempdir().expect("tmp");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("dir");
        let a = sub.join("a.png");
        let dotted = dir.path().join(".").join("sub").join(".").join("a.png");
        assert_eq!(repeated(&[a.clone(), sub.join("b.png")]), None);
        assert_eq!(repeated(&[a.clone(), dotted.clone()]), Some(&dotted));
        #[cfg(unix)]
        {
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&sub, &link).expect("link");
            let through = link.join("a.png");
            assert_eq!(repeated(&[a.clone(), through.clone()]), Some(&through));
            let refused = refuse_inputs(&[sub.join("b.png"), through], &[&a]).expect_err("input");
            assert!(
                refused.to_string().ends_with(
                    "link/a.png: is also an input of this command; name another output file"
                ),
                "{refused}"
            );
        }
        assert!(refuse_inputs(&[sub.join("b.png")], &[&a]).is_ok());
    }
}
