//! The training's optimizer: burn's Adam with each gradient clipped by its norm (what
//! `AdamConfig::with_grad_clipping(Norm)` builds), and on a GPU with the core's kernels on
//! (`DDPM_GPU_KERNELS=1`) the two as one kernel per parameter tensor. The state is burn's
//! `AdamState`, so checkpoints are the same either way and resume across devices.

use burn::grad_clipping::GradientClipping;
use burn::optim::{Adam, AdamConfig, AdamState, LearningRate, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor};

/// burn's default, kept: PyTorch's (and so lucidrains') is 1e-8.
const EPSILON: f32 = 1e-5;

/// Adam after norm clipping, for [`ModuleOptimizer`].
#[derive(Clone)]
pub struct ClippedAdam {
    adam: Adam,
    betas: [f32; 2],
    max_norm: Option<f32>,
}

impl ClippedAdam {
    /// The optimizer over a whole module: `betas` for the two moments, each parameter's
    /// gradient scaled down to a norm of at most `max_norm` first (`None`: not clipped).
    pub fn module(betas: [f32; 2], max_norm: Option<f32>) -> ModuleOptimizer {
        let adam = AdamConfig::new()
            .with_beta_1(betas[0])
            .with_beta_2(betas[1])
            .with_epsilon(EPSILON)
            .build();
        ModuleOptimizer::from(Self {
            adam,
            betas,
            max_norm,
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
            epsilon: EPSILON,
            time: i32::try_from(time + 1).unwrap_or(i32::MAX),
            max_norm: self.max_norm,
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
        let grad = match self.max_norm {
            Some(norm) => GradientClipping::Norm(norm).clip_gradient(grad),
            None => grad,
        };
        self.adam.step(lr, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <Adam as Optimizer>::to_device(state, device)
    }
}
