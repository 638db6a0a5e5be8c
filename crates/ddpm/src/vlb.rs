//! The terms of the variational bound L_vlb (Ho et al. 2020, eq. 5) that train a learned
//! variance (Nichol & Dhariwal 2021, "hybrid" loss L_simple + λ L_vlb), as in lucidrains'
//! `LearnedGaussianDiffusion`. All values are in bits per dimension, averaged per image.

use burn::tensor::Tensor;

/// 1 / ln 2: nats to bits.
const BITS_PER_NAT: f64 = std::f64::consts::LOG2_E;

/// KL(N(μ₁, e^{lv₁}) ‖ N(μ₂, e^{lv₂})) per element, in nats.
pub fn normal_kl(
    mean1: Tensor<4>,
    logvar1: Tensor<4>,
    mean2: Tensor<4>,
    logvar2: Tensor<4>,
) -> Tensor<4> {
    let diff = (mean1 - mean2).square();
    ((logvar2.clone() - logvar1.clone()).sub_scalar(1.0)
        + (logvar1 - logvar2.clone()).exp()
        + diff * logvar2.neg().exp())
    .mul_scalar(0.5)
}

/// The tanh approximation of the standard normal CDF used by the paper's code.
fn approx_standard_normal_cdf(x: Tensor<4>) -> Tensor<4> {
    let inner = (x.clone() + x.powi_scalar(3).mul_scalar(0.044715))
        .mul_scalar((2.0 / std::f64::consts::PI).sqrt());
    inner.tanh().add_scalar(1.0).mul_scalar(0.5)
}

/// log p(x) of the decoder p(x₀ | x₁): a Gaussian discretised to 256 bins on [−1, 1], with
/// open-ended first and last bins.
pub fn discretized_gaussian_log_likelihood(
    x: Tensor<4>,
    means: Tensor<4>,
    log_scales: Tensor<4>,
) -> Tensor<4> {
    let log = |t: Tensor<4>| t.clamp_min(1e-15).log();
    let centered = x.clone() - means;
    let inv_stdv = log_scales.neg().exp();
    let cdf_plus =
        approx_standard_normal_cdf(inv_stdv.clone() * centered.clone().add_scalar(1.0 / 255.0));
    let cdf_min = approx_standard_normal_cdf(inv_stdv * centered.sub_scalar(1.0 / 255.0));
    let log_cdf_plus = log(cdf_plus.clone());
    let log_one_minus_cdf_min = log(cdf_min.clone().neg().add_scalar(1.0));
    let log_cdf_delta = log(cdf_plus - cdf_min);
    let threshold = 0.999;
    log_cdf_delta
        .mask_where(x.clone().greater_elem(threshold), log_one_minus_cdf_min)
        .mask_where(x.lower_elem(-threshold), log_cdf_plus)
}

/// Mean over all but the batch dimension, in bits. `[batch, ...] -> [batch]`
pub fn mean_bits(x: Tensor<4>) -> Tensor<1> {
    let [batch, ..] = x.dims();
    x.mean_dims(&[1, 2, 3])
        .reshape([batch])
        .mul_scalar(BITS_PER_NAT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{device, values};
    use burn::tensor::TensorData;

    fn t(v: Vec<f32>) -> Tensor<4> {
        let n = v.len();
        Tensor::from_data(TensorData::new(v, [1, 1, 1, n]), &device())
    }

    #[test]
    fn kl_matches_the_closed_form() {
        // KL(N(0,1) ‖ N(1, e²)) = ½(−1 + 2 − 0 + e⁻² + 1·e⁻²) = ½(1 + 2e⁻²).
        let kl = values(normal_kl(
            t(vec![0.0, 0.3]),
            t(vec![0.0, -0.5]),
            t(vec![1.0, 0.3]),
            t(vec![2.0, -0.5]),
        ));
        let want = 0.5 * (1.0 + 2.0 * (-2.0f64).exp());
        assert!((kl[0] as f64 - want).abs() < 1e-6, "{kl:?}");
        assert!(kl[1].abs() < 1e-7, "identical Gaussians: {kl:?}");
    }

    #[test]
    fn discretized_likelihood_sums_to_one_over_the_bins() {
        // Every pixel value of 8 bits, for one Gaussian: the bin probabilities add up to 1.
        let xs: Vec<f32> = (0..256).map(|i| i as f32 / 127.5 - 1.0).collect();
        let means = vec![0.1f32; 256];
        let log_scales = vec![(0.3f32).ln(); 256];
        let logp = values(discretized_gaussian_log_likelihood(
            t(xs),
            t(means),
            t(log_scales),
        ));
        let total: f64 = logp.iter().map(|&l| (l as f64).exp()).sum();
        assert!((total - 1.0).abs() < 2e-3, "{total}");
        assert!(logp.iter().all(|l| *l <= 0.0));
    }
}
