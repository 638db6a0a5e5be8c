//! `Block`'s RMSNorm, FiLM and SiLU on plain `f32` slices, one image of the batch at a time
//! (on the cores in parallel with the `fused-rayon` feature).

#[cfg(feature = "fused-rayon")]
use rayon::iter::{IndexedParallelIterator, ParallelIterator};

use super::exp::{sigmoid, silu};
use super::{Kernel, simd};

/// `F.normalize`'s floor on the norm.
const NORM_FLOOR: f32 = 1e-12;

/// The sizes of each image of a `[batch, channels, height · width]` tensor (the number of
/// images follows from the slices' length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    /// Channels of each image.
    pub channels: usize,
    /// Pixels of each channel (`height · width`).
    pub pixels: usize,
}

impl Dims {
    fn image(&self) -> usize {
        self.channels * self.pixels
    }
}

/// `1 / max(‖h[:, p]‖₂, 1e-12)` for every pixel `p` of one image `[channels, pixels]`.
#[inline(always)]
fn reciprocal_norms(image: &[f32], pixels: usize) -> Vec<f32> {
    let mut r = vec![0.0f32; pixels];
    for row in image.chunks_exact(pixels) {
        for (acc, &x) in r.iter_mut().zip(row) {
            *acc += x * x;
        }
    }
    for v in &mut r {
        *v = 1.0 / v.sqrt().max(NORM_FLOOR);
    }
    r
}

/// `silu(normalize(h) · a + s)`: lucidrains' `Block` after its convolution, with the RMSNorm's
/// gain and the FiLM scale folded into `a` and the FiLM shift in `s`. `h` is
/// `[batch, channels, pixels]`; `a` and `s` are `[batch, channels]`.
pub fn norm_film_silu(h: &[f32], a: &[f32], s: &[f32], dims: Dims) -> Vec<f32> {
    let (c, p) = (dims.channels, dims.pixels);
    let mut y = vec![0.0f32; h.len()];
    if y.is_empty() {
        return y;
    }
    chunks_mut!(&mut y[..], dims.image())
        .enumerate()
        .for_each(|(b, out)| {
            let image = &h[b * c * p..(b + 1) * c * p];
            let (a, s) = (&a[b * c..(b + 1) * c], &s[b * c..(b + 1) * c]);
            simd(Forward { image, a, s, out });
        });
    y
}

/// The gradients of [`norm_film_silu`] with respect to `h`, `a` and `s`, given the gradient
/// `g` of its output. With `u = h / n` (`n` the channel norm), `z = u·a + s`, `σ = sigmoid(z)`:
/// `dz = g·σ·(1 + z(1 − σ))`, `da = Σ_p dz·u`, `ds = Σ_p dz`, and, through the normalisation,
/// `dh = (du − u·Σ_c du·u) / n` with `du = dz·a` (just `du / n` where the norm is floored).
pub fn norm_film_silu_backward(
    h: &[f32],
    a: &[f32],
    s: &[f32],
    g: &[f32],
    dims: Dims,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (c, p) = (dims.channels, dims.pixels);
    let mut dh = vec![0.0f32; h.len()];
    let mut da = vec![0.0f32; a.len()];
    let mut ds = vec![0.0f32; s.len()];
    if dh.is_empty() {
        return (dh, da, ds);
    }
    chunks_mut!(&mut dh[..], dims.image())
        .zip(chunks_mut!(&mut da[..], c))
        .zip(chunks_mut!(&mut ds[..], c))
        .enumerate()
        .for_each(|(b, ((dh, da), ds))| {
            let image = &h[b * c * p..(b + 1) * c * p];
            let grad = &g[b * c * p..(b + 1) * c * p];
            let (a, s) = (&a[b * c..(b + 1) * c], &s[b * c..(b + 1) * c]);
            simd(Backward {
                image,
                grad,
                a,
                s,
                dh,
                da,
                ds,
            });
        });
    (dh, da, ds)
}

