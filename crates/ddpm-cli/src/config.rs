//! The training configuration: one TOML file (every key optional, unknown keys refused), then
//! `--set section.key=value` overrides and the dedicated flags on top. The effective result is
//! written into the run folder as `config.toml`.

use anyhow::{Context, Result, bail};
use ddpm::unet::MAX_IMAGE_SIDE;
use ddpm::{DiffusionConfig, UnetConfig};
use serde::{Deserialize, Serialize};

/// The most images one optimiser step may take: a batch's indices and noise are drawn at once.
const MAX_BATCH: usize = 65_536;

/// Everything `train` needs besides the run folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// What to train on.
    pub data: DataConfig,
    /// The U-Net.
    pub model: ModelSection,
    /// The diffusion process (the core's own configuration; defaults are the paper's).
    pub diffusion: DiffusionConfig,
    /// Adam and its schedule.
    pub optim: OptimConfig,
    /// The moving average that gets sampled and exported.
    pub ema: EmaConfig,
    /// Length, seed and the rhythm of checkpoints and samples.
    pub run: RunConfig,
}

/// The training images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// `mnist` (embedded), or a path to a folder of images, IDX files or CIFAR-10 batches.
    pub source: String,
    /// Side of the square training images.
    pub image_size: usize,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// Random horizontal flips (off for digits).
    pub flip: bool,
    /// Fail on an undecodable image instead of skipping it.
    pub strict: bool,
    /// Train a class-conditional model when the data has labels.
    pub class_conditional: bool,
    /// Visit small classes more often, from 0 (each image once per epoch) to 1 (each class as
    /// often as the largest); needs labels (`data::Visits`).
    pub balance: f64,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            source: crate::data::EMBEDDED_MNIST.into(),
            image_size: 28,
            channels: 1,
            flip: false,
            strict: false,
            class_conditional: true,
            balance: 0.0,
        }
    }
}

/// The U-Net's hyper-parameters (lucidrains' names); channels and classes come from the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// Base width.
    pub dim: usize,
    /// Width multiplier per resolution level.
    pub dim_mults: Vec<usize>,
    /// Feed the previous x̂₀ back in (self-conditioning).
    pub self_condition: bool,
    /// Also learn the reverse-process variance (hybrid loss).
    pub learned_variance: bool,
    /// Dropout in each ResNet block.
    pub dropout: f64,
    /// Attention heads.
    pub attn_heads: usize,
    /// Channels per head.
    pub attn_dim_head: usize,
    /// Full attention per level (default: the innermost only).
    pub full_attn: Option<Vec<bool>>,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            dim: 32,
            dim_mults: vec![1, 2, 4],
            self_condition: false,
            learned_variance: false,
            dropout: 0.0,
            attn_heads: 4,
            attn_dim_head: 32,
            full_attn: None,
        }
    }
}

impl ModelSection {
    /// The U-Net for `channels` and, when conditional, `num_classes`.
    pub fn unet(&self, channels: usize, num_classes: Option<usize>) -> UnetConfig {
        UnetConfig::new(self.dim)
            .with_dim_mults(self.dim_mults.clone())
            .with_channels(channels)
            .with_self_condition(self.self_condition)
            .with_learned_variance(self.learned_variance)
            .with_dropout(self.dropout)
            .with_attn_heads(self.attn_heads)
            .with_attn_dim_head(self.attn_dim_head)
            .with_full_attn(self.full_attn.clone())
            .with_num_classes(num_classes)
    }
}

/// How the learning rate decays after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decay {
    /// Stay at `lr`.
    Constant,
    /// Cosine from `lr` down to `lr · min_lr_ratio` at the last step (`decay_steps`).
    Cosine,
}

