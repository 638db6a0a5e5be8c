//! Every kernel against the burn composite it replaces (`unet::ops`).

use burn::tensor::{Device, Distribution, Tensor};

#[cfg(feature = "fused")]
mod conv;
#[cfg(feature = "fused")]
mod linear_attention;

use crate::fused::exp;
use crate::fused::norm_film_silu::{self as kernel, Dims};
use crate::fused::softmax::{self as sm, Axis};
use crate::test_util::{close, device, same_outputs_and_gradients, values};
use crate::unet::ops::norm_film_silu_composite;
#[cfg(feature = "fused")]
use crate::unet::ops::{self, kernels_apply, norm_film_silu, softmax};

const DIMS: Dims = Dims {
    channels: 4,
    pixels: 15,
};

/// `h` `[2, 4, 3, 5]`, the per-channel factor `a` and shift `s` `[2, 4, 1, 1]`, and weights `w`
/// like `h` (the loss is `Σ w·y`, so `w` is the output's gradient).
fn inputs(device: &Device) -> [Tensor<4>; 4] {
    let normal = Distribution::Normal(0.0, 1.0);
    [
        Tensor::random([2, 4, 3, 5], normal, device),
        Tensor::random([2, 4, 1, 1], Distribution::Uniform(0.5, 2.0), device),
        Tensor::random([2, 4, 1, 1], normal, device),
        Tensor::random([2, 4, 3, 5], normal, device),
    ]
}

#[test]
fn kernel_forward_equals_the_composite() {
    let [h, a, s, _] = inputs(&device());
    let want = norm_film_silu_composite(h.clone(), a.clone(), Some(s.clone()));
    let got = kernel::norm_film_silu(&values(h), &values(a), &values(s), DIMS);
    close(&got, &values(want), "y");
}

#[test]
fn kernel_backward_equals_autodiff_of_the_composite() {
    let device = device().autodiff();
    let [h, a, s, w] = inputs(&device).map(|t| t.require_grad());
    let y = norm_film_silu_composite(h.clone(), a.clone(), Some(s.clone()));
    let grads = (y * w.clone()).sum().backward();
    let (dh, da, ds) = kernel::norm_film_silu_backward(
        &values(h.clone()),
        &values(a.clone()),
        &values(s.clone()),
        &values(w),
        DIMS,
    );
    close(&dh, &values(h.grad(&grads).expect("h grad")), "dh");
    close(&da, &values(a.grad(&grads).expect("a grad")), "da");
    close(&ds, &values(s.grad(&grads).expect("s grad")), "ds");
}

#[test]
fn kernel_floors_the_norm_of_an_all_zero_pixel() {
    // One image, two channels, two pixels; pixel 0 is zero in every channel, so u = 0 there
    // and y = silu(s); its gradient passes through `1 / 1e-12` with no projection term.
    let dims = Dims {
        channels: 2,
        pixels: 2,
    };
    let (h, a, s, g) = ([0.0, 3.0, 0.0, 4.0], [2.0, 0.5], [0.3, -0.2], [1.0; 4]);
    let y = kernel::norm_film_silu(&h, &a, &s, dims);
    let silu = |z: f32| z / (1.0 + (-z).exp());
    close(
        &y,
        &[
            silu(0.3),
            silu(0.6 * 2.0 + 0.3),
            silu(-0.2),
            silu(0.8 * 0.5 - 0.2),
        ],
        "y",
    );
    let (dh, ..) = kernel::norm_film_silu_backward(&h, &a, &s, &g, dims);
    let dsilu = |z: f32| {
        let sg = 1.0 / (1.0 + (-z).exp());
        sg * (1.0 + z * (1.0 - sg))
    };
    for (ch, want) in [(0, dsilu(0.3) * 2.0 * 1e12), (1, dsilu(-0.2) * 0.5 * 1e12)] {
        let got = dh[ch * 2];
        assert!((got - want).abs() <= 1e-5 * want.abs(), "{got} vs {want}");
    }
    assert!(dh.iter().all(|d| d.is_finite()));
}

