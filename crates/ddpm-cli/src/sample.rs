//! `ddpm sample`: images from a run folder or an exported weights file, as a PNG grid, single
//! PNGs and an animated GIF of the trajectory (x_t beside the predicted x̂₀).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor};
use clap::ValueEnum;
use ddpm::steer::Steer;
use ddpm::{
    ClassChoice, DdpmVariance, GaussianDiffusion, ModelConfig, SampleRequest, Sampler,
    SamplerConfig, SamplerKind, Unet,
};

use crate::batch_parts;
use crate::device::{self, DeviceChoice};
use crate::load;
use crate::output;
use crate::picture::{self, Batch};
use crate::read_back;
use crate::steering::SteerArgs;

/// `--sampler`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SamplerChoice {
    /// Ancestral sampling through all T steps (Algorithm 2).
    Ddpm,
    /// DDIM over `--steps` steps.
    Ddim,
}

/// `ddpm sample`.
#[derive(Debug, clap::Args)]
pub struct SampleArgs {
    /// A run folder (its newest checkpoint's EMA weights) or an exported weights file.
    pub model: PathBuf,
    /// The PNG grid to write.
    #[arg(long, short, default_value = "samples.png")]
    pub out: PathBuf,
    /// The reverse process.
    #[arg(long, value_enum, default_value = "ddim")]
    pub sampler: SamplerChoice,
    /// DDIM steps (DDPM always takes T).
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// DDIM's η (0 = deterministic).
    #[arg(long, default_value_t = 0.0)]
    pub eta: f64,
    /// Fixes every random draw: the same seed gives the same images.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// How many images.
    #[arg(long, short, default_value_t = 16, value_parser = image_count)]
    pub n: usize,
    /// The class of every image (class-conditional models); without it the images cycle
    /// through the classes.
    #[arg(long)]
    pub class: Option<usize>,
    /// Sample a class-conditional model without a class (its null class).
    #[arg(long, conflicts_with = "class")]
    pub unconditional: bool,
    /// Classifier-free guidance scale (1 = none).
    #[arg(long, default_value_t = 1.0)]
    pub guidance: f64,
    /// Columns of the grid (default: a square).
    #[arg(long)]
    pub columns: Option<usize>,
    /// Also write the trajectory as an animated GIF here.
    #[arg(long, value_name = "FILE")]
    pub gif: Option<PathBuf>,
    /// Put every k-th step into the GIF.
    #[arg(long, default_value_t = 5)]
    pub gif_every: usize,
    /// Also write each image as its own PNG into this folder.
    #[arg(long, value_name = "DIR")]
    pub png_dir: Option<PathBuf>,
    /// Also write the final images' raw values in [−1, 1] here, as the safetensors tensor
    /// `images` (f32, `[n, channels, height, width]`): what the browser tests compare against.
    #[arg(long, value_name = "FILE")]
    pub raw: Option<PathBuf>,
    /// Overwrite output files that exist.
    #[arg(long)]
    pub force: bool,
    /// Where to sample.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    #[command(flatten)]
    pub steer: SteerArgs,
}

/// What to sample, independent of where the model came from.
#[derive(Debug, Clone)]
pub struct SampleOptions {
    /// Sampler, guidance, clipping.
    pub sampler: SamplerConfig,
    /// Seed, shape (batch filled in from `n`) and classes.
    pub seed: u64,
    /// Number of images.
    pub n: usize,
    /// One class per image, or `None`.
    pub classes: Option<Vec<usize>>,
    /// Grid columns.
    pub columns: usize,
    /// Inpainting, SDEdit or interpolation (none for plain sampling).
    pub steer: Steer,
}

impl SampleOptions {
    /// The training run's preview: DDIM-50 (all T steps when T is smaller), seed 0, each class
    /// in turn with guidance 3.
    pub fn preview(n: usize, num_classes: Option<usize>, timesteps: usize) -> Self {
        Self {
            sampler: SamplerConfig {
                kind: SamplerKind::Ddim {
                    steps: timesteps.min(50),
                    eta: 0.0,
                },
                guidance_scale: if num_classes.is_some() { 3.0 } else { 1.0 },
                ..SamplerConfig::default()
            },
            seed: 0,
            n,
            // Mixed never fails.
            classes: ClassChoice::Mixed.labels(num_classes, n).ok().flatten(),
            columns: num_classes.unwrap_or_else(|| ddpm::grid::square_columns(n)),
            steer: Steer::None,
        }
    }
}

/// Samples and writes the grid PNG (used by `train` for its previews).
pub fn grid_to_file(
    model: &Unet,
    config: &ModelConfig,
    options: &SampleOptions,
    device: &Device,
    path: &Path,
) -> Result<()> {
    let (images, _) = sample(model, config, options, device, None)?;
    picture::save_png(&images.grid(options.columns), path)
}

