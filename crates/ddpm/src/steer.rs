//! Steering the reverse process with the same network, no retraining: SDEdit's "finish my
//! drawing" (Meng et al. 2022), RePaint's inpainting (Lugmayr et al. 2022) and interpolation
//! between two seeds' starting noise. The [`Sampler`](crate::Sampler) runs them; this module
//! holds what they change: where a run starts, its schedule of steps, what replaces the known
//! region after each step.

use burn::tensor::{Device, Tensor, TensorData};

/// How a run is steered (see the module docs).
// One per run: the size of its tensor handles does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Default)]
pub enum Steer {
    /// Plain sampling from x_T ~ N(0, I).
    #[default]
    None,
    /// SDEdit: `image` (in [−1, 1], one per image of the batch) noised with q(x_t₀ | x₀) to
    /// t₀ = strength·T, then denoised from there. Strength 0 returns the image; strength 1 is
    /// plain sampling (x_T is all noise, so the image is not used).
    Edit {
        /// `[batch, channels, height, width]`
        image: Tensor<4>,
        /// In [0, 1].
        strength: f64,
    },
    /// RePaint: after every step the region where `mask` is 1 is replaced by a sample of
    /// q(x_t | x₀) of `image`, and at the end by `image` itself; every `jump` steps, counted
    /// from the end as in RePaint's schedule, the run goes back `jump` steps (re-noised with
    /// q(x_{t+j} | x_t)) `repeats − 1` times, so that the generated region agrees with the
    /// kept one. `jump = repeats = 1` is plain replacement.
    Inpaint {
        /// `[batch, channels, height, width]`
        image: Tensor<4>,
        /// 1 = keep, 0 = generate; `[batch, 1 or channels, height, width]`
        mask: Tensor<4>,
        /// Steps between jumps back.
        jump: usize,
        /// How often each stretch of `jump` steps is run.
        repeats: usize,
    },
    /// Image i of n starts from the spherical interpolation, at i/(n−1), of the request's
    /// seed's x_T and this seed's (each the x_T of a one-image run), so the ends are those two
    /// seeds' images. Needs DDIM with η = 0: a path without injected noise is smooth.
    Interpolate {
        /// The other end's seed.
        other: u64,
    },
}

/// How much of an image a keep-mask (1 keeps, 0 is generated) keeps: inpainting needs a
/// [`Kept::Part`], and each home says so in its own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Every value is 0: nothing to keep, plain sampling.
    Nothing,
    /// Some kept, some generated.
    Part,
    /// Every value is 1: nothing to generate.
    All,
}

impl Kept {
    /// What `mask` keeps (values ≥ 0.5 keep).
    pub fn of(mask: &[f32]) -> Kept {
        let kept = mask.iter().filter(|&&v| v >= 0.5).count();
        match kept {
            0 => Kept::Nothing,
            k if k == mask.len() => Kept::All,
            _ => Kept::Part,
        }
    }
}

/// A batch `[n, c, h, w]` from host values: one image (`c·h·w` values) that every image of the
/// batch starts from, or one per image (`n·c·h·w`). `None` when the count is neither.
pub fn batch(
    values: &[f32],
    n: usize,
    [c, h, w]: [usize; 3],
    device: &Device,
) -> Option<Tensor<4>> {
    let one = c * h * w;
    let all = match values.len() {
        len if len == one => values.repeat(n),
        len if len == n * one => values.to_vec(),
        _ => return None,
    };
    Some(Tensor::from_data(
        TensorData::new(all, [n, c, h, w]),
        device,
    ))
}

/// One move of a run: a network evaluation from t to the next t (`None`: to x̂₀), or RePaint's
/// jump back from one noise level to a higher one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Move {
    /// Denoise x_t into x_next.
    Step { t: usize, next: Option<usize> },
    /// Re-noise x_from into x_to (to > from) with q(x_to | x_from).
    Renoise { from: usize, to: usize },
}

