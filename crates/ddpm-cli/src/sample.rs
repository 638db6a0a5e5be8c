//! `ddpm sample`: images from a run folder or an exported weights file, as a PNG grid, single
//! PNGs and an animated GIF of the trajectory (x_t beside the predicted x̂₀).

use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::{Device, Tensor};
use clap::ValueEnum;
use ddpm::sampler::{
    MAX_RESAMPLE_JUMP, MAX_RESAMPLE_REPEATS, SamplerError, check_resample, check_strength,
};
use ddpm::steer::Steer;
use ddpm::{
    ClassChoice, DdpmVariance, GaussianDiffusion, ModelConfig, SampleRequest, Sampler,
    SamplerConfig, SamplerKind, Unet,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::batch_parts;
use crate::card;
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
    /// DDIM steps, 1 to the model's T [default: 50, or T when the model has fewer]. DDPM
    /// always takes all T.
    #[arg(long)]
    pub steps: Option<usize>,
    /// DDIM's η (0 = deterministic) [default: 0].
    #[arg(long)]
    pub eta: Option<f64>,
    /// Fixes every random draw: the same seed gives the same images.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// How many images.
    #[arg(long, short, default_value_t = 16, value_parser = image_count)]
    pub n: usize,
    /// The class of every image (class-conditional models), by name (as `ddpm info` lists
    /// them) or number; without it the images cycle through the classes.
    #[arg(long)]
    pub class: Option<String>,
    /// Sample a class-conditional model without a class (its null class).
    #[arg(long, conflicts_with = "class")]
    pub unconditional: bool,
    /// Classifier-free guidance scale (1 = none).
    #[arg(long, default_value_t = 1.0)]
    pub guidance: f64,
    /// Columns of the grid (default: a square).
    #[arg(long)]
    pub columns: Option<usize>,
    /// Images sampled at once: memory grows with it; the images are the same whatever it is.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
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
    /// Images sampled at once (a batch's memory is the limit); the images do not depend on it.
    pub batch: usize,
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
            batch: n,
            steer: Steer::None,
        }
    }
}

/// Samples and writes the grid PNG (used by `train` for its previews); `false`, and nothing
/// written, when `stop` was raised (Ctrl-C) first.
pub fn grid_to_file(
    model: &Unet,
    config: &ModelConfig,
    options: &SampleOptions,
    device: &Device,
    path: &Path,
    stop: &AtomicBool,
) -> Result<bool> {
    let watch = Watch::new("preview", Some(stop));
    let Some((images, _)) = sample(model, config, options, device, None, &watch)? else {
        return Ok(false);
    };
    picture::save_png(&images.grid(options.columns), path)?;
    Ok(true)
}

/// What a sampling run reports to and listens to: a bar over its steps (drawn only where
/// stderr is a terminal) and, for a training preview, the flag Ctrl-C raises.
pub struct Watch<'a> {
    bar: ProgressBar,
    stop: Option<&'a AtomicBool>,
}

impl<'a> Watch<'a> {
    /// A bar named `what`, stopped early by `stop`.
    pub fn new(what: &str, stop: Option<&'a AtomicBool>) -> Self {
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} steps {msg} [{elapsed} < {eta}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(what.to_string());
        Self { bar, stop }
    }

    fn stopped(&self) -> bool {
        self.stop.is_some_and(|s| s.load(Ordering::SeqCst))
    }

    /// The sampler steps done so far.
    pub fn steps(&self) -> u64 {
        self.bar.position()
    }
}

