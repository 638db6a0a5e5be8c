//! The U-Net's operations that have a fused CPU kernel: each runs the kernel (`crate::fused`)
//! where it applies — on burn's CPU backend (flex), `f32`, built with the `fused` features,
//! and for `norm_film_silu` and `softmax` also on a GPU with the `gpu-kernels` feature and
//! `DDPM_GPU_KERNELS=1` (`crate::gpu`) — and otherwise the composite of burn operations written
//! beside it, which is also the reference the kernels are tested against. The blocks read as
//! the math; this is the one place that chooses how it runs (as nanoGPT chooses its attention).

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::activation::softmax as burn_softmax;

#[cfg(feature = "fused")]
use crate::fused::extension;
#[cfg(any(feature = "fused", feature = "gpu-kernels"))]
use crate::kernels;

/// `silu(normalize(h) · g · √C · (1 + scale) + shift)`, lucidrains' `Block` after its
/// convolution, with `g` its RMSNorm's stored gain and `normalize` over the C channels (as
/// `F.normalize(h, dim = 1)`); without FiLM (`scale_shift = None`) `silu(normalize(h) · g · √C)`.
///
/// # Shapes
/// - `h` and the output: `[batch, channels, height, width]`; `g`: `[1, channels, 1, 1]`;
///   `scale` and `shift`: `[batch, channels, 1, 1]`
pub fn norm_film_silu(
    h: Tensor<4>,
    g: Tensor<4>,
    scale_shift: Option<(Tensor<4>, Tensor<4>)>,
) -> Tensor<4> {
    // Sampling on a GPU: one launch, the per-channel factor made in it.
    #[cfg(feature = "gpu-kernels")]
    if crate::gpu::applies_without_gradients(&h) {
        return crate::gpu::sampling_norm::stored_norm(h, g, scale_shift, true);
    }
    // The gain and the FiLM scale are both per channel: multiply them first, on the small
    // tensor, and apply the product once.
    let (a, s) = match scale_shift {
        Some((scale, shift)) => (gain(g) * scale.add_scalar(1.0), Some(shift)),
        None => (gain(g), None),
    };
    // Without FiLM the GPU's norm-then-SiLU kernel needs no zero shift (the CPU's takes one).
    #[cfg(feature = "gpu-kernels")]
    if s.is_none() && crate::gpu::applies(&h) {
        return crate::gpu::rms_norm::rms_norm_tensor(h, a, true);
    }
    #[cfg(any(feature = "fused", feature = "gpu-kernels"))]
    if kernels_apply(&h) || gpu_kernels_apply(&h) {
        return kernels::norm_film_silu(h, a, s);
    }
    norm_film_silu_composite(h, a, s)
}

/// lucidrains' RMSNorm's factor `g · √C` from its stored gain `g` `[1, C, 1, 1]`.
pub fn gain(g: Tensor<4>) -> Tensor<4> {
    let channels = g.dims()[1] as f32;
    g.mul_scalar(channels.sqrt())
}

/// [`norm_film_silu`] as burn operations, with the per-channel factor `a` and shift `s` (the
/// reference the fused kernel is tested against, and the path on every other device).
pub fn norm_film_silu_composite(h: Tensor<4>, a: Tensor<4>, s: Option<Tensor<4>>) -> Tensor<4> {
    let x = normalize(h) * a;
    silu(match s {
        Some(s) => x + s,
        None => x,
    })
}

/// lucidrains' `RMSNorm`: `normalize(x) · g · √C` with its stored gain `g`
/// (`[1, channels, 1, 1]`); in one GPU kernel (one more and a sum backward) where the core's
/// GPU kernels run.
pub fn rms_norm(x: Tensor<4>, g: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "gpu-kernels")]
    if crate::gpu::applies(&x) {
        if !x.device().is_autodiff() {
            return crate::gpu::sampling_norm::stored_norm(x, g, None, false);
        }
        return crate::gpu::rms_norm::rms_norm_tensor(x, gain(g), false);
    }
    normalize(x) * gain(g)
}

/// `F.normalize(x, dim = 1)`: `x / max(‖x‖₂, 1e-12)` over the channels, the core of lucidrains'
/// RMSNorm. It multiplies by the reciprocal of the (channel-reduced, so small) norm: a
/// full-size product has a cheaper backward pass than a full-size quotient.
///
/// # Shapes
/// - `x` and the output: `[batch, channels, height, width]`
pub fn normalize(x: Tensor<4>) -> Tensor<4> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12); // [b, 1, h, w]
    x * norm.recip()
}

