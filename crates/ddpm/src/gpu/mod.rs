//! GPU kernels, written in cubecl for burn's cubecl backends (wgpu, CUDA) through the same
//! backend-extension API as the CPU kernels (`crate::fused`), and tested against the same burn
//! composites (on Mesa's lavapipe where there is no GPU):
//!
//! - [`norm_film_silu`]: a `Block`'s RMSNorm, FiLM scale and shift, and SiLU, forward and
//!   backward;
//! - [`rms_norm`]: the attentions' RMSNorm, the same kernels without FiLM and SiLU;
//! - [`softmax`]: the attentions' softmax along one axis, forward and backward;
//! - [`adam`]: one Adam step of a parameter tensor with its gradient clipped by its norm;
//! - [`ema`]: the EMA update of a parameter tensor.
//!
//! Off unless the environment says `DDPM_GPU_KERNELS=1`: whether one kernel beats burn's chain
//! of small ones (or its fusion) is for a GPU to measure, and none has yet (BENCHMARKS.md).

use std::sync::OnceLock;

use burn::backend::{DispatchDevice, Shape};
use burn::tensor::{DType, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::{CubeCount, CubeDim};

use crate::fused::extension::{SharedKernels, SharedKernelsBackward};

pub mod adam;
pub mod ema;
pub mod norm_film_silu;
pub mod rms_norm;
pub mod softmax;
#[cfg(test)]
mod tests;

/// Whether `DDPM_GPU_KERNELS=1` asks for the kernels (read once per process).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("DDPM_GPU_KERNELS").is_ok_and(|v| v == "1"))
}

/// Whether the GPU kernels run for `t`: asked for, on a cubecl device, in `f32`.
pub fn applies<const D: usize>(t: &Tensor<D>) -> bool {
    enabled() && on_cube(t) && t.dtype() == DType::F32
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
        (dh, da, ds)
    }

    fn fused_softmax_backward(y: CubeTensor, g: CubeTensor, dim: usize) -> CubeTensor {
        softmax::backward(y, g, dim)
    }
}
