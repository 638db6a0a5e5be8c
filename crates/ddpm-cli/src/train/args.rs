//! `ddpm train`'s flags: the configuration they make, and which of them may change when a run
//! is resumed.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::config::{Decay, TrainConfig};
use crate::device::DeviceChoice;
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
    #[arg(long, value_parser = toml_integer::<usize>)]
    pub steps: Option<usize>,
    /// Images per step (`optim.batch_size`).
    #[arg(long, value_parser = toml_integer::<usize>)]
    pub batch_size: Option<usize>,
    /// Peak learning rate (`optim.lr`).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed of the weights, data order and noise (`run.seed`).
    #[arg(long, value_parser = toml_integer::<u64>)]
    pub seed: Option<u64>,
    /// Side of the training images (`data.image_size`).
    #[arg(long, value_parser = toml_integer::<usize>)]
    pub image_size: Option<usize>,
    /// 1 (grayscale) or 3 (RGB) (`data.channels`).
    #[arg(long, value_parser = toml_integer::<usize>)]
    pub channels: Option<usize>,
    /// Random horizontal flips (`data.flip`).
    #[arg(long)]
    pub flip: bool,
    /// Visit small classes more often: 0 (each image once per epoch) to 1 (each class as often
    /// as the largest) (`data.balance`).
    #[arg(long, value_name = "0..1")]
    pub balance: Option<f64>,
    /// Fail on an image that does not decode (`data.strict`).
    #[arg(long)]
    pub strict: bool,
    /// Checkpoint every N steps (`run.checkpoint_every`).
    #[arg(long, value_parser = toml_integer::<usize>)]
    pub checkpoint_every: Option<usize>,
    /// Sample grid every N steps (`run.sample_every`).
    #[arg(long, value_parser = toml_integer::<usize>)]
    pub sample_every: Option<usize>,
    /// Where to train.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
}

/// A count or seed as the configuration holds it: the flags are written into it as TOML, whose
/// integers stop at `i64::MAX`, so larger values are refused here, by the flag's name.
fn toml_integer<T>(text: &str) -> std::result::Result<T, String>
where
    T: std::str::FromStr + Copy + TryInto<i64>,
    T::Err: std::fmt::Display,
{
    let value: T = text.parse().map_err(|e: T::Err| e.to_string())?;
    match value.try_into() {
        Ok(_) => Ok(value),
        Err(_) => Err(format!("must be at most {}", i64::MAX)),
    }
}

