//! GPU kernels, written in cubecl for burn's cubecl backends (wgpu, CUDA) through the same
//! backend-extension API as the CPU kernels (`crate::fused`), and tested against the same burn
//! composites (on Mesa's lavapipe where there is no GPU):
//!
//! - [`norm_film_silu`]: a `Block`'s RMSNorm, FiLM scale and shift, and SiLU, forward and
//!   backward;
//! - [`rms_norm`]: the attentions' RMSNorm, the same kernels without FiLM and SiLU;
//! - [`sampling_norm`]: both norms without gradients, making their per-channel factor in the
//!   kernel from the parameters as stored;
//! - [`softmax`]: the attentions' softmax along one axis, forward and backward;
//! - [`adam`]: one Adam step of a parameter tensor with its gradient clipped by its norm;
//! - [`ema`]: the EMA update of a parameter tensor;
//! - [`attention`]: `Attention`'s core without gradients, for sampling;
//! - [`linear_attention`]: `LinearAttention`'s core without gradients, for sampling;
//! - [`layout`]: convolution weights laid out channels-last once, for sampling;
//! - [`mixed_precision`]: training's 3×3 and 7×7 convolutions in f16 (`DDPM_HALF_CONVS=1`);
//! - [`verify`]: the sampling and training kernels checked against burn's on the adapter at
//!   hand.
//!
//! Off unless the environment says `DDPM_GPU_KERNELS=1` or a program turns them on with
//! [`set_enabled`] (a browser has no environment): whether one kernel beats burn's chain of
//! small ones (or its fusion) is for a GPU to measure, and none has yet (BENCHMARKS.md).
//! Training with them (autodiff) needs the `fused-autodiff` feature too.

use std::sync::atomic::{AtomicU8, Ordering};

use burn::backend::ops::FloatTensorOps;
use burn::backend::{DispatchDevice, Shape};
use burn::tensor::{DType, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::{CubeCount, CubeDim};

use crate::kernels::{SharedKernels, SharedKernelsBackward};

pub mod adam;
pub mod attention;
pub mod ema;
pub mod layout;
pub mod linear_attention;
pub mod mixed_precision;
pub mod norm_film_silu;
pub mod rms_norm;
pub mod sampling_norm;
pub mod softmax;
#[cfg(all(test, feature = "fused-autodiff"))]
mod tests;
pub mod verify;

/// A process-wide switch read from an environment variable (`"1"` is on) the first time it is
/// asked, unless a program set it first (a browser has no environment).
pub(crate) struct Switch {
    variable: &'static str,
    state: AtomicU8,
}

const UNSET: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

impl Switch {
    pub(crate) const fn new(variable: &'static str) -> Self {
        Self {
            variable,
            state: AtomicU8::new(UNSET),
        }
    }

    /// As [`Self::set`] last set it, else whether the variable is `1` (read once per process).
    pub(crate) fn enabled(&self) -> bool {
        match self.state.load(Ordering::Relaxed) {
            UNSET => {
                let on = std::env::var(self.variable).is_ok_and(|v| v == "1");
                let read = if on { ON } else { OFF };
                // A `set` in between wins over the environment (`Err` holds its value).
                let state = self
                    .state
                    .compare_exchange(UNSET, read, Ordering::Relaxed, Ordering::Relaxed)
                    .map_or_else(|set| set, |_| read);
                state == ON
            }
            state => state == ON,
        }
    }

    /// On or off for the whole process, whatever the environment says.
    pub(crate) fn set(&self, on: bool) {
        self.state
            .store(if on { ON } else { OFF }, Ordering::Relaxed);
    }
}

/// The kernels' switch.
static KERNELS: Switch = Switch::new("DDPM_GPU_KERNELS");

/// Whether the kernels run: as [`set_enabled`] last set it, else whether `DDPM_GPU_KERNELS=1`
/// (read once per process).
pub fn enabled() -> bool {
    KERNELS.enabled()
}

/// Turns the kernels on or off for the whole process, whatever the environment says, from the
/// next operation on.
pub fn set_enabled(on: bool) {
    KERNELS.set(on);
}

/// Whether the GPU kernels run for `t`: asked for, on a cubecl device, in `f32`, and with
/// gradients only when their backward passes are built in (`fused-autodiff`).
pub fn applies<const D: usize>(t: &Tensor<D>) -> bool {
    enabled() && on_cube(t) && crate::kernels::takes(t)
}

/// Whether the kernels that have no backward pass (sampling's) run for `t`: [`applies`], and
/// no gradients recorded.
pub fn applies_without_gradients<const D: usize>(t: &Tensor<D>) -> bool {
    applies(t) && !t.device().is_autodiff()
}

/// Whether `t` lives on one of burn's cubecl devices.
pub(crate) fn on_cube<const D: usize>(t: &Tensor<D>) -> bool {
    matches!(
        t.device().as_dispatch().clone().inner(),
        DispatchDevice::Cube(_)
    )
}

/// A contiguous (row-major) `f32` tensor of `shape` on `t`'s device.
fn empty_contiguous(t: &CubeTensor, shape: Vec<usize>) -> CubeTensor {
    empty_device_contiguous_dtype(
        t.client.clone(),
        t.device.clone(),
        Shape::from(shape),
        DType::F32,
    )
}

/// An `f32` tensor shaped like `t`, dense in `t`'s memory order: the next operation (a
/// convolution, mostly) then finds the layout burn's own element-wise operations would have
/// left it, instead of repacking a row-major one.
fn empty_like(t: &CubeTensor) -> CubeTensor {
    empty_in_order_of(t, t.meta.shape().to_vec())
}

/// An `f32` tensor of `shape` (of `t`'s rank), its axes in memory in the order of `t`'s.
fn empty_in_order_of(t: &CubeTensor, shape: Vec<usize>) -> CubeTensor {
    let strides = t.meta.strides();
    // The axes from the outermost in memory to the innermost; ties keep the logical order.
    let mut axes: Vec<usize> = (0..strides.len()).collect();
    axes.sort_by_key(|&i| std::cmp::Reverse(strides[i]));
    let mut inverse = vec![0; axes.len()];
    for (k, &i) in axes.iter().enumerate() {
        inverse[i] = k;
    }
    let dense = empty_contiguous(t, axes.iter().map(|&i| shape[i]).collect());
    CubeBackend::float_permute(dense, &inverse)
}

/// The cubes for `units` units of work (one per pixel, or per row) on `t`'s device.
fn launch_size(t: &CubeTensor, units: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new(&t.client, units);
    (calculate_cube_count_elemwise(&t.client, units, dim), dim)
}

impl SharedKernels for CubeBackend {
    fn norm_film_silu(h: CubeTensor, a: CubeTensor, s: CubeTensor) -> CubeTensor {
        norm_film_silu::forward(h, a, s)
    }

    fn fused_softmax(x: CubeTensor, dim: usize) -> CubeTensor {
        softmax::forward(x, dim)
    }
}

impl SharedKernelsBackward for CubeBackend {
    fn norm_film_silu_backward(
        h: CubeTensor,
        a: CubeTensor,
        s: CubeTensor,
        g: CubeTensor,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let [dh, da, ds] = norm_film_silu::backward(h, a, s, g);
        #[cfg(test)]
        let dh = match verify::FAULT.get() {
            skew if skew != 0.0 => CubeBackend::float_add_scalar(dh, skew.into()),
            _ => dh,
        };
        (dh, da, ds)
    }

    fn fused_softmax_backward(y: CubeTensor, g: CubeTensor, dim: usize) -> CubeTensor {
        softmax::backward(y, g, dim)
    }
}
