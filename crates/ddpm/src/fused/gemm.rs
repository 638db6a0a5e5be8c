//! A safe, bounds-checked front for the `gemm` crate's `f32` matrix product (the one burn's CPU
//! backend runs): views with any strides, and a destination that can be accumulated into. The
//! only `unsafe` in the project: `gemm::gemm` takes raw pointers and strides, and [`matmul`]
//! checks before the call that every element they reach lies inside the slices it was given.
#![allow(unsafe_code)]

/// A read-only matrix in a slice: element `(i, j)` is `data[i · row_stride + j · col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    /// The elements (and possibly more).
    pub data: &'a [f32],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Distance between rows.
    pub row_stride: usize,
    /// Distance between columns.
    pub col_stride: usize,
}

impl<'a> View<'a> {
    /// The first `rows · cols` elements of `data` as a row-major matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element lies inside `data`.
    fn in_bounds(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows - 1)
            .checked_mul(self.row_stride)
            .zip((self.cols - 1).checked_mul(self.col_stride))
            .and_then(|(r, c)| r.checked_add(c));
        last.is_some_and(|last| last < self.data.len())
    }
}

/// `dst = a · b`, or `dst += a · b` with `accumulate`, for `dst` the row-major
/// `[a.rows, b.cols]` matrix; with `parallel`, spread over rayon's threads (with the
/// `fused-rayon` feature).
///
/// # Panics
/// If the shapes disagree or a view reaches past its slice.
pub fn matmul(dst: &mut [f32], a: View<'_>, b: View<'_>, accumulate: bool, parallel: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "matmul: inner dimensions");
    assert_eq!(dst.len(), m * n, "matmul: destination size");
    assert!(a.in_bounds() && b.in_bounds(), "matmul: view out of bounds");
    if dst.is_empty() {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    let stride = |s: usize| isize::try_from(s).expect("stride fits in isize");
    #[cfg(feature = "fused-rayon")]
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    #[cfg(not(feature = "fused-rayon"))]
    let parallelism = {
        let _ = parallel;
        gemm::Parallelism::None
    };
    // SAFETY: `dst` holds exactly the m × n row-major destination (column stride 1, row stride
    // n); `a` and `b` were checked above to reach only elements inside their slices, and `dst`
    // (a unique borrow) cannot overlap them.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            stride(n),
            accumulate,
            a.data.as_ptr(),
            stride(a.col_stride),
            stride(a.row_stride),
            b.data.as_ptr(),
            stride(b.col_stride),
            stride(b.row_stride),
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
