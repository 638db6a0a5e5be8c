use super::*;
use crate::schedule::BetaSchedule;
use crate::test_util::{device, values};

fn diffusion(objective: Objective) -> GaussianDiffusion {
    GaussianDiffusion::new(DiffusionConfig {
        objective,
        beta_schedule: BetaSchedule::COSINE,
        ..DiffusionConfig::default()
    })
}

#[test]
fn q_sample_has_the_closed_form_mean_and_variance() {
    let d = diffusion(Objective::PredNoise);
    let device = device();
    let mut rng = NoiseSource::new(5);
    // One fixed x₀ image of 4 pixels, repeated over a large batch.
    let x0_pixels = [-0.8f32, -0.1, 0.4, 0.9];
    let batch = 20_000;
    let x0: Vec<f32> = x0_pixels.iter().copied().cycle().take(batch * 4).collect();
    let x0 = Tensor::<4>::from_data(TensorData::new(x0, [batch, 1, 2, 2]), &device);
    for t in [0usize, 250, 999] {
        let noise = rng.normal_tensor([batch, 1, 2, 2], &device);
        let xt = values(d.q_sample(x0.clone(), &Timesteps::All(t), noise));
        let abar = d.schedule().alphas_cumprod[t] as f64;
        for (p, &x0p) in x0_pixels.iter().enumerate() {
            let xs: Vec<f64> = xt.iter().skip(p).step_by(4).map(|&v| v as f64).collect();
            let mean = xs.iter().sum::<f64>() / batch as f64;
            let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / batch as f64;
            let (want_mean, want_var) = (abar.sqrt() * x0p as f64, 1.0 - abar);
            // 4.5 standard errors of the estimates.
            let se_mean = (want_var / batch as f64).sqrt();
            assert!(
                (mean - want_mean).abs() < 4.5 * se_mean + 1e-7,
                "t={t} mean {mean} vs {want_mean}"
            );
            let se_var = want_var * (2.0 / batch as f64).sqrt();
            assert!(
                (var - want_var).abs() < 4.5 * se_var + 1e-9,
                "t={t} var {var} vs {want_var}"
            );
        }
    }
}

#[test]
fn per_image_timesteps_scale_each_image_separately() {
    let d = diffusion(Objective::PredNoise);
    let device = device();
    let x0 = Tensor::<4>::ones([3, 1, 1, 2], &device);
    let noise = Tensor::<4>::zeros([3, 1, 1, 2], &device);
    let xt = values(d.q_sample(x0, &Timesteps::Each(vec![0, 500, 999]), noise));
    let s = d.schedule();
    for (i, t) in [0usize, 500, 999].into_iter().enumerate() {
        assert_eq!(xt[2 * i], s.sqrt_alphas_cumprod[t]);
        assert_eq!(xt[2 * i + 1], s.sqrt_alphas_cumprod[t]);
    }
}

fn assert_close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol * y.abs().max(1.0), "{x} vs {y}");
    }
}

#[test]
fn objective_conversions_round_trip_through_noise() {
    let device = device();
    let mut rng = NoiseSource::new(9);
    let shape = [4, 2, 3, 3];
    let x0 = rng.normal_tensor(shape, &device).clamp(-1.0, 1.0);
    let eps = rng.normal_tensor(shape, &device);
    for objective in [Objective::PredNoise, Objective::PredX0, Objective::PredV] {
        let d = diffusion(objective);
        // Steps where neither √ᾱ nor √(1−ᾱ) is tiny, so f32 round-off stays small.
        let t = Timesteps::Each(vec![1, 200, 600, 900]);
        let xt = d.q_sample(x0.clone(), &t, eps.clone());
        // The exact target of each objective, run through `predictions`, gives back ε and x₀.
        let output = match objective {
            Objective::PredNoise => eps.clone(),
            Objective::PredX0 => x0.clone(),
            Objective::PredV => d.predict_v(x0.clone(), &t, eps.clone()),
        };
        let p = d.predictions(output, xt.clone(), &t, false);
        assert_close(&values(p.noise), &values(eps.clone()), 2e-3);
        assert_close(&values(p.x_start), &values(x0.clone()), 2e-3);
        // And v → x₀ → ε → x₀ is the identity too.
        let v = d.predict_v(x0.clone(), &t, eps.clone());
        let x0_back = d.predict_start_from_v(xt.clone(), &t, v);
        let eps_back = d.predict_noise_from_start(xt.clone(), &t, x0_back.clone());
        let x0_again = d.predict_start_from_noise(xt, &t, eps_back.clone());
        assert_close(&values(eps_back), &values(eps.clone()), 2e-3);
        assert_close(&values(x0_again), &values(x0.clone()), 2e-3);
    }
}

