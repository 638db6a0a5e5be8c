//! The samplers, checked against a denoiser known in closed form, independently of training.
//!
//! For data x₀ ~ N(μ, σ²I) the forward marginal is x_t ~ N(√ᾱ μ, (ᾱσ² + 1 − ᾱ) I), and the
//! minimum-MSE noise prediction is exactly
//!     ε*(x_t, t) = √(1−ᾱ_t) (x_t − √ᾱ_t μ) / (ᾱ_t σ² + 1 − ᾱ_t).
//! A correct sampler driven by ε* must turn N(0, I) back into N(μ, σ²I).

use burn::tensor::{Device, Tensor};
use ddpm::diffusion::{
    Denoiser, DiffusionConfig, FixedVariance, GaussianDiffusion, Objective, Timesteps,
};
use ddpm::sampler::{
    DdpmVariance, SampleRequest, Sampler, SamplerConfig, SamplerError, SamplerKind,
};
use ddpm::schedule::BetaSchedule;

/// Per-class Gaussian data; label `means.len()` (the null class) has mean `null_mean`.
struct Gaussian<'a> {
    diffusion: &'a GaussianDiffusion,
    means: Vec<f64>,
    null_mean: f64,
    std: f64,
    conditional: bool,
}

impl Denoiser for Gaussian<'_> {
    fn denoise(
        &self,
        x: Tensor<4>,
        t: &Timesteps,
        _: Option<Tensor<4>>,
        classes: Option<&[usize]>,
    ) -> Tensor<4> {
        let Timesteps::All(t) = *t else {
            panic!("samplers use one step per batch")
        };
        let abar = self.diffusion.schedule().alphas_cumprod[t] as f64;
        let k = (1.0 - abar).sqrt() / (abar * self.std * self.std + 1.0 - abar);
        let [b, c, h, w] = x.dims();
        let mean_of = |label: usize| self.means.get(label).copied().unwrap_or(self.null_mean);
        let mu: Vec<f32> = match classes {
            Some(labels) => labels.iter().map(|&l| mean_of(l) as f32).collect(),
            None => vec![self.means[0] as f32; b],
        };
        let mu = per_image(mu, [b, c, h, w], &x.device());
        (x - mu.mul_scalar(abar.sqrt())).mul_scalar(k)
    }

    fn num_classes(&self) -> Option<usize> {
        self.conditional.then_some(self.means.len())
    }
}

/// One value per image, spread over each image's `[c, h, w]`.
fn per_image(values: Vec<f32>, [b, c, h, w]: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::<1>::from_data(burn::tensor::TensorData::new(values, [b]), device)
        .reshape([b, 1, 1, 1])
        .expand([b, c, h, w])
}

/// Unconditional data N(MU, SIGMA²).
fn gaussian(diffusion: &GaussianDiffusion) -> Gaussian<'_> {
    Gaussian {
        diffusion,
        means: vec![MU],
        null_mean: MU,
        std: SIGMA,
        conditional: false,
    }
}

/// Two classes, N(−0.3, SIGMA²) and N(0.4, SIGMA²); the null class has mean 0.
fn two_classes(diffusion: &GaussianDiffusion) -> Gaussian<'_> {
    Gaussian {
        diffusion,
        means: vec![-0.3, 0.4],
        null_mean: 0.0,
        std: SIGMA,
        conditional: true,
    }
}

fn device() -> Device {
    Device::flex()
}

