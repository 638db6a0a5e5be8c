//! The reverse process, one step per call: ancestral DDPM sampling (Ho et al. 2020,
//! Algorithm 2), DDIM (Song et al. 2021) and classifier-free guidance (Ho & Salimans 2022),
//! optionally steered (SDEdit, RePaint, interpolation: [`crate::steer`]).
//!
//! The CLI and the browser drive the same [`Sampler`]: they call [`Sampler::step`] until it
//! returns `None` and decide after each step what to show. A step only enqueues tensor work and
//! uploads host noise; it never reads a tensor back, which the browser cannot do synchronously.

use std::ops::Range;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::diffusion::{Denoiser, GaussianDiffusion, Timesteps};
use crate::noise::NoiseSource;
use crate::steer::{self, Move, Steer};

/// The variance σ²_t of each ancestral step (§3.2: both give similar results).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DdpmVariance {
    /// σ²_t = β̃_t, the posterior variance (optimal for a point-mass x₀).
    Posterior,
    /// σ²_t = β_t (optimal for x₀ ~ N(0, I)).
    Beta,
}

/// Which reverse process to run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SamplerKind {
    /// Ancestral sampling through all T steps.
    Ddpm {
        /// σ²_t of each step.
        variance: DdpmVariance,
    },
    /// DDIM over `steps` evenly spaced steps; η = 0 is deterministic, η = 1 is DDPM-like.
    Ddim {
        /// The number of network evaluations, 1 ≤ steps ≤ T.
        steps: usize,
        /// η, the scale of the injected noise.
        eta: f64,
    },
}

/// How to sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplerConfig {
    /// The reverse process.
    pub kind: SamplerKind,
    /// Classifier-free guidance scale w: ε̃ = ε(∅) + w (ε(c) − ε(∅)). 1 means no guidance.
    pub guidance_scale: f64,
    /// Clip each x̂₀ to [−1, 1], as lucidrains' code and the paper's code do.
    pub clip_denoised: bool,
}

impl SamplerConfig {
    /// What [`Sampler::new`] refuses of these settings for a process of `timesteps` steps,
    /// checked without a model or a device (a command line checks its flags with it first).
    pub fn check(&self, timesteps: usize) -> Result<(), SamplerError> {
        if !self.guidance_scale.is_finite() {
            return Err(SamplerError::GuidanceScale(self.guidance_scale));
        }
        if let SamplerKind::Ddim { steps, eta } = self.kind {
            if steps == 0 || steps > timesteps {
                return Err(SamplerError::Steps { steps, timesteps });
            }
            if !(eta.is_finite() && eta >= 0.0) {
                return Err(SamplerError::Eta(eta));
            }
        }
        Ok(())
    }
}

/// SDEdit's strength, refused outside [0, 1].
pub fn check_strength(strength: f64) -> Result<(), SamplerError> {
    match (0.0..=1.0).contains(&strength) {
        true => Ok(()),
        false => Err(SamplerError::Strength(strength)),
    }
}

/// RePaint's jump and repeats, refused outside 1..=[`MAX_RESAMPLE_JUMP`] and
/// 1..=[`MAX_RESAMPLE_REPEATS`].
pub fn check_resample(jump: usize, repeats: usize) -> Result<(), SamplerError> {
    match (1..=MAX_RESAMPLE_JUMP).contains(&jump) && (1..=MAX_RESAMPLE_REPEATS).contains(&repeats) {
        true => Ok(()),
        false => Err(SamplerError::Resample { jump, repeats }),
    }
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            kind: SamplerKind::Ddpm {
                variance: DdpmVariance::Posterior,
            },
            guidance_scale: 1.0,
            clip_denoised: true,
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRequest {
    /// Fixes x_T and every injected noise.
    pub seed: u64,
    /// `[batch, channels, height, width]`
    pub shape: [usize; 4],
    /// One label per image for a class-conditional model; `None` samples unconditionally.
    pub classes: Option<Vec<usize>>,
}

/// Which class each image of a run gets. The CLI's `--class`/`--unconditional` and the
/// browser's `class` option both resolve through [`ClassChoice::labels`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClassChoice {
    /// Image i gets class i mod C: a grid shows every class in turn.
    #[default]
    Mixed,
    /// Every image gets this class.
    Fixed(usize),
    /// The null class: the unconditional model that classifier-free guidance trains alongside.
    Null,
}

