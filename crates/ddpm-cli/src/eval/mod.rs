//! `ddpm eval`: how good a model is, measured on held-out images (a digit model: on MNIST's test
//! set, with every measure below).
//!
//! - Fréchet distance between generated and real digits in the feature space of the project's
//!   own MNIST [`classifier`], with the distance between two halves of the real data (at the
//!   same number of images) as the floor a perfect model would reach;
//! - the classifier's accuracy on class-conditional samples (was the requested digit drawn?)
//!   and the entropy of its predicted-class histogram on unconditional ones (are all digits
//!   drawn?);
//! - for every sampler asked (DDPM with all T steps, DDIM with K) and both weights of a run
//!   folder (EMA and raw);
//! - the paper's negative log-likelihood bound in bits/dim on held-out digits ([`likelihood`]).
//!
//! `--extend REPORT` measures only what an earlier report of the same checkpoint lacks and
//! writes both together, so an evaluation can be done in parts.
//!
//! A model the classifier cannot judge (colour, another size, other classes) gets only the
//! bits/dim, on held-out images of its own kind (`--heldout FOLDER`).
//!
//! `ddpm classifier` trains the classifier.

pub mod classifier;
pub mod frechet;
pub mod likelihood;
mod report;
mod settings;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::ValueEnum;
use ddpm::{
    ClassChoice, DdpmVariance, GaussianDiffusion, ModelConfig, SampleRequest, Sampler,
    SamplerConfig, SamplerKind, Unet,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::checkpoint;
use crate::data::{self, Dataset, EMBEDDED_MNIST, EMBEDDED_MNIST_TEST, Shaping};
use crate::device::{self, DeviceChoice};
use crate::export;
use crate::sample;
use crate::split_batch;
use classifier::{CLASSES, Classifier, FEATURES, SIDE};
use frechet::Gaussian;
use likelihood::BoundOptions;
pub use report::{Floor, Likelihood, Report, Row};
use settings::Settings;

/// `--samplers`: `ddpm` (ancestral, all T steps) or `ddim-K`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerSpec {
    /// Algorithm 2 through every step.
    Ddpm,
    /// DDIM (η = 0) over this many steps.
    Ddim(usize),
}

impl FromStr for SamplerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a sampler: give `ddpm` or `ddim-K` (e.g. ddim-50)");
        match s {
            "ddpm" => Ok(Self::Ddpm),
            _ => match s.strip_prefix("ddim-").map(str::parse::<usize>) {
                Some(Ok(steps)) if steps > 0 => Ok(Self::Ddim(steps)),
                _ => Err(bad()),
            },
        }
    }
}

impl std::fmt::Display for SamplerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ddpm => write!(f, "ddpm"),
            Self::Ddim(steps) => write!(f, "ddim-{steps}"),
        }
    }
}

impl SamplerSpec {
    fn kind(self) -> SamplerKind {
        match self {
            Self::Ddpm => SamplerKind::Ddpm {
                variance: DdpmVariance::Posterior,
            },
            Self::Ddim(steps) => SamplerKind::Ddim { steps, eta: 0.0 },
        }
    }
}

/// `--weights`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WeightsChoice {
    /// The exponential moving average (what export ships).
    Ema,
    /// The optimiser's weights at the same step.
    Raw,
}

impl WeightsChoice {
    /// `ema` or `raw`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ema => "ema",
            Self::Raw => "raw",
        }
    }

    /// The file of a checkpoint folder that holds these weights.
    pub fn checkpoint_file(self) -> &'static str {
        match self {
            Self::Ema => checkpoint::EMA,
            Self::Raw => checkpoint::MODEL,
        }
    }
}