/// Adam, the learning-rate schedule, clipping and accumulation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Images per optimiser step (split into `accumulation` micro-batches).
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed before each step.
    pub accumulation: usize,
    /// Parts of each micro-batch computed at the same time, each on its own thread with its
    /// own fork of the model, their gradients summed as in accumulation. On burn's CPU backend
    /// this overlaps the element-wise work it runs on one core (BENCHMARKS.md). 0: 2 on the
    /// CPU when the micro-batch splits evenly, 1 on a GPU.
    pub parallel: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Adam's β₁, β₂.
    pub betas: [f32; 2],
    /// Steps of linear warm-up from 0 to `lr`.
    pub warmup_steps: usize,
    /// After the warm-up.
    pub decay: Decay,
    /// Floor of the cosine decay, as a fraction of `lr`.
    pub min_lr_ratio: f64,
    /// The step the cosine decay reaches its floor at (absent: `run.steps`). A resume that
    /// adds steps sets it to the run's old end, so the added steps stay at the floor.
    pub decay_steps: Option<usize>,
    /// Clip the L2 norm of all gradients together to this, as lucidrains' Trainer does with
    /// `max_grad_norm` (absent = no clipping).
    pub grad_clip: Option<f32>,
    /// Clip each parameter tensor's gradient by itself instead (burn's
    /// `GradientClipping::Norm`), as runs started before 2026-12-07 did.
    pub grad_clip_per_tensor: bool,
    /// Adam's ε (PyTorch's 1e-8; runs started before 2026-12-07 used burn's 1e-5).
    pub adam_epsilon: f32,
}

/// What a run's saved configuration without the key means: the keys came with the change to
/// lucidrains' clipping and ε (2026-12-07), and older runs resume as they trained.
const LEGACY_OPTIM: [(&str, toml::Value); 2] = [
    ("grad_clip_per_tensor", toml::Value::Boolean(true)),
    ("adam_epsilon", toml::Value::Float(1e-5)),
];

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            accumulation: 1,
            parallel: 0,
            lr: 2e-4,
            betas: [0.9, 0.99],
            warmup_steps: 200,
            decay: Decay::Constant,
            min_lr_ratio: 0.1,
            decay_steps: None,
            grad_clip: Some(1.0),
            grad_clip_per_tensor: false,
            adam_epsilon: 1e-8,
        }
    }
}

impl OptimConfig {
    /// The norm all gradients are clipped to together (lucidrains' `clip_grad_norm_`), if so.
    pub fn clip_together(&self) -> Option<f32> {
        self.grad_clip.filter(|_| !self.grad_clip_per_tensor)
    }

    /// The learning rate of optimiser step `step` (1-based) of `total`.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        if step <= self.warmup_steps {
            return self.lr * step as f64 / self.warmup_steps.max(1) as f64;
        }
        match self.decay {
            Decay::Constant => self.lr,
            Decay::Cosine => {
                let end = self.decay_steps.unwrap_or(total);
                let span = end.saturating_sub(self.warmup_steps).max(1) as f64;
                let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
                let floor = self.lr * self.min_lr_ratio;
                floor + (self.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// The exponential moving average of the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmaConfig {
    /// The decay it warms up to.
    pub decay: f64,
    /// Update every this many optimiser steps, starting after the first (ema-pytorch's rhythm).
    pub every: usize,
    /// Warm-up power: decay = 1 − (1 + step − update_after_step)^(−power), capped at `decay`.
    pub power: f64,
    /// Until this step the average is a copy of the weights (ema-pytorch's default: 100), so
    /// the random initialisation does not linger in it.
    pub update_after_step: usize,
}

impl Default for EmaConfig {
    fn default() -> Self {
        Self {
            decay: 0.995,
            every: 10,
            // ema-pytorch's default, which lucidrains' Trainer keeps.
            power: 2.0 / 3.0,
            update_after_step: 100,
        }
    }
}

/// The run's length and rhythm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Optimiser steps in all.
    pub steps: usize,
    /// Seeds the weights, the data order and the diffusion noise.
    pub seed: u64,
    /// Write a checkpoint every this many steps (and on Ctrl-C).
    pub checkpoint_every: usize,
    /// Checkpoints kept.
    pub keep: usize,
    /// Write a sample grid and the loss curve every this many steps (0 = only at the end).
    pub sample_every: usize,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            steps: 10_000,
            seed: 0,
            checkpoint_every: 500,
            keep: 3,
            sample_every: 1000,
        }
    }
}