impl ClassChoice {
    /// One label per image for `n` images of a model with `num_classes` classes (`None`: not
    /// class-conditional), or `None` to sample without labels (the sampler then uses the null
    /// class of a class-conditional model).
    pub fn labels(
        self,
        num_classes: Option<usize>,
        n: usize,
    ) -> Result<Option<Vec<usize>>, SamplerError> {
        match (self, num_classes) {
            (Self::Fixed(_), None) => Err(SamplerError::NotConditional),
            (Self::Fixed(label), Some(c)) if label >= c => Err(SamplerError::ClassOutOfRange {
                label,
                num_classes: c,
            }),
            (Self::Fixed(label), Some(_)) => Ok(Some(vec![label; n])),
            (Self::Mixed, Some(c)) => Ok(Some((0..n).map(|i| i % c).collect())),
            (Self::Mixed | Self::Null, _) => Ok(None),
        }
    }
}

/// RePaint's longest jump back, in steps, and most repeats: each repeat runs its stretch of
/// steps again, so an unbounded count from a flag or an attribute would never finish (the
/// widget takes the same ranges).
pub const MAX_RESAMPLE_JUMP: usize = 1000;
/// See [`MAX_RESAMPLE_JUMP`].
pub const MAX_RESAMPLE_REPEATS: usize = 100;

/// Why a sampler could not be started.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplerError {
    /// DDIM step count outside 1..=T.
    #[error("DDIM steps must be between 1 and {timesteps}, got {steps}")]
    Steps {
        /// The requested count.
        steps: usize,
        /// T.
        timesteps: usize,
    },
    /// η must be a finite number ≥ 0.
    #[error("DDIM eta must be a finite number >= 0, got {0}")]
    Eta(f64),
    /// The guidance scale must be finite.
    #[error("guidance scale must be a finite number, got {0}")]
    GuidanceScale(f64),
    /// A zero dimension in the requested shape.
    #[error("sample shape {0:?} has a zero dimension")]
    EmptyShape([usize; 4]),
    /// The shape does not fit the network.
    #[error("sample shape does not fit the model: {0}")]
    Shape(String),
    /// Labels were given to a model that has no classes.
    #[error("this model is not class-conditional, but class labels were given")]
    NotConditional,
    /// A label outside the model's classes.
    #[error(
        "class {label} is out of range: this model has {num_classes} classes, 0 to {}",
        .num_classes.saturating_sub(1)
    )]
    ClassOutOfRange {
        /// The label.
        label: usize,
        /// The model's class count.
        num_classes: usize,
    },
    /// Not one label per image.
    #[error("{labels} class labels given for a batch of {batch}")]
    ClassCount {
        /// Labels given.
        labels: usize,
        /// Batch size.
        batch: usize,
    },
    /// A part that is empty or ends past the batch.
    #[error("part {start}..{end} is not a non-empty range of the batch's {batch} images")]
    Part {
        /// First image of the part.
        start: usize,
        /// One past its last image.
        end: usize,
        /// Batch size.
        batch: usize,
    },
    /// SDEdit's strength outside [0, 1].
    #[error("strength must be between 0 and 1, got {0}")]
    Strength(f64),
    /// RePaint's jump length and repeats out of range.
    #[error(
        "resampling jump must be from 1 to {MAX_RESAMPLE_JUMP} and repeats from 1 to {MAX_RESAMPLE_REPEATS}, got {jump} and {repeats}"
    )]
    Resample {
        /// Steps between jumps back.
        jump: usize,
        /// Runs of each stretch.
        repeats: usize,
    },
    /// A steering image or mask of another shape than the run's.
    #[error("the {what} has shape {got:?}, but the run makes images of {expected:?}")]
    SteerShape {
        /// `image` or `mask`.
        what: &'static str,
        /// Its shape.
        got: [usize; 4],
        /// The run's.
        expected: [usize; 4],
    },
    /// Interpolation with injected noise.
    #[error("interpolation needs DDIM with eta = 0 (a path without injected noise)")]
    Interpolation,
}

/// What one step produced. Reading the tensors is the caller's business (asynchronously in the
/// browser).
#[derive(Debug, Clone)]
pub struct Step {
    /// 0-based index of this step among [`Sampler::total_steps`].
    pub index: usize,
    /// The diffusion step t the network was evaluated at.
    pub t: usize,
    /// The new sample x_{t−1} (the final image after the last step).
    /// `[batch, channels, height, width]`
    pub x: Tensor<4>,
    /// The network's estimate of x₀ at this step. `[batch, channels, height, width]`
    pub x_start: Tensor<4>,
}