fn moments(values: &[f32]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

fn run(
    diffusion: &GaussianDiffusion,
    model: &Gaussian<'_>,
    kind: SamplerKind,
    request: SampleRequest,
    guidance: f64,
) -> Vec<f32> {
    let config = SamplerConfig {
        kind,
        guidance_scale: guidance,
        clip_denoised: false,
    };
    let mut sampler =
        Sampler::new(diffusion, config, request, model, &device()).expect("valid request");
    let total = sampler.total_steps();
    let mut steps = 0;
    while let Some(step) = sampler.step(model) {
        assert_eq!(step.index, steps);
        steps += 1;
    }
    assert_eq!(steps, total);
    assert!(sampler.step(model).is_none());
    sampler
        .sample()
        .clone()
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32")
}

const MU: f64 = 0.3;
const SIGMA: f64 = 0.5;

fn cosine(timesteps: usize) -> GaussianDiffusion {
    GaussianDiffusion::new(DiffusionConfig {
        timesteps,
        beta_schedule: BetaSchedule::COSINE,
        objective: Objective::PredNoise,
        ..DiffusionConfig::default()
    })
}

fn check(name: &str, values: &[f32], mu: f64, sigma: f64) {
    let (mean, std) = moments(values);
    eprintln!("{name}: mean {mean:.4} (want {mu}), std {std:.4} (want {sigma})");
    assert!(
        (mean - mu).abs() <= 0.02 * mu.abs().max(sigma),
        "{name}: mean {mean} vs {mu}"
    );
    assert!(
        (std / sigma - 1.0).abs() <= 0.02,
        "{name}: std {std} vs {sigma}"
    );
}

#[test]
fn ddpm_and_ddim_recover_the_data_distribution() {
    let diffusion = cosine(1000);
    let model = gaussian(&diffusion);
    // 32768 samples: the standard error of the std estimate is 0.4 %.
    let request = |seed| SampleRequest {
        seed,
        shape: [32, 1, 32, 32],
        classes: None,
    };
    let cases = [
        (
            "DDPM, σ² = β̃",
            SamplerKind::Ddpm {
                variance: DdpmVariance::Posterior,
            },
        ),
        (
            "DDPM, σ² = β",
            SamplerKind::Ddpm {
                variance: DdpmVariance::Beta,
            },
        ),
        (
            "DDIM η = 0",
            SamplerKind::Ddim {
                steps: 1000,
                eta: 0.0,
            },
        ),
        (
            "DDIM η = 1",
            SamplerKind::Ddim {
                steps: 1000,
                eta: 1.0,
            },
        ),
        (
            "DDIM η = 0, 250 steps",
            SamplerKind::Ddim {
                steps: 250,
                eta: 0.0,
            },
        ),
    ];
    for (i, (name, kind)) in cases.into_iter().enumerate() {
        let samples = run(&diffusion, &model, kind, request(i as u64), 1.0);
        check(name, &samples, MU, SIGMA);
    }
}

#[test]
fn classifier_free_guidance_extrapolates_between_classes() {
    // With Gaussian classes, ε̃ = ε(∅) + w (ε(c) − ε(∅)) is the exact denoiser of a Gaussian
    // with mean (1 − w) μ_∅ + w μ_c: guidance moves each class's mean by that rule.
    let diffusion = cosine(1000);
    let model = two_classes(&diffusion);
    let w = 1.5;
    let batch = 32;
    let classes: Vec<usize> = (0..batch).map(|i| i % 2).collect();
    let request = SampleRequest {
        seed: 11,
        shape: [batch, 1, 32, 32],
        classes: Some(classes.clone()),
    };
    let kind = SamplerKind::Ddim {
        steps: 1000,
        eta: 0.0,
    };
    let samples = run(&diffusion, &model, kind, request, w);
    let pixels = 32 * 32;
    for (label, mu_c) in [(0usize, -0.3f64), (1, 0.4)] {
        let values: Vec<f32> = samples
            .chunks(pixels)
            .zip(&classes)
            .filter(|(_, c)| **c == label)
            .flat_map(|(img, _)| img.iter().copied())
            .collect();
        check(
            &format!("class {label}, w = {w}"),
            &values,
            (1.0 - w) * 0.0 + w * mu_c,
            SIGMA,
        );
    }
}

#[test]
fn same_seed_gives_the_same_samples_and_another_seed_does_not() {
    let diffusion = cosine(50);
    let model = gaussian(&diffusion);
    let kind = SamplerKind::Ddpm {
        variance: DdpmVariance::Posterior,
    };
    let req = |seed| SampleRequest {
        seed,
        shape: [2, 3, 4, 4],
        classes: None,
    };
    let a = run(&diffusion, &model, kind, req(7), 1.0);
    let b = run(&diffusion, &model, kind, req(7), 1.0);
    let c = run(&diffusion, &model, kind, req(8), 1.0);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn ddim_step_counts_and_bad_requests() {
    let diffusion = cosine(100);
    let model = Gaussian {
        diffusion: &diffusion,
        means: vec![0.0, 0.5],
        null_mean: 0.0,
        std: SIGMA,
        conditional: true,
    };
    let new = |kind, classes: Option<Vec<usize>>, guidance| {
        let config = SamplerConfig {
            kind,
            guidance_scale: guidance,
            clip_denoised: true,
        };
        let request = SampleRequest {
            seed: 0,
            shape: [2, 1, 4, 4],
            classes,
        };
        Sampler::new(&diffusion, config, request, &model, &device())
    };
    let ddim = |steps| SamplerKind::Ddim { steps, eta: 0.0 };
    for steps in [1, 7, 50, 100] {
        assert_eq!(
            new(ddim(steps), None, 1.0).expect("valid").total_steps(),
            steps
        );
    }
    assert_eq!(
        new(
            SamplerKind::Ddpm {
                variance: DdpmVariance::Beta
            },
            None,
            1.0
        )
        .expect("valid")
        .total_steps(),
        100
    );
    assert_eq!(
        new(ddim(0), None, 1.0).err(),
        Some(SamplerError::Steps {
            steps: 0,
            timesteps: 100
        })
    );
    assert_eq!(
        new(ddim(101), None, 1.0).err(),
        Some(SamplerError::Steps {
            steps: 101,
            timesteps: 100
        })
    );
    assert_eq!(
        new(
            SamplerKind::Ddim {
                steps: 10,
                eta: -0.5
            },
            None,
            1.0
        )
        .err(),
        Some(SamplerError::Eta(-0.5))
    );
    assert_eq!(
        new(ddim(10), Some(vec![0, 2]), 1.0).err(),
        Some(SamplerError::ClassOutOfRange {
            label: 2,
            num_classes: 2
        })
    );
    assert_eq!(
        new(ddim(10), Some(vec![0]), 1.0).err(),
        Some(SamplerError::ClassCount {
            labels: 1,
            batch: 2
        })
    );
    assert_eq!(
        new(ddim(10), None, f64::NAN).err().map(|e| e.to_string()),
        Some("guidance scale must be a finite number, got NaN".into())
    );
}

#[test]
fn learned_variance_interpolates_between_beta_tilde_and_beta() {
    // v = 1 selects σ² = β and v = −1 selects σ² = β̃ (Nichol & Dhariwal, eq. 15).
    let diffusion = cosine(40);
    let request = || SampleRequest {
        seed: 3,
        shape: [2, 1, 4, 4],
        classes: None,
    };
    let sample = |model: &dyn Fn(&mut Sampler) -> bool, variance| {
        let config = SamplerConfig {
            kind: SamplerKind::Ddpm { variance },
            guidance_scale: 1.0,
            clip_denoised: true,
        };
        let mut sampler = Sampler::new(
            &diffusion,
            config,
            request(),
            &gaussian(&diffusion),
            &device(),
        )
        .expect("valid");
        while model(&mut sampler) {}
        sampler
            .sample()
            .clone()
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32")
    };
    let plain = gaussian(&diffusion);
    let fixed = |variance| sample(&|s: &mut Sampler| s.step(&plain).is_some(), variance);
    let high = FixedVariance(gaussian(&diffusion), 1.0);
    let low = FixedVariance(gaussian(&diffusion), -1.0);
    // The fixed variance setting is ignored when the network predicts one.
    let learned_high = sample(
        &|s: &mut Sampler| s.step(&high).is_some(),
        DdpmVariance::Posterior,
    );
    let learned_low = sample(
        &|s: &mut Sampler| s.step(&low).is_some(),
        DdpmVariance::Beta,
    );
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4);
    assert!(close(&learned_high, &fixed(DdpmVariance::Beta)));
    assert!(close(&learned_low, &fixed(DdpmVariance::Posterior)));
    assert!(!close(&learned_high, &learned_low));
}

/// A learned variance that depends on the class: v = 1 (σ² = β) for the data's classes and
/// v = −1 (σ² = β̃) for the null class.
struct ClassVariance<'a>(Gaussian<'a>);

