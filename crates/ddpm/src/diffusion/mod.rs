//! The Gaussian diffusion: the forward process q(x_t | x₀), the conversions between the
//! network's possible outputs (ε, x₀ or v), the posterior q(x_{t−1} | x_t, x₀) and the training
//! loss (Ho et al. 2020, Algorithm 1, with lucidrains' `p_losses` options).

use burn::tensor::{Device, Tensor, TensorData};

use crate::noise::NoiseSource;
use crate::schedule::NoiseSchedule;
use crate::vlb;

mod config;
mod fixed_variance;
mod likelihood;

pub use config::{DiffusionConfig, DiffusionConfigError, MAX_TIMESTEPS, Objective};
pub use fixed_variance::FixedVariance;

/// The diffusion step of each image in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timesteps {
    /// Every image is at the same step (sampling).
    All(usize),
    /// Image `i` is at step `ts[i]` (training).
    Each(Vec<usize>),
}

impl Timesteps {
    /// The steps as a float tensor of length `batch`, the network's time input.
    pub fn to_tensor(&self, batch: usize, device: &Device) -> Tensor<1> {
        let values: Vec<f32> = match self {
            Self::All(t) => vec![*t as f32; batch],
            Self::Each(ts) => ts.iter().map(|&t| t as f32).collect(),
        };
        Tensor::from_data(TensorData::new(values, [batch]), device)
    }

    /// `x` scaled, image by image, by `table[t]`.
    fn scale(&self, table: &[f32], x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::All(t) => x.mul_scalar(table[*t]),
            Self::Each(ts) => {
                let coef: Vec<f32> = ts.iter().map(|&t| table[t]).collect();
                let coef = Tensor::<1>::from_data(TensorData::new(coef, [ts.len()]), &x.device());
                x * coef.reshape([ts.len(), 1, 1, 1])
            }
        }
    }
}

/// The network's output turned into both an ε and an x₀ prediction.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// Predicted noise ε̂. `[batch, channels, height, width]`
    pub noise: Tensor<4>,
    /// Predicted clean image x̂₀. `[batch, channels, height, width]`
    pub x_start: Tensor<4>,
}

/// Anything that predicts, from a noisy batch, the quantity its [`Objective`] names.
///
/// The U-Net implements it; the tests drive the samplers with an exact analytic one.
pub trait Denoiser {
    /// The raw prediction for `x` at steps `t`.
    ///
    /// `classes` holds one label per image; a label equal to [`Denoiser::num_classes`] is the
    /// null (unconditional) class.
    ///
    /// # Shapes
    /// - `x`, `x_self_cond` and the output: `[batch, channels, height, width]`
    fn denoise(
        &self,
        x: Tensor<4>,
        t: &Timesteps,
        x_self_cond: Option<Tensor<4>>,
        classes: Option<&[usize]>,
    ) -> Tensor<4>;

    /// Checks that a batch of `[batch, channels, height, width]` fits the network; the
    /// message says what does not.
    fn check_shape(&self, shape: [usize; 4]) -> Result<(), String> {
        let _ = shape;
        Ok(())
    }

    /// Whether the network takes its previous x₀ estimate as an extra input.
    fn self_condition(&self) -> bool {
        false
    }

    /// The number of classes it is conditioned on, if any.
    fn num_classes(&self) -> Option<usize> {
        None
    }
}

/// The loss of one training batch, with the draws that produced it.
#[derive(Debug, Clone)]
pub struct LossOutput {
    /// The weighted mean squared error over the batch. `[1]`
    pub loss: Tensor<1>,
    /// The step drawn for each image.
    pub timesteps: Vec<usize>,
}

/// The forward process and the training objective for one [`DiffusionConfig`].
#[derive(Debug, Clone)]
pub struct GaussianDiffusion {
    config: DiffusionConfig,
    schedule: NoiseSchedule,
    /// Per-step loss weight that makes every objective L_simple in ε-space (or min-SNR-γ).
    loss_weight: Vec<f32>,
    /// 1 / √(1/ᾱ_t − 1), the factor of ε recovered from x₀.
    recip_sqrt_recipm1_alphas_cumprod: Vec<f32>,
}