/// A reverse-process run in progress.
#[derive(Debug, Clone)]
pub struct Sampler {
    diffusion: GaussianDiffusion,
    config: SamplerConfig,
    /// The run's moves: network evaluations from t to the next t (`None`: to x̂₀), and
    /// RePaint's jumps back.
    moves: Vec<Move>,
    index: usize,
    /// Network evaluations taken.
    evaluations: usize,
    /// What steers the run, its tensors narrowed to this sampler's images.
    steer: Steer,
    x: Tensor<4>,
    x_start: Option<Tensor<4>>,
    /// Per-image labels (the null class when unconditional), `None` for unconditional models.
    labels: Option<Vec<usize>>,
    null_class: Option<usize>,
    rng: NoiseSource,
    /// The request's whole batch shape and the images of it this sampler runs (all of them but
    /// in a pool of workers, see [`Sampler::new_part`]).
    batch_shape: [usize; 4],
    part: Range<usize>,
}

impl Sampler {
    /// Draws x_T ~ N(0, I) from the request's seed and prepares the step schedule.
    pub fn new<M: Denoiser>(
        diffusion: &GaussianDiffusion,
        config: SamplerConfig,
        request: SampleRequest,
        model: &M,
        device: &Device,
    ) -> Result<Self, SamplerError> {
        let batch = request.shape[0];
        Self::new_part(diffusion, config, request, 0..batch, model, device)
    }

    /// Runs only images `part` of the request's batch, with exactly the noise (x_T and every
    /// step's) and labels those images get in the whole run: samplers over disjoint parts
    /// together give the images of one [`Sampler::new`], so a batch can be split across
    /// workers that share nothing (the browser's pool of Web Workers).
    pub fn new_part<M: Denoiser>(
        diffusion: &GaussianDiffusion,
        config: SamplerConfig,
        request: SampleRequest,
        part: Range<usize>,
        model: &M,
        device: &Device,
    ) -> Result<Self, SamplerError> {
        Self::new_steered(diffusion, config, request, Steer::None, part, model, device)
    }

    /// Like [`Sampler::new_part`], steered by `steer` (inpainting, SDEdit or interpolation;
    /// its image and mask hold the whole batch, of the request's shape).
    pub fn new_steered<M: Denoiser>(
        diffusion: &GaussianDiffusion,
        config: SamplerConfig,
        request: SampleRequest,
        steer: Steer,
        part: Range<usize>,
        model: &M,
        device: &Device,
    ) -> Result<Self, SamplerError> {
        let timesteps = diffusion.timesteps();
        config.check(timesteps)?;
        if request.shape.contains(&0) {
            return Err(SamplerError::EmptyShape(request.shape));
        }
        model
            .check_shape(request.shape)
            .map_err(SamplerError::Shape)?;
        let pairs = match config.kind {
            SamplerKind::Ddpm { .. } => (0..timesteps)
                .rev()
                .map(|t| (t, t.checked_sub(1)))
                .collect(),
            SamplerKind::Ddim { steps, .. } => ddim_pairs(timesteps, steps),
        };
        let batch = request.shape[0];
        let null_class = model.num_classes();
        let labels = match (request.classes, null_class) {
            (Some(_), None) => return Err(SamplerError::NotConditional),
            (Some(labels), Some(num_classes)) => {
                if labels.len() != batch {
                    return Err(SamplerError::ClassCount {
                        labels: labels.len(),
                        batch,
                    });
                }
                if let Some(&label) = labels.iter().find(|&&l| l >= num_classes) {
                    return Err(SamplerError::ClassOutOfRange { label, num_classes });
                }
                Some(labels)
            }
            (None, Some(null)) => Some(vec![null; batch]),
            (None, None) => None,
        };
        if part.is_empty() || part.end > batch {
            return Err(SamplerError::Part {
                start: part.start,
                end: part.end,
                batch,
            });
        }
        let labels = labels.map(|labels| labels[part.clone()].to_vec());
        let steer = checked_steer(steer, &config, request.shape, part.clone())?;
        let moves = steer::moves(&pairs, &steer);
        let mut rng = NoiseSource::new(request.seed);
        // Every start draws the plain run's x_T, so that later noise is the plain run's too.
        let noise = rng.normal_part_tensor(request.shape, part.clone(), device);
        let x = match &steer {
            Steer::Edit { image, strength } if *strength < 1.0 => {
                match steer::edit_start(&pairs, *strength) {
                    // The forward process q(x_t₀ | x₀), as training noises its images.
                    Some(t0) => diffusion.q_sample(image.clone(), &Timesteps::All(t0), noise),
                    None => image.clone(),
                }
            }
            Steer::Interpolate { other } => {
                interpolated_start(request.seed, *other, request.shape, part.clone(), device)
            }
            _ => noise,
        };
        Ok(Self {
            diffusion: diffusion.clone(),
            config,
            moves,
            index: 0,
            evaluations: 0,
            steer,
            x,
            x_start: None,
            labels,
            null_class,
            rng,
            batch_shape: request.shape,
            part,
        })
    }

