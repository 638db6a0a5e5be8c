//! Bits/dim of held-out images: the paper's bound L (eq. 5) summed over all T steps, or an
//! unbiased stratified estimate of it from one random step per block of `stride` steps.

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
    /// 1: every step's term; k: one random step per block of k, weighted by k.
    pub stride: usize,
}

/// Which steps a stratified pass evaluates, with their weights: the decoder step 0 always;
/// one uniformly drawn step in each block of `stride` among 1..T, weighted by the block's
/// length (all of them with weight 1 when `stride` is 1).
pub fn steps(timesteps: usize, stride: usize, rng: &mut NoiseSource) -> Vec<(usize, f64)> {
    let stride = stride.max(1);
    let mut out = vec![(0, 1.0)];
    let mut start = 1;
    while start < timesteps {
        let len = stride.min(timesteps - start);
        out.push((start + rng.below(len), len as f64));
        start += len;
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
    let per_chunk = 1 + (diffusion.timesteps() - 1).div_ceil(stride.max(1));
    let bar = ProgressBar::new((chunks.len() * per_chunk) as u64).with_style(
        ProgressStyle::with_template("bits/dim {bar:30} {pos}/{len} terms [{elapsed} < {eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut prior, mut kl, mut decoder) = (0.0, 0.0, 0.0);
    for indices in &chunks {
        let n = indices.len();
        let x0 = data.batch(indices, &vec![false; n], device);
        let null = config.unet.num_classes.map(|c| vec![c; n]);
        prior += sum(diffusion.prior_bits(x0.clone()))?;
        for (t, weight) in steps(diffusion.timesteps(), stride, &mut rng) {
            let noise = rng.normal_tensor(x0.dims(), device);
            let term = sum(diffusion.bound_term(model, x0.clone(), t, null.as_deref(), noise))?;
            if t == 0 {
                decoder += term;
            } else {
                kl += weight * term;
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let mean = |total: f64| total / images.max(1) as f64;
    Ok(Bound {
        bits_per_dim: mean(prior + kl + decoder),
        prior: mean(prior),
        diffusion: mean(kl),
        decoder: mean(decoder),
        images,
        stride,
    })
}

fn sum(t: Tensor<1>) -> Result<f64> {
    let values = read_back::values(t, "the bound")?;
    Ok(values.iter().map(|&v| f64::from(v)).sum())
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
            for (k, &(t, _)) in some.iter().skip(1).enumerate() {
                let block = 1 + k * stride..1 + (k + 1) * stride;
                assert!(block.contains(&t), "{t} in block {k}");
            }
        }
    }
}
