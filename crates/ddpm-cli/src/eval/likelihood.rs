//! Bits/dim of held-out images: the paper's bound L (eq. 5) summed over all T steps, or an
//! unbiased stratified estimate of it from one random step per block of steps.

use std::ops::Range;

use anyhow::Result;
use burn::tensor::{Device, Tensor};
use ddpm::{GaussianDiffusion, ModelConfig, NoiseSource, Unet};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::batch_parts;
use crate::data::Dataset;
use crate::read_back;

/// The bound's parts, each a mean over the images in bits/dim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bound {
    /// L = the three parts below.
    pub bits_per_dim: f64,
    /// L_T, the prior term.
    pub prior: f64,
    /// Σ_{t>1} L_{t−1}, the KL terms of the reverse steps.
    pub diffusion: f64,
    /// L_0, the discretised decoder's negative log-likelihood.
    pub decoder: f64,
    /// Held-out images averaged over.
    pub images: usize,
    /// 1: every step's term; k: one random step per block of up to k, weighted by its length.
    pub stride: usize,
    /// How the blocks were cut (reports before 2026-12-07 lack it: even, and stay without it,
    /// so that the cards holding them are written as they were read).
    #[serde(default, skip_serializing_if = "Blocks::is_even")]
    pub blocks: Blocks,
    /// L for the images of each class, when the held-out images have classes: a model can be
    /// good on average and poor on a small class (reports before 2026-12-07 lack it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_class: Vec<ClassBound>,
}

/// How steps 1..T were cut into the blocks of a strided bound (all the same at stride 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Blocks {
    /// `stride` steps each (until 2026-12-07). The terms fall about as 1/t, so one step drawn
    /// from 1..20 stood for terms thirty times apart: at stride 20 the estimate's spread was
    /// about ±1 bit/dim (docs/notebook.md, 2026-12-07).
    #[default]
    Even,
    /// [`blocks`]: near t = 1 each step is its own block.
    Growing,
}

impl Blocks {
    fn is_even(&self) -> bool {
        *self == Self::Even
    }
}

/// The bound of the held-out images of one class (still the unconditional p(x)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassBound {
    /// The class's name.
    pub class: String,
    /// Its images among those averaged over.
    pub images: usize,
    /// Their mean L in bits/dim.
    pub bits_per_dim: f64,
}

/// A block starting at t₀ is at most ⌈t₀ / GROWTH⌉ long (and at most `stride`).
const GROWTH: usize = 4;

/// Steps 1..T cut into blocks of at most `stride` steps, each starting at t₀ at most ⌈t₀ / 4⌉
/// long. The terms fall about as 1/t or a little faster (measured), so within a
/// block they differ by about a quarter at most, and any drawn step stands for its block.
pub fn blocks(timesteps: usize, stride: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 1;
    while start < timesteps {
        let len = stride
            .max(1)
            .min(start.div_ceil(GROWTH))
            .min(timesteps - start);
        out.push(start..start + len);
        start += len;
    }
    out
}

/// Which steps a stratified pass evaluates, with their weights: the decoder step 0 always;
/// one uniformly drawn step in each of the [`blocks`], weighted by the block's length (every
/// step with weight 1 when `stride` is 1).
pub fn steps(timesteps: usize, stride: usize, rng: &mut NoiseSource) -> Vec<(usize, f64)> {
    let mut out = vec![(0, 1.0)];
    for block in blocks(timesteps, stride) {
        out.push((block.start + rng.below(block.len()), block.len() as f64));
    }
    out
}

/// How the bound is taken.
#[derive(Debug, Clone, Copy)]
pub struct BoundOptions {
    /// The first this many held-out images.
    pub images: usize,
    /// See [`steps`].
    pub stride: usize,
    /// Images per network call.
    pub batch: usize,
    /// Seeds the noise and the drawn steps.
    pub seed: u64,
}

