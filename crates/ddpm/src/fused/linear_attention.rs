//! `LinearAttention`'s core without gradients (sampling), on plain `f32` slices: one task per
//! image and head (on the cores in parallel with the `fused-rayon` feature), reading q, k and v
//! straight out of the `to_qkv` projection and writing the heads' outputs in place.
//!
//! As burn operations the same core is a `chunk` of the projection into q, k and v and their
//! reshapes to heads (each a copy, the chunks not being contiguous), the memory keys and values
//! concatenated in front of k and v (two more copies), two softmaxes, two batched products with
//! transposed operands and a scaling: about 10 % of a sampling step on the CPU. Here each head
//! is two softmax passes and two small products over buffers the thread reuses; the memory
//! slots enter the context as a second product instead of a concatenation.

use super::conv::for_each_chunk;
use super::exp::exp;
use super::gemm::{View, matmul};
use super::softmax::{row_max, row_sum};
use super::{Kernel, simd};

/// The sizes of a linear attention (the batch follows from the slices' length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadDims {
    /// Heads.
    pub heads: usize,
    /// Channels per head (`dim_head`; q, k and v alike).
    pub dim_head: usize,
    /// Pixels (`h · w`).
    pub pixels: usize,
    /// Memory key/value slots per head.
    pub memory: usize,
}

impl HeadDims {
    /// Elements of one head's q (or k, or v, or output) for one image.
    fn head(&self) -> usize {
        self.dim_head * self.pixels
    }
}

/// One thread's buffers: the numerators of k's softmax over the pixels `[d, n]` and over the
/// memory slots `[d, m]`, their rows' reciprocal denominators `[d]`, q's softmax `[d, n]`, the
/// context `[d, d]`, and per-column statistics `[n]`.
struct Scratch {
    k: Vec<f32>,
    k_memory: Vec<f32>,
    k_recip: Vec<f32>,
    q: Vec<f32>,
    context: Vec<f32>,
    columns: Vec<f32>,
}

impl Scratch {
    fn new(dims: HeadDims) -> Self {
        let (d, n) = (dims.dim_head, dims.pixels);
        Self {
            k: vec![0.0; d * n],
            k_memory: vec![0.0; d * dims.memory],
            k_recip: vec![0.0; d],
            q: vec![0.0; d * n],
            context: vec![0.0; d * d],
            columns: vec![0.0; n],
        }
    }
}

/// For `qkv` `[batch, 3 · heads · dim_head, pixels]` (q, k and v one after the other, each
/// head's `dim_head` channels together, as `to_qkv` gives them) and `memory`
/// `[2, heads, dim_head, slots]` (keys, then values): the heads' outputs
/// `[batch, heads · dim_head, pixels]`,
///
/// `out[e, n] = Σ_d context[d, e] · softmax_d(q)[d, n]`, with
/// `context[d, e] = dim_head^(−1/2) · Σ_j softmax_j(k)[d, j] · v[e, j]`
///
/// over the memory slots and the pixels `j` (lucidrains' `LinearAttention` between `to_qkv`
/// and `to_out`).
pub fn linear_attention(qkv: &[f32], memory: &[f32], dims: HeadDims) -> Vec<f32> {
    let (d, m, head) = (dims.dim_head, dims.memory, dims.head());
    let hidden = dims.heads * head;
    let batch = qkv.len().checked_div(3 * hidden).unwrap_or(0);
    let mut out = vec![0.0f32; batch * hidden];
    if out.is_empty() {
        return out;
    }
    for_each_chunk(
        &mut out,
        head,
        || Scratch::new(dims),
        |i, out, s| {
            let (b, h) = (i / dims.heads, i % dims.heads);
            let part = |which: usize| &qkv[(3 * b + which) * hidden + h * head..][..head];
            let slots = |which: usize| &memory[(which * dims.heads + h) * d * m..][..d * m];
            let (q, k, v) = (part(0), part(1), part(2));
            let (k_memory, v_memory) = (slots(0), slots(1));
            simd(OneHead {
                q,
                k,
                v,
                k_memory,
                v_memory,
                dims,
                s,
                out,
            });
        },
    );
    out
}

