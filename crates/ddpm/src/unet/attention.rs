//! The U-Net's two attentions, as in lucidrains' 2.3.x: `LinearAttention` (Shen et al. 2018;
//! linear in the number of pixels) at every resolution, full softmax `Attention` where
//! `full_attn` asks for it and in the middle. Both pre-normalise with [`RmsNorm`] and prepend
//! learned memory key/values (`mem_kv`, 4 slots per head).

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Distribution, Tensor};

use super::blocks::{RmsNorm, conv, pointwise};
use super::ops;

/// The number of learned memory key/value slots per head (`num_mem_kv = 4`).
pub const NUM_MEM_KV: usize = 4;

/// `to_qkv(x)` split into q, k, v of `[b, heads, dim_head, h·w]`, while gradients are recorded:
/// each of q, k, v is its own matmul with a slice of the 1×1 weight, as `chunk`'s backward
/// would otherwise scatter into a zeroed gradient of the whole projection (77 MB at 28×28,
/// batch 64). Without gradients the attentions take the whole projection (`unet::ops`).
fn project_qkv(to_qkv: &Conv2d, x: Tensor<4>, heads: usize) -> [Tensor<4>; 3] {
    let [b, c, h, w] = x.dims();
    let weight = to_qkv.weight.val();
    let hidden = weight.dims()[0] / 3;
    let dim_head = hidden / heads;
    let x = x.reshape([b, c, h * w]);
    let weight = weight.reshape([3 * hidden, c]);
    let project = |i: usize| {
        let w_i = weight
            .clone()
            .narrow(0, i * hidden, hidden)
            .reshape([1, hidden, c]);
        w_i.matmul(x.clone()).reshape([b, heads, dim_head, h * w])
    };
    [project(0), project(1), project(2)]
}

/// A softmax along `dim` in two parts: the numerator `exp(x − max x)` and the reciprocal of its
/// sum along `dim` (kept as a size-1 dimension), so that a caller can divide after a matmul.
fn softmax_parts(x: Tensor<4>, dim: usize) -> (Tensor<4>, Tensor<4>) {
    let max = x.clone().detach().max_dim(dim);
    let numerator = (x - max).exp();
    let recip = numerator.clone().sum_dim(dim).recip();
    (numerator, recip)
}

/// `LinearAttention(dim, heads, dim_head)`.
#[derive(Module, Debug)]
pub struct LinearAttention {
    /// Pre-norm.
    pub norm: RmsNorm,
    /// Memory keys and values. `[2, heads, dim_head, NUM_MEM_KV]`
    pub mem_kv: Param<Tensor<4>>,
    /// 1×1 conv to q, k, v, without bias.
    pub to_qkv: Conv2d,
    /// `to_out.0`: 1×1 conv back to `dim`.
    pub to_out: Conv2d,
    /// `to_out.1`: the output norm.
    pub to_out_norm: RmsNorm,
    /// The number of heads.
    pub heads: usize,
}

impl LinearAttention {
    /// An attention over `dim` channels with `heads` heads of `dim_head`.
    pub fn new(dim: usize, heads: usize, dim_head: usize, device: &Device) -> Self {
        let hidden = heads * dim_head;
        Self {
            norm: RmsNorm::new(dim, device),
            mem_kv: Param::from_tensor(Tensor::random(
                [2, heads, dim_head, NUM_MEM_KV],
                Distribution::Normal(0.0, 1.0),
                device,
            )),
            to_qkv: conv(dim, hidden * 3, 1, false, device),
            to_out: conv(hidden, dim, 1, true, device),
            to_out_norm: RmsNorm::new(dim, device),
            heads,
        }
    }