/// The bound of the first images of `data` under `model`; a class-conditional model is asked
/// with its null class, so this is the unconditional p(x).
pub fn bits_per_dim(
    model: &Unet,
    config: &ModelConfig,
    data: &Dataset,
    options: BoundOptions,
    device: &Device,
) -> Result<Bound> {
    let BoundOptions {
        images,
        stride,
        batch,
        seed,
    } = options;
    let diffusion = GaussianDiffusion::new(config.diffusion.clone());
    let model = &batch_parts::for_device(model, device);
    let images = images.min(data.len());
    let mut rng = NoiseSource::new(seed);
    let chunks: Vec<Vec<usize>> = (0..images)
        .collect::<Vec<_>>()
        .chunks(batch.max(1))
        .map(<[usize]>::to_vec)
        .collect();
    let per_chunk = 1 + blocks(diffusion.timesteps(), stride).len();
    let bar = ProgressBar::new((chunks.len() * per_chunk) as u64).with_style(
        ProgressStyle::with_template("bits/dim {bar:30} {pos}/{len} terms [{elapsed} < {eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Each image's three parts, so that classes can be told apart afterwards.
    let [mut prior, mut kl, mut decoder] = [(); 3].map(|()| Vec::with_capacity(images));
    for indices in &chunks {
        let n = indices.len();
        let x0 = data.batch(indices, &vec![false; n], device);
        let null = config.unet.num_classes.map(|c| vec![c; n]);
        prior.extend(per_image(diffusion.prior_bits(x0.clone()), 1.0)?);
        let start = kl.len();
        kl.resize(start + n, 0.0);
        for (t, weight) in steps(diffusion.timesteps(), stride, &mut rng) {
            let noise = rng.normal_tensor(x0.dims(), device);
            let term = diffusion.bound_term(model, x0.clone(), t, null.as_deref(), noise);
            if t == 0 {
                decoder.extend(per_image(term, 1.0)?);
            } else {
                let term = per_image(term, weight)?;
                kl[start..].iter_mut().zip(term).for_each(|(k, v)| *k += v);
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let totals: Vec<f64> = (0..images).map(|i| prior[i] + kl[i] + decoder[i]).collect();
    Ok(Bound {
        bits_per_dim: mean(&totals),
        prior: mean(&prior),
        diffusion: mean(&kl),
        decoder: mean(&decoder),
        images,
        stride,
        blocks: Blocks::Growing,
        by_class: by_class(&totals, data),
    })
}

/// The mean of each class's images among `totals` (the first images of `data`), in the order
/// of the class names; none without labels, or with one class only.
pub fn by_class(totals: &[f64], data: &Dataset) -> Vec<ClassBound> {
    let Some(labels) = data
        .labels
        .as_deref()
        .filter(|_| data.class_names.len() > 1)
    else {
        return Vec::new();
    };
    let mut groups = vec![Vec::new(); data.class_names.len()];
    for (&total, &label) in totals.iter().zip(labels) {
        if let Some(group) = groups.get_mut(label) {
            group.push(total);
        }
    }
    data.class_names
        .iter()
        .zip(groups)
        .filter(|(_, group)| !group.is_empty())
        .map(|(class, group)| ClassBound {
            class: class.clone(),
            images: group.len(),
            bits_per_dim: mean(&group),
        })
        .collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn per_image(t: Tensor<1>, weight: f64) -> Result<Vec<f64>> {
    let values = read_back::values(t, "the bound")?;
    Ok(values.iter().map(|&v| weight * f64::from(v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_steps_cover_every_step_once_in_weight() {
        let mut rng = NoiseSource::new(1);
        let all = steps(1000, 1, &mut rng);
        assert_eq!(all.len(), 1000);
        assert!(
            all.iter()
                .enumerate()
                .all(|(i, &(t, w))| t == i && w == 1.0)
        );
        for stride in [7, 10, 64] {
            let some = steps(1000, stride, &mut rng);
            // The weights of steps 1..T add up to T − 1, and each drawn step lies in its block.
            let total: f64 = some.iter().skip(1).map(|&(_, w)| w).sum();
            assert_eq!(total, 999.0, "stride {stride}");
            assert_eq!(some[0], (0, 1.0));
            let cut = blocks(1000, stride);
            assert_eq!(some.len(), 1 + cut.len());
            for (block, &(t, w)) in cut.iter().zip(&some[1..]) {
                assert!(block.contains(&t), "{t} in {block:?}");
                assert_eq!(w, block.len() as f64);
            }
        }
    }

    #[test]
    fn blocks_tile_the_steps_and_grow_from_single_steps_to_the_stride() {
        let cut = blocks(1000, 20);
        assert_eq!(cut.first(), Some(&(1..2)));
        assert_eq!(cut.last().map(|b| b.end), Some(1000));
        assert!(cut.windows(2).all(|w| w[0].end == w[1].start));
        let first: Vec<Range<usize>> = cut.iter().take(8).cloned().collect();
        assert_eq!(first, [1..2, 2..3, 3..4, 4..5, 5..7, 7..9, 9..12, 12..15]);
        assert_eq!(cut.iter().position(|b| b.len() == 20), Some(16));
        assert_eq!(cut[16], 94..114);
        // 62 terms instead of an even 50: the extra ones near t = 1.
        assert_eq!(cut.len(), 62);
        assert_eq!(blocks(1000, 1).len(), 999);
    }

    #[test]
    fn any_draw_estimates_terms_falling_as_one_over_t_within_seven_percent() {
        // The bound's terms fall about as 1/t. Whichever step each block draws, the estimate
        // of Σ 1/t stays within 7 % (even blocks of 20: up to 3.3 times the sum, by t = 1).
        let truth: f64 = (1..1000).map(|t| 1.0 / t as f64).sum();
        for stride in [10, 20, 50] {
            let cut = blocks(1000, stride);
            let highest: f64 = cut.iter().map(|b| b.len() as f64 / b.start as f64).sum();
            let lowest: f64 = cut
                .iter()
                .map(|b| b.len() as f64 / (b.end - 1) as f64)
                .sum();
            assert!(
                highest / truth < 1.07,
                "stride {stride}: {}",
                highest / truth
            );
            assert!(lowest / truth > 0.93, "stride {stride}: {}", lowest / truth);
        }
    }

    #[test]
    fn classes_are_averaged_over_their_own_images_among_those_measured() {
        let data = Dataset {
            pixels: vec![0; 6],
            channels: 1,
            size: 1,
            labels: Some(vec![2, 0, 2, 0, 0, 1]),
            class_names: ["a", "b", "c"].map(String::from).to_vec(),
        };
        // The first five images were measured: class b's only image was not.
        let classes = by_class(&[1.0, 2.0, 3.0, 4.0, 6.0], &data);
        let got: Vec<(&str, usize, f64)> = classes
            .iter()
            .map(|c| (c.class.as_str(), c.images, c.bits_per_dim))
            .collect();
        assert_eq!(got, [("a", 3, 4.0), ("c", 2, 2.0)]);
        let unlabelled = Dataset {
            labels: None,
            ..data.clone()
        };
        assert!(by_class(&[1.0; 6], &unlabelled).is_empty());
        let one_class = Dataset {
            labels: Some(vec![0; 6]),
            class_names: vec!["a".into()],
            ..data
        };
        assert!(by_class(&[1.0; 6], &one_class).is_empty());
    }
}
