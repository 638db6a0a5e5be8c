//! Training images: the embedded MNIST-10k, IDX files (MNIST, Fashion-MNIST), CIFAR-10 binary
//! batches, or any folder of images. Every source ends as the same [`Dataset`]: bytes at the
//! training size and channel count, with optional class labels.

mod cifar;
mod folder;
mod idx;
mod visits;

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use ddpm::NoiseSource;
use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};
use serde::{Deserialize, Serialize};

pub use visits::Visits;

/// The name that selects the embedded training digits.
pub const EMBEDDED_MNIST: &str = "mnist";
/// The name that selects the embedded MNIST test digits (held out: never trained on).
pub const EMBEDDED_MNIST_TEST: &str = "mnist-test";

const MNIST_IMAGES: &[u8] = include_bytes!("../../../../data/mnist-10k/images-idx3-ubyte.gz");
const MNIST_LABELS: &[u8] = include_bytes!("../../../../data/mnist-10k/labels-idx1-ubyte.gz");
const TEST_IMAGES: &[u8] = include_bytes!("../../../../data/mnist-test/images-idx3-ubyte.gz");
const TEST_LABELS: &[u8] = include_bytes!("../../../../data/mnist-test/labels-idx1-ubyte.gz");

/// How images become training tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shaping {
    /// Side of the square training images.
    pub image_size: usize,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// Fail on the first image that does not decode instead of skipping it.
    pub strict: bool,
}

/// Images at the training size, `[n, channels, size, size]` bytes, with optional labels.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// All pixels, image after image, channel-major.
    pub pixels: Vec<u8>,
    /// 1 or 3.
    pub channels: usize,
    /// Side in pixels.
    pub size: usize,
    /// One class per image, when the source has them.
    pub labels: Option<Vec<usize>>,
    /// The class names (index = label), when the source has labels.
    pub class_names: Vec<String>,
}

impl Dataset {
    /// The number of images.
    pub fn len(&self) -> usize {
        self.pixels.len() / self.image_len()
    }

    fn image_len(&self) -> usize {
        self.channels * self.size * self.size
    }

    /// The number of classes, when labelled.
    pub fn num_classes(&self) -> Option<usize> {
        self.labels.as_ref().map(|_| self.class_names.len())
    }

