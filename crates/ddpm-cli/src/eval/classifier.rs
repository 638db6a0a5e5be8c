//! The small classifier that `ddpm eval` measures samples with: four 3×3 convolutions (the
//! last three with stride 2: 28 → 14 → 7 → 4, 32 → 16 → 8 → 4), an average pool to 4×4 where
//! another side gives another map, a linear layer from the flattened 4×4×64 map to
//! [`FEATURES`] features, and a linear layer to its classes. The Fréchet distance is measured in
//! its feature space (the role Inception-v3 plays for FID on natural images) and its predictions
//! give the class accuracy and the class entropy of samples.
//!
//! The embedded one knows MNIST's ten digits. `ddpm classifier` ([`super::train_classifier`])
//! trains one for any labelled images; its file says what it reads ([`Domain`]).

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::store::ModuleRecord;
use burn::store::burn_pack::{Reader, Writer};
use burn::tensor::activation::relu;
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use ddpm::ModelConfig;
use serde::{Deserialize, Serialize};

use crate::card;
use crate::data::{self, Dataset, Shaping};
use crate::read_back;

/// Width of the feature vector (the input of the last layer).
pub const FEATURES: usize = 64;

/// The weights `ddpm eval` uses unless `--classifier` names others (made by the command in
/// `data/classifier/README.md`). It predates [`Domain`] in files: it reads as
/// [`Domain::digits`].
const EMBEDDED: &[u8] = include_bytes!("../../../../data/classifier/mnist-classifier.bpk");

/// The file's metadata entry holding its [`Domain`] as JSON.
const KEY_DOMAIN: &str = "ddpm.classifier";

/// Most classes a file may name: its head is allocated from the count.
const MAX_CLASSES: usize = 1000;
/// The largest side it reads: its images are decoded whole into memory, and a network that
/// ends in a 4×4 map is for small images.
pub const MAX_SIDE: usize = 512;

/// What a classifier reads and names: square images of `side` pixels with `channels`
/// channels, and its classes in label order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Domain {
    /// Side of the images in pixels.
    pub side: usize,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// The class names (index = label).
    pub classes: Vec<String>,
}

impl Domain {
    /// MNIST's 28×28 grayscale digits, classes `0` to `9`.
    pub fn digits() -> Self {
        Self {
            side: 28,
            channels: 1,
            classes: (0..10).map(|d| d.to_string()).collect(),
        }
    }

    /// Refuses a domain no data set could have (from a file, which may be anything).
    fn check(&self) -> Result<()> {
        let mut names = self.classes.clone();
        names.sort();
        names.dedup();
        if !matches!(self.channels, 1 | 3)
            || !(4..=MAX_SIDE).contains(&self.side)
            || !(2..=MAX_CLASSES).contains(&self.classes.len())
            || names.len() != self.classes.len()
        {
            bail!(
                "its images ({} px, {} channel(s)) and classes ({}) are not ones `ddpm classifier` makes",
                self.side,
                self.channels,
                self.classes.len()
            );
        }
        Ok(())
    }

    /// How the data loaders shape its images.
    pub fn shaping(&self) -> Shaping {
        Shaping {
            image_size: self.side,
            channels: self.channels,
            strict: true,
        }
    }

    /// The labelled images of `source`, their labels this domain's (matched by name: a
    /// held-out folder may lack a class, or list its classes in another order).
    pub fn labelled(&self, source: &str) -> Result<Dataset> {
        let mut data = data::load(source, &self.shaping())?;
        let Some(labels) = data.labels.take() else {
            bail!("{source}: its images have no classes (a folder of class folders has them)");
        };
        let ours = data
            .class_names
            .iter()
            .map(|name| {
                self.classes.iter().position(|c| c == name).ok_or_else(|| {
                    anyhow!(
                        "{source}: class `{name}` is not one of the classifier's ({})",
                        self.classes.join(", ")
                    )
                })
            })
            .collect::<Result<Vec<usize>>>()?;
        data.labels = Some(labels.into_iter().map(|l| ours[l]).collect());
        data.class_names = self.classes.clone();
        Ok(data)
    }

    /// Whether a model of `config` with classes `names` (empty: not known) draws what this
    /// classifier reads: its image size and channels, and unconditional or its classes.
    pub fn judges(&self, config: &ModelConfig, names: &[String]) -> bool {
        let classes_agree = match config.unet.num_classes {
            None => true,
            Some(c) => c == self.classes.len() && (names.is_empty() || names == self.classes),
        };
        config.image_size == [self.side, self.side]
            && config.unet.channels == self.channels
            && classes_agree
    }

    /// `28×28 grayscale images of 10 classes (0, 1, …)`.
    pub fn describe(&self) -> String {
        let colour = if self.channels == 1 {
            "grayscale"
        } else {
            "RGB"
        };
        let shown: Vec<&str> = self.classes.iter().take(3).map(String::as_str).collect();
        let more = if self.classes.len() > 3 { ", …" } else { "" };
        format!(
            "{side}×{side} {colour} images of {} classes ({}{more})",
            self.classes.len(),
            shown.join(", "),
            side = self.side
        )
    }
}

