//! The samples' measures: every weights × sampler generates class-conditional and
//! unconditional images, and the classifier judges them against the held-out images (Fréchet
//! distance in its feature space, class accuracy overall and per class, class entropy), with
//! the real data's own distance as the floor.

use std::time::Instant;

use anyhow::{Result, bail};
use burn::tensor::Device;
use ddpm::{
    ClassChoice, GaussianDiffusion, ModelConfig, SampleRequest, Sampler, SamplerConfig, Unet,
};
use indicatif::{ProgressBar, ProgressStyle};

use super::args::{EvalArgs, SamplerSpec};
use super::classifier::{self, Classifier, FEATURES};
use super::frechet::Gaussian;
use super::report::{ClassReference, Floor, Report, Row};
use super::settings::Settings;
use crate::batch_parts;
use crate::data::Dataset;
use crate::load::WeightsChoice;
use crate::read_back;

/// What the classifier measured: itself on the real images (overall and per class), the
/// floor, and one row per weights × sampler.
pub struct SampleMeasures {
    /// The classifier's accuracy on the held-out images.
    pub classifier_accuracy: f64,
    /// Per class: its held-out images and the classifier's accuracy on them.
    pub classes: Vec<ClassReference>,
    /// The real images' own distance.
    pub floor: Floor,
    /// One row per weights × sampler.
    pub rows: Vec<Row>,
}

/// Generates with every weights and sampler and measures the images with the classifier.
pub fn measure_samples(
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
    // The real images: half A is the reference, half B the floor.
    let real = classifier.read(&heldout.pixels, settings.batch, device)?;
    let labels = heldout.labels.as_deref().unwrap_or_default();
    let classifier_accuracy = classifier::accuracy(&real.predictions, labels);
    let names = &classifier.domain().classes;
    let classes = names
        .iter()
        .zip(classifier::by_class(&real.predictions, labels, names.len()))
        .map(|(name, count)| ClassReference {
            class: name.clone(),
            images: count.images,
            accuracy: count.accuracy(),
        })
        .collect();
    // A report without the classifier's fingerprint: its accuracy on the same digits tells.
    if let Some(theirs) = previous.and_then(|p| p.classifier_accuracy)
        && previous.is_some_and(|p| p.classifier_sha256.is_none())
        && theirs != classifier_accuracy
    {
        bail!(
            "--extend: the report's classifier was right on {:.2}% of the held-out images, this one on {:.2}%: another classifier (--classifier)",
            100.0 * theirs,
            100.0 * classifier_accuracy
        );
    }
    let half = heldout.len() / 2;
    let features = halves_in_order(&real.features, labels);
    let reference = Gaussian::fit(&features[..half * FEATURES], FEATURES);
    let other = &features[half * FEATURES..];
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
                row.accuracy_by_class =
                    classifier::by_class(&out.predictions, &classes, names.len())
                        .iter()
                        .map(classifier::ClassCount::accuracy)
                        .collect();
            }
            let null = ClassChoice::Null.labels(config.unet.num_classes, settings.n)?;
            let out = set(null, 1.0, "unconditional")?;
            row.fd_unconditional = Gaussian::fit(&out.features, FEATURES).distance(&reference);
            row.class_entropy_bits = classifier::class_entropy(&out.predictions, names.len());
            row.seconds = row_started.elapsed().as_secs_f64();
            eprintln!("{}", row.line());
            rows.push(row);
        }
    }
    Ok(SampleMeasures {
        classifier_accuracy,
        classes,
        floor,
        rows,
    })
}

/// The held-out features in the order the halves take them: as stored, unless the images
/// come class by class (a folder of class folders), whose first half would hold other classes
/// than its second; those alternate, so that each half holds every class. MNIST's test set
/// comes mixed, and keeps the halves its reports were measured with.
fn halves_in_order(features: &[f32], labels: &[usize]) -> Vec<f32> {
    let by_class = labels.windows(2).all(|w| w[0] <= w[1]) && labels.first() != labels.last();
    if !by_class {
        return features.to_vec();
    }
    let images: Vec<&[f32]> = features.chunks(FEATURES).collect();
    let alternate = images
        .iter()
        .step_by(2)
        .chain(images.iter().skip(1).step_by(2));
    alternate.flat_map(|image| image.iter().copied()).collect()
}

/// One set of weights to evaluate.
pub struct Loaded {
    /// EMA or raw.
    pub which: WeightsChoice,
    /// The network.
    pub model: Unet,
    /// Its configuration.
    pub config: ModelConfig,
    /// The training step, when known (a run folder's checkpoint, or a weights file's card).
    pub step: Option<usize>,
    /// The steps with those of the weights its run started from (`train --init`), when known.
    pub steps_in_all: Option<usize>,
    /// SHA-256 of the file the weights were read from.
    pub sha256: String,
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
    let mut pixels = Vec::with_capacity(options.n * config.unet.channels * height * width);
    let model = &batch_parts::for_device(model, device);
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
        let values = read_back::values(sampler.sample().clone(), "the images")?;
        pixels.extend(values.iter().map(|&v| ddpm::grid::to_byte(v)));
    }
    bar.finish_and_clear();
    Ok(pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_stored_class_by_class_alternate_between_the_halves() {
        let features: Vec<f32> = (0..4 * FEATURES).map(|i| (i / FEATURES) as f32).collect();
        let firsts = |f: Vec<f32>| -> Vec<f32> { f.chunks(FEATURES).map(|c| c[0]).collect() };
        // Class by class: images 0, 2 then 1, 3, so each half has a 0 and a 1.
        assert_eq!(
            firsts(halves_in_order(&features, &[0, 0, 1, 1])),
            [0.0, 2.0, 1.0, 3.0]
        );
        // Mixed (MNIST's test set), or one class: as stored.
        for labels in [[1, 0, 0, 1], [2, 2, 2, 2]] {
            assert_eq!(
                firsts(halves_in_order(&features, &labels)),
                [0.0, 1.0, 2.0, 3.0]
            );
        }
    }
}
