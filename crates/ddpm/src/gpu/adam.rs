//! One Adam step for one parameter tensor, its gradient clipped by its norm first, as one cubecl
//! kernel (plus the gradient's sum of squares): what burn's `GradientClipping::Norm` and `Adam`
//! do in some twenty element-wise kernels per tensor, each a pass over it. A training step of
//! the U-Net updates about two hundred tensors, so without this most of its kernel launches are
//! the optimizer's (BENCHMARKS.md, "Kernel launches per step"). The math is burn's, in its order.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::cube;
use cubecl::prelude::*;

use super::{empty_contiguous, launch_size};

/// The step's numbers, the same for every tensor of a step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    /// The learning rate.
    pub lr: f32,
    /// The first moment's decay.
    pub beta_1: f32,
    /// The second moment's decay.
    pub beta_2: f32,
    /// Added to `√v̂` (burn's default is 1e-5, PyTorch's 1e-8).
    pub epsilon: f32,
    /// The step's number counted from 1 (burn's `AdaptiveMomentumState::time` after it).
    pub time: i32,
    /// The largest norm the gradient keeps (`None`: not clipped).
    pub max_norm: Option<f32>,
}

/// Element `i`: the gradient scaled by `clip` (from its sum of squares `sumsq`), the moments
/// moved towards it, and the parameter moved by `lr · m̂ / (√v̂ + ε)`, the bias corrections
/// folded into `factor` and `eps` as burn does.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn adam_step_kernel(
    p: &Tensor<f32>,
    g: &Tensor<f32>,
    m: &Tensor<f32>,
    v: &Tensor<f32>,
    sumsq: &Tensor<f32>,
    out: &mut Tensor<f32>,
    m_out: &mut Tensor<f32>,
    v_out: &mut Tensor<f32>,
    lr: f32,
    beta_1: f32,
    beta_2: f32,
    factor: f32,
    eps: f32,
    max_norm: f32,
    #[comptime] clip: bool,
) {
    let i = ABSOLUTE_POS;
    if i >= p.len() {
        terminate!();
    }
    let mut grad = g[i];
    if clip {
        // `GradientClipping::Norm`: the norm plus f32's smallest normal number, the factor at most 1.
        let scale = max_norm / (f32::sqrt(sumsq[0]) + 1.1754944e-38f32);
        grad *= f32::min(scale, 1.0f32);
    }
    let m_new = m[i] * beta_1 + grad * (1.0f32 - beta_1);
    let v_new = v[i] * beta_2 + grad * grad * (1.0f32 - beta_2);
    m_out[i] = m_new;
    v_out[i] = v_new;
    out[i] = p[i] - m_new * factor / (f32::sqrt(v_new) + eps) * lr;
}

/// The optimizer's kernels, on burn's cubecl backends only (elsewhere burn's own `Adam` runs).
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
pub trait OptimizerKernels: Backend {
    /// burn's Adam step (`AdaptiveMomentum::transform`, then `tensor - lr · update`) for `p`,
    /// its gradient `g`, its moments `m` and `v` (zeros before the first step) and the
    /// gradient's sum of squares `sumsq` (`[1]`): the new parameter and moments, contiguous.
    #[fusion(meta = |p, _g, _m, _v, _sumsq, _at| (p.clone(), p.clone(), p.clone()))]
    fn adam_step(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        sumsq: FloatTensor<Self>,
        at: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl OptimizerKernels for CubeBackend {
    fn adam_step(
        p: CubeTensor,
        g: CubeTensor,
        m: CubeTensor,
        v: CubeTensor,
        sumsq: CubeTensor,
        at: AdamStep,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let [p, g, m, v] = [p, g, m, v].map(into_contiguous);
        let shape = p.meta.shape().to_vec();
        let [out, m_out, v_out] = [(); 3].map(|_| empty_contiguous(&p, shape.clone()));
        let len = shape.iter().product::<usize>();
        // burn's bias corrections: √(1 − β₂ᵗ) / (1 − β₁ᵗ) on the first moment, ε · √(1 − β₂ᵗ).
        let correction = (1.0 - at.beta_2.powi(at.time)).sqrt();
        let factor = correction / (1.0 - at.beta_1.powi(at.time));
        if len > 0 {
            let (count, cube_dim) = launch_size(&p, len);
            adam_step_kernel::launch(
                &out.client,
                count,
                cube_dim,
                p.into_tensor_arg(),
                g.into_tensor_arg(),
                m.into_tensor_arg(),
                v.into_tensor_arg(),
                sumsq.into_tensor_arg(),
                out.clone().into_tensor_arg(),
                m_out.clone().into_tensor_arg(),
                v_out.clone().into_tensor_arg(),
                at.lr,
                at.beta_1,
                at.beta_2,
                factor,
                at.epsilon * correction,
                at.max_norm.unwrap_or(0.0),
                at.max_norm.is_some(),
            );
        }
        (out, m_out, v_out)
    }
}

/// One Adam step of the parameter `p` (on a cubecl device, `f32`, see [`super::applies`]) with
/// its gradient `g` and moments `m` and `v` (zeros before the first step): the new parameter
/// and moments.
pub fn adam_step<const D: usize>(
    p: burn::Tensor<D>,
    g: burn::Tensor<D>,
    m: burn::Tensor<D>,
    v: burn::Tensor<D>,
    at: AdamStep,
) -> [burn::Tensor<D>; 3] {
    // Without clipping the kernel does not read it: the gradient itself stands in, unlaunched.
    let sumsq = match at.max_norm {
        Some(_) => g.clone().square().sum(),
        None => g.clone().reshape([-1]),
    };
    let (p, m, v) = <Dispatch as OptimizerKernels>::adam_step(
        p.into_dispatch(),
        g.into_dispatch(),
        m.into_dispatch(),
        v.into_dispatch(),
        sumsq.into_dispatch(),
        at,
    );
    [p, m, v].map(burn::Tensor::from_dispatch)
}