impl GaussianDiffusion {
    /// Builds the schedule tables for `config`.
    pub fn new(config: DiffusionConfig) -> Self {
        let schedule = NoiseSchedule::new(config.beta_schedule, config.timesteps);
        let loss_weight = schedule
            .snr
            .iter()
            .map(|&snr| {
                let snr = snr as f64;
                let clipped = config.min_snr_gamma.map_or(snr, |gamma| snr.min(gamma));
                let weight = match config.objective {
                    Objective::PredNoise => clipped / snr,
                    Objective::PredX0 => clipped,
                    Objective::PredV => clipped / (snr + 1.0),
                };
                weight as f32
            })
            .collect();
        let recip_sqrt_recipm1_alphas_cumprod = schedule
            .sqrt_recipm1_alphas_cumprod
            .iter()
            .map(|c| 1.0 / c)
            .collect();
        Self {
            config,
            schedule,
            loss_weight,
            recip_sqrt_recipm1_alphas_cumprod,
        }
    }

    /// The configuration this diffusion was built from.
    pub fn config(&self) -> &DiffusionConfig {
        &self.config
    }

    /// The schedule tables.
    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    /// The loss weight of each step t: 1 for ε, SNR for x₀, SNR/(SNR + 1) for v, with SNR
    /// clipped at γ under min-SNR-γ (lucidrains' `loss_weight`).
    pub fn loss_weight(&self) -> &[f32] {
        &self.loss_weight
    }

    /// The number of steps T.
    pub fn timesteps(&self) -> usize {
        self.config.timesteps
    }

    /// Samples x_t ~ q(x_t | x₀) in closed form: √ᾱ_t x₀ + √(1−ᾱ_t) ε (eq. 4).
    pub fn q_sample(&self, x_start: Tensor<4>, t: &Timesteps, noise: Tensor<4>) -> Tensor<4> {
        let s = &self.schedule;
        t.scale(&s.sqrt_alphas_cumprod, x_start) + t.scale(&s.sqrt_one_minus_alphas_cumprod, noise)
    }

    /// x₀ = √(1/ᾱ_t) x_t − √(1/ᾱ_t − 1) ε (eq. 4 solved for x₀).
    pub fn predict_start_from_noise(
        &self,
        x_t: Tensor<4>,
        t: &Timesteps,
        noise: Tensor<4>,
    ) -> Tensor<4> {
        let s = &self.schedule;
        t.scale(&s.sqrt_recip_alphas_cumprod, x_t) - t.scale(&s.sqrt_recipm1_alphas_cumprod, noise)
    }

    /// ε = (√(1/ᾱ_t) x_t − x₀) / √(1/ᾱ_t − 1).
    pub fn predict_noise_from_start(
        &self,
        x_t: Tensor<4>,
        t: &Timesteps,
        x_start: Tensor<4>,
    ) -> Tensor<4> {
        let scaled = t.scale(&self.schedule.sqrt_recip_alphas_cumprod, x_t) - x_start;
        t.scale(&self.recip_sqrt_recipm1_alphas_cumprod, scaled)
    }

    /// v = √ᾱ_t ε − √(1−ᾱ_t) x₀.
    pub fn predict_v(&self, x_start: Tensor<4>, t: &Timesteps, noise: Tensor<4>) -> Tensor<4> {
        let s = &self.schedule;
        t.scale(&s.sqrt_alphas_cumprod, noise) - t.scale(&s.sqrt_one_minus_alphas_cumprod, x_start)
    }

    /// x₀ = √ᾱ_t x_t − √(1−ᾱ_t) v.
    pub fn predict_start_from_v(&self, x_t: Tensor<4>, t: &Timesteps, v: Tensor<4>) -> Tensor<4> {
        let s = &self.schedule;
        t.scale(&s.sqrt_alphas_cumprod, x_t) - t.scale(&s.sqrt_one_minus_alphas_cumprod, v)
    }

