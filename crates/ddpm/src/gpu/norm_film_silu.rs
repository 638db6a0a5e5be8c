//! `Block`'s RMSNorm, FiLM and SiLU as cubecl kernels, one unit of work per pixel: it reads
//! the pixel's channels twice (their norm, then the output), where burn's composite runs some
//! ten kernels forward and more backward, each a full pass over the activation. The math is
//! the CPU kernel's (`crate::fused::norm_film_silu`), which documents it.

use burn::backend::ops::FloatTensorOps;
use burn_cubecl::CubeBackend;
use burn_cubecl::tensor::CubeTensor;
use cubecl::cube;
use cubecl::prelude::*;

use super::{empty_contiguous, empty_like, launch_size};

/// `F.normalize`'s floor on the norm.
const NORM_FLOOR: f32 = 1e-12;

/// Where pixel `p` (of `width` per row) of image `b` starts in the 4-D tensor `t`, whose
/// channels then lie `t.stride(1)` apart. The inputs are read through their strides: burn's
/// convolutions may leave their outputs channels-last, and an expanded per-channel factor has
/// stride 0 over the batch, and neither is copied first.
#[cube]
fn pixel(t: &Tensor<f32>, b: usize, p: usize, width: usize) -> usize {
    b * t.stride(0) + (p / width) * t.stride(2) + (p % width) * t.stride(3)
}

/// This unit's image `b` and pixel `p`, and the pixels of an image: one unit per pixel.
#[cube]
fn unit_pixel(h: &Tensor<f32>) -> (usize, usize, usize) {
    let pixels = h.shape(2) * h.shape(3);
    (ABSOLUTE_POS / pixels, ABSOLUTE_POS % pixels, pixels)
}

/// `1 / max(‖h[b, :, p]‖₂, 1e-12)` for the pixel starting at `at`.
#[cube]
fn reciprocal_norm(h: &Tensor<f32>, at: usize, channels: usize) -> f32 {
    let mut sum = 0.0f32;
    for c in 0..channels {
        let x = h[at + c * h.stride(1)];
        sum += x * x;
    }
    1.0f32 / f32::max(f32::sqrt(sum), NORM_FLOOR)
}

/// The element `[b, c]` of a `[batch, channels, 1, 1]` tensor.
#[cube]
fn per_channel(t: &Tensor<f32>, b: usize, c: usize) -> f32 {
    t[b * t.stride(0) + c * t.stride(1)]
}

/// `silu(h · r · a + s)` for each channel of one pixel; without `silu` and `shift` (an RMSNorm
/// alone, as the attentions' are) `h · r · a`, and `s` is not read. With `stored`, `a` is the
/// RMSNorm's gain `g` as the model stores it, and the factor is `g · √channels`, times
/// `1 + k` (the FiLM scale) with the `shift`; without it `k` is not read.
#[cube(launch)]
#[allow(clippy::too_many_arguments)] // a kernel's buffers are its arguments
fn forward_kernel(
    h: &Tensor<f32>,
    a: &Tensor<f32>,
    s: &Tensor<f32>,
    k: &Tensor<f32>,
    y: &mut Tensor<f32>,
    #[comptime] silu: bool,
    #[comptime] shift: bool,
    #[comptime] stored: bool,
) {
    let (b, p, _) = unit_pixel(h);
    if b >= h.shape(0) {
        terminate!();
    }
    let (channels, width) = (h.shape(1), h.shape(3));
    let at = pixel(h, b, p, width);
    let out = b * y.stride(0) + (p / width) * y.stride(2) + (p % width) * y.stride(3);
    let step = y.stride(1);
    let r = reciprocal_norm(h, at, channels);
    let root = f32::sqrt(f32::cast_from(channels));
    for c in 0..channels {
        let mut factor = per_channel(a, b, c);
        if stored {
            factor *= root;
            if shift {
                factor *= 1.0f32 + per_channel(k, b, c);
            }
        }
        let mut z = h[at + c * h.stride(1)] * r * factor;
        if shift {
            z += per_channel(s, b, c);
        }
        if silu {
            z /= 1.0f32 + f32::exp(-z);
        }
        y[out + c * step] = z;
    }
}

