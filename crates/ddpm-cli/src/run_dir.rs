//! The run folder: what `train` writes there, how a new run claims it and how a resumed run
//! checks that it continues the same experiment.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::checkpoint;

/// The files of a run folder.
pub struct RunDir(pub PathBuf);

impl RunDir {
    /// Checkpoint folders.
    pub fn checkpoints(&self) -> PathBuf {
        self.0.join("checkpoints")
    }
    /// The effective configuration.
    pub fn config(&self) -> PathBuf {
        self.0.join("config.toml")
    }
    /// One row per step.
    pub fn metrics(&self) -> PathBuf {
        self.0.join("metrics.csv")
    }
    /// Sample grids.
    pub fn samples(&self) -> PathBuf {
        self.0.join("samples")
    }
    /// The loss curve.
    pub fn loss_plot(&self) -> PathBuf {
        self.0.join("loss.png")
    }
    /// One line per training session (`crate::session`).
    pub fn sessions(&self) -> PathBuf {
        self.0.join("sessions.jsonl")
    }
    /// Where a warm-started run's first weights came from (`train --init`).
    pub fn warm_start(&self) -> PathBuf {
        self.0.join("warm_start.json")
    }
    /// Locked by the `ddpm train` using the folder ([`RunLock`]).
    pub fn lock(&self) -> PathBuf {
        self.0.join("train.lock")
    }
    /// What no output of a command that reads this folder may replace: its checkpoints (a
    /// folder) and the records a resume reads. Samples and the loss curve are pictures that a
    /// user may well write beside.
    pub fn kept(&self) -> [PathBuf; 6] {
        [
            self.checkpoints(),
            self.config(),
            self.metrics(),
            self.sessions(),
            self.warm_start(),
            self.lock(),
        ]
    }
}

/// An exclusive lock on a run folder, held while one `ddpm train` uses it and released by the
/// system when that process ends, a crash included. A second trainer on the same folder would
/// delete the first one's half-written checkpoints, truncate its metrics and overwrite its
/// checkpoints.
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the lock of the existing folder `run`, or says that another trainer holds it.
    pub fn acquire(run: &RunDir) -> Result<Self> {
        let path = run.lock();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => bail!(
                "{}: another `ddpm train` is using this run folder",
                run.0.display()
            ),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("{}: cannot lock", path.display()))
            }
        }
    }
}

/// Creates the run folder; refuses a non-empty one unless `force` (which clears what a run
/// writes, and nothing else).
pub fn prepare_new_run(run: &RunDir, force: bool) -> Result<()> {
    let dir = &run.0;
    if dir.exists() {
        if !dir.is_dir() {
            bail!("{}: exists and is not a folder", dir.display());
        }
        let ours = [
            run.checkpoints(),
            run.samples(),
            run.config(),
            run.metrics(),
            run.metrics().with_extension("csv.tmp"),
            run.loss_plot(),
            run.sessions(),
            run.warm_start(),
        ];
        // The lock file is neither the run's nor foreign, and stays (another trainer may hold it).
        let entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("{}: cannot list", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| *p != run.lock())
            .collect();
        // A write of one of them that a crash cut short is the run's too.
        let is_ours = |p: &PathBuf| {
            let target = p.file_name().and_then(cut_short_write_of);
            ours.contains(p) || target.is_some_and(|t| ours.contains(&dir.join(t)))
        };
        let mut foreign: Vec<PathBuf> = entries.iter().filter(|p| !is_ours(p)).cloned().collect();
        // The run's own folders are removed whole, so they too must hold only what it wrote.
        foreign.extend(foreign_inside(&run.samples(), is_sample_name)?);
        foreign.extend(foreign_inside(
            &run.checkpoints(),
            checkpoint::is_written_by_a_run,
        )?);
        if let Some(first) = foreign.first() {
            bail!(
                "{}: the folder holds other files ({}); give an empty or new run folder",
                dir.display(),
                first.display()
            );
        }
        if !entries.is_empty() && !force {
            bail!(
                "{}: holds a run without a checkpoint; pass --force to start it over",
                dir.display()
            );
        }
        for path in &entries {
            if path.is_dir() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            }
            .with_context(|| format!("{}: cannot remove", path.display()))?;
        }
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the run folder", dir.display()))?;
    std::fs::create_dir_all(run.samples())
        .with_context(|| format!("{}: cannot create", run.samples().display()))?;
    Ok(())
}