/// The moves of a run over `pairs` (a sampler's (t, next t), from T down): SDEdit keeps the
/// pairs from t₀ down, RePaint adds its jumps back.
pub(crate) fn moves(pairs: &[(usize, Option<usize>)], steer: &Steer) -> Vec<Move> {
    let step = |&(t, next): &(usize, Option<usize>)| Move::Step { t, next };
    match *steer {
        Steer::Edit { strength, .. } if strength < 1.0 => {
            let t0 = edit_start(pairs, strength);
            pairs
                .iter()
                .filter(|(t, _)| Some(*t) <= t0)
                .map(step)
                .collect()
        }
        Steer::Inpaint { jump, repeats, .. } if jump > 0 && repeats > 1 => {
            let mut moves = Vec::new();
            for (k, pair) in pairs.iter().enumerate() {
                moves.push(step(pair));
                // RePaint's schedule (its `get_schedule_jump`, and diffusers' scheduler)
                // counts from the end: it jumps when the next step is the 0th, jth, 2jth… from
                // the last, the last stretch included, but not within `jump` of the start.
                let done = k + 1;
                let next_from_last = pairs.len().saturating_sub(done + 1);
                let jumps = done >= jump && next_from_last.is_multiple_of(jump);
                if let (true, Some(from)) = (jumps, pair.1) {
                    for _ in 1..repeats {
                        let back = &pairs[done - jump..done];
                        moves.push(Move::Renoise {
                            from,
                            to: back[0].0,
                        });
                        moves.extend(back.iter().map(step));
                    }
                }
            }
            moves
        }
        _ => pairs.iter().map(step).collect(),
    }
}

/// SDEdit's t₀ for `strength` over a run's `pairs`: the largest t of the pairs at most
/// strength·T − 1 (`None` at strength 0, where nothing is denoised).
pub(crate) fn edit_start(pairs: &[(usize, Option<usize>)], strength: f64) -> Option<usize> {
    let timesteps = pairs.first().map_or(0, |(t, _)| t + 1);
    let limit = (strength * timesteps as f64).round() as usize;
    pairs.iter().map(|(t, _)| *t).filter(|t| *t < limit).max()
}

