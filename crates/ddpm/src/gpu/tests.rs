//! The GPU kernels against burn's composites on the same wgpu device (Mesa's lavapipe where
//! there is no GPU), and against the CPU kernels on the same values.

use burn::tensor::{Device, DeviceKind, Distribution, Tensor, TensorData};

use crate::kernels;
use crate::test_util::{close, same_outputs_and_gradients, values};
use crate::unet::ops::norm_film_silu_composite;

/// Held by the tests that turn the kernels on and off, which is for the whole process.
static SWITCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn wgpu() -> Device {
    Device::wgpu(DeviceKind::DefaultDevice)
}

/// `h` `[3, 6, 5, 7]` (more units than one cube of the smallest size), the gain `[1, 6, 1, 1]`,
/// the FiLM scale and shift `[3, 6, 1, 1]`, and the output's gradient `w` like `h`. `h` and `w`
/// are laid out channels-last, as burn's convolutions may leave them.
fn inputs(device: &Device) -> [Tensor<4>; 5] {
    let normal = Distribution::Normal(0.0, 1.0);
    let channels_last = || Tensor::<4>::random([3, 5, 7, 6], normal, device).permute([0, 3, 1, 2]);
    [
        channels_last(),
        Tensor::random([1, 6, 1, 1], Distribution::Uniform(0.5, 2.0), device),
        Tensor::random([3, 6, 1, 1], normal, device),
        Tensor::random([3, 6, 1, 1], normal, device),
        channels_last(),
    ]
}

/// With and without FiLM: the kernel's output and its gradients for the input, the gain, and
/// the FiLM scale and shift equal the composite's, both on the GPU with autodiff.
#[test]
fn norm_film_silu_kernel_on_the_gpu_equals_the_composite_with_gradients() {
    let device = wgpu().autodiff();
    let [h, gain, scale, shift, w] = inputs(&device).map(|t| t.require_grad());
    assert!(crate::gpu::on_cube(&h));
    for film in [true, false] {
        // Built twice: each backward pass consumes its graph.
        let film_of = || match film {
            true => (
                gain.clone() * scale.clone().add_scalar(1.0),
                Some(shift.clone()),
            ),
            false => (gain.clone(), None),
        };
        let ((a, s), (a2, s2)) = (film_of(), film_of());
        let kernel = kernels::norm_film_silu(h.clone(), a, s);
        let composite = norm_film_silu_composite(h.clone(), a2, s2);
        let mut leaves = vec![("h", &h), ("gain", &gain)];
        if film {
            leaves.extend([("scale", &scale), ("shift", &shift)]);
        }
        same_outputs_and_gradients(kernel, composite, &w, &leaves);
    }
}

/// A pixel that is zero in every channel (its norm floored at 1e-12, where the composite's
/// gradient differs): the GPU kernel gives the CPU kernel's output and gradients.
#[test]
fn norm_film_silu_kernel_on_the_gpu_equals_the_cpu_kernel_at_a_zero_pixel() {
    let h = [0.0, 3.0, 0.5, 0.0, 4.0, -1.0];
    let (a, s, g) = ([2.0, 0.5], [0.3, -0.2], [1.0, -0.5, 2.0, 0.25, 1.0, -1.0]);
    let run = |device: Device| {
        let device = device.autodiff();
        let tensor = |v: &[f32], shape: [usize; 4]| {
            Tensor::<4>::from_data(TensorData::new(v.to_vec(), shape), &device).require_grad()
        };
        let (h, a, s) = (
            tensor(&h, [1, 2, 1, 3]),
            tensor(&a, [1, 2, 1, 1]),
            tensor(&s, [1, 2, 1, 1]),
        );
        let y = kernels::norm_film_silu(h.clone(), a.clone(), Some(s.clone()));
        let grads = (y.clone() * tensor(&g, [1, 2, 1, 3])).sum().backward();
        let grad = |t: &Tensor<4>| values(t.grad(&grads).expect("grad"));
        [values(y), grad(&h), grad(&a), grad(&s)]
    };
    let (gpu, cpu) = (run(wgpu()), run(Device::flex()));
    for (name, (got, want)) in ["y", "dh", "da", "ds"].iter().zip(gpu.iter().zip(&cpu)) {
        close(got, want, name);
    }
    // The zero pixel's gradient passes through 1 / 1e-12: large, finite.
    assert!(
        cpu[1][0].abs() > 1e11 && cpu[1][0].is_finite(),
        "{}",
        cpu[1][0]
    );
}