#[test]
fn posterior_matches_equation_seven() {
    let d = diffusion(Objective::PredNoise);
    let device = device();
    let x0 = Tensor::<4>::from_data(TensorData::new(vec![0.5f32, -0.25], [1, 1, 1, 2]), &device);
    let xt = Tensor::<4>::from_data(TensorData::new(vec![1.5f32, 0.75], [1, 1, 1, 2]), &device);
    // ᾱ from β in f64: near t = 0, 1 − ᾱ in f32 would lose the digits under test.
    let betas = BetaSchedule::COSINE.betas(1000);
    let abar = |t: usize| betas[..=t].iter().map(|b| 1.0 - b).product::<f64>();
    for t in [1usize, 10, 500, 999] {
        let (mean, log_var) = d.q_posterior(x0.clone(), xt.clone(), &Timesteps::All(t));
        let (beta, abar, abar_prev) = (betas[t], abar(t), abar(t - 1));
        for (i, (&a, &b)) in [0.5f64, -0.25].iter().zip(&[1.5f64, 0.75]).enumerate() {
            let want = abar_prev.sqrt() * beta / (1.0 - abar) * a
                + (1.0 - beta).sqrt() * (1.0 - abar_prev) / (1.0 - abar) * b;
            let got = values(mean.clone())[i] as f64;
            assert!((got - want).abs() < 1e-5, "t={t}: {got} vs {want}");
        }
        let want_var = (1.0 - abar_prev) / (1.0 - abar) * beta;
        let got_var = (values(log_var)[0] as f64).exp();
        assert!(
            (got_var - want_var).abs() < 1e-5 * want_var.max(1e-3),
            "t={t}: {got_var} vs {want_var}"
        );
    }
}

/// A denoiser that returns the exact target, so the unweighted loss would be 0.
#[derive(Clone)]
struct Oracle<'a> {
    d: &'a GaussianDiffusion,
    x0: Tensor<4>,
}

impl Denoiser for Oracle<'_> {
    fn denoise(
        &self,
        x: Tensor<4>,
        t: &Timesteps,
        _: Option<Tensor<4>>,
        _: Option<&[usize]>,
    ) -> Tensor<4> {
        let a = |table: &[f32]| t.scale(table, x.ones_like());
        let s = self.d.schedule();
        // ε = (x_t − √ᾱ x₀)/√(1−ᾱ)
        let eps = (x.clone() - a(&s.sqrt_alphas_cumprod) * self.x0.clone())
            / a(&s.sqrt_one_minus_alphas_cumprod);
        match self.d.config.objective {
            Objective::PredNoise => eps,
            Objective::PredX0 => self.x0.clone(),
            Objective::PredV => self.d.predict_v(self.x0.clone(), t, eps),
        }
    }
}

#[test]
fn loss_is_zero_for_a_perfect_denoiser_and_positive_otherwise() {
    let device = device();
    let x0 = NoiseSource::new(2)
        .normal_tensor([8, 1, 4, 4], &device)
        .clamp(-1.0, 1.0);
    for objective in [Objective::PredNoise, Objective::PredX0, Objective::PredV] {
        let d = diffusion(objective);
        let oracle = Oracle {
            d: &d,
            x0: x0.clone(),
        };
        let out = d.loss(&oracle, x0.clone(), None, &mut NoiseSource::new(1));
        let loss = values(out.loss)[0];
        assert!(loss < 1e-6, "{objective:?}: {loss}");
        assert_eq!(out.timesteps.len(), 8);
        assert!(out.timesteps.iter().all(|&t| t < 1000));
        // The same draws with a denoiser that predicts nothing cost something.
        let out = d.loss(&Zero, x0.clone(), None, &mut NoiseSource::new(1));
        let loss = values(out.loss)[0];
        assert!(loss > 0.05, "{objective:?}: a zero prediction costs {loss}");
    }
}