/// One image's head: its q, k and v `[dim_head, pixels]`, its memory keys and values
/// `[dim_head, slots]`, the thread's scratch and the output `[dim_head, pixels]`.
struct OneHead<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    k_memory: &'a [f32],
    v_memory: &'a [f32],
    dims: HeadDims,
    s: &'a mut Scratch,
    out: &'a mut [f32],
}

impl Kernel for OneHead<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self {
            q,
            k,
            v,
            k_memory,
            v_memory,
            dims,
            s,
            out,
        } = self;
        let (d, m, n) = (dims.dim_head, dims.memory, dims.pixels);
        key_softmax(k, k_memory, dims, s);
        // context = softmax(k) · vᵀ over the memory slots, then over the pixels, then each row
        // divided by its softmax denominator and scaled.
        matmul(
            &mut s.context,
            view(&s.k_memory, d, m),
            view(v_memory, d, m).t(),
            false,
            false,
        );
        matmul(
            &mut s.context,
            view(&s.k, d, n),
            view(v, d, n).t(),
            true,
            false,
        );
        let scale = (d as f32).powf(-0.5);
        for (row, &r) in s.context.chunks_exact_mut(d).zip(&s.k_recip) {
            row.iter_mut().for_each(|c| *c *= r * scale);
        }
        query_softmax(q, dims, s);
        matmul(
            out,
            view(&s.context, d, d).t(),
            view(&s.q, d, n),
            false,
            false,
        );
    }
}

fn view(data: &[f32], rows: usize, cols: usize) -> View<'_> {
    View::row_major(data, rows, cols)
}

/// The numerators of k's softmax along each row (the memory slots `k_memory` and the pixels
/// `k` together) and each row's reciprocal denominator into the scratch buffers.
#[inline(always)]
fn key_softmax(k: &[f32], k_memory: &[f32], dims: HeadDims, s: &mut Scratch) {
    let (n, m) = (dims.pixels, dims.memory);
    for (row, recip) in s.k_recip.iter_mut().enumerate() {
        let (x, x_mem) = (&k[row * n..][..n], &k_memory[row * m..][..m]);
        let (e, e_mem) = (&mut s.k[row * n..][..n], &mut s.k_memory[row * m..][..m]);
        let max = row_max(x).max(row_max(x_mem));
        for (e, &x) in e.iter_mut().zip(x) {
            *e = exp(x - max);
        }
        for (e, &x) in e_mem.iter_mut().zip(x_mem) {
            *e = exp(x - max);
        }
        *recip = 1.0 / (row_sum(e) + row_sum(e_mem));
    }
}

/// q's softmax along each column (over the head's channels) into `s.q`.
#[inline(always)]
fn query_softmax(q: &[f32], dims: HeadDims, s: &mut Scratch) {
    let n = dims.pixels;
    let max = &mut s.columns;
    max.fill(f32::NEG_INFINITY);
    for row in q.chunks_exact(n) {
        for (m, &v) in max.iter_mut().zip(row) {
            *m = m.max(v);
        }
    }
    for (e_row, row) in s.q.chunks_exact_mut(n).zip(q.chunks_exact(n)) {
        for ((e, &v), &m) in e_row.iter_mut().zip(row).zip(max.iter()) {
            *e = exp(v - m);
        }
    }
    let sum = &mut s.columns;
    sum.fill(0.0);
    for e_row in s.q.chunks_exact(n) {
        for (t, &e) in sum.iter_mut().zip(e_row) {
            *t += e;
        }
    }
    sum.iter_mut().for_each(|t| *t = 1.0 / *t);
    for e_row in s.q.chunks_exact_mut(n) {
        for (e, &r) in e_row.iter_mut().zip(sum.iter()) {
            *e *= r;
        }
    }
}
