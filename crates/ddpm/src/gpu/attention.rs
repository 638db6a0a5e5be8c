//! `Attention`'s core without gradients (sampling) as one cubecl kernel, one unit per image,
//! head and query pixel: its logits against the memory slots and every pixel's key, their
//! softmax, and the weighted sum of the values, in registers. As burn operations the core is
//! some twelve launches: copies of q, k and v out of the projection, the memory slots
//! concatenated in front of k and v, two products, a scaling and a softmax. The attention runs
//! at the U-Net's coarsest level only (7×7 for MNIST), where a unit's loop over all pixels is
//! short. Here too the extension trait both attentions' kernels share (the linear one's are in
//! [`super::linear_attention`]).

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Shape, backend_extension};
use burn_cubecl::CubeBackend;
use burn_cubecl::tensor::CubeTensor;
use cubecl::cube;
use cubecl::prelude::*;

use super::{empty_in_order_of, launch_size};

/// Where channel `c` of pixel `p` (of `width` per row) of image `b` lies in the 4-D tensor `t`,
/// read through its strides (channels-last or not).
#[cube]
pub(super) fn at(t: &Tensor<f32>, b: usize, c: usize, p: usize, width: usize) -> usize {
    b * t.stride(0) + c * t.stride(1) + (p / width) * t.stride(2) + (p % width) * t.stride(3)
}

/// `q · k_j / √dim_head` for the key `k` (its first channel at `k`, the next `step` apart in
/// `t`) and the query held in `q`.
#[cube]
fn logit(
    q: &Array<f32>,
    t: &Tensor<f32>,
    k: usize,
    step: usize,
    #[comptime] dim_head: usize,
) -> f32 {
    let mut dot = 0.0f32;
    #[unroll]
    for d in 0..dim_head {
        dot += q[d] * t[k + d * step];
    }
    dot
}

/// `out[b, head · dim_head + e, i] = Σ_j softmax_j(q_i · k_j / √dim_head) · v_j[e]` over the
/// memory slots and the pixels `j`, one unit per image, head and query pixel `i`.
#[cube(launch)]
fn attention_kernel(
    qkv: &Tensor<f32>,
    memory: &Tensor<f32>,
    out: &mut Tensor<f32>,
    #[comptime] dim_head: usize,
) {
    let (heads, slots) = (memory.shape(1), memory.shape(2));
    let (width, pixels) = (qkv.shape(3), qkv.shape(2) * qkv.shape(3));
    let i = ABSOLUTE_POS % pixels;
    let head = (ABSOLUTE_POS / pixels) % heads;
    let b = ABSOLUTE_POS / (pixels * heads);
    if b >= qkv.shape(0) {
        terminate!();
    }
    let hidden = heads * dim_head;
    let (q0, k0, v0) = (
        head * dim_head,
        hidden + head * dim_head,
        2 * hidden + head * dim_head,
    );
    // The query, scaled, in registers.
    let scale = 1.0f32 / f32::sqrt(f32::cast_from(dim_head));
    let mut q = Array::<f32>::new(dim_head);
    #[unroll]
    for d in 0..dim_head {
        q[d] = qkv[at(qkv, b, q0 + d, i, width)] * scale;
    }
    let (channel, slot) = (qkv.stride(1), memory.stride(2));
    let (k_slots, v_slots) = (
        head * memory.stride(1),
        memory.stride(0) + head * memory.stride(1),
    );
    // The maximum from the first slot: cubecl writes −∞ as `-Inf`, which WGSL does not know.
    let mut max = logit(&q, memory, k_slots, memory.stride(3), dim_head);
    for j in 1..slots {
        max = f32::max(
            max,
            logit(&q, memory, k_slots + j * slot, memory.stride(3), dim_head),
        );
    }
    for p in 0..pixels {
        max = f32::max(
            max,
            logit(&q, qkv, at(qkv, b, k0, p, width), channel, dim_head),
        );
    }
    let mut acc = Array::<f32>::new(dim_head);
    #[unroll]
    for e in 0..dim_head {
        acc[e] = 0.0f32;
    }
    let mut sum = 0.0f32;
    for j in 0..slots {
        let w = f32::exp(logit(&q, memory, k_slots + j * slot, memory.stride(3), dim_head) - max);
        sum += w;
        #[unroll]
        for e in 0..dim_head {
            acc[e] += w * memory[v_slots + j * slot + e * memory.stride(3)];
        }
    }
    for p in 0..pixels {
        let w = f32::exp(logit(&q, qkv, at(qkv, b, k0, p, width), channel, dim_head) - max);
        sum += w;
        let v = at(qkv, b, v0, p, width);
        #[unroll]
        for e in 0..dim_head {
            acc[e] += w * qkv[v + e * channel];
        }
    }
    let o = b * out.stride(0) + (i / width) * out.stride(2) + (i % width) * out.stride(3);
    let step = out.stride(1);
    #[unroll]
    for e in 0..dim_head {
        out[o + (q0 + e) * step] = acc[e] / sum;
    }
}

