//! Checkpoints that survive a crash at any moment: each is a folder `step-NNNNNNNNN` written
//! under a temporary name, every file fsynced, then renamed into place in one atomic step (and
//! the parent folder fsynced). A crash leaves at worst a `.tmp` folder, which is ignored and
//! cleared, never a half-written checkpoint under a real name; the last `keep` are kept.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::{ModuleOptimizer, OptimizerRecord};
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use ddpm::Unet;
use serde::{Deserialize, Serialize};

use crate::data::BatchOrder;
use crate::loss_scale::LossScale;

/// The files of one checkpoint.
pub const MODEL: &str = "model.bpk";
/// The EMA weights.
pub const EMA: &str = "ema.bpk";
/// Adam's moments and step counts.
pub const OPTIMIZER: &str = "optimizer.bpk";
/// [`TrainingState`] as JSON.
pub const STATE: &str = "state.json";

const PREFIX: &str = "step-";
const TMP_SUFFIX: &str = ".tmp";

/// Everything besides tensors that a resumed run needs to continue exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    /// Optimiser steps completed.
    pub step: usize,
    /// The diffusion noise stream (timesteps, noise, label dropout).
    pub noise: ddpm::NoiseState,
    /// Where the data order stands.
    pub order: BatchOrder,
    /// The model's configuration, to rebuild it before loading the weights.
    pub model: ddpm::ModelConfig,
    /// Class names of the training data (index = label).
    pub class_names: Vec<String>,
    /// The step a run resumed at without the optimiser's state (a checkpoint carried without
    /// its `optimizer.bpk`): Adam started afresh there, and the learning rate warms up again
    /// from it over the configured warm-up steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewarm_from: Option<usize>,
    /// The training configuration these steps ran with (`config.toml`'s table), so that a
    /// resume can name what was edited there since. Absent in older checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<toml::Table>,
    /// The loss scale of a run trained with f16 convolutions (`DDPM_HALF_CONVS=1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<LossScale>,
}

