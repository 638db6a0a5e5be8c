//! The diffusion's settings (T, schedule, objective, loss options) and their validation, which
//! every way into the crate runs: a training configuration, a weights file, a checkpoint.

use serde::{Deserialize, Serialize};

use crate::schedule::BetaSchedule;

/// The most diffusion steps a configuration may ask for: each step is a row of every schedule
/// table, and T is read from files, so a value from a damaged file must not allocate without
/// bound (the paper uses 1000, Nichol & Dhariwal 4000).
pub const MAX_TIMESTEPS: usize = 100_000;

/// What the network is trained to predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// ε, the noise that was added (the paper's choice, `pred_noise` in lucidrains' code).
    PredNoise,
    /// x₀, the clean image (`pred_x0`).
    PredX0,
    /// v = √ᾱ_t ε − √(1−ᾱ_t) x₀ (Salimans & Ho 2022, appendix D; `pred_v`).
    PredV,
}

/// Everything about the diffusion process that is not the network. As a TOML or JSON section
/// every field is optional (the paper's values below) and an unknown one is refused; weights
/// files are guarded by their format version besides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiffusionConfig {
    /// The number of diffusion steps T.
    pub timesteps: usize,
    /// How β grows with t.
    pub beta_schedule: BetaSchedule,
    /// What the network predicts.
    pub objective: Objective,
    /// Min-SNR-γ loss weighting (Hang et al. 2023): the SNR in the weight is clipped at γ.
    /// `None` weights every objective to equal L_simple in ε-space.
    pub min_snr_gamma: Option<f64>,
    /// Offset noise: a per-image, per-channel constant of this standard deviation is added to
    /// the training noise (0 turns it off; 0.1 is the usual value).
    pub offset_noise_strength: f64,
    /// Probability that a training label is replaced by the null class, which teaches the
    /// unconditional model that classifier-free guidance needs. Used only with classes.
    pub cond_drop_prob: f64,
    /// The weight of the variational term in the hybrid loss that trains a learned variance,
    /// applied to the one term L_t of each image, as lucidrains' `LearnedGaussianDiffusion`
    /// does (0.001). Nichol & Dhariwal's λ = 0.001 weighs the whole L_vlb = Σ_t L_t, which one
    /// term estimates as T·L_t: their setting is T/1000 here (1 at T = 1000). Used only when
    /// the network outputs a variance.
    pub vb_loss_weight: f64,
}

impl Default for DiffusionConfig {
    /// The paper's setting: T = 1000, linear β, ε-prediction, plain L_simple.
    fn default() -> Self {
        Self {
            timesteps: 1000,
            beta_schedule: BetaSchedule::Linear {},
            objective: Objective::PredNoise,
            min_snr_gamma: None,
            offset_noise_strength: 0.0,
            cond_drop_prob: 0.1,
            vb_loss_weight: 0.001,
        }
    }
}

/// A diffusion configuration that cannot be trained or sampled with; the message names the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DiffusionConfigError {
    /// T out of range.
    #[error("diffusion.timesteps must be from 1 to {MAX_TIMESTEPS}, got {0}")]
    Timesteps(usize),
    /// A schedule whose parameters give a β outside [0, 1) (or NaN), or a first β of 0.
    #[error(
        "diffusion.beta_schedule {schedule:?} gives no valid β (each in [0, 1), the first above 0) at T = {timesteps}: check its parameters"
    )]
    Schedule {
        /// The schedule.
        schedule: BetaSchedule,
        /// T.
        timesteps: usize,
    },
    /// Label dropout is not a probability below 1.
    #[error("diffusion.cond_drop_prob must be in [0, 1), got {0}")]
    CondDropProb(f64),
    /// A loss option that must be a finite number ≥ 0.
    #[error("diffusion.{0} must be a finite number ≥ 0, got {1}")]
    Negative(&'static str, f64),
    /// γ of min-SNR-γ is not positive.
    #[error("diffusion.min_snr_gamma must be a positive number when set, got {0}")]
    MinSnrGamma(f64),
}