impl TrainConfig {
    /// Parses TOML text (every key optional) and applies `key=value` overrides, where the key is
    /// a dotted path such as `optim.lr` and the value a TOML literal (bare words are strings).
    pub fn from_toml(text: &str, overrides: &[String]) -> Result<Self> {
        Self::parse(text, overrides, false)
    }

    /// [`Self::from_toml`] for a run's saved `config.toml`, where a key added since the run
    /// started means what the run did before it existed.
    pub fn from_saved(text: &str, overrides: &[String]) -> Result<Self> {
        Self::parse(text, overrides, true)
    }

    fn parse(text: &str, overrides: &[String], saved: bool) -> Result<Self> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| {
            // toml's own text spans several lines with a drawing of the spot: one line here.
            let at = e.span().map_or(String::new(), |span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {column}: ")
            });
            anyhow::anyhow!("{at}{}", e.message().trim())
        })?;
        if saved && let Some(toml::Value::Table(optim)) = table.get_mut("optim") {
            for (key, value) in LEGACY_OPTIM {
                optim.entry(key).or_insert(value);
            }
        }
        for item in overrides {
            let (key, value) = item
                .split_once('=')
                .with_context(|| format!("override `{item}` is not KEY=VALUE"))?;
            set(&mut table, key.trim(), parse_value(value.trim()))
                .with_context(|| format!("override `{item}`"))?;
        }
        // The key a wrong value is under (`model.dim`), which toml's message leaves out.
        let config: Self = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| anyhow::anyhow!("{}: {}", e.path(), e.inner().message().trim()))?;
        config.validate()?;
        Ok(config)
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).context("cannot write the configuration as TOML")
    }

    /// The configuration as a TOML table (what a checkpoint keeps of it).
    pub fn to_table(&self) -> Result<toml::Table> {
        toml::Table::try_from(self).context("cannot write the configuration as TOML")
    }

    /// The keys whose values differ from `self` to `other`, dotted (`optim.batch_size`), with
    /// both values (`unset` where one has no value).
    pub fn changes(&self, other: &Self) -> Vec<(String, String, String)> {
        let shown = |v: String| if v == "null" { "unset".to_string() } else { v };
        ddpm::weights::field_diff(self, other)
            .into_iter()
            .map(|d| (d.field, shown(d.file), shown(d.expected)))
            .collect()
    }

    /// Checks the values serde cannot.
    pub fn validate(&self) -> Result<()> {
        let o = &self.optim;
        if o.batch_size == 0 || o.accumulation == 0 || !o.batch_size.is_multiple_of(o.accumulation)
        {
            bail!(
                "optim.batch_size ({}) must be a positive multiple of optim.accumulation ({})",
                o.batch_size,
                o.accumulation
            );
        }
        if o.batch_size > MAX_BATCH {
            bail!(
                "optim.batch_size must be at most {MAX_BATCH}, got {}",
                o.batch_size
            );
        }
        let micro = o.batch_size / o.accumulation;
        if o.parallel > 0 && !micro.is_multiple_of(o.parallel) {
            bail!(
                "optim.parallel ({}) must divide the micro-batch of {micro} images (optim.batch_size / optim.accumulation)",
                o.parallel
            );
        }
        if !(o.lr.is_finite() && o.lr > 0.0) {
            bail!("optim.lr must be a positive number, got {}", o.lr);
        }
        if o.betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            bail!("optim.betas must be in [0, 1), got {:?}", o.betas);
        }
        if o.grad_clip.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
            bail!("optim.grad_clip must be a positive number when set");
        }
        if !(o.adam_epsilon.is_finite() && o.adam_epsilon > 0.0) {
            bail!("optim.adam_epsilon must be a positive number");
        }
        if !(0.0..=1.0).contains(&o.min_lr_ratio) {
            bail!(
                "optim.min_lr_ratio must be in [0, 1], got {}",
                o.min_lr_ratio
            );
        }
        let bad_power = self.ema.power.is_nan() || self.ema.power <= 0.0;
        if !(0.0..1.0).contains(&self.ema.decay) || self.ema.every == 0 || bad_power {
            bail!("ema.decay must be in [0, 1), ema.every ≥ 1 and ema.power > 0");
        }
        let r = &self.run;
        if r.steps == 0 || r.checkpoint_every == 0 || r.keep == 0 {
            bail!("run.steps, run.checkpoint_every and run.keep must be at least 1");
        }
        if !(1..=MAX_IMAGE_SIDE).contains(&self.data.image_size) {
            bail!(
                "data.image_size must be from 1 to {MAX_IMAGE_SIDE}, got {}",
                self.data.image_size
            );
        }
        if !(0.0..=1.0).contains(&self.data.balance) {
            bail!(
                "data.balance must be from 0 to 1, got {}",
                self.data.balance
            );
        }
        self.diffusion.validate()?;
        Ok(())
    }
}

