//! Noise schedules β₁…β_T and every table derived from them (Ho et al. 2020, §2 and §3.2).
//!
//! Tables are computed in f64 and stored as f32, as lucidrains' code does (`register_buffer` casts to
//! float32). Index `t` runs over `0..T`, so `t = 0` is the paper's first step `t = 1`.

use serde::{Deserialize, Serialize};

/// β is never allowed to reach 1: ᾱ_t would become 0 and every `1/ᾱ` table infinite.
pub const MAX_BETA: f64 = 0.999;

/// How β_t grows with `t`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum BetaSchedule {
    /// The paper's schedule: β linear from 1e-4 to 0.02 at T = 1000, both ends scaled by
    /// `1000 / T` for other T (as lucidrains does), then clipped at [`MAX_BETA`]. Braces, not
    /// a unit variant: serde lets an internally tagged unit variant ignore other keys, and a
    /// key of another schedule (`s` here) must be refused, not dropped.
    Linear {},
    /// Nichol & Dhariwal (2021): ᾱ(t) = cos²((t/T + s)/(1 + s) · π/2), β clipped at 0.999.
    Cosine {
        /// Offset `s` that keeps β small near `t = 0`; 0.008 in the paper.
        s: f64,
    },
    /// Jabri et al. (2022), Fig. 8: ᾱ follows a sigmoid over `[start, end] / tau`.
    Sigmoid {
        /// Left end of the sigmoid's input range (−3 in lucidrains' code).
        start: f64,
        /// Right end of the sigmoid's input range (3 in lucidrains' code).
        end: f64,
        /// Temperature (1 in lucidrains' code).
        tau: f64,
    },
}

impl BetaSchedule {
    /// The cosine schedule with the paper's `s = 0.008`.
    pub const COSINE: Self = Self::Cosine { s: 0.008 };
    /// The sigmoid schedule with lucidrains' `start = -3, end = 3, tau = 1`.
    pub const SIGMOID: Self = Self::Sigmoid {
        start: -3.0,
        end: 3.0,
        tau: 1.0,
    };