impl DiffusionConfig {
    /// Checks the values serde cannot; T first, so that a huge one is refused before the
    /// schedule is computed.
    pub fn validate(&self) -> Result<(), DiffusionConfigError> {
        if !(1..=MAX_TIMESTEPS).contains(&self.timesteps) {
            return Err(DiffusionConfigError::Timesteps(self.timesteps));
        }
        let betas = self.beta_schedule.betas(self.timesteps);
        // β₁ = 0 would leave x₁ noiseless (ᾱ₁ = 1): its signal-to-noise ratio, which weights
        // the loss, is infinite, and the first step's loss NaN.
        if betas.iter().any(|b| !(0.0..1.0).contains(b)) || betas.first().is_none_or(|b| *b <= 0.0)
        {
            return Err(DiffusionConfigError::Schedule {
                schedule: self.beta_schedule,
                timesteps: self.timesteps,
            });
        }
        if !(0.0..1.0).contains(&self.cond_drop_prob) {
            return Err(DiffusionConfigError::CondDropProb(self.cond_drop_prob));
        }
        let loss_options = [
            ("offset_noise_strength", self.offset_noise_strength),
            ("vb_loss_weight", self.vb_loss_weight),
        ];
        if let Some((key, value)) = loss_options
            .into_iter()
            .find(|(_, v)| !(v.is_finite() && *v >= 0.0))
        {
            return Err(DiffusionConfigError::Negative(key, value));
        }
        if let Some(gamma) = self.min_snr_gamma
            && !(gamma.is_finite() && gamma > 0.0)
        {
            return Err(DiffusionConfigError::MinSnrGamma(gamma));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_that_cannot_be_sampled_are_refused_by_key() {
        let with = |change: fn(&mut DiffusionConfig)| {
            let mut config = DiffusionConfig::default();
            change(&mut config);
            config.validate()
        };
        assert_eq!(with(|_| {}), Ok(()));
        assert_eq!(
            with(|c| c.timesteps = 0),
            Err(DiffusionConfigError::Timesteps(0))
        );
        // Refused before a table of that length is computed (this would not return otherwise).
        assert_eq!(
            with(|c| c.timesteps = usize::MAX),
            Err(DiffusionConfigError::Timesteps(usize::MAX))
        );
        assert_eq!(with(|c| c.timesteps = MAX_TIMESTEPS), Ok(()));
        // start = end: ᾱ is 0 / 0.
        let flat = BetaSchedule::Sigmoid {
            start: 1.0,
            end: 1.0,
            tau: 1.0,
        };
        assert_eq!(
            with(|c| {
                c.beta_schedule = BetaSchedule::Sigmoid {
                    start: 1.0,
                    end: 1.0,
                    tau: 1.0,
                }
            }),
            Err(DiffusionConfigError::Schedule {
                schedule: flat,
                timesteps: 1000
            })
        );
        // An offset so large that every β is 0: nothing is noised.
        let still = BetaSchedule::Cosine { s: 1e300 };
        assert_eq!(
            with(|c| c.beta_schedule = BetaSchedule::Cosine { s: 1e300 }),
            Err(DiffusionConfigError::Schedule {
                schedule: still,
                timesteps: 1000
            })
        );
        assert_eq!(
            with(|c| c.cond_drop_prob = 1.0),
            Err(DiffusionConfigError::CondDropProb(1.0))
        );
        let err = with(|c| c.vb_loss_weight = -1.0).expect_err("negative");
        assert_eq!(
            err.to_string(),
            "diffusion.vb_loss_weight must be a finite number ≥ 0, got -1"
        );
        assert!(matches!(
            with(|c| c.min_snr_gamma = Some(f64::NAN)),
            Err(DiffusionConfigError::MinSnrGamma(g)) if g.is_nan()
        ));
    }
}
