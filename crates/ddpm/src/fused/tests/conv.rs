use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Distribution, Tensor};

use super::close;
use crate::fused::conv::{ConvDims, patches};
use crate::test_util::{device, values};
use crate::unet::ops::{is_same_conv, kernels_apply, same_conv};

/// The U-Net's same convolution, 2 → 4 channels.
fn conv(kernel: usize, bias: bool, device: &Device) -> Conv2d {
    crate::unet::conv(2, 4, kernel, bias, device)
}

#[test]
fn patches_shift_each_plane_by_its_tap_with_zeros_outside() {
    // A 1-channel 2×3 image, a 3×3 kernel: tap (0, 0) reads x[y − 1, x − 1], tap (1, 1) the
    // image itself, tap (1, 2) x[y, x + 1], tap (2, 2) x[y + 1, x + 1]. The buffer starts as
    // NaN: every element must be written.
    let x: Vec<f32> = (1..=6).map(|v| v as f32).collect();
    let dims = ConvDims {
        channels: 1,
        height: 2,
        width: 3,
        kernel: 3,
    };
    let mut out = vec![f32::NAN; 9 * 6];
    patches(&x, dims, &mut out);
    let row = |r: usize| &out[r * 6..][..6];
    assert_eq!(row(0), [0.0, 0.0, 0.0, 0.0, 1.0, 2.0]);
    assert_eq!(row(4), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(row(5), [2.0, 3.0, 0.0, 5.0, 6.0, 0.0]);
    assert_eq!(row(8), [5.0, 6.0, 0.0, 0.0, 0.0, 0.0]);
    assert!(out.iter().all(|v| v.is_finite()));
    // A 7×7 kernel on the same image: its outer taps fall wholly outside.
    let wide = ConvDims { kernel: 7, ..dims };
    let mut out = vec![f32::NAN; 49 * 6];
    patches(&x, wide, &mut out);
    assert_eq!(&out[24 * 6..][..6], &x[..], "centre tap");
    assert!(out[..6 * 7].iter().all(|&v| v == 0.0), "top row of taps");
}

#[test]
fn patches_equal_a_pixel_by_pixel_reading_for_every_shape_and_kernel() {
    for (h, w) in [(1, 1), (1, 4), (4, 1), (2, 5), (5, 3), (6, 6)] {
        for kernel in [1, 3, 5, 7] {
            let dims = ConvDims {
                channels: 2,
                height: h,
                width: w,
                kernel,
            };
            let x: Vec<f32> = (0..2 * h * w).map(|v| v as f32 + 1.0).collect();
            let mut got = vec![f32::NAN; dims.taps() * h * w];
            patches(&x, dims, &mut got);
            let pad = kernel as isize / 2;
            let mut want = Vec::new();
            for c in 0..2 {
                for (ky, kx) in (0..kernel * kernel).map(|t| (t / kernel, t % kernel)) {
                    for (y, xx) in (0..h * w).map(|p| (p / w, p % w)) {
                        let sy = y as isize + ky as isize - pad;
                        let sx = xx as isize + kx as isize - pad;
                        let inside = (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx);
                        let at = c * h * w + (sy * w as isize + sx).max(0) as usize;
                        want.push(if inside { x[at] } else { 0.0 });
                    }
                }
            }
            assert_eq!(got, want, "{h}×{w}, kernel {kernel}");
        }
    }
}

#[test]
fn only_stride_1_odd_padded_convolutions_are_same() {
    let device = device();
    assert!(is_same_conv(&conv(3, true, &device)));
    assert!(is_same_conv(&conv(7, false, &device)));
    let config = Conv2dConfig::new([2, 4], [3, 3]);
    assert!(!is_same_conv(&config.clone().init(&device)), "no padding");
    assert!(is_same_conv(
        &config
            .clone()
            .with_padding(PaddingConfig2d::Same)
            .init(&device)
    ));
    let strided = config
        .clone()
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_stride([2, 2]);
    assert!(!is_same_conv(&strided.init(&device)));
    let even =
        Conv2dConfig::new([2, 4], [2, 2]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1));
    assert!(!is_same_conv(&even.init(&device)));
}

/// 3×3, 5×5 and 7×7 (larger than the 5×6 image), with and without bias, for one image (each
/// product spread over the threads) and three (one image per thread): the kernel's output and
/// its gradients for the input, the weight and the bias equal burn's `conv2d`.
#[cfg(feature = "fused-autodiff")]
#[test]
fn same_conv_runs_the_kernel_with_burns_output_and_gradients() {
    let device = device().autodiff();
    let normal = Distribution::Normal(0.0, 1.0);
    for (batch, kernel, bias) in [(3, 3, true), (3, 5, false), (3, 7, true), (1, 3, true)] {
        let x = Tensor::<4>::random([batch, 2, 5, 6], normal, &device).require_grad();
        let w = Tensor::<4>::random([batch, 4, 5, 6], normal, &device);
        assert!(kernels_apply(&x));
        let conv = conv(kernel, bias, &device);
        let fused = same_conv(&conv, x.clone());
        let reference = conv.forward(x.clone());
        let what = format!("{batch} × {kernel}×{kernel}");
        close(&values(fused.clone()), &values(reference.clone()), &what);
        let g_fused = (fused * w.clone()).sum().backward();
        let g_reference = (reference * w.clone()).sum().backward();
        let grad = |g| values(x.grad(g).expect("x grad"));
        close(&grad(&g_fused), &grad(&g_reference), &format!("{what} dx"));
        let grad = |g| values(conv.weight.grad(g).expect("weight grad"));
        close(&grad(&g_fused), &grad(&g_reference), &format!("{what} dw"));
        if let Some(b) = &conv.bias {
            let grad = |g| values(b.grad(g).expect("bias grad"));
            close(&grad(&g_fused), &grad(&g_reference), &format!("{what} db"));
        }
    }
}

#[cfg(feature = "fused")]
#[test]
fn same_conv_runs_the_kernel_without_gradients() {
    let device = device();
    let x = Tensor::<4>::random([2, 2, 4, 7], Distribution::Normal(0.0, 1.0), &device);
    let conv = conv(3, true, &device);
    close(
        &values(same_conv(&conv, x.clone())),
        &values(conv.forward(x)),
        "y",
    );
}