/// The network.
#[derive(Module, Debug)]
pub struct Classifier {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    conv4: Conv2d,
    hidden: Linear,
    head: Linear,
    #[module(skip)]
    domain: Domain,
}

/// Side of the map the linear layers read.
const MAP: usize = 4;
/// Channels × side² of that map.
const FLAT: usize = 64 * MAP * MAP;

/// What the classifier makes of a set of images.
#[derive(Debug, Clone, Default)]
pub struct Readout {
    /// [`FEATURES`] values per image, image after image.
    pub features: Vec<f32>,
    /// The most likely class of each image.
    pub predictions: Vec<usize>,
}

impl Classifier {
    /// Freshly initialised weights (from the device's seed) for `domain`.
    pub fn new(domain: Domain, device: &Device) -> Self {
        let conv = |i: usize, o: usize, stride: usize| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Self {
            conv1: conv(domain.channels, 32, 1),
            conv2: conv(32, 64, 2),
            conv3: conv(64, 64, 2),
            conv4: conv(64, 64, 2),
            hidden: LinearConfig::new(FLAT, FEATURES).init(device),
            head: LinearConfig::new(FEATURES, domain.classes.len()).init(device),
            domain,
        }
    }

    /// What it reads and names.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The features of `[batch, channels, side, side]` images in [−1, 1].
    /// `-> [batch, FEATURES]`
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let x = relu(self.conv1.forward(x));
        let x = relu(self.conv2.forward(x));
        let x = relu(self.conv3.forward(x));
        let mut x = relu(self.conv4.forward(x));
        let [batch, _, height, width] = x.dims();
        // 28 and 32 pixels already end at 4×4: their features stay those of a plain network.
        if [height, width] != [MAP, MAP] {
            x = adaptive_avg_pool2d(x, [MAP, MAP]);
        }
        relu(self.hidden.forward(x.reshape([batch, FLAT])))
    }

    /// Class scores from features. `[batch, FEATURES] -> [batch, classes]`
    pub fn logits(&self, features: Tensor<2>) -> Tensor<2> {
        self.head.forward(features)
    }

    /// Features and predicted classes of images given as bytes (`[n, channels, side, side]`,
    /// 0 = black), in batches of `batch`.
    pub fn read(&self, pixels: &[u8], batch: usize, device: &Device) -> Result<Readout> {
        let Domain {
            side,
            channels,
            ref classes,
        } = self.domain;
        let image = channels * side * side;
        let mut out = Readout::default();
        for chunk in pixels.chunks(image * batch.max(1)) {
            let n = chunk.len() / image;
            let values: Vec<f32> = chunk.iter().map(|&p| data::pixel_value(p)).collect();
            let x = Tensor::from_data(TensorData::new(values, [n, channels, side, side]), device);
            let features = self.features(x);
            let logits = self.logits(features.clone());
            let features = host(features)?;
            let scores = host(logits)?;
            // NaN features would measure every model as perfect (a Fréchet distance of 0).
            if !features.iter().chain(&scores).all(|v| v.is_finite()) {
                bail!("the classifier's outputs are not finite numbers: its weights hold NaN or ∞");
            }
            out.features.extend(features);
            out.predictions
                .extend(scores.chunks(classes.len()).map(argmax));
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
        let not_ours = |e: &dyn std::fmt::Display| anyhow!("{name}: not classifier weights ({e})");
        let reader =
            Reader::from_bytes(Bytes::from_bytes_vec(bytes.clone())).map_err(|e| not_ours(&e))?;
        let domain = match reader.metadata().get(KEY_DOMAIN) {
            None => Domain::digits(),
            Some(json) => serde_json::from_str::<Domain>(json).map_err(|e| not_ours(&e))?,
        };
        domain.check().map_err(|e| not_ours(&e))?;
        let record =
            ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| not_ours(&e))?;
        let classifier = Self::new(domain, device)
            .try_load_record(record)
            .map_err(|e| not_ours(&e))?;
        Ok((classifier, sha256))
    }

    /// The weights, with their [`Domain`], as the bytes of a file [`Classifier::load`] reads.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let fail = |e: &dyn std::fmt::Display| anyhow!("cannot serialise the classifier: {e}");
        let bytes = self
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| fail(&e))?;
        // burn writes a record without metadata: the same tensors again, with the domain.
        let tensors = Reader::from_bytes(bytes)
            .and_then(Reader::into_tensors)
            .map_err(|e| fail(&e))?;
        let domain = serde_json::to_string(&self.domain)?;
        let bytes = Writer::new(tensors)
            .with_metadata(KEY_DOMAIN, &domain)
            .into_bytes()
            .map_err(|e| fail(&e))?;
        Ok(bytes.to_vec())
    }
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

/// Per class of `classes`: its images among `labels` and the fraction of them predicted
/// right (none without images).
pub fn by_class(predictions: &[usize], labels: &[usize], classes: usize) -> Vec<ClassCount> {
    let mut counts = vec![ClassCount::default(); classes];
    for (&p, &l) in predictions.iter().zip(labels) {
        if let Some(count) = counts.get_mut(l) {
            count.images += 1;
            count.right += usize::from(p == l);
        }
    }
    counts
}

