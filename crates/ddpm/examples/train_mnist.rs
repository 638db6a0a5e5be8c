//! Time to recognisable digits: trains the reference MNIST U-Net (`dim 32`, `dim_mults 1,2,4`),
//! class-conditional, on the 10,000 digits in `data/mnist-10k`, on the CPU, for a wall-clock
//! budget, and writes a grid of class-conditional samples (row = digit 0–9) and the EMA
//! weights every few minutes, so one can see when the digits become recognisable.
//!
//! ```text
//! cargo run --release -p ddpm --example train_mnist -- OUT_DIR [MINUTES] [GRID_EVERY_MINUTES]
//! ```
//!
//! The trainer proper is the CLI's; this drives the library directly, as the speed benchmark
//! does. `OUT_DIR` must not exist yet (nothing is overwritten).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use ddpm::ema::{Ema, decay_at, updates_after};
use ddpm::weights::{self, Precision};
use ddpm::{
    DiffusionConfig, GaussianDiffusion, ModelConfig, NoiseSource, SampleRequest, Sampler,
    SamplerConfig, SamplerKind, Unet, UnetConfig,
};

type Error = Box<dyn std::error::Error>;

const SIDE: usize = 28;
const BATCH: usize = 32;
const PEAK_LR: f64 = 3e-4;
const WARMUP_STEPS: usize = 100;