impl TrainArgs {
    /// The configuration file (if any) with `--set` and the flags on top.
    pub fn config(&self) -> Result<TrainConfig> {
        let text = match &self.config {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("{}: cannot read the configuration", path.display()))?,
            None => String::new(),
        };
        let what = self
            .config
            .as_ref()
            .map_or("configuration".into(), |p| p.display().to_string());
        self.config_on(&text, false).with_context(|| what)
    }

    /// `text` (a configuration's TOML; a run's saved one if `saved`) with `--set` and the
    /// flags on top.
    fn config_on(&self, text: &str, saved: bool) -> Result<TrainConfig> {
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
        flag("data.balance", self.balance.map(|v| format!("{v:?}")));
        flag("data.strict", self.strict.then(|| "true".into()));
        flag(
            "run.checkpoint_every",
            self.checkpoint_every.map(|v| v.to_string()),
        );
        flag("run.sample_every", self.sample_every.map(|v| v.to_string()));
        match saved {
            true => TrainConfig::from_saved(text, &sets),
            false => TrainConfig::from_toml(text, &sets),
        }
    }

    /// On resume the saved configuration rules. The step count, the learning rate and the
    /// gradient clipping may change (the way out of a loss that became NaN); anything else
    /// would not be the same run. Also the notes that say what changed, by flag or by an edit
    /// of `config.toml` since the checkpoint `trained_with` was written; the caller writes the
    /// changed configuration once the run is known to go on.
    pub fn resumed_config(
        &self,
        run: &RunDir,
        wanted: TrainConfig,
        trained_with: Option<&toml::Table>,
    ) -> Result<(TrainConfig, Vec<String>)> {
        let path = run.config();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let saved =
            TrainConfig::from_saved(&text, &[]).with_context(|| path.display().to_string())?;
        // Read as a saved file is, so that a key added since reads as the run had it.
        let before = trained_with.and_then(|t| TrainConfig::from_saved(&t.to_string(), &[]).ok());
        let edits: Vec<String> = before
            .map(|b| b.changes(&saved))
            .unwrap_or_default()
            .into_iter()
            .map(|(key, was, is)| {
                let file = path.display();
                format!("note: {key} changes on resume: {was} → {is} ({file}, changed since the checkpoint)")
            })
            .collect();
        // A --config file says the whole configuration; flags alone change the saved one.
        let asked = match self.config {
            Some(_) => wanted,
            None => self.config_on(&text, true)?,
        };
        let mut same = asked.clone();
        same.run.steps = saved.run.steps;
        same.optim.lr = saved.optim.lr;
        same.optim.grad_clip = saved.optim.grad_clip;
        same.optim.decay_steps = saved.optim.decay_steps;
        if same != saved {
            let changed: Vec<String> = saved
                .changes(&same)
                .into_iter()
                .map(|(key, was, is)| format!("{key} {was} → {is}"))
                .collect();
            bail!(
                "{}: this run was started with another configuration ({}: {}); only --steps, --lr and optim.grad_clip may change on resume (or pass --force to start over)",
                run.0.display(),
                path.display(),
                changed.join(", ")
            );
        }
        let mut resumed = saved.clone();
        resumed.optim.lr = asked.optim.lr;
        resumed.optim.grad_clip = asked.optim.grad_clip;
        if let Some(steps) = self.steps {
            // A cosine decay keeps the end it was planned with: the added steps run at its
            // floor, where a schedule stretched to the new end would climb again.
            if resumed.optim.decay == Decay::Cosine && steps != saved.run.steps {
                resumed.optim.decay_steps.get_or_insert(saved.run.steps);
            }
            resumed.run.steps = steps;
        }
        let clip = |c: Option<f32>| c.map_or_else(|| "unset".into(), |c| c.to_string());
        let notes = [
            (
                "run.steps",
                saved.run.steps.to_string(),
                resumed.run.steps.to_string(),
            ),
            (
                "optim.lr",
                format!("{:e}", saved.optim.lr),
                format!("{:e}", resumed.optim.lr),
            ),
            (
                "optim.grad_clip",
                clip(saved.optim.grad_clip),
                clip(resumed.optim.grad_clip),
            ),
        ]
        .into_iter()
        .filter(|(_, before, after)| before != after)
        .map(|(what, before, after)| format!("note: {what} changes on resume: {before} → {after}"))
        .collect();
        Ok((resumed, [edits, notes].concat()))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        train: TrainArgs,
    }

    #[test]
    fn integer_flags_stop_where_the_configuration_does() {
        let parse = |flag: &str, value: &str| Command::try_parse_from(["ddpm", "run", flag, value]);
        let largest = i64::MAX.to_string();
        let config = parse("--seed", &largest)
            .map_err(|e| e.to_string())
            .and_then(|c| c.train.config().map_err(|e| e.to_string()))
            .expect("the largest seed");
        assert_eq!(config.run.seed, i64::MAX as u64);
        for flag in ["--seed", "--steps", "--checkpoint-every", "--batch-size"] {
            let err = parse(flag, "9223372036854775808").err().expect("refused");
            assert!(
                err.to_string().contains(&format!("for '{flag} <"))
                    && err
                        .to_string()
                        .contains("must be at most 9223372036854775807"),
                "{err}"
            );
        }
        assert!(parse("--steps", "-1").is_err() && parse("--seed", "x").is_err());
    }

    #[test]
    fn a_resume_names_what_was_edited_in_config_toml_since_the_checkpoint() {
        let dir = tempfile::tempdir().expect("tmp");
        let run = RunDir(dir.path().to_path_buf());
        let trained = TrainConfig::default();
        let mut edited = trained.clone();
        edited.optim.batch_size = 32;
        std::fs::write(run.config(), edited.to_toml().expect("toml")).expect("write");
        let args = Command::try_parse_from(["ddpm", "run", "--lr", "1e-3"]).expect("flags");
        let resume = |with: Option<&toml::Table>| {
            args.train
                .resumed_config(&run, args.train.config().expect("config"), with)
                .expect("resumes")
        };
        let table = trained.to_table().expect("table");
        let (config, notes) = resume(Some(&table));
        assert_eq!((config.optim.batch_size, config.optim.lr), (32, 1e-3));
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].starts_with("note: optim.batch_size changes on resume: 64 → 32 (")
                && notes[0].ends_with("config.toml, changed since the checkpoint)"),
            "{notes:?}"
        );
        assert!(notes[1].starts_with("note: optim.lr changes"), "{notes:?}");
        // A checkpoint older than the record, or of the same configuration: flags only.
        assert_eq!(resume(None).1, notes[1..]);
        assert_eq!(
            resume(Some(&edited.to_table().expect("table"))).1,
            notes[1..]
        );
    }
}
