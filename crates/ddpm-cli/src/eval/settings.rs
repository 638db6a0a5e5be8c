//! How an evaluation runs: the flags, else the settings of the report it extends (`--extend`),
//! else the defaults; and the checks that keep an extension's rows comparable with the report's.

use std::fmt::Display;
use std::path::Path;

use anyhow::{Result, bail};

use super::args::{DEFAULT_BATCH, EvalArgs, SamplerSpec};
use super::likelihood::Blocks;
use super::report::Report;
use crate::sample::MAX_IMAGES;

/// The settings of one `ddpm eval` run.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Generated images per weights × sampler (models the classifier judges).
    pub n: usize,
    /// Samplers (models the classifier judges).
    pub samplers: Vec<SamplerSpec>,
    /// Guidance scale of the class-conditional samples (models the classifier judges).
    pub guidance: f64,
    /// Images per network call; it also decides each image's noise (batch k is seeded
    /// `seed · 10⁶ + k`) and the steps drawn for the bound.
    pub batch: usize,
    /// Held-out images for the bits/dim (0: none).
    pub nll_images: usize,
    /// One step per block of this many for the bound.
    pub nll_stride: usize,
}

impl Settings {
    /// The flags, else `previous`'s settings, else the defaults. A flag that differs from the
    /// report extended is refused by name: its rows would not compare.
    pub fn resolve(args: &EvalArgs, previous: Option<&Report>) -> Result<Self> {
        let bound = previous
            .and_then(|p| p.likelihood.first())
            .map(|l| &l.bound);
        let nll_images = match (args.nll_images, previous, bound) {
            // Skipping the bound is always allowed.
            (Some(0), _, _) => 0,
            // A report without bits/dim was made with `--nll-images 0`: its extension measures
            // none either, unless asked to add them.
            (given, Some(_), None) => given.unwrap_or(0),
            (given, _, _) => pick("--nll-images", given, bound.map(|b| b.images), 1000)?,
        };
        Ok(Self {
            n: pick("-n", args.n, previous.and_then(|p| p.images), 1000)?,
            samplers: args
                .samplers
                .clone()
                .or_else(|| previous.map(Report::samplers).filter(|s| !s.is_empty()))
                .unwrap_or_else(|| {
                    use SamplerSpec::{Ddim, Ddpm};
                    vec![Ddpm, Ddim(10), Ddim(20), Ddim(50), Ddim(100)]
                }),
            guidance: pick(
                "--guidance",
                args.guidance,
                previous.and_then(|p| p.guidance),
                3.0,
            )?,
            batch: pick(
                "--batch",
                args.batch,
                previous.map(Report::batch),
                DEFAULT_BATCH,
            )?,
            nll_images,
            nll_stride: pick("--nll-stride", args.nll_stride, bound.map(|b| b.stride), 1)?,
        })
    }

    /// Checks the values, whether the flags or the report extended gave them.
    pub fn check(&self) -> Result<()> {
        if !(2..=MAX_IMAGES).contains(&self.n) {
            bail!(
                "--n must be from 2 (a covariance needs two images) to {MAX_IMAGES}, got {}",
                self.n
            );
        }
        if self.batch == 0 || self.nll_stride == 0 {
            bail!(
                "--batch and --nll-stride must be at least 1, got {} and {}",
                self.batch,
                self.nll_stride
            );
        }
        if !self.guidance.is_finite() {
            bail!("--guidance must be a finite number, got {}", self.guidance);
        }
        // One sampler twice would measure it twice and report it under one name.
        if let Some(twice) = repeated(&self.samplers) {
            bail!("--samplers names {twice} twice");
        }
        Ok(())
    }
}

/// `given`, else `extended`, else `default`; refused when `given` and `extended` differ.
fn pick<T: PartialEq + Display + Copy>(
    flag: &str,
    given: Option<T>,
    extended: Option<T>,
    default: T,
) -> Result<T> {
    match (given, extended) {
        (Some(given), Some(extended)) if given != extended => {
            bail!("{flag} {given}: the report extended (--extend) was measured with {extended}")
        }
        _ => Ok(given.or(extended).unwrap_or(default)),
    }
}