/// The softmax of `x` along `dim` (burn's `softmax` where the kernel does not run).
pub fn softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    #[cfg(any(feature = "fused", feature = "gpu-kernels"))]
    if kernels_apply(&x) || gpu_kernels_apply(&x) {
        return kernels::softmax(x, dim);
    }
    burn_softmax(x, dim)
}

/// `conv.forward(x)`; through the kernel where it runs and `conv` is a same convolution with a
/// kernel larger than 1×1 ([`is_same_conv`]). 1×1 convolutions keep burn's own path (a plain
/// matrix product, see `blocks::pointwise`).
pub fn same_conv(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    // Training on a GPU with `DDPM_HALF_CONVS=1`: in f16, the result back in f32.
    #[cfg(feature = "gpu-kernels")]
    if conv.kernel_size[0] > 1 && is_same_conv(conv) && crate::gpu::mixed_precision::applies(&x) {
        return crate::gpu::mixed_precision::same_conv(conv, x);
    }
    #[cfg(feature = "fused")]
    if conv.kernel_size[0] > 1 && is_same_conv(conv) && extension::applies(&x) {
        let bias = conv.bias.as_ref().map(|b| b.val());
        return extension::same_conv(x, conv.weight.val(), bias);
    }
    conv.forward(x)
}

/// Whether `conv` is a "same" convolution: square odd kernel `k`, stride 1, no dilation, one
/// group, padding `k / 2` on every side.
pub fn is_same_conv(conv: &Conv2d) -> bool {
    let [k, kw] = conv.kernel_size;
    let p = k / 2;
    let padded = match conv.padding {
        PaddingConfig2d::Same => true,
        PaddingConfig2d::Valid => p == 0,
        PaddingConfig2d::Explicit(top, left, bottom, right) => [top, left, bottom, right] == [p; 4],
    };
    k == kw
        && k % 2 == 1
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && padded
}

/// `Tensor::cat(parts, 1)`, the skip connections' concatenation along the channels. Where the
/// core's GPU kernels run its memory is channels-last, as burn's GPU convolutions read their
/// inputs: the two that read it (the block's 3×3 and its residual 1×1) would otherwise each
/// copy it into that order first.
pub fn cat_channels(parts: Vec<Tensor<4>>) -> Tensor<4> {
    #[cfg(feature = "gpu-kernels")]
    if parts.first().is_some_and(crate::gpu::applies) {
        let last = parts.into_iter().map(|p| p.permute([0, 2, 3, 1])).collect();
        return Tensor::cat(last, 3).permute([0, 3, 1, 2]);
    }
    Tensor::cat(parts, 1)
}

/// `LinearAttention`'s core, between its two projections: from the `to_qkv` projection `qkv`
/// `[batch, 3 · heads · dim_head, h, w]` and the memory slots `memory`
/// `[2, heads, dim_head, slots]` (keys, then values), the heads' outputs
/// `[batch, heads · dim_head, h, w]`. Through the kernel (`fused::linear_attention` on the
/// CPU, `gpu::linear_attention` on a GPU) where the kernels run and no gradients are recorded
/// (it has no backward pass).
pub fn linear_attention(qkv: Tensor<4>, memory: Tensor<4>, heads: usize) -> Tensor<4> {
    #[cfg(feature = "gpu-kernels")]
    if crate::gpu::applies_without_gradients(&qkv) {
        return crate::gpu::attention::linear_attention(qkv, memory);
    }
    #[cfg(feature = "fused")]
    if extension::applies(&qkv) && !qkv.device().is_autodiff() {
        return extension::linear_attention(qkv, memory, heads);
    }
    linear_attention_composite(qkv, memory, heads)
}

/// [`linear_attention`] as burn operations: q, k and v of `[batch, heads, dim_head, h·w]`, the
/// memory slots in front of k and v, `context = softmax(k) · vᵀ · scale` and
/// `out = contextᵀ · softmax(q)` (the reference the kernel is tested against).
pub fn linear_attention_composite(qkv: Tensor<4>, memory: Tensor<4>, heads: usize) -> Tensor<4> {
    let [b, _, h, w] = qkv.dims();
    let d = memory.dims()[2];
    let qkv = qkv.reshape([b, 3, heads, d, h * w]);
    let part = |i: usize| qkv.clone().narrow(1, i, 1).reshape([b, heads, d, h * w]);
    let k = Tensor::cat(vec![memory_slots(&memory, 0, b), part(1)], 3);
    let v = Tensor::cat(vec![memory_slots(&memory, 1, b), part(2)], 3);
    linear_attention_heads(part(0), k, v).reshape([b, heads * d, h, w])
}