/// The U-Net's call, with and without FiLM, on flex with gradients: the same outputs and the
/// same gradients for the input, the norm's gain, and the FiLM scale and shift as the composite.
#[cfg(feature = "fused-autodiff")]
#[test]
fn norm_film_silu_runs_the_kernel_on_flex_with_the_composites_gradients() {
    let device = device().autodiff();
    let [h, scale, shift, w] = inputs(&device).map(|t| t.require_grad());
    let gain =
        Tensor::<4>::random([1, 4, 1, 1], Distribution::Uniform(0.5, 2.0), &device).require_grad();
    assert!(kernels_apply(&h), "the kernel path is taken");
    for film in [true, false] {
        let scale_shift = film.then(|| (scale.clone(), shift.clone()));
        let fused = norm_film_silu(h.clone(), gain.clone(), scale_shift.clone());
        let (a, s) = match scale_shift {
            Some((scale, shift)) => (ops::gain(gain.clone()) * scale.add_scalar(1.0), Some(shift)),
            None => (ops::gain(gain.clone()), None),
        };
        let composite = norm_film_silu_composite(h.clone(), a, s);
        let mut leaves = vec![("h", &h), ("gain", &gain)];
        if film {
            leaves.extend([("scale", &scale), ("shift", &shift)]);
        }
        same_outputs_and_gradients(fused, composite, &w, &leaves);
    }
}

#[cfg(feature = "fused")]
#[test]
fn norm_film_silu_runs_the_kernel_on_flex_without_gradients() {
    let [h, scale, shift, _] = inputs(&device());
    let gain = Tensor::<4>::random([1, 4, 1, 1], Distribution::Uniform(0.5, 2.0), &device());
    assert!(kernels_apply(&h));
    let fused = norm_film_silu(
        h.clone(),
        gain.clone(),
        Some((scale.clone(), shift.clone())),
    );
    let composite =
        norm_film_silu_composite(h, ops::gain(gain) * scale.add_scalar(1.0), Some(shift));
    close(&values(fused), &values(composite), "y");
}

#[test]
fn softmax_kernel_and_its_gradient_equal_burns_along_every_axis() {
    let device = device().autodiff();
    let normal = Distribution::Normal(0.0, 3.0);
    let x = Tensor::<4>::random([2, 3, 4, 5], normal, &device).require_grad();
    let w = Tensor::<4>::random([2, 3, 4, 5], normal, &device);
    for dim in 0..4 {
        let y = burn::tensor::activation::softmax(x.clone(), dim);
        let grads = (y.clone() * w.clone()).sum().backward();
        let axis = Axis::of(&[2, 3, 4, 5], dim);
        let got = sm::softmax(&values(x.clone()), axis);
        close(&got, &values(y), &format!("softmax along {dim}"));
        let dx = sm::softmax_backward(&got, &values(w.clone()), axis);
        let want = values(x.grad(&grads).expect("x grad"));
        close(&dx, &want, &format!("gradient along {dim}"));
    }
}

#[test]
fn softmax_kernel_survives_large_logits() {
    // exp(1000) overflows: the maximum is subtracted first.
    let axis = Axis { len: 3, inner: 1 };
    let y = sm::softmax(&[1000.0, 1000.0, -1000.0], axis);
    close(&y, &[0.5, 0.5, 0.0], "y");
}

#[cfg(feature = "fused-autodiff")]
#[test]
fn softmax_runs_the_kernel_on_flex_with_burns_gradients() {
    let device = device().autodiff();
    let normal = Distribution::Normal(0.0, 3.0);
    let x = Tensor::<4>::random([2, 3, 4, 5], normal, &device).require_grad();
    let w = Tensor::<4>::random([2, 3, 4, 5], normal, &device);
    assert!(kernels_apply(&x));
    for dim in [2, 3] {
        let fused = softmax(x.clone(), dim);
        let reference = burn::tensor::activation::softmax(x.clone(), dim);
        close(&values(fused.clone()), &values(reference.clone()), "y");
        let g_fused = (fused * w.clone()).sum().backward();
        let g_reference = (reference * w.clone()).sum().backward();
        close(
            &values(x.grad(&g_fused).expect("fused grad")),
            &values(x.grad(&g_reference).expect("reference grad")),
            "dx",
        );
    }
}

#[test]
fn exp_is_within_two_ulps_of_std_and_clamps_to_normal_floats() {
    let mut worst = 0.0f64;
    for i in -87_000..=88_000 {
        let x = i as f32 / 1000.0 + 0.000_37;
        let (got, want) = (exp::exp(x) as f64, (x as f64).exp());
        worst = worst.max((got - want).abs() / want);
    }
    assert!(worst < 2.4e-7, "relative error {worst:e}");
    assert!(exp::exp(-1000.0) > 0.0 && exp::exp(-1000.0) < 1.3e-38);
    assert!(exp::exp(1000.0).is_finite());
    assert_eq!(exp::exp(0.0), 1.0);
}