/// The backward pass for one pixel: `dh`, and the per-pixel terms `dz·u` and `dz` whose sums
/// over the pixels are the gradients of `a` and `s` (these two contiguous). Without `silu`
/// and `shift` (the RMSNorm alone) `dz` is the output's gradient, and `s` and `dz` are
/// neither read nor written.
#[cube(launch)]
#[allow(clippy::too_many_arguments)] // a kernel's buffers are its arguments
fn backward_kernel(
    h: &Tensor<f32>,
    a: &Tensor<f32>,
    s: &Tensor<f32>,
    g: &Tensor<f32>,
    dh: &mut Tensor<f32>,
    dzu: &mut Tensor<f32>,
    dz: &mut Tensor<f32>,
    #[comptime] silu: bool,
    #[comptime] shift: bool,
) {
    let (b, p, pixels) = unit_pixel(h);
    if b >= h.shape(0) {
        terminate!();
    }
    let (channels, width) = (h.shape(1), h.shape(3));
    let (at, at_g) = (pixel(h, b, p, width), pixel(g, b, p, width));
    let out = b * dh.stride(0) + (p / width) * dh.stride(2) + (p % width) * dh.stride(3);
    let (step, sums) = (dh.stride(1), b * channels * pixels + p);
    let r = reciprocal_norm(h, at, channels);
    // Σ_c du·u, with du = dz·a; dh holds du until the second loop.
    let mut dot = 0.0f32;
    for c in 0..channels {
        let (i, o, k) = (at + c * h.stride(1), out + c * step, sums + c * pixels);
        let ac = per_channel(a, b, c);
        let u = h[i] * r;
        let mut d = g[at_g + c * g.stride(1)];
        if silu {
            let mut z = u * ac;
            if shift {
                z += per_channel(s, b, c);
            }
            let sg = 1.0f32 / (1.0f32 + f32::exp(-z));
            d *= sg * (1.0f32 + z * (1.0f32 - sg));
        }
        if shift {
            dz[k] = d;
        }
        dzu[k] = d * u;
        dh[o] = d * ac;
        dot += d * ac * u;
    }
    let floored = r * NORM_FLOOR >= 1.0f32;
    for c in 0..channels {
        let o = out + c * step;
        let du = dh[o];
        dh[o] = select(
            floored,
            r * du,
            r * (du - h[at + c * h.stride(1)] * r * dot),
        );
    }
}

/// The sizes of `h` `[batch, channels, height, width]`: (batch, channels, pixels).
fn dims(h: &CubeTensor) -> (usize, usize, usize) {
    let shape = h.meta.shape();
    (shape[0], shape[1], shape[2..].iter().product())
}

/// `silu(normalize(h) · a + s)`: `h` `[batch, channels, height, width]`, `a` and `s`
/// `[batch, channels, 1, 1]` (any strides), all `f32`.
pub fn forward(h: CubeTensor, a: CubeTensor, s: CubeTensor) -> CubeTensor {
    launch_forward(h, a, s, None, true, true)
}

/// The forward kernel, with or without the SiLU and the shift `s` (then unread). With
/// `stored` (the FiLM scale, unread without the shift) `a` is the RMSNorm's stored gain `g`
/// and the factor `g · √channels · (1 + scale)`; without, `a` is the factor.
pub(super) fn launch_forward(
    h: CubeTensor,
    a: CubeTensor,
    s: CubeTensor,
    stored: Option<CubeTensor>,
    silu: bool,
    shift: bool,
) -> CubeTensor {
    let (batch, channels, pixels) = dims(&h);
    let y = empty_like(&h);
    if batch * channels * pixels == 0 {
        return y;
    }
    let (count, dim) = launch_size(&h, batch * pixels);
    let (k, stored) = match stored {
        Some(scale) => (scale, true),
        None => (a.clone(), false),
    };
    forward_kernel::launch(
        &y.client,
        count,
        dim,
        h.into_tensor_arg(),
        a.into_tensor_arg(),
        s.into_tensor_arg(),
        k.into_tensor_arg(),
        y.clone().into_tensor_arg(),
        silu,
        shift,
        stored,
    );
    y
}

/// The gradients of [`forward`] for `h`, `a` and `s` given the output's gradient `g`.
pub fn backward(h: CubeTensor, a: CubeTensor, s: CubeTensor, g: CubeTensor) -> [CubeTensor; 3] {
    let (dh, da, ds) = launch_backward(h, a, s, g, true, true);
    [dh, da, ds]
}

/// The backward kernel, with or without the SiLU and the shift (with it, `ds` is the third
/// gradient; without, the third is a placeholder).
pub(super) fn launch_backward(
    h: CubeTensor,
    a: CubeTensor,
    s: CubeTensor,
    g: CubeTensor,
    silu: bool,
    shift: bool,
) -> (CubeTensor, CubeTensor, CubeTensor) {
    let small = a.meta.shape().clone();
    let (batch, channels, pixels) = dims(&h);
    let dh = empty_like(&h);
    let dzu = empty_contiguous(&h, vec![batch, channels, pixels]);
    let dz = empty_contiguous(
        &h,
        if shift {
            vec![batch, channels, pixels]
        } else {
            vec![1]
        },
    );
    if batch * channels * pixels > 0 {
        let (count, dim) = launch_size(&h, batch * pixels);
        backward_kernel::launch(
            &dh.client,
            count,
            dim,
            h.into_tensor_arg(),
            a.into_tensor_arg(),
            s.into_tensor_arg(),
            g.into_tensor_arg(),
            dh.clone().into_tensor_arg(),
            dzu.clone().into_tensor_arg(),
            dz.clone().into_tensor_arg(),
            silu,
            shift,
        );
    }
    // The sums over each image's pixels, by burn's reduction.
    let pixel_sum = |rows: CubeTensor| {
        CubeBackend::float_reshape(CubeBackend::float_sum_dim(rows, 2), small.clone())
    };
    let da = pixel_sum(dzu);
    (dh, da, if shift { pixel_sum(dz) } else { dz })
}
