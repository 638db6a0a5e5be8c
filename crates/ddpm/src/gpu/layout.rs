//! Convolution weights laid out channels-last once, for sampling. burn's cubecl convolutions
//! read their weights channels-last (`[out, kh, kw, in]` in memory) and copy a row-major weight
//! into that order on every call: one launch per convolution in every step of every sample.
//! A weight whose memory already is in that order, with the logical shape and strides of
//! burn's `[out, in, kh, kw]`, is read as it is; the model's weights do not change while it
//! samples, so the copy can be made once, when it is loaded.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::Tensor;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;

use burn::backend::ops::FloatTensorOps;

/// A tensor's memory re-ordered on burn's cubecl backends.
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
pub trait LayoutKernels: Backend {
    /// `w` `[out, in, kh, kw]` with the same values and shape, its memory channels-last.
    #[fusion(dtype = w, shape = w)]
    fn channels_last(w: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl LayoutKernels for CubeBackend {
    fn channels_last(w: CubeTensor) -> CubeTensor {
        let dense = into_contiguous(CubeBackend::float_permute(w, &[0, 2, 3, 1]));
        CubeBackend::float_permute(dense, &[0, 3, 1, 2])
    }
}

/// `model` with the weights of its convolutions larger than 1×1 channels-last in memory, where
/// the core's GPU kernels run and no gradients are recorded; otherwise `model` as it is.
/// (A 1×1 convolution's weight `[out, in, 1, 1]` already has its channels innermost.)
pub fn channels_last_convolutions<M: Module>(model: M) -> M {
    model.map(&mut ChannelsLast)
}

struct ChannelsLast;

impl ModuleMapper for ChannelsLast {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|w| {
            let dims = w.dims();
            let spatial = D == 4 && (dims[2] > 1 || dims[3] > 1);
            if !spatial || !super::applies_without_gradients(&w) {
                return w;
            }
            Tensor::from_dispatch(<Dispatch as LayoutKernels>::channels_last(
                w.into_dispatch(),
            ))
        })
    }
}