impl Denoiser for ClassVariance<'_> {
    fn denoise(
        &self,
        x: Tensor<4>,
        t: &Timesteps,
        _: Option<Tensor<4>>,
        classes: Option<&[usize]>,
    ) -> Tensor<4> {
        let prediction = self.0.denoise(x, t, None, classes);
        let [b, c, h, w] = prediction.dims();
        let v: Vec<f32> = match classes {
            Some(labels) => labels
                .iter()
                .map(|&l| if l < self.0.means.len() { 1.0 } else { -1.0 })
                .collect(),
            None => vec![1.0; b],
        };
        let v = per_image(v, [b, c, h, w], &prediction.device());
        Tensor::cat(vec![prediction, v], 1)
    }

    fn num_classes(&self) -> Option<usize> {
        self.0.num_classes()
    }
}

#[test]
fn guidance_leaves_a_learned_variance_to_the_conditional_model() {
    // Guiding v as well would give v = −1 + 3·(1 − (−1)) = 5 here, far outside [−1, 1].
    let diffusion = cosine(30);
    let config = SamplerConfig {
        kind: SamplerKind::Ddpm {
            variance: DdpmVariance::Posterior,
        },
        guidance_scale: 3.0,
        clip_denoised: false,
    };
    let request = || SampleRequest {
        seed: 4,
        shape: [2, 1, 4, 4],
        classes: Some(vec![0, 1]),
    };
    let checks = two_classes(&diffusion);
    let run = |step: &dyn Fn(&mut Sampler) -> bool| {
        let mut sampler =
            Sampler::new(&diffusion, config, request(), &checks, &device()).expect("valid");
        while step(&mut sampler) {}
        sampler
            .sample()
            .clone()
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32")
    };
    let by_class = ClassVariance(two_classes(&diffusion));
    let by_class = run(&|s: &mut Sampler| s.step(&by_class).is_some());
    let conditional_v = FixedVariance(two_classes(&diffusion), 1.0);
    let conditional_v = run(&|s: &mut Sampler| s.step(&conditional_v).is_some());
    let close = by_class
        .iter()
        .zip(&conditional_v)
        .all(|(a, b)| (a - b).abs() < 1e-5);
    assert!(close, "{by_class:?} vs {conditional_v:?}");
}