/// The heads' outputs `contextᵀ · softmax_d(q)` `[batch, heads, dim_head, n]`, with
/// `context = softmax_j(k) · vᵀ · dim_head^(−1/2)`, for q `[batch, heads, dim_head, n]` and k, v
/// `[batch, heads, dim_head, j]` (memory slots included), as burn operations and [`softmax`].
pub fn linear_attention_heads(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let scale = (q.dims()[2] as f32).powf(-0.5);
    let context = softmax(k, 3).matmul(v.swap_dims(2, 3)).mul_scalar(scale);
    context.swap_dims(2, 3).matmul(softmax(q, 2))
}

/// `Attention`'s core, between its two projections, without gradients: from the `to_qkv`
/// projection `qkv` `[batch, 3 · heads · dim_head, h, w]` and the memory slots `memory`
/// `[2, heads, slots, dim_head]` (keys, then values), the heads' outputs
/// `[batch, heads · dim_head, h, w]`. Through the kernel (`gpu::attention`) where the GPU
/// kernels run.
pub fn attention(qkv: Tensor<4>, memory: Tensor<4>, heads: usize) -> Tensor<4> {
    #[cfg(feature = "gpu-kernels")]
    if crate::gpu::applies_without_gradients(&qkv) {
        return crate::gpu::attention::attention(qkv, memory);
    }
    attention_composite(qkv, memory, heads)
}

/// [`attention`] as burn operations: q, k and v of `[batch, heads, h·w, dim_head]` out of the
/// projection, then [`attention_heads`] (the reference the kernel is tested against).
pub fn attention_composite(qkv: Tensor<4>, memory: Tensor<4>, heads: usize) -> Tensor<4> {
    let [b, channels, h, w] = qkv.dims();
    let dim_head = channels / 3 / heads;
    let to_heads = |part: Tensor<4>| {
        part.reshape([b, heads, dim_head, h * w]).swap_dims(2, 3) // [b, heads, n, d]
    };
    let [q, k, v] = [0, 1, 2].map(|i| {
        to_heads(
            qkv.clone()
                .narrow(1, i * heads * dim_head, heads * dim_head),
        )
    });
    attention_heads(q, k, v, memory)
        .swap_dims(2, 3)
        .reshape([b, heads * dim_head, h, w])
}

/// `softmax(q · kᵀ / √dim_head) · v` per head, the memory slots `memory`
/// `[2, heads, slots, dim_head]` (keys, then values) in front of k and v; q, k, v and the
/// output `[batch, heads, n, dim_head]`.
pub fn attention_heads(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, memory: Tensor<4>) -> Tensor<4> {
    let [b, _, _, dim_head] = q.dims();
    let k = Tensor::cat(vec![memory_slots(&memory, 0, b), k], 2);
    let v = Tensor::cat(vec![memory_slots(&memory, 1, b), v], 2);
    let sim = q
        .matmul(k.swap_dims(2, 3))
        .mul_scalar((dim_head as f32).powf(-0.5)); // [b, heads, n, m + n]
    softmax(sim, 3).matmul(v)
}

/// One half of the attentions' memory slots `memory` `[2, heads, ·, ·]` (`0` for the keys, `1`
/// for the values), repeated over `batch` images: `[batch, heads, ·, ·]`.
pub fn memory_slots(memory: &Tensor<4>, which: usize, batch: usize) -> Tensor<4> {
    let [_, heads, a, b] = memory.dims();
    memory
        .clone()
        .narrow(0, which, 1)
        .expand([batch, heads, a, b])
}

/// Whether the GPU kernels (`crate::gpu`) run for tensors like `t`.
#[cfg(any(feature = "fused", feature = "gpu-kernels"))]
fn gpu_kernels_apply<const D: usize>(t: &Tensor<D>) -> bool {
    #[cfg(feature = "gpu-kernels")]
    return crate::gpu::applies(t);
    #[cfg(not(feature = "gpu-kernels"))]
    {
        let _ = t;
        false
    }
}

/// Whether the kernels run for tensors like `t` (on flex, `f32`, built with the features).
pub fn kernels_apply<const D: usize>(t: &Tensor<D>) -> bool {
    #[cfg(feature = "fused")]
    return extension::applies(t);
    #[cfg(not(feature = "fused"))]
    {
        let _ = t;
        false
    }
}
