//! The training's optimizer, lucidrains' Trainer's: the norm of all gradients together clipped
//! (`clip_grad_norm_`), then Adam; on a GPU with the core's kernels on (`DDPM_GPU_KERNELS=1`)
//! Adam's step is one kernel per parameter tensor. Runs started before 2026-12-07 clip each
//! tensor's gradient by itself (burn's `GradientClipping::Norm`), with burn's ε, and resume so
//! (`optim.grad_clip_per_tensor`, `optim.adam_epsilon`). The state is burn's `AdamState`, so
//! checkpoints are the same either way and resume across devices.

use burn::grad_clipping::GradientClipping;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{
    Adam, AdamConfig, AdamState, GradientsParams, LearningRate, ModuleOptimizer, Optimizer,
};
use burn::tensor::{Device, Tensor};
use ddpm::Unet;

use crate::config::OptimConfig;

/// Adam, after clipping each tensor's gradient by itself where the run asks for that, for
/// [`ModuleOptimizer`].
#[derive(Clone)]
pub struct ClippedAdam {
    adam: Adam,
    betas: [f32; 2],
    epsilon: f32,
    per_tensor_clip: Option<f32>,
}

impl ClippedAdam {
    /// The optimizer over a whole module at `optim`'s β and ε; it clips each tensor by itself
    /// only for `optim.grad_clip_per_tensor` (else see [`clip_grad_norm`]).
    pub fn module(optim: &OptimConfig) -> ModuleOptimizer {
        let [beta_1, beta_2] = optim.betas;
        let adam = AdamConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(optim.adam_epsilon)
            .build();
        ModuleOptimizer::from(Self {
            adam,
            betas: optim.betas,
            epsilon: optim.adam_epsilon,
            per_tensor_clip: optim.grad_clip.filter(|_| optim.grad_clip_per_tensor),
        })
    }

    /// The step through the core's GPU kernel, where it applies.
    #[cfg(feature = "wgpu")]
    fn on_gpu<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: &Tensor<D>,
        grad: &Tensor<D>,
        state: &Option<AdamState<D>>,
    ) -> Option<(Tensor<D>, Option<AdamState<D>>)> {
        use burn::optim::AdaptiveMomentumState;
        use ddpm::gpu::adam::{AdamStep, adam_step};

        if !ddpm::gpu::applies(tensor) {
            return None;
        }
        let (time, m, v) = match state {
            Some(s) => (
                s.momentum.time,
                s.momentum.moment_1.clone(),
                s.momentum.moment_2.clone(),
            ),
            None => (0, tensor.zeros_like(), tensor.zeros_like()),
        };
        let at = AdamStep {
            lr: lr as f32,
            beta_1: self.betas[0],
            beta_2: self.betas[1],
            epsilon: self.epsilon,
            time: i32::try_from(time + 1).unwrap_or(i32::MAX),
            max_norm: self.per_tensor_clip,
        };
        let [p, m, v] = adam_step(tensor.clone(), grad.clone(), m, v, at);
        let momentum = AdaptiveMomentumState::new(time + 1, m, v);
        Some((p, Some(AdamState::new(momentum))))
    }
}

impl Optimizer for ClippedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        #[cfg(feature = "wgpu")]
        if let Some(stepped) = self.on_gpu(lr, &tensor, &grad, &state) {
            return stepped;
        }
        let grad = match self.per_tensor_clip {
            Some(norm) => GradientClipping::Norm(norm).clip_gradient(grad),
            None => grad,
        };
        self.adam.step(lr, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <Adam as Optimizer>::to_device(state, device)
    }
}

/// lucidrains' `clip_grad_norm_(model.parameters(), max_norm)`, which `optim.grad_clip` asks for
/// unless `grad_clip_per_tensor`: every gradient scaled by min(1, max_norm / (‖g‖ + 10⁻⁶)), ‖g‖
/// the norm of all of `model`'s gradients together. The factor stays a tensor on the device,
/// so nothing is read back.
pub fn clip_grad_norm(model: &Unet, mut grads: GradientsParams, max_norm: f32) -> GradientsParams {
    let mut sums = SumsOfSquares {
        grads: &grads,
        sums: Vec::new(),
    };
    model.visit(&mut sums);
    if sums.sums.is_empty() {
        return grads;
    }
    let norm = Tensor::cat(sums.sums, 0).sum().sqrt();
    let factor = norm
        .add_scalar(1e-6)
        .recip()
        .mul_scalar(max_norm)
        .clamp_max(1.0);
    model.visit(&mut Scale {
        grads: &mut grads,
        factor,
    });
    grads
}

/// Each gradient's sum of squares, `[1]`.
struct SumsOfSquares<'a> {
    grads: &'a GradientsParams,
    sums: Vec<Tensor<1>>,
}

impl ModuleVisitor for SumsOfSquares<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            self.sums.push(grad.square().sum());
        }
    }
}

/// Each gradient times `factor` (`[1]`).
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: Tensor<1>,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            let factor = self.factor.clone().reshape([1; D]);
            self.grads.register(param.id, grad * factor);
        }
    }
}
