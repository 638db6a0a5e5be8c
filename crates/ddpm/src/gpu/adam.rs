//! One Adam step for one parameter tensor, its gradient clipped by its norm first, as one cubecl
//! kernel (plus the gradient's sum of squares): what burn's `GradientClipping::Norm` and `Adam`
//! do in some twenty element-wise kernels per tensor, each a pass over it. A training step of
//! the U-Net updates about two hundred tensors, so without this most of its kernel launches are
//! the optimizer's (BENCHMARKS.md, "Kernel launches per step"). The math is burn's, in its order.
//!
//! The gradient's sum of squares is burn's square and sum, three more launches, except for the
//! small tensors (biases, gains: half of the U-Net's): there one cube reduces it in shared
//! memory and then steps, all in one launch. Clipping the norm of all gradients together
//! (lucidrains' `clip_grad_norm_`) chains [`add_sum_of_squares`] over them first, one launch per
//! small tensor, and steps each with [`adam_step_clipped_by`].

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

/// `GradientClipping::Norm`'s factor for a gradient with sum of squares `sumsq`: the norm plus
/// f32's smallest normal number, the factor at most 1.
#[cube]
fn clip_scale(sumsq: f32, max_norm: f32) -> f32 {
    f32::min(max_norm / (f32::sqrt(sumsq) + 1.1754944e-38f32), 1.0f32)
}

/// Element `i` of the step for the (clipped) gradient `grad`: the moments moved towards it, and
/// the parameter moved by `lr · m̂ / (√v̂ + ε)`, the bias corrections folded into `factor` and
/// `eps` as burn does.
#[cube]
#[allow(clippy::too_many_arguments)]
fn step_at(
    i: usize,
    grad: f32,
    p: &Tensor<f32>,
    m: &Tensor<f32>,
    v: &Tensor<f32>,
    out: &mut Tensor<f32>,
    m_out: &mut Tensor<f32>,
    v_out: &mut Tensor<f32>,
    lr: f32,
    beta_1: f32,
    beta_2: f32,
    factor: f32,
    eps: f32,
) {
    let m_new = m[i] * beta_1 + grad * (1.0f32 - beta_1);
    let v_new = v[i] * beta_2 + grad * grad * (1.0f32 - beta_2);
    m_out[i] = m_new;
    v_out[i] = v_new;
    out[i] = p[i] - m_new * factor / (f32::sqrt(v_new) + eps) * lr;
}

/// One unit per element: [`step_at`] with the gradient clipped by its sum of squares `sumsq`
/// (`[1]`) if `clip`.
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
        grad *= clip_scale(sumsq[0], max_norm);
    }
    step_at(
        i, grad, p, m, v, out, m_out, v_out, lr, beta_1, beta_2, factor, eps,
    );
}

/// Units in the cube of the one-launch step: WebGPU's guaranteed maximum, a power of two for
/// the halving reduction.
const CUBE_UNITS: usize = 256;

/// `log₂(CUBE_UNITS)`: the halvings that sum the units' shares.
const HALVINGS: usize = CUBE_UNITS.trailing_zeros() as usize;

/// The largest tensor that takes the one-launch step: sixteen elements per unit. One cube runs
/// on one of a GPU's many cores, so for larger tensors the three launches cost less than the
/// lost parallelism (a guess to be measured on a GPU: BENCHMARKS.md).
pub const ONE_LAUNCH_MAX: usize = 16 * CUBE_UNITS;

/// `g`'s sum of squares, summed by the one cube the launch has: each unit's share, `CUBE_UNITS`
/// apart, then the shares by halving in shared memory. Every unit gets it.
#[cube]
fn cube_sum_of_squares(g: &Tensor<f32>) -> f32 {
    let unit = UNIT_POS as usize;
    let mut share = 0.0f32;
    let mut i = unit;
    while i < g.len() {
        share += g[i] * g[i];
        i += CUBE_UNITS;
    }
    let mut sums = Shared::<[f32]>::new_slice(CUBE_UNITS);
    sums[unit] = share;
    sync_cube();
    // Unrolled: cubecl 0.11's verifier rejects this loop as a runtime one (shared memory indexed
    // by a loop-carried `half`).
    #[unroll]
    for k in 1..HALVINGS + 1 {
        let half = CUBE_UNITS >> k;
        if unit < half {
            sums[unit] += sums[unit + half];
        }
        sync_cube();
    }
    sums[0]
}

