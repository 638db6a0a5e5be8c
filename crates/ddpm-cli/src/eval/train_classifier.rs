//! `ddpm classifier`: trains the evaluation [`Classifier`] with burn on labelled images (the
//! embedded MNIST digits unless `--data` names others) and reports its accuracy on held-out
//! ones, overall and per class.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};

use super::classifier::{self, Classifier, Domain, MAX_SIDE};
use crate::data::{self, BatchOrder, Dataset, EMBEDDED_MNIST, EMBEDDED_MNIST_TEST, Visits};
use crate::device::{self, DeviceChoice};
use crate::output;
use crate::read_back;

/// How `ddpm classifier` trains.
#[derive(Debug, Clone)]
pub struct Training {
    /// Passes over the training images (as `balance` visits them).
    pub epochs: usize,
    /// Images per Adam step.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// How much more often smaller classes are visited (as `data.balance` in training).
    pub balance: f64,
    /// Mirror each image left to right with probability ½.
    pub flip: bool,
    /// Seeds the initial weights and the batch order.
    pub seed: u64,
}

/// Trains a classifier of `domain` on `data` (labelled in its classes) with Adam and
/// cross-entropy.
pub fn train(
    data: &Dataset,
    domain: &Domain,
    training: &Training,
    device: &Device,
) -> Result<Classifier> {
    let labels = data
        .labels
        .as_ref()
        .context("the classifier's training data has no labels")?;
    let classes = domain.classes.len();
    let train_device = device.clone().autodiff();
    train_device.seed(training.seed);
    let mut model = Classifier::new(domain.clone(), &train_device);
    let mut optim = AdamConfig::new().init();
    let mut order = BatchOrder::new(training.seed);
    let visits = Visits::balanced(labels, training.balance);
    let steps = training.epochs * visits.epoch_len().div_ceil(training.batch_size);
    let bar = ProgressBar::new(steps as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps {msg} [{elapsed} < {eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for _ in 0..steps {
        let flip = if training.flip { 0.5 } else { 0.0 };
        let (indices, flips) = order.next(&visits, training.batch_size, flip);
        let x = data.batch(&indices, &flips, &train_device);
        let targets: Vec<f32> = indices
            .iter()
            .flat_map(|&i| (0..classes).map(move |k| f32::from(u8::from(labels[i] == k))))
            .collect();
        let targets = Tensor::<2>::from_data(
            TensorData::new(targets, [indices.len(), classes]),
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

/// The most passes `ddpm classifier` makes, and the largest batch.
const MAX_EPOCHS: usize = 1000;
const MAX_BATCH: usize = 10_000;

/// `ddpm classifier`.
#[derive(Debug, clap::Args)]
pub struct ClassifierArgs {
    /// The weights file to write.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Labelled training images: `mnist` (the embedded 10,000 digits), MNIST IDX files or a
    /// folder of class folders.
    #[arg(long, default_value = EMBEDDED_MNIST)]
    pub data: String,
    /// Labelled held-out images of the same classes (a class may be missing), never trained
    /// on: the accuracy reported.
    #[arg(long, default_value = EMBEDDED_MNIST_TEST)]
    pub heldout: String,
    /// Side the images are read at (that of the models it will judge).
    #[arg(long, default_value_t = 28)]
    pub image_size: usize,
    /// 1 (grayscale) or 3 (RGB).
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Passes over the training images.
    #[arg(long, default_value_t = 8)]
    pub epochs: usize,
    /// Images per Adam step.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Visit smaller classes more often, 0 to 1 (1: each class equally often), as `ddpm
    /// train --balance` does: a classifier trained on unbalanced classes favours the largest.
    #[arg(long, default_value_t = 0.0)]
    pub balance: f64,
    /// Mirror each training image left to right with probability ½ (not for digits).
    #[arg(long)]
    pub flip: bool,
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

/// Runs `ddpm classifier`: trains on `--data`, reports the accuracy on `--heldout`, writes
/// the weights.
pub fn run(args: &ClassifierArgs) -> Result<()> {
    let inputs: Vec<PathBuf> = [&args.data, &args.heldout]
        .into_iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect();
    output::refuse_inputs(
        std::slice::from_ref(&args.out),
        &inputs.iter().collect::<Vec<_>>(),
    )?;
    output::refuse_existing([&args.out], args.force)?;
    // Bounded so that the step count cannot overflow and a batch cannot outgrow the memory.
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
    if !(4..=MAX_SIDE).contains(&args.image_size) {
        bail!(
            "--image-size must be 4 to {MAX_SIDE}, got {}",
            args.image_size
        );
    }
    if !(0.0..=1.0).contains(&args.balance) {
        bail!("--balance must be from 0 to 1, got {}", args.balance);
    }
    // Its classes are the training data's, known once they are read.
    let mut domain = Domain {
        side: args.image_size,
        channels: args.channels,
        classes: Vec::new(),
    };
    let train_set = data::load(&args.data, &domain.shaping())?;
    domain.classes = train_set.class_names.clone();
    if train_set.num_classes().is_none_or(|c| c < 2) {
        bail!(
            "{}: a classifier needs images of at least two classes (a folder of class folders has them)",
            args.data
        );
    }
    let test = domain.labelled(&args.heldout)?;
    output::prepare(std::slice::from_ref(&args.out), &[])?;
    let selected = device::select(args.device)?;
    let started = Instant::now();
    let training = Training {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        balance: args.balance,
        flip: args.flip,
        seed: args.seed,
    };
    let model = train(&train_set, &domain, &training, &selected.device)?;
    let seconds = started.elapsed().as_secs_f64();
    let readout = model
        .read(&test.pixels, 500, &selected.device)
        .context("training diverged (a lower --lr may help); nothing written")?;
    let labels = test.labels.as_deref().unwrap_or_default();
    let accuracy = classifier::accuracy(&readout.predictions, labels);
    output::write_new(&args.out, &model.to_bytes()?, args.force)?;
    let counts = classifier::by_class(&readout.predictions, labels, domain.classes.len());
    let mut lines = format!(
        "held-out accuracy {:.2}% ({} images of `{}`); trained {} epochs in {seconds:.0} s on {}; wrote {}\n",
        100.0 * accuracy,
        test.len(),
        args.heldout,
        args.epochs,
        selected.description,
        args.out.display()
    );
    for (name, count) in domain.classes.iter().zip(&counts) {
        let shown = count
            .accuracy()
            .map_or("–".into(), |a| format!("{:.1}%", 100.0 * a));
        lines += &format!("  {name}: {shown} of {}\n", count.images);
    }
    output::print(&lines)
}