#[test]
fn every_step_exposes_x_t_and_the_x0_estimate() {
    let diffusion = cosine(20);
    let model = gaussian(&diffusion);
    // Unclipped, so that the estimate is the network's own, not the clip's.
    let config = SamplerConfig {
        kind: SamplerKind::Ddim { steps: 5, eta: 0.0 },
        clip_denoised: false,
        ..SamplerConfig::default()
    };
    let request = SampleRequest {
        seed: 1,
        shape: [1, 1, 8, 8],
        classes: None,
    };
    let mut sampler = Sampler::new(&diffusion, config, request, &model, &device()).expect("valid");
    let mut ts = Vec::new();
    let mut last = None;
    loop {
        let x_t = sampler
            .sample()
            .clone()
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        let Some(step) = sampler.step(&model) else {
            break;
        };
        assert_eq!(sampler.steps_done(), step.index + 1);
        ts.push(step.t);
        // For this Gaussian data the x₀ estimate is the posterior mean E[x₀ | x_t] =
        // μ + √ᾱ σ² (x_t − √ᾱ μ) / (ᾱ σ² + 1 − ᾱ), found here without the ε → x₀ conversion.
        let x0 = step.x_start.into_data().try_to_vec::<f32>().expect("f32");
        let abar = diffusion.schedule().alphas_cumprod[step.t] as f64;
        let gain = abar.sqrt() * SIGMA * SIGMA / (abar * SIGMA * SIGMA + 1.0 - abar);
        for (&got, &x) in x0.iter().zip(&x_t) {
            let want = MU + gain * (x as f64 - abar.sqrt() * MU);
            assert!(
                (got as f64 - want).abs() < 1e-3 * want.abs().max(1.0),
                "t={}: x₀ estimate {got} vs {want}",
                step.t
            );
        }
        last = Some((step.x, x0));
    }
    // linspace(−1, 19, 6) truncated: −1, 3, 7, 11, 15, 19.
    assert_eq!(ts, [19, 15, 11, 7, 3]);
    assert!(sampler.is_done());
    // DDIM's last step returns the x₀ estimate itself.
    let (x, x0) = last.expect("steps ran");
    assert_eq!(x.into_data().try_to_vec::<f32>().expect("f32"), x0);
}

/// Predicts the same x₀ for every input (an x₀-objective network).
struct ConstantX0(f32);

impl Denoiser for ConstantX0 {
    fn denoise(
        &self,
        x: Tensor<4>,
        _: &Timesteps,
        _: Option<Tensor<4>>,
        _: Option<&[usize]>,
    ) -> Tensor<4> {
        x.ones_like().mul_scalar(self.0)
    }
}

