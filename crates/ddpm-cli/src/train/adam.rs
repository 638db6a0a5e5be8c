//! The training's optimizer, lucidrains' Trainer's: the norm of all gradients together clipped
//! (`clip_grad_norm_`), then Adam. The norm is measured once per step ([`GradientNorm`]) and
//! each tensor is scaled in its own step, so that on a GPU with the core's kernels on
//! (`DDPM_GPU_KERNELS=1`) the clipping and Adam are one kernel per parameter tensor. Runs
//! started before 2026-12-07 clip each tensor's gradient by itself (burn's
//! `GradientClipping::Norm`), with burn's ε, and resume so (`optim.grad_clip_per_tensor`,
//! `optim.adam_epsilon`). The state is burn's `AdamState`, so checkpoints are the same either
//! way and resume across devices.

use std::sync::{Arc, Mutex, PoisonError};

use burn::grad_clipping::GradientClipping;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{
    Adam, AdamConfig, AdamState, GradientsParams, LearningRate, ModuleOptimizer, Optimizer,
};
use burn::tensor::{Device, Tensor};
use ddpm::Unet;

use crate::config::OptimConfig;

/// How a step's gradients are clipped before Adam.
#[derive(Clone)]
enum Clip {
    None,
    /// Each tensor's gradient to this norm by itself (runs from before 2026-12-07).
    PerTensor(f32),
    /// All of them together to this norm, by their [`GradientNorm`].
    Together(f32, GradientNorm),
}

/// The sum of squares of all of a step's gradients (`[1]`, on the device: nothing is read
/// back), measured before the step by [`GradientNorm::measure`] and read by the optimizer.
#[derive(Clone, Default)]
pub struct GradientNorm(Arc<Mutex<Option<Tensor<1>>>>);

impl GradientNorm {
    /// Measures `grads`, the gradients of `model`'s parameters: with the core's GPU kernels one
    /// launch for each small tensor (`ddpm::gpu::adam::add_sum_of_squares`).
    pub fn measure(&self, model: &Unet, grads: &GradientsParams) {
        let mut sums = SumOfSquares { grads, sum: None };
        model.visit(&mut sums);
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = sums.sum;
    }

    /// The last measured sum of squares.
    pub(super) fn sum_of_squares(&self) -> Tensor<1> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .expect("the gradients' norm is measured before each step")
    }
}

/// Adam after clipping, for [`ModuleOptimizer`].
#[derive(Clone)]
pub struct ClippedAdam {
    adam: Adam,
    // Read by the GPU kernel's step only (a build without wgpu has none).
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    betas: [f32; 2],
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    epsilon: f32,
    clip: Clip,
}

impl ClippedAdam {
    /// The optimizer over a whole module at `optim`'s β, ε and clipping. Clipping all gradients
    /// together reads `norm`, which must be measured before each step.
    pub fn module(optim: &OptimConfig, norm: &GradientNorm) -> ModuleOptimizer {
        let [beta_1, beta_2] = optim.betas;
        let adam = AdamConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(optim.adam_epsilon)
            .build();
        let clip = match (optim.clip_together(), optim.grad_clip) {
            (Some(max), _) => Clip::Together(max, norm.clone()),
            (None, Some(max)) => Clip::PerTensor(max),
            (None, None) => Clip::None,
        };
        ModuleOptimizer::from(Self {
            adam,
            betas: optim.betas,
            epsilon: optim.adam_epsilon,
            clip,
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
        use ddpm::gpu::adam::{AdamStep, adam_step, adam_step_clipped_by};

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
        let mut at = AdamStep {
            lr: lr as f32,
            beta_1: self.betas[0],
            beta_2: self.betas[1],
            epsilon: self.epsilon,
            time: i32::try_from(time + 1).unwrap_or(i32::MAX),
            max_norm: None,
        };
        let (p, g) = (tensor.clone(), grad.clone());
        let [p, m, v] = match &self.clip {
            Clip::Together(max, norm) => {
                at.max_norm = Some(*max);
                adam_step_clipped_by([p, g, m, v], norm.sum_of_squares(), at)
            }
            Clip::PerTensor(max) => {
                at.max_norm = Some(*max);
                adam_step(p, g, m, v, at)
            }
            Clip::None => adam_step(p, g, m, v, at),
        };
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
        let grad = match &self.clip {
            // lucidrains' `clip_grad_norm_`: min(1, max_norm / (‖g‖ + 10⁻⁶)), ‖g‖ over all.
            Clip::Together(max, norm) => {
                let norm = norm.sum_of_squares().sqrt();
                let factor = norm.add_scalar(1e-6).recip().mul_scalar(*max);
                grad * factor.clamp_max(1.0).reshape([1; D])
            }
            Clip::PerTensor(max) => GradientClipping::Norm(*max).clip_gradient(grad),
            Clip::None => grad,
        };
        self.adam.step(lr, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <Adam as Optimizer>::to_device(state, device)
    }
}

/// The sum of squares of every gradient visited.
struct SumOfSquares<'a> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<1>>,
}

impl ModuleVisitor for SumOfSquares<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(grad) = self.grads.get::<D>(param.id) else {
            return;
        };
        self.sum = Some(match self.sum.take() {
            #[cfg(feature = "wgpu")]
            Some(sum) if ddpm::gpu::applies(&grad) => {
                ddpm::gpu::adam::add_sum_of_squares(sum, grad)
            }
            Some(sum) => sum + grad.square().sum(),
            None => grad.square().sum(),
        });
    }
}
