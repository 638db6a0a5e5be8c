//! The softmax along one axis as one cubecl kernel, one unit of work per row (three passes over
//! it: its maximum, the sum of the exponentials, the output), where burn's composite launches a
//! reduction, a subtraction, an exponential, a second reduction and a division. The backward
//! pass likewise: `dx = y · (g − Σ y·g)` per row. The math is the CPU kernel's
//! (`crate::fused::softmax`).

use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::cube;
use cubecl::prelude::*;

use super::{empty_contiguous, launch_size};

/// Where this unit's row starts in a contiguous tensor seen as `[outer, len, inner]`: the row
/// runs along `len`, its elements `inner` apart.
#[cube]
fn row_start(len: usize, inner: usize) -> usize {
    (ABSOLUTE_POS / inner) * len * inner + ABSOLUTE_POS % inner
}

/// One row's softmax, its maximum subtracted first so that large logits do not overflow.
#[cube(launch)]
fn forward_kernel(x: &Tensor<f32>, y: &mut Tensor<f32>, len: usize, inner: usize, rows: usize) {
    if ABSOLUTE_POS >= rows {
        terminate!();
    }
    let start = row_start(len, inner);
    // From the first element: cubecl writes −∞ as `-Inf`, which WGSL does not know.
    let mut max = x[start];
    for i in 1..len {
        max = f32::max(max, x[start + i * inner]);
    }
    let mut sum = 0.0f32;
    for i in 0..len {
        sum += f32::exp(x[start + i * inner] - max);
    }
    for i in 0..len {
        y[start + i * inner] = f32::exp(x[start + i * inner] - max) / sum;
    }
}

/// One row's `dx = y · (g − Σ y·g)`.
#[cube(launch)]
fn backward_kernel(
    y: &Tensor<f32>,
    g: &Tensor<f32>,
    dx: &mut Tensor<f32>,
    len: usize,
    inner: usize,
    rows: usize,
) {
    if ABSOLUTE_POS >= rows {
        terminate!();
    }
    let start = row_start(len, inner);
    let mut dot = 0.0f32;
    for i in 0..len {
        dot += y[start + i * inner] * g[start + i * inner];
    }
    for i in 0..len {
        let at = start + i * inner;
        dx[at] = y[at] * (g[at] - dot);
    }
}

/// `t` made contiguous, its rows along `dim` as `(len, inner, rows)`, and an output like it.
fn rows(t: CubeTensor, dim: usize) -> (CubeTensor, (usize, usize, usize), CubeTensor) {
    let t = into_contiguous(t);
    let shape = t.meta.shape().to_vec();
    let (len, inner) = (shape[dim], shape[dim + 1..].iter().product::<usize>());
    let rows = shape.iter().product::<usize>() / len.max(1);
    let out = empty_contiguous(&t, shape);
    (t, (len, inner, rows), out)
}

/// The softmax of `x` (`f32`, any layout) along `dim`; the output is contiguous.
pub fn forward(x: CubeTensor, dim: usize) -> CubeTensor {
    let (x, (len, inner, rows), y) = rows(x, dim);
    if rows * len > 0 {
        let (count, cube_dim) = launch_size(&x, rows);
        forward_kernel::launch(
            &y.client,
            count,
            cube_dim,
            x.into_tensor_arg(),
            y.clone().into_tensor_arg(),
            len,
            inner,
            rows,
        );
    }
    y
}

/// The input's gradient from the softmax's output `y` and its gradient `g`, along `dim`.
pub fn backward(y: CubeTensor, g: CubeTensor, dim: usize) -> CubeTensor {
    let (y, (len, inner, rows), dx) = rows(y, dim);
    let g = into_contiguous(g);
    if rows * len > 0 {
        let (count, cube_dim) = launch_size(&y, rows);
        backward_kernel::launch(
            &dx.client,
            count,
            cube_dim,
            y.into_tensor_arg(),
            g.into_tensor_arg(),
            dx.clone().into_tensor_arg(),
            len,
            inner,
            rows,
        );
    }
    dx
}
