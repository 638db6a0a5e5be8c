//! Before a run trains with the core's GPU kernels, one step through them is checked against
//! burn's on this adapter (`ddpm::gpu::verify::check_training`): a kernel that the adapter's
//! compiler refuses, or compiles wrong, gives a wrong but finite step, which nothing else would
//! notice before hours of training had gone into a worse model.

use burn::optim::GradientsParams;
use burn::tensor::Device;
use ddpm::Unet;

use super::adam::ClippedAdam;
use crate::config::OptimConfig;

/// Runs the check where the kernels would train `model` (on the autodiff `device`) and, if
/// they fail it, says why and trains with burn's kernels instead. The step is one of a fresh
/// optimizer at the configured rate, so the run's own state is not touched.
pub fn check(model: &Unet, device: &Device, image_size: [usize; 2], optim: &OptimConfig) {
    let step = |model: Unet, grads| {
        let grads = GradientsParams::from_grads(grads, &model);
        ClippedAdam::module(optim.betas, optim.grad_clip).step(optim.lr, model, grads)
    };
    if let Err(why) = ddpm::gpu::verify::check_training(model, device, image_size, step) {
        let why = crate::read_back::one_line(&why);
        eprintln!("warning: the core's GPU kernels {why}; training with burn's kernels instead");
        ddpm::gpu::set_enabled(false);
    }
}
