//! The negative log-likelihood bound of the paper (Ho et al. 2020, eq. 5), in bits per
//! dimension as in its Table 2:
//!
//! L = L_T + Σ_{t>1} L_{t−1} + L_0, with
//! - L_T = KL(q(x_T | x₀) ‖ N(0, I)), the prior term ([`GaussianDiffusion::prior_bits`]);
//! - L_{t−1} = KL(q(x_{t−1} | x_t, x₀) ‖ p_θ(x_{t−1} | x_t)) for the network's reverse step;
//! - L_0 = −log p_θ(x₀ | x₁) under the discretised Gaussian decoder (§3.3), whose bins are the
//!   256 pixel values on [−1, 1] ([`GaussianDiffusion::bound_term`] at step 0).
//!
//! The reverse step is the sampler's: mean μ̃(x̂₀, x_t) from the clipped x₀ prediction (as the
//! paper's and Nichol & Dhariwal's evaluation code) and variance β̃_t, or the learned variance
//! when the network outputs one.

use burn::tensor::Tensor;

use super::{Denoiser, GaussianDiffusion, Timesteps};
use crate::vlb;

impl GaussianDiffusion {
    /// L_T per image, in bits/dim: how far q(x_T | x₀) is from the prior N(0, I). No network
    /// is involved; it is small when ᾱ_T is near 0.
    ///
    /// # Shapes
    /// - `x_start`: `[batch, channels, height, width]`, scaled to [−1, 1]
    /// - output: `[batch]`
    pub fn prior_bits(&self, x_start: Tensor<4>) -> Tensor<1> {
        let s = &self.schedule;
        let last = self.timesteps() - 1;
        let zeros = x_start.zeros_like();
        let mean = x_start.mul_scalar(s.sqrt_alphas_cumprod[last]);
        let log_variance = zeros
            .clone()
            .add_scalar(s.log_one_minus_alphas_cumprod[last]);
        vlb::mean_bits(vlb::normal_kl(mean, log_variance, zeros.clone(), zeros))
    }

    /// One term of the bound per image, in bits/dim, for `x_t = q_sample(x₀, t, noise)`:
    /// the decoder's −log p_θ(x₀ | x₁) at `t = 0`, KL(q(x_{t−1} | x_t, x₀) ‖ p_θ(x_{t−1} | x_t))
    /// above. The full bound is [`Self::prior_bits`] plus this term summed over every `t`.
    ///
    /// `x_start` must hold pixel values k/127.5 − 1 (k = 0..255) for the decoder's bins to
    /// mean anything.
    ///
    /// # Shapes
    /// - `x_start`, `noise`: `[batch, channels, height, width]`
    /// - `classes`: one label per image (the null class for an unconditional bound)
    /// - output: `[batch]`
    pub fn bound_term<M: Denoiser>(
        &self,
        model: &M,
        x_start: Tensor<4>,
        t: usize,
        classes: Option<&[usize]>,
        noise: Tensor<4>,
    ) -> Tensor<1> {
        let steps = Timesteps::All(t);
        let channels = x_start.dims()[1];
        let x_t = self.q_sample(x_start.clone(), &steps, noise);
        let output = model.denoise(x_t.clone(), &steps, None, classes);
        let (output, variance) = Self::split_output(output, channels);
        let predicted = self.predictions(output, x_t.clone(), &steps, true).x_start;
        let (model_mean, fixed_log_variance) = self.q_posterior(predicted, x_t.clone(), &steps);
        let model_log_variance = match variance {
            Some(v) => self.learned_log_variance(v, &steps),
            None => fixed_log_variance,
        };
        if t == 0 {
            vlb::mean_bits(
                vlb::discretized_gaussian_log_likelihood(
                    x_start,
                    model_mean,
                    model_log_variance.mul_scalar(0.5),
                )
                .neg(),
            )
        } else {
            let (true_mean, true_log_variance) = self.q_posterior(x_start, x_t, &steps);
            vlb::mean_bits(vlb::normal_kl(
                true_mean,
                true_log_variance,
                model_mean,
                model_log_variance,
            ))
        }
    }
}