/// A TOML literal, or the text itself as a string.
fn parse_value(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

fn set(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<()> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().filter(|k| !k.is_empty()).context("empty key")?;
    let mut node = table;
    for part in parts {
        let entry = node
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry
            .as_table_mut()
            .with_context(|| format!("`{part}` is a value, not a section"))?;
    }
    node.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddpm::BetaSchedule;

    #[test]
    fn an_empty_file_gives_the_defaults_and_round_trips() {
        let config = TrainConfig::from_toml("", &[]).expect("defaults");
        assert_eq!(config, TrainConfig::default());
        let text = config.to_toml().expect("toml");
        assert_eq!(TrainConfig::from_toml(&text, &[]).expect("again"), config);
    }

    #[test]
    fn a_saved_run_without_the_newer_optimizer_keys_resumes_as_it_trained() {
        // What runs started before the keys existed wrote: the whole optim table without them.
        let mut table: toml::Table =
            toml::from_str(&TrainConfig::default().to_toml().expect("toml")).expect("table");
        let Some(toml::Value::Table(optim)) = table.get_mut("optim") else {
            panic!("no [optim]");
        };
        optim.remove("grad_clip_per_tensor");
        optim.remove("adam_epsilon");
        let old = toml::to_string(&table).expect("toml");
        let saved = TrainConfig::from_saved(&old, &[]).expect("saved");
        assert!(saved.optim.grad_clip_per_tensor);
        assert_eq!(saved.optim.adam_epsilon, 1e-5);
        // A new run's file without them gets lucidrains' clipping and PyTorch's ε, and a
        // saved run that has them keeps them.
        let new = TrainConfig::from_toml(&old, &[]).expect("new");
        assert!(!new.optim.grad_clip_per_tensor);
        assert_eq!(new.optim.adam_epsilon, 1e-8);
        let text = new.to_toml().expect("toml");
        assert_eq!(TrainConfig::from_saved(&text, &[]).expect("saved"), new);
    }

    #[test]
    fn changes_name_each_key_that_differs_with_both_values() {
        let before = TrainConfig::default();
        let text = "[optim]\nbatch_size = 32\n[diffusion]\nbeta_schedule = { kind = \"cosine\", s = 0.008 }\n";
        let after = TrainConfig::from_toml(text, &[]).expect("parses");
        let changes = before.changes(&after);
        let keys: Vec<&str> = changes.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "diffusion.beta_schedule.kind",
                "diffusion.beta_schedule.s",
                "optim.batch_size"
            ]
        );
        assert_eq!(
            changes[0],
            (
                "diffusion.beta_schedule.kind".into(),
                "\"linear\"".into(),
                "\"cosine\"".into()
            )
        );
        assert_eq!(changes[1].1, "unset");
        assert_eq!(changes[2].2, "32");
        assert!(after.changes(&after).is_empty());
    }

    #[test]
    fn overrides_apply_on_top_of_the_file() {
        let text =
            "[optim]\nlr = 0.001\n[diffusion]\nbeta_schedule = { kind = \"cosine\", s = 0.008 }\n";
        let sets = [
            "optim.lr=3e-4".to_string(),
            "data.source=some/folder".to_string(),
            "model.dim_mults=[1, 2]".to_string(),
        ];
        let config = TrainConfig::from_toml(text, &sets).expect("parse");
        assert_eq!(config.optim.lr, 3e-4);
        assert_eq!(config.data.source, "some/folder");
        assert_eq!(config.model.dim_mults, vec![1, 2]);
        assert_eq!(config.diffusion.beta_schedule, BetaSchedule::COSINE);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_by_name() {
        let err = TrainConfig::from_toml("[optim]\nlearning_rate = 1\n", &[])
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("learning_rate"), "{err}");
        let err = TrainConfig::from_toml(
            "",
            &["optim.batch_size=10".into(), "optim.accumulation=3".into()],
        )
        .expect_err("indivisible")
        .to_string();
        assert!(err.contains("accumulation"), "{err}");
        // Micro-batches of 64 / 2 = 32 images do not split into 3 parts.
        let set = ["optim.accumulation=2".into(), "optim.parallel=3".into()];
        let err = TrainConfig::from_toml("", &set)
            .expect_err("indivisible")
            .to_string();
        assert!(
            err.contains("optim.parallel (3)") && err.contains("32"),
            "{err}"
        );
        let err = TrainConfig::from_toml("", &["nokey".into()])
            .expect_err("no =")
            .to_string();
        assert!(err.contains("KEY=VALUE"), "{err}");
        // Values that would make NaN β or weights, named by key.
        for (set, key) in [
            (
                "diffusion.beta_schedule={ kind = \"sigmoid\", start = 1, end = 1, tau = 1 }",
                "beta_schedule",
            ),
            (
                "diffusion.beta_schedule={ kind = \"cosine\", s = -1 }",
                "beta_schedule",
            ),
            ("ema.power=nan", "ema.power"),
            (
                "diffusion.timesteps=9223372036854775807",
                "diffusion.timesteps",
            ),
            ("data.image_size=4294967328", "data.image_size"),
            ("optim.batch_size=4611686018427387904", "optim.batch_size"),
            ("diffusion.min_snr_gamma=-5", "min_snr_gamma"),
            ("data.balance=1.5", "data.balance"),
            ("data.balance=nan", "data.balance"),
            ("optim.adam_epsilon=0", "optim.adam_epsilon"),
            (
                "diffusion.offset_noise_strength=inf",
                "offset_noise_strength",
            ),
        ] {
            let err = TrainConfig::from_toml("", &[set.into()])
                .expect_err(set)
                .to_string();
            assert!(err.contains(key), "{set}: {err}");
        }
        // The key of a wrong value, and the line of a syntax error, each on one line.
        let err = TrainConfig::from_toml("[run]\nsteps = \"many\"\n", &[])
            .expect_err("type")
            .to_string();
        assert!(err.starts_with("run.steps: invalid type"), "{err}");
        let err = TrainConfig::from_toml("[model]\ndim_mults = [1, 2\n", &[])
            .expect_err("syntax")
            .to_string();
        assert!(err.starts_with("line 2, column "), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn the_learning_rate_warms_up_then_decays() {
        let mut o = OptimConfig {
            lr: 1.0,
            warmup_steps: 10,
            ..OptimConfig::default()
        };
        assert_eq!(o.lr_at(5, 100), 0.5);
        assert_eq!(o.lr_at(50, 100), 1.0);
        o.decay = Decay::Cosine;
        assert!((o.lr_at(10, 100) - 1.0).abs() < 1e-12);
        assert!((o.lr_at(55, 100) - 0.55).abs() < 1e-12); // halfway: floor + half the span
        assert!((o.lr_at(100, 100) - 0.1).abs() < 1e-12);
        // A run extended to 200 steps keeps its planned end: the floor after step 100.
        o.decay_steps = Some(100);
        assert!((o.lr_at(55, 200) - 0.55).abs() < 1e-12);
        assert!((o.lr_at(150, 200) - 0.1).abs() < 1e-12);
    }
}