/// The spherical interpolation of `a` and `b` at `w` (Shoemake 1985): the path between two
/// Gaussian noises that stays at their norm, which a linear one would shrink.
pub(crate) fn slerp(a: &[f32], b: &[f32], w: f64) -> Vec<f32> {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let cos = (dot / (norm(a) * norm(b))).clamp(-1.0, 1.0);
    let theta = cos.acos();
    let (ca, cb) = if theta.sin().abs() < 1e-6 {
        (1.0 - w, w)
    } else {
        let s = theta.sin();
        (((1.0 - w) * theta).sin() / s, (w * theta).sin() / s)
    };
    a.iter()
        .zip(b)
        .map(|(x, y)| (ca * f64::from(*x) + cb * f64::from(*y)) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ddim(pairs: &[(usize, i64)]) -> Vec<(usize, Option<usize>)> {
        pairs
            .iter()
            .map(|&(t, n)| (t, usize::try_from(n).ok()))
            .collect()
    }

    #[test]
    fn edit_keeps_the_steps_from_t0_down() {
        let pairs = ddim(&[(9, 7), (7, 5), (5, 3), (3, 1), (1, -1)]);
        let ts = |s: f64| -> Vec<usize> {
            let steer = Steer::Edit {
                image: Tensor::empty([1, 1, 1, 1], &crate::test_util::device()),
                strength: s,
            };
            moves(&pairs, &steer)
                .iter()
                .map(|m| match m {
                    Move::Step { t, .. } => *t,
                    Move::Renoise { .. } => usize::MAX,
                })
                .collect()
        };
        assert_eq!(ts(0.0), Vec::<usize>::new());
        assert_eq!(ts(0.5), [3, 1]);
        assert_eq!(ts(0.6), [5, 3, 1]);
        assert_eq!(ts(1.0), [9, 7, 5, 3, 1]);
    }

    #[test]
    fn repaint_goes_back_every_jump_steps() {
        let pairs = ddim(&[(5, 4), (4, 3), (3, 2), (2, 1), (1, 0), (0, -1)]);
        let steer = Steer::Inpaint {
            image: Tensor::empty([1, 1, 1, 1], &crate::test_util::device()),
            mask: Tensor::empty([1, 1, 1, 1], &crate::test_util::device()),
            jump: 2,
            repeats: 2,
        };
        let s = |t, next| Move::Step {
            t,
            next: Some(next),
        };
        assert_eq!(
            moves(&pairs, &steer),
            [
                s(5, 4),
                s(4, 3),
                s(3, 2),
                Move::Renoise { from: 2, to: 4 },
                s(4, 3),
                s(3, 2),
                s(2, 1),
                s(1, 0),
                Move::Renoise { from: 0, to: 2 },
                s(2, 1),
                s(1, 0),
                Move::Step { t: 0, next: None },
            ]
        );
    }

    /// RePaint's own `get_schedule_jump` (guided_diffusion/scheduler.py, one sample per
    /// step), transliterated: the t's a run visits, ending in −1 for x₀.
    fn get_schedule_jump(t_t: i64, jump_length: i64, jump_n_sample: i64) -> Vec<i64> {
        let mut jumps: std::collections::HashMap<i64, i64> = (0..t_t - jump_length)
            .step_by(jump_length as usize)
            .map(|j| (j, jump_n_sample - 1))
            .collect();
        let (mut t, mut ts) = (t_t, Vec::new());
        while t >= 1 {
            t -= 1;
            ts.push(t);
            if jumps.get(&t).copied().unwrap_or(0) > 0 {
                *jumps.entry(t).or_default() -= 1;
                for _ in 0..jump_length {
                    t += 1;
                    ts.push(t);
                }
            }
        }
        ts.push(-1);
        ts
    }

    #[test]
    fn repaint_jumps_where_repaints_own_schedule_does() {
        for (steps, jump, repeats) in [(20, 5, 3), (250, 10, 10), (23, 5, 2), (7, 1, 3), (9, 4, 1)]
        {
            let pairs: Vec<_> = (0..steps)
                .rev()
                .map(|t: usize| (t, t.checked_sub(1)))
                .collect();
            let steer = Steer::Inpaint {
                image: Tensor::empty([1, 1, 1, 1], &crate::test_util::device()),
                mask: Tensor::empty([1, 1, 1, 1], &crate::test_util::device()),
                jump,
                repeats,
            };
            // Ours as the t's visited: each move ends at its target (−1 for x₀).
            let mut ours = vec![steps as i64 - 1];
            for m in moves(&pairs, &steer) {
                ours.push(match m {
                    Move::Step { next, .. } => next.map_or(-1, |n| n as i64),
                    Move::Renoise { to, .. } => to as i64,
                });
            }
            // Theirs with each jump's one-step climbs merged into one move.
            let theirs = get_schedule_jump(steps as i64, jump as i64, repeats as i64);
            let mut merged: Vec<i64> = vec![theirs[0]];
            for w in theirs.windows(3) {
                if !(w[0] < w[1] && w[1] < w[2]) {
                    merged.push(w[1]);
                }
            }
            merged.push(-1);
            assert_eq!(ours, merged, "T={steps} jump={jump} repeats={repeats}");
        }
    }

    #[test]
    fn a_mask_keeps_nothing_part_or_all() {
        assert_eq!(Kept::of(&[0.0, 0.2, 0.49]), Kept::Nothing);
        assert_eq!(Kept::of(&[0.0, 1.0, 0.5]), Kept::Part);
        assert_eq!(Kept::of(&[1.0, 0.7]), Kept::All);
    }

    #[test]
    fn one_image_or_one_per_image_makes_the_batch() {
        let device = crate::test_util::device();
        let one = batch(&[1.0, 2.0], 3, [1, 1, 2], &device).expect("one image");
        assert_eq!(one.dims(), [3, 1, 1, 2]);
        assert_eq!(
            crate::test_util::values(one),
            [1.0, 2.0, 1.0, 2.0, 1.0, 2.0]
        );
        let each: Vec<f32> = (0..6).map(|i| i as f32).collect();
        let per = batch(&each, 3, [1, 1, 2], &device).expect("one per image");
        assert_eq!(crate::test_util::values(per), each);
        assert!(batch(&[1.0; 4], 3, [1, 1, 2], &device).is_none());
    }

    #[test]
    fn slerp_ends_are_the_inputs_and_the_middle_keeps_the_norm() {
        let (a, b) = (vec![1.0, 0.0], vec![0.0, 1.0]);
        assert_eq!(slerp(&a, &b, 0.0), a);
        let end = slerp(&a, &b, 1.0);
        assert!(
            (end[0] - 0.0).abs() < 1e-7 && (end[1] - 1.0).abs() < 1e-7,
            "{end:?}"
        );
        let mid = slerp(&a, &b, 0.5);
        let half = std::f32::consts::FRAC_1_SQRT_2;
        assert!(
            (mid[0] - half).abs() < 1e-6 && (mid[1] - half).abs() < 1e-6,
            "{mid:?}"
        );
    }

    mod with_a_network {
        use burn::tensor::{Distribution, Tensor};

        use crate::diffusion::{DiffusionConfig, GaussianDiffusion};
        use crate::sampler::{SampleRequest, Sampler, SamplerConfig, SamplerError, SamplerKind};
        use crate::steer::Steer;
        use crate::test_util::{device, values};
        use crate::unet::{Unet, UnetConfig};

        const SHAPE: [usize; 4] = [3, 1, 8, 8];

        fn setup() -> (GaussianDiffusion, Unet) {
            let diffusion = GaussianDiffusion::new(DiffusionConfig {
                timesteps: 20,
                ..DiffusionConfig::default()
            });
            let unet = UnetConfig::new(4)
                .with_dim_mults(vec![1, 2])
                .with_channels(1)
                .with_attn_heads(1)
                .with_attn_dim_head(4)
                .init(&device());
            (diffusion, unet)
        }

        fn ddim(steps: usize) -> SamplerConfig {
            SamplerConfig {
                kind: SamplerKind::Ddim { steps, eta: 0.0 },
                ..SamplerConfig::default()
            }
        }

        /// The final images of a run with `net`, and its network evaluations.
        fn run(
            net: &(GaussianDiffusion, Unet),
            config: SamplerConfig,
            seed: u64,
            n: usize,
            steer: Steer,
        ) -> (Vec<f32>, usize) {
            let (diffusion, unet) = net;
            let request = SampleRequest {
                seed,
                shape: [n, 1, 8, 8],
                classes: None,
            };
            let mut sampler =
                Sampler::new_steered(diffusion, config, request, steer, 0..n, unet, &device())
                    .expect("starts");
            let mut evaluations = 0;
            while sampler.step(unet).is_some() {
                evaluations += 1;
            }
            assert_eq!(evaluations, sampler.total_steps());
            (values(sampler.sample().clone()), evaluations)
        }

        fn image() -> Tensor<4> {
            Tensor::random(SHAPE, Distribution::Uniform(-1.0, 1.0), &device())
        }

        #[test]
        fn sdedit_at_strength_0_returns_the_drawing_and_at_1_is_plain_sampling() {
            let net = setup();
            let drawing = image();
            let edit = |strength| Steer::Edit {
                image: drawing.clone(),
                strength,
            };
            let (same, evaluations) = run(&net, ddim(10), 7, 3, edit(0.0));
            assert_eq!((same, evaluations), (values(drawing.clone()), 0));
            assert_eq!(
                run(&net, ddim(10), 7, 3, edit(1.0)),
                run(&net, ddim(10), 7, 3, Steer::None)
            );
            assert_eq!(run(&net, ddim(10), 7, 3, edit(0.5)).1, 5);
        }

        #[test]
        fn inpainting_keeps_the_known_pixels_and_resamples_as_asked() {
            let net = setup();
            let known = image();
            let mask = Tensor::<4>::random([3, 1, 8, 8], Distribution::Bernoulli(0.5), &device());
            let inpaint = |jump, repeats| Steer::Inpaint {
                image: known.clone(),
                mask: mask.clone(),
                jump,
                repeats,
            };
            let ddpm = SamplerConfig::default();
            let (painted, evaluations) = run(&net, ddpm, 3, 3, inpaint(1, 1));
            assert_eq!(evaluations, 20);
            // 20 steps, back 5 every 5 steps (not after the last), run twice more each time.
            assert_eq!(run(&net, ddpm, 3, 3, inpaint(5, 3)).1, 20 + 3 * 2 * 5);
            let (known, keep) = (values(known.clone()), values(mask.clone()));
            for ((p, k), m) in painted.iter().zip(&known).zip(&keep) {
                if *m == 1.0 {
                    assert_eq!(p, k);
                }
            }
            assert!(
                painted.iter().zip(&known).any(|(p, k)| p != k),
                "something is generated"
            );
        }

        #[test]
        fn interpolation_ends_are_the_two_seeds_images() {
            let net = setup();
            let (strip, _) = run(&net, ddim(5), 11, 4, Steer::Interpolate { other: 12 });
            let (a, _) = run(&net, ddim(5), 11, 1, Steer::None);
            let (b, _) = run(&net, ddim(5), 12, 1, Steer::None);
            let close = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-5);
            assert!(close(&strip[..64], &a), "first image is seed 11's");
            assert!(close(&strip[3 * 64..], &b), "last image is seed 12's");
            assert!(!close(&strip[64..128], &a) && !close(&strip[64..128], &b));
        }

        #[test]
        fn steered_parts_give_the_whole_runs_images() {
            let (diffusion, unet) = setup();
            let drawing = image();
            for steer in [
                Steer::Edit {
                    image: drawing.clone(),
                    strength: 0.6,
                },
                Steer::Inpaint {
                    image: drawing.clone(),
                    mask: drawing.clone().greater_elem(0.0).float(),
                    jump: 2,
                    repeats: 2,
                },
                Steer::Interpolate { other: 5 },
            ] {
                let request = SampleRequest {
                    seed: 4,
                    shape: SHAPE,
                    classes: None,
                };
                let finish = |part: std::ops::Range<usize>| {
                    let mut s = Sampler::new_steered(
                        &diffusion,
                        ddim(6),
                        request.clone(),
                        steer.clone(),
                        part,
                        &unet,
                        &device(),
                    )
                    .expect("starts");
                    while s.step(&unet).is_some() {}
                    values(s.sample().clone())
                };
                let whole = finish(0..3);
                let parts = [finish(0..1), finish(1..3)].concat();
                let close = whole.iter().zip(&parts).all(|(p, q)| (p - q).abs() < 1e-5);
                assert!(close, "{steer:?}");
            }
        }

        #[test]
        fn bad_steering_is_refused() {
            let (diffusion, unet) = setup();
            let start = |config, steer| {
                let request = SampleRequest {
                    seed: 0,
                    shape: SHAPE,
                    classes: None,
                };
                Sampler::new_steered(&diffusion, config, request, steer, 0..3, &unet, &device())
                    .err()
            };
            let edit = |strength| Steer::Edit {
                image: image(),
                strength,
            };
            assert_eq!(start(ddim(5), edit(1.5)), Some(SamplerError::Strength(1.5)));
            let small = Tensor::<4>::zeros([3, 1, 4, 4], &device());
            let wrong = Steer::Inpaint {
                image: image(),
                mask: small,
                jump: 1,
                repeats: 1,
            };
            assert_eq!(
                start(ddim(5), wrong),
                Some(SamplerError::SteerShape {
                    what: "mask",
                    got: [3, 1, 4, 4],
                    expected: SHAPE
                })
            );
            let zero = Steer::Inpaint {
                image: image(),
                mask: image(),
                jump: 0,
                repeats: 1,
            };
            assert_eq!(
                start(ddim(5), zero),
                Some(SamplerError::Resample {
                    jump: 0,
                    repeats: 1
                })
            );
            let endless = Steer::Inpaint {
                image: image(),
                mask: image(),
                jump: 1,
                repeats: 101,
            };
            assert_eq!(
                start(ddim(5), endless),
                Some(SamplerError::Resample {
                    jump: 1,
                    repeats: 101
                })
            );
            let ddpm = SamplerConfig::default();
            let other = Steer::Interpolate { other: 1 };
            assert_eq!(start(ddpm, other), Some(SamplerError::Interpolation));
        }
    }
}
