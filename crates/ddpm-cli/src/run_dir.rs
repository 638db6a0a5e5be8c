//! The run folder: what `train` writes there, how a new run claims it and how a resumed run
//! checks that it continues the same experiment.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

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
        let foreign: Vec<&PathBuf> = entries.iter().filter(|p| !ours.contains(p)).collect();
        if !foreign.is_empty() {
            bail!(
                "{}: the folder holds other files ({}); give an empty or new run folder",
                dir.display(),
                foreign[0].display()
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