/// `ddpm eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// A run folder (EMA and raw weights of its newest checkpoint) or an exported weights file
    /// (the one set of weights it holds, EMA or raw as its card says). A model of 28×28
    /// grayscale digits gets every measure; any other model only its bits/dim, on the
    /// `--heldout` images it is given.
    pub model: PathBuf,
    /// Generated images per sampler and weights for the class-conditional measures (the
    /// classes in turn), and as many without a class [default: 1000]. Digit models only.
    #[arg(long, short)]
    pub n: Option<usize>,
    /// Samplers, comma-separated: `ddpm` (all T steps) and `ddim-K` [default:
    /// ddpm,ddim-10,ddim-20,ddim-50,ddim-100]. Digit models only.
    #[arg(long, value_delimiter = ',')]
    pub samplers: Option<Vec<SamplerSpec>>,
    /// Which weights of a run folder, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ema,raw")]
    pub weights: Vec<WeightsChoice>,
    /// Classifier-free guidance scale of the class-conditional samples (1 = none) [default:
    /// 3]. Digit models only.
    #[arg(long)]
    pub guidance: Option<f64>,
    /// Held-out images for the bits/dim (0 skips it) [default: 1000].
    #[arg(long)]
    pub nll_images: Option<usize>,
    /// 1 evaluates all T terms of the bound; K > 1 one random step per block of K (weighted
    /// by K): an unbiased estimate K times faster [default: 1].
    #[arg(long)]
    pub nll_stride: Option<usize>,
    /// Images per network call; it also fixes which noise each image gets [default: 250].
    #[arg(long)]
    pub batch: Option<usize>,
    /// The held-out images: the embedded MNIST test set (digit models), or a folder (of class
    /// folders, IDX files or CIFAR-10 batches) of images the model was not trained on.
    #[arg(long, default_value = EMBEDDED_MNIST_TEST)]
    pub heldout: String,
    /// Classifier weights made by `ddpm classifier` (default: the embedded ones).
    #[arg(long)]
    pub classifier: Option<PathBuf>,
    /// Fixes the sampling noise: the same seed gives the same numbers.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write the results as JSON here (`ddpm export --eval` puts them in the model card).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Add to this earlier `--out` report of the same checkpoint instead of starting afresh:
    /// only the weights × samplers (by default its samplers) and bits/dim it lacks are
    /// measured, with its settings (-n, guidance, batch, bound's images and stride — none if it
    /// has no bits/dim, unless --nll-images asks —, held-out set, seed, classifier); `--out`
    /// (needed; it may be this file, with --force) gets both.
    #[arg(long, value_name = "REPORT")]
    pub extend: Option<PathBuf>,
    /// Overwrite `--out` if it exists.
    #[arg(long)]
    pub force: bool,
    /// Where to run.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
}

/// `ddpm classifier`.
#[derive(Debug, clap::Args)]
pub struct ClassifierArgs {
    /// The weights file to write.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Passes over the 10,000 training digits.
    #[arg(long, default_value_t = 8)]
    pub epochs: usize,
    /// Images per Adam step.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Seeds the initial weights and the batch order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Overwrite `--out` if it exists.
    #[arg(long)]
    pub force: bool,
    /// Where to train.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceChoice,
}

fn digits(source: &str) -> Result<Dataset> {
    let shaping = Shaping {
        image_size: SIDE,
        channels: 1,
        strict: false,
    };
    let data = data::load(source, &shaping)?;
    match data.num_classes() {
        Some(CLASSES) => Ok(data),
        _ => bail!("{source}: not labelled digits 0–9"),
    }
}