    /// Turns the network's raw output into ε̂ and x̂₀. With `clip_x_start`, x̂₀ is clipped to
    /// [−1, 1] and ε̂ re-derived from the clipped x̂₀, as lucidrains' `model_predictions` does.
    pub fn predictions(
        &self,
        output: Tensor<4>,
        x_t: Tensor<4>,
        t: &Timesteps,
        clip_x_start: bool,
    ) -> Prediction {
        let clip = |x: Tensor<4>| if clip_x_start { x.clamp(-1.0, 1.0) } else { x };
        match self.config.objective {
            Objective::PredNoise => {
                let x_start = self.predict_start_from_noise(x_t.clone(), t, output.clone());
                if clip_x_start {
                    let x_start = clip(x_start);
                    let noise = self.predict_noise_from_start(x_t, t, x_start.clone());
                    Prediction { noise, x_start }
                } else {
                    Prediction {
                        noise: output,
                        x_start,
                    }
                }
            }
            Objective::PredX0 => {
                let x_start = clip(output);
                let noise = self.predict_noise_from_start(x_t, t, x_start.clone());
                Prediction { noise, x_start }
            }
            Objective::PredV => {
                let x_start = clip(self.predict_start_from_v(x_t.clone(), t, output));
                let noise = self.predict_noise_from_start(x_t, t, x_start.clone());
                Prediction { noise, x_start }
            }
        }
    }

    /// The mean and log-variance of the posterior q(x_{t−1} | x_t, x₀) (eqs. 6–7):
    /// μ̃ = coef1 · x₀ + coef2 · x_t and ln β̃_t (clipped at t = 0).
    pub fn q_posterior(
        &self,
        x_start: Tensor<4>,
        x_t: Tensor<4>,
        t: &Timesteps,
    ) -> (Tensor<4>, Tensor<4>) {
        let s = &self.schedule;
        let mean = t.scale(&s.posterior_mean_coef1, x_start)
            + t.scale(&s.posterior_mean_coef2, x_t.clone());
        let log_variance = t.scale(&s.posterior_log_variance_clipped, x_t.ones_like());
        (mean, log_variance)
    }

    /// Splits a learned-variance network's output (`2·channels`) into the objective's
    /// prediction and the variance interpolation v ∈ [−1, 1]; other outputs pass through.
    pub fn split_output(output: Tensor<4>, channels: usize) -> (Tensor<4>, Option<Tensor<4>>) {
        if output.dims()[1] == 2 * channels {
            let mean = output.clone().narrow(1, 0, channels);
            let v = output.narrow(1, channels, channels);
            (mean, Some(v))
        } else {
            (output, None)
        }
    }

    /// The learned log-variance ln σ²_t = f ln β_t + (1 − f) ln β̃_t with f = (v + 1)/2
    /// (Nichol & Dhariwal 2021, eq. 15).
    pub fn learned_log_variance(&self, v: Tensor<4>, t: &Timesteps) -> Tensor<4> {
        let s = &self.schedule;
        let frac = v.add_scalar(1.0).mul_scalar(0.5);
        t.scale(&s.log_betas, frac.clone())
            + t.scale(
                &s.posterior_log_variance_clipped,
                frac.neg().add_scalar(1.0),
            )
    }

    /// L_vlb of each image for a learned variance: KL(q(x_{t−1}|x_t,x₀) ‖ p(x_{t−1}|x_t)), or the
    /// decoder's negative log-likelihood at t = 0, in bits per dimension. The predicted mean
    /// is detached, so this term trains only the variance (as in the paper).
    fn vb_terms(
        &self,
        x_start: Tensor<4>,
        x_t: Tensor<4>,
        t: &[usize],
        output: Tensor<4>,
        v: Tensor<4>,
    ) -> Tensor<1> {
        let steps = Timesteps::Each(t.to_vec());
        let predicted = self
            .predictions(output.detach(), x_t.clone(), &steps, false)
            .x_start;
        let (model_mean, _) = self.q_posterior(predicted, x_t.clone(), &steps);
        let model_log_var = self.learned_log_variance(v, &steps);
        let (true_mean, true_log_var) = self.q_posterior(x_start.clone(), x_t, &steps);
        let kl = vlb::mean_bits(vlb::normal_kl(
            true_mean,
            true_log_var,
            model_mean.clone(),
            model_log_var.clone(),
        ));
        let nll = vlb::mean_bits(
            vlb::discretized_gaussian_log_likelihood(
                x_start,
                model_mean,
                model_log_var.mul_scalar(0.5),
            )
            .neg(),
        );
        let batch = t.len();
        let at_zero: Vec<bool> = t.iter().map(|&t| t == 0).collect();
        let at_zero = Tensor::<1, burn::tensor::Bool>::from_data(
            TensorData::new(at_zero, [batch]),
            &kl.device(),
        );
        kl.mask_where(at_zero, nll)
    }

