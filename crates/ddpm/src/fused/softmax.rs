//! The softmax along one axis on plain `f32` slices. A tensor is seen as `[outer, len, inner]`
//! (the softmax runs along `len`); each of the `outer` blocks is one task (on the cores in
//! parallel with the `fused-rayon` feature), its `inner` columns in step, so that the axis may
//! be the last one (`inner = 1`) or one with a stride.

#[cfg(feature = "fused-rayon")]
use rayon::iter::{IndexedParallelIterator, ParallelIterator};

use super::exp::exp;
use super::{Kernel, simd};

/// The sizes of a tensor around its softmax axis (`outer`, the number of blocks, follows from
/// the slices' length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Axis {
    /// The axis' size.
    pub len: usize,
    /// The product of the sizes after it.
    pub inner: usize,
}

impl Axis {
    /// `shape` around axis `dim`.
    pub fn of(shape: &[usize], dim: usize) -> Self {
        Self {
            len: shape[dim],
            inner: shape[dim + 1..].iter().product(),
        }
    }

    fn block(&self) -> usize {
        self.len * self.inner
    }
}

/// `exp(x − max x) / Σ exp(x − max x)` along the axis.
pub fn softmax(x: &[f32], axis: Axis) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    if y.is_empty() {
        return y;
    }
    let inner = axis.inner;
    chunks_mut!(&mut y[..], axis.block())
        .zip(chunks!(x, axis.block()))
        .for_each(|(y, x)| simd(Block { x, y, inner }));
    y
}

/// One block `[len, inner]` of the softmax's input `x`, into `y`.
struct Block<'a> {
    x: &'a [f32],
    y: &'a mut [f32],
    inner: usize,
}

impl Kernel for Block<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self { x, y, inner } = self;
        if inner == 1 {
            return softmax_row(x, y);
        }
        let mut max = vec![f32::NEG_INFINITY; inner];
        for row in x.chunks_exact(inner) {
            for (m, &v) in max.iter_mut().zip(row) {
                *m = m.max(v);
            }
        }
        let mut sum = vec![0.0f32; inner];
        for (y_row, x_row) in y.chunks_exact_mut(inner).zip(x.chunks_exact(inner)) {
            let columns = y_row
                .iter_mut()
                .zip(x_row)
                .zip(max.iter().zip(sum.iter_mut()));
            for ((yv, &v), (&m, s)) in columns {
                *yv = exp(v - m);
                *s += *yv;
            }
        }
        for s in &mut sum {
            *s = 1.0 / *s;
        }
        for y_row in y.chunks_exact_mut(inner) {
            for (yv, &r) in y_row.iter_mut().zip(&sum) {
                *yv *= r;
            }
        }
    }
}

/// One block of [`softmax_backward`]: the output `y` and its gradient `g`, into `dx`.
struct BlockBackward<'a> {
    y: &'a [f32],
    g: &'a [f32],
    dx: &'a mut [f32],
    inner: usize,
}

impl Kernel for BlockBackward<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self { y, g, dx, inner } = self;
        if inner == 1 {
            let dot = lane_dot(y, g);
            for ((d, &yv), &gv) in dx.iter_mut().zip(y).zip(g) {
                *d = yv * (gv - dot);
            }
            return;
        }
        let mut dot = vec![0.0f32; inner];
        for (y_row, g_row) in y.chunks_exact(inner).zip(g.chunks_exact(inner)) {
            for ((d, &yv), &gv) in dot.iter_mut().zip(y_row).zip(g_row) {
                *d += yv * gv;
            }
        }
        let rows = dx
            .chunks_exact_mut(inner)
            .zip(y.chunks_exact(inner).zip(g.chunks_exact(inner)));
        for (dx_row, (y_row, g_row)) in rows {
            let columns = dx_row.iter_mut().zip(y_row.iter().zip(g_row)).zip(&dot);
            for ((d, (&yv, &gv)), &dot) in columns {
                *d = yv * (gv - dot);
            }
        }
    }
}

/// The softmax of one contiguous row (the last axis).
#[inline(always)]
fn softmax_row(x: &[f32], y: &mut [f32]) {
    let max = row_max(x);
    for (yv, &v) in y.iter_mut().zip(x) {
        *yv = exp(v - max);
    }
    let r = 1.0 / row_sum(y);
    for yv in y.iter_mut() {
        *yv *= r;
    }
}

/// The largest element of `x` (−∞ for none), in eight lanes so that it vectorises.
#[inline(always)]
pub(super) fn row_max(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = x.chunks_exact(8);
    for chunk in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = m.max(v);
        }
    }
    let rest = chunks.remainder().iter();
    lanes
        .iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// The sum of `x`, in eight lanes so that it vectorises.
#[inline(always)]
pub(super) fn row_sum(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for chunk in &mut chunks {
        for (s, &v) in lanes.iter_mut().zip(chunk) {
            *s += v;
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// `Σ x·y`, in eight lanes so that it vectorises.
#[inline(always)]
fn lane_dot(x: &[f32], y: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (xs, ys) = (x.chunks_exact(8), y.chunks_exact(8));
    let tail = xs.remainder().iter().zip(ys.remainder());
    for (a, b) in xs.zip(ys) {
        for ((s, &a), &b) in lanes.iter_mut().zip(a).zip(b) {
            *s += a * b;
        }
    }
    lanes.iter().sum::<f32>() + tail.map(|(a, b)| a * b).sum::<f32>()
}

/// The softmax's gradient from its output `y` and the output's gradient `g`:
/// `dx = y · (g − Σ g·y)`, the sum along the axis.
pub fn softmax_backward(y: &[f32], g: &[f32], axis: Axis) -> Vec<f32> {
    let mut dx = vec![0.0f32; y.len()];
    if dx.is_empty() {
        return dx;
    }
    let inner = axis.inner;
    chunks_mut!(&mut dx[..], axis.block())
        .zip(chunks!(y, axis.block()))
        .zip(chunks!(g, axis.block()))
        .for_each(|((dx, y), g)| simd(BlockBackward { y, g, dx, inner }));
    dx
}