    /// Fresh noise for this sampler's images: their share of a whole batch's draw.
    fn noise(&mut self) -> Tensor<4> {
        let device = self.x.device();
        self.rng
            .normal_part_tensor(self.batch_shape, self.part.clone(), &device)
    }

    /// The number of network evaluations the whole run takes (T for DDPM; fewer for SDEdit,
    /// more with RePaint's resampling).
    pub fn total_steps(&self) -> usize {
        self.moves
            .iter()
            .filter(|m| matches!(m, Move::Step { .. }))
            .count()
    }

    /// Steps (network evaluations) taken so far.
    pub fn steps_done(&self) -> usize {
        self.evaluations
    }

    /// Whether the last step has been taken.
    pub fn is_done(&self) -> bool {
        self.index == self.moves.len()
    }

    /// The current sample: x_T before the first step, the final image after the last.
    pub fn sample(&self) -> &Tensor<4> {
        &self.x
    }

    /// Takes one reverse step with `model`; `None` once the run is complete.
    pub fn step<M: Denoiser>(&mut self, model: &M) -> Option<Step> {
        let (t, t_next) = loop {
            match *self.moves.get(self.index)? {
                Move::Step { t, next } => break (t, next),
                Move::Renoise { from, to } => {
                    // q(x_to | x_from): x_to = √(ᾱ_to/ᾱ_from) x_from + √(1 − ᾱ_to/ᾱ_from) ε.
                    let abar = &self.diffusion.schedule().alphas_cumprod;
                    let ratio = f64::from(abar[to]) / f64::from(abar[from]);
                    let z = self.noise();
                    self.x = self.x.clone().mul_scalar(ratio.sqrt())
                        + z.mul_scalar((1.0 - ratio).sqrt());
                    self.index += 1;
                }
            }
        };
        let steps = Timesteps::All(t);
        let output = self.guided_output(model, t);
        let (output, learned) = GaussianDiffusion::split_output(output, self.x.dims()[1]);
        let prediction =
            self.diffusion
                .predictions(output, self.x.clone(), &steps, self.config.clip_denoised);
        let x_start = prediction.x_start;
        let x = match (self.config.kind, t_next) {
            (SamplerKind::Ddpm { variance }, _) => {
                let (mean, posterior_log_var) =
                    self.diffusion
                        .q_posterior(x_start.clone(), self.x.clone(), &steps);
                if t == 0 {
                    mean // no noise at the last step
                } else {
                    let log_var = match (learned, variance) {
                        (Some(v), _) => self.diffusion.learned_log_variance(v, &steps),
                        (None, DdpmVariance::Posterior) => posterior_log_var,
                        (None, DdpmVariance::Beta) => {
                            posterior_log_var.full_like(self.diffusion.schedule().log_betas[t])
                        }
                    };
                    let z = self.noise();
                    mean + log_var.mul_scalar(0.5).exp() * z
                }
            }
            (SamplerKind::Ddim { eta, .. }, Some(next)) => {
                let abar = &self.diffusion.schedule().alphas_cumprod;
                let (a, a_next) = (abar[t] as f64, abar[next] as f64);
                let sigma = eta * ((1.0 - a / a_next) * (1.0 - a_next) / (1.0 - a)).sqrt();
                let c = (1.0 - a_next - sigma * sigma).max(0.0).sqrt();
                let mut x =
                    x_start.clone().mul_scalar(a_next.sqrt()) + prediction.noise.mul_scalar(c);
                if sigma > 0.0 {
                    x = x + self.noise().mul_scalar(sigma);
                }
                x
            }
            (SamplerKind::Ddim { .. }, None) => x_start.clone(),
        };
        let x = self.keep_known(x, t_next);
        self.x = x.clone();
        self.x_start = Some(x_start.clone());
        let index = self.evaluations;
        self.index += 1;
        self.evaluations += 1;
        Some(Step {
            index,
            t,
            x,
            x_start,
        })
    }

