//! The kernels as a burn backend extension: implemented for the flex backend and, with
//! hand-written backward passes, for autodiff over it. burn's generated `Dispatch` routes a call
//! to them; `unet::ops` calls them only for tensors on flex (another backend would panic), and
//! [`SharedKernels`] also on burn's cubecl backends, where the GPU kernels' module implements
//! them (this module does not know that one).

use std::borrow::Cow;

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, DispatchDevice, Flex, backend_extension};
use burn::tensor::{DType, Tensor, TensorData};

use super::conv::{self, ConvDims};
use super::linear_attention::{self as la, HeadDims};
use super::norm_film_silu::{self as nfs, Dims};
use super::softmax::{self as sm, Axis};

/// The operations with a kernel on both devices: the CPU kernel on flex and, with the
/// `gpu-kernels` feature, the GPU kernel (the `gpu` module) on burn's cubecl backends; with
/// burn's `fusion` (the `fusion` feature here) each GPU kernel is one opaque operation in
/// fusion's stream.
#[backend_extension(
    Flex,
    Cube: cfg(feature = "gpu-kernels"),
    Fusion: cfg(all(feature = "gpu-kernels", feature = "fusion")),
    Autodiff: cfg(feature = "fused-autodiff")
)]
pub trait SharedKernels: Backend {
    /// `silu(normalize(h) · a + s)` ([`nfs::norm_film_silu`]); `h` is
    /// `[batch, channels, height, width]`, `a` and `s` are `[batch, channels, 1, 1]`.
    #[fusion(dtype = h, shape = h)]
    fn norm_film_silu(
        h: FloatTensor<Self>,
        a: FloatTensor<Self>,
        s: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// The softmax of `x` along `dim` ([`sm::softmax`]).
    #[fusion(dtype = x, shape = x)]
    fn fused_softmax(x: FloatTensor<Self>, dim: usize) -> FloatTensor<Self>;
}

/// The backward passes of [`SharedKernels`] on the backend an autodiff graph wraps (an
/// extension too, only so that fusion's implementation is generated).
#[backend_extension(
    Flex,
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

/// The CPU's other fused operations.
#[backend_extension(Flex, Autodiff: cfg(feature = "fused-autodiff"))]
pub trait CpuKernels: Backend {
    /// A same convolution ([`conv`]) of `x` `[batch, channels, height, width]` with `weight`
    /// `[outputs, channels, k, k]` (odd `k`) and `bias` `[outputs]`.
    fn same_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// `LinearAttention`'s core ([`la::linear_attention`]) from the `to_qkv` projection `qkv`
    /// `[batch, 3 · heads · dim_head, height, width]` and the memory slots `memory`
    /// `[2, heads, dim_head, slots]`: `[batch, heads · dim_head, height, width]`. No backward
    /// pass: for tensors without gradients only.
    fn linear_attention(
        qkv: FloatTensor<Self>,
        memory: FloatTensor<Self>,
        heads: usize,
    ) -> FloatTensor<Self>;
}

/// The backward passes of [`CpuKernels`] on the backend an autodiff graph wraps (used with
/// `fused-autodiff` only).
#[cfg_attr(not(feature = "fused-autodiff"), allow(dead_code))]
pub trait CpuKernelsBackward: Backend {
    /// The gradients for `x`, `weight` and the bias of [`CpuKernels::same_conv`] given the
    /// output's gradient `g`.
    fn same_conv_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        g: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3];
}

/// A flex tensor's values as `f32` in row-major order, borrowed when they already are.
fn values(t: &FlexTensor) -> Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(values) => Cow::Borrowed(values),
        None => Cow::Owned(
            t.clone()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("converted to f32"),
        ),
    }
}

fn shape(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().to_vec()
}

fn tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn image_dims(shape: &[usize]) -> Dims {
    Dims {
        channels: shape.get(1).copied().unwrap_or(1),
        pixels: shape.iter().skip(2).product(),
    }
}

/// The sizes of a same convolution of `x` with `weight`, and its number of outputs.
fn conv_dims(x: &FlexTensor, weight: &FlexTensor) -> (usize, ConvDims, usize) {
    let (x, w) = (shape(x), shape(weight));
    let dims = ConvDims {
        channels: x[1],
        height: x[2],
        width: x[3],
        kernel: w[2],
    };
    (x[0], dims, w[0])
}

impl SharedKernels for Flex {
    fn norm_film_silu(h: FlexTensor, a: FlexTensor, s: FlexTensor) -> FlexTensor {
        let shape = shape(&h);
        let y = nfs::norm_film_silu(&values(&h), &values(&a), &values(&s), image_dims(&shape));
        tensor(y, shape)
    }

    fn fused_softmax(x: FlexTensor, dim: usize) -> FlexTensor {
        let shape = shape(&x);
        tensor(sm::softmax(&values(&x), Axis::of(&shape, dim)), shape)
    }
}

impl SharedKernelsBackward for Flex {
    fn norm_film_silu_backward(
        h: FlexTensor,
        a: FlexTensor,
        s: FlexTensor,
        g: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (shape, small) = (self::shape(&h), self::shape(&a));
        let (h, a, s, g) = (values(&h), values(&a), values(&s), values(&g));
        let (dh, da, ds) = nfs::norm_film_silu_backward(&h, &a, &s, &g, image_dims(&shape));
        (
            tensor(dh, shape),
            tensor(da, small.clone()),
            tensor(ds, small),
        )
    }

