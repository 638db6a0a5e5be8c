//! The network's calls split over threads: each call's batch runs in parts at the same time.
//! On burn's CPU backend, which runs its element-wise work on one core, two halves overlap that
//! work (the CLI samples this way on the CPU; its trainer splits batches the same way). The
//! sampler still draws the noise for the whole batch, so a seed gives the same images up to
//! float rounding. Not on wasm, which has no threads here.

use burn::tensor::Tensor;

use crate::{Denoiser, Timesteps, Unet};

/// A model whose calls run in `parts` pieces of the batch on as many threads.
pub struct SplitBatch<'a> {
    model: &'a Unet,
    parts: usize,
}

impl<'a> SplitBatch<'a> {
    /// `model`'s calls in `parts` pieces of the batch (0 or 1: plain calls). A batch smaller
    /// than `parts` runs whole.
    pub fn new(model: &'a Unet, parts: usize) -> Self {
        Self { model, parts }
    }

    /// How many pieces each call's batch is split into (at most).
    pub fn parts(&self) -> usize {
        self.parts.max(1)
    }
}

impl Denoiser for SplitBatch<'_> {
    fn denoise(
        &self,
        x: Tensor<4>,
        t: &Timesteps,
        x_self_cond: Option<Tensor<4>>,
        classes: Option<&[usize]>,
    ) -> Tensor<4> {
        let batch = x.dims()[0];
        if self.parts < 2 || batch < self.parts {
            return self.model.denoise(x, t, x_self_cond, classes);
        }
        let size = batch.div_ceil(self.parts);
        let outputs: Vec<Tensor<4>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..batch)
                .step_by(size)
                .map(|start| {
                    let len = size.min(batch - start);
                    let (model, x) = (self.model.clone(), x.clone().narrow(0, start, len));
                    let cond = x_self_cond.clone().map(|c| c.narrow(0, start, len));
                    let t = match t {
                        Timesteps::All(t) => Timesteps::All(*t),
                        Timesteps::Each(ts) => Timesteps::Each(ts[start..start + len].to_vec()),
                    };
                    let classes = classes.map(|c| &c[start..start + len]);
                    scope.spawn(move || model.denoise(x, &t, cond, classes))
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        Tensor::cat(outputs, 0)
    }

    fn check_shape(&self, shape: [usize; 4]) -> Result<(), String> {
        self.model.check_shape(shape)
    }

    fn self_condition(&self) -> bool {
        self.model.self_condition()
    }

    fn num_classes(&self) -> Option<usize> {
        self.model.num_classes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::device;
    use crate::{NoiseSource, UnetConfig};

    #[test]
    fn halves_on_threads_give_the_whole_batchs_output() {
        let device = device();
        let model = UnetConfig::new(8)
            .with_dim_mults(vec![1, 2])
            .with_channels(1)
            .with_num_classes(Some(3))
            .init(&device);
        let split = SplitBatch::new(&model, 2);
        assert_eq!(split.num_classes(), Some(3));
        let x = NoiseSource::new(2).normal_tensor([5, 1, 8, 8], &device);
        let classes = [0, 2, 1, 3, 2];
        for t in [Timesteps::All(7), Timesteps::Each(vec![1, 50, 999, 3, 400])] {
            let whole = model.denoise(x.clone(), &t, None, Some(&classes));
            let parts = split.denoise(x.clone(), &t, None, Some(&classes));
            assert_eq!(parts.dims(), [5, 1, 8, 8]);
            let diff = (whole - parts).abs().max().into_scalar::<f32>();
            assert!(diff < 1e-5, "{diff}");
        }
    }
}
