//! The U-Net's "same" convolutions (`k×k`, odd `k`, stride 1, padding `k / 2`: every 3×3 and the
//! 7×7 `init_conv`) on plain `f32` slices, one image at a time (on the cores in parallel with the
//! `fused-rayon` feature), each as one matrix product over the image's patch matrix (im2col)
//! built straight from NCHW into a buffer the thread reuses.
//!
//! burn-flex's own convolution converts every input to NHWC on one core, builds a patch tile per
//! 512 pixels and scatters each tile's product back; its backward pass is a transposed
//! convolution for the input and a convolution over the swapped batch for the weight. Here:
//!
//! - forward: `y_b = W · patches(x_b) + bias`, written in place into the NCHW output;
//! - input gradient: `dx = same_conv(dy, flip(Wᵀ))`, the same kernel with the weight transposed
//!   over the channels and rotated 180° (exact for stride 1 and odd `k`);
//! - weight gradient: `dW = Σ_b dy_b · patches(x_b)ᵀ`, accumulated per thread, and `dbias` the
//!   sum of `dy` over the batch and the pixels.

#[cfg(feature = "fused-rayon")]
use rayon::iter::{IndexedParallelIterator, ParallelIterator};

use super::gemm::{View, matmul};

/// The sizes of the input of a same convolution (the batch follows from the slices' length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvDims {
    /// Input channels.
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Kernel side (odd).
    pub kernel: usize,
}

impl ConvDims {
    /// Pixels per channel.
    pub fn pixels(&self) -> usize {
        self.height * self.width
    }

    /// Rows of an image's patch matrix: one per channel and kernel tap.
    pub fn taps(&self) -> usize {
        self.channels * self.kernel * self.kernel
    }

    fn image(&self) -> usize {
        self.channels * self.pixels()
    }
}

/// The patch matrix `[taps, pixels]` of one image `[channels, height, width]`: row `(c, ky, kx)`
/// holds, for every output pixel `(y, x)`, `image[c, y + ky − k/2, x + kx − k/2]`, zero outside
/// the image. Every element of `out` is written.
pub fn patches(image: &[f32], dims: ConvDims, out: &mut [f32]) {
    let (pixels, k2) = (dims.pixels(), dims.kernel * dims.kernel);
    for (r, row) in out.chunks_exact_mut(pixels).enumerate() {
        fill_tap(row, &image[(r / k2) * pixels..][..pixels], dims, r % k2);
    }
}

/// One row of the patch matrix: `plane` shifted by kernel tap `tap` (`ky · k + kx`). In the
/// flattened image the shift is one offset, so the rows it reaches are copied in one piece and
/// the columns that wrapped around from a neighbouring row are zeroed after (a copy per image
/// row cost more than the copying itself at these widths).
fn fill_tap(row: &mut [f32], plane: &[f32], dims: ConvDims, tap: usize) {
    let (h, w, pad) = (dims.height, dims.width, dims.kernel / 2);
    let (dy, dx) = (tap / dims.kernel, tap % dims.kernel);
    // Output rows whose input row `y + dy − pad` lies in `0..h`, and likewise columns.
    let y0 = pad.saturating_sub(dy).min(h);
    let y1 = (h + pad).saturating_sub(dy).clamp(y0, h);
    let x0 = pad.saturating_sub(dx).min(w);
    let x1 = (w + pad).saturating_sub(dx).clamp(x0, w);
    if x0 == x1 {
        row.fill(0.0);
        return;
    }
    row[..y0 * w].fill(0.0);
    row[y1 * w..].fill(0.0);
    // Output element `i` reads input element `i + dy·w + dx − (w + 1)·pad`; keep both in range.
    let (lo, hi) = (y0 * w, y1 * w);
    let (ahead, behind) = (dy * w + dx, (w + 1) * pad);
    let start = behind.saturating_sub(ahead).clamp(lo, hi);
    let end = (plane.len() + behind)
        .saturating_sub(ahead)
        .clamp(start, hi);
    row[lo..start].fill(0.0);
    row[end..hi].fill(0.0);
    if start < end {
        row[start..end].copy_from_slice(&plane[start + ahead - behind..end + ahead - behind]);
    }
    if x0 > 0 || x1 < w {
        for out in row[lo..hi].chunks_exact_mut(w) {
            out[..x0].fill(0.0);
            out[x1..].fill(0.0);
        }
    }
}

/// The same convolution of `x` (`[batch, channels, height, width]`) with `weight`
/// (`[outputs, channels, k, k]`) plus `bias` (`[outputs]`, or empty for none):
/// `[batch, outputs, height, width]`.
pub fn same_conv(x: &[f32], weight: &[f32], bias: &[f32], dims: ConvDims) -> Vec<f32> {
    let outputs = weight.len().checked_div(dims.taps()).unwrap_or(0);
    let batch = x.len().checked_div(dims.image()).unwrap_or(0);
    let pixels = dims.pixels();
    let mut y = vec![0.0f32; batch * outputs * pixels];
    if y.is_empty() {
        return y;
    }
    let w = View::row_major(weight, outputs, dims.taps());
    let parallel = few_images(batch);
    for_each_image(&mut y, outputs * pixels, dims, |b, out, buf| {
        if !bias.is_empty() {
            for (row, &v) in out.chunks_exact_mut(pixels).zip(bias) {
                row.fill(v);
            }
        }
        patches(&x[b * dims.image()..][..dims.image()], dims, buf);
        let p = View::row_major(buf, dims.taps(), pixels);
        matmul(out, w, p, !bias.is_empty(), parallel);
    });
    y
}