    /// β₁…β_T in f64.
    pub fn betas(&self, timesteps: usize) -> Vec<f64> {
        let t_max = timesteps as f64;
        match *self {
            Self::Linear {} => {
                let scale = 1000.0 / t_max;
                let (start, end) = (scale * 1e-4, scale * 0.02);
                (0..timesteps)
                    .map(|i| {
                        let frac = if timesteps > 1 {
                            i as f64 / (t_max - 1.0)
                        } else {
                            0.0
                        };
                        (start + (end - start) * frac).min(MAX_BETA)
                    })
                    .collect()
            }
            Self::Cosine { s } => betas_from_alpha_bar(timesteps, |t| {
                let c = ((t + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2).cos();
                c * c
            }),
            Self::Sigmoid { start, end, tau } => {
                let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
                // lucidrains makes the two ends with `torch.tensor(x).sigmoid()`, in float32;
                // rounded the same way, β is PyTorch's (otherwise up to 1.3e-5 apart).
                let ends = |x: f64| f64::from(sigmoid(x) as f32);
                let (v_start, v_end) = (ends(start / tau), ends(end / tau));
                betas_from_alpha_bar(timesteps, |t| {
                    (v_end - sigmoid((t * (end - start) + start) / tau)) / (v_end - v_start)
                })
            }
        }
    }
}

/// β_t = 1 − ᾱ(t/T) / ᾱ((t−1)/T), with ᾱ normalised so that ᾱ(0) = 1, clipped to [0, 0.999].
fn betas_from_alpha_bar(timesteps: usize, alpha_bar: impl Fn(f64) -> f64) -> Vec<f64> {
    let t_max = timesteps as f64;
    let a0 = alpha_bar(0.0);
    let abar: Vec<f64> = (0..=timesteps)
        .map(|i| alpha_bar(i as f64 / t_max) / a0)
        .collect();
    abar.windows(2)
        .map(|w| (1.0 - w[1] / w[0]).clamp(0.0, MAX_BETA))
        .collect()
}

/// Every per-step constant that the forward process, the loss and the samplers need.
///
/// Each field holds `T` values; `[t]` is the value at step `t` (0-based).
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    /// β_t.
    pub betas: Vec<f32>,
    /// ln β_t, the log-variance of the "σ² = β" reverse step.
    pub log_betas: Vec<f32>,
    /// α_t = 1 − β_t.
    pub alphas: Vec<f32>,
    /// ᾱ_t = ∏_{s≤t} α_s.
    pub alphas_cumprod: Vec<f32>,
    /// ᾱ_{t−1}, with ᾱ_{−1} = 1.
    pub alphas_cumprod_prev: Vec<f32>,
    /// √ᾱ_t.
    pub sqrt_alphas_cumprod: Vec<f32>,
    /// √(1 − ᾱ_t).
    pub sqrt_one_minus_alphas_cumprod: Vec<f32>,
    /// ln(1 − ᾱ_t).
    pub log_one_minus_alphas_cumprod: Vec<f32>,
    /// √(1/ᾱ_t).
    pub sqrt_recip_alphas_cumprod: Vec<f32>,
    /// √(1/ᾱ_t − 1).
    pub sqrt_recipm1_alphas_cumprod: Vec<f32>,
    /// β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t), the variance of q(x_{t−1} | x_t, x₀) (eq. 7).
    pub posterior_variance: Vec<f32>,
    /// ln β̃_t, with the second step's value at the first step, where β̃ is 0 (as in the
    /// paper's code and Nichol & Dhariwal's): it is the decoder p(x₀ | x₁)'s variance in the
    /// bound and the lower end of a learned variance there. lucidrains and diffusers clamp β̃
    /// at 1e-20 instead, which leaves sampling unchanged (its last step adds no noise) but
    /// makes that decoder a point mass worth about 50 bits for every pixel it misses.
    /// With T = 1 the first step's β.
    pub posterior_log_variance_clipped: Vec<f32>,
    /// Coefficient of x₀ in μ̃_t (eq. 7): β_t √ᾱ_{t−1} / (1 − ᾱ_t).
    pub posterior_mean_coef1: Vec<f32>,
    /// Coefficient of x_t in μ̃_t (eq. 7): (1 − ᾱ_{t−1}) √α_t / (1 − ᾱ_t).
    pub posterior_mean_coef2: Vec<f32>,
    /// Signal-to-noise ratio ᾱ_t / (1 − ᾱ_t).
    pub snr: Vec<f32>,
}

impl NoiseSchedule {
    /// Builds every table for `timesteps` steps of `schedule`.
    pub fn new(schedule: BetaSchedule, timesteps: usize) -> Self {
        Self::from_betas(&schedule.betas(timesteps))
    }

    /// Builds every table from explicit β values (each in `(0, 1)`).
    pub fn from_betas(betas: &[f64]) -> Self {
        let mut abar = Vec::with_capacity(betas.len());
        let mut prod = 1.0;
        for beta in betas {
            prod *= 1.0 - beta;
            abar.push(prod);
        }
        let abar_prev: Vec<f64> = std::iter::once(1.0).chain(abar.iter().copied()).collect();
        let table = |f: &dyn Fn(usize) -> f64| -> Vec<f32> {
            (0..betas.len()).map(|t| f(t) as f32).collect()
        };
        let posterior_variance = |t: usize| betas[t] * (1.0 - abar_prev[t]) / (1.0 - abar[t]);
        Self {
            betas: table(&|t| betas[t]),
            log_betas: table(&|t| betas[t].ln()),
            alphas: table(&|t| 1.0 - betas[t]),
            alphas_cumprod: table(&|t| abar[t]),
            alphas_cumprod_prev: table(&|t| abar_prev[t]),
            sqrt_alphas_cumprod: table(&|t| abar[t].sqrt()),
            sqrt_one_minus_alphas_cumprod: table(&|t| (1.0 - abar[t]).sqrt()),
            log_one_minus_alphas_cumprod: table(&|t| (1.0 - abar[t]).ln()),
            sqrt_recip_alphas_cumprod: table(&|t| (1.0 / abar[t]).sqrt()),
            sqrt_recipm1_alphas_cumprod: table(&|t| (1.0 / abar[t] - 1.0).sqrt()),
            posterior_variance: table(&posterior_variance),
            posterior_log_variance_clipped: table(&|t| match (t, betas.len()) {
                (0, 1) => betas[0].ln(),
                (0, _) => posterior_variance(1).ln(),
                _ => posterior_variance(t).ln(),
            }),
            posterior_mean_coef1: table(&|t| betas[t] * abar_prev[t].sqrt() / (1.0 - abar[t])),
            posterior_mean_coef2: table(&|t| {
                (1.0 - abar_prev[t]) * (1.0 - betas[t]).sqrt() / (1.0 - abar[t])
            }),
            snr: table(&|t| abar[t] / (1.0 - abar[t])),
        }
    }

