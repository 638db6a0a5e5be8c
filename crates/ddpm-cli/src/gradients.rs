//! The loss and gradients of one micro-batch (Algorithm 1's step), optionally in parts that run
//! at the same time: each part on its own thread, with its own fork of the model (so its own
//! autodiff graph) and its own noise stream split from the run's, in a fixed order, so a seed
//! still determines the whole step. On burn's CPU backend the parts overlap the element-wise
//! work it runs on one core (BENCHMARKS.md, "Batch parts on two threads").

use anyhow::{Result, anyhow};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use ddpm::{GaussianDiffusion, NoiseSource, Unet};

use crate::data::Dataset;
use crate::read_back;

/// What every part reads.
pub struct Batches<'a> {
    pub dataset: &'a Dataset,
    pub diffusion: &'a GaussianDiffusion,
    /// Class-conditional training takes the dataset's labels.
    pub class_conditional: bool,
    /// The autodiff device.
    pub device: &'a Device,
}

impl Batches<'_> {
    /// Gradients of `model` for the images `indices` (flipped where `flips` says) and the loss,
    /// both divided by `divisor`, one pair per part in part order. One part runs here with
    /// `model` and `noise` themselves; more split the images evenly.
    pub fn gradients(
        &self,
        model: &Unet,
        (indices, flips): (&[usize], &[bool]),
        noise: &mut NoiseSource,
        divisor: f32,
        parts: usize,
    ) -> Result<Vec<(GradientsParams, f32)>> {
        if parts <= 1 {
            return Ok(vec![self.part(model, indices, flips, noise, divisor)?]);
        }
        let size = indices.len() / parts;
        let noises: Vec<NoiseSource> = (0..parts).map(|_| noise.split()).collect();
        std::thread::scope(|scope| {
            let workers: Vec<_> = noises
                .into_iter()
                .enumerate()
                .map(|(p, mut noise)| {
                    let fork = model.clone().fork(self.device);
                    let range = p * size..(p + 1) * size;
                    scope.spawn(move || {
                        let (indices, flips) = (&indices[range.clone()], &flips[range]);
                        self.part(&fork, indices, flips, &mut noise, divisor)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .map_err(|_| anyhow!("a training thread panicked"))?
                })
                .collect()
        })
    }

    fn part(
        &self,
        model: &Unet,
        indices: &[usize],
        flips: &[bool],
        noise: &mut NoiseSource,
        divisor: f32,
    ) -> Result<(GradientsParams, f32)> {
        let x0 = self.dataset.batch(indices, flips, self.device);
        let classes = self
            .class_conditional
            .then(|| self.dataset.labels_of(indices))
            .flatten();
        let out = self.diffusion.loss(model, x0, classes.as_deref(), noise);
        let loss = out.loss.div_scalar(divisor);
        let grads = GradientsParams::from_grads(loss.backward(), model);
        // Read after the backward pass is queued, so that a GPU is not left idle waiting.
        let value = read_back::values(loss, "the loss")?;
        Ok((grads, value.iter().sum()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::SgdConfig;
    use ddpm::{DiffusionConfig, UnetConfig};

    #[test]
    fn parts_on_threads_give_what_the_same_parts_give_one_after_the_other() {
        let device = Device::flex().autodiff();
        let dataset = Dataset {
            pixels: (0..8 * 64).map(|i| (i * 37 % 256) as u8).collect(),
            channels: 1,
            size: 8,
            labels: None,
            class_names: Vec::new(),
        };
        let diffusion = GaussianDiffusion::new(DiffusionConfig::default());
        let batches = Batches {
            dataset: &dataset,
            diffusion: &diffusion,
            class_conditional: false,
            device: &device,
        };
        let model = UnetConfig::new(8)
            .with_dim_mults(vec![1, 2])
            .with_channels(1)
            .init(&device);
        let indices: Vec<usize> = (0..8).collect();
        let flips = [false, true, false, false, true, true, false, true];
        let threaded = batches
            .gradients(&model, (&indices, &flips), &mut NoiseSource::new(4), 2.0, 2)
            .expect("threads");
        // The same parts, here, with the streams the threaded call split off in the same order.
        let mut noise = NoiseSource::new(4);
        let mut streams = [noise.split(), noise.split()];
        let serial: Vec<_> = streams
            .iter_mut()
            .enumerate()
            .map(|(p, noise)| {
                let r = p * 4..(p + 1) * 4;
                batches.part(&model, &indices[r.clone()], &flips[r], noise, 2.0)
            })
            .collect::<Result<_>>()
            .expect("parts");
        assert_eq!(threaded.len(), 2);
        // Every parameter's gradient, bit for bit: the weights after one SGD step with each.
        let stepped = |grads: GradientsParams| {
            let mut sgd = SgdConfig::new().init();
            sgd.step(1.0, model.clone(), grads)
                .into_record()
                .into_bytes()
                .expect("weights")
        };
        let before = model.clone().into_record().into_bytes().expect("weights");
        for ((grads_a, loss_a), (grads_b, loss_b)) in threaded.into_iter().zip(serial) {
            assert!(loss_a > 0.0 && loss_a == loss_b, "{loss_a} vs {loss_b}");
            let (a, b) = (stepped(grads_a), stepped(grads_b));
            assert!(a == b && a != before);
        }
    }
}
