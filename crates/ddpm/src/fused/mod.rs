//! Fused CPU kernels. On burn's CPU backend (flex) a chain of element-wise operations costs a
//! pass over memory (and, in training, a saved intermediate and more passes backward) for each
//! operation, mostly on one core, and a convolution converts its input to NHWC on one core and
//! runs its backward pass as a transposed convolution. The chains the U-Net runs on every
//! activation are written here as one pass each, and its convolutions as one matrix product
//! per image, through burn's backend-extension API, with hand-written backward passes for
//! autodiff:
//!
//! - [`norm_film_silu`]: a `Block`'s RMSNorm, FiLM scale and shift, and SiLU;
//! - [`softmax`]: the attentions' softmax along one axis;
//! - [`same_conv`]: the 3×3 (and 7×7) convolutions with "same" padding, as one matrix product
//!   over a patch matrix built from the NCHW input ([`conv`], through [`gemm`]);
//! - [`linear_attention`]: `LinearAttention` between its two projections, while sampling (no
//!   backward pass; training keeps burn's operations and [`softmax`]).
//!
//! Features: `fused` (the forward kernels on flex), `fused-autodiff` (their backward passes,
//! for training), `fused-rayon` (one image or row block per core, and gemm's own threads for a
//! batch smaller than the core count). Other devices (wgpu), other dtypes and builds without
//! the features run the same functions as burn operations.

#[cfg(feature = "fused-rayon")]
macro_rules! chunks_mut {
    ($slice:expr, $len:expr) => {
        rayon::slice::ParallelSliceMut::par_chunks_mut($slice, $len)
    };
}
#[cfg(not(feature = "fused-rayon"))]
macro_rules! chunks_mut {
    ($slice:expr, $len:expr) => {
        $slice.chunks_mut($len)
    };
}
#[cfg(feature = "fused-rayon")]
macro_rules! chunks {
    ($slice:expr, $len:expr) => {
        rayon::slice::ParallelSlice::par_chunks($slice, $len)
    };
}
#[cfg(not(feature = "fused-rayon"))]
macro_rules! chunks {
    ($slice:expr, $len:expr) => {
        $slice.chunks($len)
    };
}

/// A kernel's loop body, for [`simd`].
pub(crate) trait Kernel {
    type Output;
    /// The body; marked `#[inline(always)]`, as everything it calls in its loops.
    fn run(self) -> Self::Output;
}

/// Runs `kernel` compiled for the widest vector instructions the CPU has, chosen at run time
/// by pulp (the gemm crate's dispatch): AVX2 and FMA on most x86-64 machines, where the
/// build's baseline is SSE2, so the loops vectorise at twice the width. The body must inline
/// into pulp's target-feature function, which a closure's body does not (its loops stayed
/// SSE2): hence a type with an `#[inline(always)]` method. Without the `fused` feature (no
/// pulp): `kernel.run()`.
#[inline(always)]
pub(crate) fn simd<K: Kernel>(kernel: K) -> K::Output {
    #[cfg(feature = "fused")]
    return pulp::Arch::new().dispatch(Dispatched(kernel));
    #[cfg(not(feature = "fused"))]
    kernel.run()
}

#[cfg(feature = "fused")]
struct Dispatched<K>(K);

#[cfg(feature = "fused")]
impl<K: Kernel> pulp::WithSimd for Dispatched<K> {
    type Output = K::Output;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> K::Output {
        self.0.run()
    }
}

#[cfg(feature = "fused")]
pub mod conv;
#[cfg(all(test, feature = "fused"))]
mod conv_tests;
pub mod exp;
#[cfg(feature = "fused")]
mod extension;
#[cfg(feature = "fused")]
pub mod gemm;
#[cfg(feature = "fused")]
pub mod linear_attention;
#[cfg(all(test, feature = "fused"))]
mod linear_attention_tests;
pub mod norm_film_silu;
pub mod softmax;
#[cfg(test)]
mod tests;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::activation::softmax as burn_softmax;

use crate::unet::RmsNorm;

/// `silu(normalize(h) · gain · (1 + scale) + shift)`, lucidrains' `Block` after its convolution
/// (`normalize` over the channels, as `F.normalize(h, dim = 1)`); without FiLM
/// (`scale_shift = None`) `silu(normalize(h) · gain)`.
///
/// # Shapes
/// - `h` and the output: `[batch, channels, height, width]`; `gain`: `[1, channels, 1, 1]`;
///   `scale` and `shift`: `[batch, channels, 1, 1]`
pub fn norm_film_silu(
    h: Tensor<4>,
    gain: Tensor<4>,
    scale_shift: Option<(Tensor<4>, Tensor<4>)>,
) -> Tensor<4> {
    // The gain and the FiLM scale are both per channel: multiply them first, on the small
    // tensor, and apply the product once.
    let (a, s) = match scale_shift {
        Some((scale, shift)) => (gain * scale.add_scalar(1.0), Some(shift)),
        None => (gain, None),
    };
    #[cfg(feature = "fused")]
    if extension::applies(&h) {
        return extension::norm_film_silu(h, a, s);
    }
    norm_film_silu_composite(h, a, s)
}

/// [`norm_film_silu`] as burn operations, with the per-channel factor `a` and shift `s` (the
/// reference the fused kernel is tested against, and the path on every other device).
pub fn norm_film_silu_composite(h: Tensor<4>, a: Tensor<4>, s: Option<Tensor<4>>) -> Tensor<4> {
    let x = RmsNorm::normalize(h) * a;
    silu(match s {
        Some(s) => x + s,
        None => x,
    })
}

/// The softmax of `x` along `dim` (burn's `softmax` where the kernel does not run).
pub fn softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    #[cfg(feature = "fused")]
    if extension::applies(&x) {
        return extension::softmax(x, dim);
    }
    burn_softmax(x, dim)
}

/// `conv.forward(x)`; through the kernel where it runs and `conv` is a same convolution with a
/// kernel larger than 1×1 ([`is_same_conv`]). 1×1 convolutions keep burn's own path (a plain
/// matrix product, see `unet::blocks::pointwise`).
pub fn same_conv(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
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

/// `LinearAttention`'s core, between its two projections: from the `to_qkv` projection `qkv`
/// `[batch, 3 · heads · dim_head, h, w]` and the memory slots `memory`
/// `[2, heads, dim_head, slots]` (keys, then values), the heads' outputs
/// `[batch, heads · dim_head, h, w]`. Through the kernel ([`linear_attention::linear_attention`])
/// where the kernels run and no gradients are recorded (it has no backward pass).
pub fn linear_attention(qkv: Tensor<4>, memory: Tensor<4>, heads: usize) -> Tensor<4> {
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
    let [_, _, d, m] = memory.dims();
    let qkv = qkv.reshape([b, 3, heads, d, h * w]);
    let part = |i: usize| qkv.clone().narrow(1, i, 1).reshape([b, heads, d, h * w]);
    let slots = |i: usize| memory.clone().narrow(0, i, 1).expand([b, heads, d, m]);
    let k = Tensor::cat(vec![slots(0), part(1)], 3);
    let v = Tensor::cat(vec![slots(1), part(2)], 3);
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