    /// RePaint: the kept region of x_next replaced by a sample of q(x_next | x₀) of the known
    /// image (by the image itself at the end).
    fn keep_known(&mut self, x: Tensor<4>, next: Option<usize>) -> Tensor<4> {
        let Steer::Inpaint { image, mask, .. } = &self.steer else {
            return x;
        };
        let (image, mask) = (image.clone(), mask.clone());
        let known = match next {
            Some(n) => {
                let noise = self.noise();
                self.diffusion.q_sample(image, &Timesteps::All(n), noise)
            }
            None => image,
        };
        known * mask.clone() + x * (mask.ones_like() - mask)
    }

    /// The network output at step `t`, with classifier-free guidance when it is asked for.
    fn guided_output<M: Denoiser>(&self, model: &M, t: usize) -> Tensor<4> {
        let steps = Timesteps::All(t);
        let self_cond = if model.self_condition() {
            self.x_start.clone()
        } else {
            None
        };
        let scale = self.config.guidance_scale;
        match (&self.labels, self.null_class) {
            (Some(labels), Some(null)) if scale != 1.0 && labels.iter().any(|&l| l != null) => {
                // One batch of 2B: the conditional half, then the unconditional half.
                let batch = labels.len();
                let doubled: Vec<usize> = labels
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(null, batch))
                    .collect();
                let x = Tensor::cat(vec![self.x.clone(), self.x.clone()], 0);
                let self_cond = self_cond.map(|s| Tensor::cat(vec![s.clone(), s], 0));
                let out = model.denoise(x, &steps, self_cond, Some(&doubled));
                let cond = out.clone().narrow(0, 0, batch);
                let uncond = out.narrow(0, batch, batch);
                // Only the prediction is guided; a learned variance is the conditional
                // model's (GLIDE, guided-diffusion), since a guided v would leave [−1, 1].
                let channels = self.x.dims()[1];
                let (cond, v) = GaussianDiffusion::split_output(cond, channels);
                let (uncond, _) = GaussianDiffusion::split_output(uncond, channels);
                let guided = uncond.clone() + (cond - uncond).mul_scalar(scale);
                match v {
                    Some(v) => Tensor::cat(vec![guided, v], 1),
                    None => guided,
                }
            }
            (labels, _) => model.denoise(self.x.clone(), &steps, self_cond, labels.as_deref()),
        }
    }
}

/// `steer` checked against the run and narrowed to the images `part` of the batch.
fn checked_steer(
    steer: Steer,
    config: &SamplerConfig,
    shape: [usize; 4],
    part: Range<usize>,
) -> Result<Steer, SamplerError> {
    let [batch, channels, height, width] = shape;
    let fits = |what: &'static str, t: &Tensor<4>, c: &[usize]| {
        let [b, tc, h, w] = t.dims();
        if b == batch && c.contains(&tc) && (h, w) == (height, width) {
            Ok(t.clone().narrow(0, part.start, part.len()))
        } else {
            Err(SamplerError::SteerShape {
                what,
                got: [b, tc, h, w],
                expected: shape,
            })
        }
    };
    Ok(match steer {
        Steer::None => Steer::None,
        Steer::Edit { image, strength } => {
            check_strength(strength)?;
            let image = fits("image", &image, &[channels])?;
            Steer::Edit { image, strength }
        }
        Steer::Inpaint {
            image,
            mask,
            jump,
            repeats,
        } => {
            check_resample(jump, repeats)?;
            let image = fits("image", &image, &[channels])?;
            let mask = fits("mask", &mask, &[1, channels])?;
            let [b, _, h, w] = mask.dims();
            let mask = mask.expand([b, channels, h, w]);
            Steer::Inpaint {
                image,
                mask,
                jump,
                repeats,
            }
        }
        Steer::Interpolate { other } => match config.kind {
            SamplerKind::Ddim { eta: 0.0, .. } => Steer::Interpolate { other },
            _ => return Err(SamplerError::Interpolation),
        },
    })
}