/// `acc` (`[1]`) plus `g`'s sum of squares, in one cube.
#[cube(launch)]
fn add_sum_of_squares_kernel(acc: &Tensor<f32>, g: &Tensor<f32>, out: &mut Tensor<f32>) {
    let total = cube_sum_of_squares(g);
    if UNIT_POS == 0 {
        out[0] = acc[0] + total;
    }
}

/// [`adam_step_kernel`] for a whole tensor in one cube: its gradient's sum of squares first,
/// each unit's share summed by halving in shared memory, then the step, `CUBE_UNITS` apart.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn one_cube_kernel(
    p: &Tensor<f32>,
    g: &Tensor<f32>,
    m: &Tensor<f32>,
    v: &Tensor<f32>,
    out: &mut Tensor<f32>,
    m_out: &mut Tensor<f32>,
    v_out: &mut Tensor<f32>,
    lr: f32,
    beta_1: f32,
    beta_2: f32,
    factor: f32,
    eps: f32,
    max_norm: f32,
) {
    let unit = UNIT_POS as usize;
    let len = p.len();
    let scale = clip_scale(cube_sum_of_squares(g), max_norm);
    let mut i = unit;
    while i < len {
        let grad = g[i] * scale;
        step_at(
            i, grad, p, m, v, out, m_out, v_out, lr, beta_1, beta_2, factor, eps,
        );
        i += CUBE_UNITS;
    }
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

    /// [`Self::adam_step`] with the gradient clipped by its norm (`at.max_norm`, which must be
    /// set), its sum of squares computed in the same launch: for at most [`ONE_LAUNCH_MAX`]
    /// elements.
    #[fusion(meta = |p, _g, _m, _v, _at| (p.clone(), p.clone(), p.clone()))]
    fn adam_step_one_launch(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        at: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// `acc` (`[1]`) plus the sum of squares of `g`, which has at most [`ONE_LAUNCH_MAX`]
    /// elements: one launch.
    #[fusion(dtype = acc, shape = acc)]
    fn add_sum_of_squares(acc: FloatTensor<Self>, g: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// burn's bias corrections, `√(1 − β₂ᵗ) / (1 − β₁ᵗ)` on the first moment and `ε · √(1 − β₂ᵗ)`,
/// as the kernels' `factor` and `eps`.
fn corrections(at: &AdamStep) -> (f32, f32) {
    let correction = (1.0 - at.beta_2.powi(at.time)).sqrt();
    (
        correction / (1.0 - at.beta_1.powi(at.time)),
        at.epsilon * correction,
    )
}

/// `p`, `g`, `m` and `v` made contiguous, three outputs like `p`, and their length.
fn operands(p: CubeTensor, g: CubeTensor, m: CubeTensor, v: CubeTensor) -> Operands {
    let [p, g, m, v] = [p, g, m, v].map(into_contiguous);
    let shape = p.meta.shape().to_vec();
    let outputs = [(); 3].map(|_| empty_contiguous(&p, shape.clone()));
    let len = shape.iter().product::<usize>();
    ([p, g, m, v], outputs, len)
}

type Operands = ([CubeTensor; 4], [CubeTensor; 3], usize);

impl OptimizerKernels for CubeBackend {
    fn adam_step(
        p: CubeTensor,
        g: CubeTensor,
        m: CubeTensor,
        v: CubeTensor,
        sumsq: CubeTensor,
        at: AdamStep,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let ([p, g, m, v], [out, m_out, v_out], len) = operands(p, g, m, v);
        let (factor, eps) = corrections(&at);
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
                eps,
                at.max_norm.unwrap_or(0.0),
                at.max_norm.is_some(),
            );
        }
        (out, m_out, v_out)
    }

    fn adam_step_one_launch(
        p: CubeTensor,
        g: CubeTensor,
        m: CubeTensor,
        v: CubeTensor,
        at: AdamStep,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let ([p, g, m, v], [out, m_out, v_out], len) = operands(p, g, m, v);
        let (factor, eps) = corrections(&at);
        if len > 0 {
            one_cube_kernel::launch(
                &out.client,
                CubeCount::Static(1, 1, 1),
                CubeDim::new_1d(CUBE_UNITS as u32),
                p.into_tensor_arg(),
                g.into_tensor_arg(),
                m.into_tensor_arg(),
                v.into_tensor_arg(),
                out.clone().into_tensor_arg(),
                m_out.clone().into_tensor_arg(),
                v_out.clone().into_tensor_arg(),
                at.lr,
                at.beta_1,
                at.beta_2,
                factor,
                eps,
                at.max_norm.unwrap_or(f32::INFINITY),
            );
        }
        (out, m_out, v_out)
    }

    fn add_sum_of_squares(acc: CubeTensor, g: CubeTensor) -> CubeTensor {
        let [acc, g] = [acc, g].map(into_contiguous);
        let out = empty_contiguous(&acc, vec![1]);
        add_sum_of_squares_kernel::launch(
            &out.client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(CUBE_UNITS as u32),
            acc.into_tensor_arg(),
            g.into_tensor_arg(),
            out.clone().into_tensor_arg(),
        );
        out
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
    if at.max_norm.is_some() && p.shape().num_elements() <= ONE_LAUNCH_MAX {
        let (p, m, v) = <Dispatch as OptimizerKernels>::adam_step_one_launch(
            p.into_dispatch(),
            g.into_dispatch(),
            m.into_dispatch(),
            v.into_dispatch(),
            at,
        );
        return [p, m, v].map(burn::Tensor::from_dispatch);
    }
    // Without clipping the kernel does not read it: the gradient itself stands in, unlaunched.
    let sumsq = match at.max_norm {
        Some(_) => g.clone().square().sum(),
        None => g.clone().reshape([-1]),
    };
    step_by([p, g, m, v], sumsq, at)
}

/// [`adam_step`] with the gradient clipped by `sumsq` (`[1]`), the sum of squares of all of the
/// step's gradients, to `at.max_norm` (which must be set): lucidrains' `clip_grad_norm_` folded
/// into the step, for any size of tensor.
pub fn adam_step_clipped_by<const D: usize>(
    operands: [burn::Tensor<D>; 4],
    sumsq: burn::Tensor<1>,
    at: AdamStep,
) -> [burn::Tensor<D>; 3] {
    debug_assert!(at.max_norm.is_some(), "a norm to clip to");
    step_by(operands, sumsq, at)
}

/// [`OptimizerKernels::adam_step`] on burn's tensors.
fn step_by<const D: usize>(
    [p, g, m, v]: [burn::Tensor<D>; 4],
    sumsq: burn::Tensor<1>,
    at: AdamStep,
) -> [burn::Tensor<D>; 3] {
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

/// `acc` (`[1]`) plus `g`'s sum of squares: one launch for a tensor of at most
/// [`ONE_LAUNCH_MAX`] elements, burn's square, sum and add (four) for a larger one, where one
/// cube would leave most of a GPU idle. Chained over a step's gradients, it gives what
/// [`adam_step_clipped_by`] clips by.
pub fn add_sum_of_squares<const D: usize>(
    acc: burn::Tensor<1>,
    g: burn::Tensor<D>,
) -> burn::Tensor<1> {
    if g.shape().num_elements() > ONE_LAUNCH_MAX {
        return acc + g.square().sum();
    }
    burn::Tensor::from_dispatch(<Dispatch as OptimizerKernels>::add_sum_of_squares(
        acc.into_dispatch(),
        g.into_dispatch(),
    ))
}
