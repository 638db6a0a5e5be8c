//! The diffusion of a lucidrains model: from `GaussianDiffusion`'s buffers where the file has
//! them (`betas` → schedule and T, `loss_weight` → objective and min-SNR weighting), else from
//! this project's configuration in the file, else from flags, else lucidrains' defaults, said so.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use clap::ValueEnum;
use ddpm::diffusion::MAX_TIMESTEPS;
use ddpm::{BetaSchedule, DiffusionConfig, Objective};

use super::Tensor;

/// `--objective`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum ObjectiveArg {
    /// ε (the paper's).
    PredNoise,
    /// x₀.
    PredX0,
    /// v (lucidrains' default).
    PredV,
}

/// `--schedule`, with lucidrains' parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    /// β from 1e-4 to 0.02 (scaled by 1000 / T).
    Linear,
    /// Nichol & Dhariwal's, s = 0.008.
    Cosine,
    /// lucidrains' default: start −3, end 3, τ 1.
    Sigmoid,
}

/// What a file without `GaussianDiffusion`'s buffers cannot tell (a bare `Unet` state dict).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DiffusionFlags {
    /// What the network predicts, for a file that does not record it (lucidrains' default:
    /// pred_v). Refused when the file's buffers say otherwise.
    #[arg(long, value_enum)]
    pub objective: Option<ObjectiveArg>,
    /// The β schedule, for a file that does not record it (lucidrains' default: sigmoid).
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleArg>,
    /// The number of diffusion steps T, for a file that does not record it (default 1000).
    #[arg(long)]
    pub timesteps: Option<usize>,
}

/// The schedules to compare a file's β against, with their names for messages.
const SCHEDULES: [(BetaSchedule, &str); 3] = [
    (BetaSchedule::Linear {}, "linear"),
    (BetaSchedule::COSINE, "cosine (s = 0.008)"),
    (BetaSchedule::SIGMOID, "sigmoid (−3, 3, τ = 1)"),
];

