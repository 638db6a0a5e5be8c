//! burn's wgpu backend, on whatever adapter the machine has (Mesa's lavapipe where there is no
//! GPU): the same U-Net output as the CPU backend, and a training run through the CLI.

use burn::tensor::{Device, DeviceKind, Int, Tensor, TensorData};
use ddpm::weights::{self, Precision};
use ddpm::{DiffusionConfig, ModelConfig, NoiseSource, UnetConfig};

use crate::common::*;

fn gpu() -> Device {
    Device::wgpu(DeviceKind::DefaultDevice)
}

#[test]
fn wgpu_and_cpu_compute_the_same_unet_output() {
    let cpu = Device::flex();
    let config = ModelConfig {
        unet: UnetConfig::new(16)
            .with_dim_mults(vec![1, 2])
            .with_channels(1)
            .with_attn_dim_head(8)
            .with_num_classes(Some(3)),
        diffusion: DiffusionConfig::default(),
        image_size: [16, 16],
    };
    let model = config.unet.init(&cpu);
    let bytes = weights::to_bytes(&model, &config, Precision::F32).expect("serialise");
    let on_gpu = weights::from_bytes(&bytes, &gpu())
        .expect("load on wgpu")
        .model;
    let run = |model: &ddpm::Unet, device: &Device| -> Vec<f32> {
        let x = NoiseSource::new(1).normal_tensor([4, 1, 16, 16], device);
        let t = Tensor::<1>::from_data(TensorData::new(vec![0f32, 10., 500., 999.], [4]), device);
        let classes =
            Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 3], [4]), device);
        model
            .forward(x, t, None, Some(classes))
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32")
    };
    let (a, b) = (run(&model, &cpu), run(&on_gpu, &gpu()));
    let max_diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    let std = (a.iter().map(|x| x * x).sum::<f32>() / a.len() as f32).sqrt();
    assert!(std > 0.1, "outputs too small to compare: rms {std}");
    assert!(
        max_diff < 1e-4,
        "wgpu and cpu differ by {max_diff} (rms {std})"
    );
}

#[test]
fn the_cli_trains_and_samples_on_wgpu() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = bars_dataset(dir.path(), 32);
    let run_dir = dir.path().join("run");
    let run_s = run_dir.to_str().expect("utf8");
    let mut args: Vec<String> = tiny(&data);
    let device = args.iter().position(|a| a == "cpu").expect("device flag");
    args[device] = "wgpu".into();
    // A preview at the last step, drawn the way `ddpm sample` draws (`for_sampling`).
    let mut all: Vec<&str> = vec!["train", run_s, "--steps", "4", "--sample-every", "4"];
    all.extend(args.iter().map(String::as_str));
    let out = ok(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("on wgpu: "), "{stderr}");
    assert_eq!(losses(&run_dir).len(), 4);
    // The same run through the core's GPU kernels: the same losses, step by step (each step's
    // weights come from the previous steps' gradients, so a wrong backward pass shows).
    let kernel_dir = dir.path().join("kernels");
    all[1] = kernel_dir.to_str().expect("utf8");
    let out = ddpm()
        .args(&all)
        .env("DDPM_GPU_KERNELS", "1")
        .output()
        .expect("ddpm runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("the core's GPU kernels"), "{stderr}");
    // The check before training passed: these losses are the kernels' steps, not burn's.
    assert!(!stderr.contains("warning"), "{stderr}");
    let loss = |run: &std::path::Path| -> Vec<f32> {
        losses(run)
            .iter()
            .map(|(_, l)| l.parse().expect("loss"))
            .collect()
    };
    let (plain, kernels) = (loss(&run_dir), loss(&kernel_dir));
    for (p, k) in plain.iter().zip(&kernels) {
        assert!(
            (p - k).abs() <= 1e-3 * p.abs(),
            "losses {plain:?} vs {kernels:?}"
        );
    }
    assert_eq!(kernels.len(), 4);
    let preview = |run: &std::path::Path| pixels(&run.join("samples/step-000000004.png"));
    let worst = worst_level(&preview(&run_dir), &preview(&kernel_dir));
    assert!(worst <= 1, "previews differ by up to {worst} levels");
    let png = dir.path().join("s.png");
    let sample = [
        "sample", run_s, "--device", "wgpu", "--steps", "5", "-n", "4", "-o",
    ];
    ok(&[&sample[..], &[png.to_str().expect("utf8")]].concat());
    let plain = pixels(&png);
    assert_eq!(plain.len(), 3 * (2 * (8 + 2) + 2) * (2 * (8 + 2) + 2));
    // Sampling through the kernels (the blocks' and the attentions' norms, the softmaxes): the
    // same picture, but for a rounding of a level here and there.
    let png_kernels = dir.path().join("k.png");
    let out = ddpm()
        .args([&sample[..], &[png_kernels.to_str().expect("utf8")]].concat())
        .env("DDPM_GPU_KERNELS", "1")
        .output()
        .expect("ddpm runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The check before sampling passed: these are the kernels' images, not burn's.
    assert!(!stderr.contains("warning"), "{stderr}");
    let worst = worst_level(&plain, &pixels(&png_kernels));
    assert!(worst <= 1, "pixels differ by up to {worst} levels");
}

/// The largest difference between two pictures' levels, pixel by pixel, channel by channel.
fn worst_level(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len(), "pictures of different sizes");
    a.iter()
        .zip(b)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(0)
}
