//! `ddpm train`'s flags: the configuration they make, and which of them may change when a run
//! is resumed.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::config::TrainConfig;
use crate::device::DeviceChoice;
use crate::output;
use crate::run_dir::RunDir;

/// `ddpm train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The run folder: created if new; a folder with checkpoints is resumed from the latest.
    pub run_dir: PathBuf,
    /// Continue the run in RUN_DIR (an error when it has no checkpoint).
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Start over in an existing run folder, deleting its checkpoints and samples.
    #[arg(long)]
    pub force: bool,
    /// Start a new run from these weights instead of a random initialisation: a weights file
    /// (e.g. a shipped model, to fine-tune or train it further) or a run folder (its newest
    /// EMA weights). The model must match the configuration; Adam starts afresh.
    #[arg(long, value_name = "WEIGHTS", conflicts_with = "resume")]
    pub init: Option<PathBuf>,
    /// A TOML configuration file (every key optional).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override a configuration key, e.g. `--set optim.lr=1e-4` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// `mnist` (embedded), or a folder of images, IDX files or CIFAR-10 batches.
    #[arg(long)]
    pub data: Option<String>,
    /// Optimiser steps (`run.steps`).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Images per step (`optim.batch_size`).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate (`optim.lr`).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed of the weights, data order and noise (`run.seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Side of the training images (`data.image_size`).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// 1 (grayscale) or 3 (RGB) (`data.channels`).
    #[arg(long)]
    pub channels: Option<usize>,
    /// Random horizontal flips (`data.flip`).
    #[arg(long)]
    pub flip: bool,
    /// Fail on an image that does not decode (`data.strict`).
    #[arg(long)]
    pub strict: bool,
    /// Checkpoint every N steps (`run.checkpoint_every`).
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Sample grid every N steps (`run.sample_every`).
    #[arg(long)]
    pub sample_every: Option<usize>,
    /// Where to train.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
}

impl TrainArgs {
    /// The configuration file (if any) with `--set` and the flags on top.
    pub fn config(&self) -> Result<TrainConfig> {
        let text = match &self.config {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("{}: cannot read the configuration", path.display()))?,
            None => String::new(),
        };
        let mut sets = self.sets.clone();
        let mut flag = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                sets.push(format!("{key}={v}"));
            }
        };
        flag("data.source", self.data.as_ref().map(|d| format!("{d:?}")));
        flag("run.steps", self.steps.map(|v| v.to_string()));
        flag("optim.batch_size", self.batch_size.map(|v| v.to_string()));
        flag("optim.lr", self.lr.map(|v| format!("{v:e}")));
        flag("run.seed", self.seed.map(|v| v.to_string()));
        flag("data.image_size", self.image_size.map(|v| v.to_string()));
        flag("data.channels", self.channels.map(|v| v.to_string()));
        flag("data.flip", self.flip.then(|| "true".into()));
        flag("data.strict", self.strict.then(|| "true".into()));
        flag(
            "run.checkpoint_every",
            self.checkpoint_every.map(|v| v.to_string()),
        );
        flag("run.sample_every", self.sample_every.map(|v| v.to_string()));
        let what = self
            .config
            .as_ref()
            .map_or("configuration".into(), |p| p.display().to_string());
        TrainConfig::from_toml(&text, &sets).with_context(|| what)
    }

    /// On resume the saved configuration rules; only the step count may grow.
    pub fn resumed_config(&self, run: &RunDir, wanted: TrainConfig) -> Result<TrainConfig> {
        let path = run.config();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let mut saved =
            TrainConfig::from_toml(&text, &[]).with_context(|| path.display().to_string())?;
        let changes_something = self.config.is_some()
            || !self.sets.is_empty()
            || self.data.is_some()
            || self.batch_size.is_some()
            || self.lr.is_some()
            || self.seed.is_some()
            || self.image_size.is_some()
            || self.channels.is_some()
            || self.flip
            || self.strict
            || self.checkpoint_every.is_some()
            || self.sample_every.is_some();
        if changes_something {
            let mut compare = wanted.clone();
            compare.run.steps = saved.run.steps;
            if compare != saved {
                bail!(
                    "{}: this run was started with another configuration ({}); only --steps may change on resume (or pass --force to start over)",
                    run.0.display(),
                    path.display()
                );
            }
        }
        if let Some(steps) = self.steps {
            saved.run.steps = steps;
            output::write_new(&path, saved.to_toml()?.as_bytes(), true)?;
        }
        Ok(saved)
    }
}