    /// A batch of the given images scaled to `[-1, 1]`, horizontally flipped where `flips` says.
    pub fn batch(&self, indices: &[usize], flips: &[bool], device: &Device) -> Tensor<4> {
        let (len, side) = (self.image_len(), self.size);
        let mut values = Vec::with_capacity(indices.len() * len);
        for (&i, &flip) in indices.iter().zip(flips) {
            let image = &self.pixels[i * len..(i + 1) * len];
            for row in image.chunks(side) {
                if flip {
                    values.extend(row.iter().rev().map(|&p| pixel_value(p)));
                } else {
                    values.extend(row.iter().map(|&p| pixel_value(p)));
                }
            }
        }
        let shape = [indices.len(), self.channels, side, side];
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    /// The labels of the given images.
    pub fn labels_of(&self, indices: &[usize]) -> Option<Vec<usize>> {
        self.labels
            .as_ref()
            .map(|labels| indices.iter().map(|&i| labels[i]).collect())
    }
}

/// Loads `source`: [`EMBEDDED_MNIST`], [`EMBEDDED_MNIST_TEST`], or a path to IDX files,
/// CIFAR-10 batches or a folder of images (recognised by their names).
pub fn load(source: &str, shaping: &Shaping) -> Result<Dataset> {
    if !matches!(shaping.channels, 1 | 3) {
        bail!("channels must be 1 or 3, got {}", shaping.channels);
    }
    if shaping.image_size < 4 {
        bail!("image size must be at least 4, got {}", shaping.image_size);
    }
    let raw = if source == EMBEDDED_MNIST {
        idx::from_bytes(MNIST_IMAGES, MNIST_LABELS, "embedded MNIST-10k")?
    } else if source == EMBEDDED_MNIST_TEST {
        idx::from_bytes(TEST_IMAGES, TEST_LABELS, "embedded MNIST test set")?
    } else {
        let path = Path::new(source);
        if !path.exists() {
            bail!(
                "data `{source}` does not exist (give a folder or file, `{EMBEDDED_MNIST}` or `{EMBEDDED_MNIST_TEST}`)"
            );
        }
        if let Some(images) = idx::find(path)? {
            idx::load(&images)?
        } else if let Some(batches) = cifar::find(path)? {
            cifar::load(&batches)?
        } else if path.is_dir() {
            return folder::load(path, shaping);
        } else {
            bail!(
                "{}: not an IDX file (`*-idx3-ubyte[.gz]`), a CIFAR-10 batch (`*.bin`) or a folder",
                path.display()
            );
        }
    };
    Ok(raw.shape(shaping))
}

/// Decoded images before shaping: all the same size and channel count.
struct RawImages {
    images: Vec<DynamicImage>,
    labels: Option<Vec<usize>>,
    class_names: Vec<String>,
}

impl RawImages {
    fn shape(self, shaping: &Shaping) -> Dataset {
        let mut pixels = Vec::new();
        for image in self.images {
            pixels.extend(to_training_pixels(image, shaping));
        }
        Dataset {
            pixels,
            channels: shaping.channels,
            size: shaping.image_size,
            labels: self.labels,
            class_names: self.class_names,
        }
    }
}

/// A pixel byte as the network sees it: 0..=255 → [−1, 1].
pub(crate) fn pixel_value(p: u8) -> f32 {
    f32::from(p) / 127.5 - 1.0
}

/// Gray as PIL's `convert('L')` makes it (ITU-R 601-2 luma, in PIL's fixed point), so a
/// one-channel model sees a colour image as lucidrains' `Dataset` shows it to one.
pub(crate) fn luma([r, g, b]: [u8; 3]) -> u8 {
    let sum = 19595 * u32::from(r) + 38470 * u32::from(g) + 7471 * u32::from(b) + 0x8000;
    (sum >> 16) as u8
}

/// One image as channel-major bytes at the training size: centre-cropped to a square,
/// transparent pixels composited on white, resized to the side, grayscale or RGB. Cropping
/// before resizing keeps a thin image (1×500000) from growing into a huge intermediate.
pub(crate) fn to_training_pixels(image: DynamicImage, shaping: &Shaping) -> Vec<u8> {
    let side = shaping.image_size as u32;
    let (w, h) = (image.width(), image.height());
    let square = w.min(h);
    let image = if w == h {
        image
    } else {
        image.crop_imm((w - square) / 2, (h - square) / 2, square, square)
    };
    let rgb = if image.color().has_alpha() {
        let rgba = image.into_rgba8();
        let mut rgb = RgbImage::new(rgba.width(), rgba.height());
        for (out, px) in rgb.pixels_mut().zip(rgba.pixels()) {
            let a = f32::from(px[3]) / 255.0;
            for c in 0..3 {
                out[c] = (f32::from(px[c]) * a + 255.0 * (1.0 - a)).round() as u8;
            }
        }
        DynamicImage::ImageRgb8(rgb)
    } else {
        image
    };
    let fitted = if rgb.width() == side && rgb.height() == side {
        rgb
    } else {
        rgb.resize_exact(side, side, FilterType::Triangle)
    };
    let rgb = fitted.into_rgb8();
    if shaping.channels == 1 {
        rgb.pixels().map(|px| luma(px.0)).collect()
    } else {
        let raw = rgb.into_raw();
        let plane = raw.len() / 3;
        (0..3)
            .flat_map(|c| (0..plane).map(move |p| (c, p)))
            .map(|(c, p)| raw[p * 3 + c])
            .collect()
    }
}

/// Decodes the image file at `path`, its format read from its first bytes (a PNG named `.jpg`
/// decodes), else from its extension; the image crate's default decode limits apply.
pub(crate) fn decode(path: &Path) -> image::ImageResult<DynamicImage> {
    image::ImageReader::open(path)?
        .with_guessed_format()?
        .decode()
}

/// The order in which a run visits the images: a fresh order of [`Visits`] per epoch, determined
/// by the seed and the epoch alone, so a resumed run sees the same batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchOrder {
    /// The run's data seed.
    pub seed: u64,
    /// Completed passes over the data.
    pub epoch: u64,
    /// Images of this epoch already used.
    pub cursor: usize,
}

impl BatchOrder {
    /// The start of epoch 0.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            epoch: 0,
            cursor: 0,
        }
    }

    /// The next `batch` image indices of `visits`' epochs (crossing into the next epoch when
    /// needed) and, for each, whether to flip it (`flip_prob` 0 never flips).
    pub fn next(
        &mut self,
        visits: &Visits,
        batch: usize,
        flip_prob: f64,
    ) -> (Vec<usize>, Vec<bool>) {
        let len = visits.epoch_len();
        let mut indices = Vec::with_capacity(batch);
        while indices.len() < batch {
            if self.cursor >= len {
                self.epoch += 1;
                self.cursor = 0;
            }
            let order = visits.epoch(self.seed, self.epoch);
            let take = (batch - indices.len()).min(len - self.cursor);
            indices.extend_from_slice(&order[self.cursor..self.cursor + take]);
            self.cursor += take;
        }
        let mut coin =
            NoiseSource::new(self.seed ^ 0x5eed_f11b ^ (self.epoch << 32) ^ self.cursor as u64);
        let flips = indices.iter().map(|_| coin.bernoulli(flip_prob)).collect();
        (indices, flips)
    }
}

fn decode_error_message(count: usize, first: Option<String>) -> Option<String> {
    first.map(|first| {
        format!("skipped {count} image file(s) that do not decode (first: {first}); pass --strict to fail instead")
    })
}

/// Reads a whole file, gunzipping when its name ends in `.gz`.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if path.extension().is_some_and(|e| e == "gz") {
        gunzip(&bytes).with_context(|| format!("{}: not a valid gzip file", path.display()))
    } else {
        Ok(bytes)
    }
}

fn gunzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests;