/// Runs the sampler to the end; with `every`, also returns a frame (x_t beside x̂₀) every k
/// steps and at the last one.
pub fn sample(
    model: &Unet,
    config: &ModelConfig,
    options: &SampleOptions,
    device: &Device,
    every: Option<usize>,
) -> Result<(Batch, Vec<image::RgbImage>)> {
    let diffusion = GaussianDiffusion::new(config.diffusion.clone());
    let [height, width] = config.image_size;
    let channels = config.unet.channels;
    let request = SampleRequest {
        seed: options.seed,
        shape: [options.n, channels, height, width],
        classes: options.classes.clone(),
    };
    let model = &batch_parts::for_device(model, device);
    let steer = options.steer.clone();
    let part = 0..options.n;
    let mut sampler = Sampler::new_steered(
        &diffusion,
        options.sampler,
        request,
        steer,
        part,
        model,
        device,
    )?;
    let total = sampler.total_steps();
    let read = |t: &Tensor<4>| -> Result<Batch> {
        let values = read_back::values(t.clone(), "the images")?;
        Ok(Batch {
            values,
            n: options.n,
            channels,
            height,
            width,
        })
    };
    let columns = options.columns;
    let mut frames = Vec::new();
    while let Some(step) = sampler.step(model) {
        if let Some(k) = every {
            let done = sampler.steps_done();
            if done % k.max(1) == 0 || done == total {
                let x = read(&step.x)?.grid(columns);
                let x0 = read(&step.x_start)?.grid(columns);
                frames.push(picture::side_by_side(&x, &x0));
            }
        }
    }
    Ok((read(sampler.sample())?, frames))
}

/// The most images one `sample` or `eval` run draws: they are all held in memory at once.
pub const MAX_IMAGES: usize = 65_536;

/// `-n`: from 1 to [`MAX_IMAGES`].
fn image_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_IMAGES).contains(&n) => Ok(n),
        _ => Err(format!("`{text}` is not a number from 1 to {MAX_IMAGES}")),
    }
}

/// Runs `ddpm sample`.
pub fn run(args: &SampleArgs) -> Result<()> {
    if args.gif_every == 0 {
        bail!("--gif-every must be at least 1");
    }
    let mut outputs = vec![args.out.clone()];
    outputs.extend(args.gif.clone());
    outputs.extend(args.raw.clone());
    if let Some(dir) = &args.png_dir {
        outputs.extend((0..args.n).map(|i| single_png(dir, i)));
    }
    if let Some(path) = output::repeated(&outputs) {
        bail!(
            "{}: named for two of the outputs (-o, --gif, --raw, --png-dir's files)",
            path.display()
        );
    }
    output::refuse_existing(&outputs, args.force)?;
    let selected = device::select(args.device)?;
    let (model, config) = load::model(&args.model, &selected.device)?;
    let model = load::for_sampling(model, config.image_size, &selected.device);
    let choice = match (args.class, args.unconditional) {
        (Some(k), _) => ClassChoice::Fixed(k),
        (None, true) => ClassChoice::Null,
        (None, false) => ClassChoice::Mixed,
    };
    let classes = choice
        .labels(config.unet.num_classes, args.n)
        .with_context(|| format!("--class: {}", args.model.display()))?;
    let kind = match args.sampler {
        SamplerChoice::Ddpm => SamplerKind::Ddpm {
            variance: DdpmVariance::Posterior,
        },
        SamplerChoice::Ddim => SamplerKind::Ddim {
            steps: args.steps,
            eta: args.eta,
        },
    };
    let [height, width] = config.image_size;
    let shape = [config.unet.channels, height, width];
    let (steer, first_seed) = args.steer.steer(args.n, shape, &selected.device)?;
    let options = SampleOptions {
        sampler: SamplerConfig {
            kind,
            guidance_scale: args.guidance,
            ..SamplerConfig::default()
        },
        seed: first_seed.unwrap_or(args.seed),
        steer,
        n: args.n,
        classes,
        columns: args
            .columns
            .unwrap_or_else(|| ddpm::grid::square_columns(args.n)),
    };
    let every = args.gif.as_ref().map(|_| args.gif_every);
    let (images, frames) = sample(&model, &config, &options, &selected.device, every)?;
    picture::save_png(&images.grid(options.columns), &args.out)?;
    if let Some(gif) = &args.gif {
        picture::save_gif(&frames, 80, gif)?;
    }
    if let Some(dir) = &args.png_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
        for i in 0..images.n {
            picture::save_png(&images.image(i), &single_png(dir, i))?;
        }
    }
    if let Some(path) = &args.raw {
        output::write_new(path, &raw_bytes(&images)?, true)?;
    }
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// The images as safetensors: one f32 tensor `images` of shape `[n, c, h, w]`.
fn raw_bytes(images: &Batch) -> Result<Vec<u8>> {
    let bytes: Vec<u8> = images.values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let shape = vec![images.n, images.channels, images.height, images.width];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &bytes)
        .map_err(|e| anyhow::anyhow!("safetensors: {e}"))?;
    safetensors::serialize([("images", view)], None)
        .map_err(|e| anyhow::anyhow!("safetensors: {e}"))
}

/// Where `--png-dir` puts image `i`.
fn single_png(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("{i:04}.png"))
}