#[test]
fn a_learned_variance_interpolates_in_log_space() {
    // Nichol & Dhariwal's eq. 15: σ² = exp(f ln β + (1 − f) ln β̃) with f = (v + 1)/2; at
    // v = 0 that is the geometric mean √(β·β̃), which interpolating the variances themselves
    // would miss. β̃ is computed here from the betas alone (eq. 7), clipped at t = 0 to β̃₁.
    let d = diffusion(Objective::PredNoise);
    let betas: Vec<f64> = d.schedule().betas.iter().map(|&b| b as f64).collect();
    let abar: Vec<f64> = betas
        .iter()
        .scan(1.0, |a, b| {
            *a *= 1.0 - b;
            Some(*a)
        })
        .collect();
    let tilde = |t: usize| betas[t] * (1.0 - abar[t - 1]) / (1.0 - abar[t]);
    let ts = [0usize, 1, 500, 999];
    for v in [-1.0f32, -0.5, 0.0, 0.5, 1.0] {
        let input = Tensor::<4>::full([ts.len(), 1, 1, 1], v, &device());
        let got = values(d.learned_log_variance(input, &Timesteps::Each(ts.to_vec())));
        for (&t, got) in ts.iter().zip(got) {
            let f = (f64::from(v) + 1.0) / 2.0;
            let want = f * betas[t].ln() + (1.0 - f) * tilde(t.max(1)).ln();
            assert!(
                (f64::from(got) - want).abs() < 1e-4 * want.abs().max(1.0),
                "v={v} t={t}: {got} vs {want}"
            );
            if v == 0.0 {
                let geometric = (betas[t] * tilde(t.max(1))).sqrt();
                assert!((f64::from(got).exp() / geometric - 1.0).abs() < 1e-4);
            }
        }
    }
}

struct Zero;
impl Denoiser for Zero {
    fn denoise(
        &self,
        x: Tensor<4>,
        _: &Timesteps,
        _: Option<Tensor<4>>,
        _: Option<&[usize]>,
    ) -> Tensor<4> {
        x.zeros_like()
    }
}

#[test]
fn epsilon_loss_of_a_zero_prediction_is_the_noise_power() {
    // With ε-prediction and no weighting, predicting 0 costs E[ε²] = 1; the estimate over
    // n = 65536 values has a standard error of √(2/n) = 0.0055.
    let d = diffusion(Objective::PredNoise);
    let x0 = Tensor::<4>::zeros([256, 1, 16, 16], &device());
    let loss = values(d.loss(&Zero, x0, None, &mut NoiseSource::new(4)).loss)[0];
    assert!((loss - 1.0).abs() < 0.025, "{loss}");
}

#[test]
fn min_snr_weight_clips_the_snr() {
    let gamma = 5.0;
    for objective in [Objective::PredNoise, Objective::PredX0, Objective::PredV] {
        let d = GaussianDiffusion::new(DiffusionConfig {
            objective,
            min_snr_gamma: Some(gamma),
            ..DiffusionConfig::default()
        });
        for t in [0usize, 100, 999] {
            let snr = d.schedule().snr[t] as f64;
            let want = match objective {
                Objective::PredNoise => snr.min(gamma) / snr,
                Objective::PredX0 => snr.min(gamma),
                Objective::PredV => snr.min(gamma) / (snr + 1.0),
            };
            let got = d.loss_weight[t] as f64;
            assert!(
                (got - want).abs() < 1e-5 * want.max(1.0),
                "{objective:?} t={t}: {got} vs {want}"
            );
        }
    }
}
/// Records how the loss calls the network.
#[derive(Default)]
struct Recorder {
    calls: std::cell::RefCell<Vec<(bool, Option<Vec<usize>>)>>,
    self_condition: bool,
}

impl Denoiser for Recorder {
    fn denoise(
        &self,
        x: Tensor<4>,
        _: &Timesteps,
        s: Option<Tensor<4>>,
        c: Option<&[usize]>,
    ) -> Tensor<4> {
        self.calls
            .borrow_mut()
            .push((s.is_some(), c.map(<[usize]>::to_vec)));
        x.zeros_like()
    }
    fn self_condition(&self) -> bool {
        self.self_condition
    }
    fn num_classes(&self) -> Option<usize> {
        Some(10)
    }
}