/// Along every axis of a 4-D tensor laid out channels-last, with logits large enough to
/// overflow `exp` unless the maximum is taken out: the kernel's softmax and its gradient equal
/// burn's, on the GPU with autodiff.
#[test]
fn softmax_kernel_on_the_gpu_equals_burns_along_every_axis() {
    let device = wgpu().autodiff();
    let normal = Distribution::Normal(0.0, 3.0);
    let x = Tensor::<4>::random([2, 5, 4, 3], normal, &device)
        .permute([0, 3, 1, 2])
        .add_scalar(100.0)
        .require_grad();
    let w = Tensor::<4>::random([2, 3, 5, 4], normal, &device);
    for dim in 0..4 {
        let kernel = kernels::softmax(x.clone(), dim);
        let burn = burn::tensor::activation::softmax(x.clone(), dim);
        same_outputs_and_gradients(kernel, burn, &w, &[("x", &x)]);
    }
}

/// `got` against `want` within [`close`] after both are divided by `want`'s largest magnitude:
/// Adam's moments and steps are small numbers, compared relative to their own size.
fn close_scaled(got: &[f32], want: &[f32], what: &str) {
    let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(scale > 0.0, "{what}: all zero");
    let scaled = |v: &[f32]| v.iter().map(|x| x / scale).collect::<Vec<_>>();
    close(&scaled(got), &scaled(want), what);
}

/// Three steps of the GPU kernel's Adam equal burn's `Adam` after burn's norm clipping, for the
/// parameter's moves and both moments: a gradient the clipping scales down, one it leaves
/// alone, and no clipping; the gradient laid out channels-last. Clipped, the small tensor
/// takes the one-launch kernel and the large one (past [`ONE_LAUNCH_MAX`]) the other.
#[test]
fn adam_kernel_on_the_gpu_equals_burns_clipped_adam() {
    use burn::grad_clipping::GradientClipping;
    use burn::optim::{AdamConfig, Optimizer};

    use crate::gpu::adam::{AdamStep, ONE_LAUNCH_MAX, adam_step};

    let device = wgpu();
    let (lr, beta_1, beta_2, epsilon) = (0.01, 0.9, 0.99, 1e-5);
    let adam = AdamConfig::new()
        .with_beta_1(beta_1)
        .with_beta_2(beta_2)
        .with_epsilon(epsilon)
        .build();
    let normal = Distribution::Normal(0.0, 1.0);
    let (small, large) = ([3, 4, 5, 6], [3, 8, 13, 14]);
    const { assert!(360 <= ONE_LAUNCH_MAX && 4368 > ONE_LAUNCH_MAX) };
    for (max_norm, size, [b, c, h, w]) in [
        (Some(1.0), 10.0, small),
        (Some(1.0), 0.01, small),
        (Some(1.0), 10.0, large),
        (Some(1.0), 0.01, large),
        (None, 3.0, small),
    ] {
        let p0 = Tensor::<4>::random([b, c, h, w], normal, &device);
        let (mut p_burn, mut state) = (p0.clone(), None);
        let (mut p, mut m, mut v) = (p0.clone(), p0.zeros_like(), p0.zeros_like());
        for time in 1..=3 {
            let g = Tensor::<4>::random([b, h, w, c], normal, &device).permute([0, 3, 1, 2]);
            // Each element about `size / √n`: a norm of about `size`.
            let g = g.mul_scalar(size / ((b * c * h * w) as f32).sqrt());
            let clipped = match max_norm {
                Some(n) => GradientClipping::Norm(n).clip_gradient(g.clone()),
                None => g.clone(),
            };
            (p_burn, state) = adam.step(lr as f64, p_burn, clipped, state);
            let at = AdamStep {
                lr,
                beta_1,
                beta_2,
                epsilon,
                time,
                max_norm,
            };
            [p, m, v] = adam_step(p, g, m, v, at);
        }
        let moments = state.expect("state").momentum;
        assert_eq!(moments.time, 3);
        let what = format!("max_norm {max_norm:?}, gradient norm {size}, {b}×{c}×{h}×{w}");
        let moved = |t: &Tensor<4>| values(t.clone() - p0.clone());
        close_scaled(&moved(&p), &moved(&p_burn), &format!("{what}: parameter"));
        close_scaled(&values(m), &values(moments.moment_1), &format!("{what}: m"));
        close_scaled(&values(v), &values(moments.moment_2), &format!("{what}: v"));
    }
}

