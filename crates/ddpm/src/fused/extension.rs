//! The kernels as a burn backend extension: the flex backend's implementations of the shared
//! traits (`crate::kernels`) and of the CPU's own, and, with hand-written backward passes, the
//! CPU's own for autodiff over it. burn's generated `Dispatch` routes a call to them;
//! `unet::ops` calls [`CpuKernels`] only for tensors on flex (another backend would panic).

use std::borrow::Cow;

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, DispatchDevice, Flex, backend_extension};
use burn::tensor::{Tensor, TensorData};

use crate::kernels::{SharedKernels, SharedKernelsBackward};

use super::conv::{self, ConvDims};
use super::linear_attention::{self as la, HeadDims};
use super::norm_film_silu::{self as nfs, Dims};
use super::softmax::{self as sm, Axis};

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
mod autodiff {
    use burn::backend::autodiff::NodeId;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Autodiff, AutodiffBackend};

    use super::{CpuKernels, CpuKernelsBackward};
    use crate::kernels::autodiff::register;

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
    let on_flex = matches!(
        t.device().as_dispatch().clone().inner(),
        DispatchDevice::Flex(_)
    );
    on_flex && crate::kernels::takes(t)
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
