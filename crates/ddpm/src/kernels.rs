//! The operations that have a kernel on both devices, as burn backend extensions: the CPU
//! kernels (`fused`, on flex) and the GPU kernels (`gpu`, on burn's cubecl backends) each
//! implement these traits, and burn's generated `Dispatch` routes a call to the one for the
//! tensor's device. Here too: their autodiff wiring, shared by both devices, and the calls
//! `unet::ops` makes. Either feature alone builds this module: the browser's WebGPU module has
//! the GPU kernels without flex.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::{DType, Tensor};

/// Whether a kernel can take `t`, on whichever device: `f32`, and with gradients only when the
/// backward passes (`autodiff` below, the `fused-autodiff` feature) are built in.
pub(crate) fn takes<const D: usize>(t: &Tensor<D>) -> bool {
    t.dtype() == DType::F32 && (cfg!(feature = "fused-autodiff") || !t.device().is_autodiff())
}

/// The operations with a kernel on both devices: the CPU kernel on flex (the `fused` feature)
/// and the GPU kernel on burn's cubecl backends (the `gpu-kernels` feature); with burn's
/// `fusion` (the `fusion` feature here) each GPU kernel is one opaque operation in fusion's
/// stream.
#[backend_extension(
    Flex: cfg(feature = "fused"),
    Cube: cfg(feature = "gpu-kernels"),
    Fusion: cfg(all(feature = "gpu-kernels", feature = "fusion")),
    Autodiff: cfg(feature = "fused-autodiff")
)]
pub trait SharedKernels: Backend {
    /// `silu(normalize(h) · a + s)` (`fused::norm_film_silu`); `h` is
    /// `[batch, channels, height, width]`, `a` and `s` are `[batch, channels, 1, 1]`.
    #[fusion(dtype = h, shape = h)]
    fn norm_film_silu(
        h: FloatTensor<Self>,
        a: FloatTensor<Self>,
        s: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// The softmax of `x` along `dim` (`fused::softmax`).
    #[fusion(dtype = x, shape = x)]
    fn fused_softmax(x: FloatTensor<Self>, dim: usize) -> FloatTensor<Self>;
}

/// The backward passes of [`SharedKernels`] on the backend an autodiff graph wraps (an
/// extension too, only so that fusion's implementation is generated).
#[backend_extension(
    Flex: cfg(feature = "fused"),
    Cube: cfg(feature = "gpu-kernels"),
    Fusion: cfg(all(feature = "gpu-kernels", feature = "fusion"))
)]
#[cfg_attr(not(feature = "fused-autodiff"), allow(dead_code))]
pub trait SharedKernelsBackward: Backend {
    /// The gradients for `h`, `a` and `s` given the output's gradient `g`.
    #[fusion(meta = |h, a, _s, _g| (h.clone(), a.clone(), a.clone()))]
    fn norm_film_silu_backward(
        h: FloatTensor<Self>,
        a: FloatTensor<Self>,
        s: FloatTensor<Self>,
        g: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// The input's gradient from the softmax's output `y` and its gradient `g`.
    #[fusion(dtype = y, shape = y)]
    fn fused_softmax_backward(
        y: FloatTensor<Self>,
        g: FloatTensor<Self>,
        dim: usize,
    ) -> FloatTensor<Self>;
}

#[cfg(feature = "fused-autodiff")]
pub(crate) mod autodiff {
    use burn::backend::autodiff::NodeId;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Autodiff, Backend};

    use super::{SharedKernels, SharedKernelsBackward};

    /// Registers each gradient with its parent node, where that parent is tracked.
    pub(crate) fn register<B: Backend, const N: usize>(
        grads: &mut Gradients,
        parents: [Option<NodeId>; N],
        gradients: [FloatTensor<B>; N],
    ) {
        for (parent, grad) in parents.into_iter().zip(gradients) {
            if let Some(id) = parent {
                grads.register::<B>(id, grad);
            }
        }
    }

    #[derive(Debug)]
    struct NormFilmSiluGrad;

    impl<B: SharedKernelsBackward> Backward<B, 3> for NormFilmSiluGrad {
        /// The inputs, kept by the checkpointer.
        type State = [NodeId; 3];

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, ck: &mut Checkpointer) {
            let g = grads.consume::<B>(&ops.node);
            let [h, a, s] = ops
                .state
                .map(|id| ck.retrieve_node_output::<FloatTensor<B>>(id));
            let parents = ops.parents.map(|p| p.map(|node| node.id));
            let (dh, da, ds) = B::norm_film_silu_backward(h, a, s, g);
            register::<B, 3>(grads, parents, [dh, da, ds]);
        }
    }

    #[derive(Debug)]
    struct SoftmaxGrad;

    impl<B: SharedKernelsBackward> Backward<B, 1> for SoftmaxGrad {
        /// The output and the axis.
        type State = (FloatTensor<B>, usize);

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let g = grads.consume::<B>(&ops.node);
            let (y, dim) = ops.state;
            if let [Some(node)] = ops.parents {
                grads.register::<B>(node.id, B::fused_softmax_backward(y, g, dim));
            }
        }
    }

    impl<B, C> SharedKernels for Autodiff<B, C>
    where
        B: SharedKernels + SharedKernelsBackward,
        C: CheckpointStrategy,
    {
        fn norm_film_silu(
            h: FloatTensor<Self>,
            a: FloatTensor<Self>,
            s: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            let prep = NormFilmSiluGrad.prepare::<C>([h.node(), a.node(), s.node()]);
            match prep.compute_bound().stateful() {
                OpsKind::Tracked(mut prep) => {
                    let state = [
                        prep.checkpoint(&h),
                        prep.checkpoint(&a),
                        prep.checkpoint(&s),
                    ];
                    let [h, a, s] = [h, a, s].map(|t| t.into_primitive());
                    prep.finish(state, B::norm_film_silu(h, a, s))
                }
                OpsKind::UnTracked(prep) => {
                    let [h, a, s] = [h, a, s].map(|t| t.into_primitive());
                    prep.finish(B::norm_film_silu(h, a, s))
                }
            }
        }

        fn fused_softmax(x: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
            match SoftmaxGrad
                .prepare::<C>([x.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let y = B::fused_softmax(x.into_primitive(), dim);
                    prep.finish((y.clone(), dim), y)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::fused_softmax(x.into_primitive(), dim)),
            }
        }
    }
}

/// `unet::ops::norm_film_silu` through the kernel: `a` and `s` (`None` for zero) are broadcast to
/// `[batch, channels, 1, 1]`.
pub(crate) fn norm_film_silu(h: Tensor<4>, a: Tensor<4>, s: Option<Tensor<4>>) -> Tensor<4> {
    let [batch, channels, ..] = h.dims();
    let small = [batch, channels, 1, 1];
    let s = match s {
        Some(s) => s.expand(small),
        None => Tensor::zeros(small, &h.device()),
    };
    Tensor::from_dispatch(<Dispatch as SharedKernels>::norm_film_silu(
        h.into_dispatch(),
        a.expand(small).into_dispatch(),
        s.into_dispatch(),
    ))
}

/// `unet::ops::softmax` through the kernel.
pub(crate) fn softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as SharedKernels>::fused_softmax(
        x.into_dispatch(),
        dim,
    ))
}