/// Clipping the norm of all gradients together: the kernels' sum of squares over a small and a
/// large tensor (one launch, and burn's chain) equals burn's, and two steps of each tensor
/// clipped by it equal burn's Adam after scaling the gradients by min(1, max / ‖g‖), for norms
/// the clipping scales down (by another factor each step) and norms it leaves alone.
#[test]
fn adam_clipped_by_all_gradients_equals_burns_scaled_adam() {
    use burn::optim::{AdamConfig, Optimizer};

    use crate::gpu::adam::{AdamStep, adam_step_clipped_by, add_sum_of_squares};

    let device = wgpu();
    let (lr, beta_1, beta_2, epsilon) = (0.01, 0.9, 0.99, 1e-8);
    let adam = AdamConfig::new()
        .with_beta_1(beta_1)
        .with_beta_2(beta_2)
        .with_epsilon(epsilon)
        .build();
    let normal = Distribution::Normal(0.0, 1.0);
    let shapes = [[3, 4, 5, 6], [3, 8, 13, 14]];
    for sizes in [[10.0, 3.0], [0.01, 0.02]] {
        let p0: Vec<Tensor<4>> = shapes
            .iter()
            .map(|&s| Tensor::<4>::random(s, normal, &device))
            .collect();
        let mut burn: Vec<_> = p0.iter().map(|p| (p.clone(), None)).collect();
        let mut ours: Vec<_> = p0
            .iter()
            .map(|p| [p.clone(), p.zeros_like(), p.zeros_like()])
            .collect();
        for (time, size) in (1..).zip(sizes) {
            // Channels-last, as convolutions' gradients come; a norm of about `size` in all.
            let grads: Vec<Tensor<4>> = shapes
                .iter()
                .map(|&[b, c, h, w]| {
                    let g = Tensor::<4>::random([b, h, w, c], normal, &device);
                    let n = (2 * b * c * h * w) as f32;
                    g.permute([0, 3, 1, 2]).mul_scalar(size / n.sqrt())
                })
                .collect();
            let sumsq = grads
                .iter()
                .fold(Tensor::<1>::zeros([1], &device), |acc, g| {
                    add_sum_of_squares(acc, g.clone())
                });
            let want: f32 = grads
                .iter()
                .map(|g| values(g.clone().square().sum())[0])
                .sum();
            close_scaled(&values(sumsq.clone()), &[want], "sum of squares");
            let factor = (1.0 / want.sqrt()).min(1.0);
            for ((g, (p, state)), [q, m, v]) in grads.into_iter().zip(&mut burn).zip(&mut ours) {
                let scaled = g.clone().mul_scalar(factor);
                (*p, *state) = adam.step(lr as f64, p.clone(), scaled, state.take());
                let at = AdamStep {
                    lr,
                    beta_1,
                    beta_2,
                    epsilon,
                    time,
                    max_norm: Some(1.0),
                };
                let operands = [q.clone(), g, m.clone(), v.clone()];
                [*q, *m, *v] = adam_step_clipped_by(operands, sumsq.clone(), at);
            }
        }
        for ((p0, (p, state)), [q, m, v]) in p0.iter().zip(burn).zip(ours) {
            let what = format!("norms {sizes:?}, {:?}", p0.dims());
            let moments = state.expect("state").momentum;
            let moved = |t: Tensor<4>| values(t - p0.clone());
            close_scaled(&moved(q), &moved(p), &format!("{what}: parameter"));
            close_scaled(&values(m), &values(moments.moment_1), &format!("{what}: m"));
            close_scaled(&values(v), &values(moments.moment_2), &format!("{what}: v"));
        }
    }
}