#[test]
fn self_conditioning_runs_on_half_the_batches_and_labels_drop_to_null() {
    let d = GaussianDiffusion::new(DiffusionConfig {
        cond_drop_prob: 0.25,
        ..DiffusionConfig::default()
    });
    let device = device();
    let model = Recorder {
        self_condition: true,
        ..Recorder::default()
    };
    let mut rng = NoiseSource::new(8);
    let batches = 400;
    let labels: Vec<usize> = (0..16).map(|i| i % 10).collect();
    for _ in 0..batches {
        let x0 = Tensor::<4>::zeros([16, 1, 2, 2], &device);
        d.loss(&model, x0, Some(&labels), &mut rng);
    }
    let calls = model.calls.borrow();
    // Each self-conditioned batch costs one extra call without, then one with the estimate.
    let with = calls.iter().filter(|(s, _)| *s).count();
    assert_eq!(calls.len(), batches + with);
    assert!((160..240).contains(&with), "{with} of {batches}");
    // Labels are kept or replaced by the null class 10, about a quarter of them.
    let mut dropped = 0;
    for (_, c) in calls.iter() {
        let c = c.as_ref().expect("labels passed");
        for (got, want) in c.iter().zip(&labels) {
            assert!(got == want || *got == 10);
            dropped += usize::from(*got == 10);
        }
    }
    let total = calls.len() * 16;
    assert!(
        (dropped as f64 / total as f64 - 0.25).abs() < 0.03,
        "{dropped} of {total}"
    );
    // Without self-conditioning there is exactly one call per batch.
    let plain = Recorder::default();
    d.loss(
        &plain,
        Tensor::<4>::zeros([2, 1, 2, 2], &device),
        None,
        &mut rng,
    );
    assert_eq!(*plain.calls.borrow(), [(false, None)]);
}

#[test]
fn the_hybrid_loss_trains_the_variance_towards_the_posterior() {
    // With the exact mean, σ² = β̃ (v = −1) makes every KL term 0, so only the images drawn at
    // t = 0 pay: the decoder's bits, the bound's decoder term. σ² = β (v = 1) pays more: the vb
    // term is what tells the two apart.
    let d = GaussianDiffusion::new(DiffusionConfig {
        timesteps: 10,
        beta_schedule: BetaSchedule::COSINE,
        vb_loss_weight: 1.0,
        ..DiffusionConfig::default()
    });
    let x0 = NoiseSource::new(2)
        .normal_tensor([64, 1, 4, 4], &device())
        .clamp(-1.0, 1.0);
    let exact = Oracle {
        d: &d,
        x0: x0.clone(),
    };
    let loss = |v: f32| {
        let oracle = FixedVariance(exact.clone(), v);
        let out = d.loss(&oracle, x0.clone(), None, &mut NoiseSource::new(1));
        assert!(out.timesteps.iter().any(|&t| t > 0));
        (f64::from(values(out.loss)[0]), out.timesteps)
    };
    let ((posterior, timesteps), (beta, _)) = (loss(-1.0), loss(1.0));
    let noise = NoiseSource::new(3).normal_tensor(x0.dims(), &device());
    let decoder = values(d.bound_term(&exact, x0.clone(), 0, None, noise));
    let want: f64 = timesteps
        .iter()
        .zip(&decoder)
        .filter(|&(&t, _)| t == 0)
        .map(|(_, &bits)| f64::from(bits))
        .sum::<f64>()
        / 64.0;
    assert!(timesteps.contains(&0) && want > 0.05, "{want}");
    assert!((posterior - want).abs() < 1e-4, "{posterior} vs {want}");
    assert!(beta > posterior + 0.05, "{beta} vs {posterior}");
}

/// Data that is one fixed image x*: the exact noise prediction is
/// ε(x_t, t) = (x_t − √ᾱ_t x*) / √(1 − ᾱ_t), off by `error` everywhere.
struct PointMass {
    diffusion: GaussianDiffusion,
    image: Tensor<4>,
    error: f32,
}

impl Denoiser for PointMass {
    fn denoise(
        &self,
        x: Tensor<4>,
        t: &Timesteps,
        _: Option<Tensor<4>>,
        _: Option<&[usize]>,
    ) -> Tensor<4> {
        let Timesteps::All(t) = *t else {
            panic!("the bound uses one step per batch")
        };
        let s = self.diffusion.schedule();
        (x - self.image.clone().mul_scalar(s.sqrt_alphas_cumprod[t]))
            .div_scalar(s.sqrt_one_minus_alphas_cumprod[t])
            .add_scalar(self.error)
    }
}

/// Pixel values 0, 102, 204 and 255 on [−1, 1].
const PIXELS: [f32; 4] = [-1.0, 102.0 / 127.5 - 1.0, 204.0 / 127.5 - 1.0, 1.0];

fn point_mass(error: f32) -> PointMass {
    PointMass {
        diffusion: GaussianDiffusion::new(DiffusionConfig::default()),
        image: Tensor::from_data(TensorData::new(PIXELS.to_vec(), [1, 1, 2, 2]), &device()),
        error,
    }
}

