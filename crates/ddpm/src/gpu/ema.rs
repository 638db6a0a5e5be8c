//! The EMA update of one parameter tensor, `ema · decay + θ · (1 − decay)`, as one cubecl kernel
//! where burn launches three (two scalings and a sum); it runs for each of the U-Net's two
//! hundred or so tensors after every optimizer step.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::cube;
use cubecl::prelude::*;

use super::{empty_contiguous, launch_size};

/// Element `i` of the average moved towards the weights.
#[cube(launch)]
fn ema_lerp_kernel(ema: &Tensor<f32>, weights: &Tensor<f32>, out: &mut Tensor<f32>, decay: f32) {
    let i = ABSOLUTE_POS;
    if i >= ema.len() {
        terminate!();
    }
    out[i] = ema[i] * decay + weights[i] * (1.0f32 - decay);
}

/// The EMA's kernel, on burn's cubecl backends only (elsewhere `Ema` uses burn's operations).
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
pub trait EmaKernels: Backend {
    /// `ema · decay + weights · (1 − decay)` (same shapes), contiguous.
    #[fusion(dtype = ema, shape = ema)]
    fn ema_lerp(
        ema: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        decay: f32,
    ) -> FloatTensor<Self>;
}

impl EmaKernels for CubeBackend {
    fn ema_lerp(ema: CubeTensor, weights: CubeTensor, decay: f32) -> CubeTensor {
        let [ema, weights] = [ema, weights].map(into_contiguous);
        let shape = ema.meta.shape().to_vec();
        let out = empty_contiguous(&ema, shape.clone());
        let len = shape.iter().product::<usize>();
        if len > 0 {
            let (count, cube_dim) = launch_size(&ema, len);
            ema_lerp_kernel::launch(
                &out.client,
                count,
                cube_dim,
                ema.into_tensor_arg(),
                weights.into_tensor_arg(),
                out.clone().into_tensor_arg(),
                decay,
            );
        }
        out
    }
}

/// [`EmaKernels::ema_lerp`] for tensors on a cubecl device (`f32`, see [`super::applies`]).
pub fn ema_lerp<const D: usize>(
    ema: burn::Tensor<D>,
    weights: burn::Tensor<D>,
    decay: f32,
) -> burn::Tensor<D> {
    burn::Tensor::from_dispatch(<Dispatch as EmaKernels>::ema_lerp(
        ema.into_dispatch(),
        weights.into_dispatch(),
        decay,
    ))
}
