//! Training and sampling speed of the reference MNIST U-Net on burn's CPU backend (flex).
//!
//! `cargo bench -p ddpm --bench unet --features fused-autodiff,fused-rayon [-- STEPS]` prints
//! one JSON line per measurement (without the features: burn's composite operations instead of
//! the fused kernels, for comparison);
//! `benches/run.sh` runs it beside PyTorch. With `--features wgpu` and the argument `wgpu`, the
//! same measurements run on burn's wgpu backend (lavapipe on a machine without a GPU). The
//! argument `train` or `sample` runs only that half (for profiling one of them). Training is
//! timed as one batch and in 2 parts on two threads, as `ddpm train` does on the CPU (`quarters`
//! adds 4 parts); sampling as one batch and in halves on two threads, as `ddpm sample` does.
//! Not part of the tests.

use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsAccumulator, GradientsParams};
use burn::tensor::Device;
use ddpm::{
    BetaSchedule, Denoiser, DiffusionConfig, GaussianDiffusion, NoiseSource, Objective, SplitBatch,
    Timesteps, UnetConfig,
};

fn mnist_unet() -> UnetConfig {
    UnetConfig::new(32)
        .with_dim_mults(vec![1, 2, 4])
        .with_channels(1)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(5);
    let (device, backend) = if args.iter().any(|a| a == "wgpu") {
        wgpu_device()
    } else {
        (Device::flex(), "flex")
    };
    let diffusion = GaussianDiffusion::new(DiffusionConfig {
        beta_schedule: BetaSchedule::SIGMOID,
        objective: Objective::PredV,
        ..DiffusionConfig::default()
    });

    let only = |half: &str| {
        !args
            .iter()
            .any(|a| (a == "train" || a == "sample") && a != half)
    };
    if only("train") {
        let quarters = args.iter().any(|a| a == "quarters");
        for parts in [1, 2, 4].into_iter().filter(|&p| p < 4 || quarters) {
            train(&device, backend, &diffusion, steps, parts);
        }
    }
    if only("sample") {
        for parts in [1, 2] {
            sample(&device, backend, steps, parts);
        }
    }
}

/// Training: Algorithm 1 with Adam, batch 64, 1×28×28. With `parts` > 1 the batch's parts run
/// forward and backward at the same time on as many threads, each on its own fork of the model
/// (its own autodiff graph), their gradients summed: what `ddpm train` does on the CPU, where
/// the element-wise work burn-flex runs on one core then overlaps.
fn train(
    device: &Device,
    backend: &str,
    diffusion: &GaussianDiffusion,
    steps: usize,
    parts: usize,
) {
    let mut rng = NoiseSource::new(0);
    let train_device = device.clone().autodiff();
    let mut model = mnist_unet().init(&train_device);
    let mut optim = AdamConfig::new().init();
    let batch = 64;
    let part = |model: &ddpm::Unet, rng: &mut NoiseSource| {
        let x0 = rng
            .normal_tensor([batch / parts, 1, 28, 28], &train_device)
            .clamp(-1.0, 1.0);
        let loss = diffusion
            .loss(model, x0, None, rng)
            .loss
            .div_scalar(parts as f32);
        let grads = GradientsParams::from_grads(loss.backward(), model);
        // Wait for the part to finish before the clock is read.
        let _ = loss.into_scalar::<f32>();
        grads
    };
    let mut train_step = |model: ddpm::Unet| {
        let grads: Vec<GradientsParams> = if parts == 1 {
            vec![part(&model, &mut rng)]
        } else {
            let streams: Vec<NoiseSource> = (0..parts).map(|_| rng.split()).collect();
            std::thread::scope(|scope| {
                let workers: Vec<_> = streams
                    .into_iter()
                    .map(|mut rng| {
                        let fork = model.clone().fork(&train_device);
                        scope.spawn(move || part(&fork, &mut rng))
                    })
                    .collect();
                workers.into_iter().filter_map(|w| w.join().ok()).collect()
            })
        };
        let mut accumulator = GradientsAccumulator::<ddpm::Unet>::new();
        for g in grads {
            accumulator.accumulate(&model, g);
        }
        optim.step(8e-5, model, accumulator.grads())
    };
    model = train_step(model); // warm-up
    let times: Vec<f64> = (0..steps)
        .map(|_| {
            let start = Instant::now();
            model = train_step(model.clone());
            start.elapsed().as_secs_f64()
        })
        .collect();
    let (mean, fastest) = summary(&times);
    let name = match parts {
        1 => "train_step".to_string(),
        n => format!("train_step_{n}_parts"),
    };
    println!(
        "{{\"bench\":\"{name}\",\"backend\":\"{backend}\",\"batch\":{batch},\"seconds\":{mean:.4},\"fastest\":{fastest:.4},\"images_per_second\":{:.2}}}",
        batch as f64 / mean
    );
}

/// Sampling: one network evaluation of a batch of 16 (one sampler step), with the batch whole
/// (`parts` 1) or in halves on two threads (`parts` 2, what `ddpm sample` does on the CPU).
fn sample(device: &Device, backend: &str, steps: usize, parts: usize) {
    let model = mnist_unet().init(device);
    let model = SplitBatch::new(&model, parts);
    let x = NoiseSource::new(1).normal_tensor([16, 1, 28, 28], device);
    let eval = || {
        let out = model.denoise(x.clone(), &Timesteps::All(500), None, None);
        let _ = out.into_data();
    };
    eval();
    let times: Vec<f64> = (0..steps * 4)
        .map(|_| {
            let start = Instant::now();
            eval();
            start.elapsed().as_secs_f64()
        })
        .collect();
    let (mean, fastest) = summary(&times);
    let name = match parts {
        1 => "sampling_step".to_string(),
        n => format!("sampling_step_{n}_parts"),
    };
    println!(
        "{{\"bench\":\"{name}\",\"backend\":\"{backend}\",\"batch\":16,\"seconds\":{mean:.4},\"fastest\":{fastest:.4}}}"
    );
}

/// The mean and the fastest of some timings: the fastest is the least disturbed by other work
/// on a shared machine.
fn summary(times: &[f64]) -> (f64, f64) {
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    (mean, times.iter().copied().fold(f64::INFINITY, f64::min))
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> (Device, &'static str) {
    (
        Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        "wgpu",
    )
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> (Device, &'static str) {
    eprintln!("this benchmark was built without the `wgpu` feature");
    std::process::exit(2)
}
