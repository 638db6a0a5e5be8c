//! `ddpm eval`: how good a model is, measured on held-out images (a digit model: on MNIST's test
//! set, with every measure below).
//!
//! - Fréchet distance between generated and real images in the feature space of a small
//!   [`classifier`] (the embedded one knows MNIST's digits; `--classifier` names another), with
//!   the distance between two halves of the real data (at the same number of images) as the
//!   floor a perfect model would reach;
//! - the classifier's accuracy on class-conditional samples (was the requested class drawn?),
//!   overall and per class, and the entropy of its predicted-class histogram on unconditional
//!   ones (are all classes drawn?);
//! - for every sampler asked (DDPM with all T steps, DDIM with K) and both weights of a run
//!   folder (EMA and raw);
//! - the paper's negative log-likelihood bound in bits/dim on held-out images ([`likelihood`]).
//!
//! `--extend REPORT` measures only what an earlier report of the same checkpoint lacks and
//! writes both together, so an evaluation can be done in parts.
//!
//! A model the classifier cannot judge (another size, channels or classes) gets only the
//! bits/dim, on held-out images of its own kind (`--heldout FOLDER`).
//!
//! `ddpm classifier` trains a classifier ([`train_classifier::run`]).

pub mod args;
pub mod classifier;
pub mod frechet;
pub mod likelihood;
pub mod measure;
pub mod report;
pub mod settings;
pub mod train_classifier;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use burn::tensor::Device;
use ddpm::ModelConfig;

use crate::card;
use crate::data::{self, Dataset, EMBEDDED_MNIST_TEST, Shaping};
use crate::device;
use crate::load::{self, WeightsChoice};
use crate::output;
use crate::run_dir::RunDir;
use crate::session;
use args::{EvalArgs, SamplerSpec};
use classifier::{Classifier, Domain};
use likelihood::BoundOptions;
use measure::Loaded;
use report::{Likelihood, Report};
use settings::Settings;