/// Runs `ddpm classifier`: trains on the embedded training digits, reports the accuracy on
/// the held-out test digits, writes the weights.
pub fn train_classifier(args: &ClassifierArgs) -> Result<()> {
    if args.out.exists() && !args.force {
        bail!(
            "{}: exists; pass --force to overwrite it",
            args.out.display()
        );
    }
    if args.epochs == 0 || args.batch_size == 0 {
        bail!("--epochs and --batch-size must be at least 1");
    }
    let selected = device::select(args.device)?;
    let (train, test) = (digits(EMBEDDED_MNIST)?, digits(EMBEDDED_MNIST_TEST)?);
    let started = Instant::now();
    let training = classifier::Training {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
    };
    let model = classifier::train(&train, &training, &selected.device)?;
    let seconds = started.elapsed().as_secs_f64();
    let readout = model.read(&test.pixels, 500, &selected.device)?;
    let labels = test.labels.as_deref().unwrap_or_default();
    let accuracy = classifier::accuracy(&readout.predictions, labels);
    write_new(&args.out, &model.to_bytes()?, args.force)?;
    println!(
        "held-out accuracy {:.2}% ({} MNIST test digits); trained {} epochs in {seconds:.0} s on {}; wrote {}",
        100.0 * accuracy,
        test.len(),
        args.epochs,
        selected.description,
        args.out.display()
    );
    Ok(())
}