    /// The training loss of Algorithm 1 with lucidrains' options: t ~ U{0..T−1}, ε ~ N(0, I)
    /// (plus offset noise), x_t = q_sample(x₀, t, ε), self-conditioning on half of the batches,
    /// label dropout to the null class, and the per-step objective weight.
    ///
    /// All randomness comes from `rng`, so a seed fixes the whole step.
    ///
    /// # Shapes
    /// - `x_start`: `[batch, channels, height, width]`, scaled to [−1, 1]
    /// - `classes`: one label per image, each below the model's class count
    pub fn loss<M: Denoiser>(
        &self,
        model: &M,
        x_start: Tensor<4>,
        classes: Option<&[usize]>,
        rng: &mut NoiseSource,
    ) -> LossOutput {
        let [batch, channels, height, width] = x_start.dims();
        let device = x_start.device();
        let timesteps: Vec<usize> = (0..batch).map(|_| rng.below(self.timesteps())).collect();
        let mut noise = rng.normal_tensor([batch, channels, height, width], &device);
        if self.config.offset_noise_strength > 0.0 {
            let offset = rng.normal_tensor([batch, channels], &device);
            noise = noise
                + offset
                    .mul_scalar(self.config.offset_noise_strength)
                    .reshape([batch, channels, 1, 1]);
        }
        let labels: Option<Vec<usize>> = match (classes, model.num_classes()) {
            (Some(labels), Some(null)) => Some(
                labels
                    .iter()
                    .map(|&c| {
                        if rng.bernoulli(self.config.cond_drop_prob) {
                            null
                        } else {
                            c
                        }
                    })
                    .collect(),
            ),
            _ => None,
        };
        let self_condition = model.self_condition() && rng.bernoulli(0.5);
        let loss = self.p_losses(
            model,
            x_start,
            &timesteps,
            noise,
            self_condition,
            labels.as_deref(),
        );
        LossOutput { loss, timesteps }
    }

    /// lucidrains' `p_losses` for given draws: x_t = q_sample(x₀, t, ε), the network's output
    /// (conditioned on its own x₀ estimate, computed without gradient, if `self_condition` and
    /// the network takes one),
    /// its mean squared error against the objective's target weighted per step, plus the
    /// weighted L_vlb for a learned variance. [`GaussianDiffusion::loss`] draws the inputs.
    ///
    /// # Shapes
    /// - `x_start`, `noise`: `[batch, channels, height, width]`, `x_start` scaled to [−1, 1]
    /// - `timesteps`, `labels`: one per image (a label may be the null class)
    /// - output: `[1]`
    pub fn p_losses<M: Denoiser>(
        &self,
        model: &M,
        x_start: Tensor<4>,
        timesteps: &[usize],
        noise: Tensor<4>,
        self_condition: bool,
        labels: Option<&[usize]>,
    ) -> Tensor<1> {
        let [batch, channels, _, _] = x_start.dims();
        let t = Timesteps::Each(timesteps.to_vec());
        let x = self.q_sample(x_start.clone(), &t, noise.clone());

        // Self-conditioning (Chen et al. 2022): the model's own x₀ estimate, computed without
        // gradient, as an extra input (`loss` asks for it on half of the batches).
        let x_self_cond = if self_condition && model.self_condition() {
            let output = model.denoise(x.clone(), &t, None, labels);
            let (output, _) = Self::split_output(output, channels);
            Some(
                self.predictions(output, x.clone(), &t, false)
                    .x_start
                    .detach(),
            )
        } else {
            None
        };

        let output = model.denoise(x.clone(), &t, x_self_cond, labels);
        let (output, variance) = Self::split_output(output, channels);
        let target = match self.config.objective {
            Objective::PredNoise => noise,
            Objective::PredX0 => x_start.clone(),
            Objective::PredV => self.predict_v(x_start.clone(), &t, noise),
        };
        let simple = (output.clone() - target).square().mean_dims(&[1, 2, 3]);
        let mut per_image = t.scale(&self.loss_weight, simple).reshape([batch]);
        if let Some(v) = variance {
            let vb = self.vb_terms(x_start, x, timesteps, output, v);
            per_image = per_image + vb.mul_scalar(self.config.vb_loss_weight);
        }
        per_image.mean()
    }
}

#[cfg(test)]
mod tests;
