//! lucidrains' `RMSNorm` (the attentions' pre-norm, `normalize(x) · gain`), and a `Block`
//! without FiLM (`silu(normalize(x) · gain)`), as a burn backend extension on the cubecl
//! backends: the `Block` kernels of [`super::norm_film_silu`] without the shift, with their own
//! autodiff wiring since the CPU has no kernel for them (its `Block` kernel takes a zero shift,
//! which on a GPU costs a launch forward and a reduction backward).

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn_cubecl::CubeBackend;
use burn_cubecl::tensor::CubeTensor;

use super::norm_film_silu::{launch_backward, launch_forward};

/// The RMSNorm (then the SiLU if `silu`) on burn's cubecl backends, with its backward pass for
/// autodiff.
#[backend_extension(
    Cube,
    Fusion: cfg(feature = "fusion"),
    Autodiff: cfg(feature = "fused-autodiff")
)]
pub trait NormKernels: Backend {
    /// `h`'s RMSNorm with the per-channel factor `a` (`[batch, channels, 1, 1]`), then the SiLU
    /// if `silu`: the `Block` kernel ([`forward`](super::norm_film_silu::forward)) without the
    /// shift.
    #[fusion(dtype = h, shape = h)]
    fn rms_norm(h: FloatTensor<Self>, a: FloatTensor<Self>, silu: bool) -> FloatTensor<Self>;
}

/// The backward pass of [`NormKernels::rms_norm`] on the backend an autodiff graph wraps (an
/// extension too, only so that fusion's implementation is generated).
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
pub trait NormKernelsBackward: Backend {
    /// The gradients for `h` and `a` given the output's gradient `g`.
    #[fusion(meta = |h, a, _g, _silu| (h.clone(), a.clone()))]
    fn rms_norm_backward(
        h: FloatTensor<Self>,
        a: FloatTensor<Self>,
        g: FloatTensor<Self>,
        silu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

impl NormKernels for CubeBackend {
    fn rms_norm(h: CubeTensor, a: CubeTensor, silu: bool) -> CubeTensor {
        launch_forward(h, a.clone(), a, None, silu, false)
    }
}

impl NormKernelsBackward for CubeBackend {
    fn rms_norm_backward(
        h: CubeTensor,
        a: CubeTensor,
        g: CubeTensor,
        silu: bool,
    ) -> (CubeTensor, CubeTensor) {
        let (dh, da, _) = launch_backward(h, a.clone(), a, g, silu, false);
        (dh, da)
    }
}

#[cfg(feature = "fused-autodiff")]
mod autodiff {
    use burn::backend::Autodiff;
    use burn::backend::autodiff::NodeId;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::tensor::FloatTensor;

    use super::{NormKernels, NormKernelsBackward};
    use crate::kernels::autodiff::register;

    /// Whether the SiLU follows the norm.
    #[derive(Debug)]
    struct RmsNormGrad(bool);

    impl<B: NormKernelsBackward> Backward<B, 2> for RmsNormGrad {
        /// The inputs, kept by the checkpointer.
        type State = [NodeId; 2];

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, ck: &mut Checkpointer) {
            let g = grads.consume::<B>(&ops.node);
            let [h, a] = ops
                .state
                .map(|id| ck.retrieve_node_output::<FloatTensor<B>>(id));
            let parents = ops.parents.map(|p| p.map(|node| node.id));
            let (dh, da) = B::rms_norm_backward(h, a, g, self.0);
            register::<B, 2>(grads, parents, [dh, da]);
        }
    }

    impl<B, C> NormKernels for Autodiff<B, C>
    where
        B: NormKernels + NormKernelsBackward,
        C: CheckpointStrategy,
    {
        fn rms_norm(h: FloatTensor<Self>, a: FloatTensor<Self>, silu: bool) -> FloatTensor<Self> {
            let prep = RmsNormGrad(silu).prepare::<C>([h.node(), a.node()]);
            match prep.compute_bound().stateful() {
                OpsKind::Tracked(mut prep) => {
                    let state = [prep.checkpoint(&h), prep.checkpoint(&a)];
                    let y = B::rms_norm(h.into_primitive(), a.into_primitive(), silu);
                    prep.finish(state, y)
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(B::rms_norm(h.into_primitive(), a.into_primitive(), silu))
                }
            }
        }
    }
}

/// `normalize(h) · gain` (`unet::ops::rms_norm`), or `silu(normalize(h) · gain)` if `silu`
/// (`unet::ops::norm_film_silu` without FiLM), through [`NormKernels::rms_norm`], `gain`
/// `[1, channels, 1, 1]` or `[batch, channels, 1, 1]`; for tensors on a cubecl device, with or
/// without autodiff (see [`super::applies`]).
pub fn rms_norm_tensor(h: burn::Tensor<4>, gain: burn::Tensor<4>, silu: bool) -> burn::Tensor<4> {
    let [batch, channels, ..] = h.dims();
    burn::Tensor::from_dispatch(<Dispatch as NormKernels>::rms_norm(
        h.into_dispatch(),
        gain.expand([batch, channels, 1, 1]).into_dispatch(),
        silu,
    ))
}