    fn fused_softmax_backward(y: FlexTensor, g: FlexTensor, dim: usize) -> FlexTensor {
        let shape = shape(&y);
        let dx = sm::softmax_backward(&values(&y), &values(&g), Axis::of(&shape, dim));
        tensor(dx, shape)
    }
}

impl CpuKernels for Flex {
    fn same_conv(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        let (batch, d, outputs) = conv_dims(&x, &weight);
        let y = conv::same_conv(&values(&x), &values(&weight), &values(&bias), d);
        tensor(y, vec![batch, outputs, d.height, d.width])
    }

    fn linear_attention(qkv: FlexTensor, memory: FlexTensor, heads: usize) -> FlexTensor {
        let (mut out_shape, slots) = (shape(&qkv), shape(&memory));
        let dims = HeadDims {
            heads,
            dim_head: slots[2],
            pixels: out_shape[2..].iter().product(),
            memory: slots[3],
        };
        out_shape[1] = heads * dims.dim_head;
        tensor(
            la::linear_attention(&values(&qkv), &values(&memory), dims),
            out_shape,
        )
    }
}

impl CpuKernelsBackward for Flex {
    fn same_conv_backward(x: FlexTensor, weight: FlexTensor, g: FlexTensor) -> [FlexTensor; 3] {
        let (_, d, outputs) = conv_dims(&x, &weight);
        let (dx, dw, db) = conv::same_conv_backward(&values(&x), &values(&weight), &values(&g), d);
        [
            tensor(dx, shape(&x)),
            tensor(dw, shape(&weight)),
            tensor(db, vec![outputs]),
        ]
    }
}

#[cfg(feature = "fused-autodiff")]
pub(crate) mod autodiff {
    use burn::backend::autodiff::NodeId;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Autodiff, AutodiffBackend, Backend};

    use super::{CpuKernels, CpuKernelsBackward, SharedKernels, SharedKernelsBackward};

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

    #[derive(Debug)]
    struct SameConvGrad;

    impl<B: CpuKernelsBackward> Backward<B, 3> for SameConvGrad {
        /// The input and the weight, kept by the checkpointer.
        type State = [NodeId; 2];

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, ck: &mut Checkpointer) {
            let g = grads.consume::<B>(&ops.node);
            let [x, weight] = ops
                .state
                .map(|id| ck.retrieve_node_output::<FloatTensor<B>>(id));
            let parents = ops.parents.map(|p| p.map(|node| node.id));
            register::<B, 3>(grads, parents, B::same_conv_backward(x, weight, g));
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

    impl<B, C> CpuKernels for Autodiff<B, C>
    where
        B: CpuKernels + CpuKernelsBackward,
        C: CheckpointStrategy,
    {
        fn same_conv(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            let prep = SameConvGrad.prepare::<C>([x.node(), weight.node(), bias.node()]);
            match prep.compute_bound().stateful() {
                OpsKind::Tracked(mut prep) => {
                    let state = [prep.checkpoint(&x), prep.checkpoint(&weight)];
                    let [x, w, b] = [x, weight, bias].map(|t| t.into_primitive());
                    prep.finish(state, B::same_conv(x, w, b))
                }
                OpsKind::UnTracked(prep) => {
                    let [x, w, b] = [x, weight, bias].map(|t| t.into_primitive());
                    prep.finish(B::same_conv(x, w, b))
                }
            }
        }

        fn linear_attention(
            qkv: FloatTensor<Self>,
            memory: FloatTensor<Self>,
            heads: usize,
        ) -> FloatTensor<Self> {
            assert!(
                !qkv.is_tracked() && !memory.is_tracked(),
                "linear_attention has no backward pass: call it without gradients"
            );
            let (qkv, memory) = (qkv.into_primitive(), memory.into_primitive());
            Self::from_inner(B::linear_attention(qkv, memory, heads))
        }
    }
}

/// Whether the kernels run for `t`: on flex, in `f32`, and with gradients only when their
/// backward passes are built in.
pub(crate) fn applies<const D: usize>(t: &Tensor<D>) -> bool {
    let device = t.device();
    let on_flex = matches!(
        device.as_dispatch().clone().inner(),
        DispatchDevice::Flex(_)
    );
    on_flex
        && t.dtype() == DType::F32
        && (cfg!(feature = "fused-autodiff") || !device.is_autodiff())
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

/// `unet::ops::same_conv` through the kernel (`bias = None`: zero).
pub(crate) fn same_conv(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
    let bias = bias.unwrap_or_else(|| Tensor::zeros([weight.dims()[0]], &x.device()));
    Tensor::from_dispatch(<Dispatch as CpuKernels>::same_conv(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    ))
}

/// `unet::ops::linear_attention` through the kernel.
pub(crate) fn linear_attention(qkv: Tensor<4>, memory: Tensor<4>, heads: usize) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as CpuKernels>::linear_attention(
        qkv.into_dispatch(),
        memory.into_dispatch(),
        heads,
    ))
}
