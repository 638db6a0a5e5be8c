//! The library end to end in one page, on the CPU: train a small U-Net on procedurally drawn
//! discs, save it as a weights file, load it back, and sample with DDIM.
//!
//! ```text
//! cargo run --release -p ddpm --example quickstart [-- STEPS]
//! ```

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use ddpm::weights::{self, Precision};
use ddpm::{
    BetaSchedule, DiffusionConfig, GaussianDiffusion, ModelConfig, NoiseSource, Objective,
    SampleRequest, Sampler, SamplerConfig, SamplerKind, UnetConfig,
};

const SIDE: usize = 16;

/// A batch of white discs of random centre and radius on black, scaled to [−1, 1].
fn discs(batch: usize, rng: &mut NoiseSource, device: &Device) -> Tensor<4> {
    let mut pixels = Vec::with_capacity(batch * SIDE * SIDE);
    for _ in 0..batch {
        let (cx, cy) = (4.0 + 8.0 * rng.uniform(), 4.0 + 8.0 * rng.uniform());
        let r = 2.0 + 2.5 * rng.uniform();
        for y in 0..SIDE {
            for x in 0..SIDE {
                let d = ((x as f64 + 0.5 - cx).powi(2) + (y as f64 + 0.5 - cy).powi(2)).sqrt();
                pixels.push(if d < r { 1.0f32 } else { -1.0 });
            }
        }
    }
    Tensor::from_data(TensorData::new(pixels, [batch, 1, SIDE, SIDE]), device)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let steps: usize = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("STEPS must be a positive integer, got `{arg}`"))?,
        None => 400,
    };
    let device = Device::flex();
    let config = ModelConfig {
        unet: UnetConfig::new(16)
            .with_dim_mults(vec![1, 2])
            .with_channels(1),
        diffusion: DiffusionConfig {
            timesteps: 250,
            beta_schedule: BetaSchedule::COSINE,
            objective: Objective::PredV,
            ..DiffusionConfig::default()
        },
        image_size: [SIDE, SIDE],
    };
    config.validate()?;
    let diffusion = GaussianDiffusion::new(config.diffusion.clone());

    // Algorithm 1 on an autodiff device.
    let train_device = device.clone().autodiff();
    let mut model = config.unet.init(&train_device);
    println!("U-Net: {} parameters", model.num_params());
    let mut optim = AdamConfig::new().init();
    let mut rng = NoiseSource::new(0);
    let started = std::time::Instant::now();
    for step in 1..=steps {
        let x0 = discs(32, &mut rng, &train_device);
        let loss = diffusion.loss(&model, x0, None, &mut rng).loss;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
        if step % 50 == 0 || step == steps {
            let loss: f32 = loss.into_scalar();
            println!("step {step:4}  loss {loss:.4}  ({:.1?})", started.elapsed());
        }
    }

    // The weights file carries the configuration, so loading needs nothing else.
    let path = std::env::temp_dir().join("ddpm-quickstart.bpk");
    weights::save(&model.valid(), &config, Precision::F16, &path, true)?;
    let loaded = weights::load(&path, &device)?;
    println!(
        "saved and reloaded {} ({} bytes, {:?})",
        path.display(),
        std::fs::metadata(&path)?.len(),
        loaded.precision
    );

    // Algorithm 2's faster cousin, one step per call.
    let request = SampleRequest {
        seed: 1,
        shape: [4, 1, SIDE, SIDE],
        classes: None,
    };
    let sampler_config = SamplerConfig {
        kind: SamplerKind::Ddim {
            steps: 50,
            eta: 0.0,
        },
        ..SamplerConfig::default()
    };
    let mut sampler = Sampler::new(&diffusion, sampler_config, request, &loaded.model, &device)?;
    while sampler.step(&loaded.model).is_some() {}
    let images = sampler.sample().clone().into_data().try_to_vec::<f32>()?;
    for row in 0..SIDE {
        let line: String = (0..4)
            .map(|i| {
                (0..SIDE)
                    .map(|col| {
                        let v = images[i * SIDE * SIDE + row * SIDE + col];
                        if v > 0.0 { '#' } else { '.' }
                    })
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("   ");
        println!("{line}");
    }
    Ok(())
}
