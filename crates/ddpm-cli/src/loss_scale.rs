//! Dynamic loss scaling for training with f16 convolutions (`DDPM_HALF_CONVS=1`, the core's
//! `gpu::mixed_precision`), as PyTorch's `GradScaler` does it with its defaults: the loss is
//! multiplied by the scale before the backward pass, so that small gradients do not underflow
//! in f16, and the gradients divided by it before clipping and Adam. A step whose gradients are
//! not finite is skipped (the EMA and the step count go on, as lucidrains' Trainer's do under
//! accelerate) and the scale halved; 2,000 finite steps in a row double it. The scale is kept
//! in the checkpoint, so a resumed run goes on where it was.

use anyhow::{Result, bail};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use ddpm::Unet;
use serde::{Deserialize, Serialize};

/// Whether this process is asked to train with f16 convolutions (`DDPM_HALF_CONVS=1`). A build
/// without a GPU backend reads the variable too, so that `train` refuses it on the CPU rather
/// than ignoring it.
pub fn half_convs() -> bool {
    #[cfg(feature = "wgpu")]
    return ddpm::gpu::mixed_precision::enabled();
    #[cfg(not(feature = "wgpu"))]
    std::env::var("DDPM_HALF_CONVS").is_ok_and(|v| v == "1")
}

/// `GradScaler`'s `init_scale`.
const INITIAL: f32 = 65536.0;
/// `GradScaler`'s `growth_interval`.
const GROWTH_INTERVAL: u32 = 2000;

/// The scale and how it got there.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScale {
    /// What the loss is multiplied by; a power of two, so scaling and unscaling are exact.
    pub scale: f32,
    /// Finite steps since the scale last changed.
    pub good_steps: u32,
    /// Steps skipped for gradients that were not finite, over the run.
    pub skipped: u64,
}

impl Default for LossScale {
    fn default() -> Self {
        Self {
            scale: INITIAL,
            good_steps: 0,
            skipped: 0,
        }
    }
}

impl LossScale {
    /// Takes a step's verdict: `Ok(true)` when its gradients were finite and it is applied,
    /// `Ok(false)` when it is skipped. Gradients that are not finite even at a scale of 1 are
    /// no underflow but a diverged run, an error.
    pub fn update(&mut self, finite: bool, step: usize) -> Result<bool> {
        if finite {
            self.good_steps += 1;
            if self.good_steps == GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
            return Ok(true);
        }
        if self.scale <= 1.0 {
            bail!(
                "step {step}: the gradients are not finite even at loss scale 1 (f16 convolutions, DDPM_HALF_CONVS=1); resume with a lower --lr, or without DDPM_HALF_CONVS"
            );
        }
        self.scale /= 2.0;
        self.good_steps = 0;
        self.skipped += 1;
        Ok(false)
    }
}

/// Divides every gradient of `model`'s parameters in `grads` by `scale`.
pub fn unscale(model: &Unet, grads: &mut GradientsParams, scale: f32) {
    model.visit(&mut Unscale {
        grads,
        factor: scale.recip(),
    });
}

struct Unscale<'a> {
    grads: &'a mut GradientsParams,
    factor: f32,
}

impl ModuleVisitor for Unscale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            self.grads
                .register::<D>(param.id, grad.mul_scalar(self.factor));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use ddpm::UnetConfig;

    #[test]
    fn the_scale_halves_on_overflow_and_doubles_after_2000_finite_steps() {
        let mut s = LossScale::default();
        assert_eq!(s.scale, 65536.0);
        assert!(!s.update(false, 1).expect("update"));
        assert_eq!((s.scale, s.good_steps, s.skipped), (32768.0, 0, 1));
        for step in 2..2001 {
            assert!(s.update(true, step).expect("update"));
        }
        assert_eq!((s.scale, s.good_steps), (32768.0, 1999));
        assert!(s.update(true, 2001).expect("update"));
        assert_eq!((s.scale, s.good_steps, s.skipped), (65536.0, 0, 1));
        // An overflow resets the count towards growth.
        s.update(true, 2002).expect("update");
        s.update(false, 2003).expect("update");
        assert_eq!((s.scale, s.good_steps, s.skipped), (32768.0, 0, 2));
    }

    #[test]
    fn gradients_not_finite_at_scale_1_stop_the_run() {
        let mut s = LossScale {
            scale: 2.0,
            ..LossScale::default()
        };
        assert!(!s.update(false, 7).expect("update"));
        assert_eq!(s.scale, 1.0);
        let err = s.update(false, 8).expect_err("stops").to_string();
        assert!(err.starts_with("step 8: the gradients are not finite even at loss scale 1"));
    }

    #[test]
    fn unscaling_divides_each_gradient_exactly() {
        let device = Device::flex().autodiff();
        let model = UnetConfig::new(8)
            .with_dim_mults(vec![1, 2])
            .with_attn_dim_head(8)
            .init(&device);
        let grads_of = |factor: f32| {
            let x = Tensor::<4>::ones([1, 3, 8, 8], &device);
            let t = Tensor::<1>::from_floats([3.0], &device);
            let loss = model.forward(x, t, None, None).square().sum();
            GradientsParams::from_grads(loss.mul_scalar(factor).backward(), &model)
        };
        let plain = grads_of(1.0);
        let mut scaled = grads_of(1024.0);
        unscale(&model, &mut scaled, 1024.0);
        for id in [model.final_conv.weight.id, model.init_conv.weight.id] {
            let (a, b) = (
                plain.get::<4>(id).expect("grad"),
                scaled.get::<4>(id).expect("grad"),
            );
            let a = a.into_data();
            assert!(a.as_slice::<f32>().expect("f32").iter().any(|v| *v != 0.0));
            assert_eq!(a, b.into_data());
        }
    }
}