/// The EMA kernel's update equals burn's `ema · decay + θ · (1 − decay)`, for an average laid
/// out channels-last and a decay of 0 (a copy) as well.
#[test]
fn ema_kernel_on_the_gpu_equals_burns_lerp() {
    let device = wgpu();
    let normal = Distribution::Normal(0.0, 1.0);
    let ema = Tensor::<4>::random([2, 5, 4, 3], normal, &device).permute([0, 3, 1, 2]);
    let weights = Tensor::<4>::random([2, 3, 5, 4], normal, &device);
    for decay in [0.999, 0.5, 0.0] {
        let kernel = crate::gpu::ema::ema_lerp(ema.clone(), weights.clone(), decay);
        let burn = ema.clone().mul_scalar(decay) + weights.clone().mul_scalar(1.0 - decay);
        close(&values(kernel), &values(burn), &format!("decay {decay}"));
    }
}

/// The attentions' RMSNorm through the kernel (no SiLU, no shift: `s` unread) equals burn's
/// `normalize(h) · gain` for a channels-last `h`, with a zero pixel among the others.
#[test]
fn rms_norm_kernel_on_the_gpu_equals_the_composite() {
    let device = wgpu();
    let [h, gain, ..] = inputs(&device);
    let mask = Tensor::<4>::ones([3, 6, 5, 7], &device).slice_assign(
        [0..1, 0..6, 0..1, 0..1],
        Tensor::zeros([1, 6, 1, 1], &device),
    );
    let h = h * mask;
    let kernel = crate::gpu::rms_norm::rms_norm_tensor(h.clone(), gain.clone(), false);
    let composite = crate::unet::ops::normalize(h) * gain;
    close(&values(kernel), &values(composite), "y");
}

/// With autodiff (training), the RMSNorm kernel's output and its gradients for the input and
/// the gain equal the composite's, and so do the norm-then-SiLU's (a `Block` without FiLM).
#[test]
fn rms_norm_kernel_on_the_gpu_equals_the_composite_with_gradients() {
    let device = wgpu().autodiff();
    let [h, gain, _, _, w] = inputs(&device).map(|t| t.require_grad());
    for silu in [false, true] {
        let kernel = crate::gpu::rms_norm::rms_norm_tensor(h.clone(), gain.clone(), silu);
        let composite = match silu {
            true => norm_film_silu_composite(h.clone(), gain.clone(), None),
            false => crate::unet::ops::normalize(h.clone()) * gain.clone(),
        };
        same_outputs_and_gradients(kernel, composite, &w, &[("h", &h), ("gain", &gain)]);
    }
}

/// Sampling's norms, which make their factor from the stored gain and the FiLM projection's
/// scale and shift in the kernel (the scale and shift strided views of one projection, as the
/// `ResnetBlock` gives them), equal the composite with and without FiLM and SiLU.
#[test]
fn stored_norm_kernel_on_the_gpu_equals_the_composite() {
    use crate::unet::ops::{gain, normalize};

    let device = wgpu();
    let [h, g, ..] = inputs(&device);
    let film = Tensor::<4>::random([3, 12, 1, 1], Distribution::Normal(0.0, 1.0), &device);
    let (scale, shift) = (film.clone().narrow(1, 0, 6), film.clone().narrow(1, 6, 6));
    for (with_film, silu) in [(true, true), (false, true), (false, false), (true, false)] {
        let scale_shift = with_film.then(|| (scale.clone(), shift.clone()));
        let kernel =
            crate::gpu::sampling_norm::stored_norm(h.clone(), g.clone(), scale_shift, silu);
        let mut composite = normalize(h.clone()) * gain(g.clone());
        if with_film {
            composite = composite * scale.clone().add_scalar(1.0) + shift.clone();
        }
        if silu {
            composite = burn::tensor::activation::silu(composite);
        }
        let what = format!("film {with_film}, silu {silu}");
        close(&values(kernel), &values(composite), &what);
    }
    // One FiLM for the whole batch (one time for every image), broadcast as burn's are.
    let one = film.narrow(0, 0, 1);
    let (scale, shift) = (one.clone().narrow(1, 0, 6), one.narrow(1, 6, 6));
    let kernel = crate::gpu::sampling_norm::stored_norm(
        h.clone(),
        g.clone(),
        Some((scale.clone(), shift.clone())),
        true,
    );
    let composite = normalize(h) * gain(g) * scale.add_scalar(1.0) + shift;
    let composite = burn::tensor::activation::silu(composite);
    close(
        &values(kernel),
        &values(composite),
        "one FiLM for the batch",
    );
}