/// Runs `ddpm eval`.
pub fn run(args: &EvalArgs) -> Result<()> {
    if let Some(out) = &args.out
        && out.exists()
        && !args.force
    {
        bail!("{}: exists; pass --force to overwrite it", out.display());
    }
    if args.extend.is_some() && args.out.is_none() {
        bail!(
            "--extend needs --out: where to write the report with both (the same file, with --force)"
        );
    }
    if args.n.is_some_and(|n| n < 2) {
        bail!("--n must be at least 2 (a covariance needs two images)");
    }
    if args.batch == Some(0) || args.nll_stride == Some(0) {
        bail!("--batch and --nll-stride must be at least 1");
    }
    let started = Instant::now();
    let previous = args.extend.as_deref().map(Report::read).transpose()?;
    let settings = Settings::resolve(args, previous.as_ref())?;
    let selected = device::select(args.device)?;
    let device = &selected.device;
    // Loaded (and so checked) even when the model turns out not to be of digits.
    let (classifier, classifier_sha256) = Classifier::load(args.classifier.as_deref(), device)?;
    let models = load_models(&args.model, &args.weights, device)?;
    let Some(first) = models.first() else {
        bail!("--weights: nothing to evaluate");
    };
    let (config, step) = (first.config.clone(), first.step);
    let digit_model = is_digit_model(&config);
    let classifier_sha256 = digit_model.then_some(classifier_sha256);
    if let Some(previous) = &previous {
        settings::check_extends(args, previous, step, classifier_sha256.as_deref())?;
        let weights: Vec<&str> = models.iter().map(|m| m.which.name()).collect();
        settings::nothing_new(args, previous, &settings, &weights, digit_model)?;
    }
    let heldout = if digit_model {
        check_samplers(&config, &settings.samplers)?;
        digits(&args.heldout)?
    } else {
        own_heldout(args, &settings, &config)?
    };

    let measured = if digit_model {
        Some(measure_samples(
            args,
            &settings,
            previous.as_ref(),
            &classifier,
            &models,
            &heldout,
            device,
        )?)
    } else {
        None
    };
    let mut bounds = Vec::new();
    if settings.nll_images > 0 {
        for Loaded { which, model, .. } in &models {
            if previous.as_ref().is_some_and(|p| p.has_bound(which.name())) {
                continue;
            }
            let options = BoundOptions {
                images: settings.nll_images,
                stride: settings.nll_stride,
                batch: settings.batch,
                seed: args.seed,
            };
            let bound = likelihood::bits_per_dim(model, &config, &heldout, options, device)?;
            eprintln!("{} bits/dim {:.3}", which.name(), bound.bits_per_dim);
            bounds.push(Likelihood {
                weights: which.name().into(),
                bound,
            });
        }
    }

    let (classifier_accuracy, floor, samples) = match measured {
        Some(m) => (Some(m.classifier_accuracy), Some(m.floor), m.rows),
        None => (None, None, Vec::new()),
    };
    let report = Report {
        model: args.model.display().to_string(),
        step,
        command: std::iter::once("ddpm".to_string())
            .chain(std::env::args().skip(1))
            .collect(),
        extended_by: Vec::new(),
        device: selected.description.clone(),
        heldout: args.heldout.clone(),
        classifier_accuracy,
        classifier_sha256,
        images: digit_model.then_some(settings.n),
        guidance: digit_model.then_some(settings.guidance),
        batch: Some(settings.batch),
        seed: args.seed,
        floor,
        samples,
        likelihood: bounds,
        seconds: started.elapsed().as_secs_f64(),
    };
    let report = match previous {
        Some(previous) => previous.extended(report),
        None => report,
    };
    print!("{}", report.markdown());
    if let Some(out) = &args.out {
        let json = serde_json::to_string_pretty(&report)? + "\n";
        write_new(out, json.as_bytes(), args.force)?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

/// What the digit classifier measured: itself on the real digits, the floor, and one row per
/// weights × sampler.
struct SampleMeasures {
    classifier_accuracy: f64,
    floor: Floor,
    rows: Vec<Row>,
}

/// Generates with every weights and sampler and measures the images with the classifier.
fn measure_samples(
    args: &EvalArgs,
    settings: &Settings,
    previous: Option<&Report>,
    classifier: &Classifier,
    models: &[Loaded],
    heldout: &Dataset,
    device: &Device,
) -> Result<SampleMeasures> {
    if heldout.len() < 4 {
        bail!(
            "{}: {} image(s); the held-out set needs at least 4 (two halves to compare)",
            args.heldout,
            heldout.len()
        );
    }
    // The real digits: half A is the reference, half B the floor.
    let real = classifier.read(&heldout.pixels, settings.batch, device)?;
    let labels = heldout.labels.as_deref().unwrap_or_default();
    let classifier_accuracy = classifier::accuracy(&real.predictions, labels);
    // A report without the classifier's fingerprint: its accuracy on the same digits tells.
    if let Some(theirs) = previous.and_then(|p| p.classifier_accuracy)
        && previous.is_some_and(|p| p.classifier_sha256.is_none())
        && theirs != classifier_accuracy
    {
        bail!(
            "--extend: the report's classifier was right on {:.2}% of the held-out digits, this one on {:.2}%: another classifier (--classifier)",
            100.0 * theirs,
            100.0 * classifier_accuracy
        );
    }
    let half = heldout.len() / 2;
    let reference = Gaussian::fit(&real.features[..half * FEATURES], FEATURES);
    let other = &real.features[half * FEATURES..];
    let floor_n = settings.n.min(heldout.len() - half);
    let floor = Floor {
        images: floor_n,
        fd: Gaussian::fit(&other[..floor_n * FEATURES], FEATURES).distance(&reference),
        halves: half,
        fd_halves: Gaussian::fit(other, FEATURES).distance(&reference),
    };

    let mut rows = Vec::new();
    for Loaded {
        which,
        model,
        config,
        ..
    } in models
    {
        for &spec in &settings.samplers {
            if previous.is_some_and(|p| p.has_row(which.name(), &spec.to_string())) {
                continue;
            }
            let row_started = Instant::now();
            let mut row = Row::new(which.name(), spec);
            let set = |classes: Option<Vec<usize>>, guidance: f64, label: &str| {
                let options = Generation {
                    spec,
                    guidance,
                    classes,
                    n: settings.n,
                    batch: settings.batch,
                    seed: args.seed,
                };
                let what = format!("{} {spec} {label}", which.name());
                generate(model, config, &options, &what, device)
                    .and_then(|pixels| classifier.read(&pixels, settings.batch, device))
            };
            if let Some(classes) = ClassChoice::Mixed.labels(config.unet.num_classes, settings.n)? {
                let out = set(
                    Some(classes.clone()),
                    settings.guidance,
                    "class-conditional",
                )?;
                row.fd = Some(Gaussian::fit(&out.features, FEATURES).distance(&reference));
                row.accuracy = Some(classifier::accuracy(&out.predictions, &classes));
            }
            let null = ClassChoice::Null.labels(config.unet.num_classes, settings.n)?;
            let out = set(null, 1.0, "unconditional")?;
            row.fd_unconditional = Gaussian::fit(&out.features, FEATURES).distance(&reference);
            row.class_entropy_bits = classifier::class_entropy(&out.predictions);
            row.seconds = row_started.elapsed().as_secs_f64();
            eprintln!("{}", row.line());
            rows.push(row);
        }
    }
    Ok(SampleMeasures {
        classifier_accuracy,
        floor,
        rows,
    })
}

/// One set of weights to evaluate.
struct Loaded {
    which: WeightsChoice,
    model: Unet,
    config: ModelConfig,
    /// The training step, when known (a run folder's checkpoint, or a weights file's card).
    step: Option<usize>,
}

/// The weights asked for, in the order asked.
fn load_models(path: &Path, weights: &[WeightsChoice], device: &Device) -> Result<Vec<Loaded>> {
    let mut wanted: Vec<WeightsChoice> = Vec::new();
    for w in weights {
        if !wanted.contains(w) {
            wanted.push(*w);
        }
    }
    if path.is_dir() {
        // One checkpoint for all of them, even if a running trainer writes a newer one.
        let ckpt = sample::newest_checkpoint(path)?;
        return wanted
            .into_iter()
            .map(|which| {
                let (model, config, step) =
                    sample::load_checkpoint_model(&ckpt, which.checkpoint_file(), device)?;
                Ok(Loaded {
                    which,
                    model,
                    config,
                    step: Some(step),
                })
            })
            .collect();
    }
    // The model card `ddpm export` wrote beside the file says the step and which weights the
    // file holds (EMA unless it says raw).
    let card = export::card_of(path);
    let held = match card.as_ref().and_then(|c| c.averaging.as_deref()) {
        Some("raw") => WeightsChoice::Raw,
        _ => WeightsChoice::Ema,
    };
    if !wanted.contains(&held) {
        bail!(
            "{}: a weights file holds one set of weights, {} here (its card says); the others need the run folder",
            path.display(),
            held.name()
        );
    }
    if wanted.len() > 1 {
        eprintln!(
            "notice: {}: a weights file holds one set of weights; evaluating those ({})",
            path.display(),
            held.name()
        );
    }
    let (model, config) = sample::load_model(path, device)?;
    Ok(vec![Loaded {
        which: held,
        model,
        config,
        step: card.and_then(|card| card.steps_trained),
    }])
}

/// Whether the classifier can judge the model's images: 28×28 grayscale, unconditional or
/// with the ten digit classes.
fn is_digit_model(config: &ModelConfig) -> bool {
    config.image_size == [SIDE, SIDE]
        && config.unet.channels == 1
        && config.unet.num_classes.is_none_or(|c| c == CLASSES)
}

/// Refuses samplers the model cannot run.
fn check_samplers(config: &ModelConfig, samplers: &[SamplerSpec]) -> Result<()> {
    let timesteps = config.diffusion.timesteps;
    for spec in samplers {
        if let SamplerSpec::Ddim(steps) = spec
            && *steps > timesteps
        {
            bail!("--samplers: {spec} takes more steps than the model's T = {timesteps}");
        }
    }
    Ok(())
}

/// The held-out images of a model the digit classifier cannot judge (colour, another size or
/// other classes): only its bits/dim is measured, on images it was not trained on, which the
/// user names (the default, MNIST's test digits, is not of its kind).
fn own_heldout(args: &EvalArgs, settings: &Settings, config: &ModelConfig) -> Result<Dataset> {
    let [height, width] = config.image_size;
    let channels = config.unet.channels;
    let classes = config
        .unet
        .num_classes
        .map_or(String::new(), |c| format!(" in {c} classes"));
    let what = format!(
        "{}: makes {height}×{width} images with {channels} channel(s){classes}, not 28×28 digits (the evaluation classifier's)",
        args.model.display()
    );
    if args.heldout == EMBEDDED_MNIST_TEST {
        bail!("{what}; pass --heldout with held-out images of its own to measure its bits/dim");
    }
    if settings.nll_images == 0 {
        bail!("{what}, and --nll-images is 0: nothing to measure");
    }
    let sample_flags = [
        (args.n.is_some(), "-n"),
        (args.samplers.is_some(), "--samplers"),
        (args.guidance.is_some(), "--guidance"),
    ];
    if let Some((_, flag)) = sample_flags.iter().find(|(given, _)| *given) {
        bail!(
            "{what}; {flag} sets how digits are generated for the classifier, and this model gets bits/dim only"
        );
    }
    eprintln!("notice: {what}: measuring bits/dim only");
    let shaping = Shaping {
        image_size: height,
        channels,
        strict: true,
    };
    // The loaders refuse a source without images.
    data::load(&args.heldout, &shaping)
}

/// One set of generated images.
struct Generation {
    spec: SamplerSpec,
    guidance: f64,
    classes: Option<Vec<usize>>,
    n: usize,
    batch: usize,
    seed: u64,
}

/// Samples `options.n` images in batches (batch `k` seeded `seed · 10⁶ + k`) and returns them
/// as bytes, as a PNG would store them.
fn generate(
    model: &Unet,
    config: &ModelConfig,
    options: &Generation,
    what: &str,
    device: &Device,
) -> Result<Vec<u8>> {
    let diffusion = GaussianDiffusion::new(config.diffusion.clone());
    let sampler_config = SamplerConfig {
        kind: options.spec.kind(),
        guidance_scale: options.guidance,
        ..SamplerConfig::default()
    };
    let chunks = options.n.div_ceil(options.batch);
    let steps = match options.spec {
        SamplerSpec::Ddpm => diffusion.timesteps(),
        SamplerSpec::Ddim(k) => k,
    };
    let bar = ProgressBar::new((chunks * steps) as u64).with_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} steps [{elapsed} < {eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    let [height, width] = config.image_size;
    let mut pixels = Vec::with_capacity(options.n * height * width);
    let model = &split_batch::for_device(model, device);
    for k in 0..chunks {
        let start = k * options.batch;
        let count = options.batch.min(options.n - start);
        let request = SampleRequest {
            seed: options.seed.wrapping_mul(1_000_000).wrapping_add(k as u64),
            shape: [count, config.unet.channels, height, width],
            classes: options
                .classes
                .as_ref()
                .map(|c| c[start..start + count].to_vec()),
        };
        let mut sampler = Sampler::new(&diffusion, sampler_config, request, model, device)?;
        while sampler.step(model).is_some() {
            bar.inc(1);
        }
        let values = sampler
            .sample()
            .clone()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("cannot read the images back: {e:?}"))?;
        pixels.extend(values.iter().map(|&v| ddpm::grid::to_byte(v)));
    }
    bar.finish_and_clear();
    Ok(pixels)
}

/// Writes `bytes` to `path` (refusing to replace a file unless `force`), through a temporary
/// file renamed into place, so that a failed write leaves the old file whole.
fn write_new(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    if path.exists() && !force {
        bail!("{}: exists; pass --force to overwrite it", path.display());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create", parent.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("{}: cannot write", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_specs_parse_and_print() {
        assert_eq!("ddpm".parse::<SamplerSpec>(), Ok(SamplerSpec::Ddpm));
        assert_eq!("ddim-50".parse::<SamplerSpec>(), Ok(SamplerSpec::Ddim(50)));
        assert_eq!(SamplerSpec::Ddim(20).to_string(), "ddim-20");
        for bad in ["ddim", "ddim-0", "ddim-x", "DDPM", "ddim50"] {
            let err = bad.parse::<SamplerSpec>().expect_err(bad);
            assert!(err.contains(bad) && err.contains("ddim-K"), "{err}");
        }
    }
}