/// Interpolation's x_T for images `part` of `shape`: the slerp, at i/(n−1), of the x_T of a
/// one-image run of `seed` and of `other`.
fn interpolated_start(
    seed: u64,
    other: u64,
    shape: [usize; 4],
    part: Range<usize>,
    device: &Device,
) -> Tensor<4> {
    let [batch, channels, height, width] = shape;
    let size = channels * height * width;
    let a = NoiseSource::new(seed).normals(size);
    let b = NoiseSource::new(other).normals(size);
    let values: Vec<f32> = part
        .clone()
        .flat_map(|i| {
            let w = if batch > 1 {
                i as f64 / (batch - 1) as f64
            } else {
                0.0
            };
            steer::slerp(&a, &b, w)
        })
        .collect();
    Tensor::from_data(
        TensorData::new(values, [part.len(), channels, height, width]),
        device,
    )
}

/// DDIM's (t, next t) pairs, spaced as lucidrains' code does: `linspace(−1, T−1, steps+1)` truncated
/// toward zero, reversed; the last pair ends at −1 (`None`), where x̂₀ is returned.
fn ddim_pairs(timesteps: usize, steps: usize) -> Vec<(usize, Option<usize>)> {
    let times: Vec<i64> = linspace_f32(-1.0, timesteps as f32 - 1.0, steps + 1)
        .into_iter()
        .rev()
        .map(|t| t as i64)
        .collect();
    times
        .windows(2)
        .map(|w| (w[0] as usize, usize::try_from(w[1]).ok()))
        .collect()
}

/// `torch.linspace(start, end, n)` in float32 as PyTorch's CPU kernel computes it: from the
/// start for the first half, back from the end for the second. Exact T·i/S − 1 puts some of
/// DDIM's times one step off lucidrains' (T = 1000: S = 26, 52, 60, …).
fn linspace_f32(start: f32, end: f32, n: usize) -> Vec<f32> {
    let step = (end - start) / (n.max(2) - 1) as f32;
    (0..n)
        .map(|i| {
            if i < n / 2 {
                start + step * i as f32
            } else {
                end - step * (n - i - 1) as f32
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_choices_give_one_label_per_image_or_refuse_by_name() {
        assert_eq!(
            ClassChoice::Mixed.labels(Some(3), 7).expect("mixed"),
            Some(vec![0, 1, 2, 0, 1, 2, 0])
        );
        assert_eq!(
            ClassChoice::Fixed(2).labels(Some(3), 4).expect("labels"),
            Some(vec![2; 4])
        );
        assert_eq!(ClassChoice::Null.labels(Some(3), 4).expect("labels"), None);
        assert_eq!(ClassChoice::Mixed.labels(None, 4).expect("none"), None);
        assert_eq!(ClassChoice::Null.labels(None, 4).expect("none"), None);
        let out_of_range = ClassChoice::Fixed(3)
            .labels(Some(3), 4)
            .expect_err("refused");
        assert_eq!(
            out_of_range,
            SamplerError::ClassOutOfRange {
                label: 3,
                num_classes: 3
            }
        );
        assert_eq!(
            out_of_range.to_string(),
            "class 3 is out of range: this model has 3 classes, 0 to 2"
        );
        assert_eq!(
            ClassChoice::Fixed(0).labels(None, 4).expect_err("refused"),
            SamplerError::NotConditional
        );
    }

    /// lucidrains' DDIM times, made by PyTorch (tests/fixtures/lucidrains/make_sampling.py).
    #[test]
    fn ddim_steps_are_lucidrains_float32_linspace() {
        let bytes = crate::test_util::sampling_fixture();
        let fixture = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        let ints = |name: &str| -> Vec<i64> {
            let view = fixture.tensor(name).expect(name);
            view.data()
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")).into())
                .collect()
        };
        for timesteps in [20, 100, 1000] {
            let mut theirs = ints(&format!("ddim.T{timesteps}")).into_iter();
            for steps in ints(&format!("ddim.T{timesteps}.steps")) {
                let steps = steps as usize;
                let expected: Vec<i64> = theirs.by_ref().take(steps + 1).collect();
                let pairs = ddim_pairs(timesteps, steps);
                let mut ours: Vec<i64> = pairs.iter().map(|&(t, _)| t as i64).collect();
                ours.push(pairs.last().and_then(|p| p.1).map_or(-1, |t| t as i64));
                assert_eq!(ours, expected, "T={timesteps} S={steps}");
            }
            assert_eq!(theirs.next(), None);
        }
    }
}