    /// The number of diffusion steps T.
    pub fn timesteps(&self) -> usize {
        self.betas.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULES: [BetaSchedule; 3] = [
        BetaSchedule::Linear {},
        BetaSchedule::COSINE,
        BetaSchedule::SIGMOID,
    ];

    #[test]
    fn a_schedule_with_a_key_of_another_kind_is_refused() {
        let read =
            |json: &str| serde_json::from_str::<BetaSchedule>(json).map_err(|e| e.to_string());
        assert_eq!(read(r#"{"kind":"linear"}"#), Ok(BetaSchedule::Linear {}));
        assert_eq!(
            read(r#"{"kind":"cosine","s":0.008}"#),
            Ok(BetaSchedule::COSINE)
        );
        for json in [
            r#"{"kind":"linear","s":1}"#,
            r#"{"kind":"cosine","s":0.008,"tau":1}"#,
            r#"{"kind":"sigmoid","start":-3,"end":3,"tau":1,"bogus":2}"#,
        ] {
            let err = read(json).expect_err(json);
            assert!(err.contains("unknown field"), "{json}: {err}");
        }
    }

    /// ᾱ(t) written out independently of the code under test, per schedule, before clipping.
    fn closed_form_alpha_bar(schedule: BetaSchedule, t: f64, t_max: f64) -> f64 {
        let pi = std::f64::consts::PI;
        match schedule {
            BetaSchedule::Linear {} => unreachable!("linear is defined by its betas"),
            BetaSchedule::Cosine { s } => {
                let f = |u: f64| ((u / t_max + s) / (1.0 + s) * pi / 2.0).cos().powi(2);
                f(t) / f(0.0)
            }
            BetaSchedule::Sigmoid { start, end, tau } => {
                let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
                // lucidrains' right end is a float32 (`torch.tensor(end / tau).sigmoid()`).
                let v_end = f64::from(sig(end / tau) as f32);
                let g = |u: f64| -sig(((u / t_max) * (end - start) + start) / tau) + v_end;
                g(t) / g(0.0)
            }
        }
    }

    fn close(a: f32, b: f64, what: &str, t: usize) {
        let tol = 2e-6 * b.abs().max(1.0);
        assert!(
            (a as f64 - b).abs() <= tol,
            "{what}[{t}] = {a}, closed form {b}"
        );
    }

    #[test]
    fn linear_betas_match_the_paper_at_1000_steps() {
        let s = NoiseSchedule::new(BetaSchedule::Linear {}, 1000);
        assert_eq!(s.betas[0], 1e-4);
        assert_eq!(s.betas[999], 0.02);
        // Linear spacing: the middle is the mean of the ends.
        close(
            s.betas[500] - s.betas[499],
            (0.02 - 1e-4) / 999.0,
            "Δβ",
            500,
        );
        // The paper's Table/Fig: ᾱ_T ≈ 4.04e-5 at T = 1000 (L_T ≈ 0 in §4).
        assert!(
            (s.alphas_cumprod[999] - 4.036e-5).abs() < 1e-7,
            "{}",
            s.alphas_cumprod[999]
        );
    }

    #[test]
    fn a_single_step_decodes_with_its_beta() {
        let s = NoiseSchedule::from_betas(&[0.3]);
        assert_eq!(s.posterior_variance[0], 0.0);
        close(s.posterior_log_variance_clipped[0], 0.3f64.ln(), "ln σ²", 0);
    }

    #[test]
    fn linear_betas_are_scaled_for_other_lengths_and_clipped() {
        let s = NoiseSchedule::new(BetaSchedule::Linear {}, 10);
        close(s.betas[0], 1e-4 * 100.0, "β", 0);
        // 0.02·100 = 2 would make ᾱ negative: clipped at 0.999.
        close(s.betas[9], 0.999, "β", 9);
        let s = NoiseSchedule::new(BetaSchedule::Linear {}, 100);
        close(s.betas[99], 0.2, "β", 99);
    }

    #[test]
    fn tables_match_closed_forms_for_all_schedules() {
        for schedule in SCHEDULES {
            for t_max in [10usize, 1000] {
                let s = NoiseSchedule::new(schedule, t_max);
                assert_eq!(s.timesteps(), t_max);
                let betas: Vec<f64> = schedule.betas(t_max);
                let mut abar = 1.0f64;
                for (t, &beta) in betas.iter().enumerate() {
                    if schedule != (BetaSchedule::Linear {}) {
                        // β from the closed-form ᾱ ratio, then clipped as documented.
                        let tm = t_max as f64;
                        let ratio = closed_form_alpha_bar(schedule, (t + 1) as f64, tm)
                            / closed_form_alpha_bar(schedule, t as f64, tm);
                        close(beta as f32, (1.0 - ratio).clamp(0.0, MAX_BETA), "β", t);
                    }
                    let abar_prev = abar;
                    abar *= 1.0 - beta;
                    close(s.betas[t], beta, "β", t);
                    close(s.log_betas[t], beta.ln(), "ln β", t);
                    close(s.alphas[t], 1.0 - beta, "α", t);
                    close(s.alphas_cumprod[t], abar, "ᾱ", t);
                    close(s.alphas_cumprod_prev[t], abar_prev, "ᾱ_prev", t);
                    close(s.sqrt_alphas_cumprod[t], abar.sqrt(), "√ᾱ", t);
                    close(
                        s.sqrt_one_minus_alphas_cumprod[t],
                        (1.0 - abar).sqrt(),
                        "√(1-ᾱ)",
                        t,
                    );
                    close(
                        s.log_one_minus_alphas_cumprod[t],
                        (1.0 - abar).ln(),
                        "ln(1-ᾱ)",
                        t,
                    );
                    let rel = |a: f32, b: f64, what: &str| {
                        assert!(
                            ((a as f64 - b) / b).abs() < 1e-6,
                            "{what}[{t}] = {a}, closed form {b} ({schedule:?}, T={t_max})"
                        )
                    };
                    rel(s.sqrt_recip_alphas_cumprod[t], 1.0 / abar.sqrt(), "√(1/ᾱ)");
                    rel(
                        s.sqrt_recipm1_alphas_cumprod[t],
                        (1.0 / abar - 1.0).sqrt(),
                        "√(1/ᾱ-1)",
                    );
                    let var = beta * (1.0 - abar_prev) / (1.0 - abar);
                    close(s.posterior_variance[t], var, "β̃", t);
                    if t > 0 {
                        close(s.posterior_log_variance_clipped[t], var.ln(), "ln β̃", t);
                    }
                    close(
                        s.posterior_mean_coef1[t],
                        beta * abar_prev.sqrt() / (1.0 - abar),
                        "coef1",
                        t,
                    );
                    close(
                        s.posterior_mean_coef2[t],
                        (1.0 - abar_prev) * (1.0 - beta).sqrt() / (1.0 - abar),
                        "coef2",
                        t,
                    );
                    rel(s.snr[t], abar / (1.0 - abar), "snr");
                }
                // The first posterior variance is exactly 0; its log is the second step's.
                assert_eq!(s.posterior_variance[0], 0.0);
                assert_eq!(
                    s.posterior_log_variance_clipped[0],
                    s.posterior_log_variance_clipped[1]
                );
                // ᾱ decreases strictly: every β > 0.
                assert!(
                    s.alphas_cumprod.windows(2).all(|w| w[1] < w[0]),
                    "{schedule:?}"
                );
            }
        }
    }

    #[test]
    fn cosine_alpha_bar_is_the_squared_cosine() {
        // ᾱ_t = f(t)/f(0) holds exactly while no β is clipped (all but the last steps).
        let s = NoiseSchedule::new(BetaSchedule::COSINE, 1000);
        let f = |t: f64| {
            ((t / 1000.0 + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                .cos()
                .powi(2)
        };
        for t in [0usize, 100, 500, 900] {
            close(s.alphas_cumprod[t], f((t + 1) as f64) / f(0.0), "ᾱ", t);
        }
        assert_eq!(s.betas[999], 0.999);
    }
}