#[test]
fn an_ancestral_step_draws_from_the_posterior_of_equation_seven() {
    // With x̂₀ fixed, x_{t−1} = μ̃(x_t, x̂₀) + σ_t z, where μ̃ = coef1 x̂₀ + coef2 x_t (eq. 7) and
    // σ²_t is β̃_t or β_t: the residual x_{t−1} − μ̃ must be N(0, σ²_t).
    let diffusion = GaussianDiffusion::new(DiffusionConfig {
        timesteps: 10,
        beta_schedule: BetaSchedule::Linear {},
        objective: Objective::PredX0,
        ..DiffusionConfig::default()
    });
    let s = diffusion.schedule();
    let (t, x0) = (9usize, 0.4f32);
    for (variance, sigma2) in [
        (DdpmVariance::Posterior, s.posterior_variance[t] as f64),
        (DdpmVariance::Beta, s.betas[t] as f64),
    ] {
        let config = SamplerConfig {
            kind: SamplerKind::Ddpm { variance },
            ..SamplerConfig::default()
        };
        let request = SampleRequest {
            seed: 5,
            shape: [16, 1, 32, 32],
            classes: None,
        };
        let mut sampler =
            Sampler::new(&diffusion, config, request, &ConstantX0(x0), &device()).expect("valid");
        let x_t = sampler
            .sample()
            .clone()
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        let step = sampler.step(&ConstantX0(x0)).expect("a step");
        assert_eq!(step.t, t);
        let x_prev = step.x.into_data().try_to_vec::<f32>().expect("f32");
        let (c1, c2) = (
            s.posterior_mean_coef1[t] as f64,
            s.posterior_mean_coef2[t] as f64,
        );
        let residual: Vec<f32> = x_prev
            .iter()
            .zip(&x_t)
            .map(|(&xp, &xt)| (xp as f64 - (c1 * x0 as f64 + c2 * xt as f64)) as f32)
            .collect();
        let (mean, std) = moments(&residual);
        let n = residual.len() as f64;
        assert!(
            mean.abs() < 4.0 * sigma2.sqrt() / n.sqrt(),
            "{variance:?}: mean {mean}"
        );
        assert!(
            (std / sigma2.sqrt() - 1.0).abs() < 0.02,
            "{variance:?}: std {std} vs {}",
            sigma2.sqrt()
        );
    }
}

#[test]
fn the_last_ancestral_step_adds_no_noise() {
    let diffusion = GaussianDiffusion::new(DiffusionConfig {
        timesteps: 3,
        objective: Objective::PredX0,
        ..DiffusionConfig::default()
    });
    let config = SamplerConfig::default();
    let request = SampleRequest {
        seed: 2,
        shape: [1, 1, 2, 2],
        classes: None,
    };
    let mut sampler =
        Sampler::new(&diffusion, config, request, &ConstantX0(-0.7), &device()).expect("valid");
    while sampler.step(&ConstantX0(-0.7)).is_some() {}
    // At t = 0, μ̃ = x̂₀ exactly (coef1 = 1, coef2 = 0) and σ = 0.
    for v in sampler
        .sample()
        .clone()
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32")
    {
        assert!((v + 0.7).abs() < 1e-6, "{v}");
    }
}

#[test]
fn parts_of_a_batch_sampled_apart_give_the_whole_batch() {
    // The browser splits a run across workers that share nothing: each part must get its
    // images' x_T, step noise and labels, so that the parts together are the one-sampler run.
    let diffusion = cosine(40);
    let model = two_classes(&diffusion);
    let batch = 5;
    let request = SampleRequest {
        seed: 21,
        shape: [batch, 1, 3, 3], // odd per-image counts cross Box–Muller pairs
        classes: Some(vec![0, 1, 1, 0, 1]),
    };
    let kinds = [
        SamplerKind::Ddpm {
            variance: DdpmVariance::Posterior,
        },
        SamplerKind::Ddim { steps: 8, eta: 0.7 },
    ];
    for kind in kinds {
        let config = SamplerConfig {
            kind,
            guidance_scale: 2.0,
            clip_denoised: false,
        };
        let whole = run(&diffusion, &model, kind, request.clone(), 2.0);
        let mut joined = Vec::new();
        for part in [0..1, 1..3, 3..5] {
            let mut sampler =
                Sampler::new_part(&diffusion, config, request.clone(), part, &model, &device())
                    .expect("valid part");
            while sampler.step(&model).is_some() {}
            joined.extend(sampler.sample().to_data().try_to_vec::<f32>().expect("f32"));
        }
        assert_eq!(joined, whole, "{kind:?}");
    }
    let config = SamplerConfig::default();
    for part in [2..2, 4..6] {
        let refused =
            Sampler::new_part(&diffusion, config, request.clone(), part, &model, &device())
                .expect_err("refused");
        assert!(
            refused.to_string().contains("of the batch's 5 images"),
            "{refused}"
        );
    }
}