/// A class-conditional U-Net with both attentions predicts the same with the core's GPU
/// kernels on and its convolutions' weights laid out channels-last (`Unet::for_sampling`) as
/// with burn's own operations.
#[test]
fn unet_for_sampling_with_the_gpu_kernels_predicts_what_burn_does() {
    use burn::tensor::Int;

    use crate::unet::UnetConfig;

    let device = wgpu();
    let unet = UnetConfig::new(8)
        .with_dim_mults(vec![1, 2])
        .with_channels(3)
        .with_attn_heads(2)
        .with_attn_dim_head(4)
        .with_num_classes(Some(3))
        .init(&device);
    let x = Tensor::<4>::random([2, 3, 8, 8], Distribution::Normal(0.0, 1.0), &device);
    let time = Tensor::<1>::from_data(TensorData::from([3.0f32, 700.0]), &device);
    let classes = Tensor::<1, Int>::from_data(TensorData::from([1i64, 3]), &device);
    let predict = |unet: &crate::Unet| {
        values(unet.forward(x.clone(), time.clone(), None, Some(classes.clone())))
    };
    let _switch = SWITCH
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    crate::gpu::set_enabled(false);
    let burn = predict(&unet);
    crate::gpu::set_enabled(true);
    let kernels = predict(&unet.for_sampling());
    crate::gpu::set_enabled(false);
    close(&kernels, &burn, "prediction");
}

/// The check a program runs before it trusts the kernels, natively and as a browser runs it
/// (read back asynchronously): it passes where they work and leaves them on, and it fails where
/// one of them is wrong (its input shifted by a fault only tests can make). 12×8 images: an odd
/// size at the lowest level, and not square.
#[test]
fn the_sampling_check_passes_on_lavapipe_and_fails_on_a_wrong_kernel() {
    use crate::gpu::verify::{FAULT, check_sampling, check_sampling_async};
    use crate::unet::UnetConfig;

    let device = wgpu();
    let unet = UnetConfig::new(8)
        .with_dim_mults(vec![1, 2, 2])
        .with_attn_heads(2)
        .with_attn_dim_head(4)
        .init(&device)
        .for_sampling();
    let _switch = SWITCH
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    crate::gpu::set_enabled(true);
    let check = check_sampling(&unet, &device, [12, 8]);
    let check_async = futures_lite::future::block_on(check_sampling_async(&unet, &device, [12, 8]));
    let left_on = crate::gpu::enabled();
    FAULT.set(0.01);
    let wrong = check_sampling(&unet, &device, [12, 8]);
    let wrong_async = futures_lite::future::block_on(check_sampling_async(&unet, &device, [12, 8]));
    FAULT.set(0.0);
    crate::gpu::set_enabled(false);
    assert_eq!(check, Ok(()));
    assert_eq!(check_async, Ok(()));
    assert!(left_on);
    for wrong in [wrong, wrong_async] {
        let why = wrong.expect_err("a wrong kernel fails the check");
        assert!(
            why.starts_with("predict ") && why.contains("where burn's kernels predict"),
            "{why}"
        );
    }
}

