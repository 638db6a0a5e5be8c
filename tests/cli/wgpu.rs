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
    // Training's convolutions in f16 with loss scaling (DDPM_HALF_CONVS=1): near f32's losses
    // (within 1e-4 on lavapipe) but not equal to them; the scale goes into the checkpoint and
    // on from it.
    let half_dir = dir.path().join("half");
    let mut half = all.clone();
    half[1] = half_dir.to_str().expect("utf8");
    let train_half = |args: &[&str]| {
        let out = ddpm()
            .args(args)
            .env("DDPM_HALF_CONVS", "1")
            .output()
            .expect("ddpm runs");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr.contains("convolutions in f16 (DDPM_HALF_CONVS=1)"),
            "{stderr}"
        );
    };
    train_half(&half);
    let halves = loss(&half_dir);
    assert_eq!(halves.len(), 4);
    assert_ne!(plain, halves, "the f16 convolutions did not run");
    for (p, h) in plain.iter().zip(&halves) {
        assert!(
            (p - h).abs() <= 1e-3 * p.abs(),
            "losses {plain:?} vs {halves:?}"
        );
    }
    let scale_at = |run: &std::path::Path, step: usize| -> serde_json::Value {
        let state = run.join(format!("checkpoints/step-{step:09}/state.json"));
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(state).expect("state")).expect("json");
        state["loss_scale"].clone()
    };
    let counted = |s: &serde_json::Value| {
        s["good_steps"].as_u64().expect("good") + s["skipped"].as_u64().expect("skipped")
    };
    let at_4 = scale_at(&half_dir, 4);
    eprintln!("losses: f32 {plain:?}, f16 convolutions {halves:?}; loss scale at 4: {at_4}");
    assert_eq!(counted(&at_4), 4, "{at_4}");
    assert!(at_4["scale"].as_f64().expect("scale") <= 65536.0, "{at_4}");
    assert!(
        scale_at(&run_dir, 4).is_null(),
        "an f32 run keeps no loss scale"
    );
    half[3] = "6";
    train_half(&half);
    assert_eq!(
        counted(&scale_at(&half_dir, 6)),
        6,
        "the scale's count started over"
    );
    // On the CPU the switch is refused, as is a value other than 0 and 1.
    for (value, device, says) in [
        (
            "1",
            "cpu",
            "DDPM_HALF_CONVS=1: f16 convolutions run on a GPU",
        ),
        ("yes", "wgpu", "DDPM_HALF_CONVS must be 0 or 1, not \"yes\""),
    ] {
        let refused = dir.path().join(format!("refused-{value}"));
        let mut args = all.clone();
        args[1] = refused.to_str().expect("utf8");
        let at = args.iter().position(|a| *a == "wgpu").expect("device");
        args[at] = device;
        let out = ddpm()
            .args(&args)
            .env("DDPM_HALF_CONVS", value)
            .output()
            .expect("ddpm runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(says), "{stderr}");
        assert!(!refused.exists(), "a refused run left a folder");
    }
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