/// The gradients of [`same_conv`] for `x`, `weight` and the bias, given the output's gradient
/// `g` (`[batch, outputs, height, width]`).
pub fn same_conv_backward(
    x: &[f32],
    weight: &[f32],
    g: &[f32],
    dims: ConvDims,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (pixels, taps) = (dims.pixels(), dims.taps());
    let outputs = weight.len().checked_div(taps).unwrap_or(0);
    let k = dims.kernel;
    let flipped = flip_transpose(weight, outputs, dims.channels, k);
    let dy_dims = ConvDims {
        channels: outputs,
        ..dims
    };
    let dx = same_conv(g, &flipped, &[], dy_dims);

    let mut db = vec![0.0f32; outputs];
    for (o, row) in g.chunks_exact(pixels.max(1)).enumerate() {
        db[o % outputs.max(1)] += row.iter().sum::<f32>();
    }
    let dw = weight_gradient(x, g, dims, outputs);
    (dx, dw, db)
}

/// `Σ_b dy_b · patches(x_b)ᵀ`: `[outputs, taps]`.
fn weight_gradient(x: &[f32], g: &[f32], dims: ConvDims, outputs: usize) -> Vec<f32> {
    let (pixels, taps, image) = (dims.pixels(), dims.taps(), dims.image());
    let batch = x.len().checked_div(image).unwrap_or(0);
    let parallel = few_images(batch);
    let add_image = |(mut dw, mut buf): (Vec<f32>, Vec<f32>), b: usize| {
        patches(&x[b * image..][..image], dims, &mut buf);
        let dy = View::row_major(&g[b * outputs * pixels..], outputs, pixels);
        let p = View::row_major(&buf, taps, pixels).t();
        matmul(&mut dw, dy, p, true, parallel);
        (dw, buf)
    };
    let fresh = || (vec![0.0f32; outputs * taps], vec![0.0f32; taps * pixels]);
    #[cfg(feature = "fused-rayon")]
    return rayon::iter::IntoParallelIterator::into_par_iter(0..batch)
        .fold(fresh, add_image)
        .map(|(dw, _)| dw)
        .reduce(
            || vec![0.0f32; outputs * taps],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            },
        );
    #[cfg(not(feature = "fused-rayon"))]
    (0..batch).fold(fresh(), add_image).0
}

/// Runs `f(b, output of image b, patch buffer)` for every image, in parallel with
/// `fused-rayon`, each thread reusing one buffer of `taps × pixels`.
fn for_each_image<F>(y: &mut [f32], per_image: usize, dims: ConvDims, f: F)
where
    F: Fn(usize, &mut [f32], &mut Vec<f32>) + Send + Sync,
{
    for_each_chunk(
        y,
        per_image,
        || vec![0.0f32; dims.taps() * dims.pixels()],
        f,
    );
}

/// Runs `f(i, chunk i of y, scratch)` for every chunk of `per_chunk` elements of `y`, in
/// parallel with `fused-rayon`, each thread reusing one `scratch` made by `init`.
pub(super) fn for_each_chunk<T, I, F>(y: &mut [f32], per_chunk: usize, init: I, f: F)
where
    T: Send,
    I: Fn() -> T + Send + Sync,
    F: Fn(usize, &mut [f32], &mut T) + Send + Sync,
{
    #[cfg(feature = "fused-rayon")]
    chunks_mut!(y, per_chunk)
        .enumerate()
        .for_each_init(init, |scratch, (i, chunk)| f(i, chunk, scratch));
    #[cfg(not(feature = "fused-rayon"))]
    {
        let mut scratch = init();
        for (i, chunk) in y.chunks_mut(per_chunk).enumerate() {
            f(i, chunk, &mut scratch);
        }
    }
}

/// Whether a batch has fewer images than there are threads: then each product is spread over
/// the threads instead.
fn few_images(batch: usize) -> bool {
    #[cfg(feature = "fused-rayon")]
    return batch < rayon::current_num_threads();
    #[cfg(not(feature = "fused-rayon"))]
    {
        let _ = batch;
        false
    }
}

/// The weight of the input gradient's convolution: `w'[c, o, ky, kx] = w[o, c, k−1−ky, k−1−kx]`
/// for `w` of shape `[outputs, channels, k, k]`.
pub fn flip_transpose(w: &[f32], outputs: usize, channels: usize, kernel: usize) -> Vec<f32> {
    let taps = kernel * kernel;
    let mut out = vec![0.0f32; w.len()];
    for o in 0..outputs {
        for c in 0..channels {
            let src = &w[(o * channels + c) * taps..][..taps];
            let dst = &mut out[(c * outputs + o) * taps..][..taps];
            for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *s;
            }
        }
    }
    out
}