/// What a real folder (not a link, which removing leaves alone) holds besides the names `ours`
/// accepts.
fn foreign_inside(folder: &Path, ours: fn(&OsStr) -> bool) -> Result<Vec<PathBuf>> {
    if !std::fs::symlink_metadata(folder).is_ok_and(|m| m.is_dir()) {
        return Ok(Vec::new());
    }
    let mut foreign = Vec::new();
    for entry in
        std::fs::read_dir(folder).with_context(|| format!("{}: cannot list", folder.display()))?
    {
        let entry = entry.with_context(|| format!("{}: cannot list", folder.display()))?;
        if !ours(&entry.file_name()) {
            foreign.push(entry.path());
        }
    }
    Ok(foreign)
}

/// `step-N.png`, a preview grid, or a write of one cut short (`output::write_new`'s temporary
/// name, `.step-N.png.*.tmp`).
fn is_sample_name(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    let grid = |n: &str| {
        n.strip_prefix("step-")
            .and_then(|n| n.strip_suffix(".png"))
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    };
    grid(name) || cut_short_write_of(OsStr::new(name)).is_some_and(grid)
}

/// The file a temporary file of `output::write_new` (`.NAME.XXXXXX.tmp`) was to become.
fn cut_short_write_of(name: &OsStr) -> Option<&str> {
    name.to_str()?
        .strip_prefix('.')?
        .strip_suffix(".tmp")?
        .rsplit_once('.')
        .map(|(target, _)| target)
}

/// Keeps the header and the rows of steps up to `step` (dropping a row cut short by a crash),
/// replacing the file atomically.
pub fn truncate_metrics(path: &Path, step: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(()); // no metrics yet
    };
    let mut kept = String::new();
    for (i, line) in text.lines().enumerate() {
        let row_step = line.split(',').next().and_then(|s| s.parse::<usize>().ok());
        let complete = line.split(',').count() == 5;
        if i == 0 || (complete && row_step.is_some_and(|s| s <= step)) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    let tmp = path.with_extension("csv.tmp"); // `prepare_new_run` knows this name
    std::fs::write(&tmp, kept)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("{}: cannot rewrite", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn force_removes_what_a_run_wrote_and_refuses_anything_else_inside_its_folders() {
        let dir = tempfile::tempdir().expect("tmp");
        let run = RunDir(dir.path().join("run"));
        prepare_new_run(&run, false).expect("new");
        std::fs::write(run.samples().join("step-000000010.png"), b"png").expect("write");
        std::fs::write(run.samples().join(".step-000000020.png.a1B2c3.tmp"), b"").expect("tmp");
        std::fs::create_dir_all(run.checkpoints().join("step-000000010")).expect("ckpt");
        std::fs::write(run.metrics(), b"step\n").expect("write");
        std::fs::write(run.0.join(".loss.png.x1Y2z3.tmp"), b"").expect("cut short");
        let err = prepare_new_run(&run, false).expect_err("without --force");
        assert!(err.to_string().contains("--force"), "{err}");
        // A user's file in `samples/` (a folder of training images, say) stops --force.
        let mine = run.samples().join("mine.png");
        std::fs::write(&mine, b"mine").expect("write");
        let err = prepare_new_run(&run, true).expect_err("foreign");
        assert!(err.to_string().contains("mine.png"), "{err}");
        assert!(mine.exists() && run.metrics().exists());
        std::fs::remove_file(&mine).expect("remove");
        prepare_new_run(&run, true).expect("forced");
        assert!(!run.metrics().exists() && !run.checkpoints().exists());
        assert!(!run.0.join(".loss.png.x1Y2z3.tmp").exists());
        assert_eq!(std::fs::read_dir(run.samples()).expect("list").count(), 0);
    }
}