/// The training check passes on lavapipe, and fails on a wrong `Block` gradient (the backward
/// kernel's fault) and on an optimizer that steps otherwise with the kernels on, naming the
/// parameter; an optimizer step here is SGD, so that only the fault differs.
#[test]
fn the_training_check_passes_on_lavapipe_and_fails_on_a_wrong_gradient_or_step() {
    use burn::optim::{GradientsParams, SgdConfig};

    use crate::gpu::verify::{FAULT, check_training};
    use crate::unet::{Unet, UnetConfig};

    let device = wgpu().autodiff();
    let unet = UnetConfig::new(8)
        .with_dim_mults(vec![1, 2])
        .with_attn_heads(2)
        .with_attn_dim_head(4)
        .init(&device);
    // SGD at a rate the kernels' switch skews, when asked to.
    let sgd = |skew: f64| {
        move |model: Unet, grads| {
            let grads = GradientsParams::from_grads(grads, &model);
            let lr = if skew != 0.0 && crate::gpu::enabled() {
                0.1 + skew
            } else {
                0.1
            };
            SgdConfig::new().init().step(lr, model, grads)
        }
    };
    let _switch = SWITCH
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    crate::gpu::set_enabled(true);
    let check = check_training(&unet, &device, [12, 8], 2, sgd(0.0));
    let left_on = crate::gpu::enabled();
    FAULT.set(0.01);
    let wrong_gradient = check_training(&unet, &device, [12, 8], 2, sgd(0.0));
    FAULT.set(0.0);
    let wrong_step = check_training(&unet, &device, [12, 8], 2, sgd(0.001));
    crate::gpu::set_enabled(false);
    assert_eq!(check, Ok(()));
    assert!(left_on);
    let why = wrong_gradient.expect_err("a wrong gradient fails the check");
    assert!(
        why.starts_with("give ") && why.contains("'s gradient"),
        "{why}"
    );
    let why = wrong_step.expect_err("a wrong step fails the check");
    // 0.101 against 0.1: every parameter moves 1 % further.
    assert!(
        why.starts_with("change ") && why.contains(" 1.00 % away"),
        "{why}"
    );
    // The first parameter the U-Net visits: the initial convolution's.
    assert!(why.contains("init_conv."), "{why}");
}

/// `LinearAttention`'s core through the GPU kernels equals the burn composite, for a projection
/// laid out channels-last and memory slots whose logits are large (the softmaxes take their
/// maximum out first).
#[test]
fn linear_attention_kernels_on_the_gpu_equal_the_composite() {
    use crate::unet::ops::linear_attention_composite;

    let device = wgpu();
    let normal = Distribution::Normal(0.0, 2.0);
    // A real model's heads of 32 channels too: the kernels unroll loops over them.
    for (heads, dim_head, slots) in [(2, 4, 3), (4, 32, 4)] {
        let qkv = Tensor::<4>::random([2, 5, 7, 3 * heads * dim_head], normal, &device)
            .permute([0, 3, 1, 2]);
        let memory =
            Tensor::<4>::random([2, heads, dim_head, slots], normal, &device).add_scalar(50.0);
        let kernel = crate::gpu::attention::linear_attention(qkv.clone(), memory.clone());
        let composite = burn_only(|| linear_attention_composite(qkv, memory, heads));
        assert_eq!(kernel.dims(), [2, heads * dim_head, 5, 7]);
        close(
            &values(kernel),
            &values(composite),
            &format!("{dim_head} per head"),
        );
    }
}

/// `Attention`'s core through the GPU kernel equals the burn composite, for a projection laid
/// out channels-last and memory slots whose logits dominate (the softmax takes its maximum out
/// first).
#[test]
fn attention_kernel_on_the_gpu_equals_the_composite() {
    let device = wgpu();
    let normal = Distribution::Normal(0.0, 1.0);
    for (heads, dim_head, slots) in [(2, 4, 3), (4, 32, 4)] {
        let qkv = Tensor::<4>::random([2, 3, 5, 3 * heads * dim_head], normal, &device)
            .permute([0, 3, 1, 2])
            .add_scalar(3.0);
        let memory =
            Tensor::<4>::random([2, heads, slots, dim_head], normal, &device).mul_scalar(8.0);
        let kernel = crate::gpu::attention::attention(qkv.clone(), memory.clone());
        let composite = burn_only(|| crate::unet::ops::attention_composite(qkv, memory, heads));
        assert_eq!(kernel.dims(), [2, heads * dim_head, 3, 5]);
        close(
            &values(kernel),
            &values(composite),
            &format!("{dim_head} per head"),
        );
    }
}

/// `f` with burn's kernels alone: a composite's softmax would take the GPU kernel while another
/// test has the switch on.
fn burn_only<T>(f: impl FnOnce() -> T) -> T {
    let _switch = SWITCH
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    crate::gpu::set_enabled(false);
    f()
}