/// The diffusion of a model whose file has `buffers` (possibly none) and, from `ddpm export
/// --lucidrains`, `known`, for a U-Net with a `learned_variance` output or not; and the lines
/// saying what was assumed.
pub fn infer_diffusion(
    buffers: &BTreeMap<String, Tensor>,
    known: Option<&DiffusionConfig>,
    flags: &DiffusionFlags,
    learned_variance: bool,
) -> Result<(DiffusionConfig, Vec<String>)> {
    let mut assumed = Vec::new();
    let flag_schedule = flags.schedule.map(|s| match s {
        ScheduleArg::Linear => BetaSchedule::Linear {},
        ScheduleArg::Cosine => BetaSchedule::COSINE,
        ScheduleArg::Sigmoid => BetaSchedule::SIGMOID,
    });
    let flag_objective = flags.objective.map(|o| match o {
        ObjectiveArg::PredNoise => Objective::PredNoise,
        ObjectiveArg::PredX0 => Objective::PredX0,
        ObjectiveArg::PredV => Objective::PredV,
    });
    let (timesteps, beta_schedule) = match buffers.get("betas") {
        Some(betas) => {
            let schedule = match_schedule(&betas.values)?;
            agree("--schedule", flag_schedule, schedule, schedule_name)?;
            agree("--timesteps", flags.timesteps, betas.values.len(), |t| {
                t.to_string()
            })?;
            (betas.values.len(), schedule)
        }
        None => match known {
            Some(k) => {
                agree("--schedule", flag_schedule, k.beta_schedule, schedule_name)?;
                agree("--timesteps", flags.timesteps, k.timesteps, |t| {
                    t.to_string()
                })?;
                (k.timesteps, k.beta_schedule)
            }
            None => {
                let t = flags.timesteps.unwrap_or_else(|| {
                    assumed.push("T = 1000 (lucidrains' default; --timesteps)".into());
                    1000
                });
                let s = flag_schedule.unwrap_or_else(|| {
                    assumed.push("the sigmoid schedule (lucidrains' default; --schedule)".into());
                    BetaSchedule::SIGMOID
                });
                (t, s)
            }
        },
    };
    // Checked before the schedule's tables are computed from it.
    if !(1..=MAX_TIMESTEPS).contains(&timesteps) {
        bail!(
            "T (--timesteps, or the length of the file's `betas`) must be from 1 to {MAX_TIMESTEPS}, got {timesteps}"
        );
    }
    // ᾱ from the schedule in f64, not the file's f32 ᾱ: near t = 0, where ᾱ → 1, the SNR
    // ᾱ / (1 − ᾱ) of an f32 ᾱ is off in the 3rd digit.
    let from_buffer = |weights: &Tensor| {
        match_objective(&weights.values, &alphas_cumprod(beta_schedule, timesteps))
    };
    let (objective, min_snr_gamma) = match (buffers.get("loss_weight"), known) {
        // lucidrains trains a learned variance only with `LearnedGaussianDiffusion`, which reads
        // the network's first half as ε whatever its `objective` (the buffers keep the default's).
        (weights, None) if learned_variance => {
            if let Some(o) = flag_objective.filter(|&o| o != Objective::PredNoise) {
                bail!(
                    "--objective {}: a U-Net with a learned variance predicts ε (lucidrains' LearnedGaussianDiffusion), whatever its `objective`",
                    objective_name(o)
                );
            }
            if let Some((found, _)) = weights.map(from_buffer).transpose()?
                && found != Objective::PredNoise
            {
                assumed.push(format!(
                    "ε for its objective, not the buffers' {}: a U-Net with a learned variance is LearnedGaussianDiffusion's, which predicts ε whatever its `objective`",
                    objective_name(found)
                ));
            }
            (Objective::PredNoise, None)
        }
        (Some(weights), _) => {
            let found = from_buffer(weights)?;
            agree("--objective", flag_objective, found.0, |o| {
                objective_name(o).into()
            })?;
            found
        }
        (None, Some(k)) => {
            agree("--objective", flag_objective, k.objective, |o| {
                objective_name(o).into()
            })?;
            (k.objective, k.min_snr_gamma)
        }
        (None, None) => {
            let objective = flag_objective.unwrap_or_else(|| {
                assumed.push("the v objective (lucidrains' default; --objective)".into());
                Objective::PredV
            });
            (objective, None)
        }
    };
    let config = DiffusionConfig {
        timesteps,
        beta_schedule,
        objective,
        min_snr_gamma,
        ..known.cloned().unwrap_or_default()
    };
    Ok((config, assumed))
}

/// A flag given for what the file already says must say the same.
fn agree<T: PartialEq>(flag: &str, given: Option<T>, file: T, name: fn(T) -> String) -> Result<()> {
    match given {
        Some(given) if given != file => bail!(
            "{flag} {} contradicts the file, whose buffers or metadata say {}",
            name(given),
            name(file)
        ),
        _ => Ok(()),
    }
}

fn schedule_name(schedule: BetaSchedule) -> String {
    SCHEDULES
        .iter()
        .find(|(s, _)| *s == schedule)
        .map_or_else(|| format!("{schedule:?}"), |(_, name)| name.to_string())
}

/// lucidrains' name of an objective.
fn objective_name(objective: Objective) -> &'static str {
    match objective {
        Objective::PredNoise => "pred_noise",
        Objective::PredX0 => "pred_x0",
        Objective::PredV => "pred_v",
    }
}

/// The schedule whose β the file's `betas` are (as f32, the way lucidrains stores them). The
/// last β of the sigmoid and cosine schedules divide two ᾱ near 0: lucidrains' float64 and
/// this crate's agree there to about 1e-5, not to f32's last digit.
fn match_schedule(betas: &[f32]) -> Result<BetaSchedule> {
    for (schedule, _) in SCHEDULES {
        let ours = schedule.betas(betas.len());
        let same = ours
            .iter()
            .zip(betas)
            .all(|(a, b)| (a - f64::from(*b)).abs() <= 1e-4 * f64::from(b.abs()) + 1e-9);
        if same {
            return Ok(schedule);
        }
    }
    let names: Vec<&str> = SCHEDULES.iter().map(|(_, n)| *n).collect();
    bail!(
        "`betas` ({} steps, {:.3e} … {:.3e}) match none of the schedules implemented here: {} (with lucidrains' default `schedule_fn_kwargs`, stored in float32)",
        betas.len(),
        betas.first().copied().unwrap_or(0.0),
        betas.last().copied().unwrap_or(0.0),
        names.join(", ")
    )
}

