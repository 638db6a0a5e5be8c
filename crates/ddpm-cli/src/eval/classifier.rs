//! The small MNIST classifier that `ddpm eval` measures samples with: four 3×3 convolutions
//! (the last three with stride 2: 28 → 14 → 7 → 4), a linear layer from the flattened
//! 4×4×64 map to [`FEATURES`] features, and a linear layer to the ten digits. The Fréchet
//! distance is measured in its feature space (the role Inception-v3 plays for FID on natural
//! images) and its predictions give the class accuracy and the class entropy of samples.
//! `ddpm classifier` trains it with burn on the embedded training digits and reports its
//! accuracy on the held-out MNIST test set.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::optim::{AdamConfig, GradientsParams};
use burn::store::ModuleRecord;
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};

use crate::card;
use crate::data::{
    self, BatchOrder, Dataset, EMBEDDED_MNIST, EMBEDDED_MNIST_TEST, Shaping, Visits,
};
use crate::device::{self, DeviceChoice};
use crate::output;
use crate::read_back;

/// Width of the feature vector (the input of the last layer).
pub const FEATURES: usize = 64;
/// The ten digits.
pub const CLASSES: usize = 10;
/// Side of the images it reads.
pub const SIDE: usize = 28;

/// The weights `ddpm eval` uses unless `--classifier` names others (made by the command in
/// `data/classifier/README.md`).
const EMBEDDED: &[u8] = include_bytes!("../../../../data/classifier/mnist-classifier.bpk");

/// The network.
#[derive(Module, Debug)]
pub struct Classifier {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    conv4: Conv2d,
    hidden: Linear,
    head: Linear,
}

/// Channels × side² of the last convolution's output.
const FLAT: usize = 64 * 4 * 4;

/// What the classifier makes of a set of images.
#[derive(Debug, Clone, Default)]
pub struct Readout {
    /// [`FEATURES`] values per image, image after image.
    pub features: Vec<f32>,
    /// The most likely digit of each image.
    pub predictions: Vec<usize>,
}

impl Classifier {
    /// Freshly initialised weights (from the device's seed).
    pub fn new(device: &Device) -> Self {
        let conv = |i: usize, o: usize, stride: usize| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Self {
            conv1: conv(1, 32, 1),
            conv2: conv(32, 64, 2),
            conv3: conv(64, 64, 2),
            conv4: conv(64, 64, 2),
            hidden: LinearConfig::new(FLAT, FEATURES).init(device),
            head: LinearConfig::new(FEATURES, CLASSES).init(device),
        }
    }

    /// The features of `[batch, 1, 28, 28]` images in [−1, 1]. `-> [batch, FEATURES]`
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let x = relu(self.conv1.forward(x));
        let x = relu(self.conv2.forward(x));
        let x = relu(self.conv3.forward(x));
        let x = relu(self.conv4.forward(x));
        let batch = x.dims()[0];
        relu(self.hidden.forward(x.reshape([batch, FLAT])))
    }

    /// Class scores from features. `[batch, FEATURES] -> [batch, CLASSES]`
    pub fn logits(&self, features: Tensor<2>) -> Tensor<2> {
        self.head.forward(features)
    }

    /// Features and predicted digits of images given as bytes (`[n, 1, 28, 28]`, 0 = black),
    /// in batches of `batch`.
    pub fn read(&self, pixels: &[u8], batch: usize, device: &Device) -> Result<Readout> {
        let image = SIDE * SIDE;
        let mut out = Readout::default();
        for chunk in pixels.chunks(image * batch.max(1)) {
            let n = chunk.len() / image;
            let values: Vec<f32> = chunk.iter().map(|&p| data::pixel_value(p)).collect();
            let x = Tensor::from_data(TensorData::new(values, [n, 1, SIDE, SIDE]), device);
            let features = self.features(x);
            let logits = self.logits(features.clone());
            let features = host(features)?;
            let scores = host(logits)?;
            // NaN features would measure every model as perfect (a Fréchet distance of 0).
            if !features.iter().chain(&scores).all(|v| v.is_finite()) {
                bail!("the classifier's outputs are not finite numbers: its weights hold NaN or ∞");
            }
            out.features.extend(features);
            out.predictions.extend(scores.chunks(CLASSES).map(argmax));
        }
        Ok(out)
    }

    /// The embedded weights, or those in `path`, with their SHA-256 (which classifier a
    /// report's numbers were measured with).
    pub fn load(path: Option<&Path>, device: &Device) -> Result<(Self, String)> {
        let (bytes, name) = match path {
            Some(path) => (
                std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?,
                path.display().to_string(),
            ),
            None => (EMBEDDED.to_vec(), "the embedded classifier".to_string()),
        };
        let sha256 = card::sha256_hex(&bytes);
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
            .map_err(|e| anyhow::anyhow!("{name}: not classifier weights ({e})"))?;
        let classifier = Self::new(device)
            .try_load_record(record)
            .map_err(|e| anyhow::anyhow!("{name}: not classifier weights ({e})"))?;
        Ok((classifier, sha256))
    }

    /// The weights as the bytes of a file [`Classifier::load`] reads.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(self
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| anyhow::anyhow!("cannot serialise the classifier: {e}"))?
            .to_vec())
    }
}