/// Runs the sampler to the end; with `every`, also returns a frame (x_t beside x̂₀) every k
/// steps and at the last one. `None` when `watch` was stopped.
pub fn sample(
    model: &Unet,
    config: &ModelConfig,
    options: &SampleOptions,
    device: &Device,
    every: Option<usize>,
    watch: &Watch<'_>,
) -> Result<Option<(Batch, Vec<image::RgbImage>)>> {
    let diffusion = GaussianDiffusion::new(config.diffusion.clone());
    let [height, width] = config.image_size;
    let channels = config.unet.channels;
    let request = SampleRequest {
        seed: options.seed,
        shape: [options.n, channels, height, width],
        classes: options.classes.clone(),
    };
    let model = &batch_parts::for_device(model, device);
    // The images in batches of at most `options.batch`, stepped in turn: each part is its
    // images of the whole run (the core's `new_part`), and only one part's activations are
    // alive at a time.
    let batch = options.batch.max(1);
    let mut samplers = (0..options.n)
        .step_by(batch)
        .map(|start| {
            let part = start..(start + batch).min(options.n);
            let steer = options.steer.clone();
            Sampler::new_steered(
                &diffusion,
                options.sampler,
                request.clone(),
                steer,
                part,
                model,
                device,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let total = samplers.first().map_or(0, Sampler::total_steps);
    let host = |t: &Tensor<4>| read_back::values(t.clone(), "the images");
    let batch_of = |values: Vec<f32>| Batch {
        values,
        n: options.n,
        channels,
        height,
        width,
    };
    let columns = options.columns;
    let mut frames = Vec::new();
    watch.bar.set_length(total as u64);
    for done in 1..=total {
        let frame_due = every.is_some_and(|k| done % k.max(1) == 0 || done == total);
        let (mut x, mut x0) = (Vec::new(), Vec::new());
        for sampler in &mut samplers {
            let step = sampler
                .step(model)
                .context("a part of the batch ended early")?;
            if frame_due {
                x.extend(host(&step.x)?);
                x0.extend(host(&step.x_start)?);
            }
        }
        watch.bar.inc(1);
        if watch.stopped() {
            watch.bar.abandon_with_message("interrupted");
            return Ok(None);
        }
        if frame_due {
            let (x, x0) = (batch_of(x).grid(columns), batch_of(x0).grid(columns));
            frames.push(picture::side_by_side(&x, &x0));
        }
    }
    let mut values = Vec::with_capacity(options.n * channels * height * width);
    for sampler in &samplers {
        values.extend(host(sampler.sample())?);
    }
    watch.bar.finish_and_clear();
    Ok(Some((batch_of(values), frames)))
}

/// The most images one `sample` or `eval` run draws: they are all held in memory at once.
pub const MAX_IMAGES: usize = 65_536;

/// `-n`: from 1 to [`MAX_IMAGES`].
/// The sampler the flags ask for, checked against the model (`config`) before a GPU is opened
/// with the core's own checks, whose errors are said here with the flag they came from.
fn sampler_config(args: &SampleArgs, config: &ModelConfig) -> Result<SamplerConfig> {
    let timesteps = config.diffusion.timesteps;
    if args.guidance != 1.0 && config.unet.num_classes.is_none() {
        bail!("--guidance needs a class-conditional model, and this one has no classes");
    }
    if let Some(strength) = args.steer.strength {
        check_strength(strength)
            .map_err(|_| anyhow!("--strength must be between 0 and 1, got {strength}"))?;
    }
    let (jump, repeats) = (args.steer.resample_jump, args.steer.resample_repeats);
    check_resample(jump, repeats).map_err(|_| {
        anyhow!(
            "--resample-jump must be 1 to {MAX_RESAMPLE_JUMP} and --resample-repeats 1 to {MAX_RESAMPLE_REPEATS}, got {jump} and {repeats}"
        )
    })?;
    let deterministic = args.sampler == SamplerChoice::Ddim && args.eta.unwrap_or(0.0) == 0.0;
    if args.steer.interpolate.is_some() && !deterministic {
        bail!("--interpolate needs DDIM with eta = 0: its images differ only by their start");
    }
    let kind = match (args.sampler, args.steps, args.eta) {
        (SamplerChoice::Ddpm, Some(_), _) => {
            bail!("--steps is for DDIM: DDPM always takes all {timesteps} steps")
        }
        (SamplerChoice::Ddpm, _, Some(_)) => bail!("--eta is for DDIM: DDPM's variance is fixed"),
        (SamplerChoice::Ddpm, None, None) => SamplerKind::Ddpm {
            variance: DdpmVariance::Posterior,
        },
        (SamplerChoice::Ddim, steps, eta) => SamplerKind::Ddim {
            steps: steps.unwrap_or(timesteps.min(50)),
            eta: eta.unwrap_or(0.0),
        },
    };
    let sampler = SamplerConfig {
        kind,
        guidance_scale: args.guidance,
        ..SamplerConfig::default()
    };
    sampler.check(timesteps).map_err(|e| match e {
        SamplerError::Steps { steps, timesteps } => {
            anyhow!("--steps must be 1 to {timesteps} (the model's T), got {steps}")
        }
        SamplerError::Eta(eta) => anyhow!("--eta must be a finite number ≥ 0, got {eta}"),
        SamplerError::GuidanceScale(g) => anyhow!("--guidance must be a finite number, got {g}"),
        other => anyhow!(other),
    })?;
    Ok(sampler)
}

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
    if args.columns == Some(0) || args.batch == 0 {
        bail!("--columns and --batch must be at least 1");
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
    // The grid is a PNG and the trajectory a GIF, whatever a file is named: say so up front
    // rather than write PNG bytes into `grid.jpg`.
    for (flag, path, ext) in [
        ("-o", Some(&args.out), "png"),
        ("--gif", args.gif.as_ref(), "gif"),
    ] {
        let named = |p: &PathBuf| p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext));
        if let Some(path) = path.filter(|p| !named(p)) {
            bail!(
                "{flag} {}: written as {}; name it .{ext}",
                path.display(),
                ext.to_uppercase()
            );
        }
    }
    // A weights file's card too: it names the classes.
    let model_files = load::files_read(&args.model);
    let steering = [args.steer.init.as_ref(), args.steer.mask.as_ref()];
    let inputs: Vec<&PathBuf> = model_files
        .iter()
        .chain(steering.into_iter().flatten())
        .collect();
    output::refuse_inputs(&outputs, &inputs)?;
    output::refuse_existing(&outputs, args.force)?;
    let sampler = sampler_config(args, &load::model_config(&args.model)?)?;
    let selected = device::select(args.device)?;
    let (model, config) = load::model(&args.model, &selected.device)?;
    let model = load::for_sampling(model, config.image_size, &selected.device);
    let choice = match (&args.class, args.unconditional) {
        (Some(k), _) => {
            ClassChoice::Fixed(card::class_index(k, &card::class_names_of(&args.model)?)?)
        }
        (None, true) => ClassChoice::Null,
        (None, false) => ClassChoice::Mixed,
    };
    let classes = choice
        .labels(config.unet.num_classes, args.n)
        .with_context(|| format!("--class: {}", args.model.display()))?;
    let [height, width] = config.image_size;
    let shape = [config.unet.channels, height, width];
    let (steer, first_seed) = args.steer.steer(args.n, shape, &selected.device)?;
    let options = SampleOptions {
        sampler,
        seed: first_seed.unwrap_or(args.seed),
        steer,
        n: args.n,
        classes,
        columns: args
            .columns
            .unwrap_or_else(|| ddpm::grid::square_columns(args.n)),
        batch: args.batch,
    };
    let every = args.gif.as_ref().map(|_| args.gif_every);
    let files: Vec<PathBuf> = [Some(&args.out), args.gif.as_ref(), args.raw.as_ref()]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    output::prepare(&files, args.png_dir.as_slice())?;
    let watch = Watch::new("sampling", None);
    let started = std::time::Instant::now();
    let (images, frames) = sample(&model, &config, &options, &selected.device, every, &watch)?
        .context("sampling stopped")?;
    // The sampler's own time, without loading and checks: what the GPU benchmark divides by.
    eprintln!(
        "sampled {} images in {:.3} s ({} steps)",
        images.n,
        started.elapsed().as_secs_f64(),
        watch.steps()
    );
    picture::save_png(&images.grid(options.columns), &args.out)?;
    if let Some(gif) = &args.gif {
        picture::save_gif(&frames, 80, gif)?;
    }
    if let Some(dir) = &args.png_dir {
        for i in 0..images.n {
            picture::save_png(&images.image(i), &single_png(dir, i))?;
        }
    }
    if let Some(path) = &args.raw {
        output::write_new(path, &raw_bytes(&images)?, true)?;
    }
    let mut wrote = files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>();
    if let Some(dir) = &args.png_dir {
        wrote.push(format!("{} images in {}", images.n, dir.display()));
    }
    eprintln!("wrote {}", wrote.join(", "));
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

#[cfg(test)]
mod tests {
    use clap::Parser;
    use ddpm::{DiffusionConfig, UnetConfig};

    use super::*;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        sample: SampleArgs,
    }

    /// A model of T = 20 steps, with two classes or none.
    fn model(classes: Option<usize>) -> ModelConfig {
        ModelConfig {
            unet: UnetConfig::new(8).with_num_classes(classes),
            diffusion: DiffusionConfig {
                timesteps: 20,
                ..DiffusionConfig::default()
            },
            image_size: [8, 8],
        }
    }

    fn kind(flags: &[&str], classes: Option<usize>) -> Result<SamplerKind, String> {
        let args = Command::try_parse_from([&["ddpm", "m.bpk"][..], flags].concat())
            .map_err(|e| e.to_string())?;
        sampler_config(&args.sample, &model(classes))
            .map(|c| c.kind)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn sampler_flags_are_checked_against_the_model_and_named() {
        // The default of 50 DDIM steps is T where the model has fewer.
        assert_eq!(
            kind(&[], None),
            Ok(SamplerKind::Ddim {
                steps: 20,
                eta: 0.0
            })
        );
        assert_eq!(
            kind(&["--steps", "7", "--eta", "0.5"], Some(2)),
            Ok(SamplerKind::Ddim { steps: 7, eta: 0.5 })
        );
        let refused = [
            (
                &["--steps", "21"][..],
                None,
                "--steps must be 1 to 20 (the model's T), got 21",
            ),
            (
                &["--steps", "0"],
                None,
                "--steps must be 1 to 20 (the model's T), got 0",
            ),
            (
                &["--eta=-1"],
                None,
                "--eta must be a finite number ≥ 0, got -1",
            ),
            (
                &["--sampler", "ddpm", "--steps", "5"],
                None,
                "--steps is for DDIM",
            ),
            (
                &["--sampler", "ddpm", "--eta", "0"],
                None,
                "--eta is for DDIM",
            ),
            (
                &["--guidance", "NaN"],
                Some(2),
                "--guidance must be a finite number, got NaN",
            ),
            (
                &["--guidance", "3"],
                None,
                "--guidance needs a class-conditional model",
            ),
            (
                &["--interpolate", "1,2", "--eta", "0.5"],
                None,
                "--interpolate needs DDIM with eta = 0",
            ),
            (
                &["--init", "a.png", "--strength", "1.5"],
                None,
                "--strength must be between 0 and 1, got 1.5",
            ),
            (
                &["--init", "a.png", "--mask", "m.png", "--resample-jump", "0"],
                None,
                "--resample-jump must be 1 to 1000",
            ),
        ];
        for (flags, classes, message) in refused {
            let err = kind(flags, classes).expect_err(message);
            assert!(err.starts_with(message), "{flags:?}: {err}");
        }
        assert!(kind(&["--sampler", "ddpm"], Some(2)).is_ok());
        assert!(kind(&["--guidance", "3"], Some(2)).is_ok());
    }
}