/// ᾱ_t of `schedule`.
fn alphas_cumprod(schedule: BetaSchedule, timesteps: usize) -> Vec<f64> {
    let mut alpha_bar = 1.0;
    schedule
        .betas(timesteps)
        .iter()
        .map(|beta| {
            alpha_bar *= 1.0 - beta;
            alpha_bar
        })
        .collect()
}

/// The objective and min-SNR γ whose loss weights lucidrains computes as `loss_weight`:
/// `clip(snr) / snr` for ε, `clip(snr)` for x₀, `clip(snr) / (snr + 1)` for v, where
/// `clip(snr) = min(snr, γ)` with min-SNR weighting and `snr` without.
fn match_objective(weights: &[f32], alphas_cumprod: &[f64]) -> Result<(Objective, Option<f64>)> {
    if weights.len() != alphas_cumprod.len() {
        bail!(
            "`loss_weight` has {} entries but `betas` {}",
            weights.len(),
            alphas_cumprod.len()
        );
    }
    let snr: Vec<f64> = alphas_cumprod.iter().map(|a| a / (1.0 - a)).collect();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * b.abs() + 1e-7;
    for objective in [Objective::PredNoise, Objective::PredV, Objective::PredX0] {
        // The weight times this is the clipped SNR.
        let clipped: Vec<f64> = weights
            .iter()
            .zip(&snr)
            .map(|(w, s)| {
                f64::from(*w)
                    * match objective {
                        Objective::PredNoise => *s,
                        Objective::PredV => s + 1.0,
                        Objective::PredX0 => 1.0,
                    }
            })
            .collect();
        if clipped.iter().zip(&snr).all(|(c, s)| close(*c, *s)) {
            return Ok((objective, None));
        }
        let gamma = clipped.iter().copied().fold(f64::MIN, f64::max);
        if clipped
            .iter()
            .zip(&snr)
            .all(|(c, s)| close(*c, s.min(gamma)))
        {
            // γ as the user wrote it (5, not 4.9999995 from an f32 weight).
            let gamma = format!("{gamma:.5e}").parse().unwrap_or(gamma);
            return Ok((objective, Some(gamma)));
        }
    }
    bail!(
        "`loss_weight` matches none of pred_noise, pred_v, pred_x0 (with or without min-SNR weighting)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(objective: Objective, gamma: Option<f64>, t: usize) -> Vec<f32> {
        let mut alpha_bar = 1.0;
        BetaSchedule::COSINE
            .betas(t)
            .iter()
            .map(|beta| {
                alpha_bar *= 1.0 - beta;
                let snr: f64 = alpha_bar / (1.0 - alpha_bar);
                let clipped = gamma.map_or(snr, |g| snr.min(g));
                (match objective {
                    Objective::PredNoise => clipped / snr,
                    Objective::PredV => clipped / (snr + 1.0),
                    Objective::PredX0 => clipped,
                }) as f32
            })
            .collect()
    }

    #[test]
    fn loss_weights_tell_the_objective_and_min_snr_gamma() {
        for objective in [Objective::PredNoise, Objective::PredV, Objective::PredX0] {
            for gamma in [None, Some(5.0)] {
                let w = weights(objective, gamma, 100);
                let abar = alphas_cumprod(BetaSchedule::COSINE, 100);
                assert_eq!(
                    match_objective(&w, &abar).expect("matches"),
                    (objective, gamma)
                );
            }
        }
        let abar = alphas_cumprod(BetaSchedule::COSINE, 100);
        let err = match_objective(&[0.5; 100], &abar).expect_err("none");
        assert!(
            err.to_string().contains("`loss_weight` matches none"),
            "{err}"
        );
    }

    #[test]
    fn betas_tell_the_schedule_and_flags_must_agree() {
        for (schedule, _) in SCHEDULES {
            let betas: Vec<f32> = schedule.betas(50).iter().map(|b| *b as f32).collect();
            assert_eq!(match_schedule(&betas).expect("matches"), schedule);
        }
        let err = match_schedule(&[0.1, 0.2, 0.3]).expect_err("no schedule");
        assert!(err.to_string().contains("match none"), "{err}");
        let betas: Vec<f32> = BetaSchedule::Linear {}
            .betas(20)
            .iter()
            .map(|b| *b as f32)
            .collect();
        let buffers = BTreeMap::from([(
            "betas".to_string(),
            Tensor {
                shape: vec![20],
                values: betas,
            },
        )]);
        let flags = DiffusionFlags {
            schedule: Some(ScheduleArg::Cosine),
            ..DiffusionFlags::default()
        };
        let err = infer_diffusion(&buffers, None, &flags, false).expect_err("contradiction");
        assert_eq!(
            err.to_string(),
            "--schedule cosine (s = 0.008) contradicts the file, whose buffers or metadata say linear"
        );
        let (config, assumed) =
            infer_diffusion(&buffers, None, &DiffusionFlags::default(), false).expect("linear");
        assert_eq!(
            (config.timesteps, config.beta_schedule),
            (20, BetaSchedule::Linear {})
        );
        assert_eq!(
            assumed,
            ["the v objective (lucidrains' default; --objective)"]
        );
        // A bare U-Net's T comes from the flag alone, and is bounded before any table is made.
        let huge = DiffusionFlags {
            timesteps: Some(usize::MAX),
            ..DiffusionFlags::default()
        };
        let err = infer_diffusion(&BTreeMap::new(), None, &huge, false).expect_err("huge T");
        assert!(
            err.to_string().contains("must be from 1 to 100000"),
            "{err}"
        );
    }

    /// lucidrains' `LearnedGaussianDiffusion` keeps the default objective's `loss_weight`
    /// (pred_v) but reads its network as ε: a learned variance is imported as ε, said so, and a
    /// flag asking for another objective is refused.
    #[test]
    fn a_learned_variance_predicts_noise_whatever_the_buffers_say() {
        let timesteps = 20;
        let betas: Vec<f32> = BetaSchedule::SIGMOID
            .betas(timesteps)
            .iter()
            .map(|&b| b as f32)
            .collect();
        // pred_v's weight: SNR / (SNR + 1) = ᾱ.
        let loss_weight: Vec<f32> = alphas_cumprod(BetaSchedule::SIGMOID, timesteps)
            .iter()
            .map(|&a| a as f32)
            .collect();
        let tensor = |values: Vec<f32>| Tensor {
            shape: vec![timesteps],
            values,
        };
        let buffers = BTreeMap::from([
            ("betas".to_string(), tensor(betas)),
            ("loss_weight".to_string(), tensor(loss_weight)),
        ]);
        let none = DiffusionFlags::default();
        let (plain, _) = infer_diffusion(&buffers, None, &none, false).expect("plain");
        assert_eq!(plain.objective, Objective::PredV);
        let (learned, assumed) = infer_diffusion(&buffers, None, &none, true).expect("learned");
        assert_eq!(learned.objective, Objective::PredNoise);
        assert!(
            assumed
                .iter()
                .any(|a| a.starts_with("ε for its objective, not the buffers' pred_v")),
            "{assumed:?}"
        );
        let v = DiffusionFlags {
            objective: Some(ObjectiveArg::PredV),
            ..DiffusionFlags::default()
        };
        let err = infer_diffusion(&buffers, None, &v, true).expect_err("pred_v refused");
        assert!(
            err.to_string()
                .starts_with("--objective pred_v: a U-Net with a learned variance predicts ε"),
            "{err}"
        );
        let noise = DiffusionFlags {
            objective: Some(ObjectiveArg::PredNoise),
            ..DiffusionFlags::default()
        };
        let (config, _) = infer_diffusion(&buffers, None, &noise, true).expect("pred_noise");
        assert_eq!(config.objective, Objective::PredNoise);
    }
}
