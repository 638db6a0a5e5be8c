//! `LinearAttention`'s core without gradients (sampling) as two cubecl kernels, the GPU's
//! counterpart of the CPU's `crate::fused::linear_attention` (which documents the math). As
//! burn operations the core is some thirteen launches: copies of q, k and v out of the
//! projection, the memory slots concatenated in front of k and v, two softmaxes, two products
//! and a scaling. Here one launch makes each head's context, one unit per row, and one more
//! the output, one unit per pixel and head, each exponential once and the rows in registers;
//! both read q, k and v through the projection's strides and the memory slots where they lie.

use burn_cubecl::tensor::CubeTensor;
use cubecl::cube;
use cubecl::prelude::*;

use super::attention::{HeadSizes, at};
use super::{empty_contiguous, launch_size};

/// `context[b, head, d, e] = dim_head^(−1/2) · Σ_j softmax_j(k)[d, j] · v[e, j]` over the memory
/// slots and the pixels `j`, one unit per row `d` (each exponential once, the row's entries in
/// registers); `context` is contiguous `[batch, heads, dim_head, dim_head]`.
#[cube(launch)]
fn context_kernel(
    qkv: &Tensor<f32>,
    memory: &Tensor<f32>,
    context: &mut Tensor<f32>,
    #[comptime] dim_head: usize,
) {
    let (heads, slots) = (memory.shape(1), memory.shape(3));
    let (width, pixels) = (qkv.shape(3), qkv.shape(2) * qkv.shape(3));
    let d = ABSOLUTE_POS % dim_head;
    let head = (ABSOLUTE_POS / dim_head) % heads;
    let b = ABSOLUTE_POS / (dim_head * heads);
    if b >= qkv.shape(0) {
        terminate!();
    }
    let hidden = heads * dim_head;
    let (k, v) = (hidden + head * dim_head + d, 2 * hidden + head * dim_head);
    let (slot, channel) = (memory.stride(3), qkv.stride(1));
    let k_slots = head * memory.stride(1) + d * memory.stride(2);
    let v_slots = memory.stride(0) + head * memory.stride(1);
    // The maximum from the first slot: cubecl writes −∞ as `-Inf`, which WGSL does not know.
    let mut max = memory[k_slots];
    for j in 1..slots {
        max = f32::max(max, memory[k_slots + j * slot]);
    }
    for p in 0..pixels {
        max = f32::max(max, qkv[at(qkv, b, k, p, width)]);
    }
    let mut row = Array::<f32>::new(dim_head);
    #[unroll]
    for e in 0..dim_head {
        row[e] = 0.0f32;
    }
    let mut sum = 0.0f32;
    for j in 0..slots {
        let w = f32::exp(memory[k_slots + j * slot] - max);
        sum += w;
        #[unroll]
        for e in 0..dim_head {
            row[e] += w * memory[v_slots + e * memory.stride(2) + j * slot];
        }
    }
    for p in 0..pixels {
        let w = f32::exp(qkv[at(qkv, b, k, p, width)] - max);
        sum += w;
        let at_v = at(qkv, b, v, p, width);
        #[unroll]
        for e in 0..dim_head {
            row[e] += w * qkv[at_v + e * channel];
        }
    }
    let r = 1.0f32 / (sum * f32::sqrt(f32::cast_from(dim_head)));
    #[unroll]
    for e in 0..dim_head {
        context[ABSOLUTE_POS * dim_head + e] = row[e] * r;
    }
}

/// `out[b, head · dim_head + e, p] = Σ_d context[b, head, d, e] · softmax_d(q)[d, p]`, one unit
/// per image, head and pixel, the softmax in registers.
#[cube(launch)]
fn output_kernel(
    qkv: &Tensor<f32>,
    context: &Tensor<f32>,
    out: &mut Tensor<f32>,
    #[comptime] dim_head: usize,
) {
    let heads = context.shape(1);
    let (width, pixels) = (qkv.shape(3), qkv.shape(2) * qkv.shape(3));
    let p = ABSOLUTE_POS % pixels;
    let head = (ABSOLUTE_POS / pixels) % heads;
    let b = ABSOLUTE_POS / (pixels * heads);
    if b >= qkv.shape(0) {
        terminate!();
    }
    let q = at(qkv, b, head * dim_head, p, width);
    let channel = qkv.stride(1);
    let mut weights = Array::<f32>::new(dim_head);
    let mut max = qkv[q];
    #[unroll]
    for d in 1..dim_head {
        max = f32::max(max, qkv[q + d * channel]);
    }
    let mut sum = 0.0f32;
    #[unroll]
    for d in 0..dim_head {
        let w = f32::exp(qkv[q + d * channel] - max);
        weights[d] = w;
        sum += w;
    }
    let rows = (b * heads + head) * dim_head * dim_head;
    let at_out = b * out.stride(0) + (p / width) * out.stride(2) + (p % width) * out.stride(3);
    let step = out.stride(1);
    #[unroll]
    for e in 0..dim_head {
        let mut acc = 0.0f32;
        #[unroll]
        for d in 0..dim_head {
            acc += context[rows + d * dim_head + e] * weights[d];
        }
        out[at_out + (head * dim_head + e) * step] = acc / sum;
    }
}

/// Runs the kernels: the heads' outputs of `qkv` into `out` (see
/// [`super::attention::AttentionKernels::linear_attention`]), for `heads` heads of `dim_head`
/// over `batch` images.
pub(super) fn launch(qkv: CubeTensor, memory: CubeTensor, out: &CubeTensor, sizes: HeadSizes) {
    let HeadSizes {
        batch,
        heads,
        dim_head,
        pixels,
    } = sizes;
    let context = empty_contiguous(&qkv, vec![batch, heads, dim_head, dim_head]);
    let client = qkv.client.clone();
    let (count, dim) = launch_size(&qkv, batch * heads * dim_head);
    context_kernel::launch(
        &client,
        count,
        dim,
        qkv.clone().into_tensor_arg(),
        memory.into_tensor_arg(),
        context.clone().into_tensor_arg(),
        dim_head,
    );
    let (count, dim) = launch_size(&qkv, batch * heads * pixels);
    output_kernel::launch(
        &client,
        count,
        dim,
        qkv.into_tensor_arg(),
        context.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        dim_head,
    );
}
