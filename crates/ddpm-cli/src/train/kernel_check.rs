//! Before a run trains with the core's GPU kernels, one step through them is checked against
//! burn's on this adapter (`ddpm::gpu::verify::check_training`): a kernel that the adapter's
//! compiler refuses, or compiles wrong, gives a wrong but finite step, which nothing else would
//! notice before hours of training had gone into a worse model. The previews' sampling kernels
//! are checked as `ddpm sample` checks them.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use ddpm::Unet;

use super::adam::{ClippedAdam, GradientNorm};
use crate::config::OptimConfig;

/// Runs the checks where the kernels would train `model` (on `device`'s autodiff, with
/// micro-batches of `batch` images) and draw previews from `ema` and, if they fail one, says
/// why and trains and draws with burn's kernels instead. The optimizer's step is two of a fresh
/// Adam at the configured rate with the same gradients (the second reads the moments the first
/// stored), so the run's own state is not touched.
pub fn check(
    (model, ema): (&Unet, &Unet),
    device: &Device,
    image_size: [usize; 2],
    batch: usize,
    optim: &OptimConfig,
) {
    crate::load::for_sampling(ema.clone(), image_size, device);
    if !ddpm::gpu::enabled() {
        return;
    }
    let step = |model: Unet, grads| {
        let first = GradientsParams::from_grads(grads, &model);
        let mut copy = CopyGradients {
            from: &first,
            to: GradientsParams::new(),
        };
        model.visit(&mut copy);
        let second = copy.to;
        let norm = GradientNorm::default();
        let mut adam = ClippedAdam::module(optim, &norm);
        norm.measure(&model, &first);
        let model = adam.step(optim.lr, model, first);
        norm.measure(&model, &second);
        adam.step(optim.lr, model, second)
    };
    if let Err(why) = ddpm::gpu::verify::check_training(
        model,
        &device.clone().autodiff(),
        image_size,
        batch,
        step,
    ) {
        let why = crate::read_back::one_line(&why);
        eprintln!("warning: the core's GPU kernels {why}; training with burn's kernels instead");
        ddpm::gpu::set_enabled(false);
    }
}

/// Each parameter's gradient in `from`, registered again in `to` (`GradientsParams` has no
/// `Clone`; the tensors are shared, not copied).
struct CopyGradients<'a> {
    from: &'a GradientsParams,
    to: GradientsParams,
}

impl ModuleVisitor for CopyGradients<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.from.get::<D>(param.id) {
            self.to.register(param.id, grad);
        }
    }
}