/// Runs `ddpm eval`.
pub fn run(args: &EvalArgs) -> Result<()> {
    // Not --extend's report: writing the extended report over it (with --force) is its use.
    let mut inputs = load::files_read(&args.model);
    inputs.extend(args.classifier.clone());
    inputs.extend(Some(PathBuf::from(&args.heldout)).filter(|p| p.exists()));
    output::refuse_inputs(args.out.as_slice(), &inputs.iter().collect::<Vec<_>>())?;
    output::refuse_existing(&args.out, args.force)?;
    if args.extend.is_some() && args.out.is_none() {
        bail!(
            "--extend needs --out: where to write the report with both (the same file, with --force)"
        );
    }
    let started = Instant::now();
    let previous = args.extend.as_deref().map(Report::read).transpose()?;
    let settings = Settings::resolve(args, previous.as_ref())?;
    settings.check()?;
    // As a sampler named twice is: the same weights would be measured twice.
    if let Some(twice) = settings::repeated(&args.weights) {
        bail!("--weights names {} twice", twice.name());
    }
    // The classifier, the model and the held-out images are checked before a GPU is opened,
    // so that an error in them is the first line, not after a driver's own. The classifier (a
    // small network, loaded again on the device) is checked for any model: a bad --classifier
    // is never ignored.
    let (probe, _) = Classifier::load(args.classifier.as_deref(), &Device::flex())?;
    let domain = probe.domain().clone();
    let model_config = load::model_config(&args.model)?;
    let judged = domain.judges(&model_config, &card::class_names_of(&args.model)?);
    let heldout = if judged {
        check_samplers(&model_config, &settings.samplers)?;
        if args.heldout == EMBEDDED_MNIST_TEST && domain != Domain::digits() {
            bail!(
                "the classifier reads {}: pass --heldout with held-out images of those classes",
                domain.describe()
            );
        }
        domain.labelled(&args.heldout)?
    } else {
        own_heldout(args, &settings, &model_config, &domain)?
    };
    // The report's folder too: a bad --out found after hours of measuring would lose them.
    output::prepare(args.out.as_slice(), &[])?;
    let selected = device::select(args.device)?;
    let device = &selected.device;
    let (classifier, classifier_sha256) = Classifier::load(args.classifier.as_deref(), device)?;
    let models = load_models(&args.model, &args.weights, device)?;
    let Some(first) = models.first() else {
        bail!("--weights: nothing to evaluate");
    };
    let (config, step) = (first.config.clone(), first.step);
    let steps_in_all = first.steps_in_all.filter(|&all| Some(all) != step);
    let classifier_sha256 = judged.then_some(classifier_sha256);
    if let Some(previous) = &previous {
        settings::check_extends(args, previous, step, classifier_sha256.as_deref())?;
        let weights: Vec<&str> = models.iter().map(|m| m.which.name()).collect();
        settings::check_additions(args, previous, &settings, &weights, judged)?;
        for Loaded { which, sha256, .. } in &models {
            let name = which.name();
            if let Some(other) = previous.weights_sha256.get(name).filter(|s| *s != sha256) {
                bail!(
                    "--extend: the report evaluated other {name} weights (SHA-256 {}) than {}'s ({})",
                    card::short(other),
                    args.model.display(),
                    card::short(sha256)
                );
            }
        }
    }

    let measured = if judged {
        Some(measure::measure_samples(
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

    let (classifier_accuracy, classes, floor, samples) = match measured {
        Some(m) => (
            Some(m.classifier_accuracy),
            m.classes,
            Some(m.floor),
            m.rows,
        ),
        None => (None, Vec::new(), None, Vec::new()),
    };
    let report = Report {
        model: session::portable_path(&args.model),
        step,
        steps_in_all,
        weights_sha256: models
            .iter()
            .map(|m| (m.which.name().to_string(), m.sha256.clone()))
            .collect(),
        command: session::command_line(),
        extended_by: Vec::new(),
        device: selected.description.clone(),
        heldout: args.heldout.clone(),
        classifier_accuracy,
        classifier_sha256,
        classes,
        images: judged.then_some(settings.n),
        guidance: judged.then_some(settings.guidance),
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
    output::print(&report.markdown())?;
    if let Some(out) = &args.out {
        let json = serde_json::to_string_pretty(&report)? + "\n";
        output::write_new(out, json.as_bytes(), args.force)?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

/// The weights asked for, in the order asked (each once: `run` refused repeats).
fn load_models(path: &Path, wanted: &[WeightsChoice], device: &Device) -> Result<Vec<Loaded>> {
    if path.is_dir() {
        // One checkpoint for all of them, even if a running trainer writes a newer one.
        let run = RunDir(path.to_path_buf());
        let ckpt = load::newest_checkpoint(&run)?;
        // The weights the run started from, read once for all the weights asked for.
        let earlier = card::WarmStart::read(&run.warm_start())?.map(Box::new);
        return wanted
            .iter()
            .map(|&which| {
                let (model, config, step) = load::checkpoint_model(&ckpt, which, device)?;
                let history = card::Provenance {
                    steps_trained: Some(step),
                    initialised_from: earlier.clone(),
                    ..card::Provenance::default()
                };
                Ok(Loaded {
                    which,
                    model: load::for_sampling(model, config.image_size, device),
                    config,
                    step: Some(step),
                    steps_in_all: history.steps_in_all(),
                    sha256: card::sha256_of(&which.file_in(&ckpt))?,
                })
            })
            .collect();
    }
    // The model card `ddpm export` wrote beside the file says the step and which weights the
    // file holds (EMA unless it says raw).
    let card = card::card_of(path);
    let held = match card
        .as_ref()
        .and_then(|c| c.origin.history.averaging.as_deref())
    {
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
    let (model, config) = load::model(path, device)?;
    Ok(vec![Loaded {
        which: held,
        model: load::for_sampling(model, config.image_size, device),
        config,
        step: card.as_ref().and_then(|c| c.origin.history.steps_trained),
        steps_in_all: card.and_then(|c| c.origin.history.steps_in_all()),
        sha256: card::sha256_of(path)?,
    }])
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

/// The held-out images of a model the classifier cannot judge (another size, channels or
/// classes): only its bits/dim is measured, on images it was not trained on, which the user
/// names (the default, MNIST's test digits, is not of its kind).
fn own_heldout(
    args: &EvalArgs,
    settings: &Settings,
    config: &ModelConfig,
    domain: &Domain,
) -> Result<Dataset> {
    let [height, width] = config.image_size;
    let channels = config.unet.channels;
    let classes = config
        .unet
        .num_classes
        .map_or(String::new(), |c| format!(" in {c} classes"));
    let what = format!(
        "{}: makes {height}×{width} images with {channels} channel(s){classes}, not the evaluation classifier's {}",
        args.model.display(),
        domain.describe()
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
            "{what}; {flag} sets how images are generated for the classifier, and this model gets bits/dim only"
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