    /// # Shapes
    /// - `x` and the output: `[batch, dim, height, width]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.norm.forward(x);
        let out = if x.device().is_autodiff() {
            self.recorded_core(x)
        } else {
            let qkv = pointwise(&self.to_qkv, x);
            ops::linear_attention(qkv, self.mem_kv.val(), self.heads)
        };
        self.to_out_norm.forward(pointwise(&self.to_out, out))
    }

    /// Softmaxes, context and output from the normalised input `x` while gradients are
    /// recorded (without them: [`ops::linear_attention`]).
    fn recorded_core(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, _, h, w] = x.dims();
        let [q, k, v] = project_qkv(&self.to_qkv, x, self.heads); // [b, heads, d, n]
        let dim_head = q.dims()[2];
        let k = Tensor::cat(vec![ops::memory_slots(&self.mem_kv.val(), 0, b), k], 3);
        let v = Tensor::cat(vec![ops::memory_slots(&self.mem_kv.val(), 1, b), v], 3);
        let scale = (dim_head as f32).powf(-0.5);
        // Softmax over features for q, over positions for k, then
        // context[d, e] = Σ_n k[d, n] v[e, n] and out[e, n] = scale · Σ_d context[d, e] q[d, n].
        let out = if ops::kernels_apply(&v) {
            // One pass per softmax: the fused kernel, with its own backward pass.
            ops::linear_attention_heads(q, k, v)
        } else {
            // Each softmax's division is applied after the matmul it feeds: k's to the small
            // context (its denominator depends on d only), q's (and the scale) to the output
            // (its denominator depends on n only). Fewer full-size ops to record and
            // differentiate than two softmaxes and a scaling.
            let (q, q_recip) = softmax_parts(q, 2); // [b, heads, d, n], [b, heads, 1, n]
            let (k, k_recip) = softmax_parts(k, 3); // [b, heads, d, m + n], [b, heads, d, 1]
            let context = k.matmul(v.swap_dims(2, 3)) * k_recip; // [b, heads, d, e]
            context.swap_dims(2, 3).matmul(q) * q_recip.mul_scalar(scale) // [b, heads, e, n]
        };
        out.reshape([b, self.heads * dim_head, h, w])
    }
}

/// `Attention(dim, heads, dim_head)`: full softmax attention over all positions.
#[derive(Module, Debug)]
pub struct Attention {
    /// Pre-norm.
    pub norm: RmsNorm,
    /// Memory keys and values. `[2, heads, NUM_MEM_KV, dim_head]`
    pub mem_kv: Param<Tensor<4>>,
    /// 1×1 conv to q, k, v, without bias.
    pub to_qkv: Conv2d,
    /// 1×1 conv back to `dim`.
    pub to_out: Conv2d,
    /// The number of heads.
    pub heads: usize,
}

impl Attention {
    /// An attention over `dim` channels with `heads` heads of `dim_head`.
    pub fn new(dim: usize, heads: usize, dim_head: usize, device: &Device) -> Self {
        let hidden = heads * dim_head;
        Self {
            norm: RmsNorm::new(dim, device),
            mem_kv: Param::from_tensor(Tensor::random(
                [2, heads, NUM_MEM_KV, dim_head],
                Distribution::Normal(0.0, 1.0),
                device,
            )),
            to_qkv: conv(dim, hidden * 3, 1, false, device),
            to_out: conv(hidden, dim, 1, true, device),
            heads,
        }
    }

    /// # Shapes
    /// - `x` and the output: `[batch, dim, height, width]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, _, h, w] = x.dims();
        let x = self.norm.forward(x);
        let out = if x.device().is_autodiff() {
            let [q, k, v] = project_qkv(&self.to_qkv, x, self.heads).map(|t| t.swap_dims(2, 3)); // [b, heads, n, d]
            let dim_head = q.dims()[3];
            ops::attention_heads(q, k, v, self.mem_kv.val())
                .swap_dims(2, 3)
                .reshape([b, self.heads * dim_head, h, w])
        } else {
            let qkv = pointwise(&self.to_qkv, x);
            ops::attention(qkv, self.mem_kv.val(), self.heads)
        };
        pointwise(&self.to_out, out)
    }
}

/// The attention of one U-Net stage.
#[derive(Module, Debug)]
pub enum StageAttention {
    /// `LinearAttention` (the default at every level but the innermost).
    Linear(LinearAttention),
    /// Full `Attention` (where `full_attn` is true).
    Full(Attention),
}

impl StageAttention {
    /// # Shapes
    /// - `x` and the output: `[batch, dim, height, width]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Linear(attn) => attn.forward(x),
            Self::Full(attn) => attn.forward(x),
        }
    }
}