/// Writes a checkpoint for `state.step` into `dir` atomically, then keeps the newest `keep`.
pub fn write(
    dir: &Path,
    state: &TrainingState,
    files: &[(&str, &[u8])],
    keep: usize,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let name = format!("{PREFIX}{:09}", state.step);
    let target = dir.join(&name);
    if target.join(STATE).is_file() {
        return Ok(target); // this step is already saved
    }
    if target.exists() {
        set_aside(&target)?;
    }
    let tmp = dir.join(format!(".{name}{TMP_SUFFIX}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("{}: cannot remove", tmp.display()))?;
    }
    let result = (|| -> Result<()> {
        std::fs::create_dir(&tmp)?;
        let json = serde_json::to_vec_pretty(state)?;
        for (file, bytes) in files.iter().copied().chain([(STATE, json.as_slice())]) {
            let mut f = File::create(tmp.join(file))?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        sync_dir(&tmp)?;
        std::fs::rename(&tmp, &target)?;
        sync_dir(dir)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e)
            .with_context(|| format!("{}: cannot write checkpoint {name}", dir.display()));
    }
    prune(dir, keep)?;
    Ok(target)
}

/// Moves `target`, a folder with a checkpoint's name but no state (this trainer never leaves
/// one: a user's or a damaged one), to `NAME.incomplete[-K]`, which no run reads or removes,
/// so that the checkpoint can take its name and nothing in the folder is lost.
fn set_aside(target: &Path) -> Result<()> {
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let mut free = target.with_file_name(format!("{name}.incomplete"));
    for k in 1.. {
        if !free.exists() {
            break;
        }
        free = target.with_file_name(format!("{name}.incomplete-{k}"));
    }
    std::fs::rename(target, &free)
        .with_context(|| format!("{}: cannot move aside", target.display()))?;
    eprintln!(
        "notice: {}: held no {STATE}, so it was not a checkpoint; moved to {} to write this step's",
        target.display(),
        free.display()
    );
    Ok(())
}

/// The newest complete checkpoint in `dir`, if any. Temporary folders (a write in progress, or
/// one a crash cut short) are not checkpoints; they are left alone here, since a trainer may be
/// writing one while `sample`, `eval` or `export` reads the folder.
pub fn latest(dir: &Path) -> Result<Option<PathBuf>> {
    if !dir.exists() {
        return Ok(None);
    }
    Ok(list(dir)?.pop())
}

/// Removes the temporary folders a crash left in `dir`: only the trainer about to write there
/// calls this.
pub fn remove_leftovers(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?
    {
        let path = entry?.path();
        if path.file_name().is_some_and(is_leftover) {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("{}: cannot remove", path.display()))?;
        }
    }
    Ok(())
}

/// `.step-N.tmp`, the name [`write`] gives a checkpoint in progress: only such folders are
/// removed as a crash's leftovers, not anything else a user named `*.tmp`.
fn is_leftover(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .and_then(|n| n.strip_prefix('.'))
        .and_then(|n| n.strip_suffix(TMP_SUFFIX))
        .is_some_and(is_checkpoint_name)
}

/// `step-N`, a checkpoint's folder name.
fn is_checkpoint_name(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `name` is one a run writes in its checkpoints folder (a checkpoint, or one in
/// progress): `train --force` removes those and refuses a folder holding anything else.
pub fn is_written_by_a_run(name: &std::ffi::OsStr) -> bool {
    is_leftover(name) || name.to_str().is_some_and(is_checkpoint_name)
}

/// Reads a checkpoint's state and the named file.
pub fn read_state(checkpoint: &Path) -> Result<TrainingState> {
    let path = checkpoint.join(STATE);
    let text = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let state: TrainingState = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not a training state", path.display()))?;
    state
        .model
        .validate()
        .with_context(|| format!("{}: model", path.display()))?;
    Ok(state)
}

/// One file of a checkpoint.
pub fn read_file(checkpoint: &Path, file: &str) -> Result<Vec<u8>> {
    let path = checkpoint.join(file);
    std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))
}

/// One module's weights from a checkpoint (`MODEL` or `EMA`), with their parameter ids,
/// loaded into `model`.
pub fn load_weights(model: Unet, checkpoint: &Path, file: &str) -> Result<Unet> {
    let path = checkpoint.join(file);
    let bytes = read_file(checkpoint, file)?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    model.try_load_record(record).map_err(|e| {
        // burn lists every tensor that does not fit: a few are enough to say what is wrong.
        let mut why = e.to_string();
        if let Some((cut, _)) = why.char_indices().nth(300) {
            why.truncate(cut);
            why.push_str(" …");
        }
        anyhow::anyhow!(
            "{}: the weights do not fit the checkpoint's model: {why}",
            path.display()
        )
    })
}

/// Adam's state from a checkpoint's [`OPTIMIZER`] into `optim`, refused unless it restores a
/// state for every one it holds: burn skips the states of parameters it does not know (another
/// run's file, or weights saved under that name), and Adam would silently start afresh.
pub fn read_optimizer(checkpoint: &Path, optim: ModuleOptimizer) -> Result<ModuleOptimizer> {
    let path = checkpoint.join(OPTIMIZER);
    let bytes = read_file(checkpoint, OPTIMIZER)?;
    let record = OptimizerRecord::from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let saved = record.len();
    let optim = optim.load_record(record);
    let restored = optim.to_record().len();
    if saved == 0 || restored != saved {
        bail!(
            "{}: not this run's optimizer state ({restored} of its {saved} tensors belong to this model's parameters); remove it to start Adam afresh",
            path.display()
        );
    }
    Ok(optim)
}

/// Complete checkpoints, oldest first.
fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found: Vec<(usize, PathBuf)> = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?
    {
        let path = entry?.path();
        let step = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(step) = step
            && path.join(STATE).is_file()
        {
            found.push((step, path));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

fn prune(dir: &Path, keep: usize) -> Result<()> {
    if keep == 0 {
        bail!("keep must be at least 1");
    }
    let all = list(dir)?;
    for old in &all[..all.len().saturating_sub(keep)] {
        std::fs::remove_dir_all(old)
            .with_context(|| format!("{}: cannot remove", old.display()))?;
    }
    Ok(())
}

/// Makes a rename or a new file in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: usize) -> TrainingState {
        TrainingState {
            step,
            noise: ddpm::NoiseSource::new(1).state(),
            order: BatchOrder::new(2),
            model: ddpm::ModelConfig {
                unet: ddpm::UnetConfig::new(8),
                diffusion: ddpm::DiffusionConfig::default(),
                image_size: [8, 8],
            },
            class_names: vec![],
            rewarm_from: None,
            config: None,
            loss_scale: None,
        }
    }

    #[test]
    fn writes_atomically_keeps_the_newest_and_ignores_leftovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ckpt = dir.path().join("checkpoints");
        for step in [10, 20, 30, 40] {
            write(&ckpt, &state(step), &[(MODEL, &[step as u8; 4])], 2).expect("write");
        }
        // A crash mid-write leaves a temporary folder and maybe a folder without its state.
        std::fs::create_dir_all(ckpt.join(".step-000000050.tmp")).expect("tmp");
        std::fs::create_dir_all(ckpt.join("step-000000060")).expect("incomplete");
        let latest = latest(&ckpt).expect("list").expect("one");
        assert!(latest.ends_with("step-000000040"));
        assert_eq!(read_state(&latest).expect("state"), state(40));
        assert_eq!(read_file(&latest, MODEL).expect("model"), vec![40u8; 4]);
        // Reading leaves a write in progress alone; the trainer clears a crash's leftovers.
        assert!(ckpt.join(".step-000000050.tmp").exists());
        // Only the trainer's own temporary names: a user's `*.tmp` folder is not a leftover.
        std::fs::create_dir_all(ckpt.join("backup.tmp")).expect("user's");
        remove_leftovers(&ckpt).expect("remove");
        assert!(!ckpt.join(".step-000000050.tmp").exists());
        assert!(ckpt.join("backup.tmp").exists());
        let ours = |name: &str| is_written_by_a_run(std::ffi::OsStr::new(name));
        assert!(ours("step-000000040") && ours(".step-000000050.tmp"));
        assert!(!ours("backup.tmp") && !ours("step-") && !ours(".step-x.tmp"));
        let kept: Vec<_> = list(&ckpt).expect("list");
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(kept[0].ends_with("step-000000030"));
    }

    #[test]
    fn a_folder_without_state_is_moved_aside_not_taken_for_the_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ckpt = dir.path().join("checkpoints");
        let damaged = ckpt.join("step-000000002");
        std::fs::create_dir_all(&damaged).expect("dir");
        std::fs::write(damaged.join(MODEL), b"user's").expect("file");
        std::fs::create_dir_all(ckpt.join("step-000000002.incomplete")).expect("taken");
        let written = write(&ckpt, &state(2), &[(MODEL, b"new")], 3).expect("write");
        assert_eq!(read_state(&written).expect("state"), state(2));
        assert_eq!(read_file(&written, MODEL).expect("model"), b"new");
        let aside = ckpt.join("step-000000002.incomplete-1");
        assert_eq!(read_file(&aside, MODEL).expect("kept"), b"user's");
        // A complete one is kept as it is.
        write(&ckpt, &state(2), &[(MODEL, b"newer")], 3).expect("again");
        assert_eq!(read_file(&written, MODEL).expect("model"), b"new");
    }

    #[test]
    fn a_failed_write_keeps_the_previous_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ckpt = dir.path().join("checkpoints");
        write(&ckpt, &state(1), &[(MODEL, b"good")], 3).expect("write");
        // A file name that cannot be created makes the second write fail half-way.
        let err = write(&ckpt, &state(2), &[(MODEL, b"x"), ("no/such/dir", b"y")], 3)
            .expect_err("must fail");
        assert!(err.to_string().contains("step-000000002"), "{err}");
        let latest = latest(&ckpt).expect("list").expect("one");
        assert!(latest.ends_with("step-000000001"));
        assert_eq!(read_file(&latest, MODEL).expect("model"), b"good");
        assert_eq!(std::fs::read_dir(&ckpt).expect("dir").count(), 1);
    }
}