/// How `ddpm classifier` trains.
#[derive(Debug, Clone)]
pub struct Training {
    /// Passes over the training digits.
    pub epochs: usize,
    /// Images per Adam step.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Seeds the initial weights and the batch order.
    pub seed: u64,
}

/// Trains a classifier on `data` (digits labelled 0–9) with Adam and cross-entropy.
pub fn train(data: &Dataset, training: &Training, device: &Device) -> Result<Classifier> {
    let labels = data
        .labels
        .as_ref()
        .context("the classifier's training data has no labels")?;
    let train_device = device.clone().autodiff();
    train_device.seed(training.seed);
    let mut model = Classifier::new(&train_device);
    let mut optim = AdamConfig::new().init();
    let mut order = BatchOrder::new(training.seed);
    let visits = Visits::once(data.len());
    let steps = training.epochs * data.len().div_ceil(training.batch_size);
    let bar = ProgressBar::new(steps as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps {msg} [{elapsed} < {eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for _ in 0..steps {
        let (indices, flips) = order.next(&visits, training.batch_size, 0.0);
        let x = data.batch(&indices, &flips, &train_device);
        let targets: Vec<f32> = indices
            .iter()
            .flat_map(|&i| (0..CLASSES).map(move |k| f32::from(u8::from(labels[i] == k))))
            .collect();
        let targets = Tensor::<2>::from_data(
            TensorData::new(targets, [indices.len(), CLASSES]),
            &train_device,
        );
        let log_p = log_softmax(model.logits(model.features(x)), 1);
        let loss = (log_p * targets).sum_dim(1).mean().neg();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let value: f32 = read_back::values(loss, "the loss")?.iter().sum();
        model = optim.step(training.lr, model, grads);
        bar.inc(1);
        bar.set_message(format!("loss {value:.4}"));
    }
    bar.finish_and_clear();
    Ok(model.valid())
}

/// The fraction of `predictions` equal to `labels`.
pub fn accuracy(predictions: &[usize], labels: &[usize]) -> f64 {
    let right = predictions
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    right as f64 / predictions.len().max(1) as f64
}

/// The entropy of the histogram of `predictions` over the ten digits, in bits (log₂ 10 ≈ 3.32
/// when every digit is drawn equally often, 0 when only one is).
pub fn class_entropy(predictions: &[usize]) -> f64 {
    let mut counts = [0usize; CLASSES];
    for &p in predictions {
        counts[p.min(CLASSES - 1)] += 1;
    }
    let n = predictions.len().max(1) as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

fn argmax(scores: &[f32]) -> usize {
    scores
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &s)| {
            if s > best.1 { (i, s) } else { best }
        })
        .0
}

fn host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    read_back::values(t, "the classifier's output")
}

/// The most passes `ddpm classifier` makes, and the largest batch (the training digits).
const MAX_EPOCHS: usize = 1000;
const MAX_BATCH: usize = 10_000;

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

/// The labelled digits of `source` (MNIST IDX files or the embedded sets), refused unless they
/// are the ten digit classes.
pub fn digits(source: &str) -> Result<Dataset> {
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
pub fn run(args: &ClassifierArgs) -> Result<()> {
    output::refuse_existing([&args.out], args.force)?;
    // Bounded so that the step count cannot overflow and a batch cannot outgrow the memory:
    // no batch can be larger than the 10,000 training digits.
    if !(1..=MAX_EPOCHS).contains(&args.epochs) || !(1..=MAX_BATCH).contains(&args.batch_size) {
        bail!(
            "--epochs must be 1 to {MAX_EPOCHS} and --batch-size 1 to {MAX_BATCH}, got {} and {}",
            args.epochs,
            args.batch_size
        );
    }
    if !(args.lr.is_finite() && args.lr > 0.0) {
        bail!("--lr must be a positive number, got {}", args.lr);
    }
    output::prepare(std::slice::from_ref(&args.out), &[])?;
    let selected = device::select(args.device)?;
    let (train_set, test) = (digits(EMBEDDED_MNIST)?, digits(EMBEDDED_MNIST_TEST)?);
    let started = Instant::now();
    let training = Training {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
    };
    let model = train(&train_set, &training, &selected.device)?;
    let seconds = started.elapsed().as_secs_f64();
    let readout = model
        .read(&test.pixels, 500, &selected.device)
        .context("training diverged (a lower --lr may help); nothing written")?;
    let labels = test.labels.as_deref().unwrap_or_default();
    let accuracy = accuracy(&readout.predictions, labels);
    output::write_new(&args.out, &model.to_bytes()?, args.force)?;
    output::print(&format!(
        "held-out accuracy {:.2}% ({} MNIST test digits); trained {} epochs in {seconds:.0} s on {}; wrote {}\n",
        100.0 * accuracy,
        test.len(),
        args.epochs,
        selected.description,
        args.out.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_is_zero_for_one_class_and_log_ten_for_all() {
        assert_eq!(class_entropy(&[3; 50]), 0.0);
        let all: Vec<usize> = (0..1000).map(|i| i % 10).collect();
        assert!((class_entropy(&all) - 10f64.log2()).abs() < 1e-12);
        // Two classes, equally often: one bit.
        assert!((class_entropy(&[1, 7, 1, 7]) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn accuracy_counts_matches() {
        assert_eq!(accuracy(&[1, 2, 3, 4], &[1, 2, 0, 4]), 0.75);
        assert_eq!(argmax(&[0.1, 3.0, -1.0, 2.9]), 1);
    }
}