#[test]
fn the_prior_term_has_its_closed_form() {
    let m = point_mass(0.0);
    let abar = *m.diffusion.schedule().alphas_cumprod.last().expect("T > 0") as f64;
    let bits = values(m.diffusion.prior_bits(m.image.clone()))[0] as f64;
    // KL(N(√ᾱ x, 1 − ᾱ) ‖ N(0, 1)) = ½(−ln(1 − ᾱ) − 1 + (1 − ᾱ) + ᾱ x²), per pixel.
    let want = PIXELS
        .iter()
        .map(|&x| 0.5 * (-(1.0 - abar).ln() - abar + abar * (x as f64).powi(2)))
        .sum::<f64>()
        / 4.0
        / std::f64::consts::LN_2;
    assert!((bits - want).abs() < 1e-7 + 1e-3 * want, "{bits} vs {want}");
    assert!(
        bits < 1e-4,
        "the paper's schedule ends near N(0, I): {bits}"
    );
}

#[test]
fn an_exact_denoiser_leaves_only_the_decoder_term() {
    let m = point_mass(0.0);
    let mut rng = NoiseSource::new(3);
    for t in [1usize, 10, 500, 999] {
        let noise = rng.normal_tensor([1, 1, 2, 2], &device());
        let kl = values(m.diffusion.bound_term(&m, m.image.clone(), t, None, noise))[0];
        assert!(kl.abs() < 1e-3, "t={t}: {kl}");
    }
}

/// The decoder term of [`point_mass`] data whose ε̂ is off by `error`: x̂₀ = x* + √(1/ᾱ₁ − 1)·error
/// at the first step (x̂₀ is clipped to [−1, 1]), and each pixel pays −log₂ of the normal
/// probability mass of its bin (half-width 1/255, open-ended at 0 and 255) around x̂₀, with the
/// scale σ₁ = √β̃₂ of the paper's code (β̃₁ = 0).
fn decoder_bits(error: f64) -> f64 {
    // The paper's linear schedule at T = 1000: β₁ = 1e-4, β₂ = 1e-4 + (0.02 − 1e-4)/999.
    let (b1, b2): (f64, f64) = (1e-4, 1e-4 + (0.02 - 1e-4) / 999.0);
    let sigma = (b2 * b1 / (1.0 - (1.0 - b1) * (1.0 - b2))).sqrt();
    let shift = (1.0 / (1.0 - b1) - 1.0f64).sqrt() * error;
    let cdf = |z: f64| 0.5 * (1.0 + libm::erf(z / std::f64::consts::SQRT_2));
    let bin = 1.0 / 255.0;
    PIXELS
        .iter()
        .map(|&x| {
            let x = x as f64;
            let mean = (x + shift).clamp(-1.0, 1.0);
            let (lo, hi) = ((x - bin - mean) / sigma, (x + bin - mean) / sigma);
            let mass = if x < -0.999 {
                cdf(hi)
            } else if x > 0.999 {
                1.0 - cdf(lo)
            } else {
                cdf(hi) - cdf(lo)
            };
            -mass.log2()
        })
        .sum::<f64>()
        / PIXELS.len() as f64
}

#[test]
fn the_decoder_pays_for_each_pixel_its_bins_normal_mass() {
    let mut rng = NoiseSource::new(5);
    for error in [0.0, 0.5, -1.0] {
        let m = point_mass(error as f32);
        let noise = rng.normal_tensor([1, 1, 2, 2], &device());
        let l0 = values(m.diffusion.bound_term(&m, m.image.clone(), 0, None, noise))[0] as f64;
        let want = decoder_bits(error);
        // The code uses the paper's tanh approximation of the normal CDF.
        assert!((l0 - want).abs() < 0.01, "error {error}: {l0} vs {want}");
        // A finite scale: even an exact x̂₀ pays for the bins' width, and a miss of about a
        // bin costs a few bits, not the ~50 of a point mass.
        assert!((0.5..6.0).contains(&l0), "error {error}: {l0}");
    }
}

#[test]
fn a_wrong_denoiser_pays_in_every_kl_term() {
    let (good, bad) = (point_mass(0.0), point_mass(0.1));
    let mut rng = NoiseSource::new(4);
    // A wrong ε̂ moves x̂₀ by √(1/ᾱ_t − 1)·error, which the posterior mean weighs less as t
    // grows (at large t the bound barely cares about x̂₀).
    for t in [1usize, 10, 100] {
        let noise = rng.normal_tensor([1, 1, 2, 2], &device());
        let term = |m: &PointMass| {
            values(
                m.diffusion
                    .bound_term(m, m.image.clone(), t, None, noise.clone()),
            )[0]
        };
        let (g, b) = (term(&good), term(&bad));
        assert!(b > g + 1e-5, "t={t}: wrong {b} vs exact {g}");
    }
}
