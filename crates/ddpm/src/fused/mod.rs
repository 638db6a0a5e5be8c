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
//! - [`conv`]: the 3×3 (and 7×7) convolutions with "same" padding, as one matrix product
//!   over a patch matrix built from the NCHW input (through [`gemm`]);
//! - [`linear_attention`]: `LinearAttention` between its two projections, while sampling (no
//!   backward pass; training keeps burn's operations and [`softmax`]).
//!
//! This module holds kernels only and knows nothing of the model: the U-Net asks its own
//! `unet::ops` for each operation, which runs the kernel where it applies (on flex, `f32`,
//! built with the features) and burn's composite everywhere else. Features: `fused` (the
//! forward kernels on flex), `fused-autodiff` (their backward passes, for training),
//! `fused-rayon` (one image or row block per core, and gemm's own threads for a batch smaller
//! than the core count).

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
pub mod exp;
#[cfg(feature = "fused")]
pub(crate) mod extension;
#[cfg(feature = "fused")]
pub mod gemm;
#[cfg(feature = "fused")]
pub mod linear_attention;
pub mod norm_film_silu;
pub mod softmax;
#[cfg(test)]
mod tests;