/// The sizes of an attention's output.
#[derive(Clone, Copy)]
pub(super) struct HeadSizes {
    pub batch: usize,
    pub heads: usize,
    pub dim_head: usize,
    pub pixels: usize,
}

/// The attentions' cores on burn's cubecl backends, without gradients: from the `to_qkv`
/// projection `qkv` `[batch, 3 · heads · dim_head, height, width]` and the memory slots
/// `memory` (keys, then values), the heads' outputs `[batch, heads · dim_head, height, width]`.
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
pub trait AttentionKernels: Backend {
    /// `Attention`'s, `memory` `[2, heads, slots, dim_head]`.
    #[fusion(dtype = qkv, shape = heads_shape(qkv))]
    fn attention(qkv: FloatTensor<Self>, memory: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `LinearAttention`'s (`super::linear_attention`), `memory` `[2, heads, dim_head, slots]`.
    #[fusion(dtype = qkv, shape = heads_shape(qkv))]
    fn linear_attention(qkv: FloatTensor<Self>, memory: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The heads' output shape for a projection of shape `qkv` (for fusion's stream).
#[cfg_attr(not(feature = "fusion"), allow(dead_code))]
fn heads_shape(qkv: &Shape) -> Shape {
    let mut shape = qkv.clone();
    shape[1] /= 3;
    shape
}

/// The heads' output for `qkv`, dense in the projection's memory order, which is what reads it
/// next (`to_out`), and its sizes (`None` when it is empty).
fn heads_output(
    qkv: &CubeTensor,
    heads: usize,
    dim_head: usize,
) -> (CubeTensor, Option<HeadSizes>) {
    let mut shape = qkv.meta.shape().to_vec();
    shape[1] = heads * dim_head;
    let (batch, pixels) = (shape[0], shape[2] * shape[3]);
    let out = empty_in_order_of(qkv, shape);
    let sizes = HeadSizes {
        batch,
        heads,
        dim_head,
        pixels,
    };
    (
        out,
        (batch * heads * dim_head * pixels > 0).then_some(sizes),
    )
}

impl AttentionKernels for CubeBackend {
    fn attention(qkv: CubeTensor, memory: CubeTensor) -> CubeTensor {
        let [_, heads, _, dim_head] = memory.meta.shape()[..] else {
            unreachable!("the memory slots are 4-D");
        };
        let (out, sizes) = heads_output(&qkv, heads, dim_head);
        if let Some(sizes) = sizes {
            let (count, dim) = launch_size(&qkv, sizes.batch * heads * sizes.pixels);
            attention_kernel::launch(
                &out.client,
                count,
                dim,
                qkv.into_tensor_arg(),
                memory.into_tensor_arg(),
                out.clone().into_tensor_arg(),
                dim_head,
            );
        }
        out
    }

    fn linear_attention(qkv: CubeTensor, memory: CubeTensor) -> CubeTensor {
        let [_, heads, dim_head, _] = memory.meta.shape()[..] else {
            unreachable!("the memory slots are 4-D");
        };
        let (out, sizes) = heads_output(&qkv, heads, dim_head);
        if let Some(sizes) = sizes {
            super::linear_attention::launch(qkv, memory, &out, sizes);
        }
        out
    }
}

/// `unet::ops::attention` through the kernel, on a cubecl device, without gradients.
pub fn attention(qkv: burn::Tensor<4>, memory: burn::Tensor<4>) -> burn::Tensor<4> {
    burn::Tensor::from_dispatch(<Dispatch as AttentionKernels>::attention(
        qkv.into_dispatch(),
        memory.into_dispatch(),
    ))
}

/// `unet::ops::linear_attention` through the kernels, on a cubecl device, without gradients.
pub fn linear_attention(qkv: burn::Tensor<4>, memory: burn::Tensor<4>) -> burn::Tensor<4> {
    burn::Tensor::from_dispatch(<Dispatch as AttentionKernels>::linear_attention(
        qkv.into_dispatch(),
        memory.into_dispatch(),
    ))
}