/// One image's forward pass: `image` `[channels, pixels]`, its factors `a` and shifts `s`
/// `[channels]`, into `out`.
struct Forward<'a> {
    image: &'a [f32],
    a: &'a [f32],
    s: &'a [f32],
    out: &'a mut [f32],
}

impl Kernel for Forward<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self { image, a, s, out } = self;
        let p = image.len() / a.len();
        let r = reciprocal_norms(image, p);
        let rows = out.chunks_exact_mut(p).zip(image.chunks_exact(p));
        for ((out, x), (&ac, &sc)) in rows.zip(a.iter().zip(s)) {
            for ((yv, &x), &rv) in out.iter_mut().zip(x).zip(&r) {
                *yv = silu(x * rv * ac + sc);
            }
        }
    }
}

/// One image's backward pass: as [`Forward`], with the output's gradient `grad`, into the
/// gradients `dh` `[channels, pixels]`, `da` and `ds` `[channels]`.
struct Backward<'a> {
    image: &'a [f32],
    grad: &'a [f32],
    a: &'a [f32],
    s: &'a [f32],
    dh: &'a mut [f32],
    da: &'a mut [f32],
    ds: &'a mut [f32],
}

impl Kernel for Backward<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self {
            image,
            grad,
            a,
            s,
            dh,
            da,
            ds,
        } = self;
        let (c, p) = (a.len(), image.len() / a.len());
        let r = reciprocal_norms(image, p);
        // Σ_c du·u for each pixel.
        let mut dot = vec![0.0f32; p];
        for ch in 0..c {
            let (ac, sc) = (a[ch], s[ch]);
            let rows = ch * p..(ch + 1) * p;
            let (x, gv, d) = (&image[rows.clone()], &grad[rows.clone()], &mut dh[rows]);
            // dz, then its sums for a and s, then du = dz·a and its part of Σ_c du·u: three
            // loops over a row in cache, each of which vectorises.
            for (((d, &x), &gv), &rv) in d.iter_mut().zip(x).zip(gv).zip(&r) {
                let z = x * rv * ac + sc;
                let sg = sigmoid(z);
                *d = gv * sg * (1.0 + z * (1.0 - sg));
            }
            (da[ch], ds[ch]) = film_sums(d, x, &r);
            for (((d, &x), &rv), dot) in d.iter_mut().zip(x).zip(&r).zip(dot.iter_mut()) {
                *d *= ac;
                *dot += *d * x * rv;
            }
        }
        for (row_dh, row_h) in dh.chunks_exact_mut(p).zip(image.chunks_exact(p)) {
            let pixels = row_dh.iter_mut().zip(row_h).zip(r.iter().zip(&dot));
            for ((d, &x), (&rv, &dot)) in pixels {
                *d = if rv * NORM_FLOOR < 1.0 {
                    rv * (*d - x * rv * dot)
                } else {
                    rv * *d
                };
            }
        }
    }
}

/// `(Σ dz·x·r, Σ dz)` over one row, in eight lanes so that it vectorises.
#[inline(always)]
fn film_sums(dz: &[f32], x: &[f32], r: &[f32]) -> (f32, f32) {
    let (mut su, mut sd) = ([0.0f32; 8], [0.0f32; 8]);
    let lanes = dz
        .chunks_exact(8)
        .zip(x.chunks_exact(8))
        .zip(r.chunks_exact(8));
    for ((d, x), r) in lanes {
        for i in 0..8 {
            su[i] += d[i] * x[i] * r[i];
            sd[i] += d[i];
        }
    }
    let tail = dz.len() / 8 * 8;
    let rest = dz[tail..].iter().zip(&x[tail..]).zip(&r[tail..]);
    rest.fold((su.iter().sum(), sd.iter().sum()), |(u, s), ((d, x), r)| {
        (u + d * x * r, s + d)
    })
}