/// One class's images and how many of them were predicted right.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClassCount {
    /// Its images.
    pub images: usize,
    /// Those predicted as it.
    pub right: usize,
}

impl ClassCount {
    /// The fraction right, none without images.
    pub fn accuracy(&self) -> Option<f64> {
        (self.images > 0).then(|| self.right as f64 / self.images as f64)
    }
}

/// The entropy of the histogram of `predictions` over `classes` classes, in bits (log₂ 10 ≈
/// 3.32 when each of ten is drawn equally often, 0 when only one is).
pub fn class_entropy(predictions: &[usize], classes: usize) -> f64 {
    let mut counts = vec![0usize; classes.max(1)];
    for &p in predictions {
        counts[p.min(classes.max(1) - 1)] += 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_is_zero_for_one_class_and_log_ten_for_all() {
        assert_eq!(class_entropy(&[3; 50], 10), 0.0);
        let all: Vec<usize> = (0..1000).map(|i| i % 10).collect();
        assert!((class_entropy(&all, 10) - 10f64.log2()).abs() < 1e-12);
        // Two classes, equally often: one bit.
        assert!((class_entropy(&[1, 7, 1, 7], 10) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn accuracy_counts_matches_overall_and_by_class() {
        assert_eq!(accuracy(&[1, 2, 3, 4], &[1, 2, 0, 4]), 0.75);
        assert_eq!(argmax(&[0.1, 3.0, -1.0, 2.9]), 1);
        let counts = by_class(&[0, 0, 1, 0, 2], &[0, 1, 1, 1, 0], 3);
        let accuracies: Vec<Option<f64>> = counts.iter().map(ClassCount::accuracy).collect();
        assert_eq!(accuracies, [Some(0.5), Some(1.0 / 3.0), None]);
        assert_eq!(
            counts[1],
            ClassCount {
                images: 3,
                right: 1
            }
        );
    }

    #[test]
    fn a_file_keeps_its_domain_and_a_file_without_one_reads_as_digits() {
        let device = Device::flex();
        let colour = Domain {
            side: 32,
            channels: 3,
            classes: vec!["cats".into(), "dogs".into(), "owls".into()],
        };
        device.seed(3);
        let made = Classifier::new(colour.clone(), &device);
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c.bpk");
        std::fs::write(&path, made.to_bytes().expect("bytes")).expect("write");
        let (read, _) = Classifier::load(Some(&path), &device).expect("load");
        assert_eq!(read.domain(), &colour);
        let pixels: Vec<u8> = (0..2 * 3 * 32 * 32).map(|i| (i * 37 % 256) as u8).collect();
        let (a, b) = (
            made.read(&pixels, 2, &device).expect("read"),
            read.read(&pixels, 2, &device).expect("read"),
        );
        assert_eq!(a.features, b.features);
        assert_eq!(a.features.len(), 2 * FEATURES);
        // The embedded file has no domain: MNIST's digits.
        let (embedded, _) = Classifier::load(None, &device).expect("embedded");
        assert_eq!(embedded.domain(), &Domain::digits());
        // A domain no data set has is refused by name, not allocated.
        let mut huge = made.clone();
        huge.domain.side = 1 << 40;
        std::fs::write(&path, huge.to_bytes().expect("bytes")).expect("write");
        let err = Classifier::load(Some(&path), &device)
            .map(|_| ())
            .expect_err("a domain of 2^40 pixels");
        assert!(err.to_string().contains("not classifier weights"), "{err}");
    }

    #[test]
    fn the_shipped_emoji_classifier_reads_32_pixel_colour_emoji_of_ten_categories() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data/classifier/emoji-classifier.bpk");
        let (emoji, _) = Classifier::load(Some(&path), &Device::flex()).expect("emoji classifier");
        let Domain {
            side,
            channels,
            classes,
        } = emoji.domain();
        assert_eq!((*side, *channels), (32, 3));
        assert_eq!(
            classes.join(" "),
            "activities animals-nature component flags food-drink objects people-body \
             smileys-emotion symbols travel-places"
        );
    }

    #[test]
    fn a_model_is_judged_by_size_channels_and_classes() {
        let mut config = ModelConfig {
            unet: ddpm::UnetConfig::new(8).with_channels(1),
            diffusion: ddpm::DiffusionConfig::default(),
            image_size: [28, 28],
        };
        let digits = Domain::digits();
        assert!(digits.judges(&config, &[]));
        config.unet.num_classes = Some(10);
        assert!(digits.judges(&config, &[]));
        assert!(digits.judges(&config, &digits.classes));
        let mut renamed = digits.classes.clone();
        renamed.swap(0, 1);
        assert!(!digits.judges(&config, &renamed));
        config.unet.num_classes = Some(9);
        assert!(!digits.judges(&config, &[]));
        config.unet.num_classes = None;
        config.unet.channels = 3;
        assert!(!digits.judges(&config, &[]));
        config.unet.channels = 1;
        config.image_size = [32, 32];
        assert!(!digits.judges(&config, &[]));
    }
}