/// Reads a gzipped IDX file: its dimensions and its bytes.
fn read_idx(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<u8>), Error> {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(File::open(path).map_err(|e| format!("{}: {e}", path.display()))?)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: not a gzip file ({e})", path.display()))?;
    let word = |i: usize| -> Result<usize, Error> {
        let b = bytes
            .get(4 * i..4 * i + 4)
            .ok_or_else(|| format!("{}: truncated header", path.display()))?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    if word(0)? != magic as usize {
        return Err(format!("{}: not an IDX file with magic {magic:#x}", path.display()).into());
    }
    let dims: Vec<usize> = (1..=(magic & 0xff) as usize)
        .map(word)
        .collect::<Result<_, _>>()?;
    let start = 4 * (1 + dims.len());
    let data = bytes[start..].to_vec();
    if data.len() != dims.iter().product::<usize>() {
        return Err(format!(
            "{}: {} data bytes for dims {dims:?}",
            path.display(),
            data.len()
        )
        .into());
    }
    Ok((dims, data))
}

/// A `rows × cols` grid of `[-1, 1]` grayscale images, 2 px apart, as a PNG.
fn save_grid(images: &[f32], rows: usize, cols: usize, path: &Path) -> Result<(), Error> {
    let pad = 2;
    let (w, h) = (cols * (SIDE + pad) + pad, rows * (SIDE + pad) + pad);
    let mut grid = image::GrayImage::from_pixel(w as u32, h as u32, image::Luma([40]));
    for (i, img) in images.chunks(SIDE * SIDE).enumerate() {
        let (r, c) = (i / cols, i % cols);
        for (p, v) in img.iter().enumerate() {
            let x = pad + c * (SIDE + pad) + p % SIDE;
            let y = pad + r * (SIDE + pad) + p / SIDE;
            let byte = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
            grid.put_pixel(x as u32, y as u32, image::Luma([byte]));
        }
    }
    grid.save(path)?;
    Ok(())
}

/// Four DDIM-50 samples of every digit with guidance 3, one row per digit.
fn sample_grid(
    diffusion: &GaussianDiffusion,
    model: &Unet,
    device: &Device,
    path: &Path,
) -> Result<(), Error> {
    let classes: Vec<usize> = (0..10).flat_map(|d| [d; 4]).collect();
    let request = SampleRequest {
        seed: 7,
        shape: [classes.len(), 1, SIDE, SIDE],
        classes: Some(classes),
    };
    let config = SamplerConfig {
        kind: SamplerKind::Ddim {
            steps: 50,
            eta: 0.0,
        },
        guidance_scale: 3.0,
        ..SamplerConfig::default()
    };
    let mut sampler = Sampler::new(diffusion, config, request, model, device)?;
    while sampler.step(model).is_some() {}
    let images = sampler.sample().clone().into_data().try_to_vec::<f32>()?;
    save_grid(&images, 10, 4, path)
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: train_mnist OUT_DIR [MINUTES] [GRID_EVERY_MINUTES]";
    let out = PathBuf::from(args.first().ok_or(usage)?);
    let minutes = |i: usize, default: f64| -> Result<f64, Error> {
        match args.get(i) {
            None => Ok(default),
            Some(a) => match a.parse::<f64>() {
                Ok(m) if m > 0.0 => Ok(m),
                _ => Err(format!("minutes must be a positive number, got `{a}`").into()),
            },
        }
    };
    let budget = Duration::from_secs_f64(60.0 * minutes(1, 110.0)?);
    let grid_every = Duration::from_secs_f64(60.0 * minutes(2, 10.0)?);
    if out.exists() {
        return Err(format!("{} already exists; give a new folder", out.display()).into());
    }
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;

    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist-10k");
    let (dims, pixels) = read_idx(&data.join("images-idx3-ubyte.gz"), 0x803)?;
    let (_, labels) = read_idx(&data.join("labels-idx1-ubyte.gz"), 0x801)?;
    let count = dims[0];
    if dims[1..] != [SIDE, SIDE] || labels.len() != count {
        return Err(format!("{}: unexpected dimensions {dims:?}", data.display()).into());
    }
    let pixels: Vec<f32> = pixels.iter().map(|&p| f32::from(p) / 127.5 - 1.0).collect();

    let device = Device::flex();
    let train_device = device.clone().autodiff();
    let config = ModelConfig {
        unet: UnetConfig::new(32)
            .with_dim_mults(vec![1, 2, 4])
            .with_channels(1)
            .with_num_classes(Some(10)),
        diffusion: DiffusionConfig::default(),
        image_size: [SIDE, SIDE],
    };
    config.validate()?;
    let diffusion = GaussianDiffusion::new(config.diffusion.clone());
    let mut model = config.unet.init(&train_device);
    let mut ema = Ema::new(&model);
    let mut optim = AdamConfig::new()
        .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
        .init();
    let mut rng = NoiseSource::new(0);
    let mut order: Vec<usize> = (0..count).collect();
    let mut cursor = count;

    let mut metrics = BufWriter::new(File::create(out.join("metrics.csv"))?);
    writeln!(metrics, "step,train_seconds,loss,lr")?;
    println!(
        "{} parameters, {count} images, batch {BATCH}, budget {budget:?}, output in {}",
        model.num_params(),
        out.display()
    );
    let mut trained = Duration::ZERO; // training time, without the sampling for the grids
    let mut next_grid = grid_every;
    let mut step = 0;
    while trained < budget {
        let started = Instant::now();
        step += 1;
        let mut batch = Vec::with_capacity(BATCH * SIDE * SIDE);
        let mut classes = Vec::with_capacity(BATCH);
        for _ in 0..BATCH {
            if cursor == count {
                // A fresh Fisher–Yates shuffle per epoch.
                for i in (1..count).rev() {
                    order.swap(i, rng.below(i + 1));
                }
                cursor = 0;
            }
            let i = order[cursor];
            cursor += 1;
            batch.extend_from_slice(&pixels[i * SIDE * SIDE..(i + 1) * SIDE * SIDE]);
            classes.push(usize::from(labels[i]));
        }
        let x0 = Tensor::<4>::from_data(
            TensorData::new(batch, [BATCH, 1, SIDE, SIDE]),
            &train_device,
        );
        let loss = diffusion.loss(&model, x0, Some(&classes), &mut rng).loss;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let lr = PEAK_LR * (step as f64 / WARMUP_STEPS as f64).min(1.0);
        model = optim.step(lr, model, grads);
        if updates_after(step, 5) {
            ema.update(&model, decay_at(step, 100, 0.75, 0.995));
        }
        let loss: f32 = loss.into_scalar();
        if !loss.is_finite() {
            return Err(format!("step {step}: loss is {loss}").into());
        }
        trained += started.elapsed();
        writeln!(
            metrics,
            "{step},{:.2},{loss:.5},{lr:.2e}",
            trained.as_secs_f64()
        )?;
        if step % 25 == 0 {
            metrics.flush()?;
            println!(
                "step {step:5}  loss {loss:.4}  {:.2} s/step  trained {:.1} min",
                trained.as_secs_f64() / step as f64,
                trained.as_secs_f64() / 60.0
            );
        }
        if trained >= next_grid || trained >= budget {
            next_grid += grid_every;
            let minute = (trained.as_secs_f64() / 60.0).round() as usize;
            let sampling = Instant::now();
            weights::save(
                ema.model(),
                &config,
                Precision::F32,
                &out.join("ema.bpk"),
                true,
            )?;
            let grid = out.join(format!("samples-{minute:03}min-step{step}.png"));
            sample_grid(&diffusion, ema.model(), &device, &grid)?;
            println!("wrote {} in {:.0?}", grid.display(), sampling.elapsed());
        }
    }
    metrics.flush()?;
    Ok(())
}