/// Refuses to extend a report of another model, step, held-out set, seed or classifier.
pub fn check_extends(
    args: &EvalArgs,
    previous: &Report,
    step: Option<usize>,
    classifier_sha256: Option<&str>,
) -> Result<()> {
    let path = extended(args);
    let show = |s: Option<usize>| s.map_or("unknown".into(), |s| s.to_string());
    if let (Ok(theirs), Ok(ours)) = (
        std::fs::canonicalize(&previous.model),
        std::fs::canonicalize(&args.model),
    ) && theirs != ours
    {
        bail!(
            "--extend {path}: measured {}, not {}",
            theirs.display(),
            ours.display()
        );
    }
    if previous.step != step {
        bail!(
            "--extend {path}: evaluates step {}, but {} is at step {}",
            show(previous.step),
            args.model.display(),
            show(step)
        );
    }
    if previous.heldout != args.heldout {
        bail!(
            "--extend {path}: measured on held-out `{}`, not `{}`",
            previous.heldout,
            args.heldout
        );
    }
    if previous.seed != args.seed {
        bail!(
            "--extend {path}: seed {}, not {} (give --seed {0})",
            previous.seed,
            args.seed
        );
    }
    if let (Some(theirs), Some(ours)) = (&previous.classifier_sha256, classifier_sha256)
        && theirs != ours
    {
        bail!("--extend {path}: measured with another classifier (--classifier)");
    }
    Ok(())
}

/// Refuses an extension that would measure nothing (every weights × sampler and bits/dim asked
/// for is in the report already; `weights` are those loaded: a weights file holds one set), or
/// that would add bits/dim to a report whose bits/dim took one step per even block (before
/// 2026-12-07): the two estimates would not compare.
pub fn check_additions(
    args: &EvalArgs,
    previous: &Report,
    settings: &Settings,
    weights: &[&str],
    judged: bool,
) -> Result<()> {
    let rows = judged
        && weights.iter().any(|w| {
            settings
                .samplers
                .iter()
                .any(|s| !previous.has_row(w, &s.to_string()))
        });
    let bounds = settings.nll_images > 0 && weights.iter().any(|w| !previous.has_bound(w));
    if !rows && !bounds {
        let other = if judged {
            "--samplers or --weights"
        } else {
            "--weights"
        };
        bail!(
            "--extend {}: already has every row asked for; name other {other}",
            extended(args)
        );
    }
    let even = previous
        .likelihood
        .iter()
        .find(|l| l.bound.stride > 1 && l.bound.blocks == Blocks::Even);
    if let (true, Some(even)) = (bounds, even) {
        let rows_only = if judged {
            ", or add only sample rows with --nll-images 0"
        } else {
            ""
        };
        bail!(
            "--extend {}: its bits/dim took one step per even block of {} steps, which eval no longer does (the step drawn near t = 1 moves it, by about ±1 bit/dim at stride 20); evaluate anew{rows_only}",
            extended(args),
            even.bound.stride
        );
    }
    Ok(())
}

/// The report `--extend` names, for messages.
fn extended(args: &EvalArgs) -> std::path::Display<'_> {
    args.extend.as_deref().unwrap_or(Path::new("")).display()
}

/// The first item of `items` that an earlier one equals (a sampler or weights named twice).
pub fn repeated<T: PartialEq>(items: &[T]) -> Option<&T> {
    (1..items.len()).find_map(|i| items[..i].contains(&items[i]).then_some(&items[i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_from_an_extended_report_are_checked_as_flags_are() {
        // `resolve` takes a report's values as they are; `check` refuses what would divide by
        // zero or hold too many images, wherever it came from.
        let settings = Settings {
            n: 1000,
            samplers: vec![SamplerSpec::Ddpm],
            guidance: 3.0,
            batch: 250,
            nll_images: 0,
            nll_stride: 1,
        };
        assert!(settings.check().is_ok());
        let err = |s: Settings| s.check().expect_err("refused").to_string();
        let zero_batch = Settings {
            batch: 0,
            ..settings.clone()
        };
        assert_eq!(
            err(zero_batch),
            "--batch and --nll-stride must be at least 1, got 0 and 1"
        );
        for n in [1, MAX_IMAGES + 1] {
            let e = err(Settings {
                n,
                ..settings.clone()
            });
            assert!(e.starts_with("--n must be from 2"), "{e}");
        }
        let nan = Settings {
            guidance: f64::NAN,
            ..settings.clone()
        };
        assert_eq!(err(nan), "--guidance must be a finite number, got NaN");
        let twice = Settings {
            samplers: vec![
                SamplerSpec::Ddim(10),
                SamplerSpec::Ddpm,
                SamplerSpec::Ddim(10),
            ],
            ..settings.clone()
        };
        assert_eq!(err(twice), "--samplers names ddim-10 twice");
    }
}
