//! A fixed variance in a learned-variance model's shape.

use burn::tensor::Tensor;

use super::{Denoiser, Timesteps};

/// A denoiser with a constant learned variance: the inner prediction, then as many channels
/// all equal to v, the interpolation value of Nichol & Dhariwal's eq. 15 (v = 1: σ² = β,
/// v = −1: σ² = β̃). A fixed-variance model in a learned-variance model's shape; the loss's and
/// the samplers' learned-variance paths are tested through it.
#[derive(Debug, Clone)]
pub struct FixedVariance<D>(pub D, pub f32);

impl<D: Denoiser> Denoiser for FixedVariance<D> {
    fn denoise(
        &self,
        x: Tensor<4>,
        t: &Timesteps,
        x_self_cond: Option<Tensor<4>>,
        classes: Option<&[usize]>,
    ) -> Tensor<4> {
        let prediction = self.0.denoise(x, t, x_self_cond, classes);
        let v = prediction.ones_like().mul_scalar(self.1);
        Tensor::cat(vec![prediction, v], 1)
    }

    fn check_shape(&self, shape: [usize; 4]) -> Result<(), String> {
        self.0.check_shape(shape)
    }

    fn self_condition(&self) -> bool {
        self.0.self_condition()
    }

    fn num_classes(&self) -> Option<usize> {
        self.0.num_classes()
    }
}
